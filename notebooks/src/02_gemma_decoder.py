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

# %%
torch.testing.assert_close(y, model.norm(x))  # the package's RMSNorm agrees
print("RMSNorm matches the package")

# %% [markdown]
# ## 2. Rotary position embeddings (RoPE)
# - pair dimension `i` with `i + d/2`; turn each pair by `position × θ^(-2i/d)`;
# - queries and keys are rotated, values are not;
# - sliding layers use `θ = 10,000`, global layers `θ = 1,000,000` (slower turning, for long range).

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
# Each row is a dimension pair, each column a position; the colour is the angle. The first pairs
# spin quickly (they tell neighbours apart); the last pairs barely move (they carry long-range
# information). With the larger base, more pairs barely move, which suits layers that see everything.

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

# %% [markdown]
# ## 4. Attention with grouped queries and QK-norm
# - project to queries (4 heads), keys and values (1 shared head: grouped-query attention);
# - RMS-norm each query and key head (`q_norm`, `k_norm`), then rotate with RoPE;
# - scores `q·kᵀ / √256`, mask, softmax, weighted sum of values, output projection.

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
# ## 5. The MLP: a gated GELU
# `down(gelu(gate(x)) ⊙ up(x))`: the GELU branch acts as a soft, learned gate on the other.

# %%
def mlp(x, i):
    p = f"layers.{i}.mlp."
    gate = F.gelu(x @ W[p + "gate_proj.weight"].T, approximate="tanh")
    return (gate * (x @ W[p + "up_proj.weight"].T)) @ W[p + "down_proj.weight"].T

# %% [markdown]
# ## 6. The whole decoder
# - embed: look up each id, multiply by `√640` (so embeddings are not drowned by the layers);
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
# Many heads park most of their attention on `<bos>` (an "attention sink") and spend the rest on a
# few meaningful tokens. Explore every layer and head yourself (run the notebook to move the sliders):

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
ax.set_ylabel("√ attention of the last token")
ax.legend()
plt.show()
beyond = long_maps[4][:, -1, : 700 - 512].sum().item()
print(f"attention mass beyond the window in the sliding layer: {beyond:.1f}")

# %% [markdown]
# ## Exercises
# Solutions: `../solutions/02_gemma_decoder.py`.
#
# **Exercise 2.1** — Write `sliding_mask(T, window)`, a `(T, T)` boolean mask: causal, and no
# key more than `window − 1` positions back.

# %%
from checks import check_exercise_2_1, check_exercise_2_2, check_exercise_2_3

def sliding_mask(T, window):
    raise NotImplementedError  # your code here

check_exercise_2_1(sliding_mask)

# %% [markdown]
# **Exercise 2.2** — Write Gemma 3's `rms_norm(x, weight, eps)` without looking above.

# %%
def rms_norm_exercise(x, weight, eps):
    raise NotImplementedError  # your code here

check_exercise_2_2(rms_norm_exercise)

# %% [markdown]
# **Exercise 2.3** — Count the model's parameters by kind: return a dict with keys `embedding`,
# `attention` (projections), `mlp` and `norms` (every norm, including `q_norm`/`k_norm`). What
# fraction of Gemma 3 270M is the embedding table?

# %%
def parameter_counts(model):
    raise NotImplementedError  # your code here

check_exercise_2_3(parameter_counts, model)
