"""Mixture-of-experts dispatch: grouped (minigemma), per-token loop, run-every-expert, and
transformers' Gemma4TextExperts, on the same weights and routing, as tokens/s and ratios.

    python benchmarks/bench_moe.py [--threads 2]

The block is Gemma 4 26B-A4B's shape scaled down to fit a laptop: 128 experts, top-8, width 512,
expert hidden 128 (the real one is width 2816, hidden 704). The router is shared, so only the
expert computation is timed. Not a test: timings depend on the machine.
"""

import argparse
import time
from pathlib import Path

import torch
from bench import timed  # benchmarks/bench.py, beside this file

from minigemma.config import TextConfig
from minigemma.moe import Experts, Router, experts_dense, experts_naive

ROOT = Path(__file__).resolve().parents[1]


@torch.no_grad()
def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results_moe.md"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    from transformers import Gemma4TextConfig
    from transformers.models.gemma4.modeling_gemma4 import Gemma4TextExperts

    cfg = TextConfig(model_type="gemma4_text", hidden_size=512, num_hidden_layers=1, layer_types=("full_attention",),
                     num_attention_heads=4, num_key_value_heads=1, enable_moe_block=True, num_experts=128,
                     top_k_experts=8, moe_intermediate_size=128)
    gen = torch.Generator().manual_seed(0)
    ours, router = Experts(cfg), Router(cfg)
    with torch.no_grad():
        for p in list(ours.parameters()) + [router.proj.weight]:
            p.copy_(torch.randn(p.shape, generator=gen) * 0.05)
    hf_config = Gemma4TextConfig(hidden_size=512, num_experts=128, top_k_experts=8, moe_intermediate_size=128,
                                 enable_moe_block=True, num_hidden_layers=1, layer_types=["full_attention"])
    hf_config._experts_implementation = "grouped_mm"  # what a transformers Gemma 4 model uses by default
    hf = Gemma4TextExperts(hf_config)
    hf.load_state_dict(ours.state_dict())
    rows = []
    for n in (1, 64, 2048):
        x = torch.randn(n, 512, generator=gen)
        weights, index, _ = router(x)
        methods = {"grouped (minigemma)": lambda: ours(x, index, weights),
                   "per-token loop": lambda: experts_naive(ours, x, index, weights),
                   "every expert (dense)": lambda: experts_dense(ours, x, index, weights),
                   "transformers (grouped_mm)": lambda: hf(x, index, weights)}
        ref = ours(x, index, weights)
        for name, fn in methods.items():
            torch.testing.assert_close(fn(), ref, atol=1e-4, rtol=1e-4)  # same answer before timing
        repeat = 3 if n == 2048 else 10
        speed = {name: n / timed(fn, repeat) for name, fn in methods.items()}
        rows.append((n, speed))
    import platform

    import transformers

    names = list(rows[0][1])
    lines = [f"MoE block, 128 experts, top-8, width 512, expert hidden 128, float32, {args.threads} threads, "
             f"torch {torch.__version__}, transformers {transformers.__version__}, {platform.machine()}, "
             f"measured {time.strftime('%Y-%m-%d')}. Tokens/s; ratio = grouped ÷ other.", "",
             "| tokens | " + " | ".join(names) + " | grouped ÷ transformers | grouped ÷ loop | grouped ÷ dense |",
             "|---:|" + "---:|" * (len(names) + 3)]
    for n, speed in rows:
        g = speed[names[0]]
        lines.append(f"| {n} | " + " | ".join(f"{speed[k]:,.0f}" for k in names)
                     + f" | {g / speed[names[3]]:.2f}× | {g / speed[names[1]]:.2f}× | {g / speed[names[2]]:.2f}× |")
    table = "\n".join(lines)
    print(table)
    Path(args.out).write_text(table + "\n")


if __name__ == "__main__":
    main()
