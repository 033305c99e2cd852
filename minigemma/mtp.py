"""Multi-token prediction (MTP): Gemma 4's *assistant* drafter, a tiny model that rides on the target.

Speculative decoding (``speculative.py``) needs a cheap guess of the next few tokens. Google's
Gemma 4 assistants (``google/gemma-4-*-it-assistant``, transformers' ``Gemma4AssistantForCausalLM``)
are built to be as cheap as possible by *borrowing* from the big model instead of re-doing its work:

1. **Input.** The drafter does not see the text. It sees two vectors of the target's width: the
   target's (scaled) embedding of the last token, and the target's last hidden state (after the
   final norm) -- the one that predicted that token. They are concatenated (2 × target width) and
   ``pre_projection`` maps them down to the drafter's own, smaller width.
2. **A few Gemma 4 layers that compute no keys or values.** Every layer is KV-shared: it attends
   with its own queries over the *target's* cached keys and values -- for each layer type, those of
   the target's last layer of that type that writes K/V. There is no prefill and no drafter cache.
   The drafter stands at the position of the last token; its K/V reach is the target's context
   before that token (sliding layers: the last ``window + 1`` positions, as transformers does).
3. **Two outputs.** ``post_projection`` maps the normed hidden state back to the target's width: it
   replaces the target's hidden state in the next drafting step (input 1 again, with the token just
   drafted). The logits come from the tied embedding (no soft-cap) -- or, with
   ``use_ordered_embeddings``, from the **centroid head**: 2,048 centroids score the hidden state,
   and only the tokens of the 32 best clusters (128 tokens each, listed by ``token_ordering``) get a
   real logit: 4,096 dot products instead of 262,144. Every other token gets ``min - 1``.

Each drafting step keeps the same position and the same target K/V; only the two input vectors
change. The target then checks all drafts in one pass (``speculative.py``).
"""

from dataclasses import dataclass, fields

import torch
import torch.nn.functional as F
from torch import nn

from .config import SLIDING, TextConfig
from .decoder import DecoderLayer
from .norm import RMSNorm
from .rope import cos_sin, inv_frequencies

TARGET = -1  # the "donor" of every drafter layer: the target model's K/V, not a drafter layer


@dataclass(frozen=True)
class DrafterTextConfig(TextConfig):
    """The drafter's Gemma 4 text stack: a ``TextConfig`` in which every layer borrows its keys and
    values from the target (``kv_donor`` answers ``TARGET``), so no layer owns K/V weights."""

    def kv_donor(self, i: int):
        return TARGET


@dataclass(frozen=True)
class DrafterConfig:
    """A ``gemma4_assistant`` ``config.json``: the text stack plus the fields that tie it to a target."""

    text_config: DrafterTextConfig
    backbone_hidden_size: int  # the target's hidden size
    use_ordered_embeddings: bool = False  # centroid head instead of the full tied head
    num_centroids: int = 2048
    centroid_intermediate_top_k: int = 32  # clusters scored per step

    def __post_init__(self):
        t = self.text_config
        if self.use_ordered_embeddings and t.vocab_size % self.num_centroids:
            raise ValueError(f"vocab_size {t.vocab_size} is not a multiple of num_centroids {self.num_centroids}")
        if self.use_ordered_embeddings and not 1 <= self.centroid_intermediate_top_k <= self.num_centroids:
            raise ValueError(f"centroid_intermediate_top_k must be in 1..{self.num_centroids}, "
                             f"got {self.centroid_intermediate_top_k}")

    @classmethod
    def from_dict(cls, d: dict) -> "DrafterConfig":
        if d.get("model_type") != "gemma4_assistant":
            raise ValueError(f"model_type {d.get('model_type')!r} is not a Gemma 4 assistant ('gemma4_assistant')")
        if d.get("tie_word_embeddings") is False:
            raise ValueError("config field tie_word_embeddings=False is not supported: the drafter's head is its "
                             "embedding")
        text = dict(d["text_config"])
        L = text["num_hidden_layers"]
        shared = text.pop("num_kv_shared_layers", None)
        if shared not in (None, 0, L):  # transformers turns 0 into "all layers"
            raise ValueError(f"num_kv_shared_layers={shared}: every one of the {L} layers of a drafter must read "
                             "the target's K/V")
        for key, fine in (("hidden_size_per_layer_input", (None, 0)), ("enable_moe_block", (None, False)),
                          ("use_double_wide_mlp", (None, False)), ("attention_k_eq_v", (None, False, True))):
            if text.get(key) not in fine:
                raise ValueError(f"config field text_config.{key}={text[key]!r} is not supported by a drafter")
        mine = {f.name for f in fields(cls)} - {"text_config"}
        return cls(text_config=DrafterTextConfig.from_dict(text), **{k: d[k] for k in mine if k in d})


class CentroidHead(nn.Module):
    """The ``use_ordered_embeddings`` head: score clusters first, then only the tokens inside the best.

    ``token_ordering`` lists the vocabulary cluster by cluster: cluster ``c`` holds the token ids
    ``token_ordering[c·n : (c+1)·n]`` (``n = vocab / num_centroids`` = 128)."""

    def __init__(self, config: DrafterConfig):
        super().__init__()
        t = config.text_config
        self.top_k, self.num_centroids = config.centroid_intermediate_top_k, config.num_centroids
        self.per_cluster = t.vocab_size // config.num_centroids
        self.centroids = nn.Linear(t.hidden_size, config.num_centroids, bias=False)
        self.register_buffer("token_ordering", torch.zeros(t.vocab_size, dtype=torch.long))

    def candidates(self, h):
        """h: (B, T, d) -> the token ids that get a real logit: (B, T, top_k · per_cluster)."""
        best = self.centroids(h).topk(self.top_k, dim=-1).indices  # (B, T, top_k) clusters
        clusters = self.token_ordering.view(self.num_centroids, self.per_cluster)  # (C, n) ids
        return clusters[best].flatten(-2)  # (B, T, top_k · n)

    def forward(self, h, head_weight):
        """h: (B, T, d), head_weight: (vocab, d) -> logits (B, T, vocab)."""
        ids = self.candidates(h)  # (B, T, K)
        scores = (head_weight[ids] @ h.unsqueeze(-1)).squeeze(-1)  # (B, T, K): K dot products, not vocab
        floor = scores.min() - 1.0  # every unscored token sits below every scored one
        out = torch.full((*h.shape[:2], head_weight.shape[0]), floor.item(), dtype=h.dtype, device=h.device)
        return out.scatter_(-1, ids, scores)


class Drafter(nn.Module):
    """``drafter(token_embeds, hidden, target_kv, position) -> (logits, next_hidden)``."""

    def __init__(self, config: DrafterConfig):
        super().__init__()
        t = self.text_config = config.text_config
        self.config = config
        D, d = config.backbone_hidden_size, t.hidden_size
        self.embed_tokens = nn.Embedding(t.vocab_size, d)  # only the (tied) output head reads it
        self.layers = nn.ModuleList(DecoderLayer(t, i) for i in range(t.num_hidden_layers))
        for layer in self.layers:
            if layer.self_attn.window is not None:
                # transformers' drafter sees the last window + 1 target positions before it (an
                # inclusive mask, |q - k| <= window); in our "q - k < window" terms that is window + 2.
                layer.self_attn.window = t.sliding_window + 2
        self.norm = RMSNorm(d, t.rms_norm_eps, t.norm_offset)
        self.pre_projection = nn.Linear(2 * D, d, bias=False)
        self.post_projection = nn.Linear(d, D, bias=False)
        self.masked_embedding = CentroidHead(config) if config.use_ordered_embeddings else None
        dims = {t.layer_types[i]: t.head_dim_of(i) for i in range(t.num_hidden_layers)}
        self.inv_freq = {typ: inv_frequencies(hd, t.rope_parameters[typ]) for typ, hd in dims.items()}

    def forward(self, token_embeds, hidden, target_kv, position):
        """One drafting step.

        token_embeds: (B, T, D) the target's scaled embedding of the last token(s);
        hidden: (B, T, D) the target's final (normed) hidden state before them, or the previous
        step's ``next_hidden``; target_kv: {layer type: (k, v, k_pos)} with k, v: (B, K, S, hd)
        and k_pos: (S,) the target positions they hold; position: the last token's position (int).
        -> logits (B, T, vocab), next_hidden (B, T, D).
        """
        x = self.pre_projection(torch.cat([token_embeds, hidden], dim=-1))  # (B, T, d)
        positions = torch.full((x.shape[1],), position, dtype=torch.long, device=x.device)  # (T,)
        rot = {typ: cos_sin(f, positions, x.dtype) for typ, f in self.inv_freq.items()}
        for layer in self.layers:
            cos, sin = rot[layer.layer_type]
            x, _ = layer(x, cos, sin, positions, shared_kv=target_kv[layer.layer_type])
        h = self.norm(x)  # (B, T, d)
        if self.masked_embedding is not None:
            logits = self.masked_embedding(h, self.embed_tokens.weight)
        else:
            logits = F.linear(h, self.embed_tokens.weight)  # (B, T, vocab): tied head, no soft-cap
        return logits, self.post_projection(h)


def producer_layers(target_config) -> dict:
    """{layer type: index of the target's last layer of that type that writes K/V}: what a drafter reads."""
    first = target_config.first_kv_shared_layer
    return {typ: max(j for j in range(first) if target_config.layer_types[j] == typ)
            for typ in dict.fromkeys(target_config.layer_types[:first])}  # in order of first appearance


def check_pair(drafter: Drafter, target_config) -> None:
    """Raise a clear error if this drafter cannot read this target."""
    t, dc = drafter.text_config, drafter.config
    if t.vocab_size != target_config.vocab_size:
        raise ValueError(f"the drafter's vocabulary ({t.vocab_size}) differs from the target's "
                         f"({target_config.vocab_size}): its tokens would mean something else")
    if dc.backbone_hidden_size != target_config.hidden_size:
        raise ValueError(f"the drafter was built for a target of width {dc.backbone_hidden_size} "
                         f"(backbone_hidden_size), but this target's hidden_size is {target_config.hidden_size}")
    producers = producer_layers(target_config)
    for i, typ in enumerate(t.layer_types):
        if typ not in producers:
            raise ValueError(f"drafter layer {i} ({typ}) needs target K/V of that type, which the target has none of")
        j = producers[typ]
        mine, theirs = (t.kv_heads_of(i), t.head_dim_of(i)), (target_config.kv_heads_of(j), target_config.head_dim_of(j))
        if mine != theirs:
            raise ValueError(f"drafter layer {i} ({typ}) expects (KV heads, head dim) = {mine}, but the target's "
                             f"layer {j} provides {theirs}")
    if SLIDING in t.layer_types and t.sliding_window != target_config.sliding_window:
        raise ValueError(f"the drafter's sliding window ({t.sliding_window}) differs from the target's "
                         f"({target_config.sliding_window})")


def drafter_expected_keys(config: DrafterConfig) -> dict:
    """Every tensor a drafter checkpoint holds (names without the leading ``model.``), with its shape;
    built on the ``meta`` device."""
    with torch.device("meta"):
        model = Drafter(config)
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}
