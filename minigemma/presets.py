"""The four published Gemma 4 models, as ``TextConfig``s with their exact numbers.

Sources (April 2026 release): Google's JAX reference, ``gemma`` 4.0.1 on PyPI,
``gemma/gm/nn/gemma4/_gemma4.py`` (classes ``Gemma4_E2B``, ``Gemma4_E4B``, ``Gemma4_31B``,
``Gemma4_26B_A4B``, built by ``_gemma4_config``), read for the numbers; field names and the
context lengths follow transformers' ``Gemma4TextConfig`` and the released ``config.json`` files.

One correction to our own architecture notes: JAX sets ``override_ffw_hidden_for_kv_cache_sharing``
(the double-wide MLP) for E2B only, and the released E4B ``config.json`` has
``use_double_wide_mlp: false``; so E4B's KV-shared layers keep the normal MLP width.
"""

from .audio import AudioConfig
from .config import FULL, SLIDING, TextConfig
from .unified import UnifiedAudioConfig, UnifiedVisionConfig
from .vision import VisionConfig


def _pattern(sliding_per_global, num_layers):
    """JAX ``make_attention_layers_types``: repeat (sliding × n, global) and cut to length."""
    unit = (SLIDING,) * sliding_per_global + (FULL,)
    return (unit * (num_layers // len(unit) + 1))[:num_layers]


_ROPE = {  # JAX: local_base_frequency 10_000; global_base_frequency 1_000_000, global_rope_proportion 0.25
    FULL: {"rope_type": "proportional", "partial_rotary_factor": 0.25, "rope_theta": 1_000_000.0},
    SLIDING: {"rope_type": "default", "rope_theta": 10_000.0},
}
_COMMON = dict(  # JAX _gemma4_config: num_embed 262144, head_dim 256, global_key_size 512, softcap 30
    model_type="gemma4_text", vocab_size=262144, head_dim=256, global_head_dim=512, rms_norm_eps=1e-6,
    final_logit_softcapping=30.0, rope_parameters=_ROPE, query_pre_attn_scalar=256,
)

PRESETS = {
    # JAX Gemma4_E2B: embed_dim 1536, 8 heads, 1 KV head, pattern 4:1, 35 layers, window 512,
    # per_layer_input_dim 256, frac_shared_layers 20/35, override_ffw_hidden_for_kv_cache_sharing=True
    "gemma4-e2b": TextConfig(**_COMMON, hidden_size=1536, intermediate_size=4 * 1536, num_hidden_layers=35,
                             num_attention_heads=8, num_key_value_heads=1, sliding_window=512,
                             layer_types=_pattern(4, 35), num_kv_shared_layers=20, use_double_wide_mlp=True,
                             hidden_size_per_layer_input=256, max_position_embeddings=131072),
    # JAX Gemma4_E4B: embed_dim 2560, 8 heads, 2 KV heads, pattern 5:1, 42 layers, window 512,
    # per_layer_input_dim 256, frac_shared_layers 18/42, no double-wide MLP
    "gemma4-e4b": TextConfig(**_COMMON, hidden_size=2560, intermediate_size=4 * 2560, num_hidden_layers=42,
                             num_attention_heads=8, num_key_value_heads=2, sliding_window=512,
                             layer_types=_pattern(5, 42), num_kv_shared_layers=18, use_double_wide_mlp=False,
                             hidden_size_per_layer_input=256, max_position_embeddings=131072),
    # JAX Gemma4_26B_A4B: embed_dim 2816, 16 heads, 8 KV heads, 2 global KV heads, k_eq_v_global,
    # pattern 5:1, 30 layers, window 1024, dense shared MLP 2112, 128 experts (dim 704), top-8
    "gemma4-26b-a4b": TextConfig(**_COMMON, hidden_size=2816, intermediate_size=2112, num_hidden_layers=30,
                                 num_attention_heads=16, num_key_value_heads=8, num_global_key_value_heads=2,
                                 attention_k_eq_v=True, sliding_window=1024, layer_types=_pattern(5, 30),
                                 enable_moe_block=True, num_experts=128, top_k_experts=8, moe_intermediate_size=704,
                                 use_bidirectional_attention="vision", max_position_embeddings=262144),
    # JAX Gemma4_31B: embed_dim 5376, 32 heads, 16 KV heads, 4 global KV heads, k_eq_v_global,
    # pattern 5:1, 60 layers, window 1024, hidden 4 × 5376
    "gemma4-31b": TextConfig(**_COMMON, hidden_size=5376, intermediate_size=4 * 5376, num_hidden_layers=60,
                             num_attention_heads=32, num_key_value_heads=16, num_global_key_value_heads=4,
                             attention_k_eq_v=True, sliding_window=1024, layer_types=_pattern(5, 60),
                             use_bidirectional_attention="vision", max_position_embeddings=262144),
}


# The audio tower of E2B and E4B (the larger two hear nothing): JAX ``Gemma4_E2B`` / ``Gemma4_E4B`` both pass
# ``audio_encoder=ConformerConfig()`` (gm/nn/gemma4/audio/_modules.py): 12 layers, model_dims 1024, 8 heads,
# left context 13, right 0, kernel 5, lm_model_dims 1536 (our output_proj_dims), SubSamplingBlock (128, 32).
AUDIO_PRESETS = {"gemma4-e2b": AudioConfig(), "gemma4-e4b": AudioConfig()}


# The unified 12B (transformers ``gemma4_unified``, ``unified.py``): no encoders, no PLE, no experts.
# Kept apart from PRESETS, the four models of the April release that the notebooks tabulate.
# Numbers: the brief of issue 23 (48 layers, width 3840) and the gemma4-pt-claude 0.2.0 factory
# ``gemma4_12b`` (16 heads, 8 KV heads, 1 global KV head, keys as values, 5:1, window 1024, MLP
# 4 × 3840), which says it checked them against google/gemma-4-12B-it's config.json; we could not
# read that file. The media configs are transformers' defaults (mm_embed_dim 3840, table 1120, 640).
UNIFIED_PRESETS = {
    "gemma4-12b": TextConfig(**_COMMON, hidden_size=3840, intermediate_size=4 * 3840, num_hidden_layers=48,
                             num_attention_heads=16, num_key_value_heads=8, num_global_key_value_heads=1,
                             attention_k_eq_v=True, sliding_window=1024, layer_types=_pattern(5, 48),
                             use_bidirectional_attention="vision", max_position_embeddings=262144),
}
UNIFIED_MEDIA = {"gemma4-12b": (UnifiedVisionConfig(), UnifiedAudioConfig())}


def preset(name: str) -> TextConfig:
    if name in UNIFIED_PRESETS:
        return UNIFIED_PRESETS[name]
    if name not in PRESETS:
        raise KeyError(f"no preset {name!r}; choose one of {', '.join([*PRESETS, *UNIFIED_PRESETS])}")
    return PRESETS[name]


# The vision towers of the four models (``vision.py``). JAX ``gemma4/vision/_encoder.py`` VisionEncoder
# defaults: d_model 768, 16 layers, 12 heads, ffw_hidden 3072, patch 16, pos_emb_shape 10240, pooling 3;
# E2B/E4B: ``VisionEncoder(use_clipped_linears=True)``; 26B-A4B/31B: d_model 1152, 27 layers, 16 heads
# (head dim 72), ffw_hidden 4304, no clipped linears, standardize_embeddings=True.
def _vision_presets():
    small = VisionConfig(use_clipped_linears=True)
    large = VisionConfig(hidden_size=1152, intermediate_size=4304, num_hidden_layers=27, num_attention_heads=16,
                         num_key_value_heads=16, head_dim=72, standardize=True)
    return {"gemma4-e2b": small, "gemma4-e4b": small, "gemma4-26b-a4b": large, "gemma4-31b": large}


VISION_PRESETS = _vision_presets()
