"""Per-layer embeddings (PLE): Gemma 4 E2B/E4B give every layer its own small view of each token.

A normal decoder sees a token's identity once, at the bottom. PLE adds a second embedding table
with a ``hidden_size_per_layer_input``-wide (256) slice *per layer*: 35 × 256 = 8,960 numbers per
token for E2B. The table is huge (262,144 × 8,960 = 2.3B parameters) but only *looked up*, never
multiplied, so it can live in slow memory or on flash: that is the "E" (effective) in E2B.

Two parts are mixed, then each layer consumes its slice after its MLP:

1. ``token``: the table lookup, scaled by √256 = 16 (like the main embedding's √width);
2. ``projection``: a projection of the main (input) embedding, scaled by width^-½, reshaped to
   (layers, 256) and RMS-normed. transformers calls it the "context" part, but it reads the
   input embedding, not a hidden state: for text it depends on the token id alone;
   ``per_layer_input = (token + projection) · 2^-½``.
3. In layer ``l``: ``y + norm(W_proj(gelu(W_gate y) ⊙ p_l))`` -- a tiny gated MLP whose gate is
   the layer's hidden state and whose input is the token's slice.

The weights live on the model and its layers under transformers' names; this file holds the maths.
"""

import torch

from .row_exact import each_row
from .mlp import gelu


def per_layer_projection(inputs_embeds, projection, norm, num_layers: int, ple_dim: int):
    """embeds: (B, T, D) -> the projection part alone, (B, T, layers, ple_dim). EmbeddingGemma 2
    keeps only this part as its per-layer inputs (no table, no mix; ``embedding.py``)."""
    B, T, D = inputs_embeds.shape
    projected = projection(inputs_embeds) * D ** -0.5  # (B, T, layers * ple_dim)
    return norm(projected.view(B, T, num_layers, ple_dim))  # (B, T, L, P): normed per layer


def per_layer_inputs(input_ids, inputs_embeds, table, projection, norm, num_layers: int, ple_dim: int):
    """ids: (B, T), embeds: (B, T, D) -> per-layer inputs (B, T, layers, ple_dim)."""
    B, T, D = inputs_embeds.shape
    projected = per_layer_projection(inputs_embeds, projection, norm, num_layers, ple_dim)  # (B, T, L, P)
    scale = torch.tensor(ple_dim ** 0.5, dtype=inputs_embeds.dtype)  # rounded in the weight dtype
    token = (table(input_ids) * scale).view(B, T, num_layers, ple_dim)  # (B, T, L, P)
    return (projected + token) * 2 ** -0.5


def per_layer_branch(y, p, gate, projection, norm):
    """y: (B, T, D) hidden state after the MLP, p: (B, T, P) this layer's slice -> (B, T, D)."""
    return y + norm(projection(each_row(gelu, gate(y)) * p))
