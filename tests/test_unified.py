"""The encoder-free unified Gemma 4 (12B, transformers ``gemma4_unified``) vs transformers: image patches
(every budget, odd shapes, video frames), audio frames, logits and greedy generation with text, images,
audio and video in the prompt on random checkpoints saved by transformers (embedders and norms
perturbed), the 12B's keys on the meta device, strict loading, model-aware media and the errors."""

import math

import numpy as np
import pytest
import torch

import minigemma
from minigemma.multimodal import AUDIO_ID, IMAGE_ID, VIDEO_ID
from minigemma.preprocess import BUDGETS, patchify, sample_frames
from minigemma.unified import SIDE, UnifiedGemma, audio_frames, image_patches, video_patches

from .conftest import perturb
from .test_vision import SHAPES, relative_error

# ---- media in ---------------------------------------------------------------------------------


def hf_image(image, budget):
    """transformers' merged patches and positions of one image, with its padding cut off."""
    from transformers import Gemma4UnifiedImageProcessor

    out = Gemma4UnifiedImageProcessor(max_soft_tokens=budget)(image, return_tensors="pt")
    n = int(out["num_soft_tokens_per_image"][0])
    pos = out["image_position_ids"][0]
    assert (pos[n:] == -1).all() and (out["pixel_values"][0][n:] == 0).all()  # the rest is padding
    return out["pixel_values"][0][:n], pos[:n]


@pytest.mark.parametrize("budget", BUDGETS)
def test_image_patches_equal_transformers_for_every_budget_and_shape(budget):
    from PIL import Image

    rng = np.random.default_rng(budget)
    for h, w in SHAPES:
        pixels = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        patches, positions = image_patches(pixels, budget)
        ref_patches, ref_positions = hf_image(Image.fromarray(pixels), budget)
        assert patches.dtype == torch.float32 and positions.dtype == torch.long
        assert torch.equal(positions, ref_positions), (h, w)
        assert (patches - ref_patches).abs().max() <= 1e-5, (h, w)
        assert patches.shape == (len(positions), 6912) and len(patches) <= budget


@pytest.mark.parametrize("mode", ["L", "P", "RGBA", "CMYK"])
def test_image_modes_are_converted_as_the_unified_processor_does(mode):
    from PIL import Image

    rng = np.random.default_rng(0)
    image = Image.fromarray(rng.integers(0, 256, (37, 53, 3), dtype=np.uint8)).convert(mode)
    if mode == "RGBA":
        image.putalpha(Image.fromarray(rng.integers(0, 256, (37, 53), dtype=np.uint8)))
    ours, ref = image_patches(image, 140), hf_image(image, 140)
    assert torch.equal(ours[1], ref[1]) and (ours[0] - ref[0]).abs().max() <= 1e-5


def test_merging_3x3_blocks_of_16_pixel_patches_gives_the_48_pixel_patch():
    """transformers cuts 16-pixel patches and merges each 3×3 block (``patches_merge``); that is the
    48-pixel patch of the same pixels, in the same order, at (column, row) = block position."""
    from transformers.models.gemma4_unified.image_processing_gemma4_unified import patches_merge

    pixels = np.random.default_rng(1).random((5 * SIDE, 7 * SIDE, 3)).astype(np.float32)
    small, small_pos = patchify(pixels)  # (35·9, 768)
    merged, merged_pos = patches_merge(small[None], small_pos[None], 35)
    big, big_pos = patchify(pixels, SIDE)  # (35, 6912)
    assert torch.equal(merged[0], big) and torch.equal(merged_pos[0], big_pos)


def test_pillow_and_torch_resizes_differ_by_a_few_levels():
    """Why the unified model does not reuse preprocess_image's Pillow resize: torchvision's (= torch's)
    antialiased bicubic on uint8 differs from Pillow's by a few levels of 255 on some pixels."""
    from minigemma.preprocess import preprocess_image

    def picture(patches, positions, size):  # patches back into the resized (h, w, 3) picture
        w, h = (int(positions[:, i].max() + 1) * size for i in (0, 1))
        out = torch.zeros(h, w, 3)
        for p, (x, y) in zip(patches.reshape(-1, size, size, 3), positions.tolist()):
            out[y * size:(y + 1) * size, x * size:(x + 1) * size] = p
        return out

    pixels = np.random.default_rng(2).integers(0, 256, (300, 410, 3), dtype=np.uint8)
    ours, pil = picture(*image_patches(pixels, 280), SIDE), picture(*preprocess_image(pixels, 280), 16)
    levels = ((ours - pil).abs() * 255).round()
    assert ours.shape == pil.shape and 1 <= levels.max() <= 4 and (levels == 0).float().mean() > 0.5


@pytest.mark.parametrize("samples", [1, 639, 640, 641, 16000, 12345, 16000 * 30])
def test_audio_frames_equal_the_feature_extractor(samples):
    from types import SimpleNamespace

    from transformers import Gemma4UnifiedAudioFeatureExtractor
    from transformers.models.gemma4_unified.processing_gemma4_unified import Gemma4UnifiedProcessor

    wave = np.random.default_rng(samples).normal(0, 0.2, samples).astype(np.float32)
    ours = audio_frames(wave, sampling_rate=16000)
    ref = Gemma4UnifiedAudioFeatureExtractor()(wave, return_tensors="np")
    assert ref["input_features_mask"].all() and np.array_equal(ours, ref["input_features"][0])
    assert len(ours) == math.ceil(samples / 640) == Gemma4UnifiedProcessor._compute_audio_num_tokens(
        SimpleNamespace(feature_extractor=None), wave, 16000)
    assert np.array_equal(audio_frames(wave.astype(np.float64), sampling_rate=16000), ours)


def test_video_frames_equal_the_unified_video_processor():
    """Same sampled frames (32 by default), same 48-pixel patches and positions, same prompt text."""
    from types import SimpleNamespace

    from transformers.models.gemma4_unified.processing_gemma4_unified import Gemma4UnifiedProcessor
    from transformers.models.gemma4_unified.video_processing_gemma4_unified import Gemma4UnifiedVideoProcessor
    from transformers.video_utils import VideoMetadata

    from .test_multimodal import CharTokenizer, as_text

    clip = np.random.default_rng(3).integers(0, 256, (200, 60, 80, 3), dtype=np.uint8)
    frames, times = video_patches(clip, fps=2.5)
    meta = VideoMetadata(total_num_frames=200, fps=2.5)
    out = Gemma4UnifiedVideoProcessor()(videos=[clip], video_metadata=[meta], do_sample_frames=True,
                                        return_tensors="pt", return_metadata=True)
    assert out["num_frames_per_video"].tolist() == [len(frames)] == [32]
    n = out["num_soft_tokens_per_video"][0]
    for (patches, positions), ref, ref_pos in zip(frames, out["pixel_values_videos"], out["video_position_ids"]):
        assert torch.equal(positions, ref_pos[:n]) and (patches - ref[:n]).abs().max() <= 1e-5
    assert out["video_metadata"][0].frames_indices.tolist() == sample_frames(200, 2.5)[0]
    proc = SimpleNamespace(boi_token="<boi>", eoi_token="<eoi>", video_token="<vid>")
    vid = Gemma4UnifiedProcessor.replace_video_token(proc, {"num_soft_tokens_per_video": [n],
                                                            "video_metadata": out["video_metadata"]}, 0)
    ids = minigemma.multimodal_prompt(CharTokenizer(), "Watch <|video|>", videos=[(frames, times)])
    assert as_text(ids) == f"<bos>Watch {vid}" and "01:17 " in vid


# ---- the whole model ------------------------------------------------------------------------

TEXT = dict(vocab_size=262144, hidden_size=64, intermediate_size=96, num_attention_heads=4, head_dim=16,
            global_head_dim=32, sliding_window=8, max_position_embeddings=512, final_logit_softcapping=30.0,
            initializer_range=0.2)
MODELS = {
    # 12B-like: keys as values on global layers (1 KV head there), bidirectional images, both media
    "12b-style": dict(text=dict(num_hidden_layers=6, num_key_value_heads=2, num_global_key_value_heads=1,
                                attention_k_eq_v=True, use_bidirectional_attention="vision"),
                      vision=dict(mm_embed_dim=40, output_proj_dims=40, mm_posemb_size=40), audio=True),
    # plain global layers, KV sharing, causal over images, no audio
    "shared-kv": dict(text=dict(num_hidden_layers=7, num_key_value_heads=1, num_kv_shared_layers=2,
                                layer_types=["sliding_attention"] * 4 + ["full_attention", "sliding_attention",
                                                                         "full_attention"],
                                use_bidirectional_attention=None),
                      vision=dict(mm_embed_dim=24, output_proj_dims=24, mm_posemb_size=1120), audio=False),
    # audio alone
    "audio-only": dict(text=dict(num_hidden_layers=6, num_key_value_heads=2), vision=None, audio=True),
}


def make_tiny_unified(directory, name):
    """A small random Gemma4UnifiedForConditionalGeneration saved by transformers: decoder norms and
    scalars perturbed, every embedder weight (LayerNorm scales and biases, position table) random."""
    from transformers import (Gemma4UnifiedAudioConfig, Gemma4UnifiedConfig, Gemma4UnifiedForConditionalGeneration,
                              Gemma4UnifiedTextConfig, Gemma4UnifiedVisionConfig)

    spec = MODELS[name]
    vision = Gemma4UnifiedVisionConfig(**spec["vision"]) if spec["vision"] else None
    config = Gemma4UnifiedConfig(text_config=Gemma4UnifiedTextConfig(**{**TEXT, **spec["text"]}), vision_config=vision,
                                 audio_config=Gemma4UnifiedAudioConfig() if spec["audio"] else None)
    torch.manual_seed(0)
    ref = Gemma4UnifiedForConditionalGeneration(config).eval()
    perturb(ref, std=0.3)
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for part in ("embed_vision", "embed_audio"):
            for key, t in (getattr(ref.model, part).state_dict(keep_vars=True).items() if getattr(ref.model, part)
                           else ()):
                if t.dim() == 1:  # LayerNorm scales near 1, biases near 0
                    t.copy_(("weight" in key) + 0.3 * torch.randn(t.shape, generator=gen))
                else:  # projections and the position table at the scale of the text embeddings
                    t.normal_(0, 1.0, generator=gen)
    ref.save_pretrained(directory)
    return ref


@pytest.fixture(scope="module", params=sorted(MODELS))
def unified_pair(request, tmp_path_factory):
    directory = tmp_path_factory.mktemp(f"unified-{request.param}")
    ref = make_tiny_unified(directory, request.param)
    model, tokenizer = minigemma.load(directory, progress=False, tokenizer="gemma3-270m")
    return ref, model, tokenizer, directory, request.param


def hf_inputs(ids, images=(), frames=(), frames_per_video=(), clips=()):
    """Our media -> transformers' padded inputs (padding positions -1, audio masks all valid)."""
    def padded(items):
        longest = max(len(p) for p, _ in items)
        pixels, positions = torch.zeros(len(items), longest, 6912), torch.full((len(items), longest, 2), -1)
        for i, (p, pos) in enumerate(items):
            pixels[i, :len(p)], positions[i, :len(p)] = p, pos
        return pixels, positions

    ids = torch.tensor([ids])
    types = torch.zeros_like(ids)
    types[ids == IMAGE_ID], types[ids == VIDEO_ID], types[ids == AUDIO_ID] = 1, 2, 3
    kwargs = dict(input_ids=ids, mm_token_type_ids=types)
    if images:
        kwargs["pixel_values"], kwargs["image_position_ids"] = padded(images)
    if frames:
        kwargs["pixel_values_videos"], kwargs["video_position_ids"] = padded(frames)
        kwargs["num_frames_per_video"] = torch.tensor(frames_per_video)
    if clips:
        longest = max(len(c) for c in clips)
        kwargs["input_features"] = torch.zeros(len(clips), longest, 640)
        kwargs["input_features_mask"] = torch.zeros(len(clips), longest, dtype=torch.bool)
        for i, c in enumerate(clips):
            kwargs["input_features"][i, :len(c)], kwargs["input_features_mask"][i, :len(c)] = torch.from_numpy(c), True
    return kwargs


# transformers 5.24 builds two different masks for this model. Its static-cache generate() calls
# the model's own create_masks_for_generate: Gemma 4's rule (an image's tokens see each other on sliding
# layers only, within the window), as for 26B/31B. Its forward() (and so generate() with the default
# dynamic cache) goes through masking_utils.create_masks_for_generate with block ids: Gemma 3's rule
# (every layer, even past the window). We follow the first; the tests compare with that path.
def hf_generate(ref, kwargs, max_new_tokens):
    return ref.generate(**kwargs, max_new_tokens=max_new_tokens, do_sample=False, eos_token_id=None, pad_token_id=0,
                        cache_implementation="static")[0, kwargs["input_ids"].shape[1]:].tolist()


def hf_logits(ref, kwargs):
    """transformers' logits with the masks of its static-cache generate() (see above)."""
    ids = kwargs["input_ids"]
    embeds = torch.zeros(*ids.shape, ref.config.text_config.hidden_size)  # only its shape and dtype are read
    masks = ref.create_masks_for_generate(ref.config, embeds, None, None, torch.arange(ids.shape[1])[None],
                                          mm_token_type_ids=kwargs["mm_token_type_ids"])
    return ref(**kwargs, attention_mask=masks).logits


def media(model, name):
    """Two images of other sizes and budgets, and two clips (one not a multiple of 640 samples)."""
    rng = np.random.default_rng(7)
    pictures = [rng.integers(0, 256, (100, 150, 3), dtype=np.uint8), rng.integers(0, 256, (300, 60, 3), dtype=np.uint8)]
    waves = [rng.normal(0, 0.2, n).astype(np.float32) for n in (3000, 1280)]
    images = [model.preprocess_image(p, budget) for p, budget in zip(pictures, (70, 140))] if model.embed_vision else []
    clips = [model.audio_features(w, sampling_rate=16000) for w in waves] if model.embed_audio else []
    if name == "audio-only":
        return "Hear <|audio|> and <|audio|> now", [], clips
    if name == "shared-kv":
        return "Look <|image|> and <|image|> now", images, []
    return "Look <|image|> hear <|audio|> and <|image|> <|audio|> now", images, clips


@torch.no_grad()
def test_logits_with_images_and_audio_equal_transformers(unified_pair):
    ref, model, tok, _, name = unified_pair
    assert isinstance(model, UnifiedGemma)
    prompt, images, clips = media(model, name)
    ids = minigemma.multimodal_prompt(tok, prompt, images=images, audio=clips)
    assert ids.count(IMAGE_ID) == sum(len(p) for p, _ in images) and ids.count(AUDIO_ID) == sum(map(len, clips))
    assert [len(c) for c in clips] in ([], [5, 2])  # ceil(3000 / 640), 1280 / 640
    kwargs = hf_inputs(ids, images, clips=clips)
    theirs = hf_logits(ref, kwargs)
    ours = model(torch.tensor([ids]), images=images or None, audio=clips or None)
    assert theirs.abs().max() > 3 and relative_error(ours, theirs) < 1e-4
    other = model(torch.tensor([ids]), images=[(p.flip(0), pos) for p, pos in images] or None,
                  audio=[c[::-1].copy() for c in clips] or None)
    assert relative_error(other, theirs) > 1e-2  # the pixels and samples matter
    if MODELS[name]["text"].get("use_bidirectional_attention") == "vision" and images:
        # transformers' forward() without the generate() masks: bidirectional on global layers too
        assert relative_error(ours, ref(**kwargs).logits) > 1e-2


@torch.no_grad()
def test_greedy_generation_equals_transformers_generate(unified_pair):
    ref, model, tok, _, name = unified_pair
    prompt, images, clips = media(model, name)
    ids = minigemma.multimodal_prompt(tok, prompt, images=images, audio=clips)
    theirs = hf_generate(ref, hf_inputs(ids, images, clips=clips), 8)
    assert list(minigemma.generate_ids(model, ids, max_new_tokens=8, images=images or None,
                                       audio=clips or None)) == theirs
    text = minigemma.generate(model, tok, prompt, max_new_tokens=8, images=images or None, audio=clips or None,
                              stop_ids=set())
    assert text == tok.decode(theirs)


@torch.no_grad()
@pytest.mark.parametrize("unified_pair", sorted(n for n in MODELS if MODELS[n]["vision"]), indirect=True)
def test_video_logits_and_greedy_equal_transformers(unified_pair):
    ref, model, tok, _, name = unified_pair
    clip = np.zeros((40, 60, 80, 3), np.uint8)
    for t in range(40):  # a bright square moving right
        clip[t, 20:40, t:t + 20] = 255
    frames, times = model.preprocess_video(clip, fps=8.0, num_frames=3)
    ids = minigemma.multimodal_prompt(tok, "Then <|video|> What moved?", videos=[(frames, times)])
    kwargs = hf_inputs(ids, frames=frames, frames_per_video=[len(frames)])
    theirs = hf_logits(ref, kwargs)
    assert relative_error(model(torch.tensor([ids]), videos=[(frames, times)]), theirs) < 1e-4
    greedy = hf_generate(ref, kwargs, 6)
    assert list(minigemma.generate_ids(model, ids, max_new_tokens=6, videos=[(frames, times)])) == greedy


def hf_12b_config():
    from dataclasses import asdict

    from transformers import Gemma4UnifiedConfig, Gemma4UnifiedTextConfig

    from .test_gemma4 import ONLY_OURS

    text = minigemma.preset("gemma4-12b")
    kwargs = {k: v for k, v in asdict(text).items() if k not in ONLY_OURS and v is not None and k not in (
        "hidden_size_per_layer_input", "vocab_size_per_layer_input", "enable_moe_block", "embedding_dim")}
    return Gemma4UnifiedConfig(text_config=Gemma4UnifiedTextConfig(**{**kwargs, "layer_types": list(text.layer_types)}),
                               vision_config={}, audio_config={})


def test_expected_keys_equal_transformers_for_the_12b():
    """The 12B's every tensor on the meta device, in the names transformers writes to disk (its
    save_pretrained renames embed_vision.patch_* back to vision_embedder.*, the hub's layout).
    transformers' *default* Gemma4UnifiedConfig is not the 12B (its text part is 30 layers of 2304)."""
    from transformers import Gemma4UnifiedConfig, Gemma4UnifiedForConditionalGeneration

    assert Gemma4UnifiedConfig().text_config.hidden_size != 3840
    with torch.device("meta"):
        ref = Gemma4UnifiedForConditionalGeneration(hf_12b_config())
    on_disk = {"model.embed_vision.multimodal_embedder.": "model.embed_vision.",
               "model.embed_vision.": "model.vision_embedder.", "model.language_model.": "", "model.": ""}

    def renamed(key):
        prefix = next(p for p in on_disk if key.startswith(p))
        return on_disk[prefix] + key[len(prefix):]

    theirs = {renamed(k).removeprefix("model."): tuple(v.shape) for k, v in ref.state_dict().items()
              if k != "lm_head.weight"}
    vision, audio = minigemma.presets.UNIFIED_MEDIA["gemma4-12b"]
    ours = minigemma.expected_keys(minigemma.preset("gemma4-12b"), vision, audio)
    assert ours == theirs
    assert ours["vision_embedder.pos_embedding"] == (1120, 2, 3840) and ours["layers.47.self_attn.k_proj.weight"] == (
        512, 3840) and "layers.47.self_attn.v_proj.weight" not in ours  # one global KV head, keys as values
    params = sum(math.prod(s) for s in ours.values())
    media_params = sum(math.prod(s) for k, s in ours.items()
                       if k.startswith(("vision_embedder", "embed_vision", "embed_audio")))
    assert 11e9 < params < 13e9 and 40e6 < media_params < 60e6  # the media cost about 0.4 % of the 12B


@pytest.mark.parametrize("unified_pair", ["12b-style"], indirect=True)  # one config is enough
def test_loading_is_strict_and_names_the_tensor(unified_pair, tmp_path):
    import json
    import shutil

    from safetensors.torch import load_file, save_file

    _, _, _, directory, name = unified_pair
    state = load_file(directory / "model.safetensors")
    config = json.loads((directory / "config.json").read_text())
    assert "model.vision_embedder.patch_ln1.bias" in state and "model.embed_vision.embedding_projection.weight" in state

    def load_with(tensors, cfg=config):
        save_file(tensors, tmp_path / "model.safetensors")
        (tmp_path / "config.json").write_text(json.dumps(cfg))
        return minigemma.load(tmp_path, progress=False, tokenizer="gemma3-270m")

    with pytest.raises(minigemma.CheckpointError, match=r"missing tensors: vision_embedder\.patch_ln2\.bias"):
        load_with({k: v for k, v in state.items() if k != "model.vision_embedder.patch_ln2.bias"})
    with pytest.raises(minigemma.CheckpointError, match=r"unexpected tensors: embed_audio\.extra"):
        load_with({**state, "model.embed_audio.extra": torch.zeros(2)})
    with pytest.raises(minigemma.CheckpointError, match=r"misshaped tensors: vision_embedder\.pos_embedding"):
        load_with(state, {**config, "vision_config": {**config["vision_config"], "mm_posemb_size": 8}})
    with pytest.raises(minigemma.CheckpointError, match=r"audio tensors .* no audio_config"):
        load_with(state, {k: v for k, v in config.items() if k != "audio_config"})
    shutil.rmtree(tmp_path)


def test_model_aware_media_for_the_e_models_and_the_unified_model():
    """One piece of user code serves both kinds: the model makes the media it takes."""
    rng = np.random.default_rng(4)
    picture, wave = rng.integers(0, 256, (90, 200, 3), dtype=np.uint8), rng.normal(0, 0.1, 20000).astype(np.float32)
    e2b, tok = minigemma.tiny_random("gemma4-e2b")
    assert all(torch.equal(a, b) for a, b in zip(e2b.preprocess_image(picture, 140),
                                                 minigemma.preprocess_image(picture, 140)))
    assert np.array_equal(e2b.audio_features(wave, sampling_rate=16000),
                          minigemma.audio_features(wave, sampling_rate=16000))
    unified, _ = minigemma.tiny_random("gemma4-12b")
    assert isinstance(unified, UnifiedGemma)
    for model in (e2b, unified):
        image, clip = model.preprocess_image(picture, 140), model.audio_features(wave, sampling_rate=16000)
        prompt = "Look <|image|> hear <|audio|>"
        ids = minigemma.multimodal_prompt(tok, prompt, images=[image], audio=[clip])
        assert ids.count(IMAGE_ID) == len(image[1]) // (9 if model is e2b else 1)  # 16- or 48-pixel patches
        assert ids.count(AUDIO_ID) == (31 if model is e2b else 32)  # 1.25 s: 124 mel frames / 4, or 640 samples each
        out = minigemma.generate(model, tok, prompt, max_new_tokens=3, images=[image], audio=[clip])
        assert isinstance(out, str)


def test_errors_name_the_problem(unified_pair):
    _, model, tok, _, name = unified_pair
    picture = np.zeros((64, 64, 3), np.uint8)
    with pytest.raises(ValueError, match=r"max_soft_tokens=300 is not a Gemma 4 image budget"):
        image_patches(picture, 300)
    with pytest.raises(ValueError, match=r"pass sampling_rate=16000"):
        audio_frames(np.zeros(100, np.float32))
    with pytest.raises(ValueError, match=r"sampled at 8000 Hz"):
        audio_frames(np.zeros(100, np.float32), sampling_rate=8000)
    with pytest.raises(ValueError, match=r"int16 samples"):
        audio_frames(np.zeros(100, np.int16), sampling_rate=16000)
    with pytest.raises(ValueError, match=r"mono waveform"):
        audio_frames(np.zeros((100, 2), np.float32), sampling_rate=16000)
    with pytest.raises(ValueError, match=r"0 samples; it needs at least 1"):
        audio_frames(np.zeros(0, np.float32), sampling_rate=16000)
    with pytest.raises(ValueError, match=r"at most 30 s"):
        audio_frames(np.zeros(16000 * 31, np.float32), sampling_rate=16000)
    with pytest.raises(ValueError, match=r"\(T, H, W, C\)"):
        video_patches(picture, fps=8.0)
    e_image, e_clip = minigemma.preprocess_image(picture), minigemma.audio_features(np.zeros(4000), sampling_rate=16000)
    if model.embed_vision is not None:
        ids = torch.tensor([minigemma.multimodal_prompt(tok, "A <|image|>", images=[e_image])])
        with pytest.raises(ValueError, match=r"48-pixel patches .* model\.preprocess_image"):
            model(ids, images=[e_image])  # the E-models' 16-pixel patches
        patches, positions = model.preprocess_image(picture, 70)
        ids = torch.tensor([minigemma.multimodal_prompt(tok, "A <|image|>", images=[(patches, positions)])])
        with pytest.raises(ValueError, match="negative positions"):
            model(ids, images=[(patches, positions - 1)])
    else:
        with pytest.raises(ValueError, match="takes no vision input"):
            model.preprocess_image(picture)
        with pytest.raises(ValueError, match="images were passed but this model has no vision tower or embedder"):
            model(torch.tensor([[2, IMAGE_ID]]), images=[image_patches(picture, 70)])
    if model.embed_audio is not None:
        ids = torch.tensor([minigemma.multimodal_prompt(tok, "A <|audio|>", audio=[e_clip])])
        with pytest.raises(ValueError, match=r"raw frames .* model\.audio_features"):
            model(ids, audio=[e_clip])  # log-mel features
    else:
        with pytest.raises(ValueError, match="takes no audio input"):
            model.audio_features(np.zeros(1000), sampling_rate=16000)
    with pytest.raises(ValueError, match="an audio item must be a 2-D array"):
        minigemma.multimodal_prompt(tok, "A <|audio|>", audio=[np.zeros(1000)])


def test_unified_config_errors_name_the_field():
    from minigemma.unified import UnifiedAudioConfig, UnifiedVisionConfig

    with pytest.raises(ValueError, match="model_type 'gemma4_vision' is not a Gemma 4 unified vision config"):
        UnifiedVisionConfig.from_dict({"model_type": "gemma4_vision"})
    with pytest.raises(ValueError, match="output_proj_dims 32 must equal mm_embed_dim 40"):
        UnifiedVisionConfig(mm_embed_dim=40, output_proj_dims=32)
    with pytest.raises(ValueError, match="patch_size 14"):
        UnifiedVisionConfig(patch_size=14)
    with pytest.raises(ValueError, match="audio_embed_dim 320"):
        UnifiedAudioConfig(audio_embed_dim=320)


@torch.no_grad()
def test_tiny_random_12b_exports_to_transformers(tmp_path):
    """tiny_random("gemma4-12b") has the 12B's structure; save_pretrained writes what transformers reads."""
    from transformers import Gemma4UnifiedForConditionalGeneration

    model, tok = minigemma.tiny_random("gemma4-12b")
    assert model.config.layer_types == minigemma.preset("gemma4-12b").layer_types[:12]
    minigemma.save_pretrained(model, tok, tmp_path)
    ref = Gemma4UnifiedForConditionalGeneration.from_pretrained(tmp_path).eval()
    rng = np.random.default_rng(5)
    image = model.preprocess_image(rng.integers(0, 256, (64, 100, 3), dtype=np.uint8), 70)
    clip = model.audio_features(rng.normal(0, 0.1, 3000).astype(np.float32), sampling_rate=16000)
    ids = minigemma.multimodal_prompt(tok, "Look <|image|> hear <|audio|>", images=[image], audio=[clip])
    ours = model(torch.tensor([ids]), images=[image], audio=[clip])
    assert relative_error(ours, hf_logits(ref, hf_inputs(ids, [image], clips=[clip]))) < 1e-4
