#!/usr/bin/env python3
"""Writes the trace samples real_traces_bench fits on (issue #9), with Python's own shuffle.

The samples are defined by Python's random.Random(seed).shuffle over a file's lines, which is
why they are made here and not in C++. Stdlib only; lines are copied byte for byte.

  qwen3_8b_train_2000_seed1.jsonl     qwen3_8b/train.jsonl, Random(1).shuffle, first 2000
  qwen3_8b_train_2000_seed1_x5.jsonl  the same 2000 lines, each repeated 5 times in a row
  mistral_7b_train_2000_seed1.jsonl   mistral_7b/train.jsonl, Random(1).shuffle, first 2000
  banking77_5labels_600_seed3.jsonl   banking77/train.jsonl, Random(3).shuffle, lines whose
                                      teacher is among the 5 first labels (Python sort order),
                                      first 600
  samples.json                        line counts, sha256 and the 5 labels

Usage: make_real_trace_samples.py [--data DIR] [--out DIR]
"""
import argparse
import hashlib
import json
import os
import random
import sys

HERE = os.path.dirname(os.path.abspath(__file__))


def read_lines(path):
    with open(path, "rb") as f:
        data = f.read()
    lines = data.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    return lines


def shuffled(lines, seed):
    out = list(lines)
    random.Random(seed).shuffle(out)
    return out


def teacher(line):
    return json.loads(line.decode("utf-8"))["teacher"]


def write(out_dir, name, lines, summary):
    body = b"".join(line + b"\n" for line in lines)
    path = os.path.join(out_dir, name)
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(body)
    os.replace(tmp, path)
    summary[name] = {"lines": len(lines), "sha256": hashlib.sha256(body).hexdigest()}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default=os.path.join(HERE, "..", "..", "shared", "data"))
    ap.add_argument("--out", default=os.path.join(HERE, "results", "samples"))
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    llm = os.path.join(args.data, "banking77_open_intent_ollama")
    summary = {}

    for model in ("qwen3_8b", "mistral_7b"):
        lines = shuffled(read_lines(os.path.join(llm, model, "train.jsonl")), 1)[:2000]
        if len(lines) != 2000:
            sys.exit(f"{model}/train.jsonl has fewer than 2000 lines")
        write(args.out, f"{model}_train_2000_seed1.jsonl", lines, summary)
        if model == "qwen3_8b":
            x5 = [line for line in lines for _ in range(5)]
            write(args.out, f"{model}_train_2000_seed1_x5.jsonl", x5, summary)

    b77 = read_lines(os.path.join(args.data, "banking77", "train.jsonl"))
    labels = sorted({teacher(line) for line in b77})[:5]
    keep = [line for line in shuffled(b77, 3) if teacher(line) in labels][:600]
    if len(keep) != 600:
        sys.exit("banking77/train.jsonl has fewer than 600 lines of its 5 first labels")
    write(args.out, "banking77_5labels_600_seed3.jsonl", keep, summary)

    summary["banking77_5labels"] = labels
    with open(os.path.join(args.out, "samples.json"), "w", encoding="utf-8") as f:
        json.dump(summary, f, indent=2, ensure_ascii=False)
        f.write("\n")
    print(f"wrote samples to {args.out}")


if __name__ == "__main__":
    main()
