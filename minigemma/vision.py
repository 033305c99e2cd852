"""Gemma 4's vision tower: from patches to soft tokens the text model can read.

A ViT-style encoder (the SigLIP family, Zhai et al. 2023) with Gemma's own parts:

1. **Patch embedding.** Pixels in [0, 1] are mapped to [-1, 1] and projected (768 -> width). A
   learned *2D position table* adds the row of column ``x`` and the row of row ``y``.
2. **Encoder layers**, Gemma-style sandwiches (RMSNorm before and after attention and MLP) with
   QK-norm, a weightless value norm, attention scale 1, every patch seeing every patch of its
   image. Positions enter again as **2D RoPE** (base 100): the first half of each head rotates by
   the patch's column, the second half by its row.
3. **Clipped linears** (E2B/E4B towers): each projection clamps its input and its output to stored
   bounds (``input_min`` ... ``output_max``), a trick from quantisation-aware training (``clipped.py``).
4. **Pooling.** Each 3×3 block of patches (found from the positions, not the order) is averaged
   into one soft token, scaled by ``√width``; the 26B/31B towers then *standardise* it with stored
   ``std_bias`` / ``std_scale``. The multimodal embedder (``multimodal.py``) projects into the text.

Images of different sizes are encoded unpadded; images with equal patch counts share a batch.
Equal to transformers' ``Gemma4VisionModel``. Left out: dropout, training.
"""

from dataclasses import dataclass, field, fields

import torch
import torch.nn.functional as F
from torch import nn

from .clipped import ClippedLinear
from .norm import RMSNorm
from .preprocess import PATCH, POOL
from .rope import apply_rope, cos_sin, inv_frequencies


@dataclass(frozen=True)
class VisionConfig:
    # Defaults are the E2B/E4B tower (JAX gemma 4.0.1 ``VisionEncoder``; transformers ``Gemma4VisionConfig``).
    hidden_size: int = 768
    intermediate_size: int = 3072
    num_hidden_layers: int = 16
    num_attention_heads: int = 12
    num_key_value_heads: int = 12
    head_dim: int = 64
    rms_norm_eps: float = 1e-6
    rope_parameters: dict = field(default_factory=lambda: {"rope_type": "axial", "rope_theta": 100.0})
    pooling_kernel_size: int = POOL
    patch_size: int = PATCH
    position_embedding_size: int = 10240  # rows of the 2D position table: the longest side in patches
    use_clipped_linears: bool = False
    standardize: bool = False
    hidden_activation: str = "gelu_pytorch_tanh"

    def __post_init__(self):
        rope = self.rope_parameters
        if rope.get("rope_type", "axial") != "axial":
            raise ValueError(f"vision rope_type {rope.get('rope_type')!r} is not supported (only 'axial')")
        if self.hidden_activation not in ("gelu_pytorch_tanh", "gelu_new"):
            raise ValueError(f"vision hidden_activation {self.hidden_activation!r} is not supported")
        if (self.patch_size, self.pooling_kernel_size) != (PATCH, POOL):
            raise ValueError(f"patch_size {self.patch_size} / pooling_kernel_size {self.pooling_kernel_size}: "
                             f"minigemma's preprocessing is built for Gemma 4's {PATCH} / {POOL}")
        if self.num_attention_heads % self.num_key_value_heads or self.head_dim % 4:
            raise ValueError("vision heads must group evenly and head_dim must split into 2 axes × pairs")

    @classmethod
    def from_dict(cls, d: dict) -> "VisionConfig":
        """Read a ``config.json`` dict's ``vision_config`` (or a vision config dict itself)."""
        d = d["vision_config"] if "vision_config" in d else d
        if d.get("model_type", "gemma4_vision") != "gemma4_vision":
            raise ValueError(f"model_type {d['model_type']!r} is not a Gemma 4 vision config")
        for key, fine in {"attention_bias": (False, None)}.items():
            if d.get(key) not in fine:
                raise ValueError(f"vision config field {key}={d[key]!r} is not supported by minigemma")
        known = {f.name for f in fields(cls)}
        kwargs = {k: v for k, v in d.items() if k in known and v is not None}
        if kwargs.get("head_dim") is None:
            kwargs["head_dim"] = kwargs.get("hidden_size", 768) // kwargs.get("num_attention_heads", 12)
        return cls(**kwargs)


class VisionAttention(nn.Module):
    def __init__(self, c: VisionConfig):
        super().__init__()
        D, H, K, hd, clip = c.hidden_size, c.num_attention_heads, c.num_key_value_heads, c.head_dim, c.use_clipped_linears
        self.H, self.K, self.hd = H, K, hd
        self.q_proj, self.k_proj = ClippedLinear(D, H * hd, clip), ClippedLinear(D, K * hd, clip)
        self.v_proj, self.o_proj = ClippedLinear(D, K * hd, clip), ClippedLinear(H * hd, D, clip)
        self.q_norm, self.k_norm = RMSNorm(hd, c.rms_norm_eps, 0.0), RMSNorm(hd, c.rms_norm_eps, 0.0)
        self.v_norm = RMSNorm(hd, c.rms_norm_eps, with_scale=False)

    def forward(self, x, rot):
        """x: (B, n, D), rot: the 2D RoPE tables of ``rope_2d`` -> (B, n, D)."""
        B, n, _ = x.shape
        q = rope_2d(self.q_norm(self.q_proj(x).view(B, n, self.H, self.hd)).transpose(1, 2), rot)  # (B, H, n, hd)
        k = rope_2d(self.k_norm(self.k_proj(x).view(B, n, self.K, self.hd)).transpose(1, 2), rot)  # (B, K, n, hd)
        v = self.v_norm(self.v_proj(x).view(B, n, self.K, self.hd)).transpose(1, 2)  # (B, K, n, hd)
        out = F.scaled_dot_product_attention(q, k, v, scale=1.0, enable_gqa=self.H != self.K)  # no mask
        return self.o_proj(out.transpose(1, 2).reshape(B, n, self.H * self.hd))


def rope_tables(head_dim, theta, positions, dtype):
    """positions: (B, n, 2) as (x, y) -> (cos_x, sin_x, cos_y, sin_y), each (B, 1, n, head_dim/2)."""
    inv_freq = inv_frequencies(head_dim // 2, {"rope_theta": theta})  # (hd/4,): one axis uses half the dims
    B, n, _ = positions.shape
    tables = []
    for axis in (0, 1):
        cos, sin = cos_sin(inv_freq, positions[..., axis].reshape(-1), dtype)  # (B·n, hd/2)
        tables += [cos.view(B, 1, n, -1), sin.view(B, 1, n, -1)]  # broadcast over heads
    return tables


def rope_2d(x, rot):
    """x: (B, heads, n, hd): first half rotated by the column, second half by the row."""
    cx, sx, cy, sy = rot
    x1, x2 = x.chunk(2, dim=-1)  # (B, heads, n, hd/2) each
    return torch.cat([apply_rope(x1, cx, sx), apply_rope(x2, cy, sy)], dim=-1)


class VisionLayer(nn.Module):
    def __init__(self, c: VisionConfig):
        super().__init__()
        D, I, eps, clip = c.hidden_size, c.intermediate_size, c.rms_norm_eps, c.use_clipped_linears
        self.input_layernorm, self.post_attention_layernorm = RMSNorm(D, eps, 0.0), RMSNorm(D, eps, 0.0)
        self.pre_feedforward_layernorm, self.post_feedforward_layernorm = RMSNorm(D, eps, 0.0), RMSNorm(D, eps, 0.0)
        self.self_attn = VisionAttention(c)
        self.mlp = nn.Module()  # a gated GELU MLP of clipped linears (names as in checkpoints)
        self.mlp.gate_proj, self.mlp.up_proj = ClippedLinear(D, I, clip), ClippedLinear(D, I, clip)
        self.mlp.down_proj = ClippedLinear(I, D, clip)

    def forward(self, x, rot):  # x: (B, n, D) -> (B, n, D)
        h = x + self.post_attention_layernorm(self.self_attn(self.input_layernorm(x), rot))
        m, mlp = self.pre_feedforward_layernorm(h), self.mlp
        m = mlp.down_proj(F.gelu(mlp.gate_proj(m), approximate="tanh") * mlp.up_proj(m))
        return h + self.post_feedforward_layernorm(m)


def pool(hidden, positions, k=POOL):
    """hidden: (B, n, D), positions: (B, n, 2) -> (B, n / k², D) float32, the mean of each k×k block.

    Token ``t`` of an image ``w`` patches wide is block (column x // k, row y // k), numbered row by
    row: ``t = x // k + (w // k) · (y // k)``.
    """
    B, n, _ = hidden.shape
    width = positions[..., 0].max(dim=-1, keepdim=True).values + 1  # (B, 1) patches per row
    block = positions // k  # (B, n, 2)
    token = block[..., 0] + (width // k) * block[..., 1]  # (B, n)
    weights = F.one_hot(token, n // k ** 2).float() / k ** 2  # (B, n, n/k²)
    return weights.transpose(1, 2) @ hidden.float()  # (B, n/k², D)


class VisionTower(nn.Module):
    """``tower([(patches (n_i, 768), positions (n_i, 2)), ...]) -> (Σ n_i / 9, width)`` soft tokens."""

    def __init__(self, config: VisionConfig):
        super().__init__()
        c = self.config = config
        self.patch_embedder = nn.Module()
        self.patch_embedder.input_proj = nn.Linear(3 * c.patch_size ** 2, c.hidden_size, bias=False)
        self.patch_embedder.position_embedding_table = nn.Parameter(  # [0] for columns, [1] for rows
            torch.zeros(2, c.position_embedding_size, c.hidden_size))
        self.encoder = nn.Module()
        self.encoder.layers = nn.ModuleList(VisionLayer(c) for _ in range(c.num_hidden_layers))
        if c.standardize:
            self.register_buffer("std_bias", torch.zeros(c.hidden_size))
            self.register_buffer("std_scale", torch.ones(c.hidden_size))

    def encode(self, patches, positions):
        """One batch of same-size images: (B, n, 768), (B, n, 2) -> (B, n/9, width) soft tokens."""
        c, emb = self.config, self.patch_embedder
        x = emb.input_proj((2 * (patches - 0.5)).to(emb.input_proj.weight.dtype))  # (B, n, D): [0,1] -> [-1,1]
        table = emb.position_embedding_table  # (2, P, D)
        x = x + table[0][positions[..., 0]] + table[1][positions[..., 1]]  # (B, n, D)
        rot = rope_tables(c.head_dim, c.rope_parameters["rope_theta"], positions, x.dtype)
        for layer in self.encoder.layers:
            x = layer(x, rot)
        tokens = pool(x, positions, c.pooling_kernel_size).to(x.dtype).float() * c.hidden_size ** 0.5
        if c.standardize:
            tokens = (tokens - self.std_bias.float()) * self.std_scale.float()
        return tokens.to(x.dtype)

    def forward(self, images):
        """images: a list of ``(patches, positions)`` (tensors or arrays) -> (total tokens, width)."""
        images = [self.check(i, p, pos) for i, (p, pos) in enumerate(images)]
        out = [None] * len(images)
        by_size = {}
        for i, (p, _) in enumerate(images):
            by_size.setdefault(p.shape[0], []).append(i)  # images with equal patch counts share a batch
        for members in by_size.values():
            tokens = self.encode(torch.stack([images[i][0] for i in members]),
                                 torch.stack([images[i][1] for i in members]))
            for j, i in enumerate(members):
                out[i] = tokens[j]
        if not out:
            return torch.zeros(0, self.config.hidden_size, dtype=self.patch_embedder.input_proj.weight.dtype)
        return torch.cat(out)  # (Σ n_i / 9, D)

    def check(self, index, patches, positions):
        """Validate one image's (patches, positions) -> float32 and long tensors, or a clear error."""
        p, pos = torch.as_tensor(patches).float(), torch.as_tensor(positions).long()  # arrays or tensors
        c, k = self.config, self.config.pooling_kernel_size
        dim = 3 * c.patch_size ** 2
        if p.ndim != 2 or p.shape[1] != dim or pos.shape != (p.shape[0], 2):
            raise ValueError(f"image {index}: expected patches (n, {dim}) and positions (n, 2), got "
                             f"{tuple(p.shape)} and {tuple(pos.shape)}")
        n = p.shape[0]
        if n < k * k:
            raise ValueError(f"image {index} has {n} patches: smaller than one soft token ({k}×{k} patches)")
        if pos.min() < 0:
            raise ValueError(f"image {index}: negative positions (padding?); pass only the real patches")
        cols, rows = int(pos[:, 0].max()) + 1, int(pos[:, 1].max()) + 1
        if cols * rows != n or cols % k or rows % k or len(torch.unique(pos, dim=0)) != n:
            raise ValueError(f"image {index}: the positions do not form a full grid of {k}×{k} blocks "
                             f"({n} patches, {cols} columns × {rows} rows)")
        if max(cols, rows) > c.position_embedding_size:
            raise ValueError(f"image {index} is {max(cols, rows)} patches long but the position table covers "
                             f"{c.position_embedding_size} (position_embedding_size)")
        device = self.patch_embedder.input_proj.weight.device
        return p.to(device), pos.to(device)
