# %% [markdown]
# # 03 · RoPE and Gemma 4's proportional RoPE (p-RoPE)
#
# **What you will learn**
# - RoPE as rotations: each pair of dimensions is a clock hand turning at its own speed;
# - the frequency spectrum of Gemma's sliding layers (base 10,000) and global layers (base 1,000,000);
# - what *proportional* RoPE does on Gemma 4's global layers: only 25 % of the pairs turn, the
#   rest pass through unrotated, and why that helps at long context;
# - what position information is left on global layers at long range;
# - two easy mistakes in implementing p-RoPE, so you can recognise them;
# - how Gemma 3 (positional interpolation) and Gemma 4 (p-RoPE, few global layers) reach long
#   contexts, what a 128K or 256K-token prompt costs each Gemma 4 model, and chunked prefill.
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
# ## 7. Long context: how Gemma 3 and Gemma 4 reach 128K tokens and more
# A model trained on sequences of some length meets two problems beyond it:
# - **positions it never saw.** A pair that turned only part of a circle during training reaches,
#   at longer distances, angles it never met; what the model does with them is anyone's guess;
# - **cost.** Every global layer keeps keys and values for every position and compares each new
#   query with all of them: memory grows with the length `T`, prefill compute with `T²`.
#
# ### Gemma 3: stretch the slow hands
# Gemma 3 was pre-trained on 32K-token sequences. Its global layers use base 1,000,000 (raised from
# Gemma 2's 10,000; the sliding layers keep 10,000), and at the end of pre-training the 4B, 12B
# and 27B models were extended to 128K with **positional interpolation** by a factor of 8
# ([Gemma 3 report](https://arxiv.org/abs/2503.19786), §2 "Long context" and §5;
# [Chen et al., 2023](https://arxiv.org/abs/2306.15595)). Interpolation divides every frequency
# of the global layers by the factor, so position `p` turns the hands as position `p / 8` did; the
# released configs say `"rope_scaling": {"rope_type": "linear", "factor": 8.0}`
# ([Gemma 3 4B config](https://huggingface.co/google/gemma-3-4b-it/blob/main/config.json)). The
# 270M model of this course stays at 32K. Which pairs of a global head (256 dimensions, as in
# Gemma 3 4B) meet angles at 128K that 32K tokens of training never showed them?

# %%
def pairs_meeting_new_angles(f_trained, f_used, trained=32_768, used=131_072):
    seen = (trained * f_trained).clamp(max=2 * torch.pi)  # (d/2,) largest angle each pair reached in training
    needed = (used * f_used).clamp(max=2 * torch.pi)  # (d/2,) largest angle at the longer length
    return int((needed > seen * (1 + 1e-6)).sum())

g3 = inv_frequencies(256, {"rope_theta": 1e6})
g3_pi = inv_frequencies(256, {"rope_type": "linear", "factor": 8.0, "rope_theta": 1e6})
assert torch.allclose(131_072 * g3_pi, 16_384 * g3)  # position 131,072 turns like 16,384 did
rows = [("Gemma 3 global, base 1M, no scaling", g3, g3), ("Gemma 3 global, base 1M, factor 8", g3, g3_pi),
        ("Gemma 4 global, p-RoPE", glob, glob)]
print(f"{'layer':37s}{'turning pairs':>14s}{'fastest rad/token':>18s}{'slowest: tokens/turn':>21s}{'new angles at 128K':>20s}")
for name, f_train, f_use in rows:
    slowest = 2 * torch.pi / f_use[f_use > 0].min()
    print(f"{name:37s}{int((f_use > 0).sum()):>14d}{f_use.max():>18.3f}{slowest:>21,.0f}{pairs_meeting_new_angles(f_train, f_use):>20d}")

# %% [markdown]
# Without scaling, 48 of Gemma 3's 128 global pairs would meet new angles at 128K. Interpolation
# brings that to 0, at a price: every global hand now turns 8× slower (the fastest 0.125 radian
# per token instead of 1), so on global layers neighbouring positions are harder to tell apart.
# The sliding layers, which never look further back than their window, keep base 10,000 and
# their sharp sense of local order.
#
# ### Gemma 4: nothing left to stretch
# Gemma 4's global layers use p-RoPE: the three quarters of the pairs that would turn slowly do
# not turn at all, and the 64 that turn all complete a full turn within 188 tokens (section 4). No distance can
# show them an angle that a few hundred tokens of training did not, which is what the last row
# counts. The released configs carry no scaling factor, and the rest of the design keeps long
# prompts cheap: few global layers and short windows
# ([Gemma 4 model card](https://huggingface.co/google/gemma-4-E2B-it): 128K tokens for E2B and E4B,
# 256K for 26B A4B and 31B):

# %%
for name, c in minigemma.PRESETS.items():
    n_global = sum(c.is_global(i) for i in range(c.num_hidden_layers))
    print(f"{name:15s} {n_global:2d} of {c.num_hidden_layers} layers global ({c.num_hidden_layers - n_global} sliding), window {c.sliding_window:4d}, "
          f"context {c.max_position_embeddings:,}, global RoPE {c.rope_parameters['full_attention']}")

# %% [markdown]
# ### What a long prompt costs
# For each model and prompt length, computed from the real configurations:
# - **KV cache** (bfloat16): `minigemma.kv_cache_bytes`, exactly what `KVCache` allocates
#   (sliding layers keep only their window, KV-shared layers nothing, keys-as-values layers values
#   only; notebook 04), beside a naive cache that keeps keys and values of every position in every layer;
# - **attention compute** of the prefill: for each (query, key) pair a layer computes `q·k` and adds
#   `weight · v`, 4 × head dim operations per query head; a global layer has `T(T+1)/2` pairs, a
#   sliding one about `T × window`;
# - **everything else**: 2 operations per weight per token (projections, MLPs, the 8 active
#   experts of 26B-A4B), without the embedding lookups. (1 PFLOP = 10¹⁵ operations.)

# %%
from minigemma import kv_cache_bytes
from minigemma.decoder import Gemma

def attended_pairs(T, window=None):
    w = T if window is None else min(window, T)
    return w * (w + 1) // 2 + (T - w) * w  # causal; a sliding query sees at most `window` keys

def active_weights(c):
    with torch.device("meta"):  # shapes only, no memory
        model = Gemma(c)
    return sum(p.numel() * (c.top_k_experts / c.num_experts if "experts" in n else 1)
               for n, p in model.named_parameters() if "embed" not in n and p.dim() >= 2)

# %%
GiB, P = 2**30, 1e15
print(f"{'model':15s}{'prompt':>7s}{'KV naive':>10s}{'KV cache':>10s}{'global attn':>13s}{'sliding attn':>14s}{'other':>9s}")
for name, c in minigemma.PRESETS.items():
    other = 2 * active_weights(c)
    for T in (131_072, 262_144):
        attn = {kind: sum(4 * c.num_attention_heads * c.head_dim_of(i)
                          * attended_pairs(T, None if c.is_global(i) else c.sliding_window)
                          for i in range(c.num_hidden_layers) if c.is_global(i) == kind) for kind in (True, False)}
        print(f"{name:15s}{T // 1024:>6d}K{kv_cache_bytes(c, T, naive=True) / GiB:>9.1f}G{kv_cache_bytes(c, T) / GiB:>9.2f}G"
              f"{attn[True] / P:>12.1f}P{attn[False] / P:>13.2f}P{other * T / P:>8.1f}P"
              + ("   beyond its context" if T > c.max_position_embeddings else ""))

# %% [markdown]
# Three things to read off the table:
# - **the cache stays small.** At 256K tokens 31B keeps 10.91 GiB instead of 220.0 GiB; E2B keeps
#   0.76 GiB at its full 128K, little enough for a laptop. Memory grows only on the few global layers;
# - **global layers are where the compute goes.** Their attention grows with `T²`: at 256K it is
#   22.5 PFLOP for 31B, more than all its other products (15.4), while its 50 sliding layers add
#   0.44. Doubling the prompt from 128K to 256K multiplies the global part by 4 and the rest by 2;
# - 26B-A4B pays for 256K tokens far less than 31B: 5 global layers instead of 10, with 2 KV heads
#   instead of 4 and 16 query heads instead of 32, and only 8 of its 128 experts per token.
#
# ### Chunked prefill
# A 256K-token prompt need not go through the model in one pass, where every intermediate tensor
# would have 256K rows. It can be fed in **chunks** of `C` tokens through the KV
# cache, exactly as generation feeds one token at a time: each chunk writes its keys and values,
# and its queries attend over the cache plus the chunk. A query only ever needs keys at earlier
# positions, and those are all in the cache when its chunk runs, so the result is the same as one
# pass, up to float rounding. Here is the real Gemma 3 270M on 768 tokens in chunks of 192 (the
# last chunk wraps the sliding layers' 512-slot ring buffers), recording the size of every score
# matrix the attention computes:

# %%
# NBVAL_IGNORE_OUTPUT
model, tok = minigemma.load("gemma3-270m", progress=False)

# %%
from unittest import mock
from minigemma.attention import Attention
from minigemma.cache import KVCache

ids = torch.tensor([tok.encode(open("../data/sample_text.txt", encoding="utf-8").read(), add_bos=True)[:768]])
T, C = ids.shape[1], 192
scores_seen = []  # (layer kind, query heads, queries, keys) of every attention call
attend = Attention._attend
def recording(self, q, k, v, *rest):  # q: (B, H, T, hd), k: (B, K, S, hd)
    scores_seen.append(("sliding" if self.window else "global", q.shape[1], q.shape[2], k.shape[2]))
    return attend(self, q, k, v, *rest)

with torch.no_grad(), mock.patch.object(Attention, "_attend", recording):
    one_pass = model.hidden_states(ids)  # (1, T, 640): the final normed hidden states
    cache = KVCache(model.config, 1, T)
    chunked = torch.cat([model.hidden_states(ids[:, s:s + C], cache=cache) for s in range(0, T, C)], dim=1)
torch.testing.assert_close(chunked, one_pass, atol=1e-3, rtol=0)
print(f"largest |hidden state| {one_pass.abs().max():.1f}; chunked vs one pass: max |difference| < 1e-3")
L = model.config.num_hidden_layers
for start, calls in [("one pass", scores_seen[:L])] + [(f"chunk {j + 1}", scores_seen[L * (j + 1):L * (j + 2)]) for j in range(T // C)]:
    sizes = {kind: f"{h}×{q}×{k} = {4 * h * q * k / 2**20:.2f} MiB" for kind, h, q, k in calls}
    print(f"{start:9s} score matrix per layer (float32): global {sizes['global']}, sliding {sizes['sliding']}")
print(f"global layer, one pass / largest chunk: {T * T / (C * T):.0f}×")

# %% [markdown]
# The hidden states agree to float rounding (the assertion holds at 1e-3 on values up to about 80),
# and no score matrix of a chunked run is larger than `C × T`: the global layers' grow with the
# cache, the sliding layers' stop growing at the ring's 512 slots plus the chunk. In one pass the
# global score matrix was 4× the largest chunked one here: the ratio is `T / C`. What chunking
# does **not** change is the compute: every query still meets the same keys. At the real sizes,
# per global layer and bfloat16, if the score matrix were materialised (fused kernels such as
# [FlashAttention](https://arxiv.org/abs/2205.14135) never hold all of it at once):

# %%
T, C, MiB = 262_144, 4096, 2**20
print(f"{'model':15s}{'scores, one pass':>18s}{'scores, chunk of 4096':>23s}{'MLP hidden, one pass':>22s}{'per chunk':>11s}")
for name, c in minigemma.PRESETS.items():
    scores = lambda q: 2 * c.num_attention_heads * q * T / GiB  # (heads, q, T) in bfloat16
    mlp = lambda q: 2 * 2 * q * max(c.mlp_width(i) for i in range(c.num_hidden_layers)) / MiB  # gate and up, (q, width)
    print(f"{name:15s}{scores(T):>16.0f}G{scores(C):>22.1f}G{mlp(T):>20.0f}M{mlp(C):>10.0f}M")
print(f"T / C = {T // C}: every activation of a chunk is that many times smaller")

# %% [markdown]
# Chunks of 4,096 tokens divide every activation of the prefill by `T / C` = 64, for the same
# arithmetic; with a fused attention kernel on top, the score matrix never exists in full at all.
# Chunks also let a server run other users' generation steps between the pieces of a long prefill.

# %% [markdown]
# ## What you built
# - RoPE frequencies for both layer types, and p-RoPE's 64 turning and 192 standing pairs;
# - a picture of how a same-content score changes with distance, with and without p-RoPE;
# - the 188-token limit of position information on global layers, and two easy mistakes;
# - Gemma 3's interpolation and Gemma 4's p-RoPE at long context, the memory and compute of a long
#   prompt per model, and chunked prefill checked against one pass on the real 270M.
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
# **Exercise 3.2 — convert a checkpoint between the two RoPE layouts.** Gemma pairs lane `i`
# with lane `i + d/2` of each head ("rotate half"). RoFormer's paper and Meta's original LLaMA
# code pair neighbours, `(2i, 2i + 1)`: `interleaved_rope` below. A projection trained for one
# layout gives wrong scores in the other, so a checkpoint must be converted. Write
# `to_rotate_half(w, n_heads, head_dim)`: reorder the output rows of a query or key projection
# `w: (n_heads · head_dim, width)` trained with `interleaved_rope`, so that Gemma's `apply_rope`
# on the converted projection gives exactly the scores `interleaved_rope` gave on the original.
# The checker tries random weights, several head counts and sizes, and p-RoPE frequencies.
# (Hint: `apply_rope` turns lane `j` together with lane `j + d/2`. Where must each pair of
# neighbours go, and does one head's reordering touch another head's rows?)

# %%
def interleaved_rope(x, inv_freq, positions):  # x: (B, heads, T, d), pairs (2i, 2i + 1)
    angles = positions.float()[:, None] * inv_freq[None, :]  # (T, d/2)
    x1, x2 = x[..., 0::2], x[..., 1::2]  # (B, heads, T, d/2) each
    return torch.stack([x1 * angles.cos() - x2 * angles.sin(), x1 * angles.sin() + x2 * angles.cos()], dim=-1).flatten(-2)

def to_rotate_half(w, n_heads, head_dim):
    raise NotImplementedError  # your code here: a tensor shaped like w

check_exercise_3_2(to_rotate_half, interleaved_rope)

# %% [markdown]
# **Exercise 3.3** (open) — On a sliding layer the slowest pair needs tens of thousands of tokens
# for a turn (your `slowest_turn` says how many), but the layer never sees more than its window
# of 512 (E2B/E4B) or 1,024 (26B/31B) tokens. How far does
# that pair turn within the window, and what does that make it? Compare with p-RoPE's choice on
# global layers. (Answer in `../solutions/03_rope_and_p_rope.py`.)

# %% [markdown]
# ## References
# - Su et al., [*RoFormer: Enhanced Transformer with Rotary Position Embedding*](https://arxiv.org/abs/2104.09864), 2021.
# - Barbero et al., [*Round and Round We Go! What makes Rotary Positional Encodings useful?*](https://arxiv.org/abs/2410.06205), 2024: p-RoPE.
# - Gemma Team, [*Gemma 3 Technical Report*](https://arxiv.org/abs/2503.19786), 2025: RoPE base 10,000 local, 1,000,000 global; 32K pre-training extended to 128K (§2, §5).
# - [Gemma 4 E2B model card](https://huggingface.co/google/gemma-4-E2B-it) and transformers'
#   [Gemma 4 documentation](https://huggingface.co/docs/transformers/model_doc/gemma4) (`partial_rotary_factor`, `rope_theta`).
# - Vaswani et al., [*Attention Is All You Need*](https://arxiv.org/abs/1706.03762), 2017: the sinusoidal positions RoPE builds on.
# - Chen et al., [*Extending Context Window of Large Language Models via Positional Interpolation*](https://arxiv.org/abs/2306.15595), 2023.
# - Dao et al., [*FlashAttention*](https://arxiv.org/abs/2205.14135), 2022: attention without materialising the score matrix.
# - [Gemma 3 4B config](https://huggingface.co/google/gemma-3-4b-it/blob/main/config.json): `rope_scaling` linear, factor 8.
