"""Mixture of experts: dispatch strategies agree, routing equals transformers', and the committed
tiny trained MoE reproduces the validation loss written next to it."""

import json
import math
import sys

import pytest
import torch
import torch.nn.functional as F

import minigemma
from minigemma import moe
from minigemma.config import TextConfig
from minigemma.moe import LOOP_FROM, Experts, Router, active_parameters, experts_grouped, experts_loop

from .conftest import ROOT

sys.path.insert(0, str(ROOT / "notebooks"))  # the course code: the tiny MoE's script and the slow baselines
from moe_baselines import experts_dense, experts_naive  # noqa: E402
from tiny_moe import (OUT, evaluate, expert_shares, kind_information, load_tiny_moe, validation_data,  # noqa: E402
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


def test_router_equals_transformers_router(block):
    """Our Router against transformers' Gemma4TextRouter with the same weights (scale, projection and
    per-expert scales all random): the same probabilities, the same experts, the same weights."""
    from transformers import Gemma4TextConfig
    from transformers.models.gemma4.modeling_gemma4 import Gemma4TextRouter

    experts, router, x = block
    ref = Gemma4TextRouter(Gemma4TextConfig(hidden_size=48, num_experts=16, top_k_experts=4,
                                            rms_norm_eps=CFG.rms_norm_eps, enable_moe_block=True))
    ref.load_state_dict(router.state_dict())
    with torch.no_grad():
        weights, index, probs = router(x)
        ref_probs, ref_weights, ref_index = ref(x)
    top = probs.topk(CFG.top_k_experts + 1, dim=-1).values
    assert (top[:, -2] - top[:, -1]).min() > 1e-6  # ties-free: the k-th and (k+1)-th differ, so index is defined
    assert torch.equal(index, ref_index)
    torch.testing.assert_close(probs, ref_probs, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(weights, ref_weights, atol=1e-6, rtol=1e-5)


def routed(router, n, seed=1):
    """n random tokens and the router's choices for them: x (n, D), index (n, k), weights (n, k)."""
    x = torch.randn(n, 48, generator=torch.Generator().manual_seed(seed))
    weights, index, _ = router(x)
    return x, index, weights.detach()


@pytest.mark.parametrize("n", [1, 50, 600])
def test_every_dispatch_version_agrees(block, n):
    """The grouped products, the loop over experts and the per-token loop add the same products in
    the same (expert) order, so they agree within 1e-6. What differs: how the products are batched
    (and written: W x in the grouped version, x Wᵀ in the loops), and where the router weight is
    applied (the grouped version scales the hidden activations before down_proj, the loops scale
    down_proj's output). The dense version also adds every unpicked expert times 0, in another
    order: 1e-5. 600 tokens give 150 rows per expert, past LOOP_FROM, so Experts.forward runs the
    loop there; experts_grouped is checked at every size."""
    experts, router, _ = block
    x, index, weights = routed(router, n)
    with torch.no_grad():
        loop = experts_loop(experts, x, index, weights)
        for version in (experts_grouped, experts_naive, Experts.forward):
            torch.testing.assert_close(version(experts, x, index, weights), loop, atol=1e-6, rtol=1e-6)
        torch.testing.assert_close(experts_dense(experts, x, index, weights), loop, atol=1e-5, rtol=1e-5)


def test_forward_takes_the_grouped_products_for_few_rows_per_expert_and_grouped_mm_dtypes(block, monkeypatch):
    experts, router, _ = block
    taken = []
    for name in ("experts_grouped", "experts_loop"):
        version = getattr(moe, name)
        monkeypatch.setattr(moe, name, lambda *a, version=version, name=name: taken.append(name) or version(*a))
    few = LOOP_FROM * CFG.num_experts // CFG.top_k_experts - 1  # just under LOOP_FROM rows per expert
    x, index, weights = routed(router, 20)
    experts64 = Experts(CFG).double()
    experts64.load_state_dict(experts.state_dict())
    with torch.no_grad():
        for n in (1, few, few + 1):
            experts(*routed(router, n))
        out = experts64(x.double(), index, weights)  # grouped_mm has no float64 kernel: the loop runs
    assert taken == ["experts_grouped", "experts_grouped", "experts_loop", "experts_loop"]
    assert out.dtype == torch.float64
    with pytest.raises(RuntimeError, match="Float32, BFloat16 or Float16"):  # why forward checks the dtype
        experts_grouped(experts64, x.double(), index, weights)


def test_grouped_and_loop_agree_in_bfloat16(block):
    """grouped_mm's bfloat16 kernel against the loop's F.linear: equal up to bfloat16 rounding."""
    experts, router, _ = block
    x, index, weights = routed(router, 50)
    half = Experts(CFG).bfloat16()
    half.load_state_dict(experts.state_dict())
    with torch.no_grad():
        grouped = experts_grouped(half, x.bfloat16(), index, weights)
        loop = experts_loop(half, x.bfloat16(), index, weights)
        exact = experts_loop(experts, x, index, weights)
    assert grouped.dtype == torch.bfloat16
    torch.testing.assert_close(grouped.float(), loop.float(), atol=3e-2, rtol=2e-2)
    torch.testing.assert_close(grouped.float(), exact, atol=5e-2, rtol=5e-2)


def test_grouped_and_loop_have_the_same_gradients(block):
    """Training runs whichever version forward picks, so both must give the same gradients for the
    input, the router weights and both expert matrices. A router weight's gradient is a sum over
    the I hidden units in the grouped version (it scales the hidden activations) and over the D
    outputs in the loop, with some cancellation: 1e-4."""
    experts, router, _ = block
    x, index, weights = routed(router, 50)
    probe = torch.randn(50, 48, generator=torch.Generator().manual_seed(2))
    grads = []
    for version in (experts_grouped, experts_loop):
        xg, wg = x.clone().requires_grad_(), weights.clone().requires_grad_()
        experts.zero_grad()
        (version(experts, xg, index, wg) * probe).sum().backward()
        grads.append([xg.grad, wg.grad, experts.gate_up_proj.grad, experts.down_proj.grad])
    experts.zero_grad(set_to_none=True)
    for grouped, loop in zip(*grads):
        torch.testing.assert_close(grouped, loop, atol=1e-4, rtol=1e-4)


def test_unpicked_experts_are_never_read(block):
    """Every expert nobody picked set to NaN: a version that touched one (a padded batch, a dense
    product) would return NaN."""
    experts, router, _ = block
    x, index, weights = routed(router, 3)
    poisoned = Experts(CFG)
    poisoned.load_state_dict(experts.state_dict())
    unpicked = torch.ones(CFG.num_experts, dtype=torch.bool)
    unpicked[index.unique()] = False
    assert unpicked.sum() >= 4
    with torch.no_grad():
        poisoned.gate_up_proj[unpicked] = float("nan")
        poisoned.down_proj[unpicked] = float("nan")
        for version in (experts_grouped, experts_loop):
            torch.testing.assert_close(version(poisoned, x, index, weights), version(experts, x, index, weights))


def test_loop_runs_each_picked_expert_once(block):
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
        experts_loop(experts, x, index, torch.full((50, 4), 0.25))
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
    assert log["command"] == "python notebooks/tiny_moe.py --steps 150 --seed 0"
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
