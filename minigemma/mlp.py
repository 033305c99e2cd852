"""Gemma's feed-forward block: a gated GELU MLP.

``down(gelu(gate(x)) ⊙ up(x))``: two parallel projections up to ``intermediate_size``, one passed
through GELU (tanh approximation) acting as a soft gate on the other, then a projection back down.
"""

import torch.nn.functional as F
from torch import nn

from .row_exact import each_row



class MLP(nn.Module):
    def __init__(self, hidden_size: int, intermediate_size: int):
        super().__init__()
        self.gate_proj = nn.Linear(hidden_size, intermediate_size, bias=False)
        self.up_proj = nn.Linear(hidden_size, intermediate_size, bias=False)
        self.down_proj = nn.Linear(intermediate_size, hidden_size, bias=False)

    def forward(self, x):  # (B, T, D) -> (B, T, D)
        gate = each_row(gelu, self.gate_proj(x))  # (one row per call in a verifying pass)
        return self.down_proj(gate * self.up_proj(x))


def gelu(x):
    return F.gelu(x, approximate="tanh")
