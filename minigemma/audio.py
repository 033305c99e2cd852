"""Hearing, part 2: log-mel frames -> a conformer -> audio tokens for the text decoder.

Gemma 4 E2B and E4B take speech natively. The front end (``log_mel.py``) makes 100 log-mel
frames per second; the encoder here is the Universal Speech Model's conformer (Gulati et al. 2020;
Zhang et al. 2023): two stride-2 convolutions (4 × fewer frames: one token per 40 ms), then blocks
of half-step feed-forward, chunked local self-attention with relative positions, a light causal
convolution, and a second half-step feed-forward. Most projections are clipped linears
(``clipped.py``). ``MultimodalEmbedder`` (multimodal.py) projects the tokens into the text width.

Facts come from transformers' ``Gemma4AudioModel`` and JAX ``gemma`` 4.0.1 (``gm/nn/gemma4/audio``).
Left out: batching several clips into one padded tensor (each clip runs alone, which gives the same
tokens as a masked batch), dropout, training.
"""

import math
from dataclasses import dataclass, fields

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .log_mel import FRAMES_PER_SECOND, MAX_FRAMES, MAX_SECONDS, NUM_MELS, audio_token_count
from .clipped import ClippedLinear
from .norm import RMSNorm


@dataclass(frozen=True)
class AudioConfig:
    """The ``audio_config`` of a Gemma 4 ``config.json`` (transformers ``Gemma4AudioConfig`` keys).
    Defaults are E2B's and E4B's (the same tower; JAX ``ConformerConfig``)."""
    hidden_size: int = 1024
    num_hidden_layers: int = 12
    num_attention_heads: int = 8
    hidden_act: str = "silu"
    subsampling_conv_channels: tuple = (128, 32)
    conv_kernel_size: int = 5
    residual_weight: float = 0.5
    attention_chunk_size: int = 12
    attention_context_left: int = 13  # the query itself + 11 frames before are visible (see below)
    attention_context_right: int = 0
    attention_logit_cap: float = 50.0
    attention_invalid_logits_value: float = -1e9
    use_clipped_linears: bool = True
    rms_norm_eps: float = 1e-6
    gradient_clipping: float = 1e10
    output_proj_dims: int = 1536

    def __post_init__(self):
        object.__setattr__(self, "subsampling_conv_channels", tuple(self.subsampling_conv_channels))
        if self.hidden_act not in ACTIVATIONS:
            raise ValueError(f"audio_config hidden_act={self.hidden_act!r} is not supported ({', '.join(ACTIVATIONS)})")
        if len(self.subsampling_conv_channels) != 2:
            raise ValueError(f"audio_config subsampling_conv_channels must have 2 entries, "
                             f"got {self.subsampling_conv_channels}")

    @classmethod
    def from_dict(cls, d: dict) -> "AudioConfig":
        """A ``config.json``'s ``audio_config`` (or the whole file) -> AudioConfig. Keys that are not
        fields (``initializer_range``, ``dtype``, …) do not change the forward pass and are dropped;
        an explicit null means the default, as in transformers."""
        d = d.get("audio_config", d)
        if d.get("model_type", "gemma4_audio") != "gemma4_audio":
            raise ValueError(f"audio_config model_type {d['model_type']!r} is not supported (expected 'gemma4_audio')")
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names and v is not None})


ACTIVATIONS = {"silu": F.silu, "relu": F.relu, "gelu_pytorch_tanh": lambda x: F.gelu(x, approximate="tanh")}


def clip(x, bound):
    """Clamp to ±bound (the config's ``gradient_clipping``, kept within the dtype's range)."""
    bound = min(bound, torch.finfo(x.dtype).max)
    return x.clamp(-bound, bound)


class SubsampleConvProjection(nn.Module):
    """Two stride-2 3×3 convolutions over (time, mel), each with LayerNorm over channels and ReLU,
    then a Linear of (mel/4 · channels) -> hidden: 100 frames per second -> 25 tokens per second."""

    def __init__(self, config: AudioConfig):
        super().__init__()
        c0, c1 = config.subsampling_conv_channels
        for i, (c_in, c_out) in enumerate([(1, c0), (c0, c1)]):
            layer = nn.Module()
            layer.conv = nn.Conv2d(c_in, c_out, kernel_size=3, stride=2, padding=1, bias=False)
            layer.norm = nn.LayerNorm(c_out, eps=config.rms_norm_eps, bias=False)
            self.add_module(f"layer{i}", layer)
        mels = audio_token_count(NUM_MELS)  # the mel axis halves twice too, like time: 128 -> 32
        self.input_proj_linear = nn.Linear(mels * c1, config.hidden_size, bias=False)

    def forward(self, features):  # (B, frames, 128) -> (B, tokens, hidden)
        x = features.unsqueeze(1)  # (B, 1, frames, mels): one input channel
        for layer in (self.layer0, self.layer1):
            x = layer.conv(x)  # (B, C, time/2, mels/2)
            x = F.relu(layer.norm(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2))  # LayerNorm over C
        B, C, T, M = x.shape
        x = x.permute(0, 2, 3, 1).reshape(B, T, M * C)  # (B, tokens, mels/4 · C), mel-major
        return self.input_proj_linear(x)


class FeedForward(nn.Module):
    """The conformer's half-step feed-forward: norm, 4× SiLU MLP, norm, then x + 0.5 · that."""

    def __init__(self, config: AudioConfig):
        super().__init__()
        D = config.hidden_size
        self.pre_layer_norm, self.post_layer_norm = RMSNorm(D, offset=0.0), RMSNorm(D, offset=0.0)
        clipped = config.use_clipped_linears
        self.ffw_layer_1, self.ffw_layer_2 = ClippedLinear(D, 4 * D, clipped), ClippedLinear(4 * D, D, clipped)
        self.act, self.clip = ACTIVATIONS[config.hidden_act], config.gradient_clipping
        self.weight = config.residual_weight  # the "half step": 0.5

    def forward(self, x):  # (B, T, D) -> (B, T, D)
        h = self.pre_layer_norm(clip(x, self.clip))
        h = self.ffw_layer_2(self.act(self.ffw_layer_1(h)))
        return x + self.weight * self.post_layer_norm(clip(h, self.clip))


def relative_position_embedding(positions, width):
    """Transformer-XL sinusoids: (P,) positions -> (P, width) = [sin(p·f), cos(p·f)], f from 1 to 1e-4."""
    n = width // 2
    inv_timescales = torch.exp(torch.arange(n) * -(math.log(10000.0) / max(n - 1, 1)))  # (n,)
    angles = positions[:, None] * inv_timescales[None, :]  # (P, n)
    return torch.cat([torch.sin(angles), torch.cos(angles)], dim=-1)  # (P, width)


def local_attention_mask(T, chunk, past, future):
    """(blocks, chunk, context) bool: may query ``c`` of block ``b`` see context slot ``k``?

    The sequence is cut into blocks of ``chunk`` queries; block ``b`` reads the keys from
    ``b·chunk - past`` to ``b·chunk + chunk - 1 + future`` (its *context*). Within it, a query at
    time ``q`` sees the key at ``t`` when ``0 <= q - t < past`` (itself and the past-1 frames
    before) or ``0 < t - q < future``, and ``t`` is a real frame. Transformers' sliding-window
    rule, which is one frame narrower on each side than the context that is fetched.
    """
    blocks = (T + chunk - 1) // chunk
    q = torch.arange(blocks)[:, None, None] * chunk + torch.arange(chunk)[None, :, None]  # (blocks, chunk, 1)
    t = torch.arange(blocks)[:, None, None] * chunk - past + torch.arange(chunk + past + future)  # (blocks, 1, context)
    dist = q - t  # (blocks, chunk, context)
    return ((dist >= 0) & (dist < past) | (dist < 0) & (-dist < future)) & (t >= 0) & (t < T)


class LocalAttention(nn.Module):
    """Chunked local self-attention with relative positions (Transformer-XL style) and a logit cap.

    Each frame looks only at a short window around it, so the cost grows linearly with the clip.
    The logit of query q and key k is ``q·k + q·r[k - q]``: content plus a learned projection of
    the sinusoid of their distance; then ``cap · tanh(logit / cap)``.
    """

    def __init__(self, config: AudioConfig):
        super().__init__()
        D, H = config.hidden_size, config.num_attention_heads
        self.H, self.hd, self.cap = H, D // H, config.attention_logit_cap
        self.chunk, self.future = config.attention_chunk_size, config.attention_context_right
        self.past = config.attention_context_left - 1
        self.context = self.chunk + self.past + self.future
        self.invalid = config.attention_invalid_logits_value
        clipped = config.use_clipped_linears
        self.q_proj, self.k_proj, self.v_proj, self.post = (ClippedLinear(D, D, clipped) for _ in range(4))
        self.relative_k_proj = nn.Linear(D, D, bias=False)
        self.per_dim_scale = nn.Parameter(torch.zeros(self.hd))  # learned per-dim query scale, via softplus

    def blocks(self, x, T):
        """(B, T, H, hd) -> (B, H, blocks, context, hd): each block's window of keys (zeros outside)."""
        nb = (T + self.chunk - 1) // self.chunk
        x = F.pad(x, (0, 0, 0, 0, self.past, nb * self.chunk - T + self.future))  # (B, past + T' + future, H, hd)
        return x.unfold(1, self.context, self.chunk).permute(0, 2, 1, 4, 3)  # (B, H, nb, context, hd)

    def forward(self, x):  # (B, T, D) -> (B, T, D)
        B, T, D = x.shape
        H, hd, C = self.H, self.hd, self.chunk
        q = self.q_proj(x).float().view(B, T, H, hd)
        k = self.k_proj(x).float().view(B, T, H, hd)
        v = self.v_proj(x).float().view(B, T, H, hd)
        # The logit scale is split oddly but exactly: 1/√hd/ln 2 · softplus(w) on q, ln(1+e)/ln 2 on k.
        q = q * (hd ** -0.5 / math.log(2)) * F.softplus(self.per_dim_scale)
        k = k * (math.log(1 + math.e) / math.log(2))
        nb = (T + C - 1) // C
        q = F.pad(q, (0, 0, 0, 0, 0, nb * C - T)).view(B, nb, C, H, hd).permute(0, 3, 1, 2, 4)  # (B, H, nb, C, hd)
        k, v = self.blocks(k, T), self.blocks(v, T)  # (B, H, nb, context, hd)
        content = q @ k.transpose(-1, -2)  # (B, H, nb, C, context)
        # Relative term. Row j of the table is timestep S - j (S = context // 2); query c and
        # context slot s use row s - c (0 where s - c > S), as transformers computes it. With the
        # released chunking (12, left 13, right 0) that is the distance q - t, as in JAX gemma.
        S = self.context // 2
        table = relative_position_embedding(torch.arange(S, -1, -1, dtype=torch.float32), D).to(x.dtype)
        r = self.relative_k_proj(table).float().view(S + 1, H, hd).permute(1, 2, 0)[:, None]  # (H, 1, hd, S + 1)
        rel = q @ r  # (B, H, nb, C, S + 1)
        j = torch.arange(self.context)[None, :] - torch.arange(C)[:, None]  # (C, context): s - c
        rel = rel.gather(-1, j.clamp(0, S).expand(B, H, nb, C, -1)) * ((j >= 0) & (j <= S))  # (B, H, nb, C, context)
        logits = self.cap * torch.tanh((content + rel) / self.cap)
        mask = local_attention_mask(T, C, self.past, self.future)  # (nb, C, context)
        logits = logits.masked_fill(~mask, self.invalid)
        out = logits.softmax(-1) @ v  # (B, H, nb, C, hd)
        out = out.permute(0, 2, 3, 1, 4).reshape(B, nb * C, D)[:, :T]  # (B, T, D)
        return self.post(out.to(x.dtype))


class LightConv(nn.Module):
    """The conformer's convolution module: norm, GLU, causal depthwise conv (each channel mixes its
    own last ``kernel`` frames), norm, SiLU, Linear, residual. Local patterns attention misses."""

    def __init__(self, config: AudioConfig):
        super().__init__()
        D, eps = config.hidden_size, config.rms_norm_eps
        self.pre_layer_norm, self.conv_norm = RMSNorm(D, eps, offset=0.0), RMSNorm(D, eps, offset=0.0)
        clipped = config.use_clipped_linears
        self.linear_start, self.linear_end = ClippedLinear(D, 2 * D, clipped), ClippedLinear(D, D, clipped)
        self.depthwise_conv1d = nn.Conv1d(D, D, config.conv_kernel_size, groups=D, bias=False)
        self.act, self.clip = ACTIVATIONS[config.hidden_act], config.gradient_clipping

    def forward(self, x):  # (B, T, D) -> (B, T, D)
        h = F.glu(self.linear_start(self.pre_layer_norm(x)), dim=-1)  # (B, T, D): a · sigmoid(b)
        h = F.pad(h.transpose(1, 2), (self.depthwise_conv1d.kernel_size[0] - 1, 0))  # (B, D, K - 1 + T): causal
        h = self.depthwise_conv1d(h).transpose(1, 2)  # (B, T, D)
        return x + self.linear_end(self.act(self.conv_norm(clip(h, self.clip))))


class ConformerLayer(nn.Module):
    """Macaron conformer block: ½ feed-forward, attention, convolution, ½ feed-forward, norm."""

    def __init__(self, config: AudioConfig):
        super().__init__()
        D = config.hidden_size
        self.feed_forward1, self.feed_forward2 = FeedForward(config), FeedForward(config)
        self.self_attn, self.lconv1d = LocalAttention(config), LightConv(config)
        self.norm_pre_attn, self.norm_post_attn, self.norm_out = (RMSNorm(D, offset=0.0) for _ in range(3))
        self.clip = config.gradient_clipping

    def forward(self, x):  # (B, T, D) -> (B, T, D)
        x = self.feed_forward1(x)
        x = x + self.norm_post_attn(clip(self.self_attn(self.norm_pre_attn(clip(x, self.clip))), self.clip))
        x = self.feed_forward2(self.lconv1d(x))
        return self.norm_out(clip(x, self.clip))


class AudioTower(nn.Module):
    """``tower([features, ...]) -> (total tokens, output_proj_dims)``: each clip's (frames, 128)
    log-mel features -> its ceil(frames / 4) tokens, clips concatenated in order (before the
    embedder). Each clip runs alone: the same tokens a padded, masked batch gives."""

    def __init__(self, config: AudioConfig):
        super().__init__()
        self.config = config
        self.subsample_conv_projection = SubsampleConvProjection(config)
        self.layers = nn.ModuleList(ConformerLayer(config) for _ in range(config.num_hidden_layers))
        self.output_proj = nn.Linear(config.hidden_size, config.output_proj_dims)

    def encode(self, features):  # (frames, 128) -> (tokens, output_proj_dims)
        x = torch.as_tensor(np.asarray(features) if not torch.is_tensor(features) else features)
        if x.ndim != 2 or x.shape[1] != NUM_MELS or x.shape[0] == 0:
            raise ValueError(f"audio features must have shape (frames >= 1, {NUM_MELS}), got {tuple(x.shape)}")
        if not torch.isfinite(x).all():
            raise ValueError("audio features hold NaN or infinite values")
        if x.shape[0] > MAX_FRAMES:
            seconds = x.shape[0] / FRAMES_PER_SECOND
            raise ValueError(f"the clip has {x.shape[0]} frames ({seconds:.2f} s); Gemma 4 hears at most "
                             f"{MAX_SECONDS} s ({MAX_FRAMES} frames) per clip: split it into several clips")
        x = self.subsample_conv_projection(x.to(self.output_proj.weight.dtype)[None])  # (1, tokens, D)
        for layer in self.layers:
            x = layer(x)
        return self.output_proj(x)[0]

    def forward(self, features):  # list of (frames_i, 128) -> (sum_i tokens_i, output_proj_dims)
        if isinstance(features, (np.ndarray, torch.Tensor)):
            features = [features]
        if len(features) == 0:
            raise ValueError("no audio clips given")
        return torch.cat([self.encode(f) for f in features])
