"""Solutions to the exercises of notebooks/07_mixture_of_experts.ipynb."""

import torch


def top_k_weights(probs, k, per_expert_scale):
    top, index = probs.topk(k, dim=-1)
    return top / top.sum(-1, keepdim=True) * per_expert_scale[index], index


def tokens_per_expert(index, num_experts):
    return torch.bincount(index.reshape(-1), minlength=num_experts).tolist()
