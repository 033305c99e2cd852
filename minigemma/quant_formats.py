"""Weight formats for quantisation: int8 per output row, int4 per group of 32, from scratch.

Decoding one token reads every weight once, so a decoder on a CPU is limited by memory bandwidth,
not by arithmetic (notebook 12's roofline). Storing weights in fewer bits and expanding them
inside the matrix product reads fewer bytes: 1 byte per weight instead of 4 (int8), or half a
byte (int4). Activations stay in float; only the stored weights shrink.

* **int8, per output channel (row):** ``w[n, :] ≈ scale[n] · q[n, :]`` with ``q`` in -127..127 and
  ``scale[n] = max |w[n, :]| / 127``. One float per row of 640-2048 weights costs nothing.
* **int4, per group:** a row is cut into groups of ``G`` (32) consecutive weights, each with its own
  affine map ``w ≈ scale · q + low``, ``q`` in 0..15, ``low = min``, ``scale = (max - min) / 15``.
  Sixteen levels are too few for a whole row (one large weight would flatten all the others), so
  the range is fitted per 32 weights; the two bf16 floats per group cost 2·16/32 = 1 bit per
  weight extra (0.625 bytes per weight in all).
* **The packed int4 layout** PyTorch's CPU kernel reads: rows in tiles of 64; for each column,
  byte ``j`` of a tile holds row ``j`` in its low nibble and row ``32 + j`` in its high one
  (``pack_int4``, three lines; ``unpack_int4_rows`` reads rows back for embedding lookups).

``dequantize_*`` give the float weights a quantised layer stands for: the reference its kernels
must match (tests) and what a long prompt multiplies by (``quant_layers.blockwise``).
"""

import torch


def quantize_int8(w):
    """w: (N, d_in) float -> codes (N, d_in) int8 in -127..127, scale (N,) float32; w ≈ scale[:, None] · q."""
    w = w.float()
    scale = w.abs().amax(dim=1) / 127  # (N,): the largest weight of each row maps to ±127
    scale = torch.where(scale > 0, scale, torch.ones_like(scale))  # an all-zero row: any scale works
    q = torch.round(w / scale[:, None]).clamp(-127, 127).to(torch.int8)
    return q, scale


def dequantize_int8(q, scale):
    """codes (N, d_in), scale (N,) -> (N, d_in) float32."""
    return q.float() * scale.float()[:, None]


def quantize_int4(w, group_size=32):
    """w: (N, d_in) float -> codes (N, d_in) uint8 in 0..15, scale and low (N, d_in // G) float32;
    each group of G consecutive weights in a row: w ≈ scale · q + low."""
    N, d_in = w.shape
    g = w.float().reshape(N, d_in // group_size, group_size)  # (N, groups, G)
    low, high = g.amin(dim=2), g.amax(dim=2)  # (N, groups)
    scale = (high - low) / 15  # 16 levels span [min, max]
    scale = torch.where(scale > 0, scale, torch.ones_like(scale))  # a constant group: q = 0 -> low
    q = torch.round((g - low[..., None]) / scale[..., None]).clamp(0, 15).to(torch.uint8)
    return q.reshape(N, d_in), scale, low


def dequantize_int4(q, scale, low):
    """codes (N, d_in), scale/low (N, d_in // G) -> (N, d_in) float32."""
    N, d_in = q.shape
    G = d_in // scale.shape[1]
    w = q.float().reshape(N, -1, G) * scale.float()[..., None] + low.float()[..., None]
    return w.reshape(N, d_in)


def pack_int4(q):
    """codes (N, d_in) in 0..15, N a multiple of 64 -> (N, d_in // 2) uint8 in the CPU kernel's layout.

    Rows come in tiles of 64; within a tile, for each column, byte j holds row j (low nibble)
    and row 32 + j (high nibble). Equal to ``aten._convert_weight_to_int4pack_for_cpu`` (tested).
    """
    N, d_in = q.shape
    tiles = q.to(torch.uint8).reshape(N // 64, 64, d_in).transpose(1, 2)  # (N/64, d_in, 64)
    packed = tiles[..., :32] | (tiles[..., 32:] << 4)  # (N/64, d_in, 32)
    return packed.reshape(N, d_in // 2).contiguous()


def unpack_int4_rows(packed, rows, d_in):
    """packed (N, d_in // 2) from ``pack_int4``, rows (M,) -> their codes (M, d_in): the inverse, for lookups."""
    tiles = packed.view(-1, d_in, 32)  # (N/64, d_in, 32)
    tile, j = rows // 64, rows % 64
    b = tiles[tile, :, j % 32]  # (M, d_in): the byte holding each wanted code
    return torch.where(j[:, None] < 32, b & 0x0F, b >> 4)
