"""Clipped linear layers: a bias-free Linear whose input and output are clamped to stored bounds.

Gemma 4's E2B and E4B towers (vision and audio) store, for each projection, a range for its input
and one for its output: four scalars per layer (``input_min``, ``input_max``, ``output_min``,
``output_max``; how Google chose them is not documented). Clamping to them at inference keeps every
value inside the ranges the checkpoint was released with. The clamps are part of the
function: a model that skips them gives other numbers (``tests/test_audio.py`` draws the bounds so
that they bite). The 26B/31B vision towers store no bounds (``use_clipped_linears: false``): there
this is a plain Linear.

Checkpoint keys are ``<name>.linear.weight`` and ``<name>.{input,output}_{min,max}``, as in
transformers' ``Gemma4ClippableLinear``. Left out: the bias (no Gemma 4 tower uses one).
"""

import math

import torch
from torch import nn


class ClippedLinear(nn.Module):
    """``x (..., d_in) -> (..., d_out)``; with ``clip``, input and output are clamped to the bounds."""

    def __init__(self, d_in, d_out, clip):
        super().__init__()
        self.linear = nn.Linear(d_in, d_out, bias=False)
        self.clip = clip
        if clip:  # checkpoints store the bounds; ±inf (no clamp) until loaded
            for name, value in (("input_min", -math.inf), ("input_max", math.inf),
                                ("output_min", -math.inf), ("output_max", math.inf)):
                self.register_buffer(name, torch.tensor(value))  # () scalar

    def forward(self, x):  # (..., d_in) -> (..., d_out)
        if self.clip:
            x = torch.clamp(x, self.input_min, self.input_max)
        y = self.linear(x)
        return torch.clamp(y, self.output_min, self.output_max) if self.clip else y
