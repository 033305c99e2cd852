"""The Gemma decoder: embeddings, a stack of layers, a tied output head.

Each layer is a "sandwich": RMSNorm before *and after* both attention and MLP, then the residual
add. That double norm is Gemma's, not Llama's. The input embedding is multiplied by ``√hidden`` (the
factor rounded to the weight dtype, as transformers does), and the output head reuses the
embedding matrix (tied weights). ``forward`` also accepts ``inputs_embeds`` so that later parts
of the course can feed image or audio embeddings in place of token embeddings.
"""

import torch
import torch.nn.functional as F
from torch import nn

from .attention import Attention
from .config import TextConfig
from .mlp import MLP
from .norm import RMSNorm
from .rope import cos_sin, inv_frequencies


class DecoderLayer(nn.Module):
    def __init__(self, config: TextConfig, layer_type: str):
        super().__init__()
        D, eps, off = config.hidden_size, config.rms_norm_eps, config.norm_offset
        self.layer_type = layer_type
        self.input_layernorm = RMSNorm(D, eps, off)
        self.self_attn = Attention(config, layer_type)
        self.post_attention_layernorm = RMSNorm(D, eps, off)
        self.pre_feedforward_layernorm = RMSNorm(D, eps, off)
        self.mlp = MLP(D, config.intermediate_size)
        self.post_feedforward_layernorm = RMSNorm(D, eps, off)

    def forward(self, x, cos, sin, positions, cache=None):  # (B, T, D) -> (B, T, D)
        h = x + self.post_attention_layernorm(self.self_attn(self.input_layernorm(x), cos, sin, positions, cache))
        return h + self.post_feedforward_layernorm(self.mlp(self.pre_feedforward_layernorm(h)))


class Gemma(nn.Module):
    """A Gemma text decoder: ``model(input_ids) -> logits``, (B, T) -> (B, T, vocab)."""

    def __init__(self, config: TextConfig):
        super().__init__()
        self.config = config
        self.embed_tokens = nn.Embedding(config.vocab_size, config.hidden_size)
        self.layers = nn.ModuleList(DecoderLayer(config, t) for t in config.layer_types)
        self.norm = RMSNorm(config.hidden_size, config.rms_norm_eps, config.norm_offset)
        # RoPE frequencies per layer type (plain tensors, not weights: they come from the config).
        self.inv_freq = {t: inv_frequencies(config.head_dim, config.rope_parameters[t]) for t in set(config.layer_types)}

    def embed(self, input_ids):
        """(B, T) ids -> (B, T, D) scaled embeddings; raises on ids outside the vocabulary."""
        if input_ids.numel() and (input_ids.min() < 0 or input_ids.max() >= self.config.vocab_size):
            bad = input_ids[(input_ids < 0) | (input_ids >= self.config.vocab_size)][0].item()
            raise ValueError(f"token id {bad} is outside the vocabulary (0..{self.config.vocab_size - 1})")
        scale = torch.tensor(self.config.hidden_size ** 0.5, dtype=self.embed_tokens.weight.dtype)
        return self.embed_tokens(input_ids) * scale

    def forward(self, input_ids=None, inputs_embeds=None, cache=None, last_only=False):
        """(B, T) ids or (B, T, D) embeddings -> (B, T, vocab) logits (or (B, 1, vocab) if last_only).

        With a ``cache``, the tokens continue where the cache stopped and their K/V are stored.
        """
        x = self.embed(input_ids) if inputs_embeds is None else inputs_embeds  # (B, T, D)
        T = x.shape[1]
        start = cache.seen if cache is not None else 0
        limit = cache.max_len if cache is not None else self.config.max_position_embeddings  # cache <= context
        if start + T > limit:
            raise ValueError(f"{start + T} positions do not fit: the {'cache' if cache else 'context'} holds {limit}")
        positions = torch.arange(start, start + T, device=x.device)  # (T,)
        rot = {t: cos_sin(f, positions, x.dtype) for t, f in self.inv_freq.items()}  # type -> (T, hd) x2
        for i, layer in enumerate(self.layers):
            cos, sin = rot[layer.layer_type]
            x = layer(x, cos, sin, positions, cache.layers[i] if cache is not None else None)
        if cache is not None:
            cache.seen += T
        if last_only:
            x = x[:, -1:]  # (B, 1, D): generation only needs the next-token logits
        logits = F.linear(self.norm(x), self.embed_tokens.weight)  # (B, T, vocab): tied head
        if self.config.final_logit_softcapping:
            cap = self.config.final_logit_softcapping
            logits = cap * torch.tanh(logits / cap)
        return logits
