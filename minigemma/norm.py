"""RMSNorm, the only normalisation in Gemma.

``y = x / sqrt(mean(x²) + eps) · scale``. Gemma computes it in float32 whatever the model dtype and
casts back at the end. The scale is where Gemma versions differ: Gemma 3 stores ``w`` initialised
at 0 and scales by ``1 + w``; Gemma 4 stores the scale itself (init 1). ``offset`` holds that 1.
A GGUF file of Gemma 3 already holds ``1 + w`` (llama.cpp adds the 1 when converting); our loader
subtracts it so that every checkpoint reaches this module in the Hugging Face convention.
"""

import torch
from torch import nn


class RMSNorm(nn.Module):
    """``with_scale=False`` gives Gemma 4's weightless norms (the value norm, the MoE router's)."""

    def __init__(self, dim: int, eps: float = 1e-6, offset: float = 1.0, with_scale: bool = True):
        super().__init__()
        self.dim, self.eps, self.offset = dim, eps, offset
        if with_scale:
            self.weight = nn.Parameter(torch.zeros(dim) if offset else torch.ones(dim))
        else:
            self.weight = None

    def forward(self, x):  # x: (..., dim) -> (..., dim)
        x32 = x.float()
        y = x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + self.eps)
        if self.weight is not None:
            y = y * (self.offset + self.weight.float())
        return y.type_as(x)

    def extra_repr(self):
        return f"{self.dim}, eps={self.eps}, offset={self.offset}, with_scale={self.weight is not None}"
