"""Solutions to the exercises of notebooks/03_rope_and_p_rope.ipynb."""

import math

from minigemma.rope import inv_frequencies


def slowest_turn(config, i):
    freqs = inv_frequencies(config.head_dim_of(i), config.rope_parameters[config.layer_types[i]])  # (d/2,)
    return 2 * math.pi / float(freqs[freqs > 0].min())  # frequency-0 pairs never turn: leave them out


def turning_pairs(config):
    rope = config.rope_parameters["full_attention"]
    return int(rope.get("partial_rotary_factor", 1.0) * config.global_head_dim // 2)


# Exercise 3.3 (open), an answer: the slowest sliding pair turns 2*pi / 58,470 radians per token, so
# across a 512-token window it turns 512 / 58,470 of a turn, about 3 degrees (6 degrees over 1,024).
# Inside the window it is almost a non-turning pair: its score barely depends on distance, so it
# works as a content channel. Full RoPE with a large base thus already contains near-static pairs;
# p-RoPE on global layers makes that explicit and exact (frequency 0, no drift at any distance),
# and keeps only the fast pairs, which wrap every 188 tokens or sooner, for position.
