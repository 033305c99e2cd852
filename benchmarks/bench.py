"""minigemma vs transformers on the same Gemma 3 270M weights, in one run, as ratios.

    python benchmarks/bench.py [--threads 2] [--out benchmarks/results.md]

Measures (median of several runs, float32, same torch thread count for both):
- load time: the GGUF file to a ready model;
- prefill: tokens/s for a 512-token prompt (computing next-token logits, as generation does);
- decode: tokens/s for greedy generation with the KV cache, after a 16-token prompt;
- tokenizer: characters/s encoding the corpus and sample text, minigemma (pure Python, word cache
  cleared before each run) vs transformers' tokenizer (the `tokenizers` library, Rust).
A ratio above 1.0 means minigemma is faster. Not a test: timings depend on the machine.
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
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
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
    Path(args.out).write_text(table + "\n")


if __name__ == "__main__":
    main()
