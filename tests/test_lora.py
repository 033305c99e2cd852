"""LoRA and QLoRA against peft, gradient checkpointing, and the adapter file format.

Small random checkpoints saved by transformers (norms perturbed): a Gemma 3 text model, the three
Gemma 4 text styles (KV sharing + PLE, keys as values, mixture of experts) and a multimodal Gemma 4
(its text decoder under ``model.language_model.``). Adapters go both ways between minigemma and
peft, and both train to the same weights from the same start.
"""

import copy
import shutil
import warnings
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

import minigemma
from minigemma.finetune import SummedLoss
from minigemma.lora import LoRALinear, add_lora, load_adapter, lora_layers, merge, save_adapter, trainable_parameters
from minigemma.quantize import quantize_model
from minigemma.weights import CheckpointError, build_model, read_hf_directory

from .conftest import make_tiny_gemma3, perturb
from .reference import dequantized_copy_state
from .test_gemma4 import STYLES, TINY, make_tiny_gemma4

TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
KINDS = ["gemma3", "e-style", "31b-style", "26b-style", "multimodal"]


def make_multimodal(directory, tokenizer_dir):
    from transformers import Gemma4Config, Gemma4ForConditionalGeneration, Gemma4TextConfig, Gemma4VisionConfig

    torch.manual_seed(0)
    text = Gemma4TextConfig(**{**TINY, **STYLES["e-style"]})
    vision = Gemma4VisionConfig(hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
                                num_key_value_heads=2, head_dim=8)
    ref = Gemma4ForConditionalGeneration(Gemma4Config(text_config=text, vision_config=vision)).eval()
    perturb(ref, std=0.3)
    ref.save_pretrained(directory)
    shutil.copy(Path(tokenizer_dir) / "tokenizer.json", Path(directory) / "tokenizer.json")
    return ref


@pytest.fixture(scope="module", params=KINDS)
def pair(request, tmp_path_factory, hf_tokenizer_dir):
    """(kind, transformers model, checkpoint directory)."""
    directory = tmp_path_factory.mktemp(request.param)
    if request.param == "gemma3":
        ref = make_tiny_gemma3(directory, hf_tokenizer_dir)
    elif request.param == "multimodal":
        ref = make_multimodal(directory, hf_tokenizer_dir)
    else:
        ref = make_tiny_gemma4(directory, hf_tokenizer_dir, request.param)
    return request.param, ref, directory


def ours(directory):
    model, _ = minigemma.load(directory, progress=False)
    return model


def peft_targets(kind):
    """What a peft user writes: the short names, restricted to the text decoder on a multimodal model."""
    return r".*language_model.*\.(" + "|".join(TARGETS) + ")" if kind == "multimodal" else TARGETS


def randomize(model, seed=1):
    """Give every adapter matrix random values (B = 0 at the start would hide a wrong B)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for layer in lora_layers(model).values():
            layer.lora_A.weight.normal_(0, 0.3, generator=gen)
            layer.lora_B.weight.normal_(0, 0.3, generator=gen)


def ids_of(seed=0, T=12):
    return torch.randint(0, 5000, (2, T), generator=torch.Generator().manual_seed(seed))


def hf_logits(ref, ids):
    return ref(input_ids=ids, use_cache=False).logits


def test_our_adapter_loads_into_peft_with_the_same_logits(pair, tmp_path):
    from peft import PeftModel

    kind, ref, directory = pair
    model = add_lora(ours(directory), r=4, alpha=8)
    randomize(model)
    save_adapter(model, tmp_path)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        theirs = PeftModel.from_pretrained(copy.deepcopy(ref), tmp_path).eval()
    assert not [w for w in caught if "missing adapter keys" in str(w.message).lower()]
    ids = ids_of()
    with torch.no_grad():
        expected, got = hf_logits(theirs, ids), model(ids)
    assert (expected - hf_logits(ref, ids)).abs().max() > 0.1  # the adapters change the output
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)


def test_a_peft_adapter_loads_into_minigemma_with_the_same_logits(pair, tmp_path):
    from peft import LoraConfig, get_peft_model

    kind, ref, directory = pair
    config = LoraConfig(r=4, lora_alpha=12, target_modules=peft_targets(kind), init_lora_weights=False)
    theirs = get_peft_model(copy.deepcopy(ref), config).eval()
    theirs.save_pretrained(tmp_path)
    model = load_adapter(ours(directory), tmp_path)
    assert len(lora_layers(model)) == sum(1 for n, _ in theirs.named_modules() if n.endswith("lora_A"))
    ids = ids_of(1)
    with torch.no_grad():
        torch.testing.assert_close(model(ids), hf_logits(theirs, ids), rtol=1e-4, atol=1e-4)


def masked_targets(ids, seed=0):
    """Next-token targets with about half the positions ignored, as a chat's loss mask does."""
    targets = torch.roll(ids, -1, dims=1)
    keep = torch.rand(ids.shape, generator=torch.Generator().manual_seed(seed)) < 0.5
    targets[~keep] = -100
    targets[:, -1] = -100
    return targets


@pytest.mark.parametrize("kind", ["gemma3", "e-style"])
def test_same_start_same_training_trajectory_as_peft(kind, tmp_path, request):
    """Three AdamW steps from the same adapters on the same batch: the same adapters after."""
    from peft import LoraConfig, get_peft_model

    directory = tmp_path / "ckpt"
    tok_dir = request.getfixturevalue("hf_tokenizer_dir")
    ref = make_tiny_gemma3(directory, tok_dir) if kind == "gemma3" else make_tiny_gemma4(directory, tok_dir, kind)
    theirs = get_peft_model(ref, LoraConfig(r=4, lora_alpha=8, target_modules=TARGETS))  # B = 0, as at a real start
    theirs.save_pretrained(tmp_path / "start")
    model = load_adapter(ours(directory), tmp_path / "start")
    ids = ids_of(2, T=16)
    targets = masked_targets(ids)
    n = (targets != -100).sum()
    loss_ours = SummedLoss(model)
    opt_ours = torch.optim.AdamW(trainable_parameters(model), lr=1e-2, weight_decay=0.0)
    opt_theirs = torch.optim.AdamW([p for p in theirs.parameters() if p.requires_grad], lr=1e-2, weight_decay=0.0)
    model.train(), theirs.train()
    for _ in range(3):
        for opt, loss in ((opt_ours, lambda: loss_ours(ids, targets) / n),
                          (opt_theirs, lambda: F.cross_entropy(theirs(input_ids=ids, use_cache=False).logits.flatten(0, 1),
                                                               targets.flatten(), reduction="sum") / n)):
            opt.zero_grad()
            loss().backward()
            opt.step()
    theirs.save_pretrained(tmp_path / "end")
    trained = load_adapter(ours(directory), tmp_path / "end")
    mine, peft = lora_layers(model), lora_layers(trained)
    assert mine.keys() == peft.keys()
    for name in mine:
        assert (mine[name].lora_B.weight.abs().max()) > 1e-3  # it did move
        for m in ("lora_A", "lora_B"):
            a, b = getattr(mine[name], m).weight, getattr(peft[name], m).weight
            assert (a - b).norm() <= 1e-3 * b.norm()  # Adam divides by sqrt(v): it magnifies rounding in tiny gradients


def gradients(model, ids, targets):
    model.zero_grad(set_to_none=True)
    loss = SummedLoss(model)(ids, targets)
    loss.backward()
    return loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}


def test_gradient_checkpointing_gives_the_same_gradients_through_kv_shared_layers(hf_tokenizer_dir, tmp_path):
    """The KV-shared layers (e-style: the last two) read their donors' K/V as ordinary inputs, so
    recomputing the layers in the backward pass changes nothing -- and the loss equals
    transformers' forward pass without a cache (the bug of huggingface/transformers#45242)."""
    ref = make_tiny_gemma4(tmp_path, hf_tokenizer_dir, "e-style")
    model = add_lora(ours(tmp_path), r=4, alpha=8)
    randomize(model)
    assert model.config.first_kv_shared_layer < model.config.num_hidden_layers
    ids = ids_of(3, T=20)  # longer than the sliding window (8)
    targets = masked_targets(ids, seed=1)
    model.train()
    plain_loss, plain = gradients(model, ids, targets)
    model.gradient_checkpointing_enable()
    recomputed_loss, recomputed = gradients(model, ids, targets)
    model.gradient_checkpointing_disable()
    assert torch.equal(plain_loss, recomputed_loss)
    for name in plain:
        torch.testing.assert_close(recomputed[name], plain[name], rtol=0, atol=0)
    assert any(g.abs().max() > 0 for n, g in plain.items() if n.startswith("layers.6."))  # a KV-shared layer learns
    with torch.no_grad():
        merged = merge(copy.deepcopy(model))
        theirs = ref
        theirs.load_state_dict({("model." + k): v for k, v in merged.state_dict().items()}, strict=False)
        expected = F.cross_entropy(hf_logits(theirs, ids).flatten(0, 1), targets.flatten(), reduction="sum")
    torch.testing.assert_close(plain_loss, expected, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("mode", ["int8", "int4"])
def test_qlora_gradients_flow_through_the_frozen_quantised_weights(mode, hf_tokenizer_dir, tmp_path):
    """Adapters over an int8/int4 base get the gradients of a float model holding the dequantised weights."""
    make_tiny_gemma3(tmp_path, hf_tokenizer_dir, hidden_size=64, intermediate_size=128)
    config, state, _ = read_hf_directory(tmp_path, progress=False)
    quantized = quantize_model(build_model(config, state), mode, group_size=32)
    reference = build_model(config, dequantized_copy_state(quantized))
    for model in (quantized, reference):
        add_lora(model, r=4, alpha=8, seed=3)
        randomize(model)
    ids = ids_of(4, T=10)
    targets = masked_targets(ids, seed=2)
    q_loss, q_grads = gradients(quantized, ids, targets)
    f_loss, f_grads = gradients(reference, ids, targets)
    torch.testing.assert_close(q_loss, f_loss, rtol=1e-4, atol=1e-4)
    assert q_grads.keys() == f_grads.keys() and len(q_grads) == 7 * 2 * config.num_hidden_layers
    for name in q_grads:
        torch.testing.assert_close(q_grads[name], f_grads[name], rtol=1e-3, atol=1e-4)


def test_merge_folds_the_adapters_into_the_weights(pair):
    kind, _, directory = pair
    model = add_lora(ours(directory), r=4, alpha=8)
    randomize(model)
    ids = ids_of(5)
    with torch.no_grad():
        before = model(ids)
        merge(model)
        after = model(ids)
    assert not lora_layers(model)
    assert all(type(m).__name__ != "LoRALinear" for m in model.modules())
    torch.testing.assert_close(after, before, rtol=1e-4, atol=1e-4)


def test_add_lora_trains_only_the_adapters_and_starts_at_the_base_model(pair):
    kind, _, directory = pair
    base = ours(directory)
    ids = ids_of(6)
    with torch.no_grad():
        expected = base(ids)
    model = add_lora(base, r=8, alpha=16, seed=0)
    layers = lora_layers(model)
    # attention + dense MLP of the text decoder only: no tower, no expert, no router, no PLE layer
    assert all(n.split(".")[-1] in TARGETS and n.startswith("layers.") for n in layers)
    assert all(p.requires_grad == (".lora_" in n) for n, p in model.named_parameters())
    assert all(layer.scaling == 2.0 and not layer.lora_B.weight.any() for layer in layers.values())
    with torch.no_grad():
        torch.testing.assert_close(model(ids), expected, rtol=0, atol=0)
    again = add_lora(ours(directory), r=8, alpha=16, seed=0)
    assert all(torch.equal(again.get_submodule(n).lora_A.weight, l.lora_A.weight) for n, l in layers.items())


def test_adapter_errors_name_the_problem(hf_tokenizer_dir, tmp_path):
    from safetensors.torch import load_file, save_file

    directory = tmp_path / "ckpt"
    make_tiny_gemma3(directory, hf_tokenizer_dir)
    model = add_lora(ours(directory), r=4, alpha=8)
    with pytest.raises(ValueError, match="already has LoRA adapters"):
        add_lora(model)
    with pytest.raises(ValueError, match="no layer of the text decoder"):
        add_lora(ours(directory), target_modules=("qkv",))
    with pytest.raises(FileNotFoundError, match="adapter_config.json"):
        load_adapter(ours(directory), tmp_path)
    save_adapter(model, tmp_path / "good")
    tensors = load_file(tmp_path / "good" / "adapter_model.safetensors")
    key = next(k for k in tensors if k.endswith("layers.0.self_attn.q_proj.lora_A.weight"))
    bad = tmp_path / "misshaped"
    shutil.copytree(tmp_path / "good", bad)
    save_file({**tensors, key: torch.zeros(4, 7)}, bad / "adapter_model.safetensors")
    with pytest.raises(CheckpointError, match=r"layers\.0\.self_attn\.q_proj: adapter A \(4, 7\)"):
        load_adapter(ours(directory), bad)
    extra = {k.replace("layers.0.", "layers.99."): v.clone() for k, v in tensors.items() if "layers.0.self_attn.q_proj" in k}
    save_file({**tensors, **extra}, bad / "adapter_model.safetensors")
    with pytest.raises(CheckpointError, match=r"layers\.99\.self_attn\.q_proj: no such linear layer"):
        load_adapter(ours(directory), bad)
    save_file({k: v for k, v in tensors.items() if k != key}, bad / "adapter_model.safetensors")
    with pytest.raises(CheckpointError, match="not both lora_A and lora_B"):
        load_adapter(ours(directory), bad)
    (bad / "adapter_config.json").write_text('{"peft_type": "IA3"}')
    with pytest.raises(CheckpointError, match="peft_type 'IA3'"):
        load_adapter(ours(directory), bad)
    quantized = minigemma.load(directory, quantize="int8", progress=False)[0]
    load_adapter(quantized, tmp_path / "good")
    with pytest.raises(ValueError, match="cannot merge an adapter into Int8Linear"):
        merge(quantized)
    assert isinstance(quantized.layers[0].self_attn.q_proj, LoRALinear)


def test_the_committed_adapter_on_the_real_270m_equals_peft_on_transformers(gemma, hf_model, gguf_path):
    """The course's tiny FunctionGemma: our model + adapter vs transformers' Gemma3ForCausalLM + peft."""
    import sys

    from peft import PeftModel

    from .conftest import ROOT

    sys.path.insert(0, str(ROOT / "notebooks"))
    import tool_calls

    adapter = ROOT / "data" / "tool_calls" / "adapter"
    model, tok = minigemma.load(gguf_path, progress=False)
    load_adapter(model, adapter)
    theirs = PeftModel.from_pretrained(copy.deepcopy(hf_model), adapter).eval()
    example = tool_calls.read_jsonl(ROOT / "data" / "tool_calls" / "heldout.jsonl")[0]
    ids = torch.tensor([tok.encode(tool_calls.prompt(example), add_bos=True)])
    with torch.no_grad():
        got, expected, base = model(ids), theirs(input_ids=ids).logits, gemma[0](ids)
    assert (got - base).abs().max() > 1.0  # the adapter changes the answer
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-3)
    assert torch.equal(got.argmax(-1), expected.argmax(-1))
