"""Grouped-query attention with query/key norms and sliding windows, as in Gemma 3.

* **Grouped-query (GQA):** ``H`` query heads share ``K`` key/value heads (270M: 4 query heads, 1 KV
  head), which shrinks the KV cache ``H/K``-fold.
* **QK-norm:** queries and keys are RMS-normed per head before RoPE; this keeps scores in a sane
  range. Gemma 3 still scales scores by ``query_pre_attn_scalar ** -0.5``.
* **Sliding vs global:** a sliding layer lets a token see itself and the ``window - 1`` tokens
  before it; a global layer sees every earlier token. The mask is built from positions, so the
  same code serves a full forward pass and a ring-buffer cache.
"""

import torch
import torch.nn.functional as F
from torch import nn

from .config import SLIDING
from .norm import RMSNorm
from .rope import apply_rope


def attention_mask(q_pos, k_pos, window=None):
    """q_pos: (T,), k_pos: (S,) -> (T, S) bool, True where the query may look at the key."""
    mask = (k_pos[None, :] <= q_pos[:, None]) & (k_pos[None, :] >= 0)  # causal; -1 = empty cache slot
    if window is not None:
        mask &= (q_pos[:, None] - k_pos[None, :]) < window  # the window counts the current token
    return mask


class Attention(nn.Module):
    def __init__(self, config, layer_type: str):
        super().__init__()
        D, H, K, hd = config.hidden_size, config.num_attention_heads, config.num_key_value_heads, config.head_dim
        self.H, self.K, self.hd = H, K, hd
        self.q_proj = nn.Linear(D, H * hd, bias=False)
        self.k_proj = nn.Linear(D, K * hd, bias=False)
        self.v_proj = nn.Linear(D, K * hd, bias=False)
        self.o_proj = nn.Linear(H * hd, D, bias=False)
        self.q_norm = RMSNorm(hd, config.rms_norm_eps, config.norm_offset)
        self.k_norm = RMSNorm(hd, config.rms_norm_eps, config.norm_offset)
        self.window = config.sliding_window if layer_type == SLIDING else None
        self.scaling = config.query_pre_attn_scalar ** -0.5
        self.record_probs = False  # set True to keep the attention map of the last call in .probs

    def forward(self, x, cos, sin, positions, cache=None):
        """x: (B, T, D), cos/sin: (T, hd), positions: (T,) -> (B, T, D)"""
        B, T, _ = x.shape
        q = self.q_norm(self.q_proj(x).view(B, T, self.H, self.hd)).transpose(1, 2)  # (B, H, T, hd)
        k = self.k_norm(self.k_proj(x).view(B, T, self.K, self.hd)).transpose(1, 2)  # (B, K, T, hd)
        v = self.v_proj(x).view(B, T, self.K, self.hd).transpose(1, 2)  # (B, K, T, hd)
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        k_pos = positions
        if cache is not None:
            k, v, k_pos = cache.update(k, v, positions)  # (B, K, S, hd), S = cached + T
        mask = attention_mask(positions, k_pos, self.window)  # (T, S)
        if self.record_probs:
            out = self._explicit(q, k, v, mask)
        else:
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=self.scaling,
                                                 enable_gqa=self.H != self.K)  # (B, H, T, hd)
        return self.o_proj(out.transpose(1, 2).reshape(B, T, self.H * self.hd))

    def _explicit(self, q, k, v, mask):
        """The same attention spelled out, keeping the probabilities for pictures."""
        k = k.repeat_interleave(self.H // self.K, dim=1)  # (B, H, S, hd): each KV head serves H/K queries
        v = v.repeat_interleave(self.H // self.K, dim=1)
        scores = (q @ k.transpose(-1, -2)) * self.scaling  # (B, H, T, S)
        scores = scores.masked_fill(~mask, float("-inf"))
        self.probs = scores.float().softmax(dim=-1).to(q.dtype)  # (B, H, T, S)
        return self.probs @ v  # (B, H, T, hd)
