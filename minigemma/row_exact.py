"""Row-exact passes: every row of a verifying pass computed bit for bit as a one-token step computes it.

Speculative decoding (``speculative.py``) promises the text plain decoding gives. Its target runs
once over ``[t, d1, .., dk]`` where plain decoding runs k+1 one-token steps, and row ``i`` of that
pass must be *exactly* what step ``i`` would have computed: a difference in the last bit of one
key or value is stored in the KV cache, moves every later logit a little, and sooner or later flips
a near-tie between two tokens. (It happened: the int8 270M continued a list with "The first thing
you should do" plainly and "The list is a bit longer" speculatively, every run.)

Exactness is not free of thought, because the rounding of a CPU kernel can depend on how many rows
it is given: the library picks a different routine, or a different summation order, for 1 row than
for 5. Measured with torch 2.13 on x86:

* the same for every row count: the norms and other row-wise operations (on contiguous rows), and,
  at the shapes of the real 270M, float32 row blocks (``rowblocks.py``) and PyTorch's int8/int4
  kernels -- but row blocks were *not* at a tiny model's 80 × 64 projection;
* different in the last bits: float32 and bf16 ``F.linear``, oneDNN's packed bf16 product
  (``pack.py``), ``scaled_dot_product_attention`` with a mask, and the mixture-of-experts dispatch
  (an expert's product takes the rows of every token that picked it).

Which kernel a library picks depends on the shapes, the dtype and the thread count, and differs
between CPUs, so nothing here is assumed: during a verifying pass (``with one_row_at_a_time():``)
a layer's product goes through ``row_product``, which *measures* once, per layer shape, row count and
thread count, whether the product gives every row of random probes exactly what it gives that row
alone. If it does, the rows go through in one product: that is where speculative decoding's speed
comes from (it holds for the float32 and int8/int4 270M). If not (bf16 products, here), the rows go
one at a time, each exactly as a one-token step computes it, and drafting gains little
(``benchmarks/results_speculative_settings.md``). Attention writes the cache
and attends one query at a time, and a mixture of experts routes one token at a time, always.

Element-wise functions with a transcendental inside (GELU's tanh, RoPE's cos and sin, the logit
soft-cap) need care too: PyTorch runs the bulk of a call with vector instructions and its last few
elements with a scalar loop, whose tanh or cos may differ in the last bit. Where an element falls
depends on the size of the call, so for a width that is not a multiple of the vector chunk (a toy
model's 8, not a real model's 256) one row alone and the same row among several can round
differently. ``each_row`` applies such a function one row per call inside a verifying pass.
(Thinking Machines' "Defeating Nondeterminism in LLM Inference", 2025, calls the property *batch
invariance* and builds kernels that have it; here we only choose, per layer, a way that has it.)
"""

from contextlib import contextmanager

import torch

_active = False  # True inside one_row_at_a_time()


@contextmanager
def one_row_at_a_time():
    """Inside this block every row of a forward pass is computed as a one-token step computes it
    (``row_product``, attention, mixtures of experts). Not thread-safe: one verifying pass at a time."""
    global _active
    previous, _active = _active, True
    try:
        yield
    finally:
        _active = previous


def one_row_active() -> bool:
    return _active


_verdicts = {}  # (layer key, rows, threads) -> does the product give each row what it gives it alone?
PROBE_OUTPUTS = 2 ** 16


def row_product(product, x, d_in, key):
    """``product`` ((M, d_in) rows -> (M, N)) on x (..., d_in) -> (..., N). Inside
    ``one_row_at_a_time()``, several rows go through one product only if that is exact for this
    ``key`` (anything that decides the kernel: kind, shape, dtype) at this row count; else one by one."""
    rows = x.reshape(-1, d_in)  # (M, d_in)
    if _active and len(rows) > 1 and not row_invariant(product, rows, key):
        y = torch.cat([product(row) for row in rows.split(1)])  # M one-row products
    else:
        y = product(rows)
    return y.view(*x.shape[:-1], y.shape[-1])


def row_invariant(product, rows, key):
    """Measured once per (key, row count, threads): random probes of the rows' shape and dtype through
    ``product`` at once and row by row, compared bit for bit. A kernel's summation order depends on
    shapes, not on the numbers; but a bf16 output rounds most small differences of order away (one
    layer agreed on 5 random probes of 6 × 32 outputs and not on the model's own activations), so
    the probes cover at least ``PROBE_OUTPUTS`` outputs."""
    slot = (key, len(rows), torch.get_num_threads())
    if slot not in _verdicts:
        g = torch.Generator().manual_seed(0)
        same, seen = True, 0
        while same and seen < PROBE_OUTPUTS:
            probe = torch.randn(rows.shape, generator=g).to(rows.dtype)
            together = product(probe)
            same = torch.equal(together, torch.cat([product(row) for row in probe.split(1)]))
            seen += together.numel()
        _verdicts[slot] = same
    return _verdicts[slot]


def each_row(fn, x):
    """An element-wise ``fn`` on x (..., width): one call per row inside ``one_row_at_a_time()``."""
    width = x.shape[-1]
    if not _active or x.numel() <= width:
        return fn(x)
    return torch.cat([fn(row) for row in x.reshape(-1, width).split(1)]).view(x.shape)


def tokens_apart(experts, x, index, weights):
    """A mixture-of-experts dispatch ``experts(x, index, weights)`` ((N, D), (N, k), (N, k) -> (N, D))
    run one token at a time: which rows share an expert's product depends on the routing."""
    return torch.cat([experts(x[i:i + 1], index[i:i + 1], weights[i:i + 1]) for i in range(len(x))])
