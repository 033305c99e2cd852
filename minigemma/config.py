"""The numbers that define a Gemma text decoder (Gemma 3 or Gemma 4), as a frozen dataclass.

Field names equal the keys of a Hugging Face ``config.json`` (transformers 5.x), so a learner can
put the two side by side. ``TextConfig.from_dict`` reads a ``config.json`` (or the ``text_config``
inside a multimodal one), ``TextConfig.from_gguf`` reads GGUF metadata, and ``presets.py`` holds the
four published Gemma 4 models. Per-layer questions (which head dim? which KV donor?) are answered
by small methods here, so the model code never re-derives them. Anything we do not implement is
refused with an error that names the field, never silently ignored.
"""

from dataclasses import dataclass, field, fields

SLIDING, FULL = "sliding_attention", "full_attention"
# Gemma 3 27B is the one size with 62 layers (1B: 26, 4B: 34, 12B: 48, 270M: 18) and the one whose
# attention scale is not head_dim ** -0.5 but (hidden / heads) ** -0.5 = 168 ** -0.5 (its config.json
# has query_pre_attn_scalar 168, head_dim 128). A GGUF stores neither, so llama.cpp recognises 27B by
# its layer count (src/llama-model.cpp, LLM_ARCH_GEMMA3, after gemma_pytorch's config.py) and so do we.
GEMMA3_27B_LAYERS = 62


def default_layer_types(num_layers, pattern=6):
    """Gemma 3: every ``pattern``-th layer is global (5 sliding : 1 global)."""
    return tuple(FULL if (i + 1) % pattern == 0 else SLIDING for i in range(num_layers))


@dataclass(frozen=True)
class TextConfig:
    # Defaults are Gemma 3 270M (its GGUF metadata; HF google/gemma-3-270m config.json).
    model_type: str = "gemma3_text"
    vocab_size: int = 262144
    hidden_size: int = 640
    intermediate_size: int = 2048
    num_hidden_layers: int = 18
    num_attention_heads: int = 4
    num_key_value_heads: int = 1
    head_dim: int = 256
    rms_norm_eps: float = 1e-6
    sliding_window: int = 512  # a sliding layer sees itself + the 511 tokens before
    layer_types: tuple = default_layer_types(18)
    # RoPE per layer type: {"full_attention": {"rope_type": "default", "rope_theta": 1e6}, ...}
    rope_parameters: dict = field(default_factory=lambda: {
        FULL: {"rope_type": "default", "rope_theta": 1_000_000.0},
        SLIDING: {"rope_type": "default", "rope_theta": 10_000.0},
    })
    query_pre_attn_scalar: float = 256  # attention scores are scaled by query_pre_attn_scalar ** -0.5
    final_logit_softcapping: float | None = None
    max_position_embeddings: int = 32768
    hidden_activation: str = "gelu_pytorch_tanh"
    tie_word_embeddings: bool = True
    # --- Gemma 4 only (defaults switch the feature off) ---
    global_head_dim: int | None = None  # head dim of global layers (512); None = head_dim
    num_global_key_value_heads: int | None = None  # KV heads of global layers when attention_k_eq_v
    attention_k_eq_v: bool = False  # global layers reuse the key projection as the value
    num_kv_shared_layers: int = 0  # the last N layers borrow K/V from an earlier layer
    use_double_wide_mlp: bool = False  # KV-shared layers get an MLP twice as wide
    hidden_size_per_layer_input: int = 0  # per-layer embeddings (PLE) width; 0 = no PLE
    vocab_size_per_layer_input: int = 262144
    enable_moe_block: bool = False  # mixture of experts beside the dense MLP (26B-A4B)
    num_experts: int | None = None
    top_k_experts: int | None = None
    moe_intermediate_size: int | None = None
    use_bidirectional_attention: str | None = None  # "vision": image tokens see each other
    # --- EmbeddingGemma 2 only (model_type embedding_gemma2_text; embedding.py) ---
    embedding_dim: int = 0  # width of the per-token output projection (768); 0 = a decoder with an LM head

    def __post_init__(self):
        if self.model_type not in SUPPORTED_MODEL_TYPES:
            raise ValueError(f"model_type {self.model_type!r} is not supported; minigemma reads "
                             f"{', '.join(SUPPORTED_MODEL_TYPES)}")
        if len(self.layer_types) != self.num_hidden_layers:
            raise ValueError(f"layer_types has {len(self.layer_types)} entries for {self.num_hidden_layers} layers")
        for t in self.layer_types:
            if t not in (SLIDING, FULL):
                raise ValueError(f"layer type {t!r} is not supported (expected {SLIDING!r} or {FULL!r})")
            if t not in self.rope_parameters:
                raise ValueError(f"rope_parameters has no entry for {t!r}")
        for t, rope in self.rope_parameters.items():
            if rope.get("rope_type", "default") not in ("default", "linear", "proportional"):
                raise ValueError(f"rope_type {rope.get('rope_type')!r} ({t}) is not supported")
        if self.use_bidirectional_attention not in (None, "vision"):
            raise ValueError(f"use_bidirectional_attention={self.use_bidirectional_attention!r} is not supported "
                             "(only None or 'vision')")
        if self.num_kv_shared_layers:
            first = self.num_hidden_layers - self.num_kv_shared_layers
            for t in dict.fromkeys(self.layer_types[first:]):
                if t not in self.layer_types[:first]:
                    raise ValueError(f"KV-shared {t} layers have no earlier {t} layer to borrow K/V from")
        if self.enable_moe_block and not (self.num_experts and self.top_k_experts and self.moe_intermediate_size):
            raise ValueError("enable_moe_block needs num_experts, top_k_experts and moe_intermediate_size")
        if self.num_attention_heads % self.num_key_value_heads:
            raise ValueError("num_attention_heads must be a multiple of num_key_value_heads")
        if self.hidden_activation != "gelu_pytorch_tanh":
            raise ValueError(f"hidden_activation {self.hidden_activation!r} is not supported (Gemma uses gelu_pytorch_tanh)")
        if not self.tie_word_embeddings:
            raise ValueError("tie_word_embeddings=False is not supported: Gemma ties its output head to the embedding")

    @property
    def is_gemma4(self) -> bool:
        return self.model_type.startswith("gemma4") or self.is_encoder

    @property
    def is_encoder(self) -> bool:
        """EmbeddingGemma 2: Gemma 4 layers run as a bidirectional encoder (``embedding.py``). Its
        ``sliding_window`` is a *radius*: a sliding layer sees the keys with ``|q - k| <= sliding_window``."""
        return self.model_type == "embedding_gemma2_text"

    @property
    def norm_offset(self) -> float:
        """Gemma 3 norms scale by ``1 + w``; Gemma 4 norms scale by ``w``."""
        return 0.0 if self.is_gemma4 else 1.0

    @property
    def attention_scaling(self) -> float:
        """Gemma 3 scales scores by ``query_pre_attn_scalar ** -0.5``; Gemma 4 by 1 (QK-norm does the job)."""
        return 1.0 if self.is_gemma4 else self.query_pre_attn_scalar ** -0.5

    # --- per-layer answers ---------------------------------------------------------------------
    def is_global(self, i: int) -> bool:
        return self.layer_types[i] == FULL

    def head_dim_of(self, i: int) -> int:
        return self.global_head_dim if self.is_global(i) and self.global_head_dim else self.head_dim

    def kv_heads_of(self, i: int) -> int:
        # transformers' Gemma 4 applies num_global_key_value_heads only together with attention_k_eq_v;
        # EmbeddingGemma 2 applies it on its own (its global layers keep their value projection).
        if self.is_global(i) and (self.attention_k_eq_v or self.is_encoder) and self.num_global_key_value_heads:
            return self.num_global_key_value_heads
        return self.num_key_value_heads

    def k_eq_v(self, i: int) -> bool:
        return self.attention_k_eq_v and self.is_global(i)

    @property
    def first_kv_shared_layer(self) -> int:
        return self.num_hidden_layers - self.num_kv_shared_layers

    def kv_donor(self, i: int):
        """For a KV-shared layer, the last earlier non-shared layer of the same type; else None."""
        first = self.first_kv_shared_layer
        if i < first:
            return None
        return max(j for j in range(first) if self.layer_types[j] == self.layer_types[i])

    def mlp_width(self, i: int) -> int:
        double = self.use_double_wide_mlp and self.kv_donor(i) is not None
        return self.intermediate_size * (2 if double else 1)

    @classmethod
    def from_dict(cls, d: dict) -> "TextConfig":
        """Read a transformers ``config.json`` dict (multimodal ones carry a ``text_config``)."""
        if "text_config" in d:
            d = d["text_config"]
        defaults = {f.name: f.default for f in fields(cls)}
        # An explicit null for a field that has a real default means "the default" (as in transformers).
        d = {k: v for k, v in d.items() if v is not None or defaults.get(k, None) is None}
        if d.get("model_type") in ("gemma4", "gemma4_unified_text"):  # the unified 12B's decoder is Gemma 4's
            d["model_type"] = "gemma4_text"
        if d.get("model_type") == "embedding_gemma2":
            d["model_type"] = "embedding_gemma2_text"
        encoder = d.get("model_type") == "embedding_gemma2_text"
        if encoder:  # fields the dict leaves out take EmbeddingGemma 2's values (transformers' defaults)
            given_per_layer = "per_layer_config" in d
            d = {**EMBEDDING_GEMMA2, **d}
            if given_per_layer:  # transformers then takes the global layers' shape from it alone
                d.pop("global_head_dim"), d.pop("num_global_key_value_heads")
        # transformers 5.x saves the global layers' head dim / KV heads per layer: {"5": {...}, ...}
        per_layer = d.pop("per_layer_config", None) or {}
        overrides = {json_key: v for entry in per_layer.values() for json_key, v in entry.items()}
        for entry in per_layer.values():
            for key, value in entry.items():
                if key not in ("head_dim", "num_key_value_heads") or overrides[key] != value:
                    raise ValueError(f"per_layer_config entry {entry} is not supported (only one global head_dim "
                                     "and KV-head count)")
        if "head_dim" in overrides:
            d.setdefault("global_head_dim", overrides["head_dim"])
        if "num_key_value_heads" in overrides:
            d.setdefault("num_global_key_value_heads", overrides["num_key_value_heads"])
        # Fields that change the maths but that minigemma does not implement: refuse, by name.
        for key, fine in UNSUPPORTED_IF_SET.items():
            if key in d and d[key] not in fine:
                raise ValueError(f"config field {key}={d[key]!r} is not supported by minigemma")
        if d.get("use_bidirectional_attention") is False:
            d["use_bidirectional_attention"] = None
        gemma4 = d.get("model_type") == "gemma4_text"
        if "rope_parameters" not in d and gemma4:  # transformers' Gemma 4 defaults
            d["rope_parameters"] = {FULL: {"rope_type": "proportional", "partial_rotary_factor": 0.25,
                                           "rope_theta": 1_000_000.0},
                                    SLIDING: {"rope_type": "default", "rope_theta": 10_000.0}}
        if "rope_parameters" not in d:  # transformers 4.x spelled RoPE as two flat fields
            d["rope_parameters"] = {
                FULL: {"rope_type": "default", "rope_theta": d.get("rope_theta", 1_000_000.0),
                       **(d.get("rope_scaling") or {})},
                SLIDING: {"rope_type": "default", "rope_theta": d.get("rope_local_base_freq", 10_000.0)},
            }
        if "layer_types" not in d:
            d["layer_types"] = default_layer_types(d["num_hidden_layers"], d.get("sliding_window_pattern", 6))
        d["layer_types"] = tuple(d["layer_types"])
        if (gemma4 or encoder) and d["layer_types"][-1] != FULL:  # transformers forces Gemma 4's last layer global
            d["layer_types"] = d["layer_types"][:-1] + (FULL,)
        for index in per_layer:
            if not 0 <= int(index) < len(d["layer_types"]) or d["layer_types"][int(index)] != FULL:
                raise ValueError(f"per_layer_config overrides layer {index}, which is not a global layer; "
                                 "minigemma supports overrides of the global layers only")
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})

    @classmethod
    def from_gguf(cls, meta: dict) -> "TextConfig":
        """Read GGUF metadata (llama.cpp's ``gemma3.*`` keys)."""
        arch = meta.get("general.architecture")
        if arch != "gemma3":
            raise ValueError(f"GGUF architecture {arch!r} is not supported (expected 'gemma3')")

        def get(key, default=None):
            if f"gemma3.{key}" not in meta and default is None:
                raise ValueError(f"GGUF metadata lacks 'gemma3.{key}'")
            return meta.get(f"gemma3.{key}", default)

        n_layers, hidden, heads = get("block_count"), get("embedding_length"), get("attention.head_count")
        head_dim = get("attention.key_length")
        full_rope = {"rope_type": "default", "rope_theta": float(get("rope.freq_base", 1_000_000.0))}
        if meta.get("gemma3.rope.scaling.type") == "linear":  # Gemma 3 4B/12B/27B stretch global RoPE by 8
            full_rope = {**full_rope, "rope_type": "linear", "factor": float(meta["gemma3.rope.scaling.factor"])}
        return cls(
            vocab_size=len(meta["tokenizer.ggml.tokens"]),
            hidden_size=hidden, intermediate_size=get("feed_forward_length"), num_hidden_layers=n_layers,
            num_attention_heads=heads, num_key_value_heads=get("attention.head_count_kv"), head_dim=head_dim,
            rms_norm_eps=get("attention.layer_norm_rms_epsilon"), sliding_window=get("attention.sliding_window"),
            layer_types=default_layer_types(n_layers),  # GGUF does not store the 5:1 pattern
            # The local base 1e4 is not stored either; llama.cpp and transformers both assume it.
            rope_parameters={FULL: full_rope, SLIDING: {"rope_type": "default", "rope_theta": 10_000.0}},
            # llama.cpp: 27B scales by hidden/heads, every other size by head_dim.
            query_pre_attn_scalar=hidden // heads if n_layers == GEMMA3_27B_LAYERS else head_dim,
            max_position_embeddings=get("context_length"),
        )


SUPPORTED_MODEL_TYPES = ("gemma3_text", "gemma3", "gemma4_text", "embedding_gemma2_text")
# EmbeddingGemma 2 (google/embeddinggemma-2): transformers' EmbeddingGemma2TextConfig defaults, which are
# the published model's text encoder: 24 layers (5 sliding : 1 global), hidden 512, PLE 512 wide.
# ``TextConfig.from_dict({"model_type": "embedding_gemma2"})`` is that config.
EMBEDDING_GEMMA2 = dict(
    model_type="embedding_gemma2_text", vocab_size=262144, hidden_size=512, intermediate_size=2048,
    num_hidden_layers=24, num_attention_heads=4, num_key_value_heads=2, head_dim=256, global_head_dim=512,
    num_global_key_value_heads=1, rms_norm_eps=1e-6, sliding_window=512, max_position_embeddings=262144,
    hidden_size_per_layer_input=512, embedding_dim=768,
    rope_parameters={FULL: {"rope_type": "default", "rope_theta": 1_000_000.0},  # plain RoPE, not p-RoPE
                     SLIDING: {"rope_type": "default", "rope_theta": 10_000.0}},
)
UNSUPPORTED_IF_SET = {  # field -> values we accept
    "attn_logit_softcapping": (None,),
    "use_bidirectional_attention": (False, None, "vision"),
    "attention_bias": (False,),
}
