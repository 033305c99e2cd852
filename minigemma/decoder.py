"""The Gemma decoder: embeddings, a stack of layers, a tied output head -- Gemma 3 and Gemma 4.

Each layer is a "sandwich": RMSNorm before *and after* both attention and MLP, then the residual
add. That double norm is Gemma's, not Llama's. The input embedding is multiplied by ``√hidden`` (the
factor rounded to the weight dtype, as transformers does), and the output head reuses the
embedding matrix (tied weights). ``Gemma.forward`` reads as the whole model does: embed -> layers
-> norm -> head.

Gemma 4 adds, each switched on by its config field: per-layer embeddings (``ple.py``), a mixture of
experts beside the MLP (``moe.py``), KV-shared layers that borrow an earlier layer's keys and values,
a stored per-layer output scalar (``layer_scalar``), and a final logit soft-cap ``30·tanh(x/30)``.
Images, video and audio enter as embeddings written over placeholder tokens before the layers
run (``multimodal.py``, whose ``MultimodalGemma`` adds the towers to this decoder).
"""

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from .row_exact import each_row, one_row_active
from .attention import Attention
from .config import TextConfig
from .mlp import MLP
from .moe import Experts, Router
from .norm import RMSNorm
from .ple import per_layer_branch, per_layer_inputs
from .rope import cos_sin, inv_frequencies


class DecoderLayer(nn.Module):
    def __init__(self, config: TextConfig, i: int):
        super().__init__()
        D, eps, off = config.hidden_size, config.rms_norm_eps, config.norm_offset
        self.layer_type = config.layer_types[i]
        self.input_layernorm = RMSNorm(D, eps, off)
        self.self_attn = Attention(config, i)
        self.post_attention_layernorm = RMSNorm(D, eps, off)
        self.pre_feedforward_layernorm = RMSNorm(D, eps, off)
        self.mlp = MLP(D, config.mlp_width(i))
        self.post_feedforward_layernorm = RMSNorm(D, eps, off)
        self.moe = config.enable_moe_block
        if self.moe:
            self.router, self.experts = Router(config), Experts(config)
            self.post_feedforward_layernorm_1 = RMSNorm(D, eps, off)  # the dense branch's output
            self.pre_feedforward_layernorm_2 = RMSNorm(D, eps, off)  # the experts' input
            self.post_feedforward_layernorm_2 = RMSNorm(D, eps, off)  # the experts' output
        self.ple = bool(config.hidden_size_per_layer_input)
        if self.ple:
            P = config.hidden_size_per_layer_input
            self.per_layer_input_gate = nn.Linear(D, P, bias=False)
            self.per_layer_projection = nn.Linear(P, D, bias=False)
            self.post_per_layer_input_norm = RMSNorm(D, eps, off)
        if config.is_gemma4:
            self.register_buffer("layer_scalar", torch.ones(1))  # stored in checkpoints

    def forward(self, x, cos, sin, positions, cache=None, shared_kv=None, ple_input=None, blocks=None, key_mask=None):
        """x: (B, T, D) -> (B, T, D), plus this layer's (k, v, k_pos) for KV-sharing layers.
        ``key_mask``: (B, T) bool, False at padding (an encoder's batch; see ``Attention.forward``)."""
        a, kv = self.self_attn(self.input_layernorm(x), cos, sin, positions, cache, shared_kv, blocks, key_mask)
        h = x + self.post_attention_layernorm(a)
        m = self.mlp(self.pre_feedforward_layernorm(h))
        if self.moe:
            flat = h.reshape(-1, h.shape[-1])  # (B·T, D): the router reads the raw residual
            weights, index, _ = self.router(flat)
            experts = self.experts(self.pre_feedforward_layernorm_2(flat), index, weights).view_as(h)
            m = self.post_feedforward_layernorm_1(m) + self.post_feedforward_layernorm_2(experts)
        y = h + self.post_feedforward_layernorm(m)
        if self.ple:
            y = per_layer_branch(y, ple_input, self.per_layer_input_gate, self.per_layer_projection,
                                 self.post_per_layer_input_norm)
        if hasattr(self, "layer_scalar"):
            y = y * self.layer_scalar
        return y, kv


def rope_angles(inv_freq, positions, dtype):
    """cos, sin: (T, hd) for the positions; one position per call in a verifying pass (``row_exact.py``)."""
    if one_row_active() and len(positions) > 1:
        pairs = [cos_sin(inv_freq, p[None], dtype) for p in positions]
        return torch.cat([c for c, _ in pairs]), torch.cat([s for _, s in pairs])
    return cos_sin(inv_freq, positions, dtype)


class Gemma(nn.Module):
    """A Gemma text decoder: ``model(input_ids) -> logits``, (B, T) -> (B, T, vocab)."""

    def __init__(self, config: TextConfig):
        super().__init__()
        self.config = config
        self.embed_tokens = nn.Embedding(config.vocab_size, config.hidden_size)
        if config.hidden_size_per_layer_input:
            L, P = config.num_hidden_layers, config.hidden_size_per_layer_input
            self.embed_tokens_per_layer = nn.Embedding(config.vocab_size_per_layer_input, L * P)
            self.per_layer_model_projection = nn.Linear(config.hidden_size, L * P, bias=False)
            self.per_layer_projection_norm = RMSNorm(P, config.rms_norm_eps, config.norm_offset)
        self.layers = nn.ModuleList(DecoderLayer(config, i) for i in range(config.num_hidden_layers))
        self.norm = RMSNorm(config.hidden_size, config.rms_norm_eps, config.norm_offset)
        # RoPE frequencies per layer type (plain tensors, not weights: they come from the config).
        dims = {config.layer_types[i]: config.head_dim_of(i) for i in range(config.num_hidden_layers)}
        self.inv_freq = {t: inv_frequencies(d, config.rope_parameters[t]) for t, d in dims.items()}

    @property
    def dtype(self):
        """The dtype of the activations (the norms', as quantised layers store integers)."""
        return self.norm.weight.dtype

    def embed(self, input_ids):
        """(B, T) ids -> (B, T, D) scaled embeddings; raises on ids outside the vocabulary."""
        if input_ids.numel() and (input_ids.min() < 0 or input_ids.max() >= self.config.vocab_size):
            bad = input_ids[(input_ids < 0) | (input_ids >= self.config.vocab_size)][0].item()
            raise ValueError(f"token id {bad} is outside the vocabulary (0..{self.config.vocab_size - 1})")
        scale = torch.tensor(self.config.hidden_size ** 0.5, dtype=self.dtype)
        return self.embed_tokens(input_ids) * scale

    def head(self, x):
        """(..., D) -> (..., vocab): the tied output head, the embedding matrix read backwards.
        A swapped embedding (``swap.py``: row blocks, packed, quantised) brings its own product."""
        if hasattr(self.embed_tokens, "as_head"):
            return self.embed_tokens.as_head(x)
        return F.linear(x, self.embed_tokens.weight)

    def per_layer_inputs(self, input_ids, x):
        """(B, T) ids and their (B, T, D) embeddings -> (B, T, layers, P) per-layer inputs (PLE)."""
        if input_ids is None:
            raise ValueError("this model has per-layer embeddings: pass input_ids (with inputs_embeds if you "
                             "replace some token embeddings)")
        cfg = self.config
        return per_layer_inputs(input_ids, x, self.embed_tokens_per_layer, self.per_layer_model_projection,
                                self.per_layer_projection_norm, cfg.num_hidden_layers, cfg.hidden_size_per_layer_input)

    def gradient_checkpointing_enable(self):
        """Keep only each layer's input during training and recompute the layer in the backward pass:
        activation memory drops from every layer's intermediates to one layer's, for about one more
        forward pass of compute. The gradients are the same (the recomputation replays the RNG)."""
        self.gradient_checkpointing = True

    def gradient_checkpointing_disable(self):
        self.gradient_checkpointing = False

    def forward(self, input_ids=None, inputs_embeds=None, cache=None, last_only=False, return_hidden=False,
                image_blocks=None):
        """(B, T) ids and/or (B, T, D) embeddings -> (B, T, vocab) logits ((B, 1, vocab) if last_only).

        With a ``cache``, the tokens continue where the cache stopped and their K/V are stored.
        PLE models need ``input_ids`` even when ``inputs_embeds`` replace the token embeddings.
        ``image_blocks``: (T,) the image each position belongs to (-1: text), for Gemma 4's
        bidirectional attention inside an image (``multimodal.vision_blocks`` makes them).
        ``return_hidden=True`` also returns the final normed hidden states (B, T, D), which an MTP
        drafter reads (``mtp.py``): ``(logits, hidden)``.
        """
        hidden = self.hidden_states(input_ids, inputs_embeds, cache, last_only, image_blocks)  # (B, T, D)
        logits = self.logits(hidden)  # (B, T, vocab)
        return (logits, hidden) if return_hidden else logits

    def logits(self, hidden):
        """(..., D) final hidden states -> (..., vocab): the tied head, then Gemma 4's soft-cap.
        Training calls it on the labelled positions alone (``finetune.py``): the head is the
        largest product of the model (262,144 rows)."""
        logits = self.head(hidden)
        if self.config.final_logit_softcapping:
            cap = self.config.final_logit_softcapping
            logits = each_row(lambda z: cap * torch.tanh(z / cap), logits)
        return logits

    def hidden_states(self, input_ids=None, inputs_embeds=None, cache=None, last_only=False, image_blocks=None):
        """The model without its head: -> (B, T, D) final normed hidden states (see ``forward``)."""
        cfg = self.config
        x = self.embed(input_ids) if inputs_embeds is None else inputs_embeds  # (B, T, D)
        T = x.shape[1]
        start = cache.seen if cache is not None else 0
        limit = cache.max_len if cache is not None else cfg.max_position_embeddings  # cache <= context
        if start + T > limit:
            raise ValueError(f"{start + T} positions do not fit: the {'cache' if cache else 'context'} holds {limit}")
        ple = self.per_layer_inputs(input_ids, x) if cfg.hidden_size_per_layer_input else None  # (B, T, L, P)
        if image_blocks is not None and cache is not None:
            image_blocks = cache.add_image_blocks(image_blocks)  # (start + T,): every cached position's
        positions = torch.arange(start, start + T, device=x.device)  # (T,)
        rot = {t: rope_angles(f, positions, x.dtype) for t, f in self.inv_freq.items()}  # type -> (T, hd) x2
        recompute = getattr(self, "gradient_checkpointing", False) and cache is None and torch.is_grad_enabled()
        kv = {}  # layer index -> (k, v, k_pos), read by the KV-shared layers
        for i, layer in enumerate(self.layers):
            if i == cfg.first_kv_shared_layer and last_only and x.shape[1] > 1:
                # KV-shared layers write no K/V, so earlier positions no longer matter to anyone:
                # only the last one goes on (as transformers does for generation).
                x, positions = x[:, -1:], positions[-1:]
                ple = ple[:, -1:] if ple is not None else None
                rot = {t: (c[-1:], s[-1:]) for t, (c, s) in rot.items()}
            donor = cfg.kv_donor(i)
            cos, sin = rot[layer.layer_type]
            args = (x, cos, sin, positions, cache.layers[i] if cache is not None else None,
                    kv[donor] if donor is not None else None, ple[:, :, i] if ple is not None else None, image_blocks)
            # KV-shared layers read kv[donor] as an ordinary input, so recomputing works for them too.
            x, kv[i] = checkpoint(layer, *args, use_reentrant=False) if recompute else layer(*args)
        if cache is not None:
            cache.seen += T
        if last_only:
            x = x[:, -1:]  # (B, 1, D): generation only needs the next-token logits
        return self.norm(x)  # (B, T, D)
