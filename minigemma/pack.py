"""Weights packed once for oneDNN's kernel: a post-load swap for bfloat16 decoding.

In bfloat16, ``F.linear`` on one row of activations streams the weights well below the memory's
speed, and the row blocks of ``rowblocks.py`` make it slower still. What helps is **packing**:
oneDNN (the CPU kernel library that ships inside PyTorch, reached through ``torch.ops.mkldnn``)
can reorder a weight once, at load time, into the blocked layout its kernel reads
(``PackedLinear``); every product afterwards reads that layout directly and gives the same results
in bf16 (bit for bit on most CPUs; where oneDNN sums in another order, as on AVX-512 ones, a rare
element differs by a bf16 step or two). ``load(..., dtype=torch.bfloat16, pack=True)`` swaps every
linear layer of the decoder for a packed one (``pack_model``). Packing float32 helps too, but less
than the row blocks do for one token, so ``pack`` is for bf16 only. How much faster:
``benchmarks/results*.md``.

The price: a packed weight is an opaque tensor (no slicing, no state_dict), and the tied output
head needs a packed *copy* of the embedding, because token lookup still reads the plain rows
(``PackedEmbedding``: vocab × width more weights).
"""

import torch
from torch import nn

from .row_exact import row_product
from .swap import swap_modules


def can_pack() -> bool:
    return torch.backends.mkldnn.is_available()


def check_pack_args(dtype):
    """Raise unless ``pack=True`` can serve weights of this dtype here (``load`` asks before reading)."""
    if not can_pack():
        raise ValueError("pack=True needs PyTorch's oneDNN (mkldnn) CPU kernels, which this PyTorch build lacks")
    if dtype != torch.bfloat16:  # float32 few-row products already stream through row blocks
        raise ValueError(f"pack=True is for bfloat16 weights, not {dtype}: float32 decoding already runs at the "
                         "memory limit through row blocks (rowblocks.py)")


def pack_weight(weight):
    """(N, d_in) float weight -> an opaque oneDNN tensor holding the same numbers in the kernel's layout."""
    return torch.ops.mkldnn._reorder_linear_weight(weight.detach().contiguous(), 1)  # 1: tuned for one row


def packed_product(x, packed, out_features):
    """x (..., d_in) @ the packed weight -> (..., N)."""
    y = torch.ops.mkldnn._linear_pointwise(x.reshape(-1, x.shape[-1]), packed, None, "none", [], "")  # (rows, N)
    return y.view(*x.shape[:-1], out_features)


class PackedLinear(nn.Module):
    """A linear layer (no bias) whose weight lives only in oneDNN's layout."""

    def __init__(self, weight):
        super().__init__()
        self.out_features, self.in_features = weight.shape
        self.dtype = weight.dtype
        self.packed = pack_weight(weight)  # a plain attribute: opaque tensors cannot be saved

    def forward(self, x):
        key = ("packed", self.out_features, self.in_features, self.dtype, x.dtype)
        return row_product(lambda rows: packed_product(rows, self.packed, self.out_features), x, self.in_features, key)

    @property
    def nbytes(self):
        return self.out_features * self.in_features * torch.empty(0, dtype=self.dtype).element_size()

    def extra_repr(self):
        return f"in_features={self.in_features}, out_features={self.out_features}, dtype={self.dtype}, oneDNN-packed"


class PackedEmbedding(nn.Embedding):
    """The embedding's plain rows for lookup, plus a packed copy that serves as the tied output head."""

    @classmethod
    def from_embedding(cls, embedding):
        new = cls(*embedding.weight.shape, device="meta")
        new.weight = embedding.weight
        new.head = PackedLinear(embedding.weight)
        return new

    def as_head(self, x):
        return self.head(x)  # (..., D) -> (..., vocab)


def pack_model(model):
    """Swap the decoder's linear layers (and the tied head) for packed ones, in place; returns the
    model. Quantised layers are already packed (``quantize.py``), so the two do not combine."""
    check_pack_args(model.dtype)

    def replace(name, module):
        if isinstance(module, nn.Linear) and module.bias is None:
            return PackedLinear(module.weight)
        if isinstance(module, nn.Embedding) and name == "embed_tokens":
            return PackedEmbedding.from_embedding(module)
        return None
    swap_modules(model, replace)
    return model
