"""Keys as values: decode speed with a values-only cache (K rebuilt on read) vs a cache of K and V.

    python benchmarks/bench_keys_as_values.py [--threads 2] [--contexts 4096 16384 65536]

The model is Gemma 4 31B's shape scaled down: 12 layers, 5 sliding : 1 global, 8 query heads,
4 KV heads (head dim 32) on sliding layers and 1 (head dim 64) on global layers, keys as values,
p-RoPE, window 128, width 256, vocabulary 8192. Both caches are filled with the same random
values up to the context (the time of a decode step does not depend on what the cache holds),
then single-token decode steps are timed, alternating between the two caches so that drift of
the machine hits both alike. Not a test: timings depend on the machine.
"""

import argparse
import platform
import statistics
import time
from pathlib import Path

import torch

import minigemma
from minigemma.config import FULL, SLIDING

ROOT = Path(__file__).resolve().parents[1]


def tiny_31b_shaped(context):
    layer_types = ([SLIDING] * 5 + [FULL]) * 2
    return minigemma.TextConfig(
        model_type="gemma4_text", vocab_size=8192, hidden_size=256, intermediate_size=1024, num_hidden_layers=12,
        num_attention_heads=8, num_key_value_heads=4, head_dim=32, global_head_dim=64, num_global_key_value_heads=1,
        attention_k_eq_v=True, sliding_window=128, layer_types=tuple(layer_types), max_position_embeddings=context,
        final_logit_softcapping=30.0,
        rope_parameters={FULL: {"rope_type": "proportional", "partial_rotary_factor": 0.25, "rope_theta": 1e6},
                         SLIDING: {"rope_type": "default", "rope_theta": 1e4}})


def filled_cache(config, context, steps, values_only, seed=0):
    """A cache holding ``context`` random positions (the same for both kinds: same seed)."""
    cache = minigemma.KVCache(config, 1, context + steps, values_only=values_only)
    gen = torch.Generator().manual_seed(seed)
    for i, layer in enumerate(cache.layers):
        n = min(layer.size, context)
        v = torch.randn(1, config.kv_heads_of(i), n, config.head_dim_of(i), generator=gen)
        layer.update(v, v, torch.arange(context - n, context))
    cache.seen = context
    return cache


@torch.no_grad()
def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--contexts", type=int, nargs="+", default=[4096, 16384, 65536])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results_keys_as_values.md"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    rows = []
    for context in args.contexts:
        config = tiny_31b_shaped(context + args.steps)
        model = minigemma.Gemma(config).eval()
        both = filled_cache(config, context, args.steps, values_only=False)
        values = filled_cache(config, context, args.steps, values_only=True)
        token = torch.tensor([[7]])
        t_both, t_values = [], []
        for _ in range(args.steps):
            for cache, times in ((both, t_both), (values, t_values)):
                start = time.perf_counter()
                model(token, cache=cache)
                times.append(time.perf_counter() - start)
        a, b = statistics.median(t_both), statistics.median(t_values)
        rows.append((context, both.nbytes, values.nbytes, a, b))
        print(rows[-1], flush=True)
    lines = [f"Decode step of a 31B-shaped tiny model (see the docstring), float32, {args.threads} threads, torch "
             f"{torch.__version__}, {platform.processor() or platform.machine()}, measured {time.strftime('%Y-%m-%d')}; "
             f"median of {args.steps} alternating steps.", "",
             "| context | cache K+V (MiB) | cache V only (MiB) | step K+V (ms) | step V only (ms) | V only ÷ K+V time |",
             "|---:|---:|---:|---:|---:|---:|"]
    for context, nb_both, nb_values, a, b in rows:
        lines.append(f"| {context:,} | {nb_both / 2**20:,.1f} | {nb_values / 2**20:,.1f} | {a * 1e3:.2f} | "
                     f"{b * 1e3:.2f} | {b / a:.2f}× |")
    table = "\n".join(lines)
    print(table)
    Path(args.out).write_text(table + "\n")


if __name__ == "__main__":
    main()
