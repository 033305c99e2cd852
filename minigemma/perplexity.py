"""Perplexity: how surprised a model is by a text, the number that says what quantisation costs.

``perplexity = exp(mean over tokens of -log p(token | the tokens before it))``. A model that always
gave the right next token probability 1 would score 1; one that guessed uniformly over the 262,144
pieces would score 262,144. Long texts are cut into windows (each starting with ``<bos>``) so that
every window fits the context; the first token of a window is conditioned on ``<bos>`` only.
"""

import math

import torch
import torch.nn.functional as F


@torch.no_grad()
def perplexity(model, ids, bos_id, window=512):
    """ids: a list of token ids (no <bos>) -> perplexity over all of them, in windows of ``window``."""
    if not ids:
        raise ValueError("perplexity of an empty text is undefined: give at least one token")
    total, count = 0.0, 0
    for start in range(0, len(ids), window - 1):
        chunk = torch.tensor([[bos_id] + ids[start:start + window - 1]])  # (1, T)
        logits = model(chunk)[0, :-1].float()  # (T - 1, vocab): predictions for tokens 1..T-1
        total += F.cross_entropy(logits, chunk[0, 1:], reduction="sum").item()
        count += chunk.shape[1] - 1
    return math.exp(total / count)
