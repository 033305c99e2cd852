"""Grouped-query attention with query/key norms and sliding windows: Gemma 3, and Gemma 4's changes.

* **Grouped-query (GQA):** ``H`` query heads share ``K`` key/value heads (270M: 4 query heads, 1 KV
  head), which shrinks the KV cache ``H/K``-fold.
* **QK-norm:** queries and keys are RMS-normed per head before RoPE. Gemma 3 still scales scores
  by ``query_pre_attn_scalar ** -0.5``; Gemma 4 scales by 1 and also norms the values (no weight).
* **Sliding vs global:** a sliding layer lets a token see itself and the ``window - 1`` tokens
  before it; a global layer sees every earlier token. The mask is built from positions, so the
  same code serves a full forward pass and a ring-buffer cache.
* **Gemma 4's global layers** use a larger head dim (512) and, on 26B/31B, *keys as values*
  (``attention_k_eq_v``): no value projection; the value is the key projection's output taken
  before its norm and RoPE. They may also have their own, smaller, number of KV heads. As both
  norms divide by the same RMS, the key before RoPE is the normed value times the key-norm weight,
  so the cache may keep V alone and rebuild ``K = RoPE(V ⊙ w_k)`` (``keys_from_values``).
* **KV sharing (Gemma 4 E2B/E4B):** the last layers compute no keys or values at all; they attend
  over the K/V that an earlier layer of the same type produced (its ``kv`` output).
"""

import torch
import torch.nn.functional as F
from torch import nn

from .row_exact import one_row_active
from .config import SLIDING
from .norm import RMSNorm
from .rope import apply_rope


def attention_mask(q_pos, k_pos, window=None, image_blocks=None, bidirectional=False):
    """q_pos: (T,), k_pos: (S,) -> (T, S) bool, True where the query may look at the key.

    ``image_blocks`` (optional, one int per absolute position): the id of the image a token belongs
    to, -1 for text. Tokens of the same image also see each other *forwards* (bidirectional).
    ``bidirectional`` (an encoder, ``embedding.py``): every key is visible, and a window is a radius
    around the query, ``|q - k| <= window``, not the causal count of the query and the tokens before it.
    """
    if bidirectional:
        distance = (q_pos[:, None] - k_pos[None, :]).abs()  # (T, S)
        return distance <= window if window is not None else torch.ones_like(distance, dtype=torch.bool)
    mask = k_pos[None, :] <= q_pos[:, None]  # causal
    if image_blocks is not None:
        q_block, k_block = image_blocks[q_pos], image_blocks[k_pos.clamp(min=0)]  # (T,), (S,)
        mask |= (q_block[:, None] == k_block[None, :]) & (q_block[:, None] >= 0)
    if window is not None:
        mask &= (q_pos[:, None] - k_pos[None, :]) < window  # the window counts the current token
    return mask & (k_pos[None, :] >= 0)  # -1 marks an empty cache slot


class Attention(nn.Module):
    def __init__(self, config, layer_idx: int):
        super().__init__()
        D, H = config.hidden_size, config.num_attention_heads
        hd, K = config.head_dim_of(layer_idx), config.kv_heads_of(layer_idx)
        eps, off = config.rms_norm_eps, config.norm_offset
        self.H, self.K, self.hd = H, K, hd
        self.shared = config.kv_donor(layer_idx) is not None  # borrows K/V: owns no K/V weights
        self.k_eq_v = config.k_eq_v(layer_idx)
        self.q_proj = nn.Linear(D, H * hd, bias=False)
        self.q_norm = RMSNorm(hd, eps, off)
        if not self.shared:
            self.k_proj = nn.Linear(D, K * hd, bias=False)
            self.k_norm = RMSNorm(hd, eps, off)
            if not self.k_eq_v:
                self.v_proj = nn.Linear(D, K * hd, bias=False)
            self.v_norm = RMSNorm(hd, eps, with_scale=False) if config.is_gemma4 else None
        self.o_proj = nn.Linear(H * hd, D, bias=False)
        self.window = config.sliding_window if config.layer_types[layer_idx] == SLIDING else None
        self.scaling = config.attention_scaling
        self.bidirectional = config.is_encoder  # EmbeddingGemma 2: every layer looks both ways
        self.record_probs = False  # set True to keep the attention map of the last call in .probs

    def forward(self, x, cos, sin, positions, cache=None, shared_kv=None, image_blocks=None, key_mask=None):
        """x: (B, T, D), cos/sin: (T, hd), positions: (T,) -> out (B, T, D), kv = (k, v, k_pos)

        ``shared_kv``: the ``kv`` another layer returned, for KV-shared layers. ``image_blocks``:
        see ``attention_mask``; only sliding layers use them (Gemma 4 keeps its global layers
        causal even between the tokens of one image, as transformers does). ``key_mask``: (B, T)
        bool, False at padding, which no query may look at (the encoder's batches, ``embedding.py``).
        """
        B, T, _ = x.shape
        q = self.q_norm(self.q_proj(x).view(B, T, self.H, self.hd)).transpose(1, 2)  # (B, H, T, hd)
        q = apply_rope(q, cos, sin)
        if self.shared:
            k = v = None  # it reads the donor's, already normed, rotated and cached
        else:
            k_raw = self.k_proj(x).view(B, T, self.K, self.hd)  # (B, T, K, hd)
            v = k_raw if self.k_eq_v else self.v_proj(x).view(B, T, self.K, self.hd)  # keys as values
            k = apply_rope(self.k_norm(k_raw).transpose(1, 2), cos, sin)  # (B, K, T, hd)
            v = (self.v_norm(v) if self.v_norm is not None else v).transpose(1, 2)  # (B, K, T, hd)
        blocks = image_blocks if self.window is not None else None
        # A verifying pass with a cache (row_exact.py); a KV-shared layer follows its donor, whose
        # kv is then a list with one (k, v, k_pos) per token.
        if T > 1 and one_row_active() and (isinstance(shared_kv, list) if self.shared else cache is not None):
            out, kv = self._one_query_at_a_time(q, k, v, positions, cache, shared_kv, blocks)
        else:
            kv = shared_kv if self.shared else self._remember(k, v, positions, cache)
            out = self._attend(q, *kv, positions, blocks, key_mask)  # (B, H, T, hd)
        return self.o_proj(out.transpose(1, 2).reshape(B, T, self.H * self.hd)), kv

    def _remember(self, k, v, positions, cache):
        """Store the new keys/values (if there is a cache) -> what attention may look at: (k, v, k_pos)
        with k, v: (B, K, S, hd) and k_pos: (S,)."""
        if cache is None:
            return k, v, positions
        k, v, k_pos = cache.update(k, v, positions)  # (B, K, S, hd), S = cached + T
        if k is None:  # a values-only cache (keys as values); it never wraps: slot p holds position p
            cos_all, sin_all = (t[:v.shape[2]] for t in cache.key_rope)  # (S, 2r) each
            k = self.keys_from_values(v, cos_all, sin_all)  # (B, K, S, hd)
        return k, v, k_pos

    def _attend(self, q, k, v, k_pos, positions, blocks, key_mask=None):
        """q: (B, H, T, hd) over k, v: (B, K, S, hd) -> (B, H, T, hd)."""
        mask = attention_mask(positions, k_pos, self.window, blocks, self.bidirectional)  # (T, S)
        if key_mask is not None:
            # (B, 1, T, S). A padding query far from every real token sees no key at all; PyTorch's
            # attention then returns zeros for it (as transformers' does), and no real token reads it.
            mask = mask & key_mask[:, None, None, :]
        if self.record_probs:
            return self._explicit(q, k, v, mask)
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=self.scaling,
                                              enable_gqa=self.H != self.K)  # (B, H, T, hd)

    def _one_query_at_a_time(self, q, k, v, positions, cache, shared_kv, blocks):
        """The T new tokens exactly as T one-token steps: write token i's K/V, attend with query i
        over what the cache then holds, next token. -> out (B, H, T, hd) and, for the KV-shared
        layers, one (k, v, k_pos) per token (copies where a later token overwrites a ring slot)."""
        wraps = not self.shared and positions[-1] >= cache.size  # later writes land inside earlier views
        outs, kvs = [], []
        for i in range(len(positions)):
            if self.shared:
                kv = shared_kv[i]
            else:
                kv = self._remember(k[:, :, i:i + 1], v[:, :, i:i + 1], positions[i:i + 1], cache)
                kv = tuple(t.clone() for t in kv) if wraps else kv
            outs.append(self._attend(q[:, :, i:i + 1], *kv, positions[i:i + 1], blocks))
            kvs.append(kv)
        return torch.cat(outs, dim=2), kvs

    def keys_from_values(self, v, cos, sin):
        """v: (B, K, S, hd) normed values; cos/sin: (S, 2r) angles of the r turning pairs -> (B, K, S, hd) keys.

        ``k_norm(x) = x · rsqrt(mean(x²) + eps) · w_k`` and ``v_norm(x)`` is the same without ``w_k``,
        on the same raw projection ``x``, so the key before RoPE is ``v ⊙ w_k``: the product below
        repeats the norm's last float32 step, and in float32 the keys are bit for bit those ``k_norm``
        and RoPE made (in bf16, up to one rounding). p-RoPE turns only the pairs ``(i, i + hd/2)``
        with ``i < r``; the others have angle 0 and pass through unchanged.
        """
        scale = self.k_norm.offset + self.k_norm.weight.float()  # (hd,), as RMSNorm applies it
        k = (v.float() * scale).type_as(v)  # (B, K, S, hd): the key before RoPE
        r, h = cos.shape[-1] // 2, self.hd // 2
        turning = torch.cat([k[..., :r], k[..., h:h + r]], dim=-1)  # (B, K, S, 2r): pairs (i, i + r) now
        turning = apply_rope(turning, cos, sin)
        k[..., :r], k[..., h:h + r] = turning[..., :r], turning[..., r:]
        return k

    def _explicit(self, q, k, v, mask):
        """The same attention spelled out, keeping the probabilities for pictures."""
        k = k.repeat_interleave(self.H // self.K, dim=1)  # (B, H, S, hd): each KV head serves H/K queries
        v = v.repeat_interleave(self.H // self.K, dim=1)
        scores = (q @ k.transpose(-1, -2)) * self.scaling  # (B, H, T, S)
        scores = scores.masked_fill(~mask, float("-inf"))
        self.probs = scores.float().softmax(dim=-1).to(q.dtype)  # (B, H, T, S)
        return self.probs @ v  # (B, H, T, hd)
