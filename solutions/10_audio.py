"""Solutions to the exercises of notebooks/10_audio.ipynb."""

import numpy as np
import torch

from minigemma.log_mel import MEL_BANK


def audio_tokens(num_samples):
    frames = (num_samples + 160 - 321) // 160 + 1  # semicausal pad of 160, windows of 321, hop 160
    for _ in range(2):  # two stride-2 convolutions with padding 1 keep ceil(t / 2)
        frames = (frames + 1) // 2
    return frames


def log_mel(frame):
    window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(320) / 320)
    spectrum = np.abs(np.fft.rfft(frame * window, n=512))  # (257,)
    return np.log(spectrum @ MEL_BANK + 1e-3)  # (128,)


def visible(T, past, future):
    dist = torch.arange(T)[:, None] - torch.arange(T)[None, :]  # q - t
    return ((dist >= 0) & (dist < past)) | ((dist < 0) & (-dist < future))
