# %% [markdown]
# # 03 · RoPE and Gemma 4's proportional RoPE (p-RoPE)
#
# **What you will learn**
# - RoPE as rotations: each pair of dimensions is a clock hand turning at its own speed;
# - the frequency spectrum of Gemma's sliding layers (base 10,000) and global layers (base 1,000,000);
# - what *proportional* RoPE does on Gemma 4's global layers: only 25 % of the pairs turn, the
#   rest pass through unrotated, and why that helps at long context;
# - what position information is left on global layers at long range;
# - two easy mistakes in implementing p-RoPE, so you can recognise them.
#
# **Prerequisites:** notebook 02 (RoPE in the Gemma 3 decoder).
#
# RoPE comes from [Su et al., 2021 (RoFormer)](https://arxiv.org/abs/2104.09864). Proportional
# RoPE, rotating only part of each head, was studied by
# [Barbero et al., 2024](https://arxiv.org/abs/2410.06205), who found that models use the slowest
# RoPE frequencies as a position-free "semantic" channel and that removing the rotation from them
# helps; Gemma 4 applies it to its global layers.

# %%
import torch
import matplotlib.pyplot as plt
import minigemma
from minigemma import viz
from minigemma.rope import inv_frequencies, cos_sin, apply_rope

_ = torch.manual_seed(0)

# %% [markdown]
# ## 1. A pair of dimensions is a clock hand
# RoPE takes dimensions `i` and `i + d/2` as the x and y of a 2-D point and turns it by
# `position × frequency_i`. Fast pairs go round many times in a few tokens; slow pairs barely move.

# %%
def rope_freqs(d, theta):
    return 1.0 / theta ** (torch.arange(0, d, 2).float() / d)  # (d/2,)

f = rope_freqs(256, 10_000)
fig, axes = plt.subplots(1, 3, figsize=(10, 3.3))
for ax, i in zip(axes, [0, 40, 100]):
    angles = torch.arange(16) * f[i]
    ax.plot(angles.cos(), angles.sin(), "o-", ms=3)
    for p in (0, 1, 15):
        ax.annotate(str(p), (angles[p].cos(), angles[p].sin()), fontsize=8)
    ax.set_title(f"pair {i}: {2 * torch.pi / f[i]:.0f} tokens per turn")
    ax.set_aspect("equal"); ax.set_xlim(-1.2, 1.2); ax.set_ylim(-1.2, 1.2)
fig.suptitle("positions 0-15 of three pairs (sliding layer, base 10,000)")
fig.tight_layout()
plt.show()

# %% [markdown]
# ## 2. Proportional RoPE, from scratch
# Gemma 4's global layers have head dim 512 (256 pairs). With `partial_rotary_factor = 0.25`:
# - the first `int(0.25 · 512 / 2) = 64` pairs rotate, with frequency `θ^(-2i/512)`: the exponent
#   keeps the **full** head dim, so these 64 pairs are exactly the 64 fastest of a full RoPE;
# - the other 192 pairs get frequency **0**: angle 0 at every position, so they pass through untouched.

# %%
def p_rope_freqs(d, theta, proportion):
    n = int(proportion * d / 2)  # pairs that turn
    turning = 1.0 / theta ** (torch.arange(0, 2 * n, 2).float() / d)  # note: / d, the full head dim
    return torch.cat([turning, torch.zeros(d // 2 - n)])  # (d/2,)

local, glob = rope_freqs(256, 1e4), p_rope_freqs(512, 1e6, 0.25)
print("sliding layers:", tuple(local.shape), "pairs, all turning")
print("global layers: ", tuple(glob.shape), "pairs,", int((glob > 0).sum()), "turning,", int((glob == 0).sum()), "standing still")
assert torch.equal(glob[:64], rope_freqs(512, 1e6)[:64])  # the turning pairs are plain RoPE's fastest 64

# %%
fig = viz.plot_rope_spectrum({"sliding, θ=1e4, d=256": local, "global if it were full RoPE": rope_freqs(512, 1e6),
                              "global p-RoPE, θ=1e6, d=512": glob})
plt.show()

# %%
fig = viz.plot_rope_angles({"global layer, p-RoPE (d = 512)": glob}, positions=256)
plt.show()

# %% [markdown]
# The top quarter of the picture changes colour with position; the bottom three quarters stay
# at angle 0 for ever.
#
# ## 3. Why leave most dimensions unrotated?
# Take a query and a key with the same content and move them apart. With full RoPE every pair
# turns, so their score oscillates and shrinks as the distance grows: attention over very long
# distances gets noisy. The unrotated pairs of p-RoPE give a score that does not depend on
# distance at all: a "what" channel that works the same at 10 tokens and at 200,000, while the 64
# turning pairs still tell near from far.

# %%
def score(freqs, vec, distance):
    d = vec.shape[-1]
    q = apply_rope(vec, *cos_sin(freqs, torch.tensor([distance])))
    k = apply_rope(vec, *cos_sin(freqs, torch.tensor([0])))
    return float((q * k).sum())

vec = torch.randn(1, 1, 1, 512)
distances = torch.logspace(0, 5.3, 200).long().unique()
full = [score(rope_freqs(512, 1e6), vec, int(t)) for t in distances]
prop = [score(glob, vec, int(t)) for t in distances]
plt.figure(figsize=(8, 3.2))
plt.semilogx(distances, full, label="full RoPE, θ = 1e6")
plt.semilogx(distances, prop, label="p-RoPE (25 % turning)")
plt.xlabel("distance between query and key (tokens)")
plt.ylabel("score q·k (same content)")
plt.legend(loc="upper left", bbox_to_anchor=(1.01, 1), fontsize=8)  # beside the plot
plt.show()
print(f"score at distance 0: {prop[0]:.0f}; p-RoPE keeps at least {min(prop) / prop[0]:.0%} of it at any distance, "
      f"full RoPE drops to {min(full) / full[0]:.0%}")

# %% [markdown]
# ## 4. What a global layer knows about position at long range
# Say it plainly. On a global layer, 192 of the 256 pairs never turn: they carry no position at
# all. The 64 that turn are the *fastest* 64 of a full RoPE; the slowest of them, pair 63, needs
#
# `2π / 1,000,000^(−126/512) ≈ 188 tokens`
#
# for one full turn. So there is no slow "hour hand" on a global layer: every turning pair wraps
# around at least every 188 tokens, and over a 128K context each one wraps hundreds of times. The
# angles still tell *nearby* keys apart precisely (within a few hundred tokens), but whether a key
# is 5,000 or 50,000 tokens back is not something the layer can read off any single hand. At long
# range, global layers find what they attend to by **content** (the unrotated pairs, whose score
# does not change with distance); order and locality come from the sliding layers below them,
# whose outputs the global layers read. The number, computed rather than typed:

# %%
turning = glob[glob > 0]
slowest = 2 * torch.pi / turning.min()
print(f"slowest turning pair on global layers: one turn every {slowest:.1f} tokens; "
      f"over 131,072 tokens it wraps {131072 / slowest:,.0f} times")
assert 187 < slowest < 189

# %% [markdown]
# ## 5. Two easy mistakes
# - **Shortening the rotary width** to `0.25 · d` and computing the exponent over that width
#   gives different frequencies *and* pairs lane `i` with lane `i + 64` instead of `i + 256`.
# - **Dividing by the rotated width** (`θ^(-2i/128)`) instead of the head dim gives the turning
#   pairs other speeds than the ones the model was trained with: pair 10 turns 5× too slowly.

# %%
wrong = 1.0 / 1e6 ** (torch.arange(0, 128, 2).float() / 128)  # exponent over the rotated width only
print("pair 10: right", f"{glob[10]:.3e}", " wrong", f"{wrong[10]:.3e}", f" ({glob[10] / wrong[10]:.0f}× apart)")

# %% [markdown]
# ## 6. Check against the package and transformers
# `minigemma.rope.inv_frequencies` reads the same `rope_parameters` as a real `config.json`.

# %%
e2b = minigemma.preset("gemma4-e2b")
ours = inv_frequencies(e2b.global_head_dim, e2b.rope_parameters["full_attention"])
assert torch.equal(ours, glob)
assert torch.equal(inv_frequencies(e2b.head_dim, e2b.rope_parameters["sliding_attention"]), local)

from transformers import Gemma4TextConfig  # the reference, for this one check
from transformers.models.gemma4.modeling_gemma4 import Gemma4TextRotaryEmbedding
hf_rope = Gemma4TextRotaryEmbedding(Gemma4TextConfig(num_hidden_layers=6))  # Gemma 4 defaults: 512, 0.25, 1e6
torch.testing.assert_close(ours, hf_rope.full_attention_inv_freq.float())
torch.testing.assert_close(local, hf_rope.sliding_attention_inv_freq.float())
print("notebook == package == transformers")

# %% [markdown]
# ## What you built
# - RoPE frequencies for both layer types, and p-RoPE's 64 turning and 192 standing pairs;
# - a picture of how a same-content score changes with distance, with and without p-RoPE;
# - the 188-token limit of position information on global layers, and two easy mistakes.
#
# ## Exercises
# Solutions: `../solutions/03_rope_and_p_rope.py`.
#
# **Exercise 3.1 — the slowest hand of any layer.** Write `slowest_turn(config, i)`: the number of
# tokens the slowest *turning* pair of layer `i` needs for one full turn. Each layer type has its
# own head size (`config.head_dim_of(i)`) and RoPE settings
# (`config.rope_parameters[config.layer_types[i]]`); `inv_frequencies` may help.

# %%
from checks import check_exercise_3_1, check_exercise_3_2

def slowest_turn(config, i):
    raise NotImplementedError  # your code here: a float

check_exercise_3_1(slowest_turn)

# %% [markdown]
# **Exercise 3.2** — For a config, return how many dimension pairs of its global layers turn.
# (Look at `config.global_head_dim` and `config.rope_parameters["full_attention"]`.)

# %%
def turning_pairs(config):
    raise NotImplementedError  # your code here

check_exercise_3_2(turning_pairs)

# %% [markdown]
# **Exercise 3.3** (open) — On a sliding layer the slowest pair needs about 58,000 tokens for a
# turn, but the layer never sees more than 512 (E2B/E4B) or 1,024 (26B/31B) tokens. How far does
# that pair turn within the window, and what does that make it? Compare with p-RoPE's choice on
# global layers. (Answer in `../solutions/03_rope_and_p_rope.py`.)

# %% [markdown]
# ## References
# - Su et al., [*RoFormer: Enhanced Transformer with Rotary Position Embedding*](https://arxiv.org/abs/2104.09864), 2021.
# - Barbero et al., [*Round and Round We Go! What makes Rotary Positional Encodings useful?*](https://arxiv.org/abs/2410.06205), 2024: p-RoPE.
# - Gemma Team, [*Gemma 3 Technical Report*](https://arxiv.org/abs/2503.19786), 2025: RoPE base 10,000 local, 1,000,000 global.
# - [Gemma 4 E2B model card](https://huggingface.co/google/gemma-4-E2B-it) and transformers'
#   [Gemma 4 documentation](https://huggingface.co/docs/transformers/model_doc/gemma4) (`partial_rotary_factor`, `rope_theta`).
# - Vaswani et al., [*Attention Is All You Need*](https://arxiv.org/abs/1706.03762), 2017: the sinusoidal positions RoPE builds on.
