"""Solutions to the exercises of notebooks/02_gemma_decoder.ipynb."""

import torch


def sliding_mask(T, window):
    q = torch.arange(T)[:, None]
    k = torch.arange(T)[None, :]
    return (k <= q) & (q - k < window)


def rms_norm(x, weight, eps):
    x32 = x.float()
    y = x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + eps)
    return (y * (1.0 + weight.float())).type_as(x)


def parameter_counts(model):
    counts = {"embedding": 0, "attention": 0, "mlp": 0, "norms": 0}
    for name, p in model.named_parameters():
        if "embed" in name:
            counts["embedding"] += p.numel()
        elif "norm" in name:
            counts["norms"] += p.numel()
        elif "self_attn" in name:
            counts["attention"] += p.numel()
        else:
            counts["mlp"] += p.numel()
    return counts
