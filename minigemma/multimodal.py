"""Pictures, video frames and sound in a text model: placeholders, soft tokens and one merge.

A Gemma 4 decoder only ever reads vectors of its own width, one per position. To show it an image,
the prompt reserves a run of *placeholder* tokens, one per "soft token" the vision tower will make:

    <bos> Describe <start_of_image> <|image|> <|image|> … <|image|> <end_of_image> in one line.

The towers (``vision.py``, ``audio.py``) turn the media into vectors, an *embedder* maps those into
the text width, and ``merge`` writes them over the placeholders' rows of the embedding, in order.
Everything else -- the layers, the cache, the output head -- is the text model, unchanged. The same
merge serves images, video frames and audio; only the placeholder id differs. ``MultimodalGemma``
is the text decoder (``decoder.Gemma``) plus the towers and this merge, and nothing else.

Three details decide whether the numbers match the reference (transformers ``Gemma4Model.forward``):

1. the placeholder ids are never looked up in the embedding: they become the pad id (0) first, and
   per-layer embeddings (PLE, ``ple.py``) of those positions are computed from the pad id too, with
   the merged embeddings as their "context" input;
2. the soft tokens must exactly fill the placeholders: a count that differs is an error;
3. with ``use_bidirectional_attention == "vision"`` the tokens of one image (a run of image or video
   placeholders) also see each other *forwards*, on sliding layers only (``vision_blocks``).
"""

import torch
from torch import nn

from .audio import AudioTower
from .chat_tags import MARKERS
from .log_mel import audio_features, audio_token_count
from .decoder import Gemma
from .norm import RMSNorm
from .preprocess import PATCH, POOL, VIDEO_FRAMES, preprocess_image, preprocess_video
from .vision import VisionTower

# Gemma 4 vocabulary ids (transformers Gemma4Config defaults; the real tokenizer.json agrees).
PAD_ID = 0
BOI_ID, IMAGE_ID, EOI_ID = 255999, 258880, 258882  # <start_of_image>, image soft token, <end_of_image>
VIDEO_ID = 258884  # a video frame's soft token (each frame is framed by BOI/EOI too)
BOA_ID, AUDIO_ID, EOA_ID = 256000, 258881, 258883  # <start_of_audio>, audio soft token, <end_of_audio>
PLACEHOLDERS = {IMAGE_ID: "image", VIDEO_ID: "video", AUDIO_ID: "audio"}
POOLED_PATCHES = 9  # a vision soft token pools a 3×3 block of 16-pixel patches
RAW_FRAME = 640  # the unified model's audio token: 640 raw samples, 40 ms at 16 kHz (unified.py)


class MultimodalEmbedder(nn.Module):
    """Tower output -> text width: a weightless RMSNorm, then one linear map (no bias).

    The norm puts every soft token on the same scale before the projection, whatever the tower's
    activations look like; the projection is the only thing that has to learn the text model's space.
    """

    def __init__(self, in_dim: int, text_dim: int, eps: float = 1e-6):
        super().__init__()
        self.embedding_pre_projection_norm = RMSNorm(in_dim, eps, with_scale=False)
        self.embedding_projection = nn.Linear(in_dim, text_dim, bias=False)

    def forward(self, x):
        """x: (n, in_dim) -> (n, text_dim)"""
        return self.embedding_projection(self.embedding_pre_projection_norm(x))


class MultimodalGemma(Gemma):
    """A Gemma decoder that also sees and hears: ``model(ids, images=, videos=, audio=) -> logits``.

    The towers and their embedders sit beside the text decoder (the checkpoint keys are
    ``vision_tower.*``, ``embed_vision.*``, ``audio_tower.*``, ``embed_audio.*``); ``forward`` turns
    media into soft tokens, writes them over the placeholders, and runs the text decoder on the
    result. ``None`` configs leave a tower out.
    """

    def __init__(self, config, vision_config=None, audio_config=None):
        super().__init__(config)
        self.vision_config, self.audio_config = vision_config, audio_config
        self.vision_tower = VisionTower(vision_config) if vision_config else None  # vision.py
        self.embed_vision = MultimodalEmbedder(vision_config.hidden_size, config.hidden_size,
                                               vision_config.rms_norm_eps) if vision_config else None
        self.audio_tower = AudioTower(audio_config) if audio_config else None  # audio.py
        self.embed_audio = MultimodalEmbedder(audio_config.output_proj_dims, config.hidden_size,
                                              audio_config.rms_norm_eps) if audio_config else None

    def forward(self, input_ids=None, inputs_embeds=None, cache=None, last_only=False, return_hidden=False,
                images=None, videos=None, audio=None):
        """As ``Gemma.forward``; ``images`` / ``videos`` / ``audio`` (see ``soft_tokens``) fill the
        placeholder tokens of ``input_ids``: pass them with the chunk that holds those placeholders.
        Placeholders without their media are an error, not tokens to look up."""
        media = images is not None or videos is not None or audio is not None
        if media and (input_ids is None or inputs_embeds is not None):
            raise ValueError("media need input_ids with their placeholder tokens (and no inputs_embeds)")
        bidirectional = self.config.use_bidirectional_attention == "vision" and input_ids is not None
        blocks = vision_blocks(input_ids) if bidirectional else None  # (T,) image of each position
        if inputs_embeds is None and input_ids is not None:
            check_media(images, videos, audio, each=False)
            soft = soft_tokens(self, images, videos, audio)  # {placeholder id: (n, D)}
            inputs_embeds, input_ids = merge(self, input_ids, soft)  # (B, T, D); ids with pad at placeholders
        return super().forward(input_ids, inputs_embeds, cache, last_only, return_hidden, image_blocks=blocks)

    def embed_media(self, kind, items):
        """``kind`` "images" / "videos" (a list of ``(patches, positions)``, one per image or frame) or
        "audio" (a list of features, one per clip) -> (n, D) soft tokens in order: tower, then embedder.
        (The unified model, ``unified.py``, has embedders alone.)"""
        if kind == "audio":
            return self.embed_audio(self.audio_tower(items))
        return self.embed_vision(self.vision_tower(items))

    # What ``self(ids, images=[...], videos=[...], audio=[...])`` takes, made for this model: the same
    # user code then serves the E-models and the unified model, whose media look different.
    def preprocess_image(self, image, max_soft_tokens=280):
        """A picture -> ``(patches (n, 768), positions (n, 2))`` (``preprocess.preprocess_image``)."""
        self._needs("vision")
        return preprocess_image(image, max_soft_tokens)

    def preprocess_video(self, frames, fps, max_soft_tokens=70, num_frames=VIDEO_FRAMES):
        """A clip -> ``([(patches, positions)] per sampled frame, timestamps)`` (``preprocess.preprocess_video``)."""
        self._needs("vision")
        return preprocess_video(frames, fps, max_soft_tokens, num_frames)

    def audio_features(self, waveform, *, sampling_rate=None):
        """A waveform -> (frames, 128) log-mel features (``log_mel.audio_features``)."""
        self._needs("audio")
        return audio_features(waveform, sampling_rate=sampling_rate)

    def _needs(self, part):
        if getattr(self, f"embed_{part}") is None:
            raise ValueError(f"this model takes no {part} input: its config.json has no {part}_config")


def soft_tokens(model, images=None, videos=None, audio=None) -> dict:
    """Run the towers -> ``{placeholder id: (n, text width) soft tokens}``, media in prompt order.

    ``images``: list of ``(patches, positions)``; ``videos``: list of ``(frames, timestamps)``, the
    frames a list of ``(patches, positions)`` (what ``preprocess_video`` returns); ``audio``: list of
    log-mel feature arrays ``(frames, 128)`` (the unified model: raw frames ``(tokens, 640)``).
    """
    out = {}
    for kind, items, embedder, token in (("images", images, model.embed_vision, IMAGE_ID),
                                         ("videos", videos, model.embed_vision, VIDEO_ID),
                                         ("audio", audio, model.embed_audio, AUDIO_ID)):
        if items is None:
            continue
        if embedder is None:
            part = "audio" if kind == "audio" else "vision"
            raise ValueError(f"{kind} were passed but this model has no {part} tower or embedder (its checkpoint "
                             f"has none, or it was loaded as a text-only model)")
        if kind == "videos":
            items = [frame for frames, _ in items for frame in frames]  # every frame is one small image
        out[token] = model.embed_media(kind, list(items))  # (n, D)
    return out


def merge(model, input_ids, soft: dict):
    """Text embeddings with the soft tokens written over their placeholders.

    input_ids: (B, T); soft: ``{placeholder id: (n, D)}`` -> x: (B, T, D), text_ids: (B, T), where
    ``text_ids`` holds the pad id at every placeholder (what the embedding and PLE look up).
    """
    is_placeholder = torch.isin(input_ids, torch.tensor(list(PLACEHOLDERS), device=input_ids.device))
    text_ids = input_ids.masked_fill(is_placeholder, PAD_ID)  # (B, T)
    x = model.embed(text_ids)  # (B, T, D)
    for token, name in PLACEHOLDERS.items():
        mask = input_ids == token  # (B, T)
        n_slots = int(mask.sum())
        given = soft.get(token)
        n_given = 0 if given is None else given.shape[0]
        if n_slots != n_given:
            passed = f"the {name} inputs passed give {n_given}" if given is not None else f"no {name} was passed"
            raise ValueError(f"the prompt has {n_slots} {name} tokens (id {token}) but {passed}: build the "
                             f"prompt with minigemma.multimodal_prompt so each item gets its exact count")
        if n_slots:
            x = x.masked_scatter(mask[..., None], given.to(x.dtype))  # rows filled in reading order
    return x, text_ids


def vision_blocks(input_ids):
    """(B, T) ids -> (T,) block id per position: each maximal run of image or video placeholders is
    one block (0, 1, …), everything else -1. Rows of a batch must place their media alike."""
    is_vision = (input_ids == IMAGE_ID) | (input_ids == VIDEO_ID)  # (B, T)
    if input_ids.shape[0] > 1 and not (is_vision == is_vision[:1]).all():
        raise ValueError("the prompts of one batch place their images differently; pass them one at a time")
    is_vision = is_vision[0]  # (T,)
    starts = is_vision & ~torch.cat([is_vision.new_zeros(1), is_vision[:-1]])  # first token of each run
    return torch.where(is_vision, torch.cumsum(starts.long(), 0) - 1, -1)


def image_token_count(patches) -> int:
    """Soft tokens of one image: each covers 48×48 pixels, nine 16-pixel patches (768 values each) that
    an E-model tower pools, or one 48-pixel patch (6912 values) that the unified model reads whole."""
    n, values = patches.shape
    return n if values == 3 * (PATCH * POOL) ** 2 else n // POOLED_PATCHES


def audio_token_count_of(features) -> int:
    """Soft tokens of one clip: one per 4 log-mel frames (E-models), or one per raw 640-sample frame."""
    if getattr(features, "ndim", None) != 2:
        raise ValueError(f"an audio item must be a 2-D array of features (what model.audio_features(waveform, "
                         f"sampling_rate=16000) returns), not {type(features).__name__} of shape "
                         f"{getattr(features, 'shape', None)}")
    return len(features) if features.shape[1] == RAW_FRAME else audio_token_count(len(features))


def _timestamp(seconds: float) -> str:
    return f"{int(seconds // 60):02d}:{int(seconds % 60):02d}"


def multimodal_prompt(tokenizer, text: str, images=(), videos=(), audio=(), add_bos=True) -> list:
    """Prompt ids for a text with ``<|image|>``, ``<|video|>`` and ``<|audio|>`` markers, one per item.

    images: ``(patches, positions)`` per image; videos: ``(frames, timestamps in seconds)`` per video
    (what ``preprocess_video`` returns); audio: a ``(frames, 128)`` feature array per clip (for the
    unified model: 48-pixel patches and ``(tokens, 640)`` raw frames, ``unified.py``). Each marker
    becomes what transformers' ``Gemma4Processor`` writes: ``BOI + IMAGE×n + EOI`` for an image;
    ``"MM:SS " + BOI + VIDEO×n + EOI`` per frame, joined by spaces, for a video; ``BOA + AUDIO×n + EOA``
    for a clip. Text runs are tokenized whole, so the result equals tokenizing the full string with
    the special tokens inline.
    """
    queues = dict(zip(MARKERS.values(), (list(images), list(videos), list(audio))))
    for marker, items in queues.items():
        if text.count(marker) != len(items):
            raise ValueError(f"the text has {text.count(marker)} {marker} markers but {len(items)} "
                             f"{marker[2:-2]} items were passed")
    parts = []  # strings (to tokenize) and lists of ids (to splice in), in order
    rest = text
    while rest:
        found = [(rest.find(m), m) for m in queues if rest.find(m) >= 0]
        if not found:
            parts.append(rest)
            break
        at, marker = min(found)
        parts.append(rest[:at])
        item = queues[marker].pop(0)
        if marker == MARKERS["image"]:
            parts.append([BOI_ID] + [IMAGE_ID] * image_token_count(item[0]) + [EOI_ID])
        elif marker == MARKERS["audio"]:
            parts.append([BOA_ID] + [AUDIO_ID] * audio_token_count_of(item) + [EOA_ID])
        else:
            frames, times = item
            for j, ((patches, _), t) in enumerate(zip(frames, times, strict=True)):
                parts += [(" " if j else "") + _timestamp(t) + " ",
                          [BOI_ID] + [VIDEO_ID] * image_token_count(patches) + [EOI_ID]]
        rest = rest[at + len(marker):]
    ids = [tokenizer.bos_id] if add_bos else []
    text_run = ""
    for part in parts + [[]]:
        if isinstance(part, str):
            text_run += part  # adjacent strings are one run (e.g. "Look: " + "00:00 ")
            continue
        if text_run:
            ids += tokenizer.encode(text_run, add_bos=False)
            text_run = ""
        ids += part
    return ids


def has_towers(model) -> bool:
    """Whether ``model`` can see or hear: a ``MultimodalGemma`` with at least one tower (or, for the
    unified model, embedder)."""
    return getattr(model, "embed_vision", None) is not None or getattr(model, "embed_audio", None) is not None


def _is_image(x):  # (patches (n, 768) float, positions (n, 2) int): what preprocess_image returns
    return isinstance(x, (list, tuple)) and len(x) == 2 and all(isinstance(t, torch.Tensor) for t in x) \
        and x[0].dim() == 2 and x[1].shape == (len(x[0]), 2) and not x[1].is_floating_point()


def _is_video(x):  # ([image per frame], [seconds per frame]): what preprocess_video returns
    return isinstance(x, (list, tuple)) and len(x) == 2 and isinstance(x[0], (list, tuple)) \
        and all(_is_image(f) for f in x[0]) and isinstance(x[1], (list, tuple)) and len(x[0]) == len(x[1])


def _is_audio(x):  # (frames, 128) log-mel features: what audio_features returns
    return getattr(x, "ndim", None) == 2


def check_media(images=None, videos=None, audio=None, each=True):
    """Raise a clear error unless each media argument is a list with one item per marker:
    ``images`` of ``(patches, positions)``, ``videos`` of ``(frames, timestamps)`` (what
    ``preprocess_image`` / ``preprocess_video`` return), ``audio`` of ``(frames, 128)`` features.
    ``each=False`` only refuses a single item passed without its list (the towers check items)."""
    for name, items, is_item, maker in (("images", images, _is_image, "preprocess_image"),
                                        ("videos", videos, _is_video, "preprocess_video"),
                                        ("audio", audio, _is_audio, "audio_features")):
        if items is None:
            continue
        per_marker = f"one {maker}(...) result per <|{name.rstrip('s')}|> marker"
        if is_item(items):
            raise ValueError(f"{name} got a single {maker}(...) result itself: pass a list with {per_marker} "
                             f"(wrap a single item in a list: {name}=[item])")
        if not isinstance(items, (list, tuple)):
            raise ValueError(f"{name} must be a list with {per_marker}, not {type(items).__name__}")
        for j, item in enumerate(items if each else ()):
            if not is_item(item):
                raise ValueError(f"{name}[{j}] is not a {maker}(...) result: {name} takes a list with {per_marker}")


def media_prompt(model, tokenizer, text, images=None, videos=None, audio=None, add_bos=True) -> list:
    """A text prompt -> ids for ``model``: with media or towers, its markers expanded by
    ``multimodal_prompt``; on a text-only model without media, markers are plain text."""
    check_media(images, videos, audio)
    if not (images or videos or audio) and not has_towers(model):
        return tokenizer.encode(text, add_bos=add_bos)
    return multimodal_prompt(tokenizer, text, images or (), videos or (), audio or (), add_bos)
