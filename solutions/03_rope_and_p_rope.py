"""Solutions to the exercises of notebooks/03_rope_and_p_rope.ipynb."""

import torch


def p_rope(d, theta, proportion):
    n = int(proportion * d / 2)
    turning = 1.0 / theta ** (torch.arange(0, 2 * n, 2).float() / d)
    return torch.cat([turning, torch.zeros(d // 2 - n)])


def turning_pairs(config):
    rope = config.rope_parameters["full_attention"]
    return int(rope.get("partial_rotary_factor", 1.0) * config.global_head_dim // 2)
