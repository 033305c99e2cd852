"""Two slow ways to run the mixture-of-experts dispatch, kept as baselines beside the package's.

``minigemma.moe`` runs the experts with grouped matrix products or a loop over the experts; these
two are what a first attempt looks like: obviously right, and slow. Notebook 07 times them,
benchmarks/bench_moe.py measures them and tests/test_moe.py checks that all four agree.
Course code, not part of the package (import it with ``notebooks/`` on sys.path).
"""

import torch
import torch.nn.functional as F


def experts_naive(experts, x, index, weights):
    """One token at a time, one chosen expert at a time: obviously right, very slow.

    x: (N, D), index/weights: (N, k) -> (N, D)."""
    out = torch.zeros_like(x)
    for t in range(x.shape[0]):
        for e, w in sorted(zip(index[t].tolist(), weights[t])):  # expert order, like the grouped version
            gate, up = F.linear(x[t], experts.gate_up_proj[e]).chunk(2, dim=-1)
            out[t] += w.to(x.dtype) * F.linear(F.gelu(gate, approximate="tanh") * up, experts.down_proj[e])
    return out


def experts_dense(experts, x, index, weights):
    """Every expert on every token, then keep the chosen ones: simple tensors, E/k times the work.

    x: (N, D), index/weights: (N, k) -> (N, D)."""
    gate, up = torch.einsum("nd,efd->enf", x, experts.gate_up_proj).chunk(2, dim=-1)  # (E, N, I) each
    y = torch.einsum("eni,edi->end", F.gelu(gate, approximate="tanh") * up, experts.down_proj)  # (E, N, D)
    mix = torch.zeros(x.shape[0], experts.gate_up_proj.shape[0], dtype=x.dtype)  # (N, E)
    mix.scatter_(1, index, weights.to(x.dtype))  # the router's weight where chosen, 0 elsewhere
    return torch.einsum("ne,end->nd", mix, y)
