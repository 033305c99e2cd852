"""Write the course's two small media files, deterministically: ``photo.jpg`` (a drawn scene, 160 × 240)
and ``clip.wav`` (1.5 s of a synthetic vowel-like tone at 16 kHz, 16-bit mono).

    python data/media/make.py

Both are ours (drawn and synthesised here), small enough for the repository, and shaped like what
a learner passes to ``preprocess_image`` and ``audio_features``: a non-square picture, a short clip.
"""

import wave
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

HERE = Path(__file__).parent


def photo():
    img = Image.new("RGB", (240, 160))
    draw = ImageDraw.Draw(img)
    for y in range(110):  # sky: a vertical gradient
        draw.line([(0, y), (240, y)], fill=(90 + y // 2, 150 + y // 3, 235))
    draw.rectangle([0, 110, 240, 160], fill=(70, 140, 60))  # grass
    draw.ellipse([180, 15, 215, 50], fill=(250, 210, 60))  # sun
    draw.rectangle([50, 70, 120, 125], fill=(200, 80, 60))  # a house
    draw.polygon([(42, 72), (85, 40), (128, 72)], fill=(120, 60, 40))  # its roof
    draw.rectangle([75, 95, 92, 125], fill=(90, 50, 30))  # its door
    draw.rectangle([100, 82, 113, 95], fill=(180, 220, 250))  # its window
    return img


def clip(seconds=1.5, rate=16000):
    t = np.arange(int(seconds * rate)) / rate
    pitch = 140 + 30 * np.sin(2 * np.pi * 0.7 * t)  # a gliding voice pitch, Hz
    phase = 2 * np.pi * np.cumsum(pitch) / rate
    formants = {1: 1.0, 2: 0.6, 3: 0.5, 5: 0.3, 7: 0.2, 12: 0.08}  # harmonic -> amplitude, vowel-like
    x = sum(a * np.sin(h * phase) for h, a in formants.items())
    envelope = np.minimum(1, t / 0.05) * np.minimum(1, (seconds - t) / 0.1)  # no clicks at either end
    return (0.3 * x / np.abs(x).max() * envelope * 32767).astype(np.int16), rate


if __name__ == "__main__":
    photo().save(HERE / "photo.jpg", quality=90)
    samples, rate = clip()
    with wave.open(str(HERE / "clip.wav"), "wb") as f:
        f.setnchannels(1), f.setsampwidth(2), f.setframerate(rate), f.writeframes(samples.tobytes())
    print("wrote", HERE / "photo.jpg", "and", HERE / "clip.wav")
