"""What quantisation costs in quality: perplexity and greedy agreement of the real Gemma 3 270M.

    python benchmarks/quality.py [--threads 2] [--out benchmarks/results_quality.md] [--reuse-sensitivity]

* Perplexity on our evaluation text (``EVAL_FILES`` in ``data/``: English prose, the sample essay,
  French prose, Python code; ~1,200 tokens), in windows of 512 tokens, for float32, bf16, int8,
  int4 (the mixed default) and int4-all (every layer at 4 bits).
* **Sensitivity table:** perplexity with *one layer type* at int4 (group 32) and everything else in
  float32 -- the table ``quantize.INT4_KEEPS_INT8`` is chosen from. Its eight runs are most of the
  time; ``--reuse-sensitivity`` keeps the table already stored in ``results_quality.json``.
* Next-token agreement with float32, teacher-forced: at every position of the evaluation text, is the
  configuration's most likely next token the same as float32's? (~1,000 independent comparisons.)
* Greedy continuations (16 tokens of each prompt): the ids, where each first differs from float32's,
  and the old "greedy agreement" (share of positions equal to float32's). One early flip changes
  everything after it, so that share mostly measures *where* the first flip happened.
Writes a markdown table and ``benchmarks/results_quality.json`` (read by notebook 12).
"""

import argparse
import copy
import json
import math
import time
from pathlib import Path

import torch

import minigemma
from minigemma.perplexity import perplexity
from minigemma.quantize import LINEAR_KINDS, quantize_model, weight_bytes

ROOT = Path(__file__).resolve().parents[1]
EVAL_FILES = ["data/moe_corpus/english.txt", "data/sample_text.txt", "data/moe_corpus/french.txt",
              "data/moe_corpus/python.txt"]
EVAL_CHARS = 5_000  # the first characters of the concatenation
PROMPTS = ["The capital of France is", "Once upon a time", "def fibonacci(n):"]
KINDS = ("embed_tokens",) + LINEAR_KINDS[:7]


def eval_ids(tok):
    text = "\n\n".join((ROOT / f).read_text() for f in EVAL_FILES)[:EVAL_CHARS]
    return tok.encode(text)


@torch.no_grad()
def scores(model, ids, bos_id, window=512):
    """Perplexity and most likely next token at every position, in the windows of ``perplexity``."""
    total, top1 = 0.0, []
    for start in range(0, len(ids), window - 1):
        chunk = torch.tensor([[bos_id] + ids[start:start + window - 1]])  # (1, T)
        logits = model(chunk)[0, :-1].float()  # (T - 1, vocab)
        total += torch.nn.functional.cross_entropy(logits, chunk[0, 1:], reduction="sum").item()
        top1 += logits.argmax(-1).tolist()
    return math.exp(total / len(top1)), top1


def first_divergence(a, b):
    """Index of the first token where two continuations differ (their length if they never do)."""
    return next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), len(a))


def greedy(model, tok, n=16):
    return [list(minigemma.generate_ids(model, tok.encode(p, add_bos=True), max_new_tokens=n)) for p in PROMPTS]


def agreement(a, b):
    same = sum(x == y for ra, rb in zip(a, b) for x, y in zip(ra, rb))
    return same / sum(len(r) for r in a)


@torch.no_grad()
def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results_quality.md"))
    parser.add_argument("--reuse-sensitivity", action="store_true", help="keep the stored sensitivity table")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    base, tok = minigemma.load("gemma3-270m", progress=False)
    ids = eval_ids(tok)
    results = {"tokens": len(ids), "configs": {}, "sensitivity": {}}
    partial = ROOT / "benchmarks" / "results_quality.partial.json"

    def measure(model, label, full=True):
        t = time.perf_counter()
        if full:
            ppl, top1 = scores(model, ids, tok.bos_id)
            row = {"ppl": ppl, "weight_bytes": weight_bytes(model), "top1": top1, "greedy": greedy(model, tok)}
        else:
            ppl = perplexity(model, ids, tok.bos_id)
            row = {"ppl": ppl, "weight_bytes": weight_bytes(model)}
        print(f"{label}: ppl {ppl:.3f} ({time.perf_counter() - t:.0f} s)", flush=True)
        partial.write_text(json.dumps({**results, label: ppl}, indent=1, default=str))
        return row

    configs = results["configs"]
    configs["float32"] = measure(base, "float32")
    for mode in ("int8", "int4", "int4-all"):
        configs[mode] = measure(quantize_model(copy.deepcopy(base), mode), mode)
    if args.reuse_sensitivity:
        results["sensitivity"] = json.loads((ROOT / "benchmarks" / "results_quality.json").read_text())["sensitivity"]
    for kind in () if args.reuse_sensitivity else KINDS:
        model = quantize_model(copy.deepcopy(base), None, formats={k: (k == kind and "int4") or None for k in KINDS})
        results["sensitivity"][kind] = measure(model, f"only {kind} at int4", full=False)["ppl"]
    configs["bfloat16"] = measure(copy.deepcopy(base).to(torch.bfloat16), "bfloat16")
    configs["int4 bf16"] = measure(quantize_model(copy.deepcopy(base).to(torch.bfloat16), "int4"), "int4 bf16")
    reference, ref_top1 = configs["float32"]["greedy"], configs["float32"]["top1"]
    results["prompts"] = PROMPTS
    for row in configs.values():
        row["agreement"] = agreement(row["greedy"], reference)
        row["first_divergence"] = [first_divergence(a, b) for a, b in zip(row["greedy"], reference)]
        row["top1_agreement"] = sum(x == y for x, y in zip(row.pop("top1"), ref_top1)) / len(ref_top1)
    (ROOT / "benchmarks" / "results_quality.json").write_text(json.dumps(results, indent=1))
    write_table(results, args.out)


def write_table(results, out):
    f32 = results["configs"]["float32"]["ppl"]
    lines = [f"Gemma 3 270M (the Q4_K_M GGUF, dequantised = 'float32'), perplexity on {results['tokens']:,} tokens "
             f"of `data/` (windows of 512); next-token agreement with float32 at each of those positions; "
             f"greedy continuations of {len(PROMPTS)} prompts × 16 tokens.", "",
             "| weights | weight memory (MB) | perplexity | vs float32 | same next token as float32 "
             "| greedy: first token that differs (per prompt) | greedy tokens equal to float32's |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for name, row in results["configs"].items():
        lines.append(f"| {name} | {row['weight_bytes'] / 1e6:,.0f} | {row['ppl']:.2f} | {100 * (row['ppl'] / f32 - 1):+.1f} % "
                     f"| {100 * row['top1_agreement']:.1f} % | {', '.join(map(str, row['first_divergence']))} "
                     f"| {100 * row['agreement']:.0f} % |")
    lines += ["", "Sensitivity: one layer type at int4 (group 32), everything else float32.", "",
              "| layer type at int4 | perplexity | vs float32 |", "|---|---:|---:|"]
    for kind, ppl in sorted(results["sensitivity"].items(), key=lambda kv: -kv[1]):
        lines.append(f"| {kind} | {ppl:.2f} | {100 * (ppl / f32 - 1):+.1f} % |")
    table = "\n".join(lines)
    print(table)
    Path(out).write_text(table + "\n")


if __name__ == "__main__":
    main()
