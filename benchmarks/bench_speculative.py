"""Speculative decoding on the real Gemma 3 270M (float32): speed-up and acceptance, same text.

    python benchmarks/bench_speculative.py [--threads 2] [--new 48] [--repeat 3] [--k 4]
           [--targets float32 bfloat16 pack int8 int4 int4-all] [--out benchmarks/results_speculative.md]

``--targets``: the target's load settings (default float32). In every setting the verifying pass is
exact (``row_exact.py``): products whose rounding depends on the row count run row by row, so a
bf16 target gains little or nothing; the first pass of each row count also measures which products
may stay batched (a one-off probe, inside the first of the interleaved runs).

There is no MTP assistant for Gemma 3 270M, so the drafts come from:
- ``prompt_lookup``: n-gram copying from the text so far (free; good when the output repeats the input);
- ``first-N-layers``: the 270M's own first N layers + its final norm and head (a cheaper model of the
  same vocabulary, untrained as a drafter: "layer skipping");
- ``int4 270M``: the same 270M quantised to 4 bits (``quantize="int4"``, ``quantize.py``): a cheaper
  model of the same vocabulary whose greedy choices mostly agree with the float32 model's.

For each prompt, plain greedy decoding and speculative decoding run interleaved (A, B, A, B, ...)
so that the shared machine's drift hits both alike; we report the median time ratio with its range,
the acceptance rate and the tokens per target pass, and check the two texts are identical.
Not a test: timings depend on the machine.
"""

import argparse
import dataclasses
import statistics
import time
from pathlib import Path

import torch

import minigemma
from minigemma import Gemma, generate_ids
from minigemma.speculative import PromptLookup, Stats, speculative_ids

ROOT = Path(__file__).resolve().parents[1]
SETTINGS = {"float32": {}, "bfloat16": dict(dtype=torch.bfloat16), "pack": dict(dtype=torch.bfloat16, pack=True),
            "int8": dict(quantize="int8"), "int4": dict(quantize="int4"), "int4-all": dict(quantize="int4-all")}
PROMPTS = {
    "repeat a list": "Repeat this list exactly, twice.\nList: red apples, green pears, ripe plums, sweet cherries, "
                     "dark grapes, yellow lemons.\nFirst time: red apples, green pears,",
    "code": "def add(a, b):\n    return a + b\n\n\ndef sub(a, b):\n    return a - b\n\n\ndef mul(a, b):\n",
    "free text": "The history of the bicycle begins in",
}


def first_layers(model: Gemma, n: int) -> Gemma:
    """The model's first ``n`` layers with its own final norm and tied head (weights shared, not copied)."""
    cfg = dataclasses.replace(model.config, num_hidden_layers=n, layer_types=model.config.layer_types[:n])
    with torch.device("meta"):
        small = Gemma(cfg)
    state = {k: v for k, v in model.state_dict().items() if not k.startswith("layers.") or int(k.split(".")[1]) < n}
    small.load_state_dict(state, strict=True, assign=True)
    return small.eval()


def drafters(model, layers, int4=True):
    out = {"prompt_lookup": PromptLookup(max_ngram=3)}
    if int4:
        out["int4 270M"] = minigemma.load("gemma3-270m", progress=False, quantize="int4")[0]
    for n in layers:
        out[f"first-{n}-layers"] = first_layers(model, n)
    return out


def once(fn):
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


@torch.no_grad()
def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--new", type=int, default=48)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--k", type=int, default=4)
    parser.add_argument("--layers", type=int, nargs="*", default=[], help="also draft with the first N layers")
    parser.add_argument("--no-int4", action="store_true", help="skip the int4 270M drafter")
    parser.add_argument("--targets", nargs="*", default=["float32"], choices=sorted(SETTINGS))
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results_speculative.md"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rows = []
    for target in args.targets:
        model, tok = minigemma.load("gemma3-270m", progress=False, **SETTINGS[target])
        rows += measure(args, target, model, tok)
    lines = [f"Gemma 3 270M (Q4_K_M GGUF dequantised) as the target, {args.threads} threads, "
             f"torch {torch.__version__}, {args.new} new tokens, k = {args.k} drafts per pass, greedy; "
             f"{args.repeat} interleaved runs per row (plain, speculative, plain, ...). Output identical to plain "
             "greedy decoding in every run (asserted).", "",
             "| target | drafter | prompt | plain (s) | speculative (s) | speed-up (median, range) | acceptance | "
             "tokens per target pass |", "|---|---|---|---:|---:|---:|---:|---:|"]
    for target, name, label, p, s, r, lo, hi, acc, tpp in rows:
        lines.append(f"| {target} | {name} | {label} | {p:.2f} | {s:.2f} | {r:.2f}× ({lo:.2f}–{hi:.2f}) | {acc:.0%} "
                     f"| {tpp:.2f} |")
    Path(args.out).write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def measure(args, target, model, tok):
    rows = []
    for name, drafter in drafters(model, args.layers, not args.no_int4).items():
        for label, prompt in PROMPTS.items():
            ids = tok.encode(prompt, add_bos=True)
            plain_t, spec_t = [], []
            for _ in range(args.repeat):
                t, plain = once(lambda: list(generate_ids(model, ids, args.new)))
                plain_t.append(t)
                stats = Stats()
                t, spec = once(lambda: list(speculative_ids(model, ids, drafter, args.k, args.new, stats=stats)))
                spec_t.append(t)
                assert spec == plain, f"{name} / {label}: speculative text differs from plain greedy"
            ratios = sorted(p / s for p, s in zip(plain_t, spec_t))
            rows.append((target, name, label, statistics.median(plain_t), statistics.median(spec_t),
                         statistics.median(ratios), ratios[0], ratios[-1], stats.acceptance_rate, stats.tokens_per_pass))
            print(rows[-1], flush=True)
    return rows


if __name__ == "__main__":
    main()
