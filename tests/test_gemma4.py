"""Gemma 4 text decoder vs transformers: small random checkpoints saved by transformers (E-style,
31B-style, 26B-style), with every norm weight and stored scalar randomised, sequences longer
than the window; and the key/shape layout of the four real configs built on the meta device."""

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

import minigemma
from minigemma import CheckpointError, KVCache, TextConfig, expected_keys, generate_ids, kv_cache_bytes

from .conftest import hf_greedy, perturb

ONLY_OURS = {"model_type"}  # TextConfig fields that are not Gemma4TextConfig arguments


def hf_config(config: TextConfig):
    """Our preset -> transformers' Gemma4TextConfig with the same numbers."""
    from dataclasses import asdict

    from transformers import Gemma4TextConfig

    kwargs = {k: v for k, v in asdict(config).items() if k not in ONLY_OURS and v is not None}
    kwargs["layer_types"] = list(config.layer_types)
    return Gemma4TextConfig(**kwargs)


@pytest.mark.parametrize("name", sorted(minigemma.PRESETS))
def test_expected_keys_equal_transformers_for_the_real_configs(name):
    from transformers import Gemma4TextModel

    config = minigemma.preset(name)
    with torch.device("meta"):
        ref = Gemma4TextModel(hf_config(config))
    theirs = {k: tuple(v.shape) for k, v in ref.state_dict().items()}
    assert expected_keys(config) == theirs


def test_presets_match_the_published_layer_layouts():
    e2b, e4b, moe, big = (minigemma.preset(n) for n in ("gemma4-e2b", "gemma4-e4b", "gemma4-26b-a4b", "gemma4-31b"))
    assert all(c.layer_types[-1] == "full_attention" for c in (e2b, e4b, moe, big))
    assert e2b.kv_donor(15) == 13 and e2b.kv_donor(19) == 14  # last unshared sliding / global layer
    assert e2b.mlp_width(14) == 6144 and e2b.mlp_width(15) == 12288 and e4b.mlp_width(41) == 10240
    assert big.head_dim_of(5) == 512 and big.kv_heads_of(5) == 4 and big.kv_heads_of(0) == 16


TINY = dict(vocab_size=262144, hidden_size=64, intermediate_size=96, num_attention_heads=4, head_dim=16,
            global_head_dim=32, sliding_window=8, max_position_embeddings=512, rms_norm_eps=1e-6,
            final_logit_softcapping=30.0, hidden_size_per_layer_input=0,
            initializer_range=0.2)  # larger than the default 0.02, so logits reach ~10, not ~1
STYLES = {
    # E2B-like: PLE, KV sharing (donors 3 sliding and 4 global), 4:1 pattern, double-wide MLP
    "e-style": dict(num_hidden_layers=7, num_key_value_heads=1, layer_types=(["sliding_attention"] * 4 + ["full_attention"]
                    + ["sliding_attention", "full_attention"]), num_kv_shared_layers=2, use_double_wide_mlp=True,
                    hidden_size_per_layer_input=8),
    # 31B-like: keys as values with their own KV-head count on global layers, 5:1 pattern
    "31b-style": dict(num_hidden_layers=7, num_key_value_heads=2, num_global_key_value_heads=1, attention_k_eq_v=True,
                      layer_types=["sliding_attention"] * 5 + ["full_attention", "full_attention"]),
    # 26B-A4B-like: the above plus a mixture of experts beside the dense MLP
    "26b-style": dict(num_hidden_layers=6, num_key_value_heads=2, num_global_key_value_heads=1, attention_k_eq_v=True,
                      layer_types=["sliding_attention"] * 5 + ["full_attention"], enable_moe_block=True,
                      num_experts=8, top_k_experts=2, moe_intermediate_size=24),
}


def make_tiny_gemma4(directory, tokenizer_dir, style):
    from transformers import Gemma4ForCausalLM, Gemma4TextConfig

    torch.manual_seed(0)
    model = Gemma4ForCausalLM(Gemma4TextConfig(**{**TINY, **STYLES[style]})).eval()
    perturb(model, std=0.3)
    model.save_pretrained(directory)
    shutil.copy(Path(tokenizer_dir) / "tokenizer.json", Path(directory) / "tokenizer.json")
    return model


@pytest.fixture(scope="module", params=sorted(STYLES))
def pair(request, tmp_path_factory, hf_tokenizer_dir):
    directory = tmp_path_factory.mktemp(request.param)
    ref = make_tiny_gemma4(directory, hf_tokenizer_dir, request.param)
    model, tok = minigemma.load(directory, progress=False)
    return request.param, ref, model, directory


@torch.no_grad()
def test_logits_match_transformers(pair):
    style, ref, model, _ = pair
    ids = torch.randint(3, 262144, (2, 40), generator=torch.Generator().manual_seed(1))  # 40 > window 8
    ours, theirs = model(ids), ref(ids).logits
    torch.testing.assert_close(ours, theirs, atol=1e-4, rtol=0)
    assert (ours - theirs).abs().max() < 1e-4


@torch.no_grad()
def test_greedy_with_cache_matches_transformers(pair):
    style, ref, model, _ = pair
    ids = list(range(1000, 1012))
    ours = list(generate_ids(model, ids, max_new_tokens=24))  # 36 positions, window 8
    assert ours == hf_greedy(ref, ids, 24)


@torch.no_grad()
def test_cached_decoding_equals_full_forward_and_cache_bytes_equal_accounting(pair):
    style, _, model, _ = pair
    ids = torch.randint(3, 262144, (1, 30), generator=torch.Generator().manual_seed(2))
    full = model(ids)
    cache = KVCache(model.config, batch=1, max_len=30)
    out = torch.cat([model(ids[:, :13], cache=cache)] + [model(ids[:, i:i + 1], cache=cache) for i in range(13, 30)], 1)
    torch.testing.assert_close(out, full, atol=1e-4, rtol=0)
    assert cache.nbytes == kv_cache_bytes(model.config, 30, dtype=torch.float32)
    if style == "e-style":  # the two KV-shared layers hold nothing
        assert cache.layers[5] is None and cache.layers[6] is None


@torch.no_grad()
def test_values_only_cache_decodes_bit_for_bit_like_a_cache_of_keys_and_values(pair):
    """Keys as values: the cache holds V alone on those layers and rebuilds K = RoPE(V ⊙ w_k) on read."""
    style, _, model, _ = pair
    ids = torch.randint(3, 262144, (1, 30), generator=torch.Generator().manual_seed(4))
    caches = {kfv: KVCache(model.config, batch=1, max_len=30, values_only=kfv) for kfv in (True, False)}
    outs = {kfv: torch.cat([model(ids[:, :13], cache=c)] + [model(ids[:, i:i + 1], cache=c) for i in range(13, 30)], 1)
            for kfv, c in caches.items()}
    assert torch.equal(outs[True], outs[False])  # float32: the rebuilt keys are exactly the stored ones
    for kfv, cache in caches.items():
        assert cache.nbytes == kv_cache_bytes(model.config, 30, dtype=torch.float32, values_only=kfv)
    k_eq_v = [i for i in range(model.config.num_hidden_layers) if model.config.k_eq_v(i)]
    assert bool(k_eq_v) == style.endswith("b-style")
    for i in k_eq_v:  # V alone; the keys the other cache stored are exactly the rebuilt ones
        values_only, both = caches[True].layers[i], caches[False].layers[i]
        assert values_only.k is None and torch.equal(values_only.v, both.v)
        cos, sin = values_only.key_rope
        torch.testing.assert_close(model.layers[i].self_attn.keys_from_values(values_only.v, cos, sin), both.k,
                                   atol=0, rtol=0)
    if k_eq_v:
        assert caches[True].nbytes < caches[False].nbytes


@pytest.mark.parametrize("name", sorted(minigemma.PRESETS))
@pytest.mark.parametrize("values_only", [True, False])
def test_kv_cache_bytes_equal_what_the_cache_allocates_for_the_real_configs(name, values_only):
    config = minigemma.preset(name)
    for context in (8192, config.max_position_embeddings):
        cache = KVCache(config, 1, context, dtype=torch.bfloat16, device="meta", values_only=values_only)
        assert cache.nbytes == kv_cache_bytes(config, context, torch.bfloat16, values_only=values_only)
    saved = kv_cache_bytes(config, 262144 // 2, values_only=False) - kv_cache_bytes(config, 262144 // 2)
    assert (saved > 0) == config.attention_k_eq_v


def test_values_only_cache_cannot_wrap_around():
    from minigemma.cache import LayerCache

    table = (torch.ones(4, 2), torch.zeros(4, 2))
    cache = LayerCache(1, 1, 4, 4, torch.float32, key_rope=table)
    k_all, v_all, pos = cache.update(torch.ones(1, 1, 4, 4), torch.ones(1, 1, 4, 4), torch.arange(4))
    assert k_all is None and v_all.shape == (1, 1, 4, 4) and pos.tolist() == [0, 1, 2, 3]
    with pytest.raises(ValueError, match="position 4 does not fit a values-only cache of 4 positions"):
        cache.update(torch.ones(1, 1, 1, 4), torch.ones(1, 1, 1, 4), torch.tensor([4]))


@torch.no_grad()
def test_last_only_shortcut_through_shared_layers(pair):
    _, _, model, _ = pair
    ids = torch.randint(3, 262144, (1, 20), generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(model(ids, last_only=True), model(ids)[:, -1:], atol=1e-5, rtol=0)


def test_multimodal_layout_and_unused_kv_tensors(pair, tmp_path, capsys):
    """Gemma4ForConditionalGeneration keeps the text model under model.language_model.*; hub
    checkpoints may carry K/V weights that KV-shared layers never read."""
    style, _, _, directory = pair
    state = load_file(directory / "model.safetensors")
    state = {k.replace("model.", "model.language_model.", 1): v for k, v in state.items()}
    if style == "e-style":
        state["model.language_model.layers.6.self_attn.k_proj.weight"] = torch.zeros(16, 64)
    save_file(state, tmp_path / "model.safetensors")
    shutil.copy(directory / "tokenizer.json", tmp_path / "tokenizer.json")
    text_config = json.loads((directory / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "gemma4", "text_config": text_config}))
    model, _ = minigemma.load(tmp_path, progress=False)
    assert model.vision_tower is None and model.audio_tower is None  # a text-only config builds no tower
    if style == "e-style":
        assert "ignored 1 K/V tensors that no layer reads" in capsys.readouterr().err
    state["model.vision_tower.patch_embedder.input_proj.weight"] = torch.zeros(2)  # a tower without its config
    save_file(state, tmp_path / "model.safetensors")
    with pytest.raises(CheckpointError, match="holds 1 vision tensors .* no vision_config"):
        minigemma.load(tmp_path, progress=False)


def test_bfloat16_checkpoint_is_cast(pair, tmp_path):
    _, _, _, directory = pair
    state = {k: v.to(torch.bfloat16) for k, v in load_file(directory / "model.safetensors").items()}
    save_file(state, tmp_path / "model.safetensors")
    for f in ("config.json", "tokenizer.json"):
        shutil.copy(directory / f, tmp_path / f)
    model, _ = minigemma.load(tmp_path, dtype=torch.float32, progress=False)
    assert model.layers[0].mlp.up_proj.weight.dtype == torch.float32


def test_clear_errors(tmp_path, hf_tokenizer_dir):
    directory = tmp_path / "ok"
    make_tiny_gemma4(directory, hf_tokenizer_dir, "31b-style")
    for f in ("config.json", "tokenizer.json"):
        shutil.copy(directory / f, tmp_path / f)
    state = load_file(directory / "model.safetensors")
    broken = dict(state)
    broken.pop("model.layers.5.self_attn.k_norm.weight")
    save_file(broken, tmp_path / "model.safetensors")
    with pytest.raises(CheckpointError, match=r"missing tensors: layers\.5\.self_attn\.k_norm\.weight"):
        minigemma.load(tmp_path, progress=False)
    broken = dict(state, **{"model.layers.5.self_attn.k_proj.weight": torch.zeros(64, 64)})
    save_file(broken, tmp_path / "model.safetensors")
    with pytest.raises(CheckpointError, match=r"misshaped tensors: layers\.5\.self_attn\.k_proj\.weight: "
                                              r"checkpoint \(64, 64\), model expects \(32, 64\)"):
        minigemma.load(tmp_path, progress=False)
    save_file(state, tmp_path / "model.safetensors")
    cfg = json.loads((directory / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps({**cfg, "use_bidirectional_attention": "all"}))
    with pytest.raises(ValueError, match="use_bidirectional_attention='all' is not supported"):
        minigemma.load(tmp_path, progress=False)
    (tmp_path / "config.json").write_text(json.dumps({**cfg, "num_kv_shared_layers": 6}))
    with pytest.raises(ValueError, match="KV-shared full_attention layers have no earlier full_attention layer"):
        minigemma.load(tmp_path, progress=False)


def test_ple_model_needs_input_ids(pair):
    style, _, model, _ = pair
    ids = torch.tensor([[2, 100, 200]])
    if model.config.hidden_size_per_layer_input:
        with pytest.raises(ValueError, match="per-layer embeddings: pass input_ids"):
            model(inputs_embeds=model.embed(ids))
        torch.testing.assert_close(model(ids, inputs_embeds=model.embed(ids)), model(ids))
    else:
        torch.testing.assert_close(model(inputs_embeds=model.embed(ids)), model(ids))


def test_bidirectional_image_blocks_only_widen_the_mask():
    from minigemma.attention import attention_mask

    pos = torch.arange(6)
    blocks = torch.tensor([-1, 0, 0, 0, -1, -1])  # tokens 1-3 are one image
    m = attention_mask(pos, pos, None, blocks)
    causal = attention_mask(pos, pos)
    same_image = (blocks[:, None] == blocks[None, :]) & (blocks[:, None] >= 0)
    assert torch.equal(m, causal | same_image)  # image tokens see each other both ways, nothing else changes
    windowed = attention_mask(pos, pos, 2, blocks)
    assert not windowed[3, 1] and windowed[3, 2]  # the window still bounds how far back a token looks
