"""Solutions to the exercises of notebooks/12_quantisation_and_speed.ipynb."""

import torch


def int8_per_row(w):
    scale = w.abs().amax(dim=1) / 127  # (N,): the row's largest weight maps to ±127
    return torch.round(w / scale[:, None]).clamp(-127, 127).to(torch.int8), scale


def fake_q4_0(w):
    blocks = w.reshape(-1, 32)  # (blocks, 32): 32 consecutive weights of a row
    signed_max = blocks.gather(1, blocks.abs().argmax(1, keepdim=True))  # (blocks, 1), with its sign
    d = signed_max.detach() / -8  # the largest-magnitude weight is code 0: d·(0 − 8)
    q = torch.floor(blocks.detach() / d + 8.5).clamp(0, 15)  # nearest code, as llama.cpp rounds
    values = ((q - 8) * d).reshape(w.shape)
    return w + (values - w).detach()  # forward: Q4_0 values; backward: the identity (straight through)
