"""Solutions to the exercises of notebooks/03_rope_and_p_rope.ipynb."""

import math

import torch

from minigemma.rope import inv_frequencies


def slowest_turn(config, i):
    freqs = inv_frequencies(config.head_dim_of(i), config.rope_parameters[config.layer_types[i]])  # (d/2,)
    return 2 * math.pi / float(freqs[freqs > 0].min())  # frequency-0 pairs never turn: leave them out


def interleaved_rope(x, inv_freq, positions):  # the notebook's helper: x (B, heads, T, d), pairs (2i, 2i + 1)
    angles = positions.float()[:, None] * inv_freq[None, :]  # (T, d/2)
    x1, x2 = x[..., 0::2], x[..., 1::2]  # (B, heads, T, d/2) each
    return torch.stack([x1 * angles.cos() - x2 * angles.sin(), x1 * angles.sin() + x2 * angles.cos()], dim=-1).flatten(-2)


def to_rotate_half(w, n_heads, head_dim):
    # new lane j < d/2 takes old lane 2j (the pair's first number), lane j + d/2 takes lane 2j + 1
    order = torch.cat([torch.arange(0, head_dim, 2), torch.arange(1, head_dim, 2)])  # (head_dim,)
    return w.view(n_heads, head_dim, -1)[:, order].reshape(n_heads * head_dim, -1)  # each head on its own


# Why it works: interleaved RoPE turns the pair (2i, 2i + 1) by position * f_i; after the reordering
# those two numbers sit in lanes i and i + d/2, which apply_rope turns by the same angle. The keys get
# the same reordering, and a dot product does not change when both vectors' lanes are permuted alike.
# With p-RoPE nothing changes: the pairs with frequency 0 stand still in both layouts.


# Exercise 3.3 (open), an answer: the slowest sliding pair turns 2*pi / 58,470 radians per token, so
# across a 512-token window it turns 512 / 58,470 of a turn, about 3 degrees (6 degrees over 1,024).
# Inside the window it is almost a non-turning pair: its score barely depends on distance, so it
# works as a content channel. Full RoPE with a large base thus already contains near-static pairs;
# p-RoPE on global layers makes that explicit and exact (frequency 0, no drift at any distance),
# and keeps only the fast pairs, which wrap every 188 tokens or sooner, for position.
