"""Quantised layers: modules that replace ``nn.Linear``, ``nn.Embedding`` and the experts after loading.

Each stores its weights in a format of ``quant_formats.py`` and multiplies with PyTorch's CPU
kernels for packed weights (``aten._weight_int8pack_mm``, ``aten._weight_int4pack_mm_for_cpu``),
which compute ``x @ dequantised(w).T`` without ever materialising the float weight. Those kernels
are fast with bf16 activations and slow with float32 ones on our CPUs (the kernel table of
``benchmarks/bench.py``), which is why ``load(..., quantize=...)`` runs in bf16 by default.

They are built for decoding, a few rows of activations at a time. For a long prompt (prefill,
perplexity) they are much slower than a float matrix product, and prefill is limited by
arithmetic, not by reading weights; so from ``PREFILL_ROWS`` rows on, a layer dequantises its
weights a block of ``BLOCK_ROWS`` output rows at a time and multiplies in float (``blockwise``):
the same numbers, and never more than one block of float weights in memory. Training adapters
over a quantised model (QLoRA, ``lora.py``) takes the same float path, as the packed kernels have
no backward pass: gradients flow through the frozen dequantised weights to the layers below.

The embedding is quantised the same way (``QuantEmbedding``): its rows are looked up and
dequantised one token at a time, and the same codes serve the tied output head, the largest
matrix product of a step. In a mixture-of-experts layer every expert's two matrices are
quantised like any linear layer (``QuantExperts``).
"""

import torch
import torch.nn.functional as F
from torch import nn

from .row_exact import row_product
from .moe import Experts, experts_loop
from .quant_formats import dequantize_int4, dequantize_int8, pack_int4, unpack_int4_rows

PREFILL_ROWS = 16  # from this many activation rows on, dequantise and multiply in float
BLOCK_ROWS = 8192  # output rows dequantised at a time (8192 × 640 floats: 21 MB in float32)


def blockwise(layer, x):
    """x (M, d_in) -> (M, N): ``x @ dequantised(w).T``, dequantising ``BLOCK_ROWS`` rows of w at a time."""
    N = layer.out_features
    return torch.cat([x @ layer.rows(torch.arange(s, min(s + BLOCK_ROWS, N))).T
                      for s in range(0, N, BLOCK_ROWS)], dim=1)


class Int8Linear(nn.Module):
    """``y = x @ (scale · q).T`` with q: (out, in) int8 -- one byte per weight."""

    def __init__(self, q, scale, dtype):
        super().__init__()
        self.out_features, self.in_features = q.shape
        self.register_buffer("q", q.contiguous())  # (N, d_in) int8
        self.register_buffer("scale", scale.to(dtype))  # (N,): the kernel wants the activations' dtype

    def forward(self, x):  # (..., d_in) -> (..., N)
        key = ("int8", self.out_features, self.in_features, x.dtype)
        return row_product(self.product, x, self.in_features, key)

    def product(self, x2):  # (M, d_in) -> (M, N)
        # The kernel has no backward pass, and it reads inputs 16 at a time: for a width that is not
        # a multiple of 16 (a toy model's) it returns wrong numbers or crashes (torch 2.13, measured).
        if x2.shape[0] >= PREFILL_ROWS or x2.requires_grad or self.in_features % 16:
            return blockwise(self, x2)
        return torch.ops.aten._weight_int8pack_mm(x2, self.q, self.scale)  # (M, N)

    def rows(self, ids):
        """ids (M,) -> the dequantised rows (M, d_in), for an embedding lookup."""
        return self.q[ids].to(self.scale.dtype) * self.scale[ids, None]

    def dequantized(self):
        return dequantize_int8(self.q, self.scale)


class Int4Linear(nn.Module):
    """``y = x @ (scale · q + low).T`` per group of G inputs, q in 0..15 -- half a byte per weight."""

    def __init__(self, q, scale, low, dtype):
        super().__init__()
        N, d_in = q.shape
        self.out_features, self.in_features, self.group_size = N, d_in, d_in // scale.shape[1]
        pad = -N % 64  # the packed layout works on tiles of 64 rows: pad with zero rows
        q, scale, low = F.pad(q, (0, 0, 0, pad)), F.pad(scale, (0, 0, 0, pad)), F.pad(low, (0, 0, 0, pad))
        self.register_buffer("packed", pack_int4(q))  # (N + pad, d_in / 2) uint8
        # The kernel computes (q - 8) · scale + zero, so zero = low + 8 · scale; (groups, N + pad, 2).
        zero = low.float() + 8 * scale.float()
        self.register_buffer("scale_zero", torch.stack([scale.float().T, zero.T], dim=2).to(dtype).contiguous())

    def forward(self, x):  # (..., d_in) -> (..., N)
        key = ("int4", self.out_features, self.in_features, x.dtype)
        return row_product(self.product, x, self.in_features, key)

    def product(self, x2):  # (M, d_in) -> (M, N)
        if x2.shape[0] >= PREFILL_ROWS or x2.requires_grad:  # (the packed kernels have no backward)
            return blockwise(self, x2)
        y = torch.ops.aten._weight_int4pack_mm_for_cpu(x2, self.packed, self.group_size,
                                                       self.scale_zero)  # (M, N + pad)
        return y[:, :self.out_features].contiguous() if y.shape[1] != self.out_features else y  # (M, N)

    def codes(self, rows):
        """rows (M,) -> codes (M, d_in) and the (M, groups) scale and low of those rows."""
        q = unpack_int4_rows(self.packed, rows, self.in_features)
        scale, zero = self.scale_zero[:, rows, 0].T, self.scale_zero[:, rows, 1].T  # (M, groups)
        return q, scale, zero - 8 * scale

    def rows(self, ids):
        """ids (M,) -> the dequantised rows (M, d_in), for an embedding lookup."""
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

    def dispatch(self, x, index, weights):
        return experts_loop(self, x, index, weights)
