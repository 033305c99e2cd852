"""Mixture-of-experts dispatch, on the same weights and routing, as tokens/s and ratios:
minigemma's ``Experts.forward``, the two versions it chooses between (``experts_grouped``: two
grouped matrix products; ``experts_loop``: a Python loop over the experts, notebook 07, the
package's only dispatch before), a per-token loop, run-every-expert, and transformers'
Gemma4TextExperts with its default ``grouped_mm`` implementation. A second table times the two
fast versions alone at 16 to 128 rows per expert: where ``moe.LOOP_FROM`` comes from.

    python benchmarks/bench_moe.py [--threads 2]

The block is Gemma 4 26B-A4B's shape scaled down to fit a laptop: 128 experts, top-8, width 512,
expert hidden 128 (the real one is width 2816, hidden 704). The router is shared, so only the
expert computation is timed. The methods run in turn, round after round (median per method), so
that drift of a shared machine hits all of them alike. Not a test: timings depend on the machine.
"""

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

from minigemma.config import TextConfig
from minigemma.moe import LOOP_FROM, Experts, Router, experts_grouped, experts_loop

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "notebooks"))
from moe_baselines import experts_dense, experts_naive  # noqa: E402  (course code, not the package)


def speeds(methods, n, repeat):
    """{name: tokens/s}: the median of ``repeat`` rounds, each running every method once in turn.
    Each round starts one method further on: whichever runs first after another block's work
    finds colder caches, so no method is always first."""
    ref = next(iter(methods.values()))()
    for fn in methods.values():
        torch.testing.assert_close(fn(), ref, atol=1e-4, rtol=1e-4)  # same answer before timing
    names, times = list(methods), {name: [] for name in methods}
    for r in range(repeat):
        for name in names[r % len(names):] + names[:r % len(names)]:
            start = time.perf_counter()
            methods[name]()
            times[name].append(time.perf_counter() - start)
    return {name: n / statistics.median(t) for name, t in times.items()}


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
        methods = {"minigemma (Experts.forward)": lambda: ours(x, index, weights),
                   "grouped matmul": lambda: experts_grouped(ours, x, index, weights),
                   "loop over experts (notebook 07)": lambda: experts_loop(ours, x, index, weights),
                   "per-token loop": lambda: experts_naive(ours, x, index, weights),
                   "every expert (dense)": lambda: experts_dense(ours, x, index, weights),
                   "transformers (grouped_mm)": lambda: hf(x, index, weights)}
        rows.append((n, speeds(methods, n, 6 if n == 2048 else 12)))
    crossover = []
    for n in (256, 512, 1024, 2048):
        x = torch.randn(n, 512, generator=gen)
        weights, index, _ = router(x)
        two = {"grouped": lambda: experts_grouped(ours, x, index, weights),
               "loop": lambda: experts_loop(ours, x, index, weights)}
        crossover.append((n, speeds(two, n, 6 if n == 2048 else 10)))
    import platform

    import transformers

    names = list(rows[0][1])
    ours_name, grouped, loop, naive, dense, hf_name = names
    ratios = {"minigemma ÷ transformers": (ours_name, hf_name), "grouped ÷ transformers": (grouped, hf_name),
              "loop ÷ transformers": (loop, hf_name), "minigemma ÷ per-token": (ours_name, naive),
              "minigemma ÷ dense": (ours_name, dense)}
    lines = [f"MoE block, 128 experts, top-8, width 512, expert hidden 128, float32, {args.threads} threads, "
             f"torch {torch.__version__}, transformers {transformers.__version__}, {platform.machine()}, "
             f"measured {time.strftime('%Y-%m-%d')}. Tokens/s (median of interleaved runs); "
             f"ratio = a ÷ b of those. Experts.forward runs the grouped matmul below {LOOP_FROM} rows "
             f"per expert ({LOOP_FROM * 128 // 8} tokens here), the loop from there on.", "",
             "| tokens | " + " | ".join(names + list(ratios)) + " |",
             "|---:|" + "---:|" * (len(names) + len(ratios))]
    for n, speed in rows:
        lines.append(f"| {n} | " + " | ".join(f"{speed[k]:,.0f}" for k in names) + " | "
                     + " | ".join(f"{speed[a] / speed[b]:.2f}×" for a, b in ratios.values()) + " |")
    lines += ["", "Where the loop catches up (tokens/s, the two versions alone, same block):", "",
              "| tokens | rows per expert | grouped matmul | loop over experts | grouped ÷ loop |",
              "|---:|---:|---:|---:|---:|"]
    for n, speed in crossover:
        lines.append(f"| {n} | {n * 8 // 128} | {speed['grouped']:,.0f} | {speed['loop']:,.0f} | "
                     f"{speed['grouped'] / speed['loop']:.2f}× |")
    table = "\n".join(lines)
    print(table)
    Path(args.out).write_text(table + "\n")


if __name__ == "__main__":
    main()
