"""The multimodal plumbing vs transformers, independent of any tower: soft tokens are handed to both
models ready-made (transformers' ``mm_encoder_outputs``; a pass-through tower on our side), so these
tests check the merge itself -- pad ids for the embedding and for PLE, the count checks, and
bidirectional attention among image tokens on sliding layers only -- and the prompt layout."""

import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from torch import nn

import minigemma
from minigemma import KVCache, generate_ids
from minigemma.multimodal import (AUDIO_ID, BOA_ID, BOI_ID, EOA_ID, EOI_ID, IMAGE_ID, VIDEO_ID, audio_token_count,
                                  multimodal_prompt, vision_blocks)

from .conftest import perturb
from .test_gemma4 import STYLES, TINY


class PassThrough(nn.Module):
    """A stand-in tower: each "image" is already its (n, D) soft tokens."""

    def forward(self, items):
        return torch.cat([torch.as_tensor(x) for x in items])


@pytest.fixture(scope="module")
def pair(tmp_path_factory, hf_tokenizer_dir):
    """An E-style (PLE, KV sharing) multimodal checkpoint with bidirectional image attention."""
    from transformers import Gemma4Config, Gemma4ForConditionalGeneration, Gemma4TextConfig, Gemma4VisionConfig

    torch.manual_seed(0)
    text = Gemma4TextConfig(**{**TINY, **STYLES["e-style"]}, use_bidirectional_attention="vision")
    vision = Gemma4VisionConfig(hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
                                num_key_value_heads=2, head_dim=8)
    ref = Gemma4ForConditionalGeneration(Gemma4Config(text_config=text, vision_config=vision)).eval()
    perturb(ref, std=0.3)
    directory = tmp_path_factory.mktemp("multimodal")
    ref.save_pretrained(directory)
    shutil.copy(Path(hf_tokenizer_dir) / "tokenizer.json", directory / "tokenizer.json")
    model, tokenizer = minigemma.load(directory, progress=False)  # its tiny tower is swapped out below
    model.vision_tower, model.embed_vision = PassThrough(), nn.Identity()
    return ref, model, tokenizer


def media(n_tokens, seed):
    return torch.randn(n_tokens, TINY["hidden_size"], generator=torch.Generator().manual_seed(seed)) * 3


def prompt_ids():
    """text, image of 2 tokens, text, image of 3 tokens, text, a 2-frame video of 1 token per frame, text.
    Longer than the window (8), and an image run crosses the sliding window's edge."""
    g = torch.Generator().manual_seed(5)
    text = lambda n: torch.randint(3, 255000, (n,), generator=g).tolist()  # noqa: E731
    ids = ([2] + text(9) + [BOI_ID] + [IMAGE_ID] * 2 + [EOI_ID] + text(4) + [BOI_ID] + [IMAGE_ID] * 3 + [EOI_ID]
           + text(3) + [BOI_ID, VIDEO_ID, EOI_ID] + text(1) + [BOI_ID, VIDEO_ID, EOI_ID] + text(6))
    return torch.tensor([ids])


def hf_logits(ref, ids, images, frames):
    from transformers.modeling_outputs import BaseModelOutputWithPooling

    types = torch.zeros_like(ids)
    types[ids == IMAGE_ID], types[ids == VIDEO_ID] = 1, 2
    outputs = {"image": BaseModelOutputWithPooling(pooler_output=images),
               "video": BaseModelOutputWithPooling(pooler_output=[torch.cat(frames)])}
    return ref(input_ids=ids, mm_token_type_ids=types, mm_encoder_outputs=outputs).logits


@torch.no_grad()
def test_merge_matches_transformers(pair):
    ref, model, _ = pair
    ids = prompt_ids()
    images, frames = [media(2, 1), media(3, 2)], [media(1, 3), media(1, 4)]
    theirs = hf_logits(ref, ids, images, frames)
    ours = model(ids, images=images, videos=[(frames, [0.0] * len(frames))])
    assert theirs.abs().max() > 3  # logits of a useful size
    torch.testing.assert_close(ours, theirs, atol=1e-4, rtol=1e-4)
    # Each ingredient matters: other soft tokens, or no bidirectional attention, change the logits.
    assert (model(ids, images=[media(2, 9), media(3, 2)], videos=[(frames, [0.0] * len(frames))]) - theirs).abs().max() > 1e-2
    object.__setattr__(model.config, "use_bidirectional_attention", None)
    try:
        assert (model(ids, images=images, videos=[(frames, [0.0] * len(frames))]) - theirs).abs().max() > 1e-3
    finally:
        object.__setattr__(model.config, "use_bidirectional_attention", "vision")


@torch.no_grad()
def test_cached_prefill_in_chunks_equals_one_pass(pair):
    """The cache remembers image blocks: a prefill in chunks (between images) and decoding after it
    give the logits of one uncached pass; a chunk boundary inside an image is an error."""
    _, model, _ = pair
    ids = prompt_ids()
    images, frames = [media(2, 1), media(3, 2)], [media(1, 3), media(1, 4)]
    full = model(ids, images=images, videos=[(frames, [0.0] * len(frames))])
    cache = KVCache(model.config, batch=1, max_len=ids.shape[1])
    second = int((ids[0] == IMAGE_ID).nonzero()[-1])  # the second image's last token
    with pytest.raises(ValueError, match="continues an image from the previous chunk"):
        inside = KVCache(model.config, batch=1, max_len=ids.shape[1])
        model(ids[:, :second], cache=inside, images=[images[0], media(2, 2)])
        model(ids[:, second:], cache=inside, images=[media(1, 2)], videos=[(frames, [0.0] * len(frames))])
    cut = second - 3  # between the second image's <start_of_image> and its first token
    a = model(ids[:, :cut], cache=cache, images=images[:1])
    b = model(ids[:, cut:-3], cache=cache, images=images[1:], videos=[(frames, [0.0] * len(frames))])
    c = torch.cat([model(ids[:, t:t + 1], cache=cache) for t in range(ids.shape[1] - 3, ids.shape[1])], dim=1)
    torch.testing.assert_close(torch.cat([a, b, c], dim=1), full, atol=1e-4, rtol=1e-4)


@torch.no_grad()
def test_generate_passes_media_to_the_prompt_only(pair):
    _, model, _ = pair
    ids = prompt_ids()
    images, frames = [media(2, 1), media(3, 2)], [media(1, 3), media(1, 4)]
    new = list(generate_ids(model, ids[0].tolist(), max_new_tokens=6, images=images, videos=[(frames, [0.0] * len(frames))]))
    expected, seq = [], ids
    for _ in range(6):  # greedy by hand, uncached, the media in every full pass
        nxt = int(model(seq, images=images, videos=[(frames, [0.0] * len(frames))])[0, -1].argmax())
        expected.append(nxt)
        seq = torch.cat([seq, torch.tensor([[nxt]])], dim=1)
    assert new == expected


def test_count_and_tower_errors(pair):
    _, model, _ = pair
    ids = prompt_ids()
    images, frames = [media(2, 1), media(3, 2)], [media(1, 3), media(1, 4)]
    with pytest.raises(ValueError, match="has 5 image tokens .* give 4"):
        model(ids, images=[media(2, 1), media(2, 2)], videos=[(frames, [0.0] * len(frames))])
    with pytest.raises(ValueError, match="has 2 video tokens .* no video was passed"):
        model(ids, images=images)
    with pytest.raises(ValueError, match="has no audio tower"):
        model(ids, images=images, videos=[(frames, [0.0] * len(frames))], audio=[torch.zeros(10, 128)])
    with pytest.raises(ValueError, match="place their images differently"):
        vision_blocks(torch.tensor([[IMAGE_ID, 5], [5, IMAGE_ID]]))


def test_vision_blocks():
    ids = torch.tensor([[5, IMAGE_ID, IMAGE_ID, EOI_ID, BOI_ID, VIDEO_ID, 7, IMAGE_ID]])
    assert vision_blocks(ids).tolist() == [-1, 0, 0, -1, -1, 1, -1, 2]


class CharTokenizer:
    """Test tokenizer: one id per character (1000 + code point), bos 2."""
    bos_id = 2

    def encode(self, text, add_bos=False):
        return [self.bos_id] * add_bos + [1000 + ord(c) for c in text]


SPECIAL = {BOI_ID: "<boi>", IMAGE_ID: "<img>", EOI_ID: "<eoi>", VIDEO_ID: "<vid>", BOA_ID: "<boa>",
           AUDIO_ID: "<aud>", EOA_ID: "<eoa>", 2: "<bos>"}


def as_text(ids):
    return "".join(SPECIAL.get(i) or chr(i - 1000) for i in ids)


def test_prompt_layout_equals_the_transformers_processor():
    from transformers.models.gemma4.processing_gemma4 import Gemma4Processor

    proc = SimpleNamespace(boi_token="<boi>", eoi_token="<eoi>", image_token="<img>", video_token="<vid>",
                           boa_token="<boa>", eoa_token="<eoa>", audio_token="<aud>")
    image = (torch.zeros(18, 768), torch.zeros(18, 2, dtype=torch.long))  # 18 patches -> 2 soft tokens
    frames = [(torch.zeros(9, 768), torch.zeros(9, 2, dtype=torch.long))] * 3
    times = [0.0, 1.5, 61.0]
    audio = torch.zeros(237, 128)  # 2.37 s of 10 ms frames
    ids = multimodal_prompt(CharTokenizer(), "A <|image|> B <|video|> C <|audio|> D", images=[image],
                            videos=[(frames, times)], audio=[audio])
    img = Gemma4Processor.replace_image_token(proc, {"num_soft_tokens_per_image": [2]}, 0)
    vid = Gemma4Processor.replace_video_token(
        proc, {"num_soft_tokens_per_video": [1], "video_metadata": [SimpleNamespace(fps=1, timestamps=times)]}, 0)
    aud = Gemma4Processor.replace_audio_token(proc, {"input_features_mask": [torch.ones(237, dtype=torch.bool)]}, 0)
    assert as_text(ids) == f"<bos>A {img} B {vid} C {aud} D"
    assert audio_token_count(237) == 60 and aud.count("<aud>") == 60
    with pytest.raises(ValueError, match=r"1 <\|image\|> markers but 2 image items"):
        multimodal_prompt(CharTokenizer(), "A <|image|>", images=[image, image])
