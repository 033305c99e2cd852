"""From a picture (or a video clip) to the patches Gemma 4's vision tower reads.

Gemma 4 sees an image as a grid of 16×16-pixel *patches*; after the encoder, each 3×3 block of
patches is averaged into one *soft token* for the text model. A token budget (70, 140, 280 -- the
default --, 560 or 1120 soft tokens) caps the patches at ``budget · 9``. The image is resized,
keeping its aspect ratio, to the largest size that fits the budget with both sides multiples of
``3 · 16 = 48`` pixels, so the patch grid divides into whole 3×3 blocks. Pixels are scaled to
[0, 1]; the tower itself maps them to [-1, 1]. Each patch is flattened row by row, channels last
(``16·16·3 = 768`` numbers), and comes with its ``(x, y)`` column and row in the grid.

A video is a handful of frames sampled uniformly from the clip, each a small image (70 tokens by
default) stamped with its time. Equal to transformers' ``Gemma4ImageProcessorPil`` (tested for every
budget and odd shapes). Pillow decodes files and does the bicubic resize, as that processor does;
the size arithmetic, scaling, patchifying and positions are ours. Left out: the padding to a fixed
patch count (our tower takes each image unpadded) and video decoding (pass decoded frames).
"""

import math
from pathlib import Path

import numpy as np
import torch

PATCH, POOL = 16, 3  # patch side in pixels; a soft token pools POOL × POOL patches
BUDGETS = (70, 140, 280, 560, 1120)  # soft tokens per image the model was trained with
VIDEO_FRAMES = 32  # frames sampled per clip (transformers' Gemma4VideoProcessor.num_frames)


def resized_size(height: int, width: int, max_soft_tokens: int = 280) -> tuple[int, int]:
    """The (height, width) an image is resized to: the largest size with the same aspect ratio
    whose patches fit ``max_soft_tokens · 9`` and whose sides are multiples of 48 pixels."""
    check_budget(max_soft_tokens)
    if height <= 0 or width <= 0:
        raise ValueError(f"the image is {height}×{width} pixels: it has no pixels to look at")
    max_patches, side = max_soft_tokens * POOL ** 2, POOL * PATCH
    scale = math.sqrt(max_patches * PATCH ** 2 / (height * width))  # area -> the budget's area
    h, w = math.floor(scale * height / side) * side, math.floor(scale * width / side) * side
    if h == 0 and w == 0:
        raise ValueError(f"a {height}×{width} image would be resized to 0×0: smaller than one soft token")
    longest = max_soft_tokens * side  # a single row (or column) of blocks holds at most the budget
    if h == 0:  # very wide: one row of blocks, as long as the aspect ratio (in whole blocks) allows
        h, w = side, min(width // height * side, longest)
    elif w == 0:  # very tall: one column of blocks
        h, w = min(height // width * side, longest), side
    return h, w


def check_budget(max_soft_tokens):
    if max_soft_tokens not in BUDGETS:
        raise ValueError(f"max_soft_tokens={max_soft_tokens!r} is not a Gemma 4 image budget; "
                         f"choose one of {BUDGETS}")


def to_rgb(image) -> np.ndarray:
    """A file path, a PIL image (any mode) or a (H, W) / (H, W, 1|3|4) uint8 array -> (H, W, 3) uint8.

    Transparency is composited onto white, as transformers does. A file is opened upright (its EXIF
    orientation applied) and converted to RGB, as transformers' ``load_image`` does.
    """
    from PIL import Image, ImageOps

    if isinstance(image, (str, Path)):
        try:
            with Image.open(image) as f:
                f.load()  # decode now: a truncated file fails here, not later
                return np.array(ImageOps.exif_transpose(f).convert("RGB"))
        except (OSError, SyntaxError, ValueError) as e:  # PIL's errors for missing/unreadable/broken files
            raise ValueError(f"cannot read the image file {str(image)!r}: {e}") from e
    if isinstance(image, Image.Image):
        if "A" in image.getbands() or image.info.get("transparency") is not None:
            white = Image.new("RGBA", image.size, (255, 255, 255, 255))
            return np.array(Image.alpha_composite(white, image.convert("RGBA")).convert("RGB"))
        return np.array(image.convert("RGB"))  # L, P, CMYK, YCbCr, I;16 ... -> RGB as Pillow defines it
    a = np.asarray(image)
    if a.dtype != np.uint8:
        raise ValueError(f"an image array must hold uint8 pixels (0..255), not {a.dtype}")
    if a.ndim == 2:
        a = a[:, :, None]
    if a.ndim != 3 or a.shape[-1] not in (1, 3, 4):
        raise ValueError(f"an image array must be (H, W) or (H, W, 1|3|4), not {a.shape}")
    if a.shape[-1] == 1:
        return np.repeat(a, 3, axis=-1)
    if a.shape[-1] == 4:  # blend onto white with the alpha channel, rounding as transformers does
        alpha = a[..., 3:] / 255
        return np.round(alpha * a[..., :3] + (1 - alpha) * 255).astype(np.uint8)
    return a


def patchify(pixels: np.ndarray, size: int = PATCH):
    """(H, W, 3) floats, H and W multiples of ``size`` -> patches (n, size²·3), positions (n, 2) as (x, y).

    Patches are numbered row by row; inside a patch, pixels row by row with their 3 channels last.
    (The unified model cuts 48-pixel patches: ``unified.py``.)
    """
    H, W, C = pixels.shape
    rows, cols = H // size, W // size
    grid = pixels.reshape(rows, size, cols, size, C).transpose(0, 2, 1, 3, 4)  # (rows, cols, size, size, 3)
    patches = grid.reshape(rows * cols, size * size * C)  # (n, 768) for 16-pixel patches
    y, x = np.divmod(np.arange(rows * cols), cols)  # patch i sits in row i // cols, column i % cols
    return torch.from_numpy(np.ascontiguousarray(patches)), torch.from_numpy(np.stack([x, y], axis=-1))


def preprocess_image(image, max_soft_tokens: int = 280):
    """A picture -> ``(patches (n, 768) float32, positions (n, 2) long)``, n = 9 × its soft tokens.

    ``image``: a file path, a PIL image in any mode, or a (H, W) / (H, W, C) uint8 array.
    """
    from PIL import Image

    check_budget(max_soft_tokens)
    rgb = to_rgb(image)  # (H, W, 3) uint8
    h, w = resized_size(rgb.shape[0], rgb.shape[1], max_soft_tokens)
    if (h, w) != rgb.shape[:2]:
        rgb = np.array(Image.fromarray(rgb).resize((w, h), Image.BICUBIC))  # Pillow's bicubic, uint8
    pixels = (rgb.astype(np.float64) * (1 / 255)).astype(np.float32)  # [0, 1], rounded once
    return patchify(pixels)


def sample_frames(num_total: int, fps: float, num_frames: int = VIDEO_FRAMES):
    """Which frames of a clip the model sees -> (indices, timestamps in seconds).

    ``num_frames`` frames spread uniformly over the clip, frame ``i · T // num_frames`` for i = 0 ..
    num_frames - 1 (transformers' ``default_sample_indices_fn``). A clip with fewer frames than that
    keeps them all (transformers refuses it instead). A frame's time is its index / fps.
    """
    if fps is None or not fps > 0:
        raise ValueError(f"fps={fps!r}: pass the clip's frame rate (frames per second, > 0); the frame "
                         "times in the prompt are computed from it")
    if num_total < 1:
        raise ValueError("the video has no frames")
    n = min(num_frames, num_total)
    indices = [i * num_total // n for i in range(n)]
    return indices, [i / fps for i in indices]


def preprocess_video(frames, fps: float, max_soft_tokens: int = 70, num_frames: int = VIDEO_FRAMES):
    """A clip -> ``([(patches, positions) per sampled frame], timestamps in seconds)``.

    ``frames``: a (T, H, W, 3) uint8 array or a list of images (anything ``preprocess_image``
    takes); ``fps``: the clip's frame rate. Each sampled frame becomes a ``max_soft_tokens`` image.
    """
    check_budget(max_soft_tokens)
    if isinstance(frames, np.ndarray) and frames.ndim != 4:
        raise ValueError(f"a video array must be (T, H, W, C), not {frames.shape}")
    indices, times = sample_frames(len(frames), fps, num_frames)
    return [preprocess_image(frames[i], max_soft_tokens) for i in indices], times

