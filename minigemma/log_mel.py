"""Hearing, part 1: a waveform -> log-mel frames, the numbers Gemma 4's audio tower reads.

Raw samples are a poor input: the same vowel at another loudness or phase gives other numbers.
What stays the same is *which frequencies are loud, when*, so Gemma 4 E2B and E4B cut the clip into
overlapping frames and describe each by a classic log-mel spectrum: 16 kHz, 20 ms frames every
10 ms, periodic Hann window, 512-point FFT, 128 HTK mel bands, ``log(mel + 0.001)``. The tower
(``audio.py``) turns every 4 frames into one token; ``audio_token_count`` says how many a clip gets,
so the prompt can reserve exactly that many placeholders (``multimodal.py``).

Facts come from transformers' ``feature_extraction_gemma4.py`` and JAX ``gemma`` 4.0.1. Left out:
resampling (a clip that is not 16 kHz is refused: resample it first), dither and pre-emphasis (both
off in Gemma 4), padding several clips into one batch (each clip keeps its own valid frames).
"""

import wave
from pathlib import Path

import numpy as np
import torch

SAMPLING_RATE = 16_000  # the only rate Gemma 4 hears
FRAME_LENGTH = 320  # 20 ms
HOP_LENGTH = 160  # 10 ms
FRAMES_PER_SECOND = SAMPLING_RATE // HOP_LENGTH  # 100 mel frames per second of sound
FFT_LENGTH = 512  # the next power of two above the frame
NUM_MELS = 128
MEL_FLOOR = 1e-3
MAX_SECONDS = 30  # the longest clip Gemma 4 takes (model card: audio up to 30 s)
MAX_SAMPLES = MAX_SECONDS * SAMPLING_RATE


def read_wav(path):
    """A PCM ``.wav`` file -> (samples (n,) float32 in [-1, 1], sampling rate). Stereo is averaged."""
    try:
        with wave.open(str(path), "rb") as f:
            channels, width, rate, n = f.getnchannels(), f.getsampwidth(), f.getframerate(), f.getnframes()
            raw = f.readframes(n)
    except (wave.Error, EOFError, OSError) as e:
        raise ValueError(f"cannot read {path} as a PCM .wav file: {e}") from e
    if width == 1:  # 8-bit PCM is unsigned, centred on 128
        x = (np.frombuffer(raw, np.uint8).astype(np.float32) - 128.0) / 128.0
    elif width in (2, 4):
        x = np.frombuffer(raw, f"<i{width}").astype(np.float32) / float(2 ** (8 * width - 1))
    elif width == 3:  # 24-bit: widen each little-endian triple to 32 bits
        b = np.frombuffer(raw, np.uint8).reshape(-1, 3).astype(np.int32)  # (n · channels, 3)
        x = ((b[:, 0] << 8 | b[:, 1] << 16 | b[:, 2] << 24) >> 8).astype(np.float32) / 2.0 ** 23
    else:
        raise ValueError(f"{path}: {8 * width}-bit samples are not supported (8, 16, 24 or 32-bit PCM)")
    return x.reshape(-1, channels).mean(axis=1), rate  # (n, channels) -> (n,)


def hann_window(n):
    """The periodic Hann window: one period of a raised cosine, so overlapped windows sum flat."""
    return 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n) / n)


def hz_to_mel(f):
    return 2595.0 * np.log10(1.0 + f / 700.0)  # HTK's mel scale


def mel_to_hz(m):
    return 700.0 * (10.0 ** (m / 2595.0) - 1.0)


def mel_filter_bank(num_freqs=FFT_LENGTH // 2 + 1, num_mels=NUM_MELS, f_min=0.0, f_max=8000.0,
                    sampling_rate=SAMPLING_RATE):
    """(num_freqs, num_mels) triangles, evenly spaced on the mel scale, peak 1, not area-normalised."""
    edges = mel_to_hz(np.linspace(hz_to_mel(f_min), hz_to_mel(f_max), num_mels + 2))  # (M + 2,) Hz
    freqs = np.linspace(0, sampling_rate // 2, num_freqs)  # (num_freqs,) the FFT bins' centres
    rise = (freqs[:, None] - edges[None, :-2]) / (edges[1:-1] - edges[:-2])  # (num_freqs, M): 0 -> 1
    fall = (edges[None, 2:] - freqs[:, None]) / (edges[2:] - edges[1:-1])  # (num_freqs, M): 1 -> 0
    return np.maximum(0.0, np.minimum(rise, fall))


WINDOW = hann_window(FRAME_LENGTH).astype(np.float32)  # (320,)
MEL_BANK = mel_filter_bank()  # (257, 128) float64


def frame_count(num_samples):
    """Mel frames of a clip: every window of FRAME_LENGTH + 1 samples (after the semicausal left
    pad) that lies inside the clip, one every HOP_LENGTH."""
    return max(0, (num_samples + FRAME_LENGTH // 2 - (FRAME_LENGTH + 1)) // HOP_LENGTH + 1)


def audio_token_count(num_frames: int) -> int:
    """Soft tokens of an unpadded clip of ``num_frames`` mel frames (10 ms each): the subsampler's two
    convolutions (kernel 3, stride 2, padding 1) each keep ``ceil(t / 2)`` frames: one token per 40 ms."""
    for _ in range(2):
        num_frames = (num_frames + 1) // 2
    return num_frames


MAX_FRAMES = frame_count(MAX_SAMPLES)  # 2999
MAX_TOKENS = audio_token_count(MAX_FRAMES)  # 750


def check_waveform(waveform, sampling_rate=None, min_samples=FRAME_LENGTH + 1 - FRAME_LENGTH // 2):
    """-> a clean (n,) float32 array, or a clear error naming what is wrong with the clip.

    An array carries no rate, so ``sampling_rate`` is required with one; a ``.wav`` path carries
    its own, so ``sampling_rate`` may be left out (if given, it must agree with the file's).
    ``min_samples``: the shortest clip that makes one token (161 for a mel frame; 1 for the
    unified model's raw frames, ``unified.py``)."""
    if isinstance(waveform, (str, Path)):
        waveform, file_rate = read_wav(waveform)
        if sampling_rate is not None and sampling_rate != file_rate:
            raise ValueError(f"sampling_rate={sampling_rate} was given but the .wav file is sampled at {file_rate} "
                             "Hz; leave sampling_rate out for a file (it carries its own rate)")
        sampling_rate = file_rate
    elif sampling_rate is None:
        raise ValueError(f"an audio array carries no sampling rate: pass sampling_rate={SAMPLING_RATE} (after "
                         f"checking the clip really is {SAMPLING_RATE} Hz), or pass a .wav path")
    if sampling_rate != SAMPLING_RATE:
        raise ValueError(f"the clip is sampled at {sampling_rate} Hz; Gemma 4 hears {SAMPLING_RATE} Hz only: "
                         f"resample it first (minigemma does not resample)")
    x = waveform.detach().cpu().numpy() if isinstance(waveform, torch.Tensor) else np.asarray(waveform)
    if x.dtype.kind in "iub":
        raise ValueError(f"the waveform holds {x.dtype} samples; pass floats in [-1, 1] (int16 PCM: divide "
                         "by 32768), or a .wav path")
    x = x.astype(np.float32)  # what transformers' extractor computes on
    if x.ndim != 1:
        raise ValueError(f"expected a mono waveform of shape (samples,), got shape {x.shape}; "
                         "average the channels first (read_wav does)")
    if not np.isfinite(x).all():
        raise ValueError(f"the waveform has {int((~np.isfinite(x)).sum())} NaN or infinite samples")
    if len(x) > MAX_SAMPLES:
        raise ValueError(f"the clip lasts {len(x) / SAMPLING_RATE:.2f} s; Gemma 4 hears at most {MAX_SECONDS} s "
                         f"({MAX_SAMPLES} samples, {MAX_TOKENS} tokens) per clip: split it into several clips")
    if len(x) < min_samples:  # for the default: frame_count(len(x)) == 0
        raise ValueError(f"the clip has {len(x)} samples; it needs at least {min_samples} for one audio token")
    return x


def audio_features(waveform, *, sampling_rate=None):
    """A waveform -> (frames, 128) float32 log-mel features.

    ``waveform``: a 1-D float array, list or tensor in [-1, 1] with ``sampling_rate`` (16000, the
    only rate accepted), or a ``.wav`` path (its rate is read from the file). frames =
    (samples - 161) // 160 + 1: only frames whose window lies in the clip (transformers pads a batch
    and returns a mask; this returns the unmasked frames).
    """
    x = check_waveform(waveform, sampling_rate)  # (n,)
    x = np.pad(x, (FRAME_LENGTH // 2, 0))  # (FRAME_LENGTH/2 + n,) semicausal: frame 0 is centred on sample 0
    n = frame_count(len(x) - FRAME_LENGTH // 2)
    starts = np.arange(n)[:, None] * HOP_LENGTH  # (frames, 1)
    frames = x[starts + np.arange(FRAME_LENGTH)[None, :]]  # (frames, 320); the 321st sample would feed pre-emphasis
    spectrum = np.abs(np.fft.rfft(frames * WINDOW, n=FFT_LENGTH))  # (frames, 257)
    mel = spectrum @ MEL_BANK  # (frames, 128)
    return np.log(mel + MEL_FLOOR).astype(np.float32)
