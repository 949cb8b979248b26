#pragma once
// Exact binomial tails and Clopper–Pearson bounds: the arithmetic behind every guarantee.
//
// The tail is the regularised incomplete beta I_p(k, n-k+1), evaluated as a binomial density
// (Loader's saddle-point form, accurate for n in the millions) times a Lentz continued
// fraction, so tiny tails keep their relative precision down to underflow (then 0, never NaN).
namespace tracer {

// P(X >= k) for X ~ Binomial(n, p). 1 when k <= 0, 0 when k > n. Throws InputError when
// n < 0 or p is not in [0, 1].
double binomial_upper_tail(int n, int k, double p);

// One-sided Clopper–Pearson lower bound on a proportion with k successes in n trials at
// the given confidence (e.g. 0.95): the p such that P(Bin(n,p) >= k) = 1 - confidence.
// 0 when k == 0; (1 - confidence)^(1/n) when k == n. Rounded down (conservative), ~1e-15
// relative. Throws InputError unless 0 <= k <= n and 0 < confidence < 1.
double clopper_pearson_lower(int n, int k, double confidence);
// One-sided upper bound; 1 when k == n; equals 1 - clopper_pearson_lower(n, n - k, confidence).
double clopper_pearson_upper(int n, int k, double confidence);

// Smallest n such that n agreeing rows out of n can certify alpha at level delta, i.e. the
// smallest n with alpha^n <= delta: ceil(ln delta / ln alpha). Throws InputError unless
// 0 < alpha < 1 and 0 < delta < 1.
int min_rows_to_certify(double alpha, double delta);

// Power of the one-sided binomial test of H0: agreement < alpha at level delta with n rows,
// when the true agreement is `agreement`: P(the test rejects).
double test_power(int n, double agreement, double alpha, double delta);

}  // namespace tracer
