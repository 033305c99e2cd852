"""Mixture of experts: dispatch strategies agree, routing equals transformers', and the committed
tiny trained MoE reproduces the validation loss written next to it."""

import json

import pytest
import torch

import minigemma
from minigemma.config import TextConfig
from minigemma.moe import Experts, Router, active_parameters, experts_dense, experts_naive
from minigemma.train_tiny_moe import OUT, evaluate, load_tiny_moe, validation_data

CFG = TextConfig(model_type="gemma4_text", hidden_size=48, num_hidden_layers=1, layer_types=("full_attention",),
                 num_attention_heads=4, num_key_value_heads=1, enable_moe_block=True, num_experts=16,
                 top_k_experts=4, moe_intermediate_size=24)


@pytest.fixture(scope="module")
def block():
    gen = torch.Generator().manual_seed(0)
    experts, router = Experts(CFG), Router(CFG)
    with torch.no_grad():
        for p in list(experts.parameters()) + list(router.parameters()):
            p.copy_(torch.randn(p.shape, generator=gen) * 0.3)
    x = torch.randn(50, 48, generator=gen)
    return experts, router, x


def test_router_choices_have_no_ties_and_weights_are_scaled(block):
    experts, router, x = block
    weights, index, probs = router(x)
    top = probs.topk(CFG.top_k_experts + 1, dim=-1).values
    assert (top[:, -2] - top[:, -1]).min() > 1e-6  # ties-free: the k-th and (k+1)-th differ
    renormed = probs.gather(1, index) / probs.gather(1, index).sum(-1, keepdim=True)
    torch.testing.assert_close(weights, renormed * router.per_expert_scale[index])


def test_grouped_dispatch_equals_the_naive_loop_and_the_dense_version(block):
    """Same experts, same weights, summed in the same (expert) order; only matmul batching differs."""
    experts, router, x = block
    weights, index, _ = router(x)
    with torch.no_grad():
        fast = experts(x, index, weights)
        torch.testing.assert_close(fast, experts_naive(experts, x, index, weights), atol=1e-6, rtol=1e-6)
        torch.testing.assert_close(fast, experts_dense(experts, x, index, weights), atol=1e-5, rtol=1e-5)


def test_unpicked_experts_cost_nothing(block):
    experts, router, x = block
    index = torch.zeros(50, 4, dtype=torch.long)
    index[:, 1:] = torch.tensor([1, 2, 3])
    calls = []
    original = torch.nn.functional.linear

    def counting(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    torch.nn.functional.linear = counting
    try:
        experts(x, index, torch.full((50, 4), 0.25))
    finally:
        torch.nn.functional.linear = original
    assert len(calls) == 2 * 4  # gate_up and down, for the 4 experts that were picked, once each


def test_router_choices_equal_transformers(tmp_path, hf_tokenizer_dir):
    """The top-k experts of every token in every layer are the ones transformers picks."""
    from .test_gemma4 import make_tiny_gemma4

    ref = make_tiny_gemma4(tmp_path, hf_tokenizer_dir, "26b-style")
    model, _ = minigemma.load(tmp_path, progress=False)
    ids = torch.randint(3, 262144, (2, 30), generator=torch.Generator().manual_seed(4))
    theirs, ours = [], []
    hooks = [l.router.register_forward_hook(lambda m, i, o: theirs.append(o[2])) for l in ref.model.layers]
    hooks += [l.router.register_forward_hook(lambda m, i, o: ours.append(o[1])) for l in model.layers]
    with torch.no_grad():
        ref(ids), model(ids)
    for h in hooks:
        h.remove()
    assert len(ours) == len(theirs) == 6
    for a, b in zip(ours, theirs):
        assert torch.equal(a, b)


def test_active_parameters_of_the_26b_preset():
    config = minigemma.preset("gemma4-26b-a4b")
    total, active = active_parameters(config, minigemma.expected_keys(config))
    experts = sum(torch.Size(s).numel() for k, s in minigemma.expected_keys(config).items() if ".experts." in k)
    assert total - active == experts - experts // 16  # 8 of 128 experts = 1/16 of the expert weights
    assert active < total / 6


def test_committed_tiny_moe_reproduces_its_validation_loss():
    model, vocab, log = load_tiny_moe()
    assert log["command"].startswith("python -m minigemma.train_tiny_moe")
    losses = evaluate(model, validation_data(vocab))
    for kind, reported in log["validation_loss"].items():
        assert losses[kind] == pytest.approx(reported, abs=1e-3), kind
    assert (OUT / "model.safetensors").stat().st_size < 8_000_000
    assert json.loads((OUT / "config.json").read_text())["enable_moe_block"] is True
