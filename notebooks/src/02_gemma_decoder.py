# %% [markdown]
# # 02 · The Gemma decoder, from scratch, on real weights
#
# **What you will learn**
# - the five pieces of a Gemma decoder: RMSNorm, rotary position embeddings (RoPE), grouped-query
#   attention with query/key norms, a gated-GELU MLP, and the "sandwich" layer that joins them;
# - how sliding-window layers and global layers differ, and what their masks look like;
# - how to run the real Gemma 3 270M weights through functions you wrote, and get the package's
#   logits back exactly.
#
# **Prerequisites:** notebooks 00 and 01. Gemma 4 keeps all of these pieces and changes a few
# details (notebooks 03–06), so this is the skeleton everything else hangs on.
#
# ## 0. The big picture, before any weights
#
# A decoder turns a list of token ids into one score per vocabulary piece *for every position*
# (notebook 00 used only the last position's scores). In between, each token is a vector of 640
# numbers, the **residual stream**: the embedding puts a vector there, and then every one of the
# 18 layers *reads* the stream and *adds* a small correction to it. Nothing is ever overwritten,
# only added to, which is why very deep stacks still train.
#
# Each layer adds two corrections, one after the other:
#
# - **attention** is the only place where positions talk to each other: it lets a token gather
#   information from earlier tokens (which earlier tokens, and how much, is computed on the fly);
# - the **MLP** works on each position alone: it transforms what attention brought in.
#
# ### Attention in one paragraph
# Think of a library. Each token writes a **query** ("what am I looking for?"), and each token also
# carries a **key** ("what do I contain?", the label on the spine) and a **value** (the content of
# the book). A token compares its query with every visible key (a dot product: large when they
# point the same way), turns the scores into weights that sum to 1 (softmax), and takes that
# weighted average of the values. Queries, keys and values are three different linear projections
# of the same stream, learned so that the right tokens find each other. Here it is on three toy
# tokens with 2-number vectors, small enough to follow by hand:

# %%
import math
import torch
import torch.nn.functional as F
import matplotlib.pyplot as plt
import minigemma
from minigemma import viz

_ = torch.manual_seed(0)  # the toy tensors below are random; a seed keeps the stored outputs stable

# %%
# NBVAL_IGNORE_OUTPUT
model, tok = minigemma.load("gemma3-270m", progress=False)
W = {k: v for k, v in model.state_dict().items()}  # the real weights, by name
cfg = model.config

# %%
print(f"hidden {cfg.hidden_size}, {cfg.num_attention_heads} query heads, {cfg.num_key_value_heads} KV head, "
      f"head dim {cfg.head_dim}, MLP {cfg.intermediate_size}, window {cfg.sliding_window}")
print("embed_tokens:", tuple(W["embed_tokens.weight"].shape), "  q_proj:", tuple(W["layers.0.self_attn.q_proj.weight"].shape))
print(f"{cfg.num_attention_heads} query heads share {cfg.num_key_value_heads} key/value head: the keys and values are "
      f"{cfg.num_attention_heads // cfg.num_key_value_heads}× smaller than with one per query head")

# %%
q_toy = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])  # (T=3, 2) what each token looks for
k_toy = torch.tensor([[2.0, 0.0], [0.0, 2.0], [1.0, -1.0]])  # (3, 2) what each token offers as a label
v_toy = torch.tensor([[10.0, 0.0], [0.0, 10.0], [5.0, 5.0]])  # (3, 2) the content each token hands over
scores_toy = q_toy @ k_toy.T  # (3, 3): row = query token, column = key token
causal = torch.ones(3, 3).tril().bool()  # a token may look at itself and the past only
weights_toy = scores_toy.masked_fill(~causal, float("-inf")).softmax(-1)
print("scores\n", scores_toy, "\nweights (rows sum to 1)\n", weights_toy.round(decimals=3))
print("outputs\n", (weights_toy @ v_toy).round(decimals=2))

# %% [markdown]
# Token 0 can only see itself, so it gets its own value back. Token 1's query `[0, 1]` matches
# token 1's key `[0, 2]` far better than token 0's (score 2 vs 0), so 88 % of its weight goes to
# token 1 and its output is mostly token 1's value. The `-inf` entries are the **causal mask**: a
# softmax turns them into weight 0, so no token reads the future.
#
# **Heads.** One attention can only look for one thing at a time. A model runs several in
# parallel, each with its own, smaller projections (Gemma 3 270M: 4 heads of 256 numbers), and
# concatenates their outputs. **Grouped-query attention** (GQA) lets several query heads share one
# key/value head: here all 4 query heads share a single key and a single value head, which makes
# the keys and values, the part a generator has to remember (notebook 04), 4× smaller.
#
# **Why divide the scores by √d.** A dot product of two vectors of `d` random numbers of size ~1
# has a spread of about √d. Left alone, scores of 256-number vectors would spread by about 16 and
# the softmax would put nearly all its weight on one key; dividing by √d keeps the spread near 1
# whatever the head size ([Vaswani et al., 2017](https://arxiv.org/abs/1706.03762), §3.2.1).
# Measured on 10,000 pairs of random 256-number vectors:

# %%
gen = torch.Generator().manual_seed(1)  # its own generator: the toy tensors below stay the same
dots = (torch.randn(10_000, 256, generator=gen) * torch.randn(10_000, 256, generator=gen)).sum(-1)  # (10000,)
print(f"spread (std) of the dot products: {dots.std():.1f} (√256 = 16); divided by √256: {(dots / 16).std():.2f}")

# %% [markdown]
# ### The Gemma layer: a "sandwich"
# Most transformers normalise a branch's *input* only ("pre-norm"). Gemma (since
# [Gemma 2](https://arxiv.org/abs/2408.00118)) also normalises its *output* before adding it back,
# so no single layer can shout over the stream:

# %%
fig = viz.plot_sandwich_layer()
plt.show()

# %% [markdown]
# In formulas, with `x` the stream entering layer `i`:
# `h = x + post_attention_norm(attention(input_norm(x)))`, then
# `x_next = h + post_feedforward_norm(MLP(pre_feedforward_norm(h)))`. Sections 1–5 build the
# pieces, section 6 stacks 18 of these layers.

# %% [markdown]
# ## 1. RMSNorm
# - divide a vector by its root-mean-square, then scale each dimension;
# - Gemma 3 stores `w` and scales by `1 + w` (Gemma 4 stores the scale itself);
# - computed in float32 whatever the model's dtype.

# %%
def rms_norm(x, w, eps=cfg.rms_norm_eps):
    x32 = x.float()
    return (x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + eps) * (1.0 + w.float())).type_as(x)

x = torch.randn(2, 3, 640)
y = rms_norm(x, W["norm.weight"])
print(tuple(y.shape), f"rms before {x.pow(2).mean().sqrt().item():.2f}, after {y.pow(2).mean().sqrt().item():.2f}")

# %% [markdown]
# Why is the output's RMS about 56, not 1? The division makes every vector's RMS exactly 1; then
# the learned scale `1 + w` stretches each dimension. `W["norm.weight"]` is the *final* norm of the
# trained model, and its weights are large (mean about 25, up to 300), so a unit vector comes out
# with an RMS close to the RMS of `1 + w` itself. The norm fixes the *size* of what goes in; the
# learned weights choose the size, per dimension, of what comes out.

# %%
scale = 1.0 + W["norm.weight"].float()
print(f"mean w = {W['norm.weight'].float().mean():.1f}, max w = {W['norm.weight'].float().max():.0f}, "
      f"RMS of (1 + w) = {scale.pow(2).mean().sqrt():.2f}")
x_unit = x.float() * torch.rsqrt(x.float().pow(2).mean(-1, keepdim=True) + cfg.rms_norm_eps)
print(f"RMS of x after the division alone: {x_unit.pow(2).mean().sqrt():.2f}")

# %%
torch.testing.assert_close(y, model.norm(x))  # the package's RMSNorm agrees
print("RMSNorm matches the package")

# %% [markdown]
# ## 2. Rotary position embeddings (RoPE)
#
# Attention as written above has no idea of order: shuffle the earlier tokens and every score stays
# the same. RoPE ([Su et al., 2021, RoFormer](https://arxiv.org/abs/2104.09864)) puts position into
# the queries and keys with a **clock**. Split a 256-number head into 128 pairs; treat each pair as
# the hand of a clock (a 2-D arrow). At position `m`, turn every hand by `m` steps, where each pair
# has its own step size: the first pairs are fast second hands, the last ones slow hour hands.
# Pair `i` of a `d`-number head turns `θ^(−2i/d)` radians per token (the formula comes below).
# Here are three of the 128 hands of a sliding layer (`θ = 10,000`, `d = 256`), drawn at positions 0 to 7:

# %%
clock_pairs = torch.tensor([0, 16, 60])
speeds = 1e4 ** (-2 * clock_pairs / 256)  # radians per token: θ^(-2i/d)
for i, w in zip(clock_pairs.tolist(), speeds.tolist()):
    print(f"pair {i:>2}: {w:.4f} rad/token, {7 * w:.3f} rad by position 7")
fig = viz.plot_rope_clock(speeds, list(range(8)), [f"pair {i}: {w:.2g} rad/token" for i, w in zip(clock_pairs.tolist(), speeds.tolist())])
plt.show()

# %% [markdown]
# Why a clock helps: the dot product of two arrows depends only on the **angle between** them. If
# the query is turned by its position `m` and the key by its position `n`, the score sees only the
# difference `m − n`: RoPE gives attention *relative* positions for free, and the fast and slow
# hands together tell "1 token back" from "300 tokens back", like seconds and hours on a watch.
#
# Now the formula:
# - pair dimension `i` with `i + d/2` (the "rotate-half" layout Gemma uses);
# - turn pair `i` by the angle `position × θ^(-2i/d)`: `θ^(-2i/d)` goes from 1 (pair 0) down to
#   almost `1/θ` (the last pair);
# - queries and keys are rotated, values are not (they are content, not addresses);
# - sliding layers use `θ = 10,000`, global layers `θ = 1,000,000` (slower hands, for long range).

# %%
def rope_inv_freq(d, theta):
    return 1.0 / theta ** (torch.arange(0, d, 2).float() / d)  # (d/2,)

def rope(x, positions, theta):  # x: (B, heads, T, d)
    d = x.shape[-1]
    angles = positions.float()[:, None] * rope_inv_freq(d, theta)[None, :]  # (T, d/2)
    cos, sin = angles.cos().repeat(1, 2), angles.sin().repeat(1, 2)  # (T, d)
    x1, x2 = x[..., : d // 2], x[..., d // 2 :]
    return x * cos + torch.cat([-x2, x1], dim=-1) * sin

# %% [markdown]
# The point of rotating: the score between a rotated query and key depends only on their
# **distance**. The same pair of vectors at positions (3, 1) and (103, 101) gives the same score.

# %%
q, k = torch.randn(1, 1, 1, 256), torch.randn(1, 1, 1, 256)
for qp, kp in [(3, 1), (103, 101), (1003, 1001), (3, 0)]:
    s = (rope(q, torch.tensor([qp]), 1e4) * rope(k, torch.tensor([kp]), 1e4)).sum().item()
    print(f"query at {qp:>4}, key at {kp:>4} (distance {qp - kp}): score {s:+.3f}")

# %%
fig = viz.plot_rope_angles({"sliding layers, θ = 10,000": rope_inv_freq(256, 1e4),
                            "global layers, θ = 1,000,000": rope_inv_freq(256, 1e6)}, positions=128)
plt.show()

# %% [markdown]
# Each row is a dimension pair, each column a position; the colour is the angle turned so far
# (the colour wheel wraps, like the clock). The first pairs spin quickly (they tell neighbours
# apart); the last pairs barely move (they carry long-range information). With the larger base,
# more pairs barely move, which suits layers that see everything. Notebook 03 studies these
# wavelengths and Gemma 4's change to them.

# %%
from minigemma.rope import apply_rope, cos_sin, inv_frequencies
pos = torch.arange(7)
xq = torch.randn(1, 4, 7, 256)
cos, sin = cos_sin(inv_frequencies(256, cfg.rope_parameters["sliding_attention"]), pos)
torch.testing.assert_close(rope(xq, pos, 1e4), apply_rope(xq, cos, sin))
print("RoPE matches the package")

# %% [markdown]
# ## 3. Masks: sliding window vs global
# - every layer is **causal**: a token sees itself and earlier tokens only;
# - a **sliding** layer also forgets everything more than `window − 1` tokens back
#   (`window` counts the token itself: 512 for this model);
# - a **global** layer sees the whole past. Gemma 3 stacks 5 sliding layers, then 1 global.
#
# Why mix them: a sliding layer costs the same at token 100,000 as at token 600 (it only ever
# looks 511 back, and notebook 04 shows it needs only 512 slots of memory), while a global layer's
# cost and memory grow with the text. Local layers do most of the work cheaply; every sixth layer
# looks at everything ([Gemma 3 report](https://arxiv.org/abs/2503.19786), §2).

# %%
def mask(T, window=None):
    qpos, kpos = torch.arange(T)[:, None], torch.arange(T)[None, :]
    m = kpos <= qpos
    if window is not None:
        m &= qpos - kpos < window
    return m

fig, axes = plt.subplots(1, 2, figsize=(7, 3.4))
viz.plot_mask(mask(12, window=4), "sliding, window 4", axes[0])
viz.plot_mask(mask(12), "global (causal)", axes[1])
fig.tight_layout()
plt.show()

# %%
from minigemma.attention import attention_mask
assert torch.equal(mask(600, 512), attention_mask(torch.arange(600), torch.arange(600), 512))
print("mask matches the package")
print(f"window {cfg.sliding_window}: a sliding layer sees its token and {cfg.sliding_window - 1} before it; layer types:",
      "".join("G" if t == "full_attention" else "s" for t in cfg.layer_types))

# %% [markdown]
# ## 4. Attention with grouped queries and QK-norm
# - project to queries (4 heads), keys and values (1 shared head: grouped-query attention);
# - RMS-norm each query and key head (`q_norm`, `k_norm`), then rotate with RoPE;
# - scores `q·kᵀ / √query_pre_attn_scalar`, mask, softmax, weighted sum of values, output projection.
#
# **`query_pre_attn_scalar` vs √head_dim.** The config names the number under the square root
# separately from the head size, because Gemma has not always used the head size there. For this
# model both are 256, so the scale is the textbook `1/√head_dim`. Gemma 2 27B used heads of 128
# but `query_pre_attn_scalar = 144` (its width 4608 ÷ 32 heads), as its
# [report](https://arxiv.org/abs/2408.00118) describes. Gemma 4 sets the scale to 1 altogether;
# its query and key norms fix the size of `q` and `k`, but Gemma 3 has the same norms and still
# divides by 16, so this is a design choice, not a consequence (notebook 06).

# %%
print(f"query_pre_attn_scalar = {cfg.query_pre_attn_scalar}, head_dim = {cfg.head_dim}: "
      f"scores are divided by {math.sqrt(cfg.query_pre_attn_scalar):g}")

# %%
def attention(x, i, layer_type, positions):
    B, T, D = x.shape
    H, K, hd = cfg.num_attention_heads, cfg.num_key_value_heads, cfg.head_dim
    p = f"layers.{i}.self_attn."
    q = (x @ W[p + "q_proj.weight"].T).view(B, T, H, hd)  # (B, T, H, hd)
    k = (x @ W[p + "k_proj.weight"].T).view(B, T, K, hd)  # (B, T, K, hd)
    v = (x @ W[p + "v_proj.weight"].T).view(B, T, K, hd).transpose(1, 2)  # (B, K, T, hd)
    theta = cfg.rope_parameters[layer_type]["rope_theta"]
    q = rope(rms_norm(q, W[p + "q_norm.weight"]).transpose(1, 2), positions, theta)  # (B, H, T, hd)
    k = rope(rms_norm(k, W[p + "k_norm.weight"]).transpose(1, 2), positions, theta)  # (B, K, T, hd)
    k, v = k.repeat_interleave(H // K, dim=1), v.repeat_interleave(H // K, dim=1)  # (B, H, T, hd)
    scores = q @ k.transpose(-1, -2) / math.sqrt(cfg.query_pre_attn_scalar)  # (B, H, T, T)
    window = cfg.sliding_window if layer_type == "sliding_attention" else None
    scores = scores.masked_fill(~mask(T, window), float("-inf"))
    out = scores.softmax(-1) @ v  # (B, H, T, hd)
    return out.transpose(1, 2).reshape(B, T, H * hd) @ W[p + "o_proj.weight"].T  # (B, T, D)

# %% [markdown]
# The `transpose(1, 2)` calls move the head axis in front of the position axis, so that each head
# does its own `(T, hd) @ (hd, T)` score matrix; `repeat_interleave` hands the single key/value head
# to all 4 query heads (GQA, [Ainslie et al., 2023](https://arxiv.org/abs/2305.13245)).
#
# ## 5. The MLP: a gated GELU
# `down(gelu(gate(x)) ⊙ up(x))`: two projections from 640 up to 2048 numbers; the GELU of one
# (a smooth version of "keep if positive, else zero") multiplies the other element by element, so
# it acts as a soft, learned gate on it; `down` brings the result back to 640
# ([Shazeer, 2020, GLU variants](https://arxiv.org/abs/2002.05202)).

# %%
def mlp(x, i):
    p = f"layers.{i}.mlp."
    gate = F.gelu(x @ W[p + "gate_proj.weight"].T, approximate="tanh")
    return (gate * (x @ W[p + "up_proj.weight"].T)) @ W[p + "down_proj.weight"].T

print("gate_proj, up_proj:", tuple(W["layers.0.mlp.gate_proj.weight"].shape), " down_proj:", tuple(W["layers.0.mlp.down_proj.weight"].shape))

# %% [markdown]
# ## 6. The whole decoder
# - embed: look up each id, multiply by `√640` (the stored rows are small, RMS about 0.04; the
#   factor ≈ 25 brings them to the size the layers' outputs have);
# - each layer is a **sandwich**: norm → attention → norm → add; norm → MLP → norm → add;
# - final norm, then logits against the embedding matrix itself (tied weights).

# %%
def gemma_forward(ids):
    x = W["embed_tokens.weight"][ids] * torch.tensor(cfg.hidden_size ** 0.5)  # (B, T, D)
    positions = torch.arange(ids.shape[1])
    for i, layer_type in enumerate(cfg.layer_types):
        ln = lambda name, h: rms_norm(h, W[f"layers.{i}.{name}.weight"])
        h = x + ln("post_attention_layernorm", attention(ln("input_layernorm", x), i, layer_type, positions))
        x = h + ln("post_feedforward_layernorm", mlp(ln("pre_feedforward_layernorm", h), i))
    return rms_norm(x, W["norm.weight"]) @ W["embed_tokens.weight"].T  # (B, T, vocab)

print(f"stored embedding rows: RMS {W['embed_tokens.weight'].pow(2).mean().sqrt():.3f}; "
      f"scale √{cfg.hidden_size} = {cfg.hidden_size ** 0.5:.1f}")

# %% [markdown]
# **Check against the package**, on a sentence and on 600 tokens (longer than the 512-token
# window, so the sliding layers really drop the oldest tokens).

# %%
sentence = torch.tensor([tok.encode("The Eiffel Tower is in the city of", add_bos=True)])
long_text = torch.tensor([tok.encode(open("../data/sample_text.txt").read(), add_bos=True)[:600]])
with torch.no_grad():
    for ids in [sentence, long_text]:
        ours, package = gemma_forward(ids), model(ids)
        torch.testing.assert_close(ours, package, atol=1e-3, rtol=0)
        print(f"{ids.shape[1]:>4} tokens: logits agree (max |difference| < 1e-3), "
              f"next token {tok.decode([int(ours[0, -1].argmax())])!r}")

# %% [markdown]
# The package's `Gemma` is the same computation, organised as modules and using PyTorch's fused
# attention; `tests/test_model.py` checks it against transformers' `Gemma3ForCausalLM` on the same
# file (float32 logits equal to within 1e-3, greedy text identical).
#
# ## 7. Attention maps: what do local and global layers look at?

# %%
text = "Marie Curie was born in Warsaw. She moved to Paris, where she studied physics. Later, Curie"
ids = torch.tensor([tok.encode(text, add_bos=True)])
maps = viz.attention_maps(model, ids)
labels = [tok.decode([i]) for i in ids[0].tolist()]
fig, axes = plt.subplots(1, 2, figsize=(12, 6))
viz.plot_attention(maps[3].mean(0), labels, "layer 3 (sliding), mean of heads", axes[0])
viz.plot_attention(maps[11].mean(0), labels, "layer 11 (global), mean of heads", axes[1])
fig.tight_layout()
plt.show()

# %% [markdown]
# Colours are on a square-root scale (the colorbar is labelled in probabilities) so that weak
# links stay visible. Many heads park most of their attention on `<bos>` (an "attention sink",
# [Xiao et al., 2023](https://arxiv.org/abs/2309.17453)) and spend the rest on a few meaningful
# tokens. Averages hide what single heads do; here are the four heads of the global layer 11:

# %%
fig, axes = plt.subplots(1, 4, figsize=(20, 5.4))
for head, ax in enumerate(axes):
    viz.plot_attention(maps[11][head], labels, f"layer 11 (global), head {head}", ax)
fig.tight_layout()
plt.show()

# %% [markdown]
# Explore every layer and head yourself: the view below has two sliders. It is live only when
# you run the notebook (a page on GitHub shows the figures above instead).

# %%
# NBVAL_IGNORE_OUTPUT
viz.attention_explorer(model, tok, text)

# %% [markdown]
# On a long text the window becomes visible: the last token of a 700-token text, in a sliding
# layer, cannot attend to anything more than 511 tokens back, while a global layer can.

# %%
long_ids = torch.tensor([tok.encode(open("../data/sample_text.txt").read(), add_bos=True)[:700]])
long_maps = viz.attention_maps(model, long_ids)
fig, ax = plt.subplots(figsize=(10, 3))
for layer, colour in [(4, "#dd8452"), (5, "#4c72b0")]:
    last = long_maps[layer][:, -1].mean(0)  # (keys,): the last query, averaged over heads
    ax.plot(last.numpy() ** 0.5, color=colour, label=f"layer {layer} ({'sliding' if cfg.layer_types[layer] == 'sliding_attention' else 'global'})")
ax.axvline(700 - 512, color="grey", ls="--", label="window start (512 back)")
ax.set_xlabel("key position")
ax.set_ylabel("√ attention of the last token")  # square root, as in the maps above
ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1), fontsize=8)  # beside the plot, covering nothing
plt.show()
beyond = long_maps[4][:, -1, : 700 - 512].sum().item()
print(f"attention mass beyond the window in the sliding layer: {beyond:.1f}")

# %% [markdown]
# The sliding layer's mass beyond the window is exactly 0: the mask removed those keys before the
# softmax. The global layer still spends weight near the very start (the `<bos>` sink and the
# first words), 700 tokens back.
#
# ## What you built
# - the residual stream, read and added to by 18 sandwich layers;
# - attention (queries, keys, values, heads shared by GQA), RoPE's clock hands, two kinds of masks;
# - a full forward pass of a real model, equal to the package's logits.
#
# ## Exercises
# Solutions: `../solutions/02_gemma_decoder.py`.
#
# **Exercise 2.1 — how far back can information travel?** A sliding layer lets position `t` read
# positions `t − window + 1 … t`. But layers are stacked: what position `t` reads in layer 2 has
# already read its own past in layer 1. Write `earliest_reachable(T, window, n_layers)`: for each
# position `t < T`, the earliest position whose token can influence position `t` after `n_layers`
# sliding layers (and no global layer). Then answer: how far back can the 5 sliding layers
# between two global layers of Gemma 3 270M reach?

# %%
from checks import check_exercise_2_1, check_exercise_2_2, check_exercise_2_3

def earliest_reachable(T, window, n_layers):
    raise NotImplementedError  # your code here: a list of T ints

check_exercise_2_1(earliest_reachable)

# %% [markdown]
# **Exercise 2.2 — RoPE sees only distances.** Write `relative_score(q, k, distance, theta)`: the
# RoPE score `rope(q at m) · rope(k at m − distance)` of two head vectors `q, k: (d,)`, for *any*
# `m`, computed with **one** rotation of one vector and no absolute position. (Hint: rotations
# compose: turning both hands by `m` does not change the angle between them.)

# %%
def relative_score(q, k, distance, theta):
    raise NotImplementedError  # your code here: a float (or 0-d tensor)

check_exercise_2_2(relative_score)

# %% [markdown]
# **Exercise 2.3** — Count the model's parameters by kind: return a dict with keys `embedding`,
# `attention` (projections), `mlp` and `norms` (every norm, including `q_norm`/`k_norm`). What
# fraction of Gemma 3 270M is the embedding table, and why is it so large for such a small model?

# %%
def parameter_counts(model):
    raise NotImplementedError  # your code here

check_exercise_2_3(parameter_counts, model)

# %% [markdown]
# ## References
# - Vaswani et al., [*Attention Is All You Need*](https://arxiv.org/abs/1706.03762), 2017: queries,
#   keys, values, heads, the √d scale.
# - Su et al., [*RoFormer: Enhanced Transformer with Rotary Position Embedding*](https://arxiv.org/abs/2104.09864), 2021.
# - Ainslie et al., [*GQA: Training Generalized Multi-Query Transformer Models*](https://arxiv.org/abs/2305.13245), 2023.
# - Shazeer, [*GLU Variants Improve Transformer*](https://arxiv.org/abs/2002.05202), 2020: the gated MLP.
# - Zhang and Sennrich, [*Root Mean Square Layer Normalization*](https://arxiv.org/abs/1910.07467), 2019.
# - Gemma Team, [*Gemma 2*](https://arxiv.org/abs/2408.00118), 2024: sandwich norms, local/global
#   layers, `query_pre_attn_scalar`; [*Gemma 3 Technical Report*](https://arxiv.org/abs/2503.19786),
#   2025: QK-norm, 5:1 local/global, RoPE bases.
# - Xiao et al., [*Efficient Streaming Language Models with Attention Sinks*](https://arxiv.org/abs/2309.17453), 2023.
# - [Gemma 3 model card](https://ai.google.dev/gemma/docs/core/model_card_3) (Google AI for Developers).
