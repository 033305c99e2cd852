"""Audio: log-mel features and the conformer tower, minigemma vs transformers on the same input and
weights, runs interleaved (``bench.ab``), as seconds and ratios.

    python benchmarks/bench_audio.py [--threads 2] [--layers 4]

The tower has the released width (1024, 8 heads, subsampler 128/32, output 1536) with random
weights and ``--layers`` conformer blocks (the real tower has 12; time grows linearly with them).
Each clip runs alone on both sides (batch of one). Not a test: timings depend on the machine.
"""

import argparse
import platform
import time
from pathlib import Path

import numpy as np
import torch
from bench import ab  # benchmarks/bench.py, beside this file

from minigemma import AudioConfig, AudioTower, audio_features
from minigemma.log_mel import SAMPLING_RATE as SR

ROOT = Path(__file__).resolve().parents[1]


@torch.no_grad()
def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results_audio.md"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    import transformers
    from transformers import Gemma4AudioConfig, Gemma4AudioFeatureExtractor
    from transformers.models.gemma4.modeling_gemma4 import Gemma4AudioModel

    extractor = Gemma4AudioFeatureExtractor()
    ours = AudioTower(AudioConfig(num_hidden_layers=args.layers)).eval()
    gen = torch.Generator().manual_seed(0)
    for p in ours.parameters():
        p.copy_(torch.randn(p.shape, generator=gen) / max(1, p[0].numel()) ** 0.5 if p.ndim > 1 else 1 + 0 * p)
    hf = Gemma4AudioModel(Gemma4AudioConfig(num_hidden_layers=args.layers)).eval()
    hf.load_state_dict(ours.state_dict())
    rows = []
    for seconds in (2, 10, 30):
        wave = np.random.default_rng(seconds).uniform(-0.5, 0.5, seconds * SR).astype(np.float32)
        feats = audio_features(wave, sampling_rate=SR)
        ref = extractor([wave], return_tensors="pt")
        x, mask = ref["input_features"], ref["input_features_mask"]
        torch.testing.assert_close(ours([feats]), hf(x, mask).last_hidden_state[mask[:, ::4]], atol=1e-3, rtol=1e-3)
        t_feat = ab(lambda: audio_features(wave, sampling_rate=SR), lambda: extractor([wave], return_tensors="np"), 9)
        t_tower = ab(lambda: ours([feats]), lambda: hf(x, mask), 5 if seconds < 30 else 3)
        rows.append((seconds, t_feat, t_tower))
    lines = [f"Audio, float32, {args.threads} threads, tower width 1024 with {args.layers} of 12 layers, random weights, "
             f"torch {torch.__version__}, transformers {transformers.__version__}, {platform.machine()}, measured "
             f"{time.strftime('%Y-%m-%d')}. Median seconds of interleaved runs; ratio = transformers ÷ minigemma "
             "(> 1: minigemma faster).", "",
             "| clip | features: minigemma | transformers | ratio | tower: minigemma | transformers | ratio |",
             "|---:|---:|---:|---:|---:|---:|---:|"]
    for seconds, (fa, fb), (ta, tb) in rows:
        lines.append(f"| {seconds} s | {fa * 1000:.1f} ms | {fb * 1000:.1f} ms | {fb / fa:.2f}× "
                     f"| {ta * 1000:.0f} ms | {tb * 1000:.0f} ms | {tb / ta:.2f}× |")
    table = "\n".join(lines)
    print(table)
    Path(args.out).write_text(table + "\n")


if __name__ == "__main__":
    main()
