"""Mixture of experts, as Gemma 4 26B-A4B has it: a router picks 8 of 128 small MLPs per token.

Each MoE layer keeps its dense MLP and adds an expert branch beside it:

* the **router** reads the *raw residual* ``h`` (not the pre-FFW-normed input: two PyPI ports got
  this wrong), RMS-norms it without a weight, multiplies by a learned ``scale`` and by width^-½,
  projects to 128 scores, softmaxes in float32, keeps the top 8, renormalises them to sum to 1
  and multiplies each by its expert's ``per_expert_scale``;
* each **expert** is a gated-GELU MLP (hidden 704). Checkpoints pack them: ``gate_up_proj`` is
  (experts, 2·704, width) with the gate rows first, ``down_proj`` is (experts, width, 704);
* experts read ``pre_feedforward_layernorm_2(h)``; their weighted sum is normed
  (``post_feedforward_layernorm_2``) and added to the normed dense output (``..._1``) -- see
  ``decoder.py``.

Dispatch: the (token, choice) pairs are sorted by expert, so every picked expert's tokens form
one block of rows; each picked expert runs once on its block and the results are added back onto
their tokens, so the cost grows with tokens × top-k, not with the number of experts. The blocks
run either in two grouped matrix products (``experts_grouped``, ``F.grouped_mm``) or in a Python
loop over the experts (``experts_loop``, the readable version); ``Experts.forward`` takes the
grouped products while experts get few rows each and the loop once they get many (measured in
benchmarks/results_moe.md). Left out: expert parallelism across devices, capacity limits.
"""

import math

import torch
import torch.nn.functional as F
from torch import nn

from .row_exact import one_row_active, tokens_apart
from .norm import RMSNorm


class Router(nn.Module):
    def __init__(self, config):
        super().__init__()
        D, E = config.hidden_size, config.num_experts
        self.top_k = config.top_k_experts
        self.norm = RMSNorm(D, config.rms_norm_eps, with_scale=False)
        self.proj = nn.Linear(D, E, bias=False)
        self.scale = nn.Parameter(torch.ones(D))
        self.per_expert_scale = nn.Parameter(torch.ones(E))

    def forward(self, h):
        """h: (N, D) raw residual -> weights (N, k), expert ids (N, k), probabilities (N, E)."""
        scores = self.proj(self.norm(h) * self.scale * h.shape[-1] ** -0.5)  # (N, E)
        probs = F.softmax(scores, dim=-1, dtype=torch.float32)  # (N, E)
        weights, index = torch.topk(probs, self.top_k, dim=-1)  # (N, k) each
        weights = weights / weights.sum(-1, keepdim=True)  # the k chosen weights sum to 1
        return weights * self.per_expert_scale[index], index, probs


GROUPED_MM_DTYPES = (torch.float32, torch.bfloat16, torch.float16)  # what F.grouped_mm takes on CPU (torch 2.13)
LOOP_FROM = 128  # rows per expert (N·k / E) from which experts_loop is faster: 2,048 tokens, top-8 of 128


class Experts(nn.Module):
    def __init__(self, config):
        super().__init__()
        E, D, I = config.num_experts, config.hidden_size, config.moe_intermediate_size
        self.num_experts = E
        self.gate_up_proj = nn.Parameter(torch.empty(E, 2 * I, D))  # gate rows first, then up
        self.down_proj = nn.Parameter(torch.empty(E, D, I))

    def expert_mlp(self, e, x):
        """Expert e's gated MLP on the rows it was picked for: (n, D) -> (n, D)."""
        gate, up = F.linear(x, self.gate_up_proj[e]).chunk(2, dim=-1)  # (n, I) each
        return F.linear(F.gelu(gate, approximate="tanh") * up, self.down_proj[e])

    def forward(self, x, index, weights):
        """x: (N, D), index/weights: (N, k) -> (N, D), the weighted sum of each token's experts."""
        if one_row_active() and len(x) > 1:  # one token at a time, as a decoding step runs them
            return tokens_apart(self.forward, x, index, weights)
        return self.dispatch(x, index, weights)

    def dispatch(self, x, index, weights):
        """Two ways to run the same dispatch, chosen by how many rows each expert gets. With few
        (decoding, short prompts: 64 tokens give each of 128 experts ~4 rows) a Python loop over
        the experts spends most of its time in Python, so ``experts_grouped`` runs them all in two
        calls. From ``LOOP_FROM`` rows per expert on, the loop's overhead is small beside the
        matrix products, and ``experts_loop`` is about as fast or faster
        (benchmarks/results_moe.md) while holding less memory: one expert's rows at a time, where
        the grouped version builds (N·k, D) intermediates.
        """
        if x.dtype in GROUPED_MM_DTYPES and index.numel() < LOOP_FROM * self.num_experts:
            return experts_grouped(self, x, index, weights)
        return experts_loop(self, x, index, weights)  # many rows per expert, or a dtype like float64


def group_by_expert(index, num_experts):
    """(N, k) chosen expert ids -> the (token, choice) entries sorted into one block per expert:
    ``order`` (N·k,) the flat entry at each sorted place, ``token_of`` (N·k,) its token, ``counts``
    (E,) the entries of each expert (block e is the next ``counts[e]`` places)."""
    flat_expert = index.reshape(-1)  # (N·k,): one entry per (token, choice)
    order = flat_expert.argsort(stable=True)  # group the entries by expert; ties keep token order
    token_of = order // index.shape[1]  # (N·k,) the token each sorted entry belongs to
    return order, token_of, torch.bincount(flat_expert, minlength=num_experts)


# The dispatch written two ways (Experts.forward picks one); the two slow baselines notebook 07 and
# benchmarks/bench_moe.py time beside them are in notebooks/moe_baselines.py.
def experts_grouped(experts, x, index, weights):
    """Every picked expert in two calls of ``F.grouped_mm``: x: (N, D), index/weights: (N, k) -> (N, D).

    ``experts_loop`` without its loop. The (token, choice) entries are sorted into one block per
    expert as there; each call gets the stacked weights (E, out, in), the entries as columns and
    where each expert's block of columns ends (``offs``), and multiplies weight e by block e:
    ``W x`` for every expert at once. On CPU torch runs one matrix product per block in C++, so
    an expert nobody picked (an empty block) costs next to nothing, and no weight is copied.

    Why the weight on the left: with a few tokens per expert each product is nearly a
    matrix-vector product, and the CPU's BLAS ran these about twice as fast this way round as
    the usual ``x @ W.T`` (the block of benchmarks/bench_moe.py, 64 tokens, 2 threads).
    """
    order, token_of, counts = group_by_expert(index, experts.num_experts)
    offs = counts.cumsum(0).to(torch.int32)  # (E,) expert e's block ends at entry offs[e]
    rows = x[token_of]  # (N·k, D): each entry's token, in expert blocks
    gate_up = F.grouped_mm(experts.gate_up_proj, rows.T, offs=offs)  # (2I, N·k): weight e times block e
    gate, up = gate_up.T.chunk(2, dim=-1)  # (N·k, I) each
    # the router weight goes in before down_proj, which is linear: on I columns instead of D
    hidden = F.gelu(gate, approximate="tanh") * up * weights.reshape(-1)[order, None].to(x.dtype)  # (N·k, I)
    # made contiguous, hidden is laid out entry by entry like rows, so hidden.T is the fast layout, as rows.T
    y = F.grouped_mm(experts.down_proj, hidden.contiguous().T, offs=offs)  # (D, N·k)
    return torch.zeros_like(x).index_add_(0, token_of, y.T)  # (N, D): each token adds its k rows, in expert order


def experts_loop(experts, x, index, weights):
    """The picked experts one at a time, in Python: x: (N, D), index/weights: (N, k) -> (N, D).

    The readable version (notebook 07 builds it); also what quantised experts run
    (``quantize.QuantExperts``: ``F.grouped_mm`` cannot take packed int8/int4 matrices).
    """
    order, token_of, counts = group_by_expert(index, experts.num_experts)
    out = torch.zeros_like(x)
    start = 0
    for e, n in enumerate(counts.tolist()):
        if n == 0:
            continue  # an expert nobody picked costs nothing
        rows = order[start:start + n]
        tokens = token_of[start:start + n]
        y = experts.expert_mlp(e, x[tokens])  # (n, D)
        out.index_add_(0, tokens, y * weights.reshape(-1)[rows, None].to(y.dtype))
        start += n
    return out


def active_parameters(config, keys: dict) -> tuple:
    """(total, used per token) from ``expected_keys``: a token meets top-k of the experts."""
    total = sum(math.prod(s) for s in keys.values())
    experts = sum(math.prod(s) for k, s in keys.items() if ".experts." in k)
    if not config.enable_moe_block:
        return total, total
    return total, total - experts + experts * config.top_k_experts // config.num_experts
