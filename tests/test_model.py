"""Whole-model parity with transformers: the real Gemma 3 270M (from the same GGUF) and small
random checkpoints saved by transformers, with norms perturbed and sequences longer than the window."""

import pytest
import torch

import minigemma
from minigemma import KVCache, generate_ids

from .conftest import hf_greedy, make_tiny_gemma3


@pytest.fixture(scope="module")
def prompts(gemma, sample_text):
    tok = gemma[1]
    texts = ["The capital of France is", "def add(a, b):\n    return", "東京は日本の首都です。Paris is", sample_text]
    ids = [tok.encode(t, add_bos=True) for t in texts]
    # a precondition of the tests below, not a test: the 512-token window is really exercised
    assert max(len(p) for p in ids) > 512 + 200, "data/sample_text.txt must be longer than the sliding window"
    return ids


@torch.no_grad()
def test_real_logits_match_transformers(gemma, hf_model, prompts):
    model = gemma[0]
    for ids in prompts:
        x = torch.tensor([ids])
        ours, ref = model(x), hf_model(x).logits
        scale = ref.abs().max().item()
        diff = (ours - ref).abs().max().item()
        assert diff <= 1e-3, f"{len(ids)} tokens: max |diff| {diff:.2e} (logit scale {scale:.1f})"
        assert torch.equal(ours.argmax(-1), ref.argmax(-1))


@torch.no_grad()
def test_real_greedy_text_matches_transformers(gemma, hf_model, prompts):
    model, tok = gemma
    for ids in prompts[:3]:
        ours = list(generate_ids(model, ids, max_new_tokens=32))
        ref = hf_greedy(hf_model, ids, 32)
        assert ours == ref, f"{tok.decode(ours)!r} != {tok.decode(ref)!r}"


@torch.no_grad()
def test_cached_decoding_equals_full_forward(gemma, prompts):
    """Prefill in chunks (one longer than the window, so the ring buffer wraps inside a chunk),
    then decode one token at a time across the 512 boundary; compare with one uncached pass."""
    model = gemma[0]
    ids = torch.tensor([prompts[-1][:620]])
    full = model(ids)
    cache = KVCache(model.config, batch=1, max_len=ids.shape[1])
    chunks = [ids[:, :40], ids[:, 40:600]] + [ids[:, i:i + 1] for i in range(600, 620)]
    start = 0
    for chunk in chunks:
        out = model(chunk, cache=cache)
        torch.testing.assert_close(out, full[:, start:start + chunk.shape[1]], atol=1e-4, rtol=0)
        start += chunk.shape[1]
    assert cache.seen == 620


def test_cache_memory_is_window_sized(gemma):
    config = gemma[0].config
    cache = KVCache(config, batch=1, max_len=4096)
    n_global = config.layer_types.count("full_attention")
    n_sliding = config.num_hidden_layers - n_global
    per_pos = 2 * config.num_key_value_heads * config.head_dim * 4  # K and V, float32
    assert cache.nbytes == per_pos * (n_global * 4096 + n_sliding * 512)


@pytest.mark.parametrize("variant", ["default", "linear_rope", "sharded"])
@torch.no_grad()
def test_tiny_random_checkpoint_matches_transformers(tmp_path, hf_tokenizer_dir, variant):
    overrides = {}
    if variant == "linear_rope":
        overrides["rope_parameters"] = {
            "full_attention": {"rope_type": "linear", "rope_theta": 1e6, "factor": 8.0},
            "sliding_attention": {"rope_type": "default", "rope_theta": 1e4}}
    if variant == "sharded":
        overrides["max_shard_size"] = "20MB"
    ref = make_tiny_gemma3(tmp_path, hf_tokenizer_dir, **overrides)
    if variant == "sharded":
        assert (tmp_path / "model.safetensors.index.json").exists()
    model, tok = minigemma.load(tmp_path, progress=False)
    assert model.config.layer_types == tuple(ref.config.layer_types)
    ids = torch.randint(0, 262144, (2, 40), generator=torch.Generator().manual_seed(1))  # 40 > window 8
    torch.testing.assert_close(model(ids), ref(ids).logits, atol=1e-5, rtol=0)


@torch.no_grad()
def test_tiny_greedy_with_cache_matches_transformers(tmp_path, hf_tokenizer_dir):
    ref = make_tiny_gemma3(tmp_path, hf_tokenizer_dir)
    model, _ = minigemma.load(tmp_path, progress=False)
    ids = list(range(1000, 1012))
    ours = list(generate_ids(model, ids, max_new_tokens=30))  # 42 positions, window 8
    assert ours == hf_greedy(ref, ids, 30)


@torch.no_grad()
def test_inputs_embeds_equal_input_ids(gemma):
    model = gemma[0]
    ids = torch.tensor([[2, 818, 5279, 529, 7001, 563]])
    torch.testing.assert_close(model(inputs_embeds=model.embed(ids)), model(ids))


@torch.no_grad()
def test_bfloat16_load_runs_close_to_float32(gguf_path, gemma):
    model16, _ = minigemma.load(gguf_path, dtype=torch.bfloat16, progress=False)
    assert model16.embed_tokens.weight.dtype == torch.bfloat16
    ids = torch.tensor([[2, 818, 5279, 529, 7001, 563]])
    a, b = model16(ids).float(), gemma[0](ids)
    assert a.argmax(-1)[0, -1] == b.argmax(-1)[0, -1]
    assert (a - b).abs().max() < 0.05 * b.abs().max()
