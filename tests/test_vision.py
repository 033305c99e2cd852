"""Vision vs transformers: preprocessing (every budget, odd shapes and modes), the vision tower on random
weights with every parameter and buffer perturbed and clip bounds that bite, the tower presets' keys,
and the bad-input errors."""

import numpy as np
import pytest
import torch

import minigemma
from minigemma.preprocess import BUDGETS, preprocess_image, preprocess_video, resized_size, sample_frames
from minigemma.clipped import ClippedLinear
from minigemma.vision import VisionConfig, VisionTower

SHAPES = [(23, 31), (40, 900), (1600, 90), (1, 1), (1, 5000), (3000, 2), (480, 640), (48, 48), (96, 3360), (2048, 1536)]


def hf_preprocess(image, budget):
    """transformers' patches and positions of one image, with its padding cut off."""
    from transformers.models.gemma4.image_processing_pil_gemma4 import Gemma4ImageProcessorPil

    out = Gemma4ImageProcessorPil(max_soft_tokens=budget)(image, return_tensors="pt")
    n = out["num_soft_tokens_per_image"][0] * 9
    pos = out["image_position_ids"][0]
    assert (pos[n:] == -1).all()  # everything after the real patches is padding
    return out["pixel_values"][0][:n], pos[:n]


@pytest.mark.parametrize("budget", BUDGETS)
def test_preprocessing_equals_transformers_for_every_budget_and_shape(budget):
    from PIL import Image

    rng = np.random.default_rng(budget)
    for h, w in SHAPES:
        pixels = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        patches, positions = preprocess_image(pixels, budget)
        ref_patches, ref_positions = hf_preprocess(Image.fromarray(pixels), budget)
        assert patches.dtype == torch.float32 and positions.dtype == torch.long
        assert torch.equal(positions, ref_positions), (h, w)
        assert (patches - ref_patches).abs().max() <= 1e-5, (h, w)
        assert patches.shape[0] <= budget * 9 and patches.shape[0] % 9 == 0


@pytest.mark.parametrize("mode", ["L", "LA", "P", "PA", "RGBA", "CMYK", "YCbCr", "1", "I;16", "P-transparency"])
def test_every_image_mode_is_converted_as_transformers_does(mode):
    from PIL import Image

    rng = np.random.default_rng(0)
    rgb = Image.fromarray(rng.integers(0, 256, (37, 53, 3), dtype=np.uint8))
    if mode == "I;16":
        image = Image.fromarray(rng.integers(0, 60000, (37, 53), dtype=np.uint16))
    elif mode == "P-transparency":
        image = rgb.convert("P")
        image.info["transparency"] = 3
    else:
        image = rgb.convert(mode)
    if mode in ("LA", "PA", "RGBA"):
        image.putalpha(Image.fromarray(rng.integers(0, 256, (37, 53), dtype=np.uint8)))
    ours, ref = preprocess_image(image, 140), hf_preprocess(image, 140)
    assert torch.equal(ours[1], ref[1]) and (ours[0] - ref[0]).abs().max() <= 1e-5


def test_arrays_in_every_layout_and_files_as_transformers_loads_them(tmp_path):
    from PIL import Image
    from transformers.image_utils import load_image

    rng = np.random.default_rng(1)
    rgba = rng.integers(0, 256, (41, 29, 4), dtype=np.uint8)
    ours, ref = preprocess_image(rgba), hf_preprocess(rgba, 280)  # alpha blended onto white in numpy
    assert (ours[0] - ref[0]).abs().max() <= 1e-5
    gray = rng.integers(0, 256, (41, 29), dtype=np.uint8)
    ref = hf_preprocess(Image.fromarray(gray), 280)
    for layout in (gray, gray[:, :, None]):  # (H, W) and (H, W, 1) are grey pictures
        assert (preprocess_image(layout)[0] - ref[0]).abs().max() <= 1e-5
    for suffix in ("png", "jpg"):
        path = tmp_path / f"picture.{suffix}"
        Image.fromarray(rgba).save(path) if suffix == "png" else Image.fromarray(rgba[..., :3]).save(path)
        ours, ref = preprocess_image(path, 70), hf_preprocess(load_image(str(path)), 70)
        assert torch.equal(ours[1], ref[1]) and (ours[0] - ref[0]).abs().max() <= 1e-5
        assert torch.equal(preprocess_image(str(path), 70)[0], ours[0])


def test_resized_size_is_the_processors_arithmetic():
    from transformers.models.gemma4.image_processing_pil_gemma4 import get_aspect_ratio_preserving_size

    rng = np.random.default_rng(2)
    sizes = SHAPES + [tuple(int(v) for v in rng.integers(1, 5000, 2)) for _ in range(300)]
    for budget in BUDGETS:
        for h, w in sizes:
            assert resized_size(h, w, budget) == get_aspect_ratio_preserving_size(h, w, 16, budget * 9, 3), (h, w)


def test_preprocessing_errors_name_the_problem(tmp_path):
    from PIL import Image

    with pytest.raises(ValueError, match=r"max_soft_tokens=300 is not a Gemma 4 image budget"):
        preprocess_image(np.zeros((64, 64, 3), np.uint8), 300)
    with pytest.raises(ValueError, match="0×64 pixels: it has no pixels"):
        preprocess_image(np.zeros((0, 64, 3), np.uint8))
    with pytest.raises(ValueError, match="uint8"):
        preprocess_image(np.zeros((64, 64, 3), np.float32))
    with pytest.raises(ValueError, match=r"\(H, W\) or \(H, W, 1\|3\|4\)"):
        preprocess_image(np.zeros((64, 64, 2), np.uint8))
    path = tmp_path / "broken.jpg"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (200, 200, 3), dtype=np.uint8)).save(path)
    path.write_bytes(path.read_bytes()[:3000])  # cut off mid-stream
    with pytest.raises(ValueError, match=r"cannot read the image file .*broken\.jpg.*truncated"):
        preprocess_image(path)
    (tmp_path / "notes.txt").write_text("not a picture")
    with pytest.raises(ValueError, match=r"cannot read the image file .*notes\.txt"):
        preprocess_image(tmp_path / "notes.txt")
    with pytest.raises(ValueError, match=r"cannot read the image file .*missing\.png"):
        preprocess_image(tmp_path / "missing.png")


def test_frame_sampling_is_the_video_processors():
    from transformers.video_utils import VideoMetadata, default_sample_indices_fn

    for total, fps in [(32, 24.0), (300, 30.0), (1000, 25.0), (33, 2.0), (95, 29.97)]:
        indices, times = sample_frames(total, fps)
        ref = default_sample_indices_fn(VideoMetadata(total_num_frames=total, fps=fps), num_frames=32)
        assert indices == ref.tolist()
        meta = VideoMetadata(total_num_frames=total, fps=fps, frames_indices=ref)
        assert times == meta.timestamps
    assert sample_frames(10, 5.0)[0] == list(range(10))  # shorter than 32 frames: every frame (documented)
    with pytest.raises(ValueError, match="pass the clip's frame rate"):
        sample_frames(100, None)
    with pytest.raises(ValueError, match="no frames"):
        sample_frames(0, 24.0)


def test_video_frames_are_preprocessed_like_images():
    rng = np.random.default_rng(3)
    clip = rng.integers(0, 256, (40, 60, 80, 3), dtype=np.uint8)
    frames, times = preprocess_video(clip, fps=8.0)
    assert len(frames) == 32 and times[1] == 1 / 8.0
    h, w = resized_size(60, 80, 70)
    assert all(p.shape[0] == h * w // 256 <= 630 for p, _ in frames)
    patches, positions = preprocess_image(clip[1], 70)  # frame index 1·40//32 = 1
    assert torch.equal(frames[1][0], patches) and torch.equal(frames[1][1], positions)
    listed, _ = preprocess_video(list(clip), fps=8.0)
    assert torch.equal(listed[5][0], frames[5][0])
    with pytest.raises(ValueError, match=r"\(T, H, W, C\)"):
        preprocess_video(clip[0], fps=8.0)


# ---- the tower -------------------------------------------------------------------------------


def randomise_vision(model, seed=0, bound=0.6):
    """Every parameter and stored buffer of a transformers vision tower gets a random value; the clip
    bounds are drawn around ±``bound`` so that a share of the activations is clamped."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in model.state_dict(keep_vars=True).items():
            if name.endswith(("_min", "_max")):
                sign = -1 if name.endswith("_min") else 1
                t.fill_(sign * (bound + 2 * bound * torch.rand((), generator=gen).item()))
            elif "norm" in name or "std_scale" in name:
                t.copy_(1 + 0.3 * torch.randn(t.shape, generator=gen))
            elif t.is_floating_point():
                t.copy_(0.15 * torch.randn(t.shape, generator=gen))


TINY_TOWER = dict(hidden_size=48, intermediate_size=80, num_hidden_layers=3, num_attention_heads=4,
                  num_key_value_heads=4, head_dim=12, position_embedding_size=160, rms_norm_eps=1e-6)


def hf_tower(**overrides):
    from transformers import Gemma4VisionConfig
    from transformers.models.gemma4.modeling_gemma4 import Gemma4VisionModel

    torch.manual_seed(0)
    ref = Gemma4VisionModel(Gemma4VisionConfig(**{**TINY_TOWER, **overrides})).eval()
    randomise_vision(ref)
    return ref


def hf_tower_output(ref, images):
    """transformers' tower on the images padded to the largest, as its processor pads them."""
    longest = max(p.shape[0] for p, _ in images)
    pixels = torch.zeros(len(images), longest, 768)
    positions = torch.full((len(images), longest, 2), -1, dtype=torch.long)
    for i, (p, pos) in enumerate(images):
        pixels[i, :len(p)], positions[i, :len(p)] = p, pos
    return ref(pixel_values=pixels, pixel_position_ids=positions).last_hidden_state


def some_images(budget=70):
    rng = np.random.default_rng(4)
    return [preprocess_image(rng.integers(0, 256, shape, dtype=np.uint8), budget)
            for shape in [(30, 50, 3), (200, 90, 3), (31, 47, 3), (64, 2000, 3)]]


@pytest.mark.parametrize("clip,standardize", [(True, False), (False, True), (False, False), (True, True)])
@torch.no_grad()
def test_tower_equals_transformers(clip, standardize):
    ref = hf_tower(use_clipped_linears=clip, standardize=standardize)
    config = VisionConfig.from_dict(ref.config.to_dict())
    assert (config.use_clipped_linears, config.standardize) == (clip, standardize)
    ours = VisionTower(config)
    ours.load_state_dict(ref.state_dict(), strict=True)
    images = some_images()
    clamped = []
    if clip:  # count how many inputs and outputs the bounds actually clamp
        def spy(module, args, out):
            x = args[0]
            clamped.append(((x < module.input_min) | (x > module.input_max)).float().mean().item())
        hooks = [m.register_forward_hook(spy) for m in ours.modules() if isinstance(m, ClippedLinear)]
    tokens = ours(images)
    if clip:
        [h.remove() for h in hooks]
        assert 0.01 < np.mean(clamped) < 0.9  # the bounds bite, but not everywhere
    theirs = hf_tower_output(ref, images)
    assert tokens.shape == theirs.shape == (sum(p.shape[0] for p, _ in images) // 9, 48)
    close(tokens, theirs)


def close(a, b, rel=1e-5):
    """Equal up to ``rel`` of the largest magnitude (float32 sums in another order)."""
    assert a.shape == b.shape and (a - b).abs().max() <= rel * b.abs().max()


@torch.no_grad()
def test_tower_pools_by_position_and_batches_without_mixing():
    ref = hf_tower(use_clipped_linears=True)
    ours = VisionTower(VisionConfig.from_dict(ref.config.to_dict()))
    ours.load_state_dict(ref.state_dict())
    images = some_images()
    alone = [ours([im]) for im in images]
    together = ours(images + [images[0]])  # two same-size images share a batch
    close(together, torch.cat(alone + [alone[0]]))
    patches, positions = images[1]
    order = torch.randperm(patches.shape[0], generator=torch.Generator().manual_seed(0))
    shuffled = ours([(patches[order].numpy(), positions[order].numpy())])  # the order of patches is free
    close(shuffled, alone[1])


@pytest.mark.parametrize("name", sorted(minigemma.PRESETS))
def test_tower_presets_have_transformers_keys_and_shapes(name):
    from dataclasses import asdict

    from transformers import Gemma4VisionConfig
    from transformers.models.gemma4.modeling_gemma4 import Gemma4VisionModel

    config = minigemma.presets.VISION_PRESETS[name]
    with torch.device("meta"):
        ref = Gemma4VisionModel(Gemma4VisionConfig(**asdict(config)))
        ours = VisionTower(config)
    assert {k: v.shape for k, v in ours.state_dict().items()} == {k: v.shape for k, v in ref.state_dict().items()}


def test_tower_input_errors_name_the_problem():
    tower = VisionTower(VisionConfig(**{k: v for k, v in TINY_TOWER.items()}))
    patches, positions = some_images()[0]
    with pytest.raises(ValueError, match=r"image 0 has 4 patches: smaller than one soft token"):
        tower([(patches[:4], positions[:4])])
    with pytest.raises(ValueError, match=r"image 1: expected patches \(n, 768\) and positions \(n, 2\)"):
        tower([(patches, positions), (patches[:, :700], positions)])
    with pytest.raises(ValueError, match="negative positions"):
        tower([(patches, positions - 1)])
    with pytest.raises(ValueError, match="do not form a full grid"):
        tower([(patches[:-9], positions[:-9])])
    big = preprocess_image(np.zeros((48, 48 * 60, 3), np.uint8), 70)  # 192 patches wide > table of 160
    with pytest.raises(ValueError, match="192 patches long but the position table covers 160"):
        tower([big])
    with pytest.raises(ValueError, match="rope_type 'default' is not supported"):
        VisionConfig(rope_parameters={"rope_type": "default", "rope_theta": 100.0})


# ---- the whole model: images and videos in the prompt ---------------------------------------

MODELS = {
    # E2B-like text (PLE, KV sharing) with bidirectional image attention; clipped tower
    "e-style": dict(text="e-style", bidirectional="vision", tower=dict(use_clipped_linears=True)),
    # 31B-like text (keys as values), causal over images; standardised tower without clipping
    "31b-style": dict(text="31b-style", bidirectional=None, tower=dict(standardize=True)),
}


def make_tiny_multimodal(directory, tokenizer_dir, name):
    """A small random Gemma4ForConditionalGeneration saved by transformers, every weight perturbed."""
    import shutil
    from pathlib import Path

    from transformers import Gemma4Config, Gemma4ForConditionalGeneration, Gemma4TextConfig, Gemma4VisionConfig

    from .conftest import perturb
    from .test_gemma4 import STYLES, TINY

    spec = MODELS[name]
    text = Gemma4TextConfig(**{**TINY, **STYLES[spec["text"]]}, use_bidirectional_attention=spec["bidirectional"])
    vision = Gemma4VisionConfig(**{**TINY_TOWER, **spec["tower"]})
    torch.manual_seed(0)
    ref = Gemma4ForConditionalGeneration(Gemma4Config(text_config=text, vision_config=vision)).eval()
    perturb(ref, std=0.3)
    randomise_vision(ref.model.vision_tower, seed=1)
    with torch.no_grad():  # image tokens as large as text embeddings, so they steer the logits
        ref.model.embed_vision.embedding_projection.weight.normal_(0, 1.0, generator=torch.Generator().manual_seed(2))
    ref.save_pretrained(directory)
    shutil.copy(Path(tokenizer_dir) / "tokenizer.json", Path(directory) / "tokenizer.json")
    return ref


@pytest.fixture(scope="module", params=sorted(MODELS))
def multimodal_pair(request, tmp_path_factory, hf_tokenizer_dir):
    directory = tmp_path_factory.mktemp(f"vision-{request.param}")
    ref = make_tiny_multimodal(directory, hf_tokenizer_dir, request.param)
    model, tokenizer = minigemma.load(directory, progress=False)
    return ref, model, tokenizer, directory


def padded(items):
    """(patches, positions) per image -> transformers' padded pixel_values and position ids."""
    longest = max(p.shape[0] for p, _ in items)
    pixels = torch.zeros(len(items), longest, 768)
    positions = torch.full((len(items), longest, 2), -1, dtype=torch.long)
    for i, (p, pos) in enumerate(items):
        pixels[i, :len(p)], positions[i, :len(p)] = p, pos
    return pixels, positions


def hf_inputs(ids, images=(), frames=(), frames_per_video=()):
    from minigemma.multimodal import IMAGE_ID, VIDEO_ID

    ids = torch.tensor([ids])
    types = torch.zeros_like(ids)
    types[ids == IMAGE_ID], types[ids == VIDEO_ID] = 1, 2
    kwargs = dict(input_ids=ids, mm_token_type_ids=types)
    if images:
        kwargs["pixel_values"], kwargs["image_position_ids"] = padded(images)
    if frames:
        kwargs["pixel_values_videos"], kwargs["video_position_ids"] = padded(frames)
        kwargs["num_frames_per_video"] = torch.tensor(frames_per_video)
    return kwargs


def two_images():
    rng = np.random.default_rng(7)
    return [preprocess_image(rng.integers(0, 256, (30, 50, 3), dtype=np.uint8), 70),
            preprocess_image(rng.integers(0, 256, (300, 90, 3), dtype=np.uint8), 140)]


def relative_error(ours, theirs):
    return ((ours - theirs).abs().max() / theirs.abs().max()).item()


@torch.no_grad()
def test_logits_with_one_and_two_images_match_transformers(multimodal_pair):
    ref, model, tok, _ = multimodal_pair
    images = two_images()
    assert images[0][0].shape[0] != images[1][0].shape[0]  # different sizes
    for prompt, items in [("Describe <|image|> briefly.", images[:1]),
                          ("Compare <|image|> with <|image|>, please.", images)]:
        ids = minigemma.multimodal_prompt(tok, prompt, images=items)
        theirs = ref(**hf_inputs(ids, items)).logits
        ours = model(torch.tensor([ids]), images=items)
        assert theirs.abs().max() > 3 and relative_error(ours, theirs) < 1e-4
    other = model(torch.tensor([ids]), images=[images[0], (images[1][0].flip(0), images[1][1])])
    assert relative_error(other, theirs) > 1e-2  # the pixels matter


@torch.no_grad()
def test_greedy_continuation_with_images_matches_transformers_generate(multimodal_pair):
    ref, model, tok, _ = multimodal_pair
    images = two_images()
    ids = minigemma.multimodal_prompt(tok, "Compare <|image|> with <|image|>:", images=images)
    theirs = ref.generate(**hf_inputs(ids, images), max_new_tokens=8, do_sample=False, eos_token_id=None,
                          pad_token_id=0)[0, len(ids):].tolist()
    assert list(minigemma.generate_ids(model, ids, max_new_tokens=8, images=images)) == theirs
    text = minigemma.generate(model, tok, "Compare <|image|> with <|image|>:", max_new_tokens=8, images=images)
    assert text == tok.decode(theirs)


def clip_frames(num_frames=3):
    """A 40-frame synthetic clip (a bright square moving right), 8 fps, 3 frames sampled."""
    clip = np.zeros((40, 60, 80, 3), np.uint8)
    for t in range(40):
        clip[t, 20:40, t:t + 20] = 255
    return preprocess_video(clip, fps=8.0, num_frames=num_frames)


@torch.no_grad()
def test_video_logits_and_greedy_match_transformers(multimodal_pair):
    ref, model, tok, _ = multimodal_pair
    frames, times = clip_frames()
    images = two_images()[:1]
    ids = minigemma.multimodal_prompt(tok, "<|image|> Then <|video|> What moved?", images=images,
                                      videos=[(frames, times)])
    kwargs = hf_inputs(ids, images, frames, [len(frames)])
    theirs = ref(**kwargs).logits
    ours = model(torch.tensor([ids]), images=images, videos=[(frames, times)])
    assert theirs.abs().max() > 3 and relative_error(ours, theirs) < 1e-4
    greedy = ref.generate(**kwargs, max_new_tokens=6, do_sample=False, eos_token_id=None,
                          pad_token_id=0)[0, len(ids):].tolist()
    assert list(minigemma.generate_ids(model, ids, max_new_tokens=6, images=images, videos=[(frames, times)])) == greedy
    # issue 24: generate() takes the same video item (what preprocess_video returns) with a text prompt
    text = minigemma.generate(model, tok, "<|image|> Then <|video|> What moved?", max_new_tokens=6, images=images,
                              videos=[clip_frames()], stop_ids=set())
    assert text == tok.decode(greedy)


def test_video_prompt_text_equals_the_processors():
    from types import SimpleNamespace

    from transformers.models.gemma4.processing_gemma4 import Gemma4Processor
    from transformers.video_utils import VideoMetadata

    from .test_multimodal import CharTokenizer, as_text

    clip = np.zeros((200, 60, 80, 3), np.uint8)
    frames, times = preprocess_video(clip, fps=2.5)  # 80 s: timestamps pass a minute
    proc = SimpleNamespace(boi_token="<boi>", eoi_token="<eoi>", video_token="<vid>")
    meta = VideoMetadata(total_num_frames=200, fps=2.5, frames_indices=sample_frames(200, 2.5)[0])
    vid = Gemma4Processor.replace_video_token(
        proc, {"num_soft_tokens_per_video": [len(frames[0][0]) // 9], "video_metadata": [meta]}, 0)
    ids = minigemma.multimodal_prompt(CharTokenizer(), "Watch <|video|>", videos=[(frames, times)])
    assert as_text(ids) == f"<bos>Watch {vid}" and "01:17 " in vid


@pytest.mark.parametrize("name", sorted(minigemma.PRESETS))
def test_expected_keys_cover_the_vision_tower_of_the_real_configs(name):
    from dataclasses import asdict

    from transformers import Gemma4Config, Gemma4ForConditionalGeneration, Gemma4VisionConfig

    from .test_gemma4 import hf_config

    text, vision = minigemma.preset(name), minigemma.presets.VISION_PRESETS[name]
    with torch.device("meta"):
        ref = Gemma4ForConditionalGeneration(Gemma4Config(text_config=hf_config(text),
                                                          vision_config=Gemma4VisionConfig(**asdict(vision))))
    theirs = {k[len("model."):]: tuple(v.shape) for k, v in ref.state_dict().items()
              if k.startswith(("model.vision_tower.", "model.embed_vision."))}
    ours = minigemma.expected_keys(text, vision)
    assert {k: v for k, v in ours.items() if k.startswith(("vision_tower.", "embed_vision."))} == theirs
    assert len(theirs) > 16 * 13  # every layer's 7 projections and 6 norms, at least


def test_model_input_errors_name_the_problem(multimodal_pair, tmp_path):
    import json
    import shutil

    from safetensors.torch import load_file, save_file

    _, model, tok, directory = multimodal_pair
    images = two_images()
    ids = torch.tensor([minigemma.multimodal_prompt(tok, "A <|image|> B", images=images[:1])])
    with pytest.raises(ValueError, match=r"the prompt has \d+ image tokens .* give \d+"):
        model(ids, images=[images[1]])  # an image of another size than the prompt was built for
    with pytest.raises(ValueError, match=r"the prompt has \d+ image tokens .* give \d+"):
        model(ids, images=images)  # more images than placeholders
    with pytest.raises(ValueError, match=r"1 <\|image\|> markers but 2 image items"):
        minigemma.multimodal_prompt(tok, "A <|image|> B", images=images)
    state = load_file(directory / "model.safetensors")
    del state["model.vision_tower.encoder.layers.1.mlp.up_proj.linear.weight"]
    save_file(state, tmp_path / "model.safetensors")
    for f in ("config.json", "tokenizer.json"):
        shutil.copy(directory / f, tmp_path / f)
    with pytest.raises(minigemma.CheckpointError, match=r"missing tensors: vision_tower\.encoder\.layers\.1\.mlp\.up_proj"):
        minigemma.load(tmp_path, progress=False)
    config = json.loads((directory / "config.json").read_text())
    config["vision_config"]["position_embedding_size"] = 8  # a table too short for the checkpoint
    (tmp_path / "config.json").write_text(json.dumps(config))
    save_file(load_file(directory / "model.safetensors"), tmp_path / "model.safetensors")
    with pytest.raises(minigemma.CheckpointError, match="position_embedding_table"):
        minigemma.load(tmp_path, progress=False)


@torch.no_grad()
def test_a_checkpoint_with_an_audio_tower_loads_with_its_vision_tower(tmp_path, hf_tokenizer_dir):
    """E2B/E4B checkpoints hold both towers: both are built, and the vision path equals transformers.
    (transformers sizes the audio input projection as (channels[0] // 4) · channels[1], which is the
    real (128 mel bins / 4) · channels[1] only when channels[0] = 128, as in the released config.)"""
    import shutil

    from transformers import (Gemma4AudioConfig, Gemma4Config, Gemma4ForConditionalGeneration, Gemma4TextConfig,
                              Gemma4VisionConfig)

    from .test_gemma4 import STYLES, TINY

    audio = Gemma4AudioConfig(hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                              subsampling_conv_channels=[128, 4], output_proj_dims=16)
    torch.manual_seed(0)
    ref = Gemma4ForConditionalGeneration(Gemma4Config(text_config=Gemma4TextConfig(**{**TINY, **STYLES["e-style"]}),
                                                      vision_config=Gemma4VisionConfig(**TINY_TOWER),
                                                      audio_config=audio)).eval()
    randomise_vision(ref.model.vision_tower)
    ref.save_pretrained(tmp_path)
    shutil.copy(hf_tokenizer_dir / "tokenizer.json", tmp_path / "tokenizer.json")
    model, tok = minigemma.load(tmp_path, progress=False)
    assert isinstance(model.vision_tower, VisionTower)
    images = two_images()[:1]
    ids = minigemma.multimodal_prompt(tok, "Look: <|image|>", images=images)
    assert relative_error(model(torch.tensor([ids]), images=images), ref(**hf_inputs(ids, images)).logits) < 1e-4


def test_vision_config_errors_name_the_field():
    with pytest.raises(ValueError, match="model_type 'gemma4_text' is not a Gemma 4 vision config"):
        VisionConfig.from_dict({"model_type": "gemma4_text", "hidden_size": 64})
    with pytest.raises(ValueError, match="attention_bias=True is not supported"):
        VisionConfig.from_dict({"vision_config": {"attention_bias": True}})
    with pytest.raises(ValueError, match="hidden_activation 'relu' is not supported"):
        VisionConfig.from_dict({"vision_config": {"hidden_activation": "relu"}})
    with pytest.raises(ValueError, match="patch_size 14"):
        VisionConfig.from_dict({"vision_config": {"patch_size": 14}})


@torch.no_grad()
def test_chat_with_an_image_part_feeds_the_image_to_the_tower(multimodal_pair):
    """chat() renders an image part as <|image|>, which multimodal_prompt expands as transformers'
    processor does; the reply is the greedy continuation transformers computes from those ids."""
    from minigemma.chat import chat, chat_format, render

    ref, model, tok, _ = multimodal_pair
    image = two_images()[1]
    messages = [{"role": "user", "content": [{"type": "text", "text": "What is in "}, {"type": "image"},
                                              {"type": "text", "text": "?"}]}]
    prompt = render(messages, format=chat_format(tok))
    assert prompt.count("<|image|>") == 1
    ids = minigemma.multimodal_prompt(tok, prompt, images=[image])
    n = len(image[1]) // 9
    at = ids.index(255999)
    assert ids[at:at + n + 2] == [255999] + [258880] * n + [258882]
    theirs = ref.generate(**hf_inputs(ids, [image]), max_new_tokens=6, do_sample=False)[0, len(ids):].tolist()
    ours = list(minigemma.generate_ids(model, ids, max_new_tokens=6, images=[image], stop_ids=set()))
    assert ours == theirs
    reply = chat(model, tok, messages, images=[image], max_new_tokens=6)
    assert reply["content"] == minigemma.generate(model, tok, prompt, images=[image], max_new_tokens=6,
                                                  stop=["<end_of_turn>", "<start_function_response>"])
    with pytest.raises(ValueError, match=r"1 <\|image\|> markers but 0 image items"):
        chat(model, tok, messages, max_new_tokens=2)
