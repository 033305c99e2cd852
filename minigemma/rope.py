"""Rotary position embeddings (RoPE).

RoPE encodes a token's position by rotating pairs of query/key dimensions by an angle that grows
with the position: pair ``i`` turns by ``position · θ^(-2i/d)``. A dot product between a rotated
query and a rotated key then depends only on their *distance*. Gemma pairs dimension ``i`` with
``i + d/2`` ("rotate half"), not neighbours. Gemma 3 uses two bases: 10,000 on sliding layers
(fast-turning, good for nearby tokens) and 1,000,000 on global layers (slow, for long range).
``linear`` scaling (Gemma 3 4B+) divides every frequency by a factor to stretch the context.

**Proportional RoPE (p-RoPE), Gemma 4's global layers.** Only the first ``p · d/2`` pairs rotate
(``p = partial_rotary_factor = 0.25``); the other pairs get frequency 0 and pass through untouched,
so those dimensions compare content regardless of distance -- which helps at long context. The
rotating pairs keep the *full* head dim in their exponent (``θ^(-2i/d)``, not ``θ^(-2i/(p·d))``),
and the zeros sit at the end of the frequency vector so pairs stay ``(i, i + d/2)``.
"""

import torch


def inv_frequencies(head_dim: int, rope: dict) -> torch.Tensor:
    """``rope`` is one entry of ``config.rope_parameters`` -> (head_dim/2,) float32 frequencies."""
    theta, kind = rope["rope_theta"], rope.get("rope_type", "default")
    rotated = head_dim // 2  # pairs that rotate
    if kind == "proportional":
        rotated = int(rope.get("partial_rotary_factor", 1.0) * head_dim // 2)
    exponents = torch.arange(0, 2 * rotated, 2, dtype=torch.int64, device="cpu").float() / head_dim
    inv_freq = torch.cat([1.0 / theta ** exponents, torch.zeros(head_dim // 2 - rotated, device="cpu")])  # (d/2,)
    if kind in ("linear", "proportional"):
        inv_freq = inv_freq / rope.get("factor", 1.0)
    return inv_freq


def cos_sin(inv_freq: torch.Tensor, positions: torch.Tensor, dtype=torch.float32):
    """(d/2,) frequencies, (T,) positions -> cos, sin: (T, d), both halves repeated."""
    angles = positions.float()[:, None] * inv_freq.to(positions.device)[None, :]  # (T, d/2)
    emb = torch.cat([angles, angles], dim=-1)  # (T, d): pair i and i + d/2 share an angle
    return emb.cos().to(dtype), emb.sin().to(dtype)


def rotate_half(x):
    """(x1, x2) -> (-x2, x1) on the two halves of the last dimension."""
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat([-x2, x1], dim=-1)


def apply_rope(x, cos, sin):
    """x: (B, heads, T, d), cos/sin: (T, d) -> x rotated, same shape."""
    return x * cos + rotate_half(x) * sin
