"""Mixture of experts: dispatch strategies agree, routing equals transformers', and the committed
tiny trained MoE reproduces the validation loss written next to it."""

import json
import math

import pytest
import torch
import torch.nn.functional as F

import minigemma
from minigemma.config import TextConfig
from minigemma.moe import Experts, Router, active_parameters, experts_dense, experts_naive
from minigemma.train_tiny_moe import (OUT, evaluate, expert_shares, kind_information, load_tiny_moe, validation_data,
                                     with_untrained_routers)

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


def test_committed_tiny_moe_reproduces_its_validation_loss_and_beats_uniform():
    model, vocab, log = load_tiny_moe()
    assert log["command"].startswith("python -m minigemma.train_tiny_moe")
    losses = evaluate(model, validation_data(vocab))
    for kind, reported in log["validation_loss"].items():
        assert losses[kind] == pytest.approx(reported, abs=1e-3), kind
        assert reported < math.log(model.config.vocab_size) - 1, kind  # clearly better than a uniform guess
    assert (OUT / "model.safetensors").stat().st_size < 8_000_000
    assert json.loads((OUT / "config.json").read_text())["enable_moe_block"] is True


def test_kind_information_bounds():
    E = 8
    same = {kind: torch.full((E,), 2 / E) for kind in "abcd"}  # every kind spreads the same way
    assert kind_information(same) == pytest.approx(0.0, abs=1e-9)
    apart = {kind: F.one_hot(torch.tensor(j), E).float() * 2 for j, kind in enumerate("abcd")}  # own expert each
    assert kind_information(apart) == pytest.approx(2.0)  # log2(4 kinds): the expert names the kind
    half = {"a": torch.tensor([1.0, 1.0, 0, 0]), "b": torch.tensor([0, 1.0, 1.0, 0])}
    assert 0 < kind_information(half) < 1


def test_untrained_router_baseline_changes_only_the_routers():
    model, vocab, _ = load_tiny_moe()
    twin = with_untrained_routers(model, seed=0)
    trained, fresh = model.state_dict(), twin.state_dict()
    for name, value in trained.items():
        assert torch.equal(value, fresh[name]) != (".router." in name), name  # routers differ, nothing else
    ids = {kind: v[:64] for kind, v in validation_data(vocab).items()}
    for m in (model, twin):
        layers = expert_shares(m, ids)
        assert len(layers) == len(model.layers)
        for shares in layers:
            for s in shares.values():  # fractions of tokens per expert sum to top-k
                assert float(s.sum()) == pytest.approx(model.config.top_k_experts)
