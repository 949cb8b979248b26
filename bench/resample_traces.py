#!/usr/bin/env python3
"""Resample a JSONL trace file to N traces with noisy texts, for refit-scale benchmarks
(docs/benchmarks.md, "Refit at scale"). Each output line is a random input line (seeded) whose
text is perturbed: a word dropped, a word repeated, two adjacent letters swapped, and one of a few
hundred filler words appended, so most texts are distinct while the labels keep their meaning.
Usage: python3 bench/resample_traces.py IN.jsonl N OUT.jsonl [SEED]"""
import json
import random
import sys


def perturb(text, rng, fillers):
    words = text.split()
    if len(words) > 3 and rng.random() < 0.5:
        del words[rng.randrange(len(words))]
    if words and rng.random() < 0.3:
        i = rng.randrange(len(words))
        words.insert(i, words[i])
    if words and rng.random() < 0.5:
        i = rng.randrange(len(words))
        w = words[i]
        if len(w) > 3:
            j = rng.randrange(len(w) - 1)
            words[i] = w[:j] + w[j + 1] + w[j] + w[j + 2:]
    words.append(rng.choice(fillers))
    return " ".join(words)


def main():
    if len(sys.argv) < 4:
        sys.exit(__doc__)
    src, n, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    rng = random.Random(int(sys.argv[4]) if len(sys.argv) > 4 else 1)
    rows = [json.loads(l) for l in open(src, encoding="utf-8") if l.strip()]
    fillers = ["please", "thanks", "asap", "today", "now", "urgent", "hi", "hello", "again",
               "still"] + ["ref%03d" % i for i in range(300)]
    with open(out, "w", encoding="utf-8") as f:
        for _ in range(n):
            r = rows[rng.randrange(len(rows))]
            f.write(json.dumps({"input": perturb(r["input"], rng, fillers),
                                "teacher": r["teacher"]}) + "\n")


if __name__ == "__main__":
    main()
