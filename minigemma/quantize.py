"""Weight-only quantisation: int8 per output channel, int4 per group of 32, from scratch.

Decoding one token reads every weight once, so a decoder on a CPU is limited by memory bandwidth,
not by arithmetic (see ``benchmarks/bench.py``). Storing weights in fewer bits and expanding them
inside the matrix product reads fewer bytes: 1 byte per weight instead of 4 (int8), or half a
byte (int4). Activations stay in float; only the stored weights shrink.

* **int8, per output channel (row):** ``w[n, :] ≈ scale[n] · q[n, :]`` with ``q`` in -127..127 and
  ``scale[n] = max |w[n, :]| / 127``. One float per row of 640-2048 weights costs nothing.
* **int4, per group:** a row is cut into groups of ``G`` (32) consecutive weights, each with its own
  affine map ``w ≈ scale · q + low``, ``q`` in 0..15, ``low = min``, ``scale = (max - min) / 15``.
  Sixteen levels are too few for a whole row (one large weight would flatten all the others), so
  the range is fitted per 32 weights; the two floats per group cost 2·32/32 bits per weight extra
  in bf16 (0.625 bytes per weight in all).
* **Which layers take 4 bits:** not all alike. ``quantize="int4"`` keeps the layer types that the
  measured sensitivity table (``benchmarks/quality.py``, notebook 12) shows to be fragile at 8 bits
  (``INT4_KEEPS_INT8``), like llama.cpp's Q4_K_M mixes; ``"int4-all"`` puts every one at 4 bits.

The products run on PyTorch's CPU kernels for packed weights (``aten._weight_int8pack_mm``,
``aten._weight_int4pack_mm_for_cpu``); both compute ``x @ dequantised(w).T`` without ever
materialising the float weight. With 2 threads on our x86 machine they are fast only for bf16
activations (the 262,144 × 640 head: int8 17 ms, int4 5 ms, vs 82 and 145 ms with float32 ones
and 69 ms for the float32 matrix), so ``load(..., quantize=...)`` runs in bf16 unless asked
otherwise. The int4 kernel wants its codes in a tiled layout, which
``pack_int4`` builds here in three lines (rows in tiles of 64; for each column, byte ``j`` of a tile
holds row ``j`` in its low nibble and row ``32 + j`` in its high one).

Those kernels are built for decoding, a few rows of activations at a time. For a long prompt
(prefill, perplexity) they are much slower than a float matrix product, and prefill is limited by
arithmetic, not by reading weights; so from ``PREFILL_ROWS`` rows on, a layer dequantises its
weights a block of ``BLOCK_ROWS`` output rows at a time and multiplies in float (``blockwise``):
the same numbers, and never more than one block of float weights in memory.

The embedding is quantised the same way: its rows are looked up (and dequantised one token at a
time), and the same codes serve the tied output head, the largest matrix product of a step.
In a mixture-of-experts layer every expert's two matrices are quantised like any linear layer
(``QuantExperts``: the fused gate/up matrix takes ``up_proj``'s format, the down matrix
``down_proj``'s); the router, a 128-way decision from a tiny matrix, stays in float.

Loading a GGUF file: llama.cpp's Q4_K and Q4_0 blocks *are* affine 4-bit codes per 32 values, so
tensors stored that way move into our int4 format code for code (only the scales are rounded to
the model dtype). Q8_0, Q5_0 and Q6_K have no such match (per-block scales of 32 or 16 values for
int8 per row, 5 or 6 bits for int4): they are quantised again from their float values.
"""

import torch
import torch.nn.functional as F
from torch import nn

from .linear import PackedLinear
from .moe import Experts, experts_loop

MODES = ("int8", "int4", "int4-all")
DTYPES = (torch.float32, torch.bfloat16, torch.float16)  # what the packed kernels accept
GROUP_SIZES = (32, 64, 128, 256)  # what the int4 kernel accepts
# Layer types that "int4" keeps at 8 bits: the most sensitive in the measured table (notebook 12).
INT4_KEEPS_INT8 = ("embed_tokens", "v_proj", "up_proj")
# The nn.Linear layers and embeddings we quantise, by the last part of their name.
LINEAR_KINDS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj",
                "per_layer_input_gate", "per_layer_projection", "per_layer_model_projection")
EMBEDDING_KINDS = ("embed_tokens", "embed_tokens_per_layer")


# ---------------------------------------------------------------------------------------------
# The formats: quantise, dequantise (the reference), pack for the kernel.

def quantize_int8(w):
    """w: (N, K) float -> codes (N, K) int8 in -127..127, scale (N,) float32; w ≈ scale[:, None] · q."""
    w = w.float()
    scale = w.abs().amax(dim=1) / 127  # (N,): the largest weight of each row maps to ±127
    scale = torch.where(scale > 0, scale, torch.ones_like(scale))  # an all-zero row: any scale works
    q = torch.round(w / scale[:, None]).clamp(-127, 127).to(torch.int8)
    return q, scale


def dequantize_int8(q, scale):
    """codes (N, K), scale (N,) -> (N, K) float32."""
    return q.float() * scale.float()[:, None]


def quantize_int4(w, group_size=32):
    """w: (N, K) float -> codes (N, K) uint8 in 0..15, scale and low (N, K // G) float32;
    each group of G consecutive weights in a row: w ≈ scale · q + low."""
    N, K = w.shape
    g = w.float().reshape(N, K // group_size, group_size)  # (N, groups, G)
    low, high = g.amin(dim=2), g.amax(dim=2)  # (N, groups)
    scale = (high - low) / 15  # 16 levels span [min, max]
    scale = torch.where(scale > 0, scale, torch.ones_like(scale))  # a constant group: q = 0 -> low
    q = torch.round((g - low[..., None]) / scale[..., None]).clamp(0, 15).to(torch.uint8)
    return q.reshape(N, K), scale, low


def dequantize_int4(q, scale, low):
    """codes (N, K), scale/low (N, K // G) -> (N, K) float32."""
    N, K = q.shape
    G = K // scale.shape[1]
    w = q.float().reshape(N, -1, G) * scale.float()[..., None] + low.float()[..., None]
    return w.reshape(N, K)


def pack_int4(q):
    """codes (N, K) in 0..15, N a multiple of 64 -> (N, K // 2) uint8 in the CPU kernel's layout.

    Rows come in tiles of 64; within a tile, for each column, byte j holds row j (low nibble)
    and row 32 + j (high nibble). Equal to ``aten._convert_weight_to_int4pack_for_cpu`` (tested).
    """
    N, K = q.shape
    tiles = q.to(torch.uint8).reshape(N // 64, 64, K).transpose(1, 2)  # (N/64, K, 64)
    packed = tiles[..., :32] | (tiles[..., 32:] << 4)  # (N/64, K, 32)
    return packed.reshape(N, K // 2).contiguous()


def unpack_int4_rows(packed, rows, K):
    """packed (N, K // 2) from ``pack_int4``, rows (M,) -> their codes (M, K): the inverse, for lookups."""
    tiles = packed.view(-1, K, 32)  # (N/64, K, 32)
    tile, j = rows // 64, rows % 64
    b = tiles[tile, :, j % 32]  # (M, K): the byte holding each wanted code
    return torch.where(j[:, None] < 32, b & 0x0F, b >> 4)


# ---------------------------------------------------------------------------------------------
# Modules that replace nn.Linear / nn.Embedding.

PREFILL_ROWS = 16  # from this many activation rows on, dequantise and multiply in float
BLOCK_ROWS = 8192  # output rows dequantised at a time (8192 × 640 floats: 21 MB in float32)


def blockwise(layer, x):
    """x (M, K) -> (M, N): ``x @ dequantised(w).T``, dequantising ``BLOCK_ROWS`` rows of w at a time."""
    N = layer.out_features
    return torch.cat([x @ layer.rows(torch.arange(s, min(s + BLOCK_ROWS, N))).T
                      for s in range(0, N, BLOCK_ROWS)], dim=1)


class Int8Linear(nn.Module):
    """``y = x @ (scale · q).T`` with q: (out, in) int8 -- one byte per weight."""

    def __init__(self, q, scale, dtype):
        super().__init__()
        self.out_features, self.in_features = q.shape
        self.register_buffer("q", q.contiguous())  # (N, K) int8
        self.register_buffer("scale", scale.to(dtype))  # (N,): the kernel wants the activations' dtype

    def forward(self, x):  # (..., K) -> (..., N)
        x2 = x.reshape(-1, self.in_features)  # (M, K)
        if x2.shape[0] >= PREFILL_ROWS:
            return blockwise(self, x2).view(*x.shape[:-1], self.out_features)
        y = torch.ops.aten._weight_int8pack_mm(x2, self.q, self.scale)
        return y.view(*x.shape[:-1], self.out_features)

    def rows(self, ids):
        """ids (M,) -> the dequantised rows (M, K), for an embedding lookup."""
        return self.q[ids].to(self.scale.dtype) * self.scale[ids, None]

    def dequantized(self):
        return dequantize_int8(self.q, self.scale)


class Int4Linear(nn.Module):
    """``y = x @ (scale · q + low).T`` per group of G inputs, q in 0..15 -- half a byte per weight."""

    def __init__(self, q, scale, low, dtype):
        super().__init__()
        N, K = q.shape
        self.out_features, self.in_features, self.group_size = N, K, K // scale.shape[1]
        pad = -N % 64  # the packed layout works on tiles of 64 rows: pad with zero rows
        q, scale, low = F.pad(q, (0, 0, 0, pad)), F.pad(scale, (0, 0, 0, pad)), F.pad(low, (0, 0, 0, pad))
        self.register_buffer("packed", pack_int4(q))  # (N + pad, K / 2) uint8
        # The kernel computes (q - 8) · scale + zero, so zero = low + 8 · scale; (groups, N + pad, 2).
        zero = low.float() + 8 * scale.float()
        self.register_buffer("scale_zero", torch.stack([scale.float().T, zero.T], dim=2).to(dtype).contiguous())

    def forward(self, x):  # (..., K) -> (..., N)
        x2 = x.reshape(-1, self.in_features)  # (M, K)
        if x2.shape[0] >= PREFILL_ROWS:
            return blockwise(self, x2).view(*x.shape[:-1], self.out_features)
        y = torch.ops.aten._weight_int4pack_mm_for_cpu(x2, self.packed, self.group_size,
                                                       self.scale_zero)  # (M, N + pad)
        if y.shape[1] != self.out_features:
            y = y[:, :self.out_features]
        return y.reshape(*x.shape[:-1], self.out_features)

    def codes(self, rows):
        """rows (M,) -> codes (M, K) and the (M, groups) scale and low of those rows."""
        q = unpack_int4_rows(self.packed, rows, self.in_features)
        scale, zero = self.scale_zero[:, rows, 0].T, self.scale_zero[:, rows, 1].T  # (M, groups)
        return q, scale, zero - 8 * scale

    def rows(self, ids):
        """ids (M,) -> the dequantised rows (M, K), for an embedding lookup."""
        q, scale, low = self.codes(ids)
        G = self.group_size
        w = q.to(scale.dtype).view(len(ids), -1, G) * scale[..., None] + low[..., None]
        return w.view(len(ids), self.in_features)

    def dequantized(self):
        return dequantize_int4(*self.codes(torch.arange(self.out_features)))


class QuantEmbedding(nn.Module):
    """A quantised embedding table: rows looked up and dequantised, and, for the tied head,
    the same codes used as a linear layer (``as_head``: (..., D) -> (..., vocab))."""

    def __init__(self, table):
        super().__init__()
        self.table = table  # an Int8Linear or Int4Linear of shape (vocab, D)
        self.num_embeddings, self.embedding_dim = table.out_features, table.in_features

    def forward(self, ids):  # (B, T) -> (B, T, D)
        return self.table.rows(ids.reshape(-1)).view(*ids.shape, self.embedding_dim)

    def as_head(self, x):
        return self.table(x)


class QuantExperts(Experts):
    """A mixture-of-experts layer's experts with quantised weights, each expert's matrices an
    ``Int8Linear`` / ``Int4Linear``. ``F.grouped_mm`` cannot take packed matrices, so these run
    the Python loop over the picked experts (``moe.experts_loop``) through ``expert_mlp``."""

    def __init__(self, gate_up, down):
        nn.Module.__init__(self)  # not Experts.__init__: no float weights to allocate
        self.num_experts = len(gate_up)
        self.gate_up, self.down = nn.ModuleList(gate_up), nn.ModuleList(down)  # E × (2I, D), E × (D, I)

    def expert_mlp(self, e, x):
        gate, up = self.gate_up[e](x).chunk(2, dim=-1)  # (n, I) each
        return self.down[e](F.gelu(gate, approximate="tanh") * up)

    def forward(self, x, index, weights):
        return experts_loop(self, x, index, weights)


# ---------------------------------------------------------------------------------------------
# Applying a mode to a whole model.

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


def format_of(kind, quantize):
    """The format ('int8' or 'int4') a layer type gets in a mode."""
    if quantize == "int8" or (quantize == "int4" and kind in INT4_KEEPS_INT8):
        return "int8"
    return "int4"


def quantized_layer(name, weight, fmt, group_size, dtype, gguf_blocks=None):
    """One (N, K) weight -> an Int8Linear or Int4Linear. ``gguf_blocks``: (codes, scale, low) of a
    4-bit GGUF tensor, used as they are when they are in the same format."""
    if fmt == "int8":
        return Int8Linear(*quantize_int8(weight), dtype)
    N, K = weight.shape
    if K % group_size:
        raise ValueError(f"{name}: a ({N}, {K}) weight cannot be quantised to int4 with groups of {group_size}: "
                         f"its input width {K} is not a multiple of {group_size} (use quantize='int8', or "
                         f"a group size dividing {K})")
    if gguf_blocks is not None and group_size == 32:
        q, scale, low = gguf_blocks
        return Int4Linear(q.reshape(N, K), scale.reshape(N, K // 32), low.reshape(N, K // 32), dtype)
    return Int4Linear(*quantize_int4(weight, group_size), dtype)


TOWERS = ("vision_tower.", "embed_vision.", "audio_tower.", "embed_audio.")


def quantize_model(model, quantize, group_size=32, gguf=None, formats=None):
    """Replace every quantisable layer of ``model`` in place; returns the model.

    ``gguf``: the GGUFFile the model came from, to take its 4-bit blocks as they are.
    ``formats``: {layer kind: 'int8' | 'int4' | None} overriding the mode (None keeps float);
    used to measure each layer type's sensitivity on its own.
    """
    dtype = model.norm.weight.dtype
    check_quantize_args(quantize or "int8", dtype, group_size)
    gguf_name = {}
    if gguf is not None:
        from .weights import gguf_to_ours

        gguf_name = {gguf_to_ours(n): n for n in gguf.tensors}
    targets = [(name, module) for name, module in model.named_modules()
               if name.rsplit(".", 1)[-1] in LINEAR_KINDS + EMBEDDING_KINDS
               and isinstance(module, (nn.Linear, nn.Embedding))
               and not name.startswith(TOWERS)]  # the vision/audio towers stay in float
    for name, module in targets:
        kind = name.rsplit(".", 1)[-1]
        fmt = formats.get(kind, format_of(kind, quantize)) if formats is not None else format_of(kind, quantize)
        if fmt is None:
            continue
        blocks = _gguf_int4_blocks(gguf, gguf_name.get(name + ".weight")) if fmt == "int4" else None
        layer = quantized_layer(name, module.weight.data, fmt, group_size, dtype, blocks)
        if isinstance(module, nn.Embedding):
            layer = QuantEmbedding(layer)
        parent, _, attr = name.rpartition(".")
        setattr(model.get_submodule(parent) if parent else model, attr, layer)
    experts = [(name, module) for name, module in model.named_modules() if type(module) is Experts]
    for name, module in experts:
        if formats is not None:
            fmt_gate_up = fmt_down = formats.get("experts")
        else:
            fmt_gate_up, fmt_down = format_of("up_proj", quantize), format_of("down_proj", quantize)
        if fmt_gate_up is None:
            continue
        gate_up = [quantized_layer(f"{name}.gate_up_proj[{e}]", w, fmt_gate_up, group_size, dtype)
                   for e, w in enumerate(module.gate_up_proj.data)]
        down = [quantized_layer(f"{name}.down_proj[{e}]", w, fmt_down, group_size, dtype)
                for e, w in enumerate(module.down_proj.data)]
        parent, _, attr = name.rpartition(".")
        setattr(model.get_submodule(parent), attr, QuantExperts(gate_up, down))
    return model


def _gguf_int4_blocks(gguf, name):
    """(codes, scale, low) as torch tensors if the GGUF stores ``name`` as Q4_K or Q4_0, else None."""
    if gguf is None or name is None:
        return None
    import numpy as np

    from .gguf import TYPES, q4_0_parts, q4_k_parts

    info = gguf.tensors[name]
    parts = {"Q4_K": q4_k_parts, "Q4_0": q4_0_parts}.get(info.type_name)
    if parts is None:
        return None
    block_bytes = next(t[2] for t in TYPES.values() if t[0] == info.type_name)
    raw = np.frombuffer(gguf._buf, dtype=np.uint8, count=info.nbytes, offset=info.offset).reshape(-1, block_bytes)
    return tuple(torch.from_numpy(np.ascontiguousarray(a)) for a in parts(raw))


def dequantized_copy_state(model):
    """The float state dict a quantised model stands for: every quantised weight dequantised
    (the reference that its packed kernels must match within rounding)."""
    state, quantized = {}, set()
    experts = [name for name, module in model.named_modules() if isinstance(module, QuantExperts)]
    for name in experts:
        module = model.get_submodule(name)
        state[name + ".gate_up_proj"] = torch.stack([layer.dequantized() for layer in module.gate_up])
        state[name + ".down_proj"] = torch.stack([layer.dequantized() for layer in module.down])
    for name, module in model.named_modules():
        if any(name.startswith(e + ".") for e in experts):
            quantized.add(name)  # their float form is the stacked tensors above
            continue
        if isinstance(module, (Int8Linear, Int4Linear)):
            quantized.add(name)
            owner = name[:-len(".table")] if name.endswith(".table") else name
            state[owner + ".weight"] = module.dequantized()
    for name, t in model.state_dict().items():
        if name.rpartition(".")[0] not in quantized:
            state[name] = t.float()
    return state


def weight_bytes(model):
    """Bytes the model's parameters and buffers hold (weights as stored: codes + scales), plus the
    oneDNN-packed weights of ``linear.PackedLinear`` layers, which are neither."""
    packed = [m.packed for m in model.modules() if isinstance(m, PackedLinear)]
    return sum(t.numel() * t.element_size() for t in list(model.parameters()) + list(model.buffers()) + packed)
