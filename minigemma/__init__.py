"""minigemma: Gemma built from scratch in plain PyTorch, one idea per module."""

from .config import TextConfig
from .cache import KVCache
from .decoder import Gemma
from .generate import generate, generate_ids, stream_generate
from .tokenizer import Tokenizer
from .weights import CheckpointError, load

__all__ = ["TextConfig", "Gemma", "KVCache", "Tokenizer", "CheckpointError", "load", "generate", "generate_ids",
           "stream_generate"]
