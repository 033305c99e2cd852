"""Vision: preprocessing and the E2B-size vision tower, minigemma vs transformers, same inputs and
weights, runs interleaved; results as ratios.

    python benchmarks/bench_vision.py [--threads 2]

Preprocessing: Grace Hopper's portrait (matplotlib's sample, 600 × 512) at 70 and 280 tokens,
``preprocess_image`` vs ``Gemma4ImageProcessorPil``. Tower: the E2B/E4B tower (768 wide, 16 layers,
clipped linears) with random weights on the 70-token image; transformers gets the padded batch its
processor produces (630 patches, 567 real), we pass the 567 real patches. Not a test: timings depend
on the machine.
"""

import argparse
import platform
import time
from dataclasses import asdict
from pathlib import Path

import torch
from bench import ab  # benchmarks/bench.py, beside this file

from minigemma.presets import VISION_PRESETS
from minigemma.preprocess import preprocess_image
from minigemma.vision import VisionTower

ROOT = Path(__file__).resolve().parents[1]


@torch.no_grad()
def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results_vision.md"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    import transformers
    from matplotlib import cbook
    from PIL import Image
    from transformers import Gemma4VisionConfig
    from transformers.models.gemma4.image_processing_pil_gemma4 import Gemma4ImageProcessorPil
    from transformers.models.gemma4.modeling_gemma4 import Gemma4VisionModel

    photo = Image.open(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)).convert("RGB")
    rows = []
    for budget in (70, 280):
        proc = Gemma4ImageProcessorPil(max_soft_tokens=budget)
        ours, theirs = ab(lambda: preprocess_image(photo, budget), lambda: proc(photo, return_tensors="pt"),
                          args.repeat * 4)
        rows.append((f"preprocess, {budget} tokens (ms)", ours * 1e3, theirs * 1e3))
    config = VISION_PRESETS["gemma4-e2b"]
    torch.manual_seed(0)
    ref = Gemma4VisionModel(Gemma4VisionConfig(**asdict(config))).eval()
    tower = VisionTower(config)
    tower.load_state_dict(ref.state_dict())
    patches, positions = preprocess_image(photo, 70)
    proc_70 = Gemma4ImageProcessorPil(max_soft_tokens=70)(photo, return_tensors="pt")
    padded = proc_70
    assert torch.allclose(tower([(patches, positions)]),
                          ref(pixel_values=padded["pixel_values"], pixel_position_ids=padded["image_position_ids"])
                          .last_hidden_state, atol=1e-3)  # same answer before timing
    ours, theirs = ab(lambda: tower([(patches, positions)]),
                      lambda: ref(pixel_values=proc_70["pixel_values"], pixel_position_ids=proc_70["image_position_ids"]),
                      args.repeat)
    rows.append(("E2B tower, one 70-token image (s)", ours, theirs))
    lines = [f"Vision, float32, {args.threads} threads, torch {torch.__version__}, transformers "
             f"{transformers.__version__}, {platform.machine()}, measured {time.strftime('%Y-%m-%d')}; medians of "
             "interleaved runs. Ratio = transformers ÷ minigemma (>1: minigemma faster).", "",
             "| measure | minigemma | transformers | ratio |", "|---|---:|---:|---:|"]
    lines += [f"| {name} | {a:.3g} | {b:.3g} | {b / a:.2f}× |" for name, a, b in rows]
    table = "\n".join(lines)
    print(table)
    Path(args.out).write_text(table + "\n")


if __name__ == "__main__":
    main()
