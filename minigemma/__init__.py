"""minigemma: Gemma built from scratch in plain PyTorch, one idea per module."""

from .audio import AudioConfig, AudioTower
from .log_mel import audio_features, read_wav
from .config import TextConfig
from .cache import KVCache, kv_cache_bytes
from .decoder import Gemma
from .embedding import EmbeddingGemma, embed
from .export import save_pretrained
from .generate import generate, generate_ids, stream_generate
from .multimodal import MultimodalGemma, multimodal_prompt
from .preprocess import preprocess_image, preprocess_video
from .tokenizer import Tokenizer
from .presets import AUDIO_PRESETS, PRESETS, preset
from .sampling import Sampling
from .tiny import tiny_random
from .unified import UnifiedGemma
from .weights import CheckpointError, expected_keys, load

__all__ = ["TextConfig", "Gemma", "MultimodalGemma", "Sampling", "KVCache", "kv_cache_bytes", "Tokenizer", "CheckpointError", "load",
           "expected_keys", "PRESETS", "preset", "generate", "generate_ids", "stream_generate",
           "multimodal_prompt", "preprocess_image", "preprocess_video", "AudioConfig", "AudioTower",
           "audio_features", "read_wav", "AUDIO_PRESETS", "save_pretrained", "tiny_random",
           "EmbeddingGemma", "embed", "UnifiedGemma"]
