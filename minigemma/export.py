"""Export: a loaded model and its tokenizer -> a Hugging Face directory that transformers loads.

``save_pretrained(model, tokenizer, directory)`` is ``load``'s inverse. It writes ``config.json``,
``model.safetensors`` (or shards and an index) in transformers' tensor names, ``tokenizer.json`` with
``tokenizer_config.json``, and ``generation_config.json``. ``AutoModelForCausalLM`` (which maps a
multimodal ``gemma4`` config to ``Gemma4ForConditionalGeneration``) and ``AutoTokenizer`` read it back
with the same logits and the same token ids, and so does ``minigemma.load``.

* **Names.** Our keys are transformers' keys without a prefix (``weights.py``), so a tensor's name is
  the text decoder's prefix from ``origin_of(model)`` (``model.`` or ``model.language_model.``) plus
  our key, or ``model.`` plus our key for Gemma 4's towers. The head is tied: no ``lm_head``.
* **KV sharing and keys as values.** A KV-shared layer reads an earlier layer's K/V and a
  keys-as-values layer uses its keys as values, so transformers builds no ``k_proj``/``v_proj``/
  ``k_norm`` for the first and no ``v_proj`` for the second, and neither do we: none is written and
  transformers reports nothing missing. Published checkpoints may still hold such tensors (``load``
  skips them: ``weights.unused_by``); nothing ever reads them, so leaving them out changes no logit.
* **Config.** A directory's own ``config.json`` is copied (``dtype`` set to the saved one). A GGUF, a
  Gemma 3 multimodal checkpoint (whose towers we never built) or a model built in code gets one
  written from our config dataclasses, whose field names are transformers' keys.
* **Tokenizer.** A ``tokenizer.json`` is copied byte for byte. A GGUF vocabulary (pieces and scores,
  no merges) is written as a byte-fallback BPE ``tokenizer.json`` (``tokenizer_json``).

Refused: quantised or oneDNN-packed layers (no float weights to write) and unmerged LoRA adapters.
Left out: the MTP drafter, and chat templates a GGUF or our tokenizer does not carry.
"""

import json
import shutil
from dataclasses import asdict
from pathlib import Path

import torch
from safetensors.torch import save_file

from .config import TextConfig
from .generate import default_stop_ids
from .mtp import Drafter
from .multimodal import MultimodalGemma
from .pack import PackedEmbedding, PackedLinear
from .quant_layers import Int4Linear, Int8Linear, QuantEmbedding, QuantExperts
from .swap import TOWERS
from .tokenizer import CONTROL, SPACE, Tokenizer
from .unified import UnifiedGemma
from .weights import CheckpointError, expected_keys, origin_of, tower_configs

MAX_SHARD_BYTES = 5 * 2**30  # transformers' former default shard size: one file up to the 4B models
# Beside tokenizer.json (from its directory) and config.json (from the model's): files that describe
# the same vocabulary, chat format or media preprocessing, copied when the source has them.
TOKENIZER_FILES = ("tokenizer_config.json", "special_tokens_map.json", "chat_template.jinja", "chat_template.json")
MODEL_FILES = ("generation_config.json", "processor_config.json", "preprocessor_config.json")
GEMMA3_ONLY = ("query_pre_attn_scalar",)
GEMMA4_ONLY = ("global_head_dim", "num_global_key_value_heads", "attention_k_eq_v", "num_kv_shared_layers",
               "use_double_wide_mlp", "hidden_size_per_layer_input", "vocab_size_per_layer_input",
               "enable_moe_block", "num_experts", "top_k_experts", "moe_intermediate_size")


def save_pretrained(model, tokenizer, directory, dtype=None, max_shard_bytes=MAX_SHARD_BYTES) -> Path:
    """Write ``model`` and ``tokenizer`` as a Hugging Face model directory; returns its path.

    ``dtype``: the saved weights' dtype (default: the model's). Tensors go to ``model.safetensors``,
    or to shards of at most ``max_shard_bytes`` with a ``model.safetensors.index.json``.
    """
    check_exportable(model)
    if not isinstance(tokenizer, Tokenizer):
        raise TypeError(f"save_pretrained needs the model's Tokenizer (got {type(tokenizer).__name__}): "
                        "transformers reads the vocabulary from the directory too")
    directory = Path(directory)
    origin = origin_of(model)
    sources = [Path(origin.path)] if origin.path and Path(origin.path).is_dir() else []
    if getattr(tokenizer, "source", None) is not None:
        sources.append(Path(tokenizer.source).parent)
    if any(directory.resolve() == s.resolve() for s in sources):
        raise ValueError(f"{directory} is where the model or its tokenizer was read from: export to another directory")
    dtype = dtype or model.dtype
    if dtype not in (torch.float32, torch.bfloat16, torch.float16):
        raise ValueError(f"dtype={dtype} is not a dtype to save weights in (float32, bfloat16 or float16)")
    config, prefix = hf_config(model, tokenizer, dtype)
    tensors = {hf_name(key, prefix): t.detach().to(dtype) if t.is_floating_point() else t.detach()
               for key, t in model.state_dict().items()}
    check_fits(config, tensors, prefix)
    directory.mkdir(parents=True, exist_ok=True)
    write_weights(directory, tensors, max_shard_bytes)
    (directory / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    copied = write_tokenizer(tokenizer, directory)
    if origin.config is not None and config["model_type"] == origin.config.get("model_type"):
        copied += copy_files(Path(origin.path), directory, MODEL_FILES)
    if "generation_config.json" not in copied:
        generation = {"bos_token_id": tokenizer.bos_id, "eos_token_id": eos_ids(tokenizer),
                      "pad_token_id": tokenizer.pad_id}
        (directory / "generation_config.json").write_text(json.dumps(generation, indent=2) + "\n")
    return directory


def eos_ids(tokenizer) -> list:
    """``<eos>`` first, then the end-of-turn token (Gemma 3 ``<end_of_turn>``, Gemma 4 ``<turn|>``),
    as Google's generation configs list them: generation stops at any of them."""
    return [tokenizer.eos_id] + sorted(default_stop_ids(tokenizer) - {tokenizer.eos_id})


def check_exportable(model):
    """Raise, naming the layer and the fix, if a swap left no float weights to write (``swap.py``)."""
    if isinstance(model, Drafter):
        raise ValueError("exporting a Gemma 4 assistant (MTP drafter) is not supported: copy its directory instead")
    if getattr(getattr(model, "config", None), "is_encoder", False):
        raise ValueError("exporting an embedding model (EmbeddingGemma 2) is not supported: copy its directory instead")
    for name, module in model.named_modules():
        if hasattr(module, "lora_A"):  # lora.py's layers; checked by attribute, so this file need not import it
            raise ValueError(f"{name} carries unmerged LoRA adapters: merge them into the weights first "
                             "(minigemma.lora.merge(model)), or save the adapters alone (minigemma.lora.save_adapter)")
        if isinstance(module, (Int8Linear, Int4Linear, QuantEmbedding, QuantExperts)):
            raise ValueError(f"{name} is quantised ({type(module).__name__}): its float weights are gone; load the "
                             "model without quantize= to export it")
        if isinstance(module, (PackedLinear, PackedEmbedding)):
            raise ValueError(f"{name} is packed for oneDNN ({type(module).__name__}), an opaque layout that cannot be "
                             "saved; load the model without pack=True to export it")


def hf_name(key: str, prefix: str) -> str:
    """Our key -> transformers' (the inverse of ``weights.read_hf_directory``)."""
    return ("model." if key.split(".")[0] in TOWERS else prefix) + key


def hf_config(model, tokenizer, dtype):
    """-> (the ``config.json`` dict, the text decoder's key prefix)."""
    origin = origin_of(model)
    if origin.config is not None and origin.architecture != "Gemma3ForConditionalGeneration":
        config = json.loads(json.dumps(origin.config))  # a deep copy
        config.pop("torch_dtype", None)  # transformers 4's name for dtype
        config["architectures"] = [origin.architecture]
    elif isinstance(model, UnifiedGemma):  # built in code (tiny_random("gemma4-12b")): transformers' layout
        text = {k: v for k, v in text_config_json(model.config, tokenizer).items() if k != "architectures"}
        config = {"architectures": [origin.architecture], "model_type": "gemma4_unified",
                  "text_config": {**text, "model_type": "gemma4_unified_text"}}
        for part, kind in (("vision_config", "vision"), ("audio_config", "audio")):
            if getattr(model, part) is not None:
                config[part] = {**asdict(getattr(model, part)), "model_type": f"gemma4_unified_{kind}"}
    elif isinstance(model, MultimodalGemma) or origin.architecture == "Gemma4ForConditionalGeneration":
        text = {k: v for k, v in text_config_json(model.config, tokenizer).items() if k != "architectures"}
        config = {"architectures": ["Gemma4ForConditionalGeneration"], "model_type": "gemma4", "text_config": text}
        vision, audio = getattr(model, "vision_config", None), getattr(model, "audio_config", None)
        if vision is not None:
            config["vision_config"] = {**asdict(vision), "model_type": "gemma4_vision"}
        if audio is not None:
            config["audio_config"] = {**asdict(audio), "model_type": "gemma4_audio",
                                      "subsampling_conv_channels": list(audio.subsampling_conv_channels)}
    else:  # a GGUF, the text decoder of a Gemma 3 multimodal checkpoint, or a model built in code
        config = text_config_json(model.config, tokenizer)
    config["dtype"] = str(dtype).removeprefix("torch.")
    for part in ("text_config", "vision_config", "audio_config"):
        if "dtype" in (config.get(part) or {}):
            config[part]["dtype"] = config["dtype"]
    prefix = "model.language_model." if config["architectures"][0].endswith("ForConditionalGeneration") else "model."
    return config, prefix


def text_config_json(config: TextConfig, tokenizer) -> dict:
    """Our ``TextConfig`` -> transformers' ``Gemma3TextConfig`` / ``Gemma4TextConfig`` keys, every field
    that changes the maths spelled out (transformers' defaults are not always ours)."""
    d = asdict(config)
    d["layer_types"] = list(config.layer_types)
    if config.is_gemma4:
        d = {k: v for k, v in d.items() if k not in GEMMA3_ONLY}
        d["global_head_dim"] = config.global_head_dim or config.head_dim  # transformers' default is 512, ours head_dim
        if config.num_global_key_value_heads is None:
            del d["num_global_key_value_heads"]
        d.update(model_type="gemma4_text", architectures=["Gemma4ForCausalLM"])
    else:
        d = {k: v for k, v in d.items() if k not in GEMMA4_ONLY}
        d.update(model_type="gemma3_text", architectures=["Gemma3ForCausalLM"], attn_logit_softcapping=None,
                 use_bidirectional_attention=False)
    d.update(attention_bias=False, bos_token_id=tokenizer.bos_id, eos_token_id=eos_ids(tokenizer),
             pad_token_id=tokenizer.pad_id)
    return d


def check_fits(config: dict, tensors: dict, prefix: str):
    """The tensors must be exactly those the written config describes: a layer swapped or removed
    after loading, or a config that no longer describes the model, is an error, not a broken export."""
    text = TextConfig.from_dict(config)
    towers = {}
    if text.is_gemma4:
        towers = tower_configs(config)  # the towers, or the unified model's embedders
    expected = {hf_name(k, prefix): shape for k, shape in expected_keys(text, **towers).items()}
    missing, unexpected = sorted(set(expected) - set(tensors)), sorted(set(tensors) - set(expected))
    problems = [f"{k}: {tuple(t.shape)}, the config says {expected[k]}" for k, t in tensors.items()
                if k in expected and tuple(t.shape) != expected[k]]
    if missing:
        problems.insert(0, f"missing {', '.join(missing[:5])}" + (" ..." if len(missing) > 5 else ""))
    if unexpected:
        problems.insert(0, f"unexpected {', '.join(unexpected[:5])}" + (" ..." if len(unexpected) > 5 else ""))
    if problems:
        raise CheckpointError("the model's tensors do not fit its config.json (was a layer swapped or removed "
                              "after loading?): " + "; ".join(problems))


def write_weights(directory: Path, tensors: dict, max_shard_bytes: int):
    """One ``model.safetensors``, or shards of at most ``max_shard_bytes`` and an index naming each tensor's file."""
    for old in [*directory.glob("model-*-of-*.safetensors"), *directory.glob("model.safetensors*")]:
        old.unlink()  # an earlier export's files would shadow (index) or contradict (shards) this one
    tensors = {k: t.contiguous() for k, t in tensors.items()}
    shards, size = [[]], 0
    for name, t in tensors.items():
        nbytes = t.numel() * t.element_size()
        if shards[-1] and size + nbytes > max_shard_bytes:
            shards.append([])
            size = 0
        shards[-1].append(name)
        size += nbytes
    if len(shards) == 1:
        save_file(tensors, directory / "model.safetensors", metadata={"format": "pt"})
        return
    weight_map = {}
    for i, names in enumerate(shards):
        file = f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors"
        save_file({n: tensors[n] for n in names}, directory / file, metadata={"format": "pt"})
        weight_map.update(dict.fromkeys(names, file))
    total = sum(t.numel() * t.element_size() for t in tensors.values())
    index = {"metadata": {"total_size": total}, "weight_map": weight_map}
    (directory / "model.safetensors.index.json").write_text(json.dumps(index, indent=2) + "\n")


def copy_files(source: Path, directory: Path, names) -> list:
    copied = [name for name in names if (source / name).is_file()]
    for name in copied:
        shutil.copyfile(source / name, directory / name)
    return copied


def write_tokenizer(tokenizer, directory: Path) -> list:
    """Copy the tokenizer.json it was read from (and its companions), or write one; -> files copied."""
    source = getattr(tokenizer, "source", None)
    if source is not None and Path(source).is_file():
        shutil.copyfile(source, directory / "tokenizer.json")
        copied = copy_files(Path(source).parent, directory, TOKENIZER_FILES)
    else:
        text = json.dumps(tokenizer_json(tokenizer), ensure_ascii=False)
        (directory / "tokenizer.json").write_text(text, encoding="utf-8")
        copied = []
    if "tokenizer_config.json" not in copied:
        named = {"bos": tokenizer.pieces[tokenizer.bos_id], "eos": tokenizer.pieces[tokenizer.eos_id],
                 "pad": tokenizer.pieces[tokenizer.pad_id], "unk": "<unk>", "mask": "<mask>"}
        # null where the vocabulary lacks the piece: GemmaTokenizer would otherwise add its default as a new id
        tokens = {f"{name}_token": piece if piece in tokenizer.piece_to_id else None for name, piece in named.items()}
        config = {"tokenizer_class": "GemmaTokenizer", **tokens, "add_bos_token": True, "add_eos_token": False,
                  "clean_up_tokenization_spaces": False}
        (directory / "tokenizer_config.json").write_text(json.dumps(config, indent=2) + "\n")
    return copied


def tokenizer_json(tokenizer) -> dict:
    """Our ``Tokenizer`` -> a HF ``tokenizers`` file that encodes every text to the same ids.

    Its four steps are ours (``tokenizer.py``): control and user-defined pieces are *added tokens*
    matched whole in the raw text, longest first (``normalized: false``, so the whitespace runs
    match real spaces); a normalizer turns spaces into ``▁``; the BPE model merges with
    ``merges_from_scores`` (or the merge list the tokenizer was read with); ``byte_fallback`` spells
    the rest as ``<0x..>`` pieces. No pre-tokenizer: BPE sees each run between added tokens whole.
    """
    vocab = {}  # piece -> id; empty pieces (unused ids) and repeats (the first id wins) are left out
    for i, piece in enumerate(tokenizer.pieces):
        if piece:
            vocab.setdefault(piece, i)
    if tokenizer.merge_rank is not None:
        merges = [list(pair) for pair, _ in sorted(tokenizer.merge_rank.items(), key=lambda item: item[1])]
    else:
        merges = merges_from_scores(tokenizer)
    added = [{"id": i, "content": piece, "single_word": False, "lstrip": False, "rstrip": False,
              "normalized": False, "special": tokenizer.types[i] == CONTROL}
             for piece, i in sorted(tokenizer.special.items(), key=lambda item: item[1])]
    bos = tokenizer.pieces[tokenizer.bos_id]
    with_bos = [{"SpecialToken": {"id": bos, "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}]
    return {
        "version": "1.0", "truncation": None, "padding": None, "added_tokens": added,
        "normalizer": {"type": "Replace", "pattern": {"String": " "}, "content": SPACE},
        "pre_tokenizer": None,
        "post_processor": {"type": "TemplateProcessing", "single": with_bos,  # <bos> first, as Gemma expects
                           "pair": with_bos + [{"SpecialToken": {"id": bos, "type_id": 1}},
                                               {"Sequence": {"id": "B", "type_id": 1}}],
                           "special_tokens": {bos: {"id": bos, "ids": [tokenizer.bos_id], "tokens": [bos]}}},
        "decoder": {"type": "Sequence", "decoders": [{"type": "Replace", "pattern": {"String": SPACE}, "content": " "},
                                                     {"type": "ByteFallback"}, {"type": "Fuse"}]},
        "model": {"type": "BPE", "dropout": None, "unk_token": "<unk>" if "<unk>" in vocab else None,
                  "continuing_subword_prefix": None, "end_of_word_suffix": None, "fuse_unk": True,
                  "byte_fallback": True, "ignore_merges": False, "vocab": vocab, "merges": merges},
    }


def merges_from_scores(tokenizer) -> list:
    """A SentencePiece vocabulary's scores -> a BPE merge list ``[[left, right], ...]``, best first.

    SentencePiece merges the adjacent pair whose *merged piece* scores best; HF's BPE merges the pair
    of lowest rank. So every piece P becomes one merge per way of cutting it into two symbols BPE can
    hold (a single character or another mergeable piece), ranked by P's score. Different cuts of one
    P share P's place, and their order among themselves never matters: two symbols that would merge
    into P have only ever been merged within P's characters, in score order, so every occurrence of P
    is cut the same way. Ties between positions are leftmost in both. This needs distinct scores
    (Gemma's are minus the piece's rank; equal ones are ordered by id here, where SentencePiece would
    take the leftmost) and a piece of its own for each character of a mergeable piece, as HF's BPE
    spells a character it has no piece for as bytes at once.
    """
    single = {p for p in tokenizer.piece_to_id if len(p) == 1}

    def symbol(s):
        return s in single or s in tokenizer.mergeable

    targets = [p for p in tokenizer.mergeable if len(p) > 1 and p not in tokenizer.special]
    targets.sort(key=lambda p: (-tokenizer.scores[tokenizer.piece_to_id[p]], tokenizer.piece_to_id[p]))
    merges = []
    for p in targets:
        if not set(p) <= single:
            raise ValueError(f"piece {p!r} has a character with no piece of its own ({sorted(set(p) - single)[:3]}): "
                             "HF's BPE would spell it as bytes and never reach this piece")
        merges.extend([p[:k], p[k:]] for k in range(1, len(p)) if symbol(p[:k]) and symbol(p[k:]))
    return merges
