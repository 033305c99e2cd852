# %% [markdown]
# # 08 · Vision: from a photograph to soft tokens
#
# **What you will learn**
# - how Gemma 4 turns a picture of any shape into a fixed *token budget* (70 … 1120 soft tokens),
#   and the exact resize arithmetic behind it;
# - what a *patch* is, how patches carry their `(x, y)` position, and how the model sees position
#   twice: a learned 2D table and 2D rotary embeddings;
# - the vision encoder, built step by step on a tiny random tower and checked against the package
#   and against transformers;
# - how 3×3 blocks of patches are pooled into the soft tokens the text model reads, and how those
#   tokens are placed in the prompt;
# - what one image costs in KV-cache memory on E2B and on 31B.
#
# **Prerequisites:** notebooks 02 (the decoder), 03 (RoPE) and 06 (the Gemma 4 text model).

# %%
import numpy as np
import torch
import matplotlib.pyplot as plt
import matplotlib.patches as mpatches
from matplotlib import cbook
from PIL import Image
import minigemma
from minigemma.preprocess import BUDGETS, resized_size, preprocess_image, patchify
from minigemma.vision import VisionConfig, VisionTower, rope_tables, rope_2d, pool

_ = torch.manual_seed(0)

# %% [markdown]
# ## 1. The photograph
# Matplotlib ships a portrait of Grace Hopper, the computer scientist who wrote the first compiler.
# It is our test picture: a real photograph, not square, with fine detail (the insignia, the
# face) and flat regions (the background).

# %%
photo_path = cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)
photo = np.array(Image.open(photo_path).convert("RGB"))  # (H, W, 3) uint8
print("photo:", photo.shape, photo.dtype)
fig, ax = plt.subplots(figsize=(3, 3.5))
ax.imshow(photo); ax.set_title(f"{photo.shape[0]} × {photo.shape[1]} pixels"); ax.axis("off")
plt.show()

# %% [markdown]
# ## 2. The token budget and the resize arithmetic
# The text model pays for every image token (attention, KV cache), so the user picks a **budget**:
# at most 70, 140, 280 (the default), 560 or 1120 soft tokens per image. Each soft token will be
# the average of a 3×3 block of 16×16-pixel patches, so a budget `T` allows `9T` patches, that is
# `9T · 256` pixels.
#
# The image is scaled so that its *area* matches that pixel count, keeping the aspect ratio:
# `s = √(9T·256 / (H·W))`. Each side `s·H`, `s·W` is then rounded **down** to a multiple of
# `3 · 16 = 48` pixels, so that the patch grid splits into whole 3×3 blocks. Rounding down keeps
# the patch count within the budget; the price is that a few tokens of the budget go unused.
# Very thin images would round one side to 0; they get one row (or column) of blocks instead,
# as long as the aspect ratio allows and at most `T` blocks long.

# %%
H, W = photo.shape[:2]
from transformers.models.gemma4.image_processing_pil_gemma4 import get_aspect_ratio_preserving_size
print(f"{'budget':>6} {'scale':>6} {'resized':>11} {'patches':>8} {'tokens':>6} {'unused':>6}")
for T in BUDGETS:
    h, w = resized_size(H, W, T)
    assert (h, w) == get_aspect_ratio_preserving_size(H, W, 16, 9 * T, 3)  # transformers agrees
    s = (9 * T * 256 / (H * W)) ** 0.5
    tokens = (h // 16) * (w // 16) // 9
    print(f"{T:>6} {s:>6.3f} {f'{h} × {w}':>11} {(h // 16) * (w // 16):>8} {tokens:>6} {T - tokens:>6}")

# %% [markdown]
# The picture below draws each resized frame to scale. Past 280 tokens the photograph
# (600 × 512) is *enlarged*: at 1120 tokens the model sees 1728 × 1440 pixels, interpolated
# from the original. A budget buys resolution only up to what the photo holds.

# %%
fig, ax = plt.subplots(figsize=(5, 5))
colours = plt.cm.viridis(np.linspace(0, 0.9, len(BUDGETS)))
for T, c in zip(BUDGETS, colours):
    h, w = resized_size(H, W, T)
    ax.add_patch(mpatches.Rectangle((0, 0), w, h, fill=False, lw=2, color=c, label=f"{T} tokens: {h}×{w}"))
ax.add_patch(mpatches.Rectangle((0, 0), W, H, fill=False, lw=2, ls="--", color="k", label=f"original {H}×{W}"))
ax.set_xlim(0, 1800); ax.set_ylim(1800, 0); ax.set_aspect("equal")
ax.set_xlabel("width (pixels)"); ax.set_ylabel("height (pixels)"); ax.legend(fontsize=8)
ax.set_title("resized size per budget, to scale")
plt.show()

# %% [markdown]
# ## 3. Patches and their positions
# After the resize, pixels are scaled to [0, 1] (`value / 255`, no mean or std: Gemma 4 was
# trained that way; the tower itself maps to [-1, 1]). The image is cut into 16×16 patches, read
# **row by row**; each patch is flattened row by row with its three colour channels last, giving
# `16·16·3 = 768` numbers. Its position is `(x, y)` = (column, row) in the patch grid.
#
# The grid below is the 280-token version: thin lines are patches, thick lines the 3×3 blocks
# that become soft tokens.

# %%
h, w = resized_size(H, W, 280)
resized = np.array(Image.fromarray(photo).resize((w, h), Image.BICUBIC))
fig, ax = plt.subplots(figsize=(4.5, 5.4))
ax.imshow(resized)
for x in range(0, w + 1, 16):
    ax.axvline(x - 0.5, color="w", lw=1.2 if x % 48 == 0 else 0.3)
for y in range(0, h + 1, 16):
    ax.axhline(y - 0.5, color="w", lw=1.2 if y % 48 == 0 else 0.3)
ax.set_title(f"280 tokens: {h // 16} × {w // 16} patches, {h // 48} × {w // 48} tokens")
ax.axis("off")
plt.show()

# %% [markdown]
# `preprocess_image` does all of this; we check it against transformers' processor. Only real
# patches come back: transformers pads every image to `9T` patches with position `(-1, -1)`; our
# tower takes each image at its own size instead, so the padding is cut off for the comparison.

# %%
patches, positions = preprocess_image(photo_path, 280)
print("patches", tuple(patches.shape), patches.dtype, " positions", tuple(positions.shape), positions.dtype)
print("first positions (x, y):", positions[:3].tolist(), "…", positions[-1].tolist())
from transformers.models.gemma4.image_processing_pil_gemma4 import Gemma4ImageProcessorPil
from transformers.image_utils import load_image
ref = Gemma4ImageProcessorPil(max_soft_tokens=280)(load_image(photo_path), return_tensors="pt")
n = patches.shape[0]
assert torch.equal(ref["image_position_ids"][0, :n], positions) and (ref["image_position_ids"][0, n:] == -1).all()
print("largest difference from transformers:", (ref["pixel_values"][0, :n] - patches).abs().max().item())
print(f"at 280 tokens: {h} × {w} = {h * w:,} pixels -> {n:,} patches -> {n // 9} soft tokens")

# %% [markdown]
# **Why patches, and why pool them?** Attention compares every position with every other, so its
# cost grows with the square of the count. Single pixels would be hopeless (a 864 × 720 image has
# 622,080 of them); 16×16 patches bring that to 2,430 for the encoder, which attends within the
# image only. The text model is the expensive part — it keeps every position in its KV cache and
# sees it again for every generated token — so the encoder hands it 9 times fewer vectors: each
# soft token summarises a 48 × 48-pixel square that the encoder has already put in context.
#
# One patch, un-flattened back into a 16×16 picture, next to where it sits in the photo:

# %%
k = 7 * (w // 16) + 12  # row 7, column 12
fig, axes = plt.subplots(1, 2, figsize=(6, 2.6))
axes[0].imshow(patches[k].reshape(16, 16, 3).numpy()); axes[0].set_title(f"patch {k}, position {positions[k].tolist()}")
x, y = positions[k].tolist()
axes[1].imshow(resized); axes[1].add_patch(mpatches.Rectangle((16 * x, 16 * y), 16, 16, color="r", fill=False, lw=2))
axes[1].set_title("where it sits"); [a.axis("off") for a in axes]
plt.show()

# %% [markdown]
# ## 4. A budget slider
# Move the slider to see the resized photograph, its patch grid and its token count for each
# budget (run the notebook for the live widget). The static figure after it shows all five.

# %%
def show_budget(T, ax=None):
    h, w = resized_size(H, W, T)
    img = np.array(Image.fromarray(photo).resize((w, h), Image.BICUBIC))
    ax = ax or plt.subplots(figsize=(3.5, 4))[1]
    ax.imshow(img)
    for x in range(0, w + 1, 48):
        ax.axvline(x - 0.5, color="w", lw=0.6)
    for y in range(0, h + 1, 48):
        ax.axhline(y - 0.5, color="w", lw=0.6)
    ax.set_title(f"{T}: {h}×{w}, {h * w // 256} patches,\n{h * w // 256 // 9} tokens", fontsize=8)
    ax.axis("off")

# %%
# NBVAL_IGNORE_OUTPUT
import ipywidgets as widgets
widgets.interactive(lambda budget: (show_budget(budget), plt.show()),
                    budget=widgets.SelectionSlider(options=BUDGETS, value=280, description="budget"))

# %%
fig, axes = plt.subplots(1, 5, figsize=(12, 3.2))
for T, ax in zip(BUDGETS, axes):
    show_budget(T, ax)
plt.show()

# %% [markdown]
# ## 5. Pooling: which patches become which token
# After the encoder (next sections), every 3×3 block of patches is **averaged** into one soft
# token. The blocks are found from the *positions*, not from the order of the patches: patch
# `(x, y)` of an image `w` patches wide belongs to token
#
# `t = x // 3 + (w // 3) · (y // 3)`,
#
# so tokens are numbered row by row over the block grid. Each colour below is one token of a
# small 144 × 240-pixel image (9 × 15 patches → 3 × 5 = 15 tokens).

# %%
small_pos = patchify(np.zeros((144, 240, 3), np.float32))[1]  # (135, 2) positions
token = small_pos[:, 0] // 3 + (15 // 3) * (small_pos[:, 1] // 3)  # (135,) token of each patch
grid = token.reshape(9, 15)
fig, ax = plt.subplots(figsize=(6, 3.4))
im = ax.imshow(grid, cmap="tab20")
for (yy, xx), t in np.ndenumerate(grid.numpy()):
    ax.text(xx, yy, t, ha="center", va="center", fontsize=7)
ax.set_xlabel("x (patch column)"); ax.set_ylabel("y (patch row)")
fig.colorbar(im, ax=ax, label="soft token"); ax.set_title("patch → soft token (3×3 blocks)")
plt.show()

# %% [markdown]
# The package's `pool` does the average with a one-hot matrix (which token each patch joins)
# so it is one matrix product; averaging a hidden state that equals the token id itself gives
# back the ids, a quick check that the formula and `pool` agree:

# %%
hidden = token.float()[None, :, None]  # (1, 135, 1): each patch carries its token id
pooled = pool(hidden, small_pos[None]).flatten().tolist()
print(len(small_pos), "patches ->", len(pooled), "tokens:", [round(v, 3) for v in pooled])

# %% [markdown]
# ## 6. Position, twice: a 2D table and 2D RoPE
# A transformer sees a set, so every patch must carry its position. Gemma 4's tower does it twice:
#
# 1. **A learned 2D table.** Two tables of `10240 × width`: row `x` of the first plus row `y` of
#    the second is added to the patch embedding. 10240 rows cover any side the budgets allow (the
#    longest, a 1-block-high strip at 1120 tokens, is 3360 patches).
# 2. **2D rotary embeddings** in every attention layer (base 100). Notebook 03's RoPE rotates
#    pairs of dimensions by `position · θ^(-2i/d)`. Here the head is cut in two halves: the
#    first half rotates with the **column** `x`, the second with the **row** `y`, each half as an
#    ordinary RoPE of dimension `d/2`.
#
# ```
# head dims:  [ 0 ........ d/2-1 | d/2 ........ d-1 ]
#              RoPE(x), pairs (i, i+d/4)   RoPE(y), pairs (i, i+d/4)
# ```
#
# The score between a query at `(0, 0)` and the same vector as key at `(dx, dy)` therefore
# depends on both offsets. Below for head dim 64 (the E2B tower's), a random vector:

# %%
hd, span = 64, 24
offsets = torch.stack(torch.meshgrid(torch.arange(-span, span + 1), torch.arange(-span, span + 1),
                                     indexing="xy"), -1).reshape(1, -1, 2)  # (1, n, 2) as (x, y)
v = torch.randn(1, 1, 1, hd).expand(1, 1, offsets.shape[1], hd)  # the same vector everywhere
keys = rope_2d(v, rope_tables(hd, 100.0, offsets, torch.float32))  # (1, 1, n, hd)
query = rope_2d(v[:, :, :1], rope_tables(hd, 100.0, torch.zeros(1, 1, 2, dtype=torch.long), torch.float32))
scores = (keys @ query.transpose(-1, -2)).reshape(2 * span + 1, 2 * span + 1)
print(f"longest side any budget allows: a strip 1 block high at {max(BUDGETS)} tokens = {3 * max(BUDGETS)} patches")
fig, ax = plt.subplots(figsize=(4.6, 3.8))
im = ax.imshow(scores, extent=(-span, span, span, -span), cmap="RdBu_r")
fig.colorbar(im, ax=ax, label="q(0,0) · k(dx,dy)")
ax.set_xlabel("dx (columns)"); ax.set_ylabel("dy (rows)"); ax.set_title("2D RoPE: score vs offset")
plt.show()

# %% [markdown]
# The score is largest at `(0, 0)` and changes along both axes: horizontal neighbours and
# vertical neighbours are told apart, and, as in 1D RoPE, only the *offset* matters.
# With base 100 (not 10,000) the frequencies are high enough to vary within a few dozen patches,
# the scale of an image rather than of a long text.
#
# ## 7. The encoder, step by step
# **Where the tower comes from: SigLIP.** CLIP-style pretraining teaches an image encoder and a
# text encoder together, on pairs of a picture and its caption, so that a picture's vector lands
# near its own caption's. CLIP scores every image of a batch against every caption and asks, with
# a softmax over the whole batch, "which of these captions is mine?". SigLIP
# ([Zhai et al., 2023](https://arxiv.org/abs/2303.15343)) replaces that softmax by a **sigmoid per
# pair**: each image–caption pair is its own yes/no question ("do these two belong together?"),
# with a learned temperature and bias. No pair needs the rest of the batch to be normalised, which
# makes the loss cheaper to spread over many devices and lets it work well at small and large batch
# sizes alike. An image encoder trained this way outputs vectors about what a caption would name,
# which is what a language model wants to read. PaliGemma
# ([Beyer et al., 2024](https://arxiv.org/abs/2407.07726)) therefore put a SigLIP encoder in front
# of Gemma, and Gemma 3 kept it ("a 400M variant of the SigLIP encoder",
# [Gemma 3 report](https://arxiv.org/abs/2503.19786)). Gemma 4's towers keep that ViT shape —
# 16×16 patches, a Transformer encoder, soft tokens for the language model — with Gemma's own
# layers inside (2D RoPE, QK-norm, sandwich norms); Google has not published how they were
# pretrained.
#
# Two more parts appear in the real towers and in our tiny one below:
# - A **clipped linear** (`minigemma/clipped.py`, transformers' `Gemma4ClippableLinear`) is a
#   bias-free Linear whose *input* is clamped to `[input_min, input_max]` before the product and
#   whose *output* is clamped to `[output_min, output_max]` after it: four scalars per projection,
#   stored in the checkpoint. The E2B/E4B towers (and the audio tower, notebook 10) have them
#   (`use_clipped_linears`); the 26B/31B towers do not. However unusual the picture, no value
#   entering or leaving a projection can leave its bounds. Google has not documented how the bounds
#   were chosen; they are part of the function, so a model that skips the clamps computes other
#   numbers.
# - **Standardisation** (`standardize`, 26B/31B towers) is the tower's last step: each channel of
#   the soft tokens has a stored bias subtracted and is multiplied by a stored scale (`std_bias`,
#   `std_scale`, one of each per channel), like a normalisation whose statistics were frozen into
#   the checkpoint.

# %%
from minigemma.clipped import ClippedLinear
demo = ClippedLinear(3, 2, clip=True)  # 3 inputs, 2 outputs
with torch.no_grad():
    demo.linear.weight.copy_(torch.tensor([[1.0, 0.0, 0.0], [1.0, 1.0, 1.0]]))
    demo.input_min.fill_(-1.0); demo.input_max.fill_(1.0); demo.output_min.fill_(-2.0); demo.output_max.fill_(2.0)
    x3 = torch.tensor([3.0, 2.0, 0.5])
    print("plain linear:", demo.linear(x3).tolist(), "| clipped:", demo(x3).tolist(),
          "(input clamped to [1, 1, 0.5], then output 2.5 clamped to 2)")

# %% [markdown]
# We take a tiny random tower from transformers (48 wide, 3 layers, 4 heads of 12, clipped
# linears, standardisation on) with **every** weight and buffer randomised, copy its weights into
# the package's `VisionTower`, and then compute the same thing by hand.

# %%
from transformers import Gemma4VisionConfig
from transformers.models.gemma4.modeling_gemma4 import Gemma4VisionModel
ref_tower = Gemma4VisionModel(Gemma4VisionConfig(hidden_size=48, intermediate_size=80, num_hidden_layers=3,
    num_attention_heads=4, num_key_value_heads=4, head_dim=12, position_embedding_size=64,
    use_clipped_linears=True, standardize=True)).eval()
gen = torch.Generator().manual_seed(0)
with torch.no_grad():
    for name, t in ref_tower.state_dict(keep_vars=True).items():
        if name.endswith(("_min", "_max")):  # clip bounds that actually clip
            t.fill_((1 if name.endswith("_max") else -1) * (0.6 + torch.rand((), generator=gen).item()))
        else:
            t.copy_((1.0 if "norm" in name or "std_scale" in name else 0.0) + 0.2 * torch.randn(t.shape, generator=gen))
tower = VisionTower(VisionConfig.from_dict(ref_tower.config.to_dict()))
tower.load_state_dict(ref_tower.state_dict(), strict=True)
print(tower.config)

# %% [markdown]
# The real towers differ only in their sizes (JAX `gemma` 4.0.1, `gm/nn/gemma4/vision/`; the
# presets are in `minigemma.presets.VISION_PRESETS`):
#
# | tower of | width | layers | heads × head dim | MLP | clipped linears | standardise |
# |---|---|---|---|---|---|---|
# | E2B, E4B | 768 | 16 | 12 × 64 | 3072 | yes | no |
# | 26B-A4B, 31B | 1152 | 27 | 16 × 72 | 4304 | no | yes |
#
# Our tiny tower has the E2B switches *and* standardisation, so both code paths run.
#
# **Step 1, patch embedding.** Pixels go from [0, 1] to [-1, 1], a linear map takes 768 numbers to
# the tower width, and the two position rows are added. We use the 70-token photo.

# %%
p70, pos70 = preprocess_image(photo_path, 70)
emb = tower.patch_embedder
x = (2 * (p70 - 0.5)) @ emb.input_proj.weight.T  # (n, 48)
x = x + emb.position_embedding_table[0][pos70[:, 0]] + emb.position_embedding_table[1][pos70[:, 1]]
print("patch embeddings:", tuple(x.shape))

# %% [markdown]
# **Step 2, the layers.** Each is a Gemma sandwich: RMSNorm → attention → RMSNorm, added to the
# residual; RMSNorm → gated GELU MLP → RMSNorm, added. Inside attention: queries and keys are
# RMS-normed per head and turned by 2D RoPE, values are normed without a weight, the scale is 1
# (the norms already fix the size), and every patch sees every patch of its image. Every
# projection is a clipped linear (section 7's start): its input and output are clamped to the
# bounds stored for it.

# %%
rot = rope_tables(12, 100.0, pos70[None], torch.float32)
h_ = x[None]  # (1, n, 48): a batch of one image
with torch.no_grad():
    for layer in tower.encoder.layers:
        h_ = layer(h_, rot)
q_proj = tower.encoder.layers[0].self_attn.q_proj
print("clip bounds of layer 0's q_proj input:", q_proj.input_min.item(), q_proj.input_max.item())

# %% [markdown]
# **Step 3, pool, scale, standardise.** Average each 3×3 block (section 5), multiply by
# `√width` (√48 here, √768 on E2B), and — on towers with `standardize` (26B and 31B) — subtract
# a stored bias and multiply by a stored scale, per channel.

# %%
with torch.no_grad():
    tokens = pool(h_, pos70[None])[0] * 48 ** 0.5  # (n/9, 48)
    tokens = (tokens - tower.std_bias) * tower.std_scale
    package = tower([(p70, pos70)])
    padded_ref = ref_tower(pixel_values=p70[None], pixel_position_ids=pos70[None]).last_hidden_state
print("soft tokens:", tuple(tokens.shape))
scale = padded_ref.abs().max().item()  # soft tokens reach ~100 here: compare relative to that
print("by hand = package:", torch.allclose(tokens, package, rtol=0, atol=1e-5 * scale))
print("package = transformers:", torch.allclose(package, padded_ref, rtol=0, atol=1e-5 * scale))
assert torch.allclose(tokens, package, rtol=0, atol=1e-5 * scale)
assert torch.allclose(package, padded_ref, rtol=0, atol=1e-5 * scale)

# %% [markdown]
# ## 8. Into the text model
# The tower's soft tokens live in the tower's width (768 on E2B, 1152 on 31B). The **multimodal
# embedder** maps them into the text width: an RMSNorm *without* a weight (every token on the same
# scale), then one linear map. Those vectors are then written into the prompt, where the text
# reserved one **placeholder** per soft token:
#
# ```
# <bos> Describe  <start_of_image> <|image|> <|image|> … <|image|> <end_of_image>  briefly.
#                 (255999)         (258880) × n/9 patches    (258882)
# ```
#
# The placeholders are never looked up in the embedding table: they become the pad id first (and
# the per-layer embeddings of E2B/E4B are computed from that pad id too); then their rows are
# overwritten by the soft tokens, in order. `multimodal_prompt` builds the ids from a text with
# one `<|image|>` marker per picture, exactly as transformers' processor writes them.

# %%
from minigemma.weights import resolve
from minigemma.multimodal import BOI_ID, IMAGE_ID, EOI_ID
tok = minigemma.Tokenizer.from_file(resolve("gemma3-270m"))  # the text pieces (same vocabulary family)
ids = minigemma.multimodal_prompt(tok, "Describe <|image|> briefly.", images=[(p70, pos70)])
names = {BOI_ID: "<start_of_image>", EOI_ID: "<end_of_image>", IMAGE_ID: "<|image|>"}
shown = [names.get(i) or repr(tok.decode([i])) for i in ids]
print(len(ids), "ids:", " ".join(shown[:5]), "…", " ".join(shown[-5:]))
print("image placeholders:", ids.count(IMAGE_ID), "= patches / 9 =", len(p70) // 9)

# %% [markdown]
# Now the whole path on a tiny random model that transformers builds and saves, E2B-style (per-layer
# embeddings, KV sharing) with bidirectional image attention switched on, our clipped tower from
# section 7 inside. We read the saved directory with the package's loader, which checks every
# tensor of the text model, the tower and the embedder by name and shape.

# %%
import tempfile
from pathlib import Path
from transformers import Gemma4Config, Gemma4ForConditionalGeneration, Gemma4TextConfig
from transformers.utils.logging import disable_progress_bar
disable_progress_bar()  # the stored outputs should not show stuck progress bars
from minigemma.weights import read_hf_directory, build_model
text_cfg = Gemma4TextConfig(vocab_size=262144, hidden_size=32, intermediate_size=64, num_hidden_layers=4,
    num_attention_heads=2, num_key_value_heads=1, head_dim=16, global_head_dim=32, sliding_window=16,
    layer_types=["sliding_attention", "full_attention"] * 2, num_kv_shared_layers=2, hidden_size_per_layer_input=8,
    use_bidirectional_attention="vision", initializer_range=0.2)
hf_model = Gemma4ForConditionalGeneration(Gemma4Config(text_config=text_cfg, vision_config=ref_tower.config)).eval()
hf_model.model.vision_tower.load_state_dict(ref_tower.state_dict())
torch.nn.init.normal_(hf_model.model.embed_vision.embedding_projection.weight, std=1.0)
folder = Path(tempfile.mkdtemp())
hf_model.save_pretrained(folder)
config, state, towers = read_hf_directory(folder, progress=False)
model = build_model(config, state, **towers)
print(type(model.vision_tower).__name__, "+", type(model.embed_vision).__name__, "loaded;",
      sum(k.startswith(("vision_tower.", "embed_vision.")) for k in state), "vision tensors")

# %%
x = torch.tensor([ids])
types = (x == IMAGE_ID).long()  # transformers marks image tokens for its bidirectional mask
with torch.no_grad():
    ours = model(x, images=[(p70, pos70)])
    theirs = hf_model(input_ids=x, pixel_values=p70[None], image_position_ids=pos70[None], mm_token_type_ids=types).logits
same = torch.allclose(ours, theirs, rtol=0, atol=1e-4 * theirs.abs().max().item())
print("logits", tuple(ours.shape), "equal to transformers' (1e-4 relative):", same)
assert same

# %% [markdown]
# **Image tokens look both ways.** With `use_bidirectional_attention = "vision"` (the 26B and 31B
# models), the tokens of one image see each other *forwards* too — an image has no reading order —
# but only on sliding layers; global layers stay causal. Below, the masks of a short prompt
# (4 text tokens, an image of 6 tokens, 3 text tokens) with a window of 5: text stays causal,
# the image block is a full square, cut by the window on the sliding layer.

# %%
from minigemma.attention import attention_mask
from minigemma.multimodal import vision_blocks
demo = torch.tensor([[2, 10, 11, BOI_ID] + [IMAGE_ID] * 6 + [EOI_ID, 12, 13]])
pos = torch.arange(demo.shape[1])
masks = {"sliding layer (window 5)": attention_mask(pos, pos, 5, vision_blocks(demo)),
         "global layer (causal)": attention_mask(pos, pos)}
fig, axes = plt.subplots(1, 2, figsize=(9, 3.6), layout="constrained")
for ax, (title, m) in zip(axes, masks.items()):
    im = ax.imshow(m.float(), cmap="Blues", vmin=0, vmax=1)
    ax.set_title(title); ax.set_xlabel("key position"); ax.set_ylabel("query position")
fig.colorbar(im, ax=axes, label="may attend (1) or not (0)")
plt.show()

# %% [markdown]
# Read the left picture row by row: a text token (rows 0–3, 10–12) sees only earlier tokens, and
# only the last five; an image token (rows 4–9 are the image's placeholders after
# `<start_of_image>`) also sees the image tokens *after* it; the window only limits how far
# *back* a token looks. On the global layer on the right, every token, image or not, sees exactly
# the tokens before it.
#
# **Try it without Gemma 4's weights.** `minigemma.tiny_random("gemma4-e2b")` builds E2B's
# structure at toy width (its vision tower with clipped linears, per-layer embeddings, KV sharing,
# the real Gemma tokenizer) with **random weights**. One call then takes an image file to generated
# tokens along the path a real E2B takes; the words are noise. With a real checkpoint,
# `minigemma.load("path/to/gemma-4-e2b-it")` replaces the first line: the next cell does that.

# %%
tiny, tiny_tok = minigemma.tiny_random("gemma4-e2b", seed=0)
picture = minigemma.preprocess_image("../data/media/photo.jpg", max_soft_tokens=70)  # our drawn scene
print("patches:", tuple(picture[0].shape), "->", len(picture[0]) // 9, "soft tokens")
print(repr(minigemma.generate(tiny, tiny_tok, "Describe <|image|> in one line.", images=[picture],
                              max_new_tokens=8)))

# %% [markdown]
# ### Run it on the real model (optional)
# With a Gemma 4 checkpoint on disk, start Jupyter with `MINIGEMMA_GEMMA4=path/to/gemma-4-e2b-it`
# and this cell captions the same photo (`data/media/photo.jpg`, at the default 280-token budget)
# in the model's chat format; without it, it prints how to enable it and skips (the same cell as
# in notebooks 06, 09, 10 and 13).

# %%
from real_weights import ask, real_gemma4
real = real_gemma4()  # (model, tokenizer) from $MINIGEMMA_GEMMA4, or None after a one-line note
if real:
    photo_item = minigemma.preprocess_image("../data/media/photo.jpg")
    print(ask(*real, "Describe <|image|> in one sentence.", images=[photo_item]))

# %% [markdown]
# ## 9. What an image costs in KV memory
# Every soft token is a position in the text model: it is stored in the KV cache like a word. The
# cost per token differs a lot between the models: E2B has 15 non-shared layers with 1 KV head,
# and its sliding layers keep only 512 positions; 31B has 60 layers with 16 (sliding) or 4
# (global, head dim 512) KV heads, with a 1024-token window. Below: the cache bytes (bfloat16)
# that a 280-token image adds to a prompt already holding 2,000 tokens (past every window).

# %%
from minigemma import kv_cache_bytes
before = 2000
costs = {}
for name in ("gemma4-e2b", "gemma4-e4b", "gemma4-26b-a4b", "gemma4-31b"):
    c = minigemma.preset(name)
    costs[name] = kv_cache_bytes(c, before + 280) - kv_cache_bytes(c, before)
    naive = kv_cache_bytes(c, before + 280, naive=True) - kv_cache_bytes(c, before, naive=True)
    print(f"{name:>15}: {costs[name] / 2**20:6.1f} MiB (every layer keeping every position: {naive / 2**20:6.1f} MiB)")
fig, ax = plt.subplots(figsize=(5, 2.2))
ax.barh(list(costs), [v / 2**20 for v in costs.values()], color="#4c72b0")
ax.set_xlabel("MiB of KV cache for one 280-token image"); plt.show()
per_token = {name: cost / 280 / 2**10 for name, cost in costs.items()}  # KiB per soft token
print(f"per image token: E2B {per_token['gemma4-e2b']:.0f} KiB, 31B {per_token['gemma4-31b']:.0f} KiB; "
      f"31B / E2B: {costs['gemma4-31b'] / costs['gemma4-e2b']:.0f}×")

# %% [markdown]
# Past the window, the sliding layers hold a fixed number of positions, so only global layers
# grow with the image: on E2B that is 3 non-shared global layers × 1 KV head × 512 dims, keys and
# values, 2 bytes each: `3 · 2 · 512 · 2 = 6 KiB` per image token, 1.6 MiB for 280 tokens. On 31B
# it is 10 global layers × 4 KV heads × 512 dims, and as keys equal values there
# (`attention_k_eq_v`) our cache stores the values alone (notebook 04): `10 · 4 · 512 · 2` = 40 KiB
# per token, 7 times E2B, as printed above. Before the window is full,
# every sliding layer pays for the image too, which is why a picture early in a chat costs more.
# A budget of 1120 tokens costs four times these figures.
#
# ## Summary
# - A picture becomes `n` patches of 768 numbers with `(x, y)` positions. The budget `T` caps `n`
#   at `9T`; the resize keeps the aspect ratio and makes both sides multiples of 48 pixels.
# - The tower embeds the patches, adds a learned 2D position, runs a Gemma-style encoder with 2D
#   RoPE (columns in one half of each head, rows in the other), and averages 3×3 blocks into
#   `n/9` soft tokens, scaled by `√width` and, on the large towers, standardised.
# - The embedder norms them and projects them into the text width; they replace the placeholder
#   tokens of the prompt, whose text embedding and per-layer inputs are the pad token's.
# - Every soft token is a position of the text model: it costs KV memory like a word, from about
#   6 KiB (E2B) to 40 KiB (31B) per token once the sliding windows are full.
#
# ## Exercises
# Solutions: `../solutions/08_vision.py`.
#
# **Exercise 8.1** — Write `resized(height, width, budget)`: the `(h, w)` Gemma 4 resizes an image
# to for a token budget (section 2, including the thin-image rule).

# %%
from checks import check_exercise_8_1, check_exercise_8_2

def resized(height, width, budget):
    raise NotImplementedError  # your code here

check_exercise_8_1(resized)

# %% [markdown]
# **Exercise 8.2** — Write `token_of_patch(positions)`: for an image's `(n, 2)` positions `(x, y)`
# (in any order), the `(n,)` index of the soft token each patch is pooled into (section 5).

# %%
def token_of_patch(positions):
    raise NotImplementedError  # your code here

check_exercise_8_2(token_of_patch)

# %% [markdown]
# ## References
# - A. Dosovitskiy et al., [An Image is Worth 16x16 Words: Transformers for Image Recognition at
#   Scale](https://arxiv.org/abs/2010.11929) (2020) — the patch-based vision transformer.
# - X. Zhai et al., [Sigmoid Loss for Language Image Pre-Training (SigLIP)](https://arxiv.org/abs/2303.15343)
#   (2023) — the pretraining behind Gemma's vision encoders.
# - L. Beyer et al., [PaliGemma: A versatile 3B VLM for transfer](https://arxiv.org/abs/2407.07726)
#   (2024) — a SigLIP encoder in front of Gemma; Gemma Team, [Gemma 3 Technical
#   Report](https://arxiv.org/abs/2503.19786) (2025) — the same encoder in Gemma 3.
# - J. Su et al., [RoFormer: Enhanced Transformer with Rotary Position Embedding](https://arxiv.org/abs/2104.09864)
#   (2021) — RoPE, here applied per axis.
# - Hugging Face transformers, [Gemma 4 model documentation](https://huggingface.co/docs/transformers/model_doc/gemma4)
#   and `models/gemma4/image_processing_pil_gemma4.py`, `modeling_gemma4.py` — the reference we test against.
# - Google DeepMind, [`gemma` (JAX)](https://github.com/google-deepmind/gemma), `gm/nn/gemma4/vision/` — the
#   tower sizes of the four models.
