"""Audio vs transformers: log-mel features (Gemma4AudioFeatureExtractor), the conformer tower and
embedder (Gemma4AudioModel + Gemma4MultimodalEmbedder) with every audio parameter and buffer
randomised and clip bounds drawn inside the activations' range (so some values clip), default and
non-default chunking; then whole models saved by ``Gemma4ForConditionalGeneration.save_pretrained``
(E-style text with PLE and KV sharing): logits with one and two clips in the prompt, and greedy
continuation with the cache against transformers' ``generate``. Bad input gets a clear error."""

import json
import shutil
import wave
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

import minigemma
from minigemma import AudioConfig, AudioTower, CheckpointError, audio_features, generate_ids, read_wav
from minigemma.audio import local_attention_mask
from minigemma.log_mel import MAX_SAMPLES, audio_token_count, mel_filter_bank
from minigemma.clipped import ClippedLinear
from minigemma.multimodal import AUDIO_ID, MultimodalEmbedder, multimodal_prompt

from .conftest import perturb
from .test_gemma4 import STYLES, TINY, hf_config

SR = 16000  # every test clip is 16 kHz
TOWER = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, subsampling_conv_channels=[128, 8],
             output_proj_dims=24)  # the first subsampler width must stay 128 (transformers derives a width from it)
CHUNKINGS = {
    "default": {},  # chunk 12, left 13, right 0, cap 50: the released tower
    "chunk5-left4-right3": dict(attention_chunk_size=5, attention_context_left=4, attention_context_right=3,
                                attention_logit_cap=3.0, gradient_clipping=1.0, rms_norm_eps=1e-4),
    "unclipped": dict(use_clipped_linears=False, attention_chunk_size=7, attention_context_left=8),
}


def clip(seconds=None, n=None, seed=0, kind="speechlike"):
    """A test waveform at 16 kHz: a vowel-like tone with a wandering pitch, noise or near silence."""
    n = n if n is not None else int(seconds * 16000)
    rng = np.random.default_rng(seed)
    if kind == "noise":
        return rng.uniform(-1, 1, n).astype(np.float32)  # full scale
    if kind == "silence":
        return (1e-5 * rng.standard_normal(n)).astype(np.float32)
    t = np.arange(n) / 16000
    f0 = 120 + 30 * np.sin(2 * np.pi * 3 * t) + 10 * seed
    phase = 2 * np.pi * np.cumsum(f0) / 16000
    x = sum(np.sin(k * phase) / k for k in range(1, 12)) * (0.5 + 0.5 * np.sin(2 * np.pi * 4 * t) ** 2)
    return (0.3 * x + 0.01 * rng.standard_normal(n)).astype(np.float32)


def features(waveforms):
    """16 kHz test clips -> minigemma's log-mel features, one (frames, 128) array per clip."""
    return [audio_features(w, sampling_rate=SR) for w in waveforms]


def hf_features(waveforms):
    """transformers' padded batch -> (input_features, input_features_mask) tensors."""
    from transformers import Gemma4AudioFeatureExtractor

    out = Gemma4AudioFeatureExtractor()(waveforms, return_tensors="pt")
    return out["input_features"], out["input_features_mask"]


# --- features ------------------------------------------------------------------------------------


@pytest.mark.parametrize("n,kind", [(161, "noise"), (1001, "speechlike"), (37920, "speechlike"), (48017, "noise"),
                                    (23457, "silence"), (16001, "noise")])
def test_features_equal_transformers_on_valid_frames(n, kind):
    x = clip(n=n, kind=kind, seed=n)
    feats, mask = hf_features([x, clip(n=n + 5000, seed=1)])  # padded next to a longer clip
    ours = audio_features(x, sampling_rate=SR)
    assert ours.dtype == np.float32 and ours.shape == (int(mask[0].sum()), 128)
    np.testing.assert_allclose(ours, feats[0][mask[0]].numpy(), atol=1e-4, rtol=0)
    assert ours.std() > 0.1  # not a constant


def test_mel_bank_equals_transformers():
    from transformers.audio_utils import mel_filter_bank as hf_bank

    theirs = hf_bank(num_frequency_bins=257, num_mel_filters=128, min_frequency=0.0, max_frequency=8000.0,
                     sampling_rate=16000, norm=None, mel_scale="htk")
    np.testing.assert_allclose(mel_filter_bank(), theirs, atol=1e-12)


def test_token_count_follows_the_subsampler():
    from transformers import Gemma4AudioFeatureExtractor
    from transformers.models.gemma4.processing_gemma4 import Gemma4Processor

    fake = SimpleNamespace(feature_extractor=Gemma4AudioFeatureExtractor(), audio_seq_length=750)
    for n in (161, 320, 321, 480, 481, 1000, 37920, 100_003, MAX_SAMPLES):
        frames = len(audio_features(np.zeros(n, np.float32), sampling_rate=SR))
        assert audio_token_count(frames) == Gemma4Processor._compute_audio_num_tokens(fake, np.zeros(n), 16000)
    assert audio_token_count(len(audio_features(clip(2.37), sampling_rate=SR))) == 59  # 40 ms per token
    assert audio_token_count(len(audio_features(clip(n=MAX_SAMPLES), sampling_rate=SR))) == 750


def write_wav(path, samples, rate=16000, width=2, channels=1):
    scale = 2 ** (8 * width - 1) - 1
    ints = np.round(np.clip(samples, -1, 1) * scale).astype({2: "<i2", 4: "<i4"}[width])
    with wave.open(str(path), "wb") as f:
        f.setnchannels(channels)
        f.setsampwidth(width)
        f.setframerate(rate)
        f.writeframes(ints.tobytes())
    return ints.reshape(-1, channels) / 2 ** (8 * width - 1)


@pytest.mark.parametrize("width", [2, 4])
def test_wav_mono_and_stereo(tmp_path, width):
    x = clip(0.5)
    stored = write_wav(tmp_path / "mono.wav", x, width=width)
    samples, rate = read_wav(tmp_path / "mono.wav")
    assert rate == 16000
    np.testing.assert_allclose(samples, stored[:, 0], atol=1e-7)
    np.testing.assert_allclose(audio_features(tmp_path / "mono.wav"), audio_features(stored[:, 0], sampling_rate=SR),
                               atol=1e-5)
    # Stereo is averaged: the features of the two-channel file are those of the mean of its channels.
    both = np.stack([x, clip(0.5, seed=3)], axis=1).reshape(-1)
    stereo = write_wav(tmp_path / "stereo.wav", both, width=width, channels=2)
    np.testing.assert_allclose(audio_features(str(tmp_path / "stereo.wav")),
                               audio_features(stereo.mean(1), sampling_rate=SR), atol=1e-5)


def test_wav_8_and_24_bit(tmp_path):
    x = clip(0.2)
    for width, encode, scale in [(1, lambda v: (np.round(v * 127) + 128).astype(np.uint8).tobytes(), 128),
                                 (3, lambda v: b"".join(int(i).to_bytes(3, "little", signed=True)
                                                        for i in np.round(v * (2 ** 23 - 1))), 2 ** 23)]:
        with wave.open(str(tmp_path / f"{width}.wav"), "wb") as f:
            f.setnchannels(1)
            f.setsampwidth(width)
            f.setframerate(16000)
            f.writeframes(encode(x))
        samples, _ = read_wav(tmp_path / f"{width}.wav")
        np.testing.assert_allclose(samples, np.round(x * (scale - 1)) / scale, atol=1e-7)


def test_bad_audio_gets_clear_errors(tmp_path):
    with pytest.raises(ValueError, match="needs at least 161"):
        audio_features(np.zeros(160, np.float32), sampling_rate=SR)
    with pytest.raises(ValueError, match="needs at least 161"):
        audio_features([], sampling_rate=SR)
    with pytest.raises(ValueError, match="2 NaN or infinite samples"):
        audio_features(np.array([0.0, np.nan, np.inf] + [0.0] * 500), sampling_rate=SR)
    with pytest.raises(ValueError, match="lasts 30.00 s; Gemma 4 hears at most 30 s"):
        audio_features(np.zeros(MAX_SAMPLES + 1, np.float32), sampling_rate=SR)
    with pytest.raises(ValueError, match="sampled at 44100 Hz; Gemma 4 hears 16000 Hz only"):
        audio_features(clip(1.0), sampling_rate=44100)
    write_wav(tmp_path / "cd.wav", clip(0.1), rate=44100)
    with pytest.raises(ValueError, match="sampled at 44100 Hz"):
        audio_features(tmp_path / "cd.wav")
    with pytest.raises(ValueError, match="mono waveform of shape .* got shape \\(2, 1000\\)"):
        audio_features(np.zeros((2, 1000)), sampling_rate=SR)
    with pytest.raises(ValueError, match="int16 samples; pass floats in \\[-1, 1\\]"):
        audio_features(np.zeros(1000, np.int16), sampling_rate=SR)
    (tmp_path / "junk.wav").write_bytes(b"RIFF not really a wave file")
    with pytest.raises(ValueError, match="cannot read .*junk.wav as a PCM .wav file"):
        audio_features(tmp_path / "junk.wav")
    with pytest.raises(ValueError, match="cannot read .*missing.wav"):
        audio_features(tmp_path / "missing.wav")


def test_sampling_rate_is_required_for_arrays_and_read_from_files(tmp_path):
    """An array carries no rate (it used to be taken as 16 kHz without a word); a .wav file carries its own."""
    x = clip(0.1)
    for array in (x, x.tolist(), torch.from_numpy(x)):
        with pytest.raises(ValueError, match="array carries no sampling rate: pass sampling_rate=16000"):
            audio_features(array)
    with pytest.raises(TypeError):
        audio_features(x, SR)  # the rate is named, never positional
    stored = write_wav(tmp_path / "a.wav", x)[:, 0]
    from_file = audio_features(tmp_path / "a.wav")
    np.testing.assert_array_equal(from_file, audio_features(tmp_path / "a.wav", sampling_rate=SR))
    np.testing.assert_allclose(from_file, audio_features(stored, sampling_rate=SR), atol=1e-5)
    with pytest.raises(ValueError, match="sampling_rate=22050 was given but the .wav file is sampled at 16000 Hz"):
        audio_features(tmp_path / "a.wav", sampling_rate=22050)


# --- the tower -----------------------------------------------------------------------------------


def randomise_audio(tower, embedder, features, mask, seed):
    """Every weight of a transformers audio tower + embedder drawn at a scale that keeps activations
    O(1); norms and per-dim scales moved off their init; each clipped linear's input and output
    bounds drawn between the 3rd and 25th percentile from either end of what it sees, so some
    activations clip. The buffers it does not store (timescales, softcap) come from the config."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in (tower, embedder):
            for name, p in module.named_parameters():
                if "norm" in name or "per_dim_scale" in name:
                    p.copy_(1.0 + 0.3 * torch.randn(p.shape, generator=gen) if "norm" in name
                            else 0.5 * torch.randn(p.shape, generator=gen))
                elif p.ndim == 1:  # the output projection's bias
                    p.copy_(0.3 * torch.randn(p.shape, generator=gen))
                else:
                    p.copy_(torch.randn(p.shape, generator=gen) * 1.3 / (p[0].numel() ** 0.5))
        seen = {}
        clippable = [(n, m) for n, m in tower.named_modules() if hasattr(m, "input_min")]
        hooks = [m.register_forward_hook(lambda m, i, o, n=n: seen.__setitem__(n, (i[0].flatten(), o.flatten())))
                 for n, m in clippable]
        tower(features, mask)
        for h in hooks:
            h.remove()
        for name, m in clippable:
            for side, values in zip(("input", "output"), seen[name]):
                lo, hi = torch.rand(2, generator=gen) * 0.22 + 0.03
                getattr(m, f"{side}_min").fill_(torch.quantile(values, lo))
                getattr(m, f"{side}_max").fill_(torch.quantile(values, 1 - hi))


def hf_tower(chunking, waveforms, seed=0):
    from transformers import Gemma4AudioConfig, Gemma4TextConfig
    from transformers.models.gemma4.modeling_gemma4 import Gemma4AudioModel, Gemma4MultimodalEmbedder

    torch.manual_seed(seed)
    config = Gemma4AudioConfig(**TOWER, **CHUNKINGS[chunking])
    tower = Gemma4AudioModel(config).eval()
    embedder = Gemma4MultimodalEmbedder(config, Gemma4TextConfig(hidden_size=40)).eval()
    feats, mask = hf_features(waveforms)
    randomise_audio(tower, embedder, feats, mask, seed)
    return config, tower, embedder, feats, mask


@pytest.mark.parametrize("chunking", sorted(CHUNKINGS))
@torch.no_grad()
def test_tower_and_embedder_equal_transformers(chunking):
    waveforms = [clip(2.37, seed=1), clip(n=9137, seed=2, kind="noise"), clip(0.05, seed=3)]
    config, tower, embedder, feats, mask = hf_tower(chunking, waveforms)
    out = tower(feats, mask)
    theirs = embedder(out.last_hidden_state)[out.attention_mask]  # valid tokens of every clip, in order
    ours_config = AudioConfig.from_dict(json.loads(config.to_json_string()))
    ours = AudioTower(ours_config).eval()
    ours.load_state_dict(tower.state_dict(), strict=True)
    ours_embed = MultimodalEmbedder(ours_config.output_proj_dims, 40, ours_config.rms_norm_eps)
    ours_embed.load_state_dict(embedder.state_dict(), strict=True)
    clipped = []  # per clipped linear call: did any input or output value fall outside its bounds?

    def record(m, inputs, _):
        x, y = inputs[0], m.linear(inputs[0].clamp(m.input_min, m.input_max))
        clipped.append(bool(((x < m.input_min) | (x > m.input_max)).any() | ((y < m.output_min) | (y > m.output_max)).any()))

    hooks = [m.register_forward_hook(record) for m in ours.modules() if isinstance(m, ClippedLinear) and m.clip]
    tokens = ours_embed(ours(features(waveforms)))
    for h in hooks:
        h.remove()
    assert tokens.shape == theirs.shape == (59 + 15 + 1, 40)
    torch.testing.assert_close(tokens, theirs, atol=1e-4 * theirs.abs().max().item(), rtol=1e-4)
    if config.use_clipped_linears:
        assert sum(clipped) > len(clipped) // 2  # the bounds bite
    # The chunking matters: another window gives other tokens.
    other = AudioTower(AudioConfig(**{**ours_config.__dict__, "attention_context_left": 3})).eval()
    other.load_state_dict(tower.state_dict())
    assert (ours_embed(other(features(waveforms))) - theirs).abs().max() > 1e-3


def test_local_attention_mask_is_the_sliding_rule():
    """Slot s of block b holds time b·chunk - past + s; it is visible iff 0 <= q - t < past or
    0 < t - q < future, and t is a real frame."""
    T, chunk, past, future = 11, 4, 3, 2
    mask = local_attention_mask(T, chunk, past, future)
    for b in range(mask.shape[0]):
        for c in range(chunk):
            for s in range(mask.shape[2]):
                q, t = b * chunk + c, b * chunk - past + s
                assert bool(mask[b, c, s]) == (0 <= t < T and (0 <= q - t < past or 0 < t - q < future))


def test_tower_input_errors():
    tower = AudioTower(AudioConfig(**TOWER)).eval()
    with pytest.raises(ValueError, match="shape \\(frames >= 1, 128\\), got \\(0, 128\\)"):
        tower([np.zeros((0, 128), np.float32)])
    with pytest.raises(ValueError, match="shape \\(frames >= 1, 128\\), got \\(10, 80\\)"):
        tower([np.zeros((10, 80), np.float32)])
    with pytest.raises(ValueError, match="NaN or infinite"):
        tower([np.full((10, 128), np.nan, np.float32)])
    with pytest.raises(ValueError, match="3000 frames .* at most 30 s \\(2999 frames\\)"):
        tower([np.zeros((3000, 128), np.float32)])
    with pytest.raises(ValueError, match="no audio clips"):
        tower([])
    with pytest.raises(ValueError, match="audio_config model_type 'gemma3n_audio' is not supported"):
        AudioConfig.from_dict({"audio_config": {"hidden_size": 32, "model_type": "gemma3n_audio"}})
    with pytest.raises(ValueError, match="hidden_act='gelu' is not supported"):
        AudioConfig.from_dict({"hidden_act": "gelu"})


# --- whole models --------------------------------------------------------------------------------


def make_multimodal(directory, tokenizer_dir, chunking, with_vision=False):
    from transformers import (Gemma4AudioConfig, Gemma4Config, Gemma4ForConditionalGeneration, Gemma4TextConfig,
                              Gemma4VisionConfig)

    torch.manual_seed(0)
    text = Gemma4TextConfig(**{**TINY, **STYLES["e-style"]})
    vision = Gemma4VisionConfig(hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
                                num_key_value_heads=2, head_dim=8) if with_vision else None
    config = Gemma4Config(text_config=text, audio_config=Gemma4AudioConfig(**TOWER, **CHUNKINGS[chunking]),
                          vision_config=vision)
    ref = Gemma4ForConditionalGeneration(config).eval()
    perturb(ref, std=0.3)
    feats, mask = hf_features([clip(2.37, seed=1), clip(1.3, seed=2)])
    randomise_audio(ref.model.audio_tower, ref.model.embed_audio, feats, mask, seed=1)
    ref.save_pretrained(directory)
    shutil.copy(Path(tokenizer_dir) / "tokenizer.json", Path(directory) / "tokenizer.json")
    return ref


@pytest.fixture(scope="module", params=["default", "chunk5-left4-right3"])
def pair(request, tmp_path_factory, hf_tokenizer_dir):
    directory = tmp_path_factory.mktemp(f"audio-{request.param}")
    with_vision = request.param == "default"  # a checkpoint with both towers loads too
    ref = make_multimodal(directory, hf_tokenizer_dir, request.param, with_vision)
    model, tokenizer = minigemma.load(directory, progress=False)
    return ref, model, tokenizer


def prompt(tokenizer, waveforms):
    text = "Listen: " + " and then ".join(["<|audio|>"] * len(waveforms)) + ". What was said?"
    return multimodal_prompt(tokenizer, text, audio=features(waveforms))


@pytest.mark.parametrize("n_clips", [1, 2])
@torch.no_grad()
def test_logits_with_clips_in_the_prompt_equal_transformers(pair, n_clips):
    ref, model, tokenizer = pair
    waveforms = [clip(2.37, seed=1), clip(1.3, seed=2)][:n_clips]
    ids = torch.tensor([prompt(tokenizer, waveforms)])
    assert int((ids == AUDIO_ID).sum()) == [59, 92][n_clips - 1]
    feats, mask = hf_features(waveforms)
    theirs = ref(input_ids=ids, input_features=feats, input_features_mask=mask).logits
    ours = model(ids, audio=features(waveforms))
    assert theirs.abs().max() > 3  # logits of a useful size
    torch.testing.assert_close(ours, theirs, atol=1e-4 * theirs.abs().max().item(), rtol=1e-4)
    # The audio matters: another clip of the same length changes the logits.
    other = model(ids, audio=features([clip(2.37, seed=7)] + waveforms[1:]))
    assert (other - theirs).abs().max() > 1e-2


@torch.no_grad()
def test_greedy_continuation_equals_transformers_generate(pair):
    ref, model, tokenizer = pair
    waveforms = [clip(2.37, seed=1), clip(1.3, seed=2)]
    ids = prompt(tokenizer, waveforms)
    feats, mask = hf_features(waveforms)
    out = ref.generate(input_ids=torch.tensor([ids]), input_features=feats, input_features_mask=mask,
                       max_new_tokens=8, do_sample=False, eos_token_id=None, pad_token_id=0)
    theirs = out[0, len(ids):].tolist()
    ours = list(generate_ids(model, ids, max_new_tokens=8, audio=features(waveforms)))
    assert ours == theirs
    # The string-level entry point: markers in the text, feature arrays beside it.
    assert tokenizer.eos_id not in theirs
    text = minigemma.generate(model, tokenizer, "Listen: <|audio|> and then <|audio|>. What was said?",
                              audio=features(waveforms), max_new_tokens=8)
    assert text == tokenizer.decode(theirs)


def test_audio_token_count_must_match_the_clips(pair):
    _, model, tokenizer = pair
    ids = torch.tensor([prompt(tokenizer, [clip(2.37, seed=1)])])
    with pytest.raises(ValueError, match="has 59 audio tokens .* give 92"):
        model(ids, audio=features([clip(2.37, seed=1), clip(1.3, seed=2)]))
    with pytest.raises(ValueError, match="has 59 audio tokens .* no audio was passed"):
        model(ids)
    with pytest.raises(ValueError, match=r"1 <\|audio\|> markers but 2 audio items"):
        multimodal_prompt(tokenizer, "<|audio|>", audio=[np.zeros((9, 128))] * 2)


def test_audio_checkpoint_without_audio_config_is_refused(tmp_path, hf_tokenizer_dir):
    make_multimodal(tmp_path, hf_tokenizer_dir, "default")
    config = json.loads((tmp_path / "config.json").read_text())
    del config["audio_config"]
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="holds .* audio tensors .* no audio_config"):
        minigemma.load(tmp_path, progress=False)


@pytest.mark.parametrize("name", ["gemma4-e2b", "gemma4-e4b"])
def test_expected_keys_with_audio_equal_transformers(name):
    from transformers import Gemma4AudioConfig, Gemma4Config, Gemma4Model

    text, audio = minigemma.preset(name), minigemma.AUDIO_PRESETS[name]
    with torch.device("meta"):
        ref = Gemma4Model(Gemma4Config(text_config=hf_config(text), audio_config=Gemma4AudioConfig(),
                                       vision_config=None))
    theirs = {k.removeprefix("language_model."): tuple(v.shape) for k, v in ref.state_dict().items()}
    ours = minigemma.expected_keys(text, audio_config=audio)
    assert ours == theirs
    assert sum(k.startswith("audio_tower.") for k in ours) > 500 and ours["embed_audio.embedding_projection.weight"] \
        == (text.hidden_size, 1536)
