"""minigemma vs transformers on the same Gemma 3 270M weights, in one run, as ratios.

    python benchmarks/bench.py [--threads 2] [--out benchmarks/results.md] [--roofline-only]

Measures (median of several runs, float32, same torch thread count for both):
- load time: the GGUF file to a ready model;
- prefill: tokens/s for a 512-token prompt (computing next-token logits, as generation does);
- decode: tokens/s for greedy generation with the KV cache, after a 16-token prompt;
- tokenizer: characters/s encoding the corpus and sample text, minigemma (pure Python, word cache
  cleared before each run) vs transformers' tokenizer (the `tokenizers` library, Rust).
A ratio above 1.0 means minigemma is faster. Not a test: timings depend on the machine.

The roofline (``roofline``): decoding one token reads every weight once (the tied head included)
plus the KV cache so far, so tokens/s × bytes per step ≤ memory bandwidth. It measures
- the streaming read bandwidth (summing a float32 tensor far larger than the caches, best of 5);
- what the matrix-vector kernels reach on the 262,144 × 640 head: float32 and bf16 ``F.linear``, our
  float32 row blocks (``rowblocks.py``) and oneDNN-packed bf16 (``pack.py``), packed int8 and int4;
- decode tokens/s of minigemma in float32, bf16, bf16 with ``pack=True``, int8, int4 (mixed),
  int4-all and of transformers
  in float32 and bf16 (the same GGUF weights, same threads, runs interleaved), with the bytes each
  step reads, the limit bandwidth ÷ bytes, the fraction of it reached, and ratios vs transformers.
"""

import argparse
import statistics
import time
from pathlib import Path

import torch

import minigemma
from minigemma.weights import resolve

ROOT = Path(__file__).resolve().parents[1]


def timed(fn, repeat):
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def ab(fa, fb, repeat):
    """Median seconds of fa and fb, runs interleaved so that drift of the machine hits both alike."""
    ta, tb = [], []
    for _ in range(repeat):
        ta.append(timed(fa, 1))
        tb.append(timed(fb, 1))
    return statistics.median(ta), statistics.median(tb)


@torch.no_grad()
def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results.md"))
    parser.add_argument("--roofline-only", action="store_true", help="only the roofline table")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    roof = roofline(args)
    if args.roofline_only:
        return
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = resolve("gemma3-270m")
    rows = []

    t_ours = timed(lambda: minigemma.load(path, progress=False), 3)
    t_hf = timed(lambda: AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype=torch.float32), 1)
    rows.append(("load GGUF → model (s, lower is better)", t_ours, t_hf, t_hf / t_ours))

    model, tok = minigemma.load(path, progress=False)
    hf = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype=torch.float32).eval()
    text = (ROOT / "data" / "sample_text.txt").read_text()
    ids512 = tok.encode(text, add_bos=True)[:512]

    def ours_prefill():
        cache = minigemma.KVCache(model.config, 1, 513)
        model(torch.tensor([ids512]), cache=cache, last_only=True)

    def hf_prefill():
        hf(torch.tensor([ids512]), use_cache=True, logits_to_keep=1)

    ours_prefill(), hf_prefill()  # warm-up
    t_ours, t_hf = ab(ours_prefill, hf_prefill, 7)
    p_ours, p_hf = 512 / t_ours, 512 / t_hf
    rows.append(("prefill 512 tokens (tokens/s)", p_ours, p_hf, p_ours / p_hf))

    prompt = ids512[:16]
    n = 64

    def ours_gen(k):
        return lambda: list(minigemma.generate_ids(model, prompt, max_new_tokens=k))

    def hf_gen(k):
        return lambda: hf.generate(torch.tensor([prompt]), max_new_tokens=k, min_new_tokens=k, do_sample=False,
                                   eos_token_id=None, pad_token_id=0)

    ours_gen(4)(), hf_gen(4)()  # warm-up
    long_ours, long_hf = ab(ours_gen(n + 1), hf_gen(n + 1), 3)
    short_ours, short_hf = ab(ours_gen(1), hf_gen(1), 3)
    d_ours, d_hf = n / (long_ours - short_ours), n / (long_hf - short_hf)
    rows.append((f"decode, greedy with KV cache (tokens/s, {n} tokens)", d_ours, d_hf, d_ours / d_hf))

    import json

    corpus = "\n".join(json.loads((ROOT / "data" / "tokenizer_corpus.json").read_text())) + text
    hf_tok = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)

    def ours_encode():
        tok._cache.clear()  # cold: no word remembered from the previous run
        tok.encode(corpus)

    t_tok_ours = timed(ours_encode, 5)
    t_tok_hf = timed(lambda: hf_tok.encode(corpus, add_special_tokens=False), 5)
    rows.append((f"tokenizer encode (characters/s, {len(corpus):,} chars)", len(corpus) / t_tok_ours,
                 len(corpus) / t_tok_hf, t_tok_hf / t_tok_ours))

    import platform

    import transformers

    lines = [f"Gemma 3 270M (Q4_K_M GGUF, dequantised to float32), {args.threads} threads, torch {torch.__version__}, "
             f"transformers {transformers.__version__}, {platform.processor() or platform.machine()}, "
             f"measured {time.strftime('%Y-%m-%d')}.", "",
             "| measure | minigemma | transformers | ratio (minigemma ÷ transformers, >1 = faster) |",
             "|---|---:|---:|---:|"]
    for name, a, b, r in rows:
        lines.append(f"| {name} | {a:,.1f} | {b:,.1f} | {r:.2f}× |")
    table = "\n".join(lines)
    print(table)
    Path(args.out).write_text(table + "\n\n" + roof + "\n")


def best(fn, repeat):
    fn()  # warm-up
    return min(timed(fn, 1) for _ in range(repeat))


def read_bandwidth(repeat=5):
    """Bytes/s of a streaming read: summing 512 MB, far more than any cache holds."""
    x = torch.ones(128 * 2 ** 20)  # float32
    return x.numel() * 4 / best(lambda: x.sum(), repeat)


def kernel_bandwidths(repeat=5):
    """Bytes/s each matrix-vector kernel reaches on a (262144, 640) matrix -- the Gemma head."""
    from minigemma.pack import PackedLinear
    from minigemma.quant_formats import quantize_int4, quantize_int8
    from minigemma.quant_layers import Int4Linear, Int8Linear
    from minigemma.quantize import weight_bytes
    from minigemma.rowblocks import linear

    w = torch.randn(262144, 640)
    out = {}
    for name, dtype in (("float32", torch.float32), ("bfloat16", torch.bfloat16)):
        wd, x = w.to(dtype), torch.randn(1, 640, dtype=dtype)
        out[f"{name} F.linear"] = wd.numel() * wd.element_size() / best(lambda: torch.nn.functional.linear(x, wd),
                                                                         repeat)
    x = torch.randn(1, 640)
    out["float32 row blocks (minigemma)"] = w.numel() * 4 / best(lambda: linear(x, w), repeat)
    wb, x = w.bfloat16(), x.bfloat16()
    packed = PackedLinear(wb)
    out["bfloat16 oneDNN-packed (minigemma, pack=True)"] = wb.numel() * 2 / best(lambda: packed(x), repeat)
    del packed
    for act, dtype in (("bf16", torch.bfloat16), ("float32", torch.float32)):  # the activations' dtype
        x = torch.randn(1, 640, dtype=dtype)
        for name, layer in (("int8", Int8Linear(*quantize_int8(w), dtype)),
                            ("int4 (group 32)", Int4Linear(*quantize_int4(w, 32), dtype))):
            out[f"{name}, {act} activations"] = weight_bytes(layer) / best(lambda: layer(x), repeat)
    return out


def step_bytes(model, context):
    """Bytes one decode step reads: every weight once (an embedding only as the tied head: the
    lookup reads one row) plus the keys and values of ``context`` earlier tokens."""
    from minigemma.cache import layer_slots
    from minigemma.quantize import weight_bytes

    cfg = model.config
    kv = sum(2 * cfg.kv_heads_of(i) * layer_slots(cfg, i, context) * cfg.head_dim_of(i) for i in
             range(cfg.num_hidden_layers) if cfg.kv_donor(i) is None) * torch.empty(0, dtype=model.dtype).element_size()
    return weight_bytes(model) + kv


@torch.no_grad()
def roofline(args, n=32, repeat=3):
    import copy

    from transformers import AutoModelForCausalLM

    path = resolve("gemma3-270m")
    bandwidth = read_bandwidth()
    kernels = kernel_bandwidths()
    base, tok = minigemma.load(path, progress=False)
    ours = {"float32": base, "bfloat16": copy.deepcopy(base).to(torch.bfloat16),
            "bfloat16, pack=True": minigemma.load(path, progress=False, pack=True)[0]}
    for mode in ("int8", "int4", "int4-all"):  # bf16 activations: load's default with quantize
        ours[mode] = minigemma.load(path, progress=False, quantize=mode)[0]
    hf32 = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype=torch.float32).eval()
    theirs = {"float32": hf32, "bfloat16": copy.deepcopy(hf32).to(torch.bfloat16)}
    prompt = tok.encode((ROOT / "data" / "sample_text.txt").read_text(), add_bos=True)[:16]

    def ours_gen(model, k):
        return lambda: list(minigemma.generate_ids(model, prompt, max_new_tokens=k))

    def hf_gen(model, k):
        return lambda: model.generate(torch.tensor([prompt]), max_new_tokens=k, min_new_tokens=k, do_sample=False,
                                      eos_token_id=None, pad_token_id=0)

    # tokens/s of the decode steps alone: n / (time for n + 1 tokens - time for 1).
    # Interleave: every round times each configuration once, so drift of the machine hits all alike.
    runs = {("minigemma", k): (ours_gen, m) for k, m in ours.items()}
    runs.update({("transformers", k): (hf_gen, m) for k, m in theirs.items()})
    for gen, m in runs.values():
        gen(m, 2)()  # warm-up
    rates = {key: [] for key in runs}
    for _ in range(repeat):
        for key, (gen, m) in runs.items():
            rates[key].append(n / (timed(gen(m, n + 1), 1) - timed(gen(m, 1), 1)))
    context = len(prompt) + n // 2  # the average step reads this many earlier tokens' K/V
    hf_weights = {k: sum(t.numel() * t.element_size() for t in m.parameters()) for k, m in theirs.items()}

    lines = [f"Roofline, Gemma 3 270M, {args.threads} threads: streaming read bandwidth {bandwidth / 1e9:.1f} GB/s "
             "(sum of 512 MB, best of 5). Matrix-vector kernels on the 262,144 × 640 head reach: " +
             ", ".join(f"{k} {v / 1e9:.1f} GB/s" for k, v in kernels.items()) + ".", "",
             f"Decode: greedy, {n} tokens after a 16-token prompt, best and worst of {repeat} interleaved rounds.", "",
             "| program | weights | MB read per step | tokens/s (best; range) | limit (tokens/s) | fraction of limit "
             "| vs transformers float32 | vs transformers same dtype |",
             "|---|---|---:|---:|---:|---:|---:|---:|"]
    hf_best = {k: max(rates[("transformers", k)]) for k in theirs}
    peer = {"float32": "float32", "bfloat16": "bfloat16", "bfloat16, pack=True": "bfloat16"}  # same dtype
    mb = {}
    for (who, k), r in rates.items():
        # Packed weights are the bf16 numbers in another layout: a step reads what plain bf16 reads.
        same_numbers = ours["bfloat16"] if k == "bfloat16, pack=True" else ours[k]
        nbytes = step_bytes(same_numbers, context) if who == "minigemma" else hf_weights[k] + (
            step_bytes(ours[k], context) - step_bytes(ours[k], 0))
        mb[(who, k)] = nbytes / 1e6
        limit = bandwidth / nbytes
        same = f"{max(r) / hf_best[peer[k]]:.2f}×" if k in peer else "—"
        lines.append(f"| {who} | {k} | {nbytes / 1e6:,.0f} | {max(r):.1f} ({min(r):.1f}–{max(r):.1f}) | {limit:.1f} "
                     f"| {100 * max(r) / limit:.0f} % | {max(r) / hf_best['float32']:.2f}× | {same} |")
    table = "\n".join(lines)
    print(table, flush=True)
    (ROOT / "benchmarks" / "results_roofline.md").write_text(table + "\n")
    import json

    rows = [{"program": who, "weights": k, "tokens_per_s": max(r), "range": [min(r), max(r)],
             "mb_per_step": mb[(who, k)]} for (who, k), r in rates.items()]
    (ROOT / "benchmarks" / "results_roofline.json").write_text(json.dumps(
        {"threads": args.threads, "bandwidth": bandwidth, "kernels": kernels, "rows": rows}, indent=1))
    return table


if __name__ == "__main__":
    main()
