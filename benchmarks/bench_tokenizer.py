"""Tokenizer merge cost against text length: is BPE on one long word linear-ish or quadratic?

    python benchmarks/bench_tokenizer.py [--threads 1]

One long "word" of random letters (no pre-tokeniser cuts, so the word cache does not help and all
the work is the merge heap in ``Tokenizer._bpe_word``) is encoded at 1,000 to 16,000 characters;
each length is timed 5 times and the fastest kept. Four times the text should cost about four
times the time (a heap of merges: n log n); a quadratic merge loop would cost about sixteen times.
It used to be a test asserting the 16k/4k ratio stays below 8 (and, taking the fastest of three runs, it timed the
word cache's lookup, not the merges: the cache is emptied before each run here); timing on a shared
machine is not a test, so it prints the ratios instead. Not a test: timings depend on the machine.
"""

import argparse
import random
import time

import torch

from minigemma import Tokenizer
from minigemma.weights import resolve


def fastest(tok, text, repeat=5):
    times = []
    for _ in range(repeat):
        tok._cache.clear()  # else every run after the first is one lookup in the word cache
        start = time.perf_counter()
        tok.encode(text)
        times.append(time.perf_counter() - start)
    return min(times)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    tok = Tokenizer.from_file(resolve("gemma3-270m"))
    letters = "".join(random.Random(0).choice("abcdefghijklmnop") for _ in range(16000))
    fastest(tok, letters[:500])  # warm up
    print("| characters | seconds | ratio to 4× fewer |")
    print("|---:|---:|---:|")
    seconds = {}
    for n in (1000, 4000, 16000):
        seconds[n] = fastest(tok, letters[:n])
        ratio = f"{seconds[n] / seconds[n // 4]:.1f}" if n // 4 in seconds else ""
        print(f"| {n:,} | {seconds[n]:.4f} | {ratio} |")
    print(f"16k / 4k = {seconds[16000] / seconds[4000]:.1f} (linear: 4, quadratic: 16)")


if __name__ == "__main__":
    main()
