# %% [markdown]
# # 15 · The encoder-free unified 12B
#
# Notebooks 08 and 10 built the towers of E2B and E4B: a vision encoder of 16 transformer layers and a
# 12-layer conformer for sound, each well over a hundred million parameters, before the text decoder
# sees a single soft token. Gemma 4's unified 12B (transformers `gemma4_unified`) has **no encoder at
# all**. A 48 × 48-pixel square of the picture, or 40 ms of the raw waveform, goes through a few norms
# and linear maps, and the decoder does the rest.
#
# **What you will learn**
# - the two roads into the decoder, drawn side by side, and the one the 12B takes: 16-pixel patches
#   merged 3 × 3 into 48-pixel patches, a *factorised* 2D position table, LayerNorm → Linear → LayerNorm;
# - the embedder **built by hand** and checked against the package (`minigemma/unified.py`);
# - how many soft tokens a picture and a second of sound become in each design (the same count),
#   and where the work goes instead: **parameters and FLOPs** of towers vs projections, counted on the
#   real configs without allocating them;
# - **what each design can see**: change one patch of a picture and watch which soft tokens move; what
#   the decoder's bidirectional image attention must then do; what a linear projection cannot see at all;
# - sound as raw 640-sample frames next to the log-mel + conformer road.
#
# Every model here has **random weights** (tiny ones built by `minigemma.tiny_random`, and the real
# configs only counted on PyTorch's `meta` device). The experiments show what the *architecture*
# allows, not what Google's trained weights do.
#
# **Prerequisites:** 08 (vision tower, budgets, pooling), 10 (log-mel, conformer), 04 (attention masks).

# %%
import math
import numpy as np
import torch
import torch.nn.functional as F
import matplotlib.pyplot as plt
import matplotlib.patches as mpatches
from matplotlib import cbook
from torch.utils.flop_counter import FlopCounterMode
import minigemma
from minigemma.preprocess import BUDGETS, patchify, preprocess_image, resized_size
from minigemma.unified import image_patches, audio_frames
from minigemma.log_mel import audio_features, audio_token_count, frame_count

torch.manual_seed(0)
torch.set_num_threads(2)

# %% [markdown]
# ## 1. Two roads into the decoder
# Every Gemma 4 turns a picture into **soft tokens**: vectors of the text width that take the place of
# `<|image|>` placeholders in the prompt (notebook 08). The road there differs:
#
# - **E2B, E4B, 26B-A4B, 31B:** 16 × 16-pixel patches (768 numbers each) enter a vision *tower*, a
#   transformer encoder in which every patch attends to every other; then 3 × 3 blocks are averaged
#   into one soft token, and a small embedder (RMSNorm → Linear) maps it into the text width.
# - **Unified 12B:** the same 3 × 3 block of 16-pixel patches, *merged* into one 48-pixel patch
#   (6912 numbers), goes LayerNorm → Linear → LayerNorm, gets a learned position added, LayerNorm, and
#   the same kind of embedder. No attention, no layers: each soft token is computed from its own patch.
#
# Sound is the same story: log-mel frames and a conformer for E2B/E4B (notebook 10), raw 640-sample
# frames and RMSNorm → Linear for the 12B.

# %%
def draw_road(ax, y, boxes, colour):
    """Boxes left to right at height y, joined by arrows."""
    for i, text in enumerate(boxes):
        ax.add_patch(mpatches.FancyBboxPatch((i * 2.05, y), 1.8, 0.8, boxstyle="round,pad=0.05", fc=colour, ec="k"))
        ax.text(i * 2.05 + 0.9, y + 0.4, text, ha="center", va="center", fontsize=7.5)
        if i:
            ax.annotate("", (i * 2.05 - 0.02, y + 0.4), (i * 2.05 - 0.23, y + 0.4), arrowprops=dict(arrowstyle="->"))

fig, ax = plt.subplots(figsize=(12, 3.6))
draw_road(ax, 3, ["picture", "16-px patches\n(768 numbers)", "vision tower\n16-27 layers,\nattention", "average 3×3\nblocks", "RMSNorm\n→ Linear", "decoder"], "#cfe0f3")
draw_road(ax, 2, ["picture", "48-px patches\n(6912 numbers)", "LayerNorm → Linear\n→ LayerNorm", "+ column + row\n→ LayerNorm", "RMSNorm\n→ Linear", "decoder"], "#f6d7b0")
draw_road(ax, 1, ["waveform", "log-mel, 10 ms\nframes (128)", "conformer\n12 layers", "one token\nper 40 ms", "RMSNorm\n→ Linear", "decoder"], "#cfe0f3")
draw_road(ax, 0, ["waveform", "640-sample\nframes (40 ms)", "(nothing)", "(nothing)", "RMSNorm\n→ Linear", "decoder"], "#f6d7b0")
for y, label in zip((3, 2, 1, 0), ("E-model image", "12B image", "E-model audio", "12B audio")):
    ax.text(-0.2, y + 0.4, label, ha="right", va="center", fontsize=9, weight="bold")
ax.set_xlim(-2.2, 12.3); ax.set_ylim(-0.2, 4); ax.axis("off")
ax.set_title("blue: the E-models' towers (notebooks 08, 10); orange: the unified 12B's embedders")
plt.show()

# %% [markdown]
# ## 2. Patches: 16-pixel patches merged 3 × 3
# The picture is resized to the same size as for the towers (notebook 08: aspect ratio kept, area set
# by the budget, both sides multiples of 48 pixels; the 12B's processor resamples with torch's bicubic
# filter rather than Pillow's, which moves a few pixel values by a few levels out of 255). transformers'
# processor then cuts 16-pixel patches and
# merges each 3 × 3 block into one *model patch*. The merged patch is simply the 48 × 48 square of
# pixels it covers, flattened row by row with the three colours last, so `minigemma.unified`
# cuts 48-pixel squares directly.
#
# Below: the photograph of notebook 08 at the 70-token budget, thin lines every 16 pixels, thick lines
# every 48; on the right one merged patch and the nine 16-pixel patches it is made of.

# %%
photo_path = cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)
p48, pos48 = image_patches(photo_path, max_soft_tokens=70)  # (n, 6912), (n, 2) as (column, row)
cols, rows = int(pos48[:, 0].max()) + 1, int(pos48[:, 1].max()) + 1
picture = p48.reshape(rows, cols, 48, 48, 3).permute(0, 2, 1, 3, 4).reshape(48 * rows, 48 * cols, 3)
print("48-pixel patches:", tuple(p48.shape), f"= {rows} rows × {cols} columns;", "picture", tuple(picture.shape))
fig, axes = plt.subplots(1, 3, figsize=(12, 4.4), gridspec_kw=dict(width_ratios=[1.2, 1, 1]))
axes[0].imshow(picture)
for x in range(0, 48 * cols + 1, 16):
    axes[0].axvline(x - 0.5, color="w", lw=1.4 if x % 48 == 0 else 0.3)
for y in range(0, 48 * rows + 1, 16):
    axes[0].axhline(y - 0.5, color="w", lw=1.4 if y % 48 == 0 else 0.3)
k = 2 * cols + 3  # row 2, column 3
axes[0].add_patch(mpatches.Rectangle((48 * 3 - 0.5, 48 * 2 - 0.5), 48, 48, color="r", fill=False, lw=2))
axes[1].imshow(p48[k].reshape(48, 48, 3)); axes[1].set_title(f"merged patch {k}:\n48×48×3 = 6912 numbers", fontsize=10)
small = p48[k].reshape(3, 16, 3, 16, 3).permute(0, 2, 1, 3, 4)  # (block row, block col, 16, 16, 3)
mosaic = torch.ones(3 * 18, 3 * 18, 3)
for i in range(3):
    for j in range(3):
        mosaic[18 * i + 1:18 * i + 17, 18 * j + 1:18 * j + 17] = small[i, j]
axes[2].imshow(mosaic); axes[2].set_title("its nine 16-px patches:\n768 numbers each", fontsize=10)
[a.axis("off") for a in axes]; axes[0].set_title(f"70-token budget:\n{rows}×{cols} merged patches", fontsize=10)
plt.show()

# %% [markdown]
# The picture above was put back together from the 48-pixel patches alone: they tile the image row
# by row. Cutting that same picture into 16-pixel patches (as an E-model would) and stitching the
# nine patches of block (3, 2) back together gives the merged patch, number for number:

# %%
p16, pos16 = patchify(picture.numpy(), 16)  # the E-models' cut of the same pixels: (9n, 768)
block = (pos16[:, 0] // 3 == 3) & (pos16[:, 1] // 3 == 2)  # the nine patches of column 3, row 2
nine = p16[block].reshape(3, 3, 16, 16, 3)  # (row, column, 16, 16, 3), in reading order
stitched = nine.permute(0, 2, 1, 3, 4).reshape(-1)  # rows of pixels across the three patches
print("16-pixel patches:", tuple(p16.shape), "| stitched block equals the merged patch:",
      torch.equal(stitched, p48[k]))

# %% [markdown]
# ## 3. Where a patch sits: a factorised 2D position table
# A transformer reads a set, so each patch needs its position. The E-model towers use a learned 2D
# table *and* 2D RoPE inside the tower (notebook 08). The 12B has no tower, so no 2D RoPE: in the
# decoder an image token gets the ordinary 1D RoPE of its place in the sequence, and the only signal of
# where it sits in the picture is a learned table of shape `(1120, 2, width)`. Patch
# `(x, y)` gets `table[x, 0] + table[y, 1]`: one vector for its column plus one for its row.
#
# ```
#              column 0   column 1   column 2  ...
#   row 0     c0 + r0    c1 + r0    c2 + r0
#   row 1     c0 + r1    c1 + r1    c2 + r1
#   row 2     c0 + r2    c1 + r2    c2 + r2
# ```
#
# A full table, one vector per `(x, y)` cell, would be 560 times larger:

# %%
width, side = 3840, 1120  # the 12B's mm_embed_dim and mm_posemb_size (transformers' defaults)
factorised, full = side * 2 * width, side * side * width
print(f"factorised table: {factorised:,} numbers ({factorised / 1e6:.1f}M); full table: {full / 1e9:.2f}G;",
      f"ratio {full // factorised}")
h, w = resized_size(48, 48 * 4000, max(BUDGETS))  # the thinnest strip at the largest budget
print(f"longest side any budget allows: {w // 48} patches of 48 pixels (a strip {h}×{w} px)")

# %% [markdown]
# 1120 rows are exactly enough: the longest side any budget allows is a strip one patch high at the
# 1120-token budget, 1120 patches long. (The E-model table has 10240 rows because it counts
# 16-pixel patches: 3 × 1120 = 3360 would do.)
#
# With a factorised table a patch's position is the *sum* of two vectors, and the decoder must learn to
# read both coordinates back out of it. Below, on the tiny random model we use next, the cosine
# similarity between the position vector of patch (3, 2) and every other patch's: the patches that
# share its row or its column stand out as a cross.

# %%
uni, tok = minigemma.tiny_random("gemma4-12b", seed=0)  # the 12B's structure at toy width, random weights
emb = uni.vision_embedder
table = emb.pos_embedding.detach()  # (1120, 2, E): [:, 0] columns, [:, 1] rows
grid = table[:cols, 0][None, :, :] + table[:rows, 1][:, None, :]  # (rows, cols, E)
similarity = F.cosine_similarity(grid, grid[2, 3], dim=-1)  # (rows, cols)
fig, ax = plt.subplots(figsize=(4, 4))
im = ax.imshow(similarity, cmap="RdBu_r", vmin=-1, vmax=1)
ax.set_xlabel("column x"); ax.set_ylabel("row y"); ax.set_title("cos(position(x, y), position(3, 2))")
fig.colorbar(im, ax=ax, shrink=0.8); plt.show()
print("position table of the tiny model:", tuple(table.shape))

# %% [markdown]
# ## 4. The embedder, built by hand
# Two kinds of norm appear, and the difference matters in section 9:
#
# - **LayerNorm** (PyTorch's `nn.LayerNorm`, with weight and bias, eps 1e-5): subtract the vector's
#   mean, divide by its standard deviation, then scale by a learned `γ` and shift by a learned `β`.
# - **RMSNorm without a weight** (Gemma's, eps 1e-6): divide by the root of the mean square; no
#   mean removed, nothing learned.
#
# One 48-pixel patch `p` (6912 numbers in [0, 1]) at column `x`, row `y` becomes
#
# `LN₃( LN₂(W · LN₁(p) + b) + c_x + r_y )` → RMSNorm → `W_out`
#
# and one audio frame `f` (640 samples) becomes RMSNorm(`f`) → `W_audio`. That is all. We write both
# with tensors only, on `tiny_random("gemma4-12b")`: the 12B's structure (the real 6912-number
# patches and 640-sample frames, the real tokenizer) at toy width (embedder 32, decoder 64).

# %%
def layer_norm(x, ln):
    """x: (..., d) -> (..., d): centre, divide by the standard deviation, then scale and shift."""
    centred = x - x.mean(-1, keepdim=True)
    return centred / torch.sqrt(centred.pow(2).mean(-1, keepdim=True) + ln.eps) * ln.weight + ln.bias

def rms_norm(x, eps=1e-6):
    return x / torch.sqrt(x.pow(2).mean(-1, keepdim=True) + eps)  # (..., d), no weight

def embed_patches(model, patches, positions):
    """(n, 6912), (n, 2) -> (n, D): the unified model's image soft tokens."""
    e = model.vision_embedder
    x = layer_norm(patches, e.patch_ln1) @ e.patch_dense.weight.T + e.patch_dense.bias  # (n, E)
    x = layer_norm(x, e.patch_ln2) + e.pos_embedding[positions[:, 0], 0] + e.pos_embedding[positions[:, 1], 1]
    return rms_norm(layer_norm(x, e.pos_norm)) @ model.embed_vision.embedding_projection.weight.T

def embed_frames(model, frames):
    """(n, 640) -> (n, D): the unified model's audio soft tokens."""
    return rms_norm(frames) @ model.embed_audio.embedding_projection.weight.T

print(emb, "\n", uni.embed_audio)

# %% [markdown]
# The package's `UnifiedGemma.embed_media` (what `model(ids, images=..., audio=...)` calls) must give
# the same numbers, for the photo and for the first 40 ms frames of a sound:

# %%
clip = minigemma.read_wav("../data/media/clip.wav")[0]  # (24000,) samples: our synthetic vowel, 1.5 s
frames = torch.as_tensor(uni.audio_features(clip, sampling_rate=16000))  # (38, 640)
with torch.no_grad():
    ours_img, package_img = embed_patches(uni, p48, pos48), uni.embed_media("images", [(p48, pos48)])
    ours_aud, package_aud = embed_frames(uni, frames), uni.embed_media("audio", [frames])
torch.testing.assert_close(ours_img, package_img, rtol=1e-5, atol=1e-5)
torch.testing.assert_close(ours_aud, package_aud, rtol=1e-5, atol=1e-5)
print("image soft tokens", tuple(ours_img.shape), "max |by hand - package|:", f"{(ours_img - package_img).abs().max():.1e}")
print("audio soft tokens", tuple(ours_aud.shape), "max |by hand - package|:", f"{(ours_aud - package_aud).abs().max():.1e}")

# %% [markdown]
# `tests/test_unified.py` checks the package against transformers' `Gemma4UnifiedForConditionalGeneration`
# on random checkpoints (patches against `Gemma4UnifiedImageProcessor`, frames against
# `Gemma4UnifiedAudioFeatureExtractor`, logits with images and audio in the prompt).
#
# ## 5. Soft tokens per picture and per second of sound
# Does dropping the tower change how many tokens a picture costs the decoder? Count both designs for
# every budget and a few shapes of picture. The E-model count is its 16-pixel patches divided by 9 (the
# pooling); the 12B count is its 48-pixel patches.

# %%
shapes = {"1:1": (900, 900), "4:3": (900, 1200), "16:9": (900, 1600), "1:3 strip": (300, 900)}
print(f"{'budget':>6} {'shape':>9} {'resized':>11} {'E patches':>9} {'E tokens':>8} {'12B tokens':>10}")
counts = {}
for T in BUDGETS:
    for name, (H, W) in shapes.items():
        h, w = resized_size(H, W, T)
        e_patches = (h // 16) * (w // 16)
        unified = len(image_patches(np.zeros((H, W, 3), np.uint8), T)[0])
        counts[T, name] = (e_patches // 9, unified)
        print(f"{T:>6} {name:>9} {f'{h}×{w}':>11} {e_patches:>9} {e_patches // 9:>8} {unified:>10}")
print("equal in every case:", all(a == b for a, b in counts.values()))

# %% [markdown]
# The same: a budget means the same thing for both designs, and the resize is the same arithmetic.
# What differs is what happens *before* those tokens: the E-model tower runs 9 times as many patches
# (up to 9 × 1120 = 10,080 of them at the largest budget) through every one of its layers, with
# attention over all of them; the 12B does one matrix product per token.
#
# Sound: E2B/E4B make 100 log-mel frames per second and the conformer's two stride-2 convolutions
# keep one in four (notebook 10); the 12B cuts 640-sample frames, the last one padded with zeros.

# %%
print(f"{'seconds':>7} {'samples':>7} {'mel frames':>10} {'E tokens':>8} {'12B tokens':>10}")
for seconds in (0.04, 0.1, 0.5, 1.0, 1.5, 10.0, 30.0):
    n = round(seconds * 16000)
    mel = frame_count(n)
    raw = audio_frames(np.zeros(n, np.float32), sampling_rate=16000)  # (tokens, 640)
    print(f"{seconds:>7} {n:>7} {mel:>10} {audio_token_count(mel):>8} {len(raw):>10}")
print("tokens per second:", audio_token_count(frame_count(16000)), "(E-models),", 16000 // 640, "(12B)")
lengths = range(161, 2 * 16000 + 1)  # every clip length up to 2 s that gives the E-models a token
differ = [n for n in lengths if audio_token_count(frame_count(n)) != math.ceil(n / 640)]
print(f"lengths up to 2 s where the counts differ: {len(differ)} of {len(lengths)} ({len(differ) / len(lengths):.0%}), "
      f"e.g. {differ[0]} samples: {audio_token_count(frame_count(differ[0]))} vs {math.ceil(differ[0] / 640)}")

# %% [markdown]
# 25 tokens per second for both: one token per 40 ms. The counts agree at the lengths above but not at
# every length: for 25% of them the 12B has one token more, because it pads a last, barely begun
# frame into a whole token, while the E-models' last log-mel window must fit inside the clip (641
# samples are two 12B frames but one E-model token). So the decoder pays the same for a picture or a
# clip in both designs, give or take a token; the encoder's cost is what the 12B removes. How large is
# that cost?

# %% [markdown]
# ## 6. Parameters and FLOPs, on the real configs
# We build the real models on PyTorch's `meta` device: every tensor has its shape but no memory, so
# the 31B costs nothing to "build" and its parameters can be counted. E2B/E4B/26B/31B use
# `minigemma.PRESETS`, `VISION_PRESETS` and `AUDIO_PRESETS`; the 12B uses `UNIFIED_PRESETS`: 48 layers of
# width 3840, MLP 15360, 16 query heads, 8 KV heads on sliding layers and 1 on global ones (keys as
# values), no PLE, as in the `config.json` that ports of the checkpoint publish, and transformers'
# defaults for the embedders. (transformers' `Gemma4UnifiedTextConfig` defaults are *not* the 12B's
# text model: they describe a 30-layer model of width 2304.)

# %%
from minigemma.presets import PRESETS, VISION_PRESETS, AUDIO_PRESETS, UNIFIED_PRESETS, UNIFIED_MEDIA
from minigemma.weights import new_model

def count(module):
    return sum(p.numel() for p in module.parameters()) if module is not None else 0

real = {}
with torch.device("meta"):
    for name in ("gemma4-e2b", "gemma4-e4b", "gemma4-31b"):
        real[name] = new_model(PRESETS[name], VISION_PRESETS[name], AUDIO_PRESETS.get(name))
    real["gemma4-12b"] = new_model(UNIFIED_PRESETS["gemma4-12b"], *UNIFIED_MEDIA["gemma4-12b"])
print(f"{'model':>11} {'total':>8} {'image in':>9} {'of which proj.':>14} {'audio in':>9} {'of which proj.':>14} {'media share':>11}")
for name, m in real.items():
    vision = count(getattr(m, "vision_tower", None)) + count(getattr(m, "vision_embedder", None)) + count(m.embed_vision)
    audio = count(getattr(m, "audio_tower", None)) + count(m.embed_audio)
    total = count(m)
    print(f"{name:>11} {total / 1e9:7.2f}B {vision / 1e6:8.1f}M {count(m.embed_vision) / 1e6:13.1f}M "
          f"{audio / 1e6:8.1f}M {count(m.embed_audio) / 1e6:13.1f}M {100 * (vision + audio) / total:10.1f}%")

# %% [markdown]
# Read the table:
# - E2B spends 168.5M parameters for images (the 16-layer tower and the embedder into the text width)
#   and 307.2M for sound (the conformer and its embedder): 9.3% of everything it stores (most of the
#   rest is the per-layer embedding table, notebook 05). E4B has the same towers, with slightly larger
#   embedders into its wider text model.
# - The 31B's tower is wider and deeper (27 layers, width 1152) and has no audio.
# - The 12B's whole image path is 49.9M parameters, and 35.2M of those are the patch projection
#   and the position table (the rest is the final embedder). Its audio path is one 640 × 3840
#   matrix: 2.5M. Together 0.4% of the model.
#
# The 12B's image embedder, part by part:

# %%
m12 = real["gemma4-12b"]
parts = {"patch_ln1 (6912 weights + 6912 biases)": m12.vision_embedder.patch_ln1,
         "patch_dense (6912 → 3840, with bias)": m12.vision_embedder.patch_dense,
         "patch_ln2 + pos_norm": [m12.vision_embedder.patch_ln2, m12.vision_embedder.pos_norm],
         "embed_vision (3840 → 3840)": m12.embed_vision, "embed_audio (640 → 3840)": m12.embed_audio}
for label, mod in parts.items():
    print(f"{label:>40}: {sum(count(x) for x in (mod if isinstance(mod, list) else [mod])):>12,}")
print(f"{'pos_embedding (1120 × 2 × 3840)':>40}: {m12.vision_embedder.pos_embedding.numel():>12,}")
print(f"{'vision_embedder in all':>40}: {count(m12.vision_embedder):>12,} ({count(m12.vision_embedder) / 1e6:.1f}M)")

# %% [markdown]
# **FLOPs.** Parameters say what a design stores; FLOPs say what it computes for each input. PyTorch's
# `FlopCounterMode` counts the multiply-adds of every matrix product (2 FLOPs each) as the code runs, and
# it runs on `meta` tensors too: we push the photo at the default 280-token budget through the real E2B
# and 31B towers, the real 12B embedder (our `embed_patches`), and one second of sound through the real
# conformer and the 12B's audio embedder, all without allocating a single weight.

# %%
def flops(fn, *args):
    """FLOPs of fn(*args), run on meta tensors: shapes only, no memory, no arithmetic."""
    with torch.device("meta"), FlopCounterMode(display=False) as counter:
        fn(*[a.to("meta") for a in args])
    return counter.get_total_flops()

def e_image(model):  # an E-model's image path: the tower, then its embedder
    return lambda p, q: model.embed_vision(model.vision_tower.encode(p[None], q[None])[0])

def e_audio(model):  # an E-model's audio path: the conformer (called layer by layer), then its embedder
    def run(features):
        tower = model.audio_tower
        x = tower.subsample_conv_projection(features)  # (1, tokens, 1024)
        for layer in tower.layers:
            x = layer(x)
        return model.embed_audio(tower.output_proj(x))
    return run

# %%
e16, epos16 = preprocess_image(photo_path, 280)  # (2430, 768) 16-pixel patches
u48, upos48 = image_patches(photo_path, 280)  # (270, 6912) 48-pixel patches
image_flops = {name: flops(e_image(real[name]), e16, epos16) for name in ("gemma4-e2b", "gemma4-31b")}
image_flops["gemma4-12b"] = flops(lambda p, q: embed_patches(m12, p, q), u48, upos48)
audio_flops = {"gemma4-e2b": flops(e_audio(real["gemma4-e2b"]), torch.zeros(1, frame_count(16000), 128)),
               "gemma4-12b": flops(lambda f: embed_frames(m12, f), torch.zeros(25, 640))}
print(f"photo at 280 tokens: {len(e16)} patches of 16 px (E) / {len(u48)} of 48 px (12B)")
for name, f in image_flops.items():
    print(f"  {name:>11} image path: {f / 1e9:8.1f} GFLOPs")
for name, f in audio_flops.items():
    print(f"  {name:>11} one second of audio: {f / 1e9:8.2f} GFLOPs")

# %% [markdown]
# And the decoder that reads the tokens? A decoder does about 2 FLOPs per parameter per token in its
# layers (the embedding table is a lookup, attention over a few hundred tokens adds little), so for
# the 270 soft tokens of the photo:

# %%
decoder_flops = {name: 2 * count(real[name].layers) * len(u48) for name in image_flops}
print(f"{'model':>11} {'encoder GFLOPs':>14} {'decoder GFLOPs':>14} {'encoder / decoder':>17}")
for name in image_flops:
    print(f"{name:>11} {image_flops[name] / 1e9:14.1f} {decoder_flops[name] / 1e9:14.1f} "
          f"{image_flops[name] / decoder_flops[name]:16.1%}")
fig, ax = plt.subplots(figsize=(6.5, 2.6))
names = list(image_flops)
for i, n in enumerate(names):
    ax.barh(2 * i, image_flops[n] / 1e9, color="#dd8452", label="tower / embedder" if i == 0 else None)
    ax.barh(2 * i + 0.8, decoder_flops[n] / 1e9, color="#4c72b0", label="decoder" if i == 0 else None)
ax.set_yticks([2 * i + 0.4 for i in range(len(names))], names); ax.invert_yaxis(); ax.legend(fontsize=8)
ax.set_xscale("log"); ax.set_xlim(1, 3e4); ax.set_xlabel("GFLOPs for the photo at 280 tokens (log scale)"); plt.show()

# %% [markdown]
# On E2B the tower costs as much as the decoder itself does on the same image: 1028.6 GFLOPs against
# 1006.2, 102.2% of it, because the tower sees 9 times as many positions. On the 31B the tower costs
# 21.4% of what the decoder spends. The 12B's embedder costs 0.4% of its decoder: the image is almost
# free to *encode*, and all the understanding is paid for inside the decoder, whose 48 layers now have
# to do what the tower used to do. Sound likewise: 15.17 GFLOPs per second of audio for the conformer
# and its embedder, against 0.12 for the 12B's single matrix.

# %% [markdown]
# ## 7. What each design can see: change one patch
# In the E-model tower, every patch attends to every other in each of its layers, so every soft token
# can depend on the whole picture. In the 12B each soft token is a function of **its own 48-pixel
# patch and its position only**. We can watch that: replace one 48 × 48 square of the photo with
# noise, run both designs (random weights: a tiny E2B tower and the tiny 12B embedder), and measure how
# far each soft token moved.

# %%
from minigemma.tiny import tiny_config, randomize
e2b = randomize(new_model(*tiny_config("gemma4-e2b")), 0).eval()  # tiny E2B: its tower has 2 layers, random weights
noisy = picture.clone()
noisy[48 * 2:48 * 3, 48 * 3:48 * 4] = torch.rand(48, 48, 3, generator=torch.Generator().manual_seed(1))
views = {}
for name, model, size in (("E2B tower", e2b, 16), ("12B embedder", uni, 48)):
    with torch.no_grad():
        before = model.embed_media("images", [patchify(picture.numpy(), size)])  # (63, D)
        after = model.embed_media("images", [patchify(noisy.numpy(), size)])
    moved = (after - before).norm(dim=-1) / before.norm(dim=-1).mean()  # (63,) relative change
    views[name] = moved.reshape(rows, cols)
    print(f"{name:>12}: {int((moved > 1e-6).sum())} of {len(moved)} soft tokens changed; "
          f"smallest change {moved.min():.2e}, largest {moved.max():.2f}")

# %%
fig, axes = plt.subplots(1, 3, figsize=(11, 3.8))
axes[0].imshow(noisy); axes[0].set_title("patch (3, 2) replaced by noise", fontsize=10); axes[0].axis("off")
for ax, (name, moved) in zip(axes[1:], views.items()):
    im = ax.imshow(moved, cmap="magma", norm=plt.matplotlib.colors.LogNorm(1e-4, 2))
    ax.set_title(name, fontsize=10); ax.set_xlabel("column"); ax.set_ylabel("row")
fig.suptitle("how far each soft token moved (random weights)")
fig.colorbar(im, ax=axes[1:], shrink=0.8, label="relative change (log; 0 shown blank)")
plt.show()

# %% [markdown]
# The 12B embedder moved exactly one soft token, the one over the noise; every other token is
# bit-identical (white: a change of zero has no place on a log scale). The tower moved all 63: with
# two random layers already, the noise leaks into every token. With trained weights the leak would be
# shaped by what the tower learned to attend to, but it would not be zero: that mixing is the point of
# an encoder, the context a patch is seen in.
#
# ## 8. What the decoder must then do
# So in the 12B the *decoder* has to put each patch in context: that a dark stripe in one patch
# continues in the next, that a face spans four patches. Two things help it:
#
# - **Bidirectional attention inside an image** (`use_bidirectional_attention="vision"`, as on 26B and
#   31B; notebook 08's mask pictures). On sliding layers, an image token also sees the image tokens
#   *after* it, within the image; text stays causal and global layers stay causal. (This is the mask
#   of JAX Gemma and of transformers' static-cache `generate`; transformers' `forward` builds another
#   one, as `minigemma/unified.py`'s docstring explains. The package follows the former.)
# - **Many layers**: 48 of width 3840, all of which can spend effort on image tokens.
#
# We run the tiny 12B decoder on a prompt with the photo in it, once with the clean photo and once with
# the noisy one, and record the hidden state after each layer (a forward hook). Which positions has
# the noise reached after the first layer (a sliding layer, window 16 in the tiny model), after the
# first global layer (layer 5), and at the end?

# %%
ids = minigemma.multimodal_prompt(tok, "Look: <|image|> What is it?", images=[(p48, pos48)])
p_noisy, _ = patchify(noisy.numpy(), 48)
states = {}
def keep(i):  # a forward hook that stores layer i's output hidden state
    def hook(module, inputs, out):
        states[i] = out[0] if isinstance(out, tuple) else out
    return hook

hooks = [layer.register_forward_hook(keep(i)) for i, layer in enumerate(uni.layers)]
runs = []
for patches in (p48, p_noisy):
    with torch.no_grad():
        uni(torch.tensor([ids]), images=[(patches, pos48)])
    runs.append({i: s[0].clone() for i, s in states.items()})  # layer -> (T, D)
for h in hooks:
    h.remove()
image_at = [i for i, t in enumerate(ids) if t == minigemma.multimodal.IMAGE_ID]  # positions of the 63 tokens
first, changed_at = image_at[0], image_at[0] + k  # token k of the image holds the noisy patch
print(len(ids), "prompt tokens; image tokens at", image_at[0], "…", image_at[-1], "; noisy patch at", changed_at)
print("layer types:", [t[:4] for t in uni.config.layer_types])

# %%
fig, ax = plt.subplots(figsize=(10, 3.2))
for layer in (0, 5, len(uni.layers) - 1):
    moved = (runs[1][layer] - runs[0][layer]).norm(dim=-1) / runs[0][layer].norm(dim=-1).mean()
    kind = "sliding" if uni.config.layer_types[layer].startswith("sliding") else "global"
    ax.semilogy(moved.clamp_min(1e-8), label=f"after layer {layer} ({kind})")
    before, after = moved[first:changed_at], moved[changed_at + 1:image_at[-1] + 1]
    print(f"after layer {layer:>2}: changed image tokens before the noisy one {int((before > 1e-6).sum())} of "
          f"{len(before)}, after it {int((after > 1e-6).sum())} of {len(after)}; text before the image "
          f"{int((moved[:first] > 1e-6).sum())} of {first}")
ax.axvspan(image_at[0] - 0.5, image_at[-1] + 0.5, color="orange", alpha=0.15, label="image tokens")
ax.axvline(changed_at, color="r", lw=0.8, label="noisy patch")
ax.set_xlabel("position in the prompt"); ax.set_ylabel("relative change"); ax.legend(fontsize=7, ncol=2)
plt.show()

# %% [markdown]
# After layer 0, **all 17 image tokens before** the noisy one have changed: they looked *ahead* inside
# the image, which a causal decoder never allows. After it, only the 15 tokens within the window of 16
# have: the window limits how far back a token looks. The first global layer (5) sees the whole
# prompt, causally, and from there on every image token has moved. The text before the image never
# changes. That is the decoder doing, over its first layers, the mixing the tower did before it; on
# the real 12B the window is 1024 tokens, wider than any single image up to the 560-token budget.
#
# **An earlier decoder-only design.** Adept's [Fuyu-8B](https://www.adept.ai/blog/fuyu-8b) (2023) had
# no image encoder either: image patches were projected linearly into the first layer of the
# transformer, read in raster order with a special image-newline token at the end of each row, with
# no image-specific position embeddings and causal attention throughout. The 12B keeps the linear
# patch projection but adds the LayerNorms, a learned 2D position per patch (no newline tokens) and
# bidirectional attention within the image.

# %% [markdown]
# ## 9. What the linear projection cannot see
# **Brightness and contrast, patch by patch.** `patch_ln1` subtracts each patch's mean and divides by
# its standard deviation before anything else. So if every pixel of a patch is mapped to `a · p + b`
# (with `a > 0`), the soft token does not change (up to the LayerNorm's tiny eps). A uniformly black
# patch, a uniformly white one and a grey one all become the *same* soft token, whatever the weights:

# %%
flat = torch.stack([torch.full((6912,), v) for v in (0.0, 0.5, 1.0)])  # black, grey, white patches
same_place = torch.zeros(3, 2, dtype=torch.long)  # all three at column 0, row 0
e_picture = patchify(picture.numpy(), 16)  # the same pixels as 16-pixel patches, for the E2B tower
with torch.no_grad():
    t = uni.embed_media("images", [(flat, same_place)])
    dim = uni.embed_media("images", [(0.4 * p48 + 0.1, pos48)])  # the whole photo darker, lower contrast
    dim_e = e2b.embed_media("images", [(0.4 * e_picture[0] + 0.1, e_picture[1])])
    base_e = e2b.embed_media("images", [e_picture])
print("black vs white soft token, max difference:", (t[0] - t[2]).abs().max().item())
print(f"photo at 0.4·p + 0.1, relative change of the soft tokens: 12B {(dim - ours_img).norm() / ours_img.norm():.4f}, "
      f"E2B tower {(dim_e - base_e).norm() / base_e.norm():.2f}")

# %% [markdown]
# The black and the white patch give the very same soft token, and the darker, flatter photo moved the
# 12B's tokens by a hair (that is the LayerNorm's eps) while the E2B tower's moved a lot. What
# survives the first LayerNorm is the *pattern* inside a patch: which pixels are brighter than the
# patch's mean, and by how many standard deviations, colour by colour (a uniformly red patch still
# differs from a uniformly blue one, since red and blue deviate from the patch's mean differently).
# How bright the patch was, and how contrasted, is gone before the decoder sees anything; the decoder
# can only guess it from patterns that cross patch boundaries. The E-model towers scale pixels to
# [-1, 1] and project them with no norm first, so they see brightness directly.
#
# **Fewer numbers than pixels.** The dense layer maps 6912 numbers to 3840: at least 3072 directions
# of every (normalised) patch (44% of them) land in its null space: changes of the pixels that no soft
# token can show. Training decides which details those are; the design decides that there must be
# some. The E-model's tower first projects a 768-number patch to width 768
# (E2B) or 1152 (31B): no loss at that step, and the 3 × 3 pooling comes only after the layers have
# mixed the patches.

# %%
print(f"patch numbers {3 * 48 * 48}, embedder width {width}: at least {3 * 48 * 48 - width} directions unseen "
      f"({(3 * 48 * 48 - width) / (3 * 48 * 48):.0%} of the patch)")

# %% [markdown]
# **No pretrained features.** The E-model towers descend from SigLIP ([Zhai et al.,
# 2023](https://arxiv.org/abs/2303.15343)): encoders trained on image-caption pairs so that a picture's
# vector lands near its caption's, features about what a caption would name (notebook 08). The
# conformer comes from speech recognition ([Gulati et al., 2020](https://arxiv.org/abs/2005.08100)).
# Whatever Google did in training (the report gives few details), the 12B keeps no such network: its
# only image-specific weights are one projection and a position table, so recognising a face or
# reading a word in a picture happens inside the decoder, whose weights are shared with text. Google's
# [Gemma 4 technical report](https://huggingface.co/papers/2607.02770)
# describes the 12B as "a unified, encoder-free architecture ... which ingests raw audio and image
# patches"; the benefit is one network for every input, and no encoder cost per image or per second.
#
# ## 10. Sound: raw frames or log-mel and a conformer
# The 12B cuts the 16 kHz waveform into frames of 640 samples (40 ms), pads the last with zeros, and
# maps each frame through a weightless RMSNorm and one matrix. E2B/E4B compute 128 log-mel values every
# 10 ms from 20 ms windows (notebook 10), then the conformer's convolutions keep one frame in four:
# also one token per 40 ms. The same 1.5 s vowel, both ways:

# %%
mel = audio_features(clip, sampling_rate=16000)  # (frames, 128): one every 10 ms
t_ms = np.arange(len(clip)) / 16  # sample -> milliseconds
fig, axes = plt.subplots(2, 2, figsize=(12, 5), gridspec_kw=dict(width_ratios=[2, 1]))
axes[0, 0].plot(t_ms, clip, lw=0.4)
for edge in range(0, len(clip) + 640, 640):
    axes[0, 0].axvline(edge / 16, color="r", lw=0.5)
axes[0, 0].set_title(f"12B: the waveform cut into {len(frames)} frames of 640 samples (red lines every 40 ms)")
axes[0, 1].plot(np.arange(640 * 3) / 16 + 400, clip[6400:6400 + 1920], lw=0.8)
for edge in (400, 440, 480, 520):
    axes[0, 1].axvline(edge, color="r", lw=0.8)
axes[0, 1].set_title("three frames, zoomed: what one 12B token reads")
axes[1, 0].imshow(mel.T, origin="lower", aspect="auto", extent=(0, len(mel) * 10, 0, 128), cmap="magma")
for edge in range(0, len(mel) * 10 + 40, 40):
    axes[1, 0].axvline(edge, color="w", lw=0.3)
axes[1, 0].set_title(f"E-models: {len(mel)} log-mel frames (10 ms); the conformer makes one token per 4 (white lines)")
axes[1, 1].plot(mel[40], lw=0.8); axes[1, 1].set_title("one log-mel frame: 128 bands")
for ax in axes[:, 0]:
    ax.set_xlabel("time (ms)")
axes[1, 0].set_ylabel("mel band"); axes[1, 1].set_xlabel("mel band"); axes[1, 0].set_xlim(0, len(clip) / 16)
plt.tight_layout(); plt.show()

# %% [markdown]
# A frame of raw samples is a stretch of wiggles: the pitch shows as a repeating shape, but every
# number depends on exactly where the wave started. A log-mel frame says how much energy each band
# holds, nothing about phase. Three experiments on the same clip, with the tiny random E2B (log-mel +
# a 2-layer conformer) and the tiny 12B:
#
# 1. **one 40 ms frame replaced by noise**: which tokens move?
# 2. **the clip 10 times quieter**: the 12B's RMSNorm divides each frame by its own loudness;
# 3. **the waveform upside down** (`-x`, which sounds identical): the log-mel spectrum ignores the sign,
#    a linear map of the samples does not.

# %%
noisy_clip = clip.copy()
noisy_clip[640 * 20:640 * 21] = np.random.default_rng(0).uniform(-0.3, 0.3, 640)  # frame 20
variants = {"one frame noisy": noisy_clip, "10× quieter": clip / 10, "upside down": -clip}
with torch.no_grad():
    base = {"E2B": e2b.embed_media("audio", [e2b.audio_features(clip, sampling_rate=16000)]),
            "12B": uni.embed_media("audio", [uni.audio_features(clip, sampling_rate=16000)])}
    for label, wave in variants.items():
        line = []
        for name, model in (("E2B", e2b), ("12B", uni)):
            new = model.embed_media("audio", [model.audio_features(wave, sampling_rate=16000)])
            moved = (new - base[name]).norm(dim=-1) / base[name].norm(dim=-1).mean()
            which = torch.nonzero(moved > 1e-4).flatten().tolist()
            span = f"tokens {which[0]}-{which[-1]}" if which else "none"
            line.append(f"{name}: {len(which):>2} of {len(moved)} moved ({span}), mean change {moved.mean():.3f}")
        print(f"{label:>15} | " + " | ".join(line))

# %% [markdown]
# - **One noisy frame:** the 12B moved token 20 alone. The conformer moved token 20 and every token
#   after it (its attention and convolution look only backwards, so the change flows forward in time).
#   Again the encoder puts each piece of sound in context; in the 12B the decoder must.
# - **Quieter:** the 12B barely moved (0.7% on average, the RMSNorm's eps): each frame is divided by
#   its own loudness, so the 12B cannot hear how loud a frame is, nor that a sound grows louder from
#   one frame to the next (only near silence, where the eps dominates, does level show). The E2B's
#   tokens moved by 42%: the log-mel drops by log 10 in every band and the conformer sees it.
# - **Upside down:** the E2B tokens did not move at all (the magnitude spectrum has no sign); every
#   12B token moved, in fact it flipped sign, because the embedder is an odd function of the samples
#   (`RMSNorm(−x) = −RMSNorm(x)`, and a linear map keeps the minus). The 12B must *learn* that two
#   opposite token sequences are the same sound.

# %% [markdown]
# ## Summary
# - The unified 12B has no vision or audio encoder. A picture becomes one soft token per 48-pixel
#   patch (nine 16-pixel patches merged), through LayerNorm → Linear → LayerNorm, a factorised 2D
#   position (column vector + row vector), LayerNorm, RMSNorm → Linear. Sound becomes one token per
#   640 raw samples through RMSNorm → Linear.
# - Soft-token counts are the same as the E-models': the same budgets and resize for pictures, 25 tokens
#   per second of sound.
# - The towers' cost is what goes: about 0.4% of the 12B's parameters are media-specific, and its
#   image path costs a fraction of a percent of what the decoder spends on the same tokens, where the
#   E2B tower costs as much as its decoder.
# - The price: each soft token is a function of its own patch or frame only; the decoder's
#   bidirectional attention over image tokens (on sliding layers) must put patches in context. The
#   first LayerNorm removes each patch's brightness and contrast, the projection cannot show every
#   direction of a patch, and nothing pretrained tells the model what it is looking at or hearing.
#
# ## Exercises
# Solutions: `../solutions/15_encoder_free_unified_model.py`.
#
# **Exercise 15.1** — Write `merge_patches(patches, positions)`: from an image's 16-pixel patches
# `(9n, 768)` and their `(x, y)` positions (in any order), the 12B's 48-pixel patches `(n, 6912)` and
# their positions `(n, 2)`, numbered row by row (section 2).

# %%
from checks import check_exercise_15_1, check_exercise_15_2, check_exercise_15_3

def merge_patches(patches, positions):
    raise NotImplementedError  # your code here

check_exercise_15_1(merge_patches)

# %% [markdown]
# **Exercise 15.2** — Break it: write `invisible(patches)`, which returns *different* 48-pixel patches
# (some pixel moved by at least 0.1, all still in [0, 1]) that the 12B's embedder cannot tell apart
# from the originals, whatever its weights. The checker uses embedders you have not seen.

# %%
def invisible(patches):
    raise NotImplementedError  # your code here

check_exercise_15_2(invisible)

# %% [markdown]
# **Exercise 15.3** — Write `embedder_parameters(vision_config, text_width)`: the number of parameters
# of the 12B's whole image path (`vision_embedder` and `embed_vision`) for a
# `minigemma.unified.UnifiedVisionConfig` and a decoder width (section 6 lists the parts).

# %%
def embedder_parameters(vision_config, text_width):
    raise NotImplementedError  # your code here

check_exercise_15_3(embedder_parameters)

# %% [markdown]
# ## References
# - Hugging Face transformers, [Gemma4 Unified](https://huggingface.co/docs/transformers/model_doc/gemma4_unified)
#   (documentation) and `models/gemma4_unified/` (`configuration_…`, `modeling_…`, `image_processing_…`,
#   `feature_extraction_…`), the reference `tests/test_unified.py` checks the package against.
# - Google DeepMind, [Gemma 4 12B model card](https://huggingface.co/google/gemma-4-12B) and the
#   [Gemma overview](https://ai.google.dev/gemma/docs/core), which lists the unified 12B.
# - Gemma Team, [Gemma 4 Technical Report](https://huggingface.co/papers/2607.02770) (2026).
# - X. Zhai et al., [Sigmoid Loss for Language Image Pre-Training (SigLIP)](https://arxiv.org/abs/2303.15343)
#   (2023): the pretraining behind the image towers the 12B drops.
# - A. Gulati et al., [Conformer: Convolution-augmented Transformer for Speech Recognition](https://arxiv.org/abs/2005.08100)
#   (2020): the audio tower the 12B drops.
# - R. Bavishi et al. (Adept), [Fuyu-8B: A Multimodal Architecture for AI Agents](https://www.adept.ai/blog/fuyu-8b)
#   (2023): an earlier decoder-only design with linear patch projection.
# - J. L. Ba, J. R. Kiros, G. E. Hinton, [Layer Normalization](https://arxiv.org/abs/1607.06450) (2016).
# - PyTorch, [the meta device](https://pytorch.org/docs/stable/meta.html), on which section 6 builds the real
#   configs; `torch.utils.flop_counter.FlopCounterMode` counts their FLOPs.
# - Notebooks 08 (vision tower) and 10 (audio tower) of this course, for the other road.
