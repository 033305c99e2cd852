"""Media without encoders: Gemma 4's unified 12B reads pixels and samples through a linear map.

E2B, E4B, 26B and 31B run a picture through a 16- to 27-layer vision tower and a sound through a
12-layer conformer before the text model sees them (``vision.py``, ``audio.py``). The unified 12B
(transformers ``gemma4_unified``) has no encoder at all; the text decoder does all the work:

* **Images.** The picture is resized as for the towers (aspect ratio kept, sides multiples of 48
  pixels, at most 70/140/280/560/1120 soft tokens) and cut into 48×48-pixel patches, 48·48·3 = 6912
  numbers, *one patch per soft token*. transformers cuts 16-pixel patches and merges each 3×3 block;
  the merged patch is the 48-pixel patch, pixel for pixel (the tests check it). Each patch goes
  LayerNorm -> Linear(6912, width) -> LayerNorm, adds a learned position (the table's entry for
  its column plus its entry for its row), LayerNorm again, and the usual embedder (weightless
  RMSNorm -> Linear) maps it into the text width. The LayerNorms have biases and eps 1e-5
  (PyTorch's default), unlike Gemma's RMSNorms.
* **Sound.** The 16 kHz waveform is cut into 640-sample frames (40 ms, the last one zero-padded),
  *one soft token per frame*: weightless RMSNorm -> Linear(640, width). No spectrogram, no
  downsampling; the E-models' conformer also ends at one token per 40 ms.

Everything after the embedders -- placeholders, the merge, bidirectional attention inside an
image, the decoder (Gemma 4's, without PLE or experts), generation -- is ``multimodal.py``'s.
An image's tokens see each other as on 26B/31B: on sliding layers, within the window. That is
the mask of transformers' static-cache ``generate``; its ``forward`` (and dynamic-cache generate)
builds Gemma 3's instead (every layer, past the window), so the two disagree once images are in.
The resize is torch's antialiased bicubic on uint8 pixels, the one torchvision runs, so patches
equal ``Gemma4UnifiedImageProcessor``'s exactly (the E-models' ``preprocess.py`` resizes with
Pillow, as ``Gemma4ImageProcessorPil`` does; the two differ by up to a few levels of 255).
Left out: padding to a fixed patch count and batched clips (each image and clip runs unpadded).
"""

import math
from dataclasses import dataclass, fields

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .log_mel import check_waveform
from .multimodal import RAW_FRAME, MultimodalEmbedder, MultimodalGemma
from .preprocess import PATCH, POOL, VIDEO_FRAMES, check_budget, patchify, resized_size, sample_frames, to_rgb

SIDE = PATCH * POOL  # 48: a soft token's patch side in pixels
PATCH_VALUES = 3 * SIDE ** 2  # 6912 numbers per patch


@dataclass(frozen=True)
class UnifiedVisionConfig:
    # Defaults are the 12B's (transformers ``Gemma4UnifiedVisionConfig``).
    mm_embed_dim: int = 3840  # width of the patch projection
    mm_posemb_size: int = 1120  # rows of the position table: the longest side in 48-pixel patches
    output_proj_dims: int = 3840  # the embedder's input width (= mm_embed_dim)
    rms_norm_eps: float = 1e-6  # the embedder's RMSNorm (the LayerNorms use 1e-5)
    patch_size: int = PATCH
    pooling_kernel_size: int = POOL

    def __post_init__(self):
        if (self.patch_size, self.pooling_kernel_size) != (PATCH, POOL):
            raise ValueError(f"patch_size {self.patch_size} / pooling_kernel_size {self.pooling_kernel_size}: "
                             f"minigemma cuts Gemma 4's {SIDE}-pixel patches ({PATCH} × {POOL})")
        if self.output_proj_dims != self.mm_embed_dim:
            raise ValueError(f"output_proj_dims {self.output_proj_dims} must equal mm_embed_dim {self.mm_embed_dim}: "
                             "the embedder reads the patch projection's output")

    @classmethod
    def from_dict(cls, d: dict) -> "UnifiedVisionConfig":
        return cls(**_known(cls, d, "vision_config", "gemma4_unified_vision"))


@dataclass(frozen=True)
class UnifiedAudioConfig:
    audio_embed_dim: int = RAW_FRAME  # samples per soft token, also the embedder's input width
    rms_norm_eps: float = 1e-6

    def __post_init__(self):
        if self.audio_embed_dim != RAW_FRAME:
            raise ValueError(f"audio_embed_dim {self.audio_embed_dim}: minigemma frames audio in {RAW_FRAME}-sample "
                             "(40 ms) frames, as transformers' Gemma4UnifiedAudioFeatureExtractor does")

    @classmethod
    def from_dict(cls, d: dict) -> "UnifiedAudioConfig":
        return cls(**_known(cls, d, "audio_config", "gemma4_unified_audio"))


def _known(cls, d, part, model_type):
    d = d[part] if part in d else d
    if d.get("model_type", model_type) != model_type:
        raise ValueError(f"model_type {d['model_type']!r} is not a Gemma 4 unified {part[:-7]} config")
    return {f.name: d[f.name] for f in fields(cls) if d.get(f.name) is not None}


# ---- media in ---------------------------------------------------------------------------------

def image_patches(image, max_soft_tokens: int = 280):
    """A picture -> ``(patches (n, 6912) float32, positions (n, 2) long)``, n = its soft tokens.

    ``image``: a file path, a PIL image in any mode, or a (H, W) / (H, W, C) uint8 array.
    Patches are numbered row by row; ``positions`` holds each one's (column, row).
    """
    check_budget(max_soft_tokens)
    rgb = to_rgb(image)  # (H, W, 3) uint8
    h, w = resized_size(rgb.shape[0], rgb.shape[1], max_soft_tokens)
    pixels = torch.from_numpy(rgb).permute(2, 0, 1)[None]  # (1, 3, H, W) uint8
    if (h, w) != rgb.shape[:2]:  # uint8 in, uint8 out (rounded), as torchvision's resize
        pixels = F.interpolate(pixels, size=(h, w), mode="bicubic", antialias=True, align_corners=False)
    pixels = pixels[0].permute(1, 2, 0).float() * (1 / 255)  # (h, w, 3) in [0, 1]
    return patchify(pixels.numpy(), SIDE)


def video_patches(frames, fps: float, max_soft_tokens: int = 70, num_frames: int = VIDEO_FRAMES):
    """A clip -> ``([(patches, positions) per sampled frame], timestamps in seconds)``: the frames
    ``preprocess.sample_frames`` picks, each cut as ``image_patches`` cuts a picture."""
    check_budget(max_soft_tokens)
    if isinstance(frames, np.ndarray) and frames.ndim != 4:
        raise ValueError(f"a video array must be (T, H, W, C), not {frames.shape}")
    indices, times = sample_frames(len(frames), fps, num_frames)
    return [image_patches(frames[i], max_soft_tokens) for i in indices], times


def audio_frames(waveform, *, sampling_rate=None):
    """A waveform -> (ceil(samples / 640), 640) float32 frames, one per soft token (40 ms each).

    ``waveform``: as ``log_mel.audio_features`` takes it (16 kHz floats with ``sampling_rate``, or a
    ``.wav`` path). The last frame is padded with zeros; every frame is a real token (no mask).
    """
    x = check_waveform(waveform, sampling_rate, min_samples=1)  # (samples,) float32
    n = math.ceil(len(x) / RAW_FRAME)
    return np.pad(x, (0, n * RAW_FRAME - len(x))).reshape(n, RAW_FRAME)  # (tokens, 640)


# ---- the embedders ----------------------------------------------------------------------------

class PatchEmbedder(nn.Module):
    """``embedder([(patches (n_i, 6912), positions (n_i, 2)), ...]) -> (Σ n_i, mm_embed_dim)``.

    Each patch is embedded on its own (no attention between patches): only the position table
    tells the decoder where a patch sits. The checkpoint names are ``vision_embedder.*``.
    """

    def __init__(self, config: UnifiedVisionConfig):
        super().__init__()
        self.config, E = config, config.mm_embed_dim
        self.patch_ln1 = nn.LayerNorm(PATCH_VALUES)  # over one patch's pixels: its brightness and contrast go
        self.patch_dense = nn.Linear(PATCH_VALUES, E)
        self.patch_ln2 = nn.LayerNorm(E)
        self.pos_embedding = nn.Parameter(torch.zeros(config.mm_posemb_size, 2, E))  # [:, 0] columns, [:, 1] rows
        self.pos_norm = nn.LayerNorm(E)

    def forward(self, images):
        patches, positions = zip(*[self.check(i, p, pos) for i, (p, pos) in enumerate(images)])
        x = torch.cat(patches).to(self.patch_dense.weight.dtype)  # (n, 6912)
        pos = torch.cat(positions)  # (n, 2) as (x, y)
        x = self.patch_ln2(self.patch_dense(self.patch_ln1(x)))  # (n, E)
        where = self.pos_embedding[pos[:, 0], 0] + self.pos_embedding[pos[:, 1], 1]  # (n, E): column + row
        return self.pos_norm(x + where)  # (n, E)

    def check(self, index, patches, positions):
        """Validate one image's (patches, positions) -> float32 and long tensors, or a clear error."""
        p, pos = torch.as_tensor(patches).float(), torch.as_tensor(positions).long()
        if p.ndim != 2 or p.shape[1] != PATCH_VALUES or pos.shape != (p.shape[0], 2) or not len(p):
            raise ValueError(f"image {index}: expected {SIDE}-pixel patches (n >= 1, {PATCH_VALUES}) and positions "
                             f"(n, 2), got {tuple(p.shape)} and {tuple(pos.shape)}; make them with "
                             "model.preprocess_image(image) (the E-models' 16-pixel patches do not fit)")
        if pos.min() < 0:
            raise ValueError(f"image {index}: negative positions (padding?); pass only the real patches")
        if pos.max() >= self.config.mm_posemb_size:
            raise ValueError(f"image {index} is {int(pos.max()) + 1} patches long but the position table covers "
                             f"{self.config.mm_posemb_size} (mm_posemb_size)")
        device = self.patch_dense.weight.device
        return p.to(device), pos.to(device)


def check_frames(index, frames):
    """One clip's raw frames -> a float32 tensor, or a clear error."""
    x = torch.as_tensor(np.asarray(frames) if not torch.is_tensor(frames) else frames)
    if x.ndim != 2 or x.shape[1] != RAW_FRAME or x.shape[0] == 0:
        raise ValueError(f"audio {index}: expected raw frames (tokens >= 1, {RAW_FRAME}), got {tuple(x.shape)}; "
                         "make them with model.audio_features(waveform, sampling_rate=16000) (log-mel features "
                         "are for the E-models)")
    if not torch.isfinite(x).all():
        raise ValueError(f"audio {index}: the frames hold NaN or infinite values")
    return x.float()


class UnifiedGemma(MultimodalGemma):
    """Gemma 4 unified (12B): ``MultimodalGemma`` with embedders where the towers were.

    ``model(ids, images=[...], videos=[...], audio=[...])`` and ``generate`` work as for the E-models;
    make the media with ``model.preprocess_image`` / ``preprocess_video`` / ``audio_features``.
    Checkpoint keys: ``vision_embedder.*``, ``embed_vision.*``, ``embed_audio.*`` beside the decoder.
    """

    def __init__(self, config, vision_config: UnifiedVisionConfig = None, audio_config: UnifiedAudioConfig = None):
        super().__init__(config)  # the text decoder, no towers
        self.vision_config, self.audio_config, D = vision_config, audio_config, config.hidden_size
        self.vision_embedder = PatchEmbedder(vision_config) if vision_config else None
        self.embed_vision = MultimodalEmbedder(vision_config.mm_embed_dim, D, vision_config.rms_norm_eps) \
            if vision_config else None
        self.embed_audio = MultimodalEmbedder(RAW_FRAME, D, audio_config.rms_norm_eps) if audio_config else None

    def embed_media(self, kind, items):
        """Images / video frames or audio clips -> (n, D) soft tokens, in order (see ``MultimodalGemma``)."""
        if kind == "audio":
            frames = torch.cat([check_frames(j, f) for j, f in enumerate(items)])  # (n, 640)
            return self.embed_audio(frames.to(self.embed_audio.embedding_projection.weight))
        return self.embed_vision(self.vision_embedder(items))

    def preprocess_image(self, image, max_soft_tokens=280):
        """A picture -> ``(patches (n, 6912), positions (n, 2))`` (``image_patches``)."""
        self._needs("vision")
        return image_patches(image, max_soft_tokens)

    def preprocess_video(self, frames, fps, max_soft_tokens=70, num_frames=VIDEO_FRAMES):
        """A clip -> ``([(patches, positions)] per sampled frame, timestamps)`` (``video_patches``)."""
        self._needs("vision")
        return video_patches(frames, fps, max_soft_tokens, num_frames)

    def audio_features(self, waveform, *, sampling_rate=None):
        """A waveform -> (tokens, 640) raw frames (``audio_frames``)."""
        self._needs("audio")
        return audio_frames(waveform, sampling_rate=sampling_rate)
