# %% [markdown]
# # 10 · Audio: from a waveform to tokens the decoder can read
#
# **What you will learn**
# - how 2.37 seconds of sound become a picture of 236 × 128 numbers: frames, window, FFT, the mel
#   scale, the log — the front end of Gemma 4 E2B and E4B, built from scratch and checked against
#   transformers' feature extractor;
# - why the encoder makes **one token per 40 ms**: two stride-2 convolutions, and the arithmetic
#   that tells the prompt how many audio placeholders to reserve;
# - the conformer block (feed-forward, attention, convolution, feed-forward) and its **chunked
#   local attention** with relative positions, built step by step and checked against the package
#   and transformers;
# - how the audio tokens enter the prompt of the text model (notebook 06) and its `generate`.
#
# **Prerequisites:** notebooks 02 (RMSNorm, attention) and 06 (the Gemma 4 text model). No
# download: the clip is synthesised below, the models are tiny and random.

# %%
import numpy as np
import torch
import matplotlib.pyplot as plt
from IPython.display import Audio, display
import minigemma
from minigemma import audio as A  # the tower
from minigemma.log_mel import MEL_BANK, WINDOW, audio_token_count, frame_count  # the front end
from minigemma.clipped import ClippedLinear

_ = torch.manual_seed(0)

# %% [markdown]
# ## 1. A sound to listen to
# A real recording would need a licence and a download, so we make a speech-like sound instead:
# a voice is a buzz (a pitch around 120 Hz with its harmonics) shaped by the mouth into
# **formants**, broad peaks of energy. Two formant pairs, one for "a" and one for "i", and a
# sliding pitch give something between a sung "ah-ee" and a robot. 2.37 s at 16 kHz
# (16,000 samples per second, the only rate Gemma 4 hears) is 37,920 numbers in [−1, 1].

# %%
SR, seconds = 16_000, 2.37
t = np.arange(int(SR * seconds)) / SR
f0 = 110 + 40 * t / seconds + 8 * np.sin(2 * np.pi * 5 * t)  # pitch: rising, with vibrato
phase = 2 * np.pi * np.cumsum(f0) / SR
vowel = np.clip((t - 0.9) / 0.4, 0, 1)  # 0 = "a", 1 = "i", gliding in the middle
formants = [(700 - 400 * vowel, 130), (1200 + 1100 * vowel, 150), (2600 + 300 * vowel, 200)]
wave = np.zeros_like(t)
for k in range(1, 40):  # each harmonic k·f0, loud when it falls near a formant
    gain = sum(np.exp(-0.5 * ((k * f0 - fc) / bw) ** 2) for fc, bw in formants)
    wave += gain * np.sin(k * phase) / k ** 0.5
envelope = np.minimum(1, np.minimum(t / 0.05, (seconds - t) / 0.1)) * (0.8 + 0.2 * np.sin(2 * np.pi * 2 * t))
wave = (0.5 * wave * envelope / np.abs(wave).max()).astype(np.float32)
print(f"{len(wave)} samples, {len(wave) / SR:.2f} s, peak {np.abs(wave).max():.2f}")

# %% [markdown]
# This is the **source–filter** picture of speech in a dozen lines: the vocal folds make a buzz
# rich in harmonics (the `sin(k · phase)` terms, all multiples of the pitch `f0`), and the shape
# of the mouth and throat decides which of those harmonics come out loud (the Gaussian `gain`
# around each formant). Changing the vowel moves the formants; changing the pitch moves the
# harmonics under them. A speech recogniser must hear the first and mostly ignore the second.

# %% [markdown]
# Play it (the player works when you run the notebook; the pictures below are static):

# %%
display(Audio(wave, rate=SR))
fig, axes = plt.subplots(1, 2, figsize=(12, 2.6))
axes[0].plot(t, wave, lw=0.3); axes[0].set_xlabel("time (s)"); axes[0].set_title("the whole clip")
zoom = (t > 0.5) & (t < 0.53)
axes[1].plot(t[zoom] * 1000, wave[zoom]); axes[1].set_xlabel("time (ms)"); axes[1].set_title("30 ms: a few pitch periods")
plt.tight_layout(); plt.show()

# %% [markdown]
# The raw samples are a poor input for a network: the same vowel at another loudness or phase
# gives completely different numbers. What stays the same is **which frequencies are loud, when**.
#
# ## 2. Frames: 20 ms windows every 10 ms
# Speech changes slowly compared to 16,000 samples a second, so we cut it into short, overlapping
# **frames** and ask each one "which frequencies?". Gemma 4 uses 320 samples (20 ms) every 160
# (10 ms). Two details come from the reference:
# - **semicausal padding:** 160 zeros go in front, so the first frame is centred on sample 0;
# - the extractor cuts windows of **321** samples (one extra for an optional pre-emphasis that
#   Gemma 4 switches off) and keeps only frames whose 321 samples lie in the clip. So a clip of
#   `n` samples gives `(n + 160 − 321) // 160 + 1` frames: 236 here.

# %%
padded = np.pad(wave, (160, 0))  # (160 + n,)
n_frames = (len(wave) + 160 - 321) // 160 + 1
frames = np.stack([padded[i * 160: i * 160 + 320] for i in range(n_frames)])  # (frames, 320)
print("frames:", frames.shape, "— the package says", frame_count(len(wave)))
assert n_frames == frame_count(len(wave))

# %% [markdown]
# Each frame is multiplied by a **Hann window**, a raised cosine that fades the frame in and out.
# Without it, the cut edges would look like sudden clicks and smear energy across all
# frequencies. The *periodic* Hann (one full period, `0.5 − 0.5·cos(2πn/320)`) makes
# overlapping windows add up to a constant, so no part of the signal counts more than another.

# %%
window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(320) / 320)
assert np.allclose(window, WINDOW)
fig, axes = plt.subplots(1, 2, figsize=(12, 2.4))
axes[0].plot(frames[60], label="frame 60", lw=0.8); axes[0].plot(frames[60] * window, label="× Hann window")
axes[0].set_xlabel("sample in frame"); axes[0].legend()
for i in range(4):
    axes[1].plot(np.arange(320) + 160 * i, window, color=f"C{i}")
axes[1].plot(np.arange(160, 480), np.r_[window[160:], window[:160]] + window, "k--", label="sum of two neighbours")
axes[1].set_title("windows every 160 samples"); axes[1].legend(); plt.tight_layout(); plt.show()

# %% [markdown]
# ## 3. The spectrum of each frame
# The fast Fourier transform (FFT) of a frame measures how much of each frequency it contains. The
# frame is zero-padded to 512 samples (the next power of two), giving 257 frequency bins from 0 to
# 8,000 Hz (half the sampling rate, the highest frequency 16 kHz can represent), 31.25 Hz apart.
# We keep the **magnitude** and drop the phase. Stacked over time this is the **spectrogram**.

# %%
spectrum = np.abs(np.fft.rfft(frames * WINDOW, n=512))  # (frames, 257)
freqs = np.linspace(0, 8000, 257)
plt.figure(figsize=(10, 3.2))
plt.imshow(np.log(spectrum.T + 1e-3), origin="lower", aspect="auto", extent=[0, seconds, 0, 8000], cmap="magma")
plt.colorbar(label="log magnitude"); plt.xlabel("time (s)"); plt.ylabel("frequency (Hz)")
plt.title("spectrogram: harmonics of the pitch, brightest near the formants"); plt.show()

# %% [markdown]
# The horizontal lines are the harmonics of the pitch (rising slowly, with vibrato); the bright
# bands are the formants, and you can see them move when "a" turns into "i" around 1 s.
#
# ## 4. The mel scale, built by hand
# Our ears resolve low frequencies finely and high ones coarsely: 100 → 200 Hz is a big step,
# 7,000 → 7,100 Hz is not. The **mel scale** (HTK's formula `mel = 2595·log10(1 + f/700)`)
# straightens this out. We place 128 + 2 points evenly on the mel scale between 0 and 8,000 Hz;
# filter *m* is a triangle rising from point *m* to point *m+1* and falling to point *m+2*. Each
# mel band is then a weighted sum of FFT bins: narrow bands at the bottom, wide ones at the top.

# %%
def hz_to_mel(f):
    return 2595 * np.log10(1 + f / 700)

def mel_to_hz(m):
    return 700 * (10 ** (m / 2595) - 1)

edges = mel_to_hz(np.linspace(hz_to_mel(0), hz_to_mel(8000), 128 + 2))  # (130,) Hz
bank = np.zeros((257, 128))
for m in range(128):
    left, centre, right = edges[m], edges[m + 1], edges[m + 2]
    rising, falling = (freqs - left) / (centre - left), (right - freqs) / (right - centre)
    bank[:, m] = np.maximum(0, np.minimum(rising, falling))
assert np.allclose(bank, MEL_BANK)
print("bank:", bank.shape, "= the package's mel_filter_bank()")

# %%
fig, axes = plt.subplots(1, 2, figsize=(12, 3))
for m in range(0, 128, 6):
    axes[0].plot(freqs, bank[:, m], lw=0.8)
axes[0].set_xlabel("frequency (Hz)"); axes[0].set_title("every 6th mel filter")
im = axes[1].imshow(bank.T, origin="lower", aspect="auto", extent=[0, 8000, 0, 128], cmap="viridis")
fig.colorbar(im, ax=axes[1], label="weight"); axes[1].set_xlabel("frequency (Hz)"); axes[1].set_ylabel("mel band")
axes[1].set_title("the whole bank (257 bins → 128 bands)"); plt.tight_layout(); plt.show()
print("empty bands (narrower than one FFT bin):", int((bank.max(0) == 0).sum()))

# %% [markdown]
# The lowest bands are narrower than one FFT bin (31.25 Hz), so one of them (printed above) catches
# no bin at all and stays zero: harmless, transformers warns about exactly this. Finally the **log**: loudness
# is perceived on a log scale, and the log turns the product "source × mouth filter" into a
# sum. `log(mel + 0.001)` — the floor keeps silence at `log(0.001) ≈ −6.9` instead of `−∞`.

# %%
log_mel = np.log(spectrum @ bank + 1e-3).astype(np.float32)  # (frames, 128)
ours = minigemma.audio_features(wave, sampling_rate=SR)  # an array carries no rate: name it
from transformers import Gemma4AudioFeatureExtractor  # the reference, for this check only
ref = Gemma4AudioFeatureExtractor()([wave], return_tensors="np")
theirs = ref["input_features"][0][ref["input_features_mask"][0]]  # its valid frames
print("notebook vs package:", np.abs(log_mel - ours).max(), "| package vs transformers:", np.abs(ours - theirs).max())
assert np.abs(log_mel - ours).max() < 1e-5 and np.abs(ours - theirs).max() < 1e-4

# %%
plt.figure(figsize=(10, 3.2))
plt.imshow(log_mel.T, origin="lower", aspect="auto", extent=[0, seconds, 0, 128], cmap="magma")
plt.colorbar(label="log(mel + 0.001)"); plt.xlabel("time (s)"); plt.ylabel("mel band")
plt.title(f"log-mel features: {log_mel.shape[0]} frames × 128 bands — what the encoder reads"); plt.show()

# %% [markdown]
# Compared with the spectrogram, the low frequencies (where the formants live) now take most of
# the picture. This `(236, 128)` array is what `minigemma.audio_features` returns: **valid frames
# only**. transformers pads a batch to a common length and returns a mask; we return the unmasked
# frames, which is what the mask selects.
#
# ## 5. Four times fewer frames: one token per 40 ms
# 100 frames a second is more than a language model wants to read. The encoder starts with two
# 3 × 3 convolutions of stride 2 over (time, mel), each followed by LayerNorm over channels and a
# ReLU; both axes halve twice: 236 → 118 → 59 steps in time, 128 → 64 → 32 in frequency. A
# Linear then maps the 32 mel positions × 32 channels to the encoder width. A stride-2 convolution
# with padding 1 keeps `ceil(t / 2)` of `t` steps, so a clip of `f` frames gives
# `ceil(ceil(f / 2) / 2)` tokens: **4 frames of 10 ms = 40 ms per token**; 30 s (the cap) gives 750.

# %%
for secs in (0.02, 0.5, 1.0, 2.37, 10.0, 30.0):
    n = int(secs * SR)
    f = frame_count(n)
    print(f"{secs:6.2f} s = {n:6d} samples → {f:5d} frames → {(f + 1) // 2:5d} → {audio_token_count(f):4d} tokens")

# %% [markdown]
# The prompt must hold exactly as many placeholders as the tower makes, so this arithmetic is
# not an approximation: `multimodal_prompt` uses it to write the prompt, the tower's convolutions
# produce it, and a mismatch is an error. Transformers' processor truncates a clip over 30 s
# without a word; minigemma refuses it (`audio_features` and the tower both say "split it into
# several clips"), because a silently shortened clip is a wrong transcript nobody notices.

# %% [markdown]
# ## 6. A tiny random tower
# The real tower (E2B and E4B share it) has 12 conformer blocks of width 1024 and 8 heads, and
# projects to 1536 values per token (`minigemma.AUDIO_PRESETS`). A tiny one with random weights
# shows every step in a fraction of a second. The first subsampler width stays 128, as in the real
# tower; the rest is small. The clip bounds of the *clipped linears* (section 7) are drawn inside
# the range of what each one sees, so they really clip.

# %%
config = A.AudioConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                       subsampling_conv_channels=(128, 8), output_proj_dims=24)
tower = A.AudioTower(config).eval()
g = torch.Generator().manual_seed(0)
with torch.no_grad():
    for name, p in tower.named_parameters():
        if "norm" in name:
            p.copy_(1 + 0.3 * torch.randn(p.shape, generator=g))
        else:
            p.copy_(torch.randn(p.shape, generator=g) * (1.3 / p[0].numel() ** 0.5 if p.ndim > 1 else 0.5))
    for m in tower.modules():
        if isinstance(m, ClippedLinear):
            m.input_min.fill_(-1.5); m.input_max.fill_(1.5); m.output_min.fill_(-2.0); m.output_max.fill_(2.0)
features = torch.from_numpy(ours)[None]  # (1, 236, 128)
with torch.no_grad():
    sub = tower.subsample_conv_projection(features)
print("subsampled:", tuple(sub.shape), "— 59 steps of width", config.hidden_size)

# %%
fig, axes = plt.subplots(1, 2, figsize=(12, 3), gridspec_kw={"width_ratios": [2, 1]})
im = axes[0].imshow(ours.T, origin="lower", aspect="auto", cmap="magma")
fig.colorbar(im, ax=axes[0]); axes[0].set_title("236 mel frames (10 ms each)"); axes[0].set_xlabel("frame")
im = axes[1].imshow(sub[0].T, origin="lower", aspect="auto", cmap="RdBu_r")
fig.colorbar(im, ax=axes[1]); axes[1].set_title("59 subsampled steps (40 ms each)"); axes[1].set_xlabel("step")
axes[1].set_ylabel("channel"); plt.tight_layout(); plt.show()

# %% [markdown]
# Left, the 236 input frames; right, the 59 vectors the conformer blocks will read. The
# subsampler has already mixed the frequency axis into the channels: each column on the right is
# one 40 ms step described by 32 numbers, no longer a spectrum you could read by eye. The vowel
# change around step 25 is still visible as a change in many channels at once.

# %% [markdown]
# ## 7. The conformer block, step by step
# A conformer block (Gulati et al., 2020) is a Transformer block with a convolution added and the
# feed-forward split in two halves around it, like a macaron:
# ```
# x = x + ½ · FFN(x)               feed_forward1 (norms before and after, inside)
# x = x + norm(Attention(norm(x)))  chunked local attention, relative positions
# x = x + Conv(x)                  lconv1d: GLU, causal depthwise conv, norm, SiLU
# x = x + ½ · FFN(x)               feed_forward2
# x = norm(x)
# ```
# Every Linear except two is a **clipped linear** (notebook 08, section 7): its input and output
# are clamped to ranges stored in the checkpoint (how Google chose the ranges is not documented).
# All norms are RMSNorms that store the scale itself (Gemma 4's convention, notebook 06).
# Here is the first half-step feed-forward, written out from the layer's weights:

# %%
layer = tower.layers[0]
W = {k: v for k, v in layer.state_dict().items()}

def rms(x, w, eps=1e-6):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * w

def clipped(x, prefix):
    x = x.clamp(W[prefix + "input_min"], W[prefix + "input_max"]) @ W[prefix + "linear.weight"].T
    return x.clamp(W[prefix + "output_min"], W[prefix + "output_max"])

def feed_forward(x, n):
    p = f"feed_forward{n}."
    h = clipped(torch.nn.functional.silu(clipped(rms(x, W[p + "pre_layer_norm.weight"]), p + "ffw_layer_1.")),
                p + "ffw_layer_2.")
    return x + 0.5 * rms(h, W[p + "post_layer_norm.weight"])

with torch.no_grad():
    torch.testing.assert_close(feed_forward(sub, 1), layer.feed_forward1(sub))
print("feed_forward1 == the package's")

# %% [markdown]
# ### Chunked local attention
# Each audio step attends only to a short neighbourhood: in the released tower, **itself and the
# 11 steps before** (0.48 s), nothing after. To compute that without a `T × T` matrix, the steps
# are cut into **blocks of 12 queries**; each block fetches a *context* of keys from 12 steps
# before its start to its end (24 keys), and a mask keeps the visible ones. Memory grows with
# `T × 24`, not `T²` — 30 s of audio is 750 steps. Below, the rule drawn for 36 steps twice: as the
# `T × T` band it amounts to, and as the blocked `(blocks, 12, 24)` mask the code uses.

# %%
T, chunk, past, future = 36, 12, 12, 0
blocked = A.local_attention_mask(T, chunk, past, future)  # (blocks, chunk, context)
full = torch.zeros(T, T)
for b in range(blocked.shape[0]):
    for c in range(chunk):
        for s in range(blocked.shape[2]):
            if blocked[b, c, s]:
                full[b * chunk + c, b * chunk - past + s] = 1
fig, axes = plt.subplots(1, 2, figsize=(12, 4), gridspec_kw={"width_ratios": [1, 1.6]})
im = axes[0].imshow(full, cmap="Blues"); fig.colorbar(im, ax=axes[0])
axes[0].set_title("who sees whom (T × T): a band of 12"); axes[0].set_xlabel("key step"); axes[0].set_ylabel("query step")
im = axes[1].imshow(blocked.reshape(-1, blocked.shape[2]).float(), cmap="Blues", aspect="auto")
fig.colorbar(im, ax=axes[1]); axes[1].set_xlabel("context slot (24 keys per block)")
for y in (11.5, 23.5):
    axes[1].axhline(y, color="r")
axes[1].set_title("the same rule, blocked: 3 blocks × 12 queries × 24 keys"); plt.tight_layout(); plt.show()

# %% [markdown]
# ### The attention logit, derived
# **Intuition first.** A query step asks two questions of every key it may see: *is this the sound
# I am looking for?* (content) and *is this the distance I am looking for?* — "the step just before
# me", say (position). The logit is the sum of two dot products, one per question; then a few
# constants set their size, and a cap bounds them.
#
# **Step 1, the position term** (Transformer-XL, [Dai et al., 2019](https://arxiv.org/abs/1901.02860),
# section 3.3). With absolute positions, step `t` enters as content plus position, `x_t + p_t`, and
# the logit `W_q(x_q + p_q) · W_k(x_t + p_t)` splits into four products: content·content,
# content·position, position·content, position·position. Transformer-XL makes it relative: the key's
# absolute `p_t` becomes a sinusoid of the **distance** `q − t` with its own projection `W_R`, and
# the two query-side position products become two learned vectors. Gemma 4's audio attention keeps
# the two products that involve the query and drops the learned vectors:
#
# `logit(q, t) = q_q · k_t  +  q_q · r(q − t)`, with `r(d) = W_R · sinusoid(d)` (`relative_k_proj`).
#
# A step sees only distances 0 … 11, so `r` is a short table: the code below computes `q · r(d)` for
# the 13 distances 0 … 12 (one more than the mask lets through, like the blocked context) and
# picks the one at `d = q − t` (`gather`); the package's blocked version does the same with
# Transformer-XL's "relative shift" (its appendix B).
#
# **Step 2, the query scale.** Ordinary attention divides by `√hd`. Here each query dimension also
# gets a learned factor of its own, made positive by a softplus: `q · softplus(w) / √hd`. The
# parameter `w` (`per_dim_scale`) starts at **0**, and `softplus(0) = ln(1 + e⁰) = ln 2 ≈ 0.693`: left
# alone, the initial scale would be `ln 2 / √hd`, smaller than the ordinary one. Dividing by `ln 2`
# repairs that: `q · softplus(w) / (√hd · ln 2)` is exactly `q / √hd` at initialisation, and training
# moves each dimension's factor up or down from 1. (Gemma 3n's audio encoder does the same:
# `r_softplus_0 = 1 / softplus(0)` in transformers'
# [`modeling_gemma3n.py`](https://github.com/huggingface/transformers/blob/main/src/transformers/models/gemma3n/modeling_gemma3n.py).)
#
# **Step 3, the key scale.** Gemma 4 adds a constant on the key side, `ln(1 + e) / ln 2`. Read it
# like step 2: it is `softplus(1) / softplus(0)`, the same normalised softplus evaluated at 1 instead
# of 0, as if every key dimension carried a per-dimension scale frozen at 1. It multiplies every
# content product `q · k` by the same constant (the position term uses `r`, not `k`, and does not get
# it). transformers'
# [`modeling_gemma4.py`](https://github.com/huggingface/transformers/blob/main/src/transformers/models/gemma4/modeling_gemma4.py)
# states the constant but no reason; being a constant, training could absorb it into `w`.
#
# **Step 4, cap and mask.** `50 · tanh(logit / 50)` keeps every logit inside (−50, 50), as Gemma 2
# capped its attention logits, and keys outside the window get −10⁹. All together, with `q'` the
# scaled query:
#
# `logit(q, t) = 50 · tanh( q'_q · ( ln(1+e)/ln 2 · k_t + r(q − t) ) / 50 )`,
# `q' = q · softplus(w) / (√hd · ln 2)`.
#
# The constants, on a freshly built layer (before the random weights of section 6):

# %%
softplus = torch.nn.functional.softplus
hd_demo = config.hidden_size // config.num_attention_heads
fresh = A.AudioTower(config).layers[0].self_attn  # as initialised
print(f"per_dim_scale at initialisation: {sorted(set(fresh.per_dim_scale.tolist()))}; "
      f"softplus(0) = {softplus(torch.tensor(0.0)).item():.4f} = ln 2 = {np.log(2):.4f}")
q_factor = softplus(fresh.per_dim_scale) / (hd_demo ** 0.5 * np.log(2))  # (hd,)
print(f"query factor at initialisation: {q_factor[0].item():.4f} in every dimension = 1/√{hd_demo} = {hd_demo ** -0.5:.4f}")
print(f"key factor ln(1 + e) / ln 2 = softplus(1) / softplus(0) = "
      f"{softplus(torch.tensor(1.0)).item() / softplus(torch.tensor(0.0)).item():.4f} = {np.log(1 + np.e) / np.log(2):.4f}")

# %% [markdown]
# The same logit, written as one banded `T × T` matrix with no blocks at all:

# %%
def attention(x):
    B, T, D = x.shape
    H = config.num_attention_heads; hd = D // H
    q = clipped(x, "self_attn.q_proj.").view(B, T, H, hd).transpose(1, 2)  # (B, H, T, hd)
    k = clipped(x, "self_attn.k_proj.").view(B, T, H, hd).transpose(1, 2)
    v = clipped(x, "self_attn.v_proj.").view(B, T, H, hd).transpose(1, 2)
    q = q * torch.nn.functional.softplus(W["self_attn.per_dim_scale"]) / (hd ** 0.5 * np.log(2))
    k = k * np.log(1 + np.e) / np.log(2)
    dist = torch.arange(T)[:, None] - torch.arange(T)[None, :]  # (T, T): q - t
    visible = (dist >= 0) & (dist < past)  # itself and the 11 before
    r = A.relative_position_embedding(torch.arange(past + 1.0), D) @ W["self_attn.relative_k_proj.weight"].T
    r = r.view(past + 1, H, hd).permute(1, 0, 2)  # (H, distances 0..12, hd)
    position = torch.einsum("bhqd,hpd->bhqp", q, r).gather(-1, dist.clamp(0, past).expand(B, H, T, T))
    logits = 50 * torch.tanh((q @ k.transpose(-1, -2) + position) / 50)
    out = logits.masked_fill(~visible, -1e9).softmax(-1) @ v  # (B, H, T, hd)
    return clipped(out.transpose(1, 2).reshape(B, T, D), "self_attn.post.")

with torch.no_grad():
    h = layer.norm_pre_attn(feed_forward(sub, 1))
    torch.testing.assert_close(attention(h), layer.self_attn(h), atol=1e-5, rtol=1e-5)
print("banded T × T attention == the package's chunked attention")

# %% [markdown]
# The banded version is easier to read; the blocked version (the package's `LocalAttention`, and
# transformers') is what scales. They agree because every key a query may see lies inside its
# block's context: the context is fetched one step wider than the mask needs.
#
# **A detail for non-default configs.** The relative-position table of transformers has
# `context // 2 + 1` rows (timesteps `S, S−1, …, 0` with `S = context // 2`), and query `c` reads
# row `slot − c`. For the released chunking (12 queries, 12 steps back, 0 ahead) that row is
# exactly the distance `q − t`, as in Google's JAX code. For other chunk sizes or a right context
# the two references differ (transformers shifts the distances and gives keys ahead of the query
# no position term); minigemma follows transformers, its test oracle, and its tests check a
# non-default chunking (5 queries, 3 back, 2 ahead) against it.

# %% [markdown]
# ### The light convolution and the whole block
# The convolution module mixes each channel with its own last 5 steps (a *depthwise*, *causal*
# 1-D convolution: left-padded, so no step sees the future), between a gated linear unit (GLU:
# half the channels gate the other half through a sigmoid) and a SiLU. Attention is good at
# long-range, content-based links; the convolution at local patterns such as the shape of a
# formant transition. Then the second half-step feed-forward and a final norm.

# %%
def light_conv(x):
    p = "lconv1d."
    h = torch.nn.functional.glu(clipped(rms(x, W[p + "pre_layer_norm.weight"]), p + "linear_start."), dim=-1)
    h = torch.nn.functional.pad(h.transpose(1, 2), (4, 0))  # (B, D, 4 + T): the 4 steps before
    h = torch.nn.functional.conv1d(h, W[p + "depthwise_conv1d.weight"], groups=h.shape[1]).transpose(1, 2)
    return x + clipped(torch.nn.functional.silu(rms(h, W[p + "conv_norm.weight"])), p + "linear_end.")

def conformer_block(x):
    x = feed_forward(x, 1)
    x = x + rms(attention(rms(x, W["norm_pre_attn.weight"])), W["norm_post_attn.weight"])
    x = feed_forward(light_conv(x), 2)
    return rms(x, W["norm_out.weight"])

with torch.no_grad():
    mine, package = conformer_block(sub), layer(sub)
torch.testing.assert_close(mine, package, atol=1e-5, rtol=1e-5)
print("notebook conformer block == package ConformerLayer")

# %% [markdown]
# And against the reference: transformers' `Gemma4AudioModel` with the same weights (its config
# built from the same numbers), run as a whole tower: subsampler, our notebook block for every
# layer, output projection. Gemma's `gradient_clipping` (a clamp at ±10¹⁰, inactive in float32)
# and the clip bounds are part of both.

# %%
from transformers import Gemma4AudioConfig
from transformers.models.gemma4.modeling_gemma4 import Gemma4AudioModel
hf_tower = Gemma4AudioModel(Gemma4AudioConfig(**{k: v for k, v in config.__dict__.items()})).eval()
hf_tower.load_state_dict(tower.state_dict())
def notebook_tower(features):
    global W  # the helpers above read the current layer's weights from W
    x = tower.subsample_conv_projection(features)
    for layer_i in tower.layers:
        W = layer_i.state_dict()
        x = conformer_block(x)
    return tower.output_proj(x)

with torch.no_grad():
    theirs = hf_tower(features, torch.ones(features.shape[:2], dtype=torch.bool)).last_hidden_state
    torch.testing.assert_close(notebook_tower(features), theirs, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(tower([ours])[None], theirs, atol=1e-5, rtol=1e-5)
print("notebook tower == package tower == transformers' Gemma4AudioModel:", tuple(theirs.shape))

# %% [markdown]
# ## 8. Audio tokens in the prompt
# The tower's 59 outputs go through the audio **embedder** (a weightless RMSNorm, then a Linear
# into the text width) and replace 59 placeholder tokens in the prompt:
# `<start_of_audio>` (256000), 59 × the audio token (258881), `<end_of_audio>` (258883). The
# builder `minigemma.multimodal_prompt` reserves exactly `audio_token_count(frames)` of them per
# `<|audio|>` marker; a count that does not match the clips passed is an error, never a silent cut.

# %%
from minigemma.weights import resolve
from minigemma.config import TextConfig
tok = minigemma.Tokenizer.from_file(resolve("gemma3-270m"))
ids = minigemma.multimodal_prompt(tok, "Transcribe: <|audio|>", audio=[ours])
print(len(ids), "prompt ids:", ids[:6], "...", ids[-3:])
print("audio placeholders:", ids.count(258881))
text_config = TextConfig(model_type="gemma4_text", vocab_size=262144, hidden_size=64, intermediate_size=96,
                         num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1, head_dim=16,
                         layer_types=("sliding_attention", "full_attention"), sliding_window=16,
                         final_logit_softcapping=30.0)
model = minigemma.MultimodalGemma(text_config, audio_config=config).eval()
model.audio_tower.load_state_dict(tower.state_dict())
logits = model(torch.tensor([ids]), audio=[ours])
print("logits:", tuple(logits.shape))
print(repr(minigemma.generate(model, tok, "Transcribe: <|audio|>", audio=[ours], max_new_tokens=5)))

# %% [markdown]
# Two details of the merge (`minigemma/multimodal.py`, shared with the vision notebook) decide
# whether the numbers match the reference: the placeholder positions are looked up in the text
# embedding **as the pad id** (and so are their per-layer embeddings in PLE models like E2B), and
# then their rows are overwritten by the audio tokens, in order. The audio goes into the prompt's
# forward pass only; the decoding steps after it read the audio through the KV cache.

# %% [markdown]
# The text is noise (the weights are random), but every piece ran together: features → tower →
# embedder → placeholders → decoder → cache → next tokens. The whole chain, end to end:

# %%
with torch.no_grad():
    tokens = model.embed_audio(model.audio_tower([ours]))  # (59, text width)
fig, axes = plt.subplots(1, 5, figsize=(16, 2.8))
axes[0].plot(t, wave, lw=0.2); axes[0].set_title("waveform (37,920 samples)")
for ax, img, title in [(axes[1], np.log(spectrum.T + 1e-3), "spectrogram (236 × 257)"),
                       (axes[2], ours.T, "log-mel (236 × 128)"), (axes[3], sub[0].T, "subsampled (59 × 32)"),
                       (axes[4], tokens.T, "audio tokens (59 × 64)")]:
    im = ax.imshow(img, origin="lower", aspect="auto", cmap="magma" if ax in axes[1:3] else "RdBu_r")
    fig.colorbar(im, ax=ax); ax.set_title(title)
plt.tight_layout(); plt.show()

# %% [markdown]
# With a real checkpoint (E2B or E4B from Hugging Face, `config.json` with its `audio_config`),
# `model, tok = minigemma.load(path)` builds the tower and loads `model.audio_tower.*` and
# `model.embed_audio.*` strictly; then
# `minigemma.generate(model, tok, prompt_with_audio_marker, audio=[minigemma.audio_features("clip.wav")])`.
# A `.wav` file carries its sampling rate; an array does not, so pass it by name
# (`minigemma.audio_features(samples, sampling_rate=16000)`). Clips must be 16 kHz (others are
# refused: resample first), stereo `.wav` files are averaged to mono, and a clip over 30 s is an
# error (split it: each piece is a clip of its own).
#
# Without a real checkpoint, `minigemma.tiny_random("gemma4-e2b")` gives E2B's structure at toy
# width, its conformer tower included, with the real Gemma tokenizer and **random weights**: the
# whole path from a `.wav` file to generated tokens runs, and the words are noise. The clip is our
# own synthetic vowel (`data/media/clip.wav`, written by `data/media/make.py`).

# %%
tiny, tiny_tok = minigemma.tiny_random("gemma4-e2b", seed=0)
mel = minigemma.audio_features("../data/media/clip.wav")  # (frames, 128), one every 10 ms
from minigemma.multimodal import AUDIO_ID
n_tokens = minigemma.multimodal_prompt(tiny_tok, "<|audio|>", audio=[mel]).count(AUDIO_ID)
print(tuple(mel.shape), "log-mel frames ->", n_tokens, "audio soft tokens (one per 40 ms)")
print(repr(minigemma.generate(tiny, tiny_tok, "Transcribe: <|audio|>", audio=[mel], max_new_tokens=8)))

# %% [markdown]
# ### Run it on the real model (optional)
# With a Gemma 4 E2B or E4B checkpoint on disk, start Jupyter with
# `MINIGEMMA_GEMMA4=path/to/gemma-4-e2b-it` and this cell asks it, in its chat format, to transcribe
# `data/media/clip.wav` (our synthetic vowel: there are no words to find); without it, it
# prints how to enable it and skips (the same cell as in notebooks 06, 08, 09 and 13).

# %%
from real_weights import ask, real_gemma4
real = real_gemma4()  # (model, tokenizer) from $MINIGEMMA_GEMMA4, or None after a one-line note
if real:
    print(ask(*real, "Transcribe this audio: <|audio|>", audio=[mel]))

# %% [markdown]
# **What `minigemma/log_mel.py` and `audio.py` leave out.** Resampling (a 44.1 kHz clip is refused with a message
# that says so, rather than resampled by a filter we did not check against anything), dither and
# pre-emphasis (both switched off in Gemma 4's extractor), and batching several clips into one
# padded tensor: each clip runs through the tower on its own, which gives exactly the tokens a
# padded, masked batch gives, because no valid step ever reads a padded one (the convolutions see
# zeros where the clip ends, attention masks them out, and the light convolution only looks back).
#
# `tests/test_audio.py` checks all of this against transformers on random checkpoints saved by
# `Gemma4ForConditionalGeneration.save_pretrained`: features, tower, logits with one and two clips
# in the prompt, greedy continuation, with default and non-default chunking.
#
# ## References
# - Gulati et al., [Conformer: Convolution-augmented Transformer for Speech Recognition](https://arxiv.org/abs/2005.08100), 2020.
# - Zhang et al., [Google USM: Scaling Automatic Speech Recognition Beyond 100 Languages](https://arxiv.org/abs/2303.01037), 2023 (the encoder family).
# - Dai et al., [Transformer-XL](https://arxiv.org/abs/1901.02860), 2019 — relative positions and the shift trick (appendix B).
# - Google, [Gemma 4 model card](https://ai.google.dev/gemma/docs/core/model_card_4) — audio input, up to 30 s.
# - transformers' [`feature_extraction_gemma4.py` and `modeling_gemma4.py`](https://github.com/huggingface/transformers/tree/main/src/transformers/models/gemma4), the reference for the numbers.
#
# ## Exercises
# Solutions: `../solutions/10_audio.py`.
#
# **Exercise 10.1** — Write `audio_tokens(num_samples)`: how many audio placeholder tokens a clip of
# `num_samples` samples at 16 kHz needs. Hint: sections 2 and 5 hold every rule you need; test your
# function on the shortest clips, where one frame more or less changes the answer.

# %%
from checks import check_exercise_10_1, check_exercise_10_2, check_exercise_10_3

def audio_tokens(num_samples):
    raise NotImplementedError  # your code here

check_exercise_10_1(audio_tokens)

# %% [markdown]
# **Exercise 10.2** — Write `log_mel(frame)`: the 128 log-mel values of one frame of 320 samples
# (Hann window, 512-point FFT magnitude, `MEL_BANK`, `log(· + 0.001)`).

# %%
def log_mel(frame):
    raise NotImplementedError  # your code here

check_exercise_10_2(log_mel)

# %% [markdown]
# **Exercise 10.3** — Write `visible(T, past, future)`: the `(T, T)` boolean matrix of which key
# step each query step may attend to (`0 <= q − t < past` or `0 < t − q < future`). With a right
# context (`future > 0`), how far ahead does a step see?

# %%
def visible(T, past, future):
    raise NotImplementedError  # your code here

check_exercise_10_3(visible)
