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
def test_cache_holds_the_tensors_transformers_cache_holds(pair):
    """Layer by layer, after the same 30 tokens, our cache of keys and values holds tensors of the
    shapes transformers' DynamicCache holds (the reference for bytes: real allocated tensors):
    nothing on KV-shared layers, every position on global layers, and on sliding layers one slot
    more than transformers' window - 1 (our ring buffer writes the current token before attending;
    transformers concatenates it). So nbytes = their bytes + that one slot per sliding layer."""
    from transformers.cache_utils import DynamicSlidingWindowLayer

    style, ref, model, _ = pair
    ids = torch.randint(3, 262144, (1, 30), generator=torch.Generator().manual_seed(3))
    cache = KVCache(model.config, batch=1, max_len=30, values_only=False)
    model(ids, cache=cache)
    theirs = ref(ids, use_cache=True).past_key_values.layers
    assert len(theirs) == len(cache.layers)
    expected = 0
    for ours, layer in zip(cache.layers, theirs):
        if layer.keys is None:  # transformers' DummyLayer: KV-shared
            assert ours is None
            continue
        B, K, n, hd = layer.values.shape
        n += isinstance(layer, DynamicSlidingWindowLayer)
        assert ours.k.shape == ours.v.shape == (B, K, n, hd) and layer.keys.shape == layer.values.shape
        expected += 2 * B * K * n * hd * layer.values.element_size()
    assert cache.nbytes == expected
    assert kv_cache_bytes(model.config, 30, dtype=torch.float32, values_only=False) == expected


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


# The published layouts (config.json / model cards), written out by hand rather than read from our
# presets: layers that hold a cache (KV-shared layers hold none) as (count, KV heads, head dim), the
# sliding window, and whether global layers use keys as values.
#   E2B: 35 layers, every 5th global, the last 20 KV-shared -> layers 0-14: 12 sliding + 3 global.
#   E4B: 42 layers, every 6th global, the last 18 KV-shared -> layers 0-23: 20 sliding + 4 global.
#   26B-A4B: 30 layers, every 6th global: 25 sliding (8 KV heads) + 5 global (2 KV heads, K = V).
#   31B: 60 layers, every 6th global: 50 sliding (16 KV heads) + 10 global (4 KV heads, K = V).
PUBLISHED_CACHES = {  # name: (sliding (n, heads, dim), global (n, heads, dim), window, keys as values)
    "gemma4-e2b": ((12, 1, 256), (3, 1, 512), 512, False),
    "gemma4-e4b": ((20, 2, 256), (4, 2, 512), 512, False),
    "gemma4-26b-a4b": ((25, 8, 256), (5, 2, 512), 1024, True),
    "gemma4-31b": ((50, 16, 256), (10, 4, 512), 1024, True),
}


def published_cache_bytes(name, context, itemsize, values_only):
    """Bytes from first principles: per layer, positions kept × KV heads × head dim × (K and V) × itemsize.
    A sliding layer keeps its window, a global layer every position. Keys-as-values layers keep V alone
    plus one (cos, sin) table of the positions for the rotated quarter of the 512 dims (128)."""
    (n_s, heads_s, dim_s), (n_g, heads_g, dim_g), window, k_eq_v = PUBLISHED_CACHES[name]
    v_only = k_eq_v and values_only
    sliding = n_s * min(window, context) * heads_s * dim_s * 2 * itemsize
    global_ = n_g * context * heads_g * dim_g * (1 if v_only else 2) * itemsize
    table = 2 * context * (512 // 4) * itemsize if v_only else 0
    return sliding + global_ + table


@pytest.mark.parametrize("name", sorted(minigemma.PRESETS))
@pytest.mark.parametrize("values_only", [True, False])
def test_kv_cache_bytes_and_the_cache_equal_a_count_from_the_published_layouts(name, values_only):
    """kv_cache_bytes and what KVCache allocates (on the meta device) against published_cache_bytes."""
    assert set(PUBLISHED_CACHES) == set(minigemma.PRESETS)
    config = minigemma.preset(name)
    for context in (100, 8192, config.max_position_embeddings):
        expected = published_cache_bytes(name, context, 2, values_only)  # bfloat16: 2 bytes
        cache = KVCache(config, 1, context, dtype=torch.bfloat16, device="meta", values_only=values_only)
        assert cache.nbytes == expected
        assert kv_cache_bytes(config, context, torch.bfloat16, values_only=values_only) == expected


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
    assert type(model) is minigemma.Gemma  # a text-only config builds the text decoder alone, no tower
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


def hf_mask(mask_function, q_pos, k_pos):
    """transformers' mask function (masking_utils) evaluated at every (query, key) position -> (T, S) bool."""
    return mask_function(0, 0, q_pos[:, None], k_pos[None, :])


@pytest.mark.parametrize("window", [None, 1, 3, 8])
def test_attention_masks_equal_transformers_mask_functions(window):
    """Causal, sliding-window and image-block masks against transformers' masking_utils rules:
    a sliding Gemma 4 layer is AND(sliding window, OR(causal, blockwise)) (modeling_gemma4's
    create_masks_for_vision_model); without a window, OR(causal, blockwise). Queries both as a
    prefill (all positions) and as a decode step against a cache whose keys are out of order."""
    from transformers.masking_utils import (and_masks, blockwise_overlay, causal_mask_function, or_masks,
                                            sliding_window_overlay)

    from minigemma.attention import attention_mask

    blocks = torch.tensor([-1, 0, 0, 0, -1, -1, 1, 1, 1, 1, 1, -1])  # two images: tokens 1-3 and 6-10
    rule = or_masks(causal_mask_function, blockwise_overlay(blocks[None]))
    if window is not None:
        rule = and_masks(sliding_window_overlay(window), rule)
    plain = causal_mask_function if window is None else and_masks(sliding_window_overlay(window), causal_mask_function)
    pos = torch.arange(12)
    ring = torch.tensor([8, 9, 10, 11, 4, 5, 6, 7])  # a ring buffer of 8 slots after 12 tokens
    for q, k in [(pos, pos), (torch.tensor([7, 8, 11]), ring)]:
        assert torch.equal(attention_mask(q, k, window, blocks), hf_mask(rule, q, k))
        assert torch.equal(attention_mask(q, k, window), hf_mask(plain, q, k))
    empty = attention_mask(torch.tensor([3]), torch.tensor([0, 1, 2, 3, -1, -1]), window)
    assert empty[0, 4:].sum() == 0  # -1 marks an empty cache slot (our convention): never attended
