"""Quantising a loaded model: which layers get which format, applied as one post-load swap.

``load(..., quantize=mode)`` builds the float model, then ``quantize_model`` replaces its layers
with the quantised modules of ``quant_layers.py`` (formats in ``quant_formats.py``) through
``swap.swap_modules``, the same walk that row blocks and packing use. Modes:

* ``"int8"``: every linear layer and the embedding at 8 bits per weight (one scale per row);
* ``"int4"``: 4 bits per weight (one scale and offset per group of 32), except the layer types
  that the measured sensitivity table (``benchmarks/quality.py``, notebook 12) shows to be
  fragile, which stay at 8 bits (``INT4_KEEPS_INT8``), as llama.cpp's Q4_K_M mixes do;
* ``"int4-all"``: every one at 4 bits.

In a mixture-of-experts layer the fused gate/up matrix of every expert takes ``up_proj``'s format
and the down matrix ``down_proj``'s; the router, a 128-way decision from a tiny matrix, stays in
float, and so do the norms and the vision and audio towers (``swap.TOWERS``).

Loading a GGUF file: llama.cpp's Q4_K and Q4_0 blocks *are* affine 4-bit codes per 32 values, so
tensors stored that way move into our int4 format code for code (``gguf_int4``: only the scales are
rounded to the model dtype). Q8_0, Q5_0 and Q6_K have no such match (per-block scales of 32 or 16
values for int8 per row, 5 or 6 bits for int4): they are quantised again from their float values.
"""

import torch
from torch import nn

from .moe import Experts
from .pack import PackedLinear
from .quant_formats import quantize_int4, quantize_int8
from .quant_layers import Int4Linear, Int8Linear, QuantEmbedding, QuantExperts
from .swap import swap_modules

MODES = ("int8", "int4", "int4-all")
DTYPES = (torch.float32, torch.bfloat16, torch.float16)  # the activations the packed kernels accept
GROUP_SIZES = (32, 64, 128, 256)  # what the int4 kernel accepts
# Layer types that "int4" keeps at 8 bits: the most sensitive in the measured table (notebook 12).
INT4_KEEPS_INT8 = ("embed_tokens", "v_proj", "up_proj")
# The nn.Linear layers and embeddings we quantise, by the last part of their name.
LINEAR_KINDS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj",
                "per_layer_input_gate", "per_layer_projection", "per_layer_model_projection")
EMBEDDING_KINDS = ("embed_tokens", "embed_tokens_per_layer")


def check_quantize_args(quantize, dtype, group_size):
    """Raise a clear error for a mode, dtype or group size the kernels cannot take."""
    if quantize is None:
        return
    if quantize not in MODES:
        raise ValueError(f"unknown quantize={quantize!r}: choose None, " + ", ".join(repr(m) for m in MODES))
    if dtype not in DTYPES:
        raise ValueError(f"quantize={quantize!r} needs activations in float32, bfloat16 or float16 "
                         f"(what the packed int8/int4 kernels take), not {dtype}")
    if quantize != "int8" and group_size not in GROUP_SIZES:
        raise ValueError(f"int4 group size {group_size} is not supported: choose one of {GROUP_SIZES}")


def layer_format(kind, quantize):
    """The format ('int8' or 'int4') a layer type gets in a mode."""
    if quantize == "int8" or (quantize == "int4" and kind in INT4_KEEPS_INT8):
        return "int8"
    return "int4"


def quantized_layer(name, weight, fmt, group_size, dtype, gguf_blocks=None):
    """One (N, d_in) weight -> an Int8Linear or Int4Linear. ``gguf_blocks``: (codes, scale, low) of a
    4-bit GGUF tensor, used as they are when they are in the same format."""
    if fmt == "int8":
        return Int8Linear(*quantize_int8(weight), dtype)
    N, d_in = weight.shape
    if d_in % group_size:
        raise ValueError(f"{name}: a ({N}, {d_in}) weight cannot be quantised to int4 with groups of {group_size}: "
                         f"its input width {d_in} is not a multiple of {group_size} (use quantize='int8', or "
                         f"a group size dividing {d_in})")
    if gguf_blocks is not None and group_size == 32:
        q, scale, low = (torch.as_tensor(a) for a in gguf_blocks)
        return Int4Linear(q.reshape(N, d_in), scale.reshape(N, d_in // 32), low.reshape(N, d_in // 32), dtype)
    return Int4Linear(*quantize_int4(weight, group_size), dtype)


def quantize_model(model, quantize, group_size=32, gguf_int4=None, formats=None):
    """Replace every quantisable layer of ``model``'s text decoder in place; returns the model.

    ``gguf_int4``: {our weight name: (codes, scale, low)} of the GGUF tensors stored in 4 bits, to
    take as they are. ``formats``: {layer kind: 'int8' | 'int4' | None} overriding the mode (None
    keeps float; the key ``"experts"`` sets both expert matrices); used to measure each layer
    type's sensitivity on its own.
    """
    dtype = model.dtype
    check_quantize_args(quantize or "int8", dtype, group_size)
    gguf_int4 = gguf_int4 or {}

    def fmt_of(kind):
        return formats.get(kind, layer_format(kind, quantize)) if formats is not None else layer_format(kind, quantize)

    def replace(name, module):
        kind = name.rsplit(".", 1)[-1]
        if type(module) is Experts:
            fmt_gate_up, fmt_down = ((formats.get("experts"),) * 2 if formats is not None
                                     else (fmt_of("up_proj"), fmt_of("down_proj")))
            if fmt_gate_up is None:
                return None
            gate_up = [quantized_layer(f"{name}.gate_up_proj[{e}]", w, fmt_gate_up, group_size, dtype)
                       for e, w in enumerate(module.gate_up_proj.data)]
            down = [quantized_layer(f"{name}.down_proj[{e}]", w, fmt_down, group_size, dtype)
                    for e, w in enumerate(module.down_proj.data)]
            return QuantExperts(gate_up, down)
        wanted = (kind in LINEAR_KINDS and isinstance(module, nn.Linear)) or \
                 (kind in EMBEDDING_KINDS and isinstance(module, nn.Embedding))
        fmt = fmt_of(kind) if wanted else None
        if fmt is None:
            return None
        blocks = gguf_int4.get(name + ".weight") if fmt == "int4" else None
        layer = quantized_layer(name, module.weight.data, fmt, group_size, dtype, blocks)
        return QuantEmbedding(layer) if isinstance(module, nn.Embedding) else layer

    swap_modules(model, replace)
    return model


def weight_bytes(model):
    """Bytes the model's weights hold as stored: parameters and buffers (quantised codes and their
    scales included), plus the oneDNN-packed weights of ``pack.PackedLinear``, which are neither."""
    stored = sum(t.numel() * t.element_size() for t in list(model.parameters()) + list(model.buffers()))
    return stored + sum(m.nbytes for m in model.modules() if isinstance(m, PackedLinear))
