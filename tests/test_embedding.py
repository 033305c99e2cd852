"""EmbeddingGemma 2 vs transformers: small random checkpoints saved by transformers (three text shapes,
one with a vision tower), every norm weight and layer scalar perturbed, sliding radii far shorter
than the texts; per-token outputs, ``embed`` at every Matryoshka size, batches vs one text at a
time, the masks themselves, the real config's keys, strict loading and the bad-input errors."""

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

import minigemma
from minigemma import CheckpointError, TextConfig, embed, expected_keys
from minigemma.attention import attention_mask
from minigemma.audio import AudioConfig
from minigemma.embedding import matryoshka_dims, ours_from_transformers
from minigemma.multimodal import IMAGE_ID
from minigemma.preprocess import preprocess_image
from minigemma.vision import VisionConfig

from .conftest import perturb
from .test_vision import TINY_TOWER, padded, randomise_vision

TEXT = dict(vocab_size=262144, hidden_size=32, intermediate_size=64, rms_norm_eps=1e-6, max_position_embeddings=512,
            initializer_range=0.2)  # larger than the default 0.02, so outputs are of size ~1 and 1e-5 means something
SHAPES = {
    # 5:1 -> 2:1 pattern, GQA 4:2 on sliding layers, one KV head of twice the head dim on global ones
    "gqa": dict(num_hidden_layers=6, sliding_window_pattern=3, num_attention_heads=4, num_key_value_heads=2,
                head_dim=8, global_head_dim=16, num_global_key_value_heads=1, hidden_size_per_layer_input=8,
                embedding_dim=768, sliding_window=3),
    # plain multi-head attention, a last layer forced global, RoPE bases of our own, 300-wide output
    "mha": dict(num_hidden_layers=4, layer_types=["sliding_attention", "sliding_attention", "full_attention",
                                                  "sliding_attention"],
                num_attention_heads=2, num_key_value_heads=2, head_dim=16, global_head_dim=16,
                num_global_key_value_heads=2, hidden_size_per_layer_input=4, embedding_dim=300, sliding_window=5,
                rope_parameters={"full_attention": {"rope_type": "default", "rope_theta": 5e4},
                                 "sliding_attention": {"rope_type": "default", "rope_theta": 100.0}}),
    # radius 1 (a token sees its two neighbours), multi-query, a 64-wide output (no smaller Matryoshka size)
    "radius-1": dict(num_hidden_layers=3, sliding_window_pattern=2, num_attention_heads=4, num_key_value_heads=1,
                     head_dim=8, global_head_dim=8, num_global_key_value_heads=1, hidden_size_per_layer_input=16,
                     embedding_dim=64, sliding_window=1),
}
TEXTS = ["A cat sat on the mat.", "Gemma", "",
         "Bidirectional attention lets every token read the whole sentence, the words after it as well "
         "as the words before it, which is what a search index wants from an encoder.",
         "Matryoshka: the first values of the vector are a smaller vector in their own right."]


def make_checkpoint(directory, tokenizer_dir, shape, vision=False):
    """A random EmbeddingGemma2Model saved by transformers (safetensors, config.json, tokenizer.json)."""
    from transformers import EmbeddingGemma2Config, EmbeddingGemma2Model, Gemma4VisionConfig

    torch.manual_seed(0)
    config = EmbeddingGemma2Config(text_config={**TEXT, **SHAPES[shape]},
                                   vision_config=Gemma4VisionConfig(**TINY_TOWER) if vision else None)
    ref = EmbeddingGemma2Model(config).eval()
    perturb(ref, std=0.3)
    if vision:
        randomise_vision(ref.vision_tower, seed=1)
        with torch.no_grad():  # image tokens as large as text embeddings
            ref.embed_vision.embedding_projection.weight.normal_(0, 1.0, generator=torch.Generator().manual_seed(2))
    ref.save_pretrained(directory)
    shutil.copy(Path(tokenizer_dir) / "tokenizer.json", Path(directory) / "tokenizer.json")
    return ref


@pytest.fixture(scope="module", params=sorted(SHAPES))
def pair(request, tmp_path_factory, hf_tokenizer_dir):
    directory = tmp_path_factory.mktemp(f"embedding-{request.param}")
    ref = make_checkpoint(directory, hf_tokenizer_dir, request.param)
    model, tokenizer = minigemma.load(directory, progress=False)
    return request.param, ref, model, tokenizer, directory


def padded_batch(lengths, seed):
    """Random ids, right-padded with 0, and their attention mask."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(3, 262144, (len(lengths), max(lengths)), generator=g)
    mask = (torch.arange(max(lengths))[None, :] < torch.tensor(lengths)[:, None]).long()  # (B, T)
    return ids * mask, mask


def reference_embeddings(ref, ids_per_text, dim):
    """transformers' model on the right-padded batch, then sentence-transformers' recipe: mean over
    each text's tokens, L2 norm; Matryoshka: truncate to ``dim``, renormalise."""
    T = max(len(i) for i in ids_per_text)
    ids = torch.tensor([i + [0] * (T - len(i)) for i in ids_per_text])
    mask = torch.tensor([[1] * len(i) + [0] * (T - len(i)) for i in ids_per_text])
    with torch.no_grad():
        out = ref(input_ids=ids, attention_mask=mask).last_hidden_state  # (B, T, E)
    pooled = (out * mask[..., None]).sum(1) / mask.sum(1, keepdim=True)
    return F.normalize(F.normalize(pooled, dim=-1)[:, :dim], dim=-1)


@torch.no_grad()
def test_per_token_outputs_equal_transformers(pair):
    _, ref, model, _, _ = pair
    ids, mask = padded_batch([40, 23, 7], seed=1)  # 40 tokens against radii of 1, 3 and 5
    ours = model(ids, mask)
    theirs = ref(input_ids=ids, attention_mask=mask).last_hidden_state
    assert ours.shape == theirs.shape == (3, 40, model.config.embedding_dim)
    assert theirs.abs().max() > 1  # outputs of a useful size
    assert (ours - theirs).abs().max() < 1e-5  # padding positions included: they see what transformers' see
    assert (model(ids) - ref(input_ids=ids).last_hidden_state).abs().max() < 1e-5  # no mask at all


@torch.no_grad()
def test_embed_equals_transformers_and_pooling_at_every_size(pair, hf_tokenizer):
    _, ref, model, tokenizer, _ = pair
    ids = [[2] + hf_tokenizer.encode(t, add_special_tokens=False).ids + [1] for t in TEXTS]  # <bos> text <eos>
    assert max(len(i) for i in ids) > 2 * model.config.sliding_window + 1  # the windows bite
    dims = matryoshka_dims(model.config.embedding_dim)
    assert dims[0] == model.config.embedding_dim and all(d in (768, 512, 256, 128) for d in dims[1:])
    for dim in dims:
        ours = embed(model, tokenizer, TEXTS, dim=dim)
        theirs = reference_embeddings(ref, ids, dim)
        assert ours.dtype == torch.float32 and ours.shape == (len(TEXTS), dim)
        assert (ours - theirs).abs().max() < 1e-5, dim
        torch.testing.assert_close(ours.norm(dim=-1), torch.ones(len(TEXTS)))
    torch.testing.assert_close(embed(model, tokenizer, TEXTS), embed(model, tokenizer, TEXTS, dim=dims[0]))


@torch.no_grad()
def test_a_batch_gives_the_vectors_of_one_text_at_a_time(pair):
    _, _, model, tokenizer, _ = pair
    together = embed(model, tokenizer, TEXTS)
    alone = torch.cat([embed(model, tokenizer, [t]) for t in TEXTS])
    in_twos = embed(model, tokenizer, TEXTS, batch_size=2)
    assert (together - alone).abs().max() < 1e-6 and (in_twos - alone).abs().max() < 1e-6


@torch.no_grad()
def test_the_sliding_radius_bites(pair):
    """The same weights with a radius wide enough to see everything give other vectors: the window
    shapes the result (and the parity above is not a global-attention accident)."""
    from dataclasses import replace

    from minigemma.weights import build_model

    _, _, model, tokenizer, _ = pair
    wide = build_model(replace(model.config, sliding_window=10_000), model.state_dict())
    assert (embed(wide, tokenizer, TEXTS[3:4]) - embed(model, tokenizer, TEXTS[3:4])).abs().max() > 1e-3


def test_masks_equal_transformers():
    """Our bidirectional masks (radius, padding) against transformers' own mask builders."""
    from transformers import EmbeddingGemma2TextConfig
    from transformers.masking_utils import create_bidirectional_mask, create_bidirectional_sliding_window_mask

    _, mask = padded_batch([9, 4, 1], seed=0)
    positions = torch.arange(9)
    for radius in (1, 3, 20):
        config = EmbeddingGemma2TextConfig(sliding_window=radius, num_hidden_layers=2, sliding_window_pattern=2)
        config._attn_implementation = "sdpa"
        kwargs = dict(config=config, inputs_embeds=torch.zeros(3, 9, 4), attention_mask=mask)
        for window, theirs in ((radius, create_bidirectional_sliding_window_mask(**kwargs)),
                               (None, create_bidirectional_mask(**kwargs))):
            ours = attention_mask(positions, positions, window, bidirectional=True) & mask.bool()[:, None, None, :]
            assert torch.equal(ours, theirs.expand_as(ours)), (radius, window)


@pytest.fixture(scope="module")
def vision_pair(tmp_path_factory, hf_tokenizer_dir):
    directory = tmp_path_factory.mktemp("embedding-vision")
    ref = make_checkpoint(directory, hf_tokenizer_dir, "gqa", vision=True)
    model, tokenizer = minigemma.load(directory, progress=False)
    return ref, model, tokenizer


def two_images():
    rng = np.random.default_rng(3)
    return [preprocess_image(rng.integers(0, 256, (40, 60, 3), dtype=np.uint8), 70),
            preprocess_image(rng.integers(0, 256, (200, 90, 3), dtype=np.uint8), 70)]


@torch.no_grad()
def test_embed_with_images_equals_transformers(vision_pair):
    """Images through Gemma 4's tower, soft tokens over the placeholders, then the encoder: a batch of a
    text with one image, a text without, and an image alone."""
    ref, model, tokenizer = vision_pair
    images = two_images()
    texts = ["A photo: <|image|> of a cat on a mat.", "Plain text, no picture.", "<|image|>"]
    ours = embed(model, tokenizer, texts, images=images)
    ids = [minigemma.embedding.text_ids(tokenizer, t, [im] if "<|image|>" in t else []) for t, im in
           zip(texts, [images[0], None, images[1]])]
    assert [i.count(IMAGE_ID) for i in ids] == [len(p) // 9 for p, _ in (images[0],)] + [0, len(images[1][1]) // 9]
    T = max(len(i) for i in ids)
    batch = torch.tensor([i + [0] * (T - len(i)) for i in ids])
    mask = torch.tensor([[1] * len(i) + [0] * (T - len(i)) for i in ids])
    pixels, positions = padded(images)
    out = ref(input_ids=batch, attention_mask=mask, pixel_values=pixels, image_position_ids=positions).last_hidden_state
    # the tower's own float32 noise (test_vision.py: 1e-4 relative on logits) reaches the outputs
    per_token = model(batch, mask, images=images)
    assert out.abs().max() > 2 and ((per_token - out).abs().max() / out.abs().max()) < 1e-5
    theirs = F.normalize((out * mask[..., None]).sum(1) / mask.sum(1, keepdim=True), dim=-1)
    assert (ours - theirs).abs().max() < 1e-5
    alone = torch.cat([embed(model, tokenizer, texts[:1], images=images[:1]), embed(model, tokenizer, texts[1:2]),
                       embed(model, tokenizer, texts[2:], images=images[1:])])
    assert (ours - alone).abs().max() < 1e-6


def test_expected_keys_equal_transformers_for_the_real_config():
    """transformers' defaults are EmbeddingGemma 2 (its docstring checkpoint google/embeddinggemma-2):
    our config read from them and our keys, text-only and with Gemma 4's default towers, built on meta."""
    from dataclasses import asdict

    from transformers import EmbeddingGemma2Config, EmbeddingGemma2Model, Gemma4AudioConfig, Gemma4VisionConfig

    real = TextConfig.from_dict({"model_type": "embedding_gemma2"})
    assert TextConfig.from_dict(EmbeddingGemma2Config(text_config={}).to_dict()) == real
    assert (real.hidden_size, real.num_hidden_layers, real.embedding_dim, real.sliding_window) == (512, 24, 768, 512)
    assert [real.kv_heads_of(i) for i in (0, 5)] == [2, 1] and [real.head_dim_of(i) for i in (0, 5)] == [256, 512]
    for towers in (False, True):
        kwargs = dict(vision_config=Gemma4VisionConfig(), audio_config=Gemma4AudioConfig()) if towers else {}
        config = EmbeddingGemma2Config(**kwargs)
        with torch.device("meta"):
            ref = EmbeddingGemma2Model(config)
        theirs = {ours_from_transformers(k): tuple(v.shape) for k, v in ref.state_dict().items()}
        vision = VisionConfig.from_dict(config.vision_config.to_dict()) if towers else None
        audio = AudioConfig.from_dict(config.audio_config.to_dict()) if towers else None
        assert expected_keys(TextConfig.from_dict(config.to_dict()), vision, audio) == theirs
        if not towers:
            assert sum(int(np.prod(s)) for s in theirs.values()) == 271_002_648  # "270M text backbone"
    assert asdict(real)["embedding_dim"] == 768


@pytest.mark.parametrize("pair", ["gqa"], indirect=True)  # one shape is enough
def test_loading_is_strict_and_names_the_tensor(pair, tmp_path):
    shape, _, _, tokenizer, directory = pair
    state = load_file(directory / "model.safetensors")
    shutil.copy(directory / "config.json", tmp_path / "config.json")
    gate = "language_model.layers.1.ple_block.per_layer_input_gate.weight"
    cases = [({k: v for k, v in state.items() if k != gate},
              r"missing tensors: layers\.1\.per_layer_input_gate\.weight"),
             ({**state, "language_model.ple.embed_tokens_per_layer.weight": torch.zeros(4, 4)},
              r"unexpected tensors: embed_tokens_per_layer\.weight"),
             ({**state, "language_model.embedding_projection.weight": torch.zeros(512, 32)},
              r"misshaped tensors: embedding_projection\.weight: checkpoint \(512, 32\), model expects \(768, 32\)")]
    for broken, message in cases:
        save_file(broken, tmp_path / "model.safetensors")
        with pytest.raises(CheckpointError, match=message):
            minigemma.load(tmp_path, progress=False, tokenizer=tokenizer)


@pytest.mark.parametrize("pair", ["mha"], indirect=True)  # one shape is enough
def test_clear_errors(pair, tmp_path):
    shape, _, model, tokenizer, _ = pair
    with pytest.raises(ValueError, match=r"exporting an embedding model \(EmbeddingGemma 2\) is not supported"):
        minigemma.save_pretrained(model, tokenizer, tmp_path / "export")
    with pytest.raises(ValueError, match=r"dim=100 is not a size this model was trained for: choose one of "
                                         r"\(300, 256, 128\)"):
        embed(model, tokenizer, ["hi"], dim=100)
    with pytest.raises(ValueError, match="dim=768 is not"):
        embed(model, tokenizer, ["hi"], dim=768)  # above this model's width
    with pytest.raises(ValueError, match="texts is empty"):
        embed(model, tokenizer, [])
    with pytest.raises(ValueError, match=r"list of strings \(wrap a single text in a list"):
        embed(model, tokenizer, "hi")
    image = preprocess_image(np.zeros((32, 32, 3), dtype=np.uint8), 70)
    with pytest.raises(ValueError, match="images were passed but this model has no vision tower"):
        embed(model, tokenizer, ["<|image|>"], images=[image])
    with pytest.raises(ValueError, match=r"the texts hold 2 <\|image\|> markers but 1 image items were passed"):
        embed(model, tokenizer, ["<|image|>", "<|image|>"], images=[image])
    with pytest.raises(ValueError, match="embedding model .* no LM head"):
        minigemma.generate(model, tokenizer, "Hello", max_new_tokens=2)
    with pytest.raises(ValueError, match="embed needs an embedding model"):
        embed(minigemma.tiny_random(), tokenizer, ["hi"])
    with pytest.raises(ValueError, match="attention_mask has shape"):
        model(torch.ones(1, 4, dtype=torch.long), torch.ones(1, 5))
