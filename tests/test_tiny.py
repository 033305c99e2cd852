"""tiny_random: a published model's structure at toy width, with random weights. The structure is the
preset's (pattern, KV sharing, PLE, keys as values, experts, towers); the checkpoint it exports is one
transformers reads with the same logits; its drafter fits it; images, video and sound go through
generate(); and bad names fail clearly."""

import numpy as np
import pytest
import torch

import minigemma
from minigemma import generate, generate_ids, save_pretrained
from minigemma.config import FULL
from minigemma.mtp import check_pair
from minigemma.presets import AUDIO_PRESETS, PRESETS, VISION_PRESETS
from minigemma.tiny import tiny_random

NAMES = sorted(PRESETS)


@pytest.mark.parametrize("name", NAMES)
def test_the_structure_is_the_presets(name):
    model, tokenizer = tiny_random(name)
    tiny, real = model.config, PRESETS[name]
    unit = real.layer_types[:real.layer_types.index(FULL) + 1]
    assert tiny.layer_types == unit * 2 and tiny.layer_types[-1] == FULL  # the pattern; the last layer global
    for feature in ("hidden_size_per_layer_input", "num_kv_shared_layers", "attention_k_eq_v", "enable_moe_block",
                    "use_double_wide_mlp", "num_global_key_value_heads"):
        assert bool(getattr(tiny, feature)) == bool(getattr(real, feature)), feature
    assert tiny.rope_parameters == real.rope_parameters  # p-RoPE on the global layers, as published
    assert tiny.vocab_size == real.vocab_size == tokenizer.vocab_size  # the real Gemma vocabulary
    assert model.vision_config.use_clipped_linears == VISION_PRESETS[name].use_clipped_linears
    assert model.vision_config.standardize == VISION_PRESETS[name].standardize
    assert (model.audio_tower is not None) == (name in AUDIO_PRESETS)
    if real.num_kv_shared_layers:  # about the published fraction of layers borrow their K/V
        assert abs(tiny.num_kv_shared_layers / tiny.num_hidden_layers
                   - real.num_kv_shared_layers / real.num_hidden_layers) < 0.1


def test_seeds_decide_the_weights():
    a, _ = tiny_random("gemma4-31b", seed=0)
    b, _ = tiny_random("gemma4-31b", seed=0)
    c, _ = tiny_random("gemma4-31b", seed=1)
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not torch.equal(sa["layers.0.mlp.gate_proj.weight"], sc["layers.0.mlp.gate_proj.weight"])
    assert not torch.equal(sa["norm.weight"], torch.ones_like(sa["norm.weight"]))  # norms perturbed away from 1


@pytest.mark.parametrize("name", ["gemma4-e2b", "gemma4-26b-a4b"])
def test_the_export_is_a_checkpoint_transformers_reads_with_the_same_logits(name, tmp_path):
    from transformers import Gemma4ForConditionalGeneration

    model, tokenizer = tiny_random(name, seed=4)
    save_pretrained(model, tokenizer, tmp_path)
    hf, info = Gemma4ForConditionalGeneration.from_pretrained(tmp_path, dtype=torch.float32, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"]
    ids = torch.tensor([tokenizer.encode("A tiny model with a real structure", add_bos=True)])
    with torch.no_grad():
        ours, theirs = model(ids), hf.eval()(input_ids=ids).logits
    assert torch.allclose(ours, theirs, rtol=1e-4, atol=1e-4 * theirs.abs().max())
    again, _ = minigemma.load(tmp_path, progress=False)
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), again.state_dict().values()))


def test_the_assistant_fits_its_target_and_keeps_greedy_text():
    target, tokenizer = tiny_random("gemma4-e2b", seed=5)
    drafter, none = tiny_random("gemma4-e2b-assistant", seed=5)
    assert none is None  # like a real assistant directory, it has no tokenizer of its own
    check_pair(drafter, target.config)
    ids = tokenizer.encode("The drafter reads the target's cache", add_bos=True)
    assert list(generate_ids(target, ids, 20, assistant=drafter)) == list(generate_ids(target, ids, 20))


def test_images_video_and_sound_go_through_generate():
    model, tokenizer = tiny_random("gemma4-e2b", seed=6)
    rng = np.random.default_rng(0)
    image = minigemma.preprocess_image(rng.integers(0, 256, (48, 80, 3), dtype=np.uint8), max_soft_tokens=70)
    frames = minigemma.preprocess_video(rng.integers(0, 256, (12, 32, 32, 3), dtype=np.uint8), fps=24)
    sound = minigemma.audio_features(rng.standard_normal(8000).astype(np.float32) * 0.1, sampling_rate=16000)
    text = generate(model, tokenizer, "See <|image|>, watch <|video|>, hear <|audio|>:", images=[image],
                    videos=[frames], audio=[sound], max_new_tokens=5)
    assert isinstance(text, str) and len(tokenizer.encode(text)) >= 1
    deaf = tiny_random("gemma4-26b-a4b", seed=6)  # the 26B-A4B hears nothing, as published
    with pytest.raises(ValueError, match="audio"):
        generate(*deaf, "Hear <|audio|>", audio=[sound], max_new_tokens=2)


def test_bad_names_are_refused():
    with pytest.raises(KeyError, match="gemma4-e2b"):
        tiny_random("gemma4-e3b")
    with pytest.raises(KeyError, match="gemma4-e2b"):
        tiny_random("gemma4-e3b-assistant")
