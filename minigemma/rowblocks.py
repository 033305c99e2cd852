"""One token's matrix products on every core: row blocks, a post-load swap for float32 decoding.

Decoding one token multiplies a single row of activations by every weight matrix of the model: a
*matrix-vector* product. It does one multiply-add per weight it reads, so its speed is set by how
fast the weights stream from memory, not by arithmetic (the roofline of notebook 12 and
``benchmarks/bench.py``), and one CPU core alone cannot stream memory as fast as all of them can.

PyTorch's float32 ``F.linear`` hands a single row to a matrix-vector routine that runs on one
core, whatever the thread count; a few rows (2-64, a speculative verification pass) fare no
better. The *batched* matrix product ``torch.bmm`` spreads its batch over the cores. So ``linear``
below cuts ``W`` (N, d_in) into ``ROW_BLOCKS`` blocks of rows, a free view (16, N/16, d_in), and
multiplies every block by the same columns ``x`` in one ``bmm``: the same sums, on every core. The
columns enter as transposed rows (strides (0, 1, d_in)), which the library runs as a batched matrix
product; nothing is copied and no memory is added. How much faster: ``benchmarks/results*.md``.

Prefill (many rows) is a matrix-*matrix* product, limited by arithmetic, where ``F.linear`` is
already good; other dtypes (bf16) gain nothing from the blocks (``pack.py`` helps there). So
``linear`` only changes the case of a few float32 rows.

``use_row_blocks(model)`` swaps the decoder's ``nn.Linear`` layers (and the tied output head) for
``RowBlockLinear`` / ``RowBlockEmbedding``: subclasses with the same weights and checkpoint keys.
``load`` does it for every float model: in other dtypes the product stays ``F.linear``, but a
verifying pass of speculative decoding can then run it one row at a time (``row_exact.py``).
"""

import torch
import torch.nn.functional as F
from torch import nn

from .row_exact import row_product
from .swap import swap_modules

ROW_BLOCKS = 16  # blocks of rows a float32 weight is cut into: enough for 16 cores
FEW_ROWS = 64  # up to this many activation rows (decoding, speculative verification) take the blocks


def linear(x, weight):
    """x (..., d_in) @ weight (N, d_in)ᵀ -> (..., N); a few float32 rows run as a batched product over row blocks.
    (In a verifying pass of speculative decoding, ``row_exact.row_product`` decides whether rows may go together.)"""
    key = ("rowblocks", *weight.shape, weight.dtype, x.dtype, weight.is_contiguous())
    return row_product(lambda rows: product(rows, weight), x, weight.shape[1], key)


def product(x, weight):
    """x (M, d_in) @ weight (N, d_in)ᵀ -> (M, N), contiguous."""
    N, d_in = weight.shape
    M = x.shape[0]
    if x.dtype != torch.float32 or not 0 < M <= FEW_ROWS or N % ROW_BLOCKS or not weight.is_contiguous():
        return F.linear(x, weight)  # many rows, another dtype or an odd shape: the library's product
    blocks = weight.view(ROW_BLOCKS, N // ROW_BLOCKS, d_in)  # (16, N/16, d_in): a view, nothing copied
    columns = x.T.expand(ROW_BLOCKS, d_in, M)  # (16, d_in, M): the same x for every block
    y = torch.bmm(blocks, columns)  # (16, N/16, M)
    # (M, 16, N/16) -> (M, N), laid out row by row: a strided result would make the next row-wise
    # reduction (a norm) sum in another order than it does for one row
    return y.permute(2, 0, 1).contiguous().view(M, N)


class RowBlockLinear(nn.Linear):
    """``nn.Linear`` without bias (same weight, same checkpoint key) whose product is ``linear``."""

    def forward(self, x):
        return linear(x, self.weight)


class RowBlockEmbedding(nn.Embedding):
    """The same embedding table; as the tied output head, its product is ``linear``."""

    def as_head(self, x):
        return linear(x, self.weight)  # (..., D) -> (..., vocab)


def use_row_blocks(model):
    """Swap the decoder's bias-free ``nn.Linear`` layers and its token embedding for the row-block
    subclasses, in place; the new modules hold the very same weight tensors. Returns the model."""
    def replace(name, module):
        if type(module) is nn.Linear and module.bias is None:
            new = RowBlockLinear(module.in_features, module.out_features, bias=False, device="meta")
        elif type(module) is nn.Embedding and name == "embed_tokens":
            new = RowBlockEmbedding(module.num_embeddings, module.embedding_dim, device="meta")
        else:
            return None
        new.weight = module.weight  # shared, not copied (the meta placeholder is dropped)
        return new
    swap_modules(model, replace)
    return model
