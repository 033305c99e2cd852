"""Constrained (JSON schema) vs free decoding on the real Gemma 3 270M, in one run, as ratios.

    python benchmarks/bench_constrained.py [--threads 2] [--repeat 3] [--out benchmarks/results_constrained.md]

For each schema: a constrained greedy run, then a free greedy run of exactly as many tokens
(stop ids off), interleaved ``--repeat`` times. Per-token decode time = (total - time to the first
token) / (tokens - 1), so the prompt's prefill is left out; each constrained run starts with an
empty mask cache (what a user gets). Separately: building the vocabulary table (once per
tokenizer), a cold mask build per new state, and a cached mask lookup. Not a test: timings depend
on the machine; the ratio is what to read.
"""

import argparse
import statistics
import time
from pathlib import Path

import torch

import minigemma
from minigemma.constrained import JSONConstraint, Vocabulary

ROOT = Path(__file__).resolve().parents[1]
PROMPT = "Here is the record as JSON:\n"
SCHEMAS = {
    "person (object, enum, integer range)": {
        "type": "object", "required": ["name", "age", "city"],
        "properties": {"name": {"type": "string", "maxLength": 24}, "age": {"type": "integer", "minimum": 0, "maximum": 120},
                       "city": {"type": "string", "enum": ["Paris", "London", "Tokyo", "Lagos"]}}},
    "list of strings": {"type": "array", "items": {"type": "string", "maxLength": 30}, "minItems": 3, "maxItems": 5},
    "nested + anyOf": {"type": "object", "required": ["items"], "properties": {"items": {"type": "array", "maxItems": 4, "items": {
        "type": "object", "required": ["k", "v"], "properties": {"k": {"type": "string", "maxLength": 8},
                                                               "v": {"anyOf": [{"type": "number"}, {"type": "null"}]}}}}}},
}


def run(model, prompt_ids, n, constraint=None):
    """(tokens, seconds to the first token, total seconds)."""
    start = time.perf_counter()
    first, count = None, 0
    for _ in minigemma.generate_ids(model, prompt_ids, max_new_tokens=n, stop_ids=set(), constraint=constraint):
        count += 1
        if first is None:
            first = time.perf_counter() - start
    return count, first, time.perf_counter() - start


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--max-new-tokens", type=int, default=48)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model, tok = minigemma.load("gemma3-270m", progress=False)
    prompt_ids = tok.encode(PROMPT, add_bos=True)

    t = time.perf_counter()
    Vocabulary._cache.clear()
    Vocabulary.of(tok)
    vocab_s = time.perf_counter() - t

    lines = [f"# Constrained decoding: time per token, Gemma 3 270M float32, {args.threads} threads",
             "", f"Vocabulary table (once per tokenizer): {vocab_s:.2f} s.", "",
             "| schema | tokens | free ms/token | constrained ms/token | ratio (median, range) | states built | cold mask build ms (mean) | cached lookup ms |",
             "|---|---|---|---|---|---|---|---|"]
    for name, schema in SCHEMAS.items():
        free, cons, ratios, builds, lookups, states = [], [], [], [], [], 0
        for _ in range(args.repeat):
            c = JSONConstraint(schema, tok, args.max_new_tokens)
            n, first, total = run(model, prompt_ids, args.max_new_tokens, c)
            per_c = (total - first) / max(n - 1, 1)
            n2, first2, total2 = run(model, prompt_ids, n)
            per_f = (total2 - first2) / max(n2 - 1, 1)
            free.append(per_f)
            cons.append(per_c)
            ratios.append(per_c / per_f)
            states = len(c._cache)
            # mask cost: rebuild every state of this run cold, then look each up again (cached)
            fresh = JSONConstraint(schema, tok, args.max_new_tokens)
            t = time.perf_counter()
            for s in c._cache:
                fresh._entry(s)
            builds.append((time.perf_counter() - t) / max(states, 1))
            t = time.perf_counter()
            for s in c._cache:
                fresh.state = s
                fresh.allowed()
            lookups.append((time.perf_counter() - t) / max(states, 1))
        print(name, repr(c.text))
        lines.append(f"| {name} | {n} | {statistics.median(free) * 1e3:.0f} | {statistics.median(cons) * 1e3:.0f} | "
                     f"{statistics.median(ratios):.2f} ({min(ratios):.2f}-{max(ratios):.2f}) | {states} | "
                     f"{statistics.mean(builds) * 1e3:.1f} | {statistics.mean(lookups) * 1e3:.2f} |")
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        Path(args.out).write_text(text)


if __name__ == "__main__":
    main()
