"""Solutions to the exercises of notebooks/07_mixture_of_experts.ipynb."""

import torch


def dispatch_plan(index, num_experts):
    flat = index.reshape(-1)  # one entry per (token, choice)
    order = flat.argsort(stable=True)  # grouped by expert; within an expert, in token order
    plan, start = [], 0
    for n in torch.bincount(flat, minlength=num_experts).tolist():
        plan.append((order[start:start + n] // index.shape[1]).tolist())  # entry j belongs to token j // k
        start += n
    return plan


def fold_per_expert_scale(per_expert_scale, down_proj):
    # expert e's output is down_proj[e] @ (gelu(gate) * up): linear in down_proj[e], so a weight
    # w · s_e on that output equals the weight w on an expert whose down_proj is s_e · down_proj[e].
    return down_proj * per_expert_scale[:, None, None]


# Exercise 7.2, the question: not into gate_up_proj. The gate goes through GELU, which is not
# linear (gelu(s·x) != s·gelu(x)); scaling only the "up" half would work (the product gate·up is
# linear in up), but scaling the whole gate_up_proj would change the expert.


def balance_loss(index, probs, num_experts):
    f = torch.bincount(index.reshape(-1), minlength=num_experts).float() / index.numel()  # (E,) share of entries
    P = probs.mean(0)  # (E,) mean router probability
    return num_experts * (f * P).sum()


# Exercise 7.3, the question: with f_e = P_e = 1/E for every expert, the loss is E · E · (1/E²) = 1.
# Lopsided routing scores more: with top-1 routing, one expert taking every token with probability 1
# gives E · 1 · 1 = E. Minimising it pushes the router towards spreading tokens over the experts.
