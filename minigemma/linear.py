"""Linear layers for decoding: ``y = x Wᵀ`` for one token, on every core.

Decoding one token multiplies a single row of activations by every weight matrix of the model: a
*matrix-vector* product. It does one multiply-add per weight it reads, so its speed is set by how
fast the weights stream from memory, not by arithmetic (the roofline in ``benchmarks/bench.py``).
Two CPU cores together stream 30-54 GB/s here (a ``sum``, measured in several runs); one core
alone gets about 12.

Measured with torch 2.13 on our 2-core x86 machine (``benchmarks/bench.py`` prints the kernel
table), PyTorch's own products leave much of that on the table:

* **float32:** ``F.linear`` on one row goes to a matrix-vector routine that runs on **one core**
  (12 GB/s, the same with 1 or 2 threads). The *batched* matrix product ``torch.bmm`` spreads its
  batch over the cores. So ``linear`` below cuts ``W`` (N, K) into ``ROW_BLOCKS`` blocks of rows,
  a free view (16, N/16, K), and multiplies every block by the same column ``x`` in one ``bmm``:
  the same sums, 2.5-3x faster (30-34 GB/s). The column enters as a transposed row (strides
  (0, 1, K)), which the library runs as a batched matrix product; a contiguous (K, 1) column picks a
  slower loop. Nothing is copied and no memory is added. A few rows at once (a speculative
  verification pass of 5 tokens, a short chunk) fare the same: ``F.linear`` on 2-64 float32 rows is
  even slower than on one (the head: 100 ms for 5 rows, 51 ms for 1), the blocks take 29 ms for 5,
  so ``linear`` takes the blocks up to ``FEW_ROWS`` rows.
* **bfloat16:** ``F.linear`` uses both cores but reaches only 13-18 GB/s on the head, and
  the ``bmm`` trick makes it slower. What helps is **packing**: oneDNN (the CPU kernel library that
  ships inside PyTorch, exposed as ``torch.ops.mkldnn``) can reorder a weight once, at load time,
  into the blocked layout its kernel reads (``PackedLinear``); the product then runs 1.6-2x faster
  (24-28 GB/s) and gives *bit-identical* results in bf16. ``load(..., dtype=torch.bfloat16, pack=True)``
  swaps every linear layer of the decoder for a packed one. (Packing float32 helps too, but less
  than the row blocks do for one token, so ``pack`` is for bf16 only.) The price: a packed weight
  is an opaque tensor (no slicing, no state_dict), and the tied output head needs a packed *copy*
  of the embedding, because token lookup still reads the plain rows (``PackedEmbedding``: +vocab x
  width weights, 335 MB for the 270M in bf16).

Prefill (many rows) is a matrix-*matrix* product: limited by arithmetic, where ``F.linear`` is
already good, so ``linear`` only changes the case of a few rows.
"""

import torch
import torch.nn.functional as F
from torch import nn

ROW_BLOCKS = 16  # blocks of rows a float32 weight is cut into: enough for 16 cores
FEW_ROWS = 64  # up to this many activation rows (decoding, speculative verification) take the blocks


def linear(x, weight):
    """x (..., K) @ weight (N, K)ᵀ -> (..., N); a few float32 rows run as a batched product over row blocks."""
    N, K = weight.shape
    rows = x.numel() // K if K else 0
    if x.dtype != torch.float32 or not 0 < rows <= FEW_ROWS or N % ROW_BLOCKS or not weight.is_contiguous():
        return F.linear(x, weight)  # many rows, another dtype or an odd shape: the library's product
    blocks = weight.view(ROW_BLOCKS, N // ROW_BLOCKS, K)  # (16, N/16, K): a view, nothing copied
    columns = x.reshape(rows, K).T.expand(ROW_BLOCKS, K, rows)  # (16, K, rows): the same x for every block
    y = torch.bmm(blocks, columns)  # (16, N/16, rows)
    return y.permute(2, 0, 1).reshape(*x.shape[:-1], N)  # (rows, 16, N/16) -> (..., N)


class Linear(nn.Linear):
    """``nn.Linear`` without bias (same weight, same checkpoint key) whose product is ``linear``."""

    def __init__(self, in_features, out_features):
        super().__init__(in_features, out_features, bias=False)

    def forward(self, x):
        return linear(x, self.weight)


# ---------------------------------------------------------------------------------------------
# Packing: the weight reordered once for oneDNN's kernel (``load(..., pack=True)``).

def can_pack() -> bool:
    return torch.backends.mkldnn.is_available()


def check_pack_args(dtype):
    """Raise unless ``pack=True`` can serve weights of this dtype here (``load`` asks before reading)."""
    if not can_pack():
        raise ValueError("pack=True needs PyTorch's oneDNN (mkldnn) CPU kernels, which this PyTorch build lacks")
    if dtype != torch.bfloat16:  # float32 few-row products already stream through row blocks (``linear``)
        raise ValueError(f"pack=True is for bfloat16 weights, not {dtype}: float32 decoding already runs at the "
                         "memory limit through row blocks (linear.py)")


def pack_weight(weight):
    """(N, K) float weight -> an opaque oneDNN tensor holding the same numbers in the kernel's layout."""
    return torch.ops.mkldnn._reorder_linear_weight(weight.detach().contiguous(), 1)  # 1: tuned for one row


def packed_product(x, packed, out_features):
    """x (..., K) @ the packed weight -> (..., N)."""
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
        return packed_product(x, self.packed, self.out_features)

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
    """Swap the decoder's linear layers (and the tied head) for packed ones, in place.

    Only the text decoder: towers run once per image or clip, not once per token. Quantised
    layers are already packed (``quantize.py``), so the two do not combine."""
    check_pack_args(model.dtype)
    towers = ("vision_tower", "embed_vision", "audio_tower", "embed_audio")
    for name, module in list(model.named_modules()):
        if name.split(".")[0] in towers:
            continue
        for child_name, child in list(module.named_children()):
            if type(child) in (nn.Linear, Linear) and child.bias is None:
                setattr(module, child_name, PackedLinear(child.weight))
    model.embed_tokens = PackedEmbedding.from_embedding(model.embed_tokens)
    return model
