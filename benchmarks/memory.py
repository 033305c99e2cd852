"""Memory: what each setting holds, measured and counted.

    python benchmarks/memory.py [--measure] [--out benchmarks/results_memory.md]

1. ``--measure``: resident memory (VmRSS from /proc/self/status, and its peak VmHWM) of a fresh
   Python process after ``minigemma.load("gemma3-270m", ...)`` for each setting, beside the bytes
   its weights hold (``quantize.weight_bytes``) and the count from ``expected_keys``.
2. The same count for the four Gemma 4 models, bf16 / int8 / int4, plus the KV cache (bf16) at 8K
   and 128K tokens: which Gemma 4 fits in a laptop's memory. Counted on the ``meta`` device: no
   weights are needed. The experts of 26B-A4B are quantised per expert, like linear layers (the
   fused gate/up matrix in ``up_proj``'s format, the down matrix in ``down_proj``'s).
"""

import argparse
import subprocess
import sys
from pathlib import Path

import torch

import minigemma
from minigemma.quantize import EMBEDDING_KINDS, LINEAR_KINDS, layer_format

ROOT = Path(__file__).resolve().parents[1]
SETTINGS = {"float32": (torch.float32, None), "bfloat16": (torch.bfloat16, None), "int8": (torch.float32, "int8"),
            "int4": (torch.float32, "int4"), "int4-all": (torch.float32, "int4-all")}


def counted_bytes(config, quantize, dtype=torch.bfloat16, group_size=32):
    """Bytes the weights of ``config`` hold in a setting, from the keys and shapes alone."""
    item = torch.empty(0, dtype=dtype).element_size()
    total = 0
    for key, shape in minigemma.expected_keys(config).items():
        parts = key.split(".")
        kind = parts[-2] if len(parts) > 1 else ""
        n = 1
        for s in shape:
            n *= s
        quantisable = key.endswith(".weight") and kind in LINEAR_KINDS + EMBEDDING_KINDS
        if kind == "experts":  # (E, rows, K) stacked expert matrices: quantised as E linear layers
            quantisable, kind = True, {"gate_up_proj": "up_proj", "down_proj": "down_proj"}[parts[-1]]
            shape = (shape[0] * shape[1], shape[2])  # all experts' rows: one scale per row (int8)
        if quantize is None or not quantisable:
            total += n * item
        elif layer_format(kind, quantize) == "int8":
            total += n + shape[0] * item  # one byte per weight, one scale per row
        else:
            total += n // 2 + 2 * (n // group_size) * item  # half a byte, a scale and a low per group
    return total


def measure_one(name):
    dtype, quantize = SETTINGS[name]
    from minigemma.quantize import weight_bytes

    model, _ = minigemma.load("gemma3-270m", dtype=dtype, quantize=quantize, progress=False)
    status = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines())
    kb = lambda field: int(status[field].split()[0]) * 1024  # noqa: E731
    print(kb("VmRSS"), kb("VmHWM"), weight_bytes(model))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--measure", action="store_true")
    parser.add_argument("--one", help=argparse.SUPPRESS)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results_memory.md"))
    args = parser.parse_args()
    if args.one:
        return measure_one(args.one)
    lines = []
    if args.measure:
        lines += ["Gemma 3 270M, resident memory of a fresh process after `minigemma.load` (MB):", "",
                  "| setting | resident (VmRSS) | peak during load (VmHWM) | weights held |", "|---|---:|---:|---:|"]
        for name in SETTINGS:
            out = subprocess.run([sys.executable, __file__, "--one", name], capture_output=True, text=True, check=True)
            rss, hwm, held = (int(v) for v in out.stdout.split())
            lines.append(f"| {name} | {rss / 1e6:,.0f} | {hwm / 1e6:,.0f} | {held / 1e6:,.0f} |")
            print(lines[-1], flush=True)
        lines.append("")
    gib = 2 ** 30
    lines += ["Gemma 4, counted from `expected_keys` (GiB): weights per setting (scales in bf16), KV cache in "
              "bf16 for one sequence.", "",
              "| model | bf16 | int8 | int4 (mixed) | int4-all | KV at 8K | KV at 128K |", "|---|---:|---:|---:|---:|---:|---:|"]
    for name in ("gemma4-e2b", "gemma4-e4b", "gemma4-26b-a4b", "gemma4-31b"):
        config = minigemma.preset(name)
        cols = [counted_bytes(config, q) / gib for q in (None, "int8", "int4", "int4-all")]
        kv = [minigemma.kv_cache_bytes(config, n) / gib for n in (8192, min(131072, config.max_position_embeddings))]
        lines.append(f"| {name} | " + " | ".join(f"{c:.1f}" for c in cols + kv) + " |")
    table = "\n".join(lines)
    print(table)
    Path(args.out).write_text(table + "\n")


if __name__ == "__main__":
    main()
