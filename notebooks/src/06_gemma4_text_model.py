# %% [markdown]
# # 06 · The Gemma 4 text model, assembled
#
# **What you will learn**
# - every change from Gemma 3 to Gemma 4's decoder, in one place;
# - the whole Gemma 4 forward pass written out as plain functions over a state dict, equal to
#   the package and to transformers on small models of both kinds (E-style and 31B-style);
# - the size of the four real models, from the presets;
# - a tiny model run end to end: text in, tokens out, with the cache.
#
# **Prerequisites:** notebooks 02–05.
#
# **Where the ideas come from.** Gemma 4 is Gemma 3 (sliding and global layers, QK-norm, sandwich
# norms) plus ideas from two other lines: per-layer embeddings, KV sharing and the "E" naming of
# E2B/E4B (*effective* parameters: the ones that must sit in fast memory) come from
# [Gemma 3n](https://ai.google.dev/gemma/docs/gemma-3n); proportional RoPE comes from
# [Barbero et al., 2024](https://arxiv.org/abs/2410.06205); the final soft-cap from
# [Gemma 2](https://arxiv.org/abs/2408.00118).

# %% [markdown]
# | | Gemma 3 | Gemma 4 |
# |---|---|---|
# | norm scale | `1 + w` | `w` |
# | attention scale | `query_pre_attn_scalar^-½` (1/16) | 1 (the q/k norm weights can hold any constant) |
# | values | raw projection | RMS-normed, no weight (`v_norm`) |
# | global layers | same as sliding, RoPE base 1e6 | head dim 512, p-RoPE 25 %, own KV-head count, keys as values (26B/31B) |
# | last layers | — | KV-shared (E2B 20, E4B 18), double-wide MLP on E2B (from Gemma 3n) |
# | per token, per layer | — | per-layer embeddings (E2B/E4B, from Gemma 3n) |
# | layer output | — | × `layer_scalar` |
# | logits | — | `30·tanh(logits/30)` |
# | MLP | dense | 26B-A4B: dense + 128 experts (notebook 07) |

# %%
import math
from dataclasses import asdict
import torch
import torch.nn.functional as F
import matplotlib.pyplot as plt
import minigemma
from minigemma import TextConfig

_ = torch.manual_seed(0)

# %% [markdown]
# ## 1. Two small models with every feature
# - **E-style** (like E2B): PLE, 2 KV-shared layers, 4:1 pattern, double-wide MLP;
# - **31B-style**: keys as values on global layers, 1 global KV head, 5:1 pattern.
# Random weights, with every norm and layer scalar moved away from its initial value.

# %%
common = dict(model_type="gemma4_text", vocab_size=512, hidden_size=32, intermediate_size=48, num_attention_heads=4,
              head_dim=8, global_head_dim=16, sliding_window=6, max_position_embeddings=128,
              final_logit_softcapping=30.0, rope_parameters=minigemma.preset("gemma4-e2b").rope_parameters)
S, G = "sliding_attention", "full_attention"
configs = {
    "e-style": TextConfig(**common, num_hidden_layers=7, num_key_value_heads=1, layer_types=(S,) * 4 + (G, S, G),
                          num_kv_shared_layers=2, use_double_wide_mlp=True, hidden_size_per_layer_input=4,
                          vocab_size_per_layer_input=512),
    "31b-style": TextConfig(**common, num_hidden_layers=7, num_key_value_heads=2, num_global_key_value_heads=1,
                            attention_k_eq_v=True, layer_types=(S,) * 5 + (G, G)),
}

def random_model(config):
    model = minigemma.Gemma(config).eval()
    with torch.no_grad():
        for name, t in model.state_dict(keep_vars=True).items():
            if "norm" in name or "layer_scalar" in name:
                t.add_(0.3 * torch.randn(t.shape))
    return model

models = {name: random_model(c) for name, c in configs.items()}
print({name: sum(p.numel() for p in m.parameters()) for name, m in models.items()}, "parameters")

# %% [markdown]
# Why perturb the norms: a freshly built model has every norm weight at its initial value and
# every `layer_scalar` at 1. A forward pass that forgot a norm's weight, used `1 + w` instead of
# `w`, or skipped the layer scalar would then still give the right numbers, and the checks below
# would prove nothing. Moving them away from their initial values makes every such slip visible.
#
# The two models are tiny (width 32, 7 layers, a 6-token window) but structured like the real
# ones: the e-style model has its sliding and global layers in the E2B pattern, per-layer
# embeddings and KV-shared last layers; the 31b-style model has keys as values on its global
# layers and fewer KV heads there (1) than on its sliding layers (2).

# %% [markdown]
# ## 2. The forward pass, one change at a time
# Everything below reads tensors from the state dict `W` by their checkpoint names. Each Gemma 4
# change gets the problem it solves, its few lines, and an assert.
#
# ### 2.1 Norms scale by `w`, not `1 + w`
# Gemma 3 stored the *offset* from 1 (notebook 02: `1 + w`), Gemma 4 stores the scale itself. It is
# the same function with a different parameterisation: a Gemma 3 weight `w` becomes `1 + w`.

# %%
def rms(x, w=None, eps=1e-6):
    y = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps)
    return y if w is None else y * w  # Gemma 4: scale by w itself

from minigemma.norm import RMSNorm
w3, x8 = torch.randn(8), torch.randn(2, 8)
gemma3_norm = RMSNorm(8, 1e-6, offset=1.0)
with torch.no_grad():
    gemma3_norm.weight.copy_(w3)
torch.testing.assert_close(rms(x8, 1 + w3), gemma3_norm(x8))
print("Gemma 4's rms(x, 1 + w) == Gemma 3's norm with weight w")

# %% [markdown]
# A Gemma 4 layer has six of these norms with weights (`input_layernorm`, `post_attention_layernorm`,
# `pre_feedforward_layernorm`, `post_feedforward_layernorm`, `q_norm`, `k_norm`), one more on PLE
# models (`post_per_layer_input_norm`), and one without a weight (the value norm, next).

# %% [markdown]
# ### 2.2 p-RoPE on global layers
# Notebook 03: sliding layers rotate every pair with base 10,000; global layers (head dim 512)
# rotate only a quarter of their pairs, with base 1,000,000, and leave the rest unrotated.

# %%
def rope(x, pos, freqs):  # x: (B, heads, T, d); freqs: (d/2,)
    angles = pos.float()[:, None] * freqs[None, :]  # (T, d/2)
    cos, sin = angles.cos().repeat(1, 2), angles.sin().repeat(1, 2)  # (T, d)
    x1, x2 = x.chunk(2, dim=-1)
    return x * cos + torch.cat([-x2, x1], -1) * sin

def freqs(c, i):
    d = c.head_dim_of(i)
    if not c.is_global(i):
        return 1.0 / 1e4 ** (torch.arange(0, d, 2).float() / d)
    n = int(0.25 * d / 2)  # p-RoPE: a quarter of the pairs turn
    return torch.cat([1.0 / 1e6 ** (torch.arange(0, 2 * n, 2).float() / d), torch.zeros(d // 2 - n)])

from minigemma.rope import inv_frequencies
torch.testing.assert_close(freqs(configs["e-style"], 4), inv_frequencies(16, common["rope_parameters"]["full_attention"]))
print("global-layer frequencies match the package:", (freqs(configs["e-style"], 4) > 0).sum().item(), "of 8 pairs turn")

# %% [markdown]
# ### 2.3 Values are normed too, and the score scale is 1
# **Value norm.** Gemma 3 normed queries and keys (QK-norm) but let values be any size. Gemma 4
# also RMS-norms each value head, with *no* learned weight, so every value has RMS exactly 1. An
# attention output is a weighted average of values, so it can now never be larger than a value:
# its size no longer depends on what the projections happened to learn.
#
# **Scale 1.** Notebook 02 divided Gemma 3's scores by √256 = 16 (its `query_pre_attn_scalar` is
# 256, [config](https://huggingface.co/google/gemma-3-270m/blob/main/config.json)). Gemma 4 multiplies
# them by 1 (`self.scaling = 1.0` in transformers'
# [`modeling_gemma4.py`](https://github.com/huggingface/transformers/blob/main/src/transformers/models/gemma4/modeling_gemma4.py)).
# QK-norm is not *why*: Gemma 3 already normed queries and keys and still kept the 1/16
# ([`modeling_gemma3.py`](https://github.com/huggingface/transformers/blob/main/src/transformers/models/gemma3/modeling_gemma3.py)
# scales by `query_pre_attn_scalar^-½`). Gemma 4 took scale 1, like the value norm, from Gemma 3n
# (`self.scaling = 1.0` and a weightless `v_norm` in transformers'
# [`modeling_gemma3n.py`](https://github.com/huggingface/transformers/blob/main/src/transformers/models/gemma3n/modeling_gemma3n.py)),
# and Google has not published a reason for the change. What
# QK-norm does is make the constant **redundant**, a rationale rather than a cause: after the norm,
# the size of `q` and `k` is set by the learned `q_norm`/`k_norm` weights, and a weight can absorb
# any constant factor — dividing by 16 is the same as shrinking `q_norm`'s weight 16-fold. The paper
# that introduced QK-norm ([Henry et al., 2020](https://arxiv.org/abs/2010.04245)) made the same
# move: normalise `q` and `k`, then replace 1/√d by a learned scale. Dropping the constant changes
# where training starts (with norm weights at 1, scores of random unit-RMS vectors spread with a
# standard deviation near √256 = 16 instead of 1), not what the trained model can compute. Both
# claims, checked:

# %%
v_demo = rms(torch.randn(1, 1, 5, 16) * 7)  # (B, K, T, hd): values of any size, normed without weight
mix = torch.rand(1, 1, 5, 5).softmax(-1) @ v_demo  # attention output: weighted averages of values
assert mix.norm(dim=-1).max() <= v_demo.norm(dim=-1).max() + 1e-5  # never larger than a value
q_demo, k_demo, wq = torch.randn(5, 16), torch.randn(5, 16), torch.rand(16) + 0.5
torch.testing.assert_close(rms(q_demo, wq) @ rms(k_demo).T / 16, rms(q_demo, wq / 16) @ rms(k_demo).T)
print(f"value RMS {v_demo.pow(2).mean(-1).sqrt().mean():.3f}; output norm <= value norm; "
      "a 1/16 scale == a q_norm weight 16× smaller")
spread = (rms(torch.randn(4000, 256)) * rms(torch.randn(4000, 256))).sum(-1).std()  # q·k, head dim 256
print(f"std of q·k for random unit-RMS q, k of dim 256: {spread:.1f} at scale 1, {spread / 16:.2f} at 1/16")

# %% [markdown]
# ### 2.4 Keys as values (26B and 31B, global layers)
# A global layer's cache grows with the text, and on the big models it dominates memory. On
# 26B/31B global layers there is no `v_proj`: the value is the *same* raw projection as the key,
# taken before the key's norm and RoPE, then value-normed. One projection fewer, and keys and values
# that come from one raw tensor (notebook 04 counts what this saves in the cache):

# %%
def keys_and_values(W, c, i, x, pos, K, hd):
    B, T, _ = x.shape
    p = f"layers.{i}.self_attn."
    k_raw = (x @ W[p + "k_proj.weight"].T).view(B, T, K, hd)  # (B, T, K, hd)
    v = k_raw if c.k_eq_v(i) else (x @ W[p + "v_proj.weight"].T).view(B, T, K, hd)  # keys as values
    k = rope(rms(k_raw, W[p + "k_norm.weight"]).transpose(1, 2), pos, freqs(c, i))  # (B, K, T, hd)
    v = rms(v).transpose(1, 2)  # (B, K, T, hd): the value norm has no weight
    return k, v

W31, c31 = models["31b-style"].state_dict(), configs["31b-style"]
assert "layers.5.self_attn.v_proj.weight" not in W31 and "layers.0.self_attn.v_proj.weight" in W31
x_demo = torch.randn(1, 4, 32)
k5, v5 = keys_and_values(W31, c31, 5, x_demo, torch.zeros(4, dtype=torch.long), 1, 16)  # position 0: no turn
torch.testing.assert_close(k5, v5 * W31["layers.5.self_attn.k_norm.weight"])
print("global layer 5 has no v_proj; before RoPE its key is exactly value × k_norm weight")

# %% [markdown]
# ### 2.5 KV sharing (from Gemma 3n; E2B and E4B)
# Computing and caching keys and values costs every layer time and memory. Gemma 3n's idea, kept
# in Gemma 4's E models: the last layers (E2B: 20 of 35) compute no keys or values; each reads those
# of the last earlier layer *of the same type* that does (`config.kv_donor(i)`), already normed and
# rotated. `kv_heads_of(i)` and `head_dim_of(i)` give a layer's KV-head count and head size, which
# differ between sliding and global layers.

# %%
ce = configs["e-style"]
print("layer types:", "".join("G" if ce.is_global(i) else "s" for i in range(7)),
      " donors:", {i: ce.kv_donor(i) for i in range(7) if ce.kv_donor(i) is not None})
assert ce.kv_donor(5) == 3 and ce.kv_donor(6) == 4  # sliding reads sliding, global reads global
assert "layers.5.self_attn.k_proj.weight" not in models["e-style"].state_dict()

# %%
def attention(W, c, i, x, pos, kv_store):
    B, T, _ = x.shape
    H, K, hd, p = c.num_attention_heads, c.kv_heads_of(i), c.head_dim_of(i), f"layers.{i}.self_attn."
    q = (x @ W[p + "q_proj.weight"].T).view(B, T, H, hd)  # (B, T, H, hd)
    q = rope(rms(q, W[p + "q_norm.weight"]).transpose(1, 2), pos, freqs(c, i))  # (B, H, T, hd)
    if c.kv_donor(i) is not None:
        k, v = kv_store[c.kv_donor(i)]  # borrowed, already normed and rotated
    else:
        k, v = kv_store[i] = keys_and_values(W, c, i, x, pos, K, hd)
    k, v = k.repeat_interleave(H // K, 1), v.repeat_interleave(H // K, 1)  # (B, H, T, hd)
    scores = q @ k.transpose(-1, -2)  # (B, H, T, T), scale 1.0
    allowed = pos[None, :] <= pos[:, None]
    if not c.is_global(i):
        allowed &= pos[:, None] - pos[None, :] < c.sliding_window
    out = scores.masked_fill(~allowed, float("-inf")).softmax(-1) @ v  # (B, H, T, hd)
    return out.transpose(1, 2).reshape(B, T, H * hd) @ W[p + "o_proj.weight"].T  # (B, T, D)

def mlp(W, i, x):
    p = f"layers.{i}.mlp."
    gate = F.gelu(x @ W[p + "gate_proj.weight"].T, approximate="tanh")
    return (gate * (x @ W[p + "up_proj.weight"].T)) @ W[p + "down_proj.weight"].T

# %% [markdown]
# `attention` puts the pieces together: the query side is as in Gemma 3 (plus p-RoPE), the key and
# value side is either computed (`keys_and_values`, stored in `kv_store` under the layer's index)
# or borrowed from the donor, and the scores are not scaled. The MLP is Gemma 3's gated GELU; on
# E2B the KV-shared layers have an MLP twice as wide (`use_double_wide_mlp`), which needs no code
# here because the function takes its width from the weights it reads.

# %% [markdown]
# ### 2.6 Per-layer embeddings (from Gemma 3n; E2B and E4B)
# Notebook 05 built these: a second, cheap embedding gives every layer its own small vector per
# token, mixed with a projection of the main embedding. `√ple_dim` scales the table lookup up to
# the size of the projection's output, `width^-½` scales the projection down, and `2^-½` keeps the
# sum of the two at the size of one.

# %%
def per_layer_inputs(W, c, ids, x):
    B, T, L = *ids.shape, c.num_hidden_layers
    token = W["embed_tokens_per_layer.weight"][ids] * math.sqrt(c.hidden_size_per_layer_input)
    token = token.view(B, T, L, -1)  # (B, T, L, ple_dim)
    context = ((x @ W["per_layer_model_projection.weight"].T) / math.sqrt(c.hidden_size)).view(B, T, L, -1)
    return (token + rms(context, W["per_layer_projection_norm.weight"])) / math.sqrt(2)  # (B, T, L, ple_dim)

def ple_branch(W, i, x, p_i):  # x: (B, T, D), p_i: (B, T, ple_dim)
    g = F.gelu(x @ W[f"layers.{i}.per_layer_input_gate.weight"].T, approximate="tanh") * p_i
    return rms(g @ W[f"layers.{i}.per_layer_projection.weight"].T, W[f"layers.{i}.post_per_layer_input_norm.weight"])

from minigemma.ple import per_layer_branch
We, layer1 = models["e-style"].state_dict(), models["e-style"].layers[1]
xe, pe = torch.randn(1, 3, 32), torch.randn(1, 3, 4)
with torch.no_grad():
    torch.testing.assert_close(ple_branch(We, 1, xe, pe), per_layer_branch(xe, pe, layer1.per_layer_input_gate,
                               layer1.per_layer_projection, layer1.post_per_layer_input_norm) - xe)
print("the PLE branch matches the package's")

# %% [markdown]
# ### 2.7 `layer_scalar`: one stored number per layer
# The sandwich norms control the size of what each branch *adds*, but not of the stream itself,
# which only grows as layers add to it. Gemma 4 ends every layer by multiplying the whole stream
# by a learned scalar, `layer_scalar`, a cheap per-layer knob on that size. (In our random models
# we moved it away from 1, so forgetting it would show.)

# %%
def layer(W, c, i, x, pos, kv_store, ple):
    n = lambda name, h: rms(h, W[f"layers.{i}.{name}.weight"])
    h = x + n("post_attention_layernorm", attention(W, c, i, n("input_layernorm", x), pos, kv_store))
    x = h + n("post_feedforward_layernorm", mlp(W, i, n("pre_feedforward_layernorm", h)))
    if ple is not None:
        x = x + ple_branch(W, i, x, ple[:, :, i])
    return x * W[f"layers.{i}.layer_scalar"]  # the whole stream, not just the branch

print("layer scalars of the e-style model:", [round(We[f"layers.{i}.layer_scalar"].item(), 2) for i in range(7)])

# %% [markdown]
# **The whole layer in one picture.** Everything of sections 2.1–2.7 meets in `layer`: the residual
# stream runs down the left; attention, the MLP and (on E2B/E4B) the PLE branch each read it, pass
# through their own norms, and add their output back; `layer_scalar` multiplies the sum. The
# attention box lists what differs between sliding and global layers and on KV-shared layers.

# %%
from matplotlib.patches import FancyBboxPatch
C_NORM, C_BRANCH, C_PLE, C_STREAM = "#dbe9f6", "#fde0c5", "#e2f0d9", "#eeeeee"
ATTENTION = ("attention\nq = RoPE(q_norm(W_q x))      k = RoPE(k_norm(W_k x))\n"
             "v = v_norm(W_v x)   (no weight; 26B/31B global: v from W_k x)\nsoftmax(q·kᵀ × 1 + mask) · v  →  W_o\n"
             "sliding: window 512/1024, RoPE θ = 10⁴ on all pairs\n"
             "global: causal, p-RoPE θ = 10⁶ on 25 % of pairs, head dim 512\n"
             "KV-shared layers (E2B/E4B): k, v read from a donor layer")
MLP_TEXT = ("MLP: W_down( gelu_tanh(W_gate x) ⊙ W_up x )\nE2B's KV-shared layers: twice as wide\n"
            "26B-A4B: + 128 experts (notebook 07)")
PLE_TEXT = "gelu_tanh(per_layer_input_gate x) ⊙ p_l\n(p_l: this layer's per-layer input, notebook 05)"

def box(ax, x, y, w, h, text, fc, size=8, align="center"):
    ax.add_patch(FancyBboxPatch((x - w / 2, y - h / 2), w, h, boxstyle="round,pad=0.06", fc=fc, ec="#444"))
    ax.text(x - w / 2 + 0.15 if align == "left" else x, y, text, ha=align, va="center", fontsize=size)

def arrow(ax, *points):  # a polyline from the first point, with an arrow head at the last
    ax.plot(*zip(*points), color="#333", lw=1.1)
    ax.annotate("", xy=points[-1], xytext=points[-2], arrowprops=dict(arrowstyle="-|>", color="#333", lw=1.1))

# %%
fig, ax = plt.subplots(figsize=(12, 7))
box(ax, 0, 11, 2.8, 0.6, "x: residual stream (B, T, D)", C_STREAM)
box(ax, 0, 0.3, 2.8, 0.6, "× layer_scalar → next layer", C_STREAM)
box(ax, 2.4, 8.7, 2.2, 0.6, "input_layernorm", C_NORM); box(ax, 2.4, 5.4, 2.9, 0.6, "pre_feedforward_layernorm", C_NORM)
for y, name in ((8.7, "post_attention_layernorm"), (5.4, "post_feedforward_layernorm"), (2.6, "post_per_layer_input_norm")):
    box(ax, 11.0, y, 2.9, 0.6, name, C_NORM)
box(ax, 6.5, 8.7, 5.3, 2.3, ATTENTION, C_BRANCH, size=7.5, align="left")
box(ax, 6.5, 5.4, 4.6, 1.0, MLP_TEXT, C_BRANCH, size=7.5)
box(ax, 3.4, 2.6, 4.2, 0.9, PLE_TEXT, C_PLE, size=7.5); box(ax, 7.0, 2.6, 2.3, 0.6, "per_layer_projection", C_PLE)
for y_in, y_plus, left in ((8.7, 7.1, 1.3), (5.4, 4.1, 0.95), (2.6, 1.4, 1.3)):
    box(ax, 0, y_plus, 0.5, 0.5, "+", C_STREAM, size=11)
    arrow(ax, (0, y_in), (left, y_in))  # the stream feeds the branch
    arrow(ax, (11.0, y_in - 0.3), (11.0, y_plus), (0.25, y_plus))  # the branch's output is added
for y0, y1 in ((10.7, 7.35), (6.85, 4.35), (3.85, 1.65), (1.15, 0.6)):
    arrow(ax, (0, y0), (0, y1))
for x0, x1, y in ((3.5, 3.85, 8.7), (9.15, 9.55, 8.7), (3.85, 4.2, 5.4), (8.8, 9.55, 5.4), (5.5, 5.85, 2.6),
                  (8.15, 9.55, 2.6)):
    arrow(ax, (x0, y), (x1, y))
ax.set_xlim(-1.6, 12.6); ax.set_ylim(-0.2, 11.5); ax.axis("off")
ax.set_title("one Gemma 4 decoder layer: blue = RMSNorms (scale w), orange = the two branches, green = PLE (E2B/E4B)")
plt.show()

# %% [markdown]
# **Reading the picture, top to bottom.** Each branch reads a *normed copy* of the stream
# (`input_layernorm`, `pre_feedforward_layernorm`) and hands back a *normed result* (the `post_…`
# norms): the sandwich of Gemma 2, so that no branch can write a vector of arbitrary size into the
# stream. The stream itself is never normed inside a layer; only `layer_scalar` rescales it at the
# end, and the final norm before the head (section 2.9) brings it back to size. Three things change
# from one layer to the next while the code stays the same: the attention type (sliding or global:
# window, RoPE base, how many pairs rotate, head dim, KV heads), whether keys and values are
# computed or borrowed (KV sharing), and the MLP width (double-wide on E2B's KV-shared layers).
# Everything that separates E2B from 31B is a config value choosing among these, plus the PLE
# branch, which only E2B and E4B have.
#
# ### 2.8 The final soft-cap
# Nothing stops a trained model's logits from growing large, and very large logits make a
# softmax overconfident and its gradients unstable. Gemma 2 introduced **logit soft-capping**:
# `30 · tanh(logits / 30)` is almost the identity for small logits and bends every logit smoothly
# into (−30, 30). Gemma 3 dropped it (the 270M has none); Gemma 4 brings the final cap back.

# %%
z = torch.tensor([1.0, 10.0, 30.0, 100.0, 300.0], dtype=torch.float64)
capped = 30 * torch.tanh(z / 30)
print("raw -> capped:", {int(a): round(b, 3) for a, b in zip(z.tolist(), capped.tolist())})
assert capped.abs().max() < 30 and torch.all(capped.diff() > 0)  # bounded, and the order is kept (same argmax)

# %%
fig, ax = plt.subplots(figsize=(5, 3))
zz = torch.linspace(-120, 120, 241)
ax.plot(zz, zz, ":", color="grey", label="no cap")
ax.plot(zz, 30 * torch.tanh(zz / 30), color="#4c72b0", label="30·tanh(z/30)")
ax.set_ylim(-60, 60); ax.set_xlabel("raw logit z"); ax.set_ylabel("capped logit")
ax.legend(loc="lower right", fontsize=8)
plt.show()

# %% [markdown]
# ### 2.9 The whole forward pass
# Embed and scale by `√width` (as in Gemma 3), build the per-layer inputs, run the layers, final
# norm, tied head, soft-cap.

# %%
def gemma4_forward(W, c, ids):
    x = W["embed_tokens.weight"][ids] * math.sqrt(c.hidden_size)  # (B, T, D)
    pos, kv_store = torch.arange(ids.shape[1]), {}
    ple = per_layer_inputs(W, c, ids, x) if c.hidden_size_per_layer_input else None
    for i in range(c.num_hidden_layers):
        x = layer(W, c, i, x, pos, kv_store, ple)
    logits = rms(x, W["norm.weight"]) @ W["embed_tokens.weight"].T  # (B, T, vocab)
    return 30.0 * torch.tanh(logits / 30.0)

# %% [markdown]
# ## 3. Check: notebook == package == transformers
# 20 tokens, window 6, so both layer types and the KV-shared layers are exercised.

# %% [markdown]
# Our `TextConfig` uses transformers' field names, so its fields pass straight into a
# `Gemma4TextConfig`; `load_state_dict(..., strict=True)` then proves that the two models expect
# exactly the same tensor names and shapes. transformers is used here only as a referee: nothing
# in `minigemma/` imports it.

# %%
from transformers import Gemma4ForCausalLM, Gemma4TextConfig  # the reference

ids = torch.randint(0, 512, (1, 20), generator=torch.Generator().manual_seed(1))
for name, model in models.items():
    c, W = configs[name], model.state_dict()
    hf_kwargs = {k: v for k, v in asdict(c).items() if k != "model_type" and v is not None}
    hf = Gemma4ForCausalLM(Gemma4TextConfig(**{**hf_kwargs, "layer_types": list(c.layer_types)})).eval()
    hf.model.load_state_dict(W, strict=True)
    with torch.no_grad():
        ours, package, reference = gemma4_forward(W, c, ids), model(ids), hf(ids).logits
    torch.testing.assert_close(ours, package, atol=1e-4, rtol=0)
    torch.testing.assert_close(package, reference, atol=1e-4, rtol=0)
    print(f"{name}: notebook == package == transformers (within 1e-4)")

# %% [markdown]
# Three independent computations agree on every logit of both models: the functions above
# (written from the description of each change), the package's modules (`minigemma.Gemma`), and
# transformers' `Gemma4ForCausalLM` loaded with the very same tensors. Because the sequence (20) is
# longer than the window (6), the sliding layers really drop keys; because layers 5 and 6 of the
# e-style model are KV-shared, a wrong donor would change the logits.

# %% [markdown]
# ## 4. The four real models, from the presets
# Counted from the tensors each needs (`minigemma.expected_keys`, checked against transformers'
# layout in `tests/test_gemma4.py`); text decoder only, towers not included.

# %%
def breakdown(config):
    kinds = {"embedding": 0, "PLE table": 0, "PLE rest": 0, "attention": 0, "MLP": 0, "experts": 0, "other": 0}
    for key, shape in minigemma.expected_keys(config).items():
        n = math.prod(shape)
        kind = ("embedding" if key == "embed_tokens.weight" else "PLE table" if key == "embed_tokens_per_layer.weight"
                else "PLE rest" if "per_layer" in key else "experts" if ".experts." in key or ".router." in key
                else "attention" if "self_attn" in key else "MLP" if ".mlp." in key else "other")
        kinds[kind] += n
    return kinds

table = {name: breakdown(c) for name, c in minigemma.PRESETS.items()}
print(f"{'':>15}" + "".join(f"{k:>10}" for k in next(iter(table.values()))) + f"{'total':>10}")
for name, kinds in table.items():
    print(f"{name:>15}" + "".join(f"{v / 1e9:>9.2f}B" for v in kinds.values()) + f"{sum(kinds.values()) / 1e9:>9.2f}B")

# %%
fig, ax = plt.subplots(figsize=(9, 2.8))
colours = ["#4c72b0", "#dd8452", "#f5b97f", "#55a868", "#c44e52", "#8172b3", "#937860"]
for row, (name, kinds) in enumerate(table.items()):
    left = 0
    for (kind, n), colour in zip(kinds.items(), colours):
        ax.barh(row, n / 1e9, left=left, color=colour, label=kind if row == 0 else None)
        left += n / 1e9
ax.set_yticks(range(len(table)), list(table))
ax.set_xlabel("billions of parameters (text decoder)")
ax.legend(ncol=7, fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.3))  # below the axes, covering nothing
plt.show()

# %% [markdown]
# How to read the bars: on E2B and E4B the per-layer-embedding table (orange) is a large share of
# the parameters, yet each token needs only one row of it per layer, so it can stay in slow memory
# (notebook 05). Everything else, the PLE projections and gates included (light orange: they
# multiply every token in every layer), must sit in fast memory. So the **effective** size, a
# naming that comes from [Gemma 3n](https://ai.google.dev/gemma/docs/gemma-3n) (the parameters that
# must be loaded into the accelerator's memory, the PLE parameters being kept apart), is the text
# decoder minus the PLE table alone — the same rule as notebook 05:

# %%
for name in ("gemma4-e2b", "gemma4-e4b"):
    kinds, total = table[name], sum(table[name].values())
    print(f"{name}: PLE table {kinds['PLE table'] / total:.0%} of the text decoder "
          f"({(kinds['PLE table'] + kinds['PLE rest']) / total:.0%} with the PLE projections and gates); "
          f"effective = {total / 1e9:.2f}B − {kinds['PLE table'] / 1e9:.2f}B = {(total - kinds['PLE table']) / 1e9:.2f}B")

# %% [markdown]
# On E2B the PLE table is about half of the text decoder (51 %), and taking it away leaves 2.28B
# parameters that do the work: the published "2.3B effective". On E4B the table is a smaller share
# (38 %): the table holds vocabulary × layers × 256 numbers, so from E2B to E4B it grows only with
# the layer count (35 to 42), while the rest grows with the square of the width (1536 to 2560). The same rule
# gives 4.64B (published 4.5B; notebook 05 found no counting rule that gives 4.5B). The 31B is
# dense: its MLPs (red) dominate. The 26B-A4B keeps its weight in experts (purple), of which a token
# uses only 8 of 128.

# %% [markdown]
# The 26B-A4B total (25.2B) matches its published size; notebook 07 counts how few of those
# parameters one token actually uses.
#
# ## 5. End to end: text in, tokens out
# A tiny random Gemma 4 with the real 262k vocabulary, the tokenizer from notebook 01, generation
# with the KV cache. The weights are random, so the text is noise; what matters is that every
# piece runs together and the cache holds exactly what notebook 04 predicted.
#
# `minigemma.generate` first runs the whole prompt once (the *prefill*), filling the cache, then
# feeds one new token at a time: each step computes the new token's query, key and value only,
# reads the earlier keys and values from the cache, and picks the most likely next token. The
# tokenizer is the real Gemma one, so the random model's ids decode to real (if meaningless) words.

# %%
from minigemma.weights import resolve
tok = minigemma.Tokenizer.from_file(resolve("gemma3-270m"))
tiny = TextConfig(**{**asdict(configs["e-style"]), "vocab_size": tok.vocab_size, "vocab_size_per_layer_input": tok.vocab_size,
                     "layer_types": configs["e-style"].layer_types, "rope_parameters": common["rope_parameters"]})
model = random_model(tiny)
text = minigemma.generate(model, tok, "The capital of France is", max_new_tokens=8)
print(repr(text))
n_pos = len(tok.encode("The capital of France is", add_bos=True)) + 8  # the prompt and 8 new tokens
print(f"KV cache for {n_pos} positions:", minigemma.kv_cache_bytes(tiny, n_pos, torch.float32), "bytes")
owners = [i for i in range(7) if tiny.kv_donor(i) is None]  # layers that store K and V
part = {kind: sum((n_pos if tiny.is_global(i) else min(n_pos, tiny.sliding_window)) * tiny.kv_heads_of(i)
                  * tiny.head_dim_of(i) * 2 * 4 for i in owners if tiny.is_global(i) == (kind == "global"))
        for kind in ("sliding", "global")}  # positions × KV heads × head dim × (K and V) × 4 bytes
print(f"by hand: {len(owners)} layers store K/V; sliding {part['sliding']:,} + global {part['global']:,} "
      f"= {sum(part.values()):,} bytes")
assert sum(part.values()) == minigemma.kv_cache_bytes(tiny, n_pos, torch.float32)

# %% [markdown]
# Where do the 3,328 bytes come from? The e-style model caches keys and values in float32 (4
# bytes each) for 5 of its 7 layers: the two KV-shared layers store nothing. Its four sliding layers
# keep only the last 6 positions (the window), each position 1 KV head of 8 numbers, for keys and
# for values: 1,536 bytes together. Its one global layer keeps all 14 positions, with head dim 16:
# 1,792 bytes. The cell above computes both parts by hand and checks their sum.
#
# ## What you built
# - Gemma 4's decoder, one change at a time: norms scaled by `w`, p-RoPE on global layers, value
#   norm and score scale 1, keys as values, KV sharing, per-layer embeddings, `layer_scalar`, soft-cap;
# - a forward pass over a state dict that equals the package and transformers on two kinds of model;
# - the parameter budget of the four published models.

# %% [markdown]
# ## 6. Run it on the real model (optional)
# The course ships only the Gemma 3 270M weights (Gemma 4's are several GB and come from a model
# hub, which this course never calls). If you have downloaded a Gemma 4 checkpoint in the Hugging
# Face layout (for example [`google/gemma-4-E2B-it`](https://huggingface.co/google/gemma-4-E2B-it):
# `config.json`, `model.safetensors`, `tokenizer.json`), start Jupyter with
# `MINIGEMMA_GEMMA4=path/to/gemma-4-e2b-it` and the cell below asks it a question in its chat
# format, with the same package code you just checked (in bfloat16). Notebooks 08, 09, 10 and 13
# end their Gemma 4 part with the same cell (`notebooks/real_weights.py`). **Without the variable
# the cell prints one line and skips**; that is what the stored output shows. With it, loading
# takes a while and needs memory for every weight (two bytes each in bfloat16), so a machine that
# runs the 270M comfortably may not hold E2B; the answer is not checked by anything, since unlike
# the random model above, a real model's words are the test.

# %%
from real_weights import ask, real_gemma4
real = real_gemma4()  # (model, tokenizer) from $MINIGEMMA_GEMMA4, or None after a one-line note
if real:
    print(ask(*real, "What is the capital of France? Answer in one sentence."))

# %% [markdown]
# ## Exercises
# Solutions: `../solutions/06_gemma4_text_model.py`.
#
# **Exercise 6.1 — what do KV sharing and keys-as-values save?** Write
# `kv_projection_savings(config)`: how many parameters of `k_proj`/`v_proj` weights the model does
# **not** have, compared with the same model in which every layer owned both a key and a value
# projection (of its own KV-head count and head size). Use `is_global`, `kv_heads_of`,
# `head_dim_of`, `kv_donor` and `k_eq_v`. Which of the four models saves the most, and by which
# of the two mechanisms?

# %%
from checks import check_exercise_6_1, check_exercise_6_2

def kv_projection_savings(config):
    raise NotImplementedError  # your code here: an int

check_exercise_6_1(kv_projection_savings)

# %% [markdown]
# **Exercise 6.2** — Write `donors(config)`: a dict from each KV-shared layer to the layer whose
# keys and values it reads, without calling `config.kv_donor` (use `first_kv_shared_layer` and
# `layer_types`). Why must the donor be of the same type as the layer that reads it?

# %%
def donors(config):
    raise NotImplementedError  # your code here

check_exercise_6_2(donors)

# %% [markdown]
# ## References
# - Gemma Team, [*Gemma 3 Technical Report*](https://arxiv.org/abs/2503.19786), 2025: the decoder Gemma 4 extends.
# - [Gemma 3n overview](https://ai.google.dev/gemma/docs/gemma-3n) (Google AI for Developers):
#   per-layer embeddings, KV-cache sharing, effective (E2B/E4B) sizes.
# - [Gemma 4 on Google AI Edge](https://ai.google.dev/edge/litert-lm/models/gemma-4) and the
#   [Gemma 4 E2B model card](https://huggingface.co/google/gemma-4-E2B-it) on Hugging Face.
# - Gemma Team, [*Gemma 2*](https://arxiv.org/abs/2408.00118), 2024: logit soft-capping, sandwich norms.
# - Barbero et al., [*Round and Round We Go! What makes Rotary Positional Encodings useful?*](https://arxiv.org/abs/2410.06205), 2024: p-RoPE.
# - Henry et al., [*Query-Key Normalization for Transformers*](https://arxiv.org/abs/2010.04245), 2020, and
#   Dehghani et al., [*Scaling Vision Transformers to 22 Billion Parameters*](https://arxiv.org/abs/2302.05442), 2023: QK-norm.
# - transformers' [Gemma 4 documentation](https://huggingface.co/docs/transformers/model_doc/gemma4), the reference these cells are checked against.
