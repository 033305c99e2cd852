"""Loading: every way a checkpoint can be wrong gets an error that names the problem."""

import json

import pytest
import torch
from safetensors.torch import load_file, save_file

import minigemma
from minigemma import CheckpointError, TextConfig

from .conftest import make_tiny_gemma3


@pytest.fixture()
def tiny_dir(tmp_path, hf_tokenizer_dir):
    make_tiny_gemma3(tmp_path, hf_tokenizer_dir)
    return tmp_path


def _edit_weights(directory, edit):
    state = load_file(directory / "model.safetensors")
    edit(state)
    save_file(state, directory / "model.safetensors")


def test_missing_tensor_is_named(tiny_dir):
    _edit_weights(tiny_dir, lambda s: s.pop("model.layers.3.self_attn.k_norm.weight"))
    with pytest.raises(CheckpointError, match=r"missing tensors: layers\.3\.self_attn\.k_norm\.weight"):
        minigemma.load(tiny_dir, progress=False)


def test_unexpected_tensor_is_named(tiny_dir):
    _edit_weights(tiny_dir, lambda s: s.update({"model.layers.0.mlp.extra_proj.weight": torch.zeros(2, 2)}))
    with pytest.raises(CheckpointError, match=r"unexpected tensors: layers\.0\.mlp\.extra_proj\.weight"):
        minigemma.load(tiny_dir, progress=False)


def test_misshaped_tensor_is_named(tiny_dir):
    _edit_weights(tiny_dir, lambda s: s.update({"model.layers.2.mlp.up_proj.weight": torch.zeros(95, 48)}))
    with pytest.raises(CheckpointError, match=r"misshaped tensors: layers\.2\.mlp\.up_proj\.weight: "
                                              r"checkpoint \(95, 48\), model expects \(96, 48\)"):
        minigemma.load(tiny_dir, progress=False)


def test_multimodal_layout_loads_text_and_reports_skipped_towers(tiny_dir, capsys):
    """Gemma3ForConditionalGeneration keeps the text model under model.language_model.*"""
    def to_multimodal(state):
        for k in list(state):
            state[k.replace("model.", "model.language_model.", 1)] = state.pop(k)
        state["model.vision_tower.patch_embedding.weight"] = torch.zeros(4, 4)
    _edit_weights(tiny_dir, to_multimodal)
    cfg = json.loads((tiny_dir / "config.json").read_text())
    (tiny_dir / "config.json").write_text(json.dumps({"model_type": "gemma3", "text_config": cfg}))
    model, _ = minigemma.load(tiny_dir, progress=False)
    assert model.config.num_hidden_layers == 7
    assert "skipped 1 tensors of Gemma 3's multimodal parts, which minigemma does not build (vision_tower)" \
        in capsys.readouterr().err


def test_unsupported_config_fields_are_named():
    with pytest.raises(ValueError, match="attn_logit_softcapping=50.0 is not supported"):
        TextConfig.from_dict({"model_type": "gemma3_text", "num_hidden_layers": 2, "attn_logit_softcapping": 50.0})
    with pytest.raises(ValueError, match="model_type 'llama' is not supported"):
        TextConfig.from_dict({"model_type": "llama", "num_hidden_layers": 2})
    with pytest.raises(ValueError, match="rope_type 'yarn'"):
        TextConfig.from_dict({"model_type": "gemma3_text", "num_hidden_layers": 1,
                              "rope_parameters": {"full_attention": {"rope_type": "yarn", "rope_theta": 1.0},
                                                  "sliding_attention": {"rope_type": "default", "rope_theta": 1.0}}})


def test_bad_sources(tmp_path):
    with pytest.raises(FileNotFoundError, match="neither a file, a directory, nor one of the aliases"):
        minigemma.load(tmp_path / "nothing-here")
    (tmp_path / "weights.bin").write_bytes(b"x")
    with pytest.raises(ValueError, match="expected a .gguf file or a Hugging Face model directory"):
        minigemma.load(tmp_path / "weights.bin")
    with pytest.raises(FileNotFoundError, match="no config.json"):
        minigemma.load(tmp_path)


def test_missing_shard_is_named(tmp_path, hf_tokenizer_dir):
    make_tiny_gemma3(tmp_path, hf_tokenizer_dir, max_shard_size="20MB")
    index = json.loads((tmp_path / "model.safetensors.index.json").read_text())
    shard = sorted(set(index["weight_map"].values()))[-1]
    (tmp_path / shard).unlink()
    with pytest.raises(FileNotFoundError, match=f"shard {shard} listed in the index is missing"):
        minigemma.load(tmp_path, progress=False)


def test_corrupt_gguf_is_a_clear_error(tmp_path, gguf_path):
    from minigemma.gguf import GGUFError

    cut = tmp_path / "cut.gguf"
    cut.write_bytes(gguf_path.read_bytes()[:10_000_000])
    with pytest.raises(GGUFError, match="truncated"):
        minigemma.load(cut)


def test_norms_from_gguf_are_converted_to_the_hf_convention(gemma, hf_model):
    """llama.cpp stores 1 + w; after loading, our weights equal transformers' (which hold w)."""
    ours = gemma[0].state_dict()
    for name, ref in hf_model.state_dict().items():
        key = name.removeprefix("model.")
        if key in ours:
            torch.testing.assert_close(ours[key], ref, atol=0, rtol=0, msg=name)


def test_config_nulls_mean_defaults_and_overrides_must_be_global():
    base = {"model_type": "gemma4_text", "num_hidden_layers": 6, "num_kv_shared_layers": None,
            "hidden_size_per_layer_input": None, "num_global_key_value_heads": None}
    config = TextConfig.from_dict(base)
    assert config.num_kv_shared_layers == 0 and config.hidden_size_per_layer_input == 0
    assert config.kv_donor(5) is None and config.num_global_key_value_heads is None
    with pytest.raises(ValueError, match="per_layer_config overrides layer 2, which is not a global layer"):
        TextConfig.from_dict({**base, "per_layer_config": {"2": {"head_dim": 512}}})
    assert TextConfig.from_dict({**base, "per_layer_config": {"5": {"head_dim": 512}}}).head_dim_of(5) == 512


def test_padded_embedding_and_added_tokens_past_the_vocabulary(tmp_path, hf_tokenizer_dir):
    """Real checkpoints pad the embedding past the tokenizer (Gemma 3: 262,208 rows) and list added
    tokens past the BPE vocabulary (an image soft token); both must load."""
    make_tiny_gemma3(tmp_path, hf_tokenizer_dir, vocab_size=262208)
    data = json.loads((tmp_path / "tokenizer.json").read_text())
    data["added_tokens"].append({"id": 262144, "content": "<image_soft_token>", "single_word": False, "lstrip": False,
                                 "rstrip": False, "normalized": False, "special": True})
    (tmp_path / "tokenizer.json").write_text(json.dumps(data))
    model, tok = minigemma.load(tmp_path, progress=False)
    assert model.config.vocab_size == 262208 and tok.vocab_size == 262145
    assert tok.encode("a<image_soft_token>b") == [tok.encode("a")[0], 262144, tok.encode("b")[0]]
    assert tok.decode([262144]) == "<image_soft_token>"


def test_tokenizer_larger_than_the_embedding_is_an_error(tmp_path, hf_tokenizer_dir):
    make_tiny_gemma3(tmp_path, hf_tokenizer_dir, vocab_size=262000)
    with pytest.raises(CheckpointError, match="the tokenizer has 262144 pieces but the model's embedding only 262000 rows"):
        minigemma.load(tmp_path, progress=False)


def test_issue_24_a_directory_without_a_tokenizer_names_the_fix_and_takes_tokenizer(tmp_path, hf_tokenizer_dir):
    make_tiny_gemma3(tmp_path, hf_tokenizer_dir)
    (tmp_path / "tokenizer.json").unlink()  # as transformers saves a model alone
    with pytest.raises(FileNotFoundError, match="no tokenizer.json .* pass tokenizer="):
        minigemma.load(tmp_path, progress=False)
    reference = minigemma.Tokenizer.from_file(hf_tokenizer_dir / "tokenizer.json")
    for given in (hf_tokenizer_dir / "tokenizer.json", str(hf_tokenizer_dir), reference):
        model, tok = minigemma.load(tmp_path, progress=False, tokenizer=given)
        assert tok.encode("Hello world", add_bos=True) == reference.encode("Hello world", add_bos=True)
    model, tok = minigemma.load(tmp_path, progress=False, tokenizer="gemma3-270m")  # an alias: its GGUF's vocabulary
    assert tok.vocab_size == reference.vocab_size and model.config.vocab_size == 262144
    with pytest.raises(FileNotFoundError, match="no tokenizer file"):
        minigemma.load(tmp_path, progress=False, tokenizer=tmp_path)  # a directory without one
