#pragma once
// Exact binomial tails and Clopper–Pearson bounds: the arithmetic behind every guarantee.
namespace tracer {

// P(X >= k) for X ~ Binomial(n, p). Exact (log-space, incomplete beta); 1 when k <= 0.
double binomial_upper_tail(int n, int k, double p);

// One-sided Clopper–Pearson lower bound on a proportion with k successes in n trials at
// the given confidence (e.g. 0.95): the p such that P(Bin(n,p) >= k) = 1 - confidence.
// 0 when k == 0.
double clopper_pearson_lower(int n, int k, double confidence);
// One-sided upper bound; 1 when k == n.
double clopper_pearson_upper(int n, int k, double confidence);

// Smallest n such that n agreeing rows out of n can certify alpha at level delta:
// ceil(ln delta / ln alpha).
int min_rows_to_certify(double alpha, double delta);

}  // namespace tracer
