# %% [markdown]
# # 05 · Per-layer embeddings (PLE): how E2B has 5.1B parameters but "runs like" 2.3B
#
# **What you will learn**
# - what per-layer embeddings are: a second, much larger embedding table that hands every layer
#   its own small vector for each token;
# - every scale and norm on the way, built from scratch and checked against the package;
# - why the table can live outside fast memory (it is only *looked up*, never multiplied);
# - parameter accounting for E2B and E4B from the presets, against the published figures.
#
# **Prerequisites:** notebooks 02 and 04.
#
# **Where it comes from.** Per-layer embeddings were introduced with
# [Gemma 3n](https://ai.google.dev/gemma/docs/gemma-3n), Google's models for phones and laptops,
# together with KV sharing and the "E" in E2B/E4B (*effective* size). Gemma 4's E2B and E4B keep all three.
#
# **The problem PLE solves.** On a phone, what limits a model is fast memory (the accelerator's
# RAM), not storage. A weight that is *multiplied* with every token must sit in fast memory; a
# weight that is only *looked up* (one row per token) can stay in slower memory and be fetched
# row by row. An embedding table is looked up. So a model can grow a large table that gives each
# layer extra, token-specific information, while its fast-memory footprint, and its compute,
# stay those of a much smaller model.

# %%
import math
import torch
import torch.nn.functional as F
import matplotlib.pyplot as plt
import minigemma
from minigemma.ple import per_layer_inputs, per_layer_branch

_ = torch.manual_seed(0)

# %% [markdown]
# ## 1. Shapes
# For E2B: 35 layers, PLE width 256. The PLE table has one row of `35 × 256 = 8,960` numbers per
# vocabulary entry; layer `l` gets columns `[256·l, 256·(l+1))`.

# %%
e2b = minigemma.preset("gemma4-e2b")
L, P, D, V = e2b.num_hidden_layers, e2b.hidden_size_per_layer_input, e2b.hidden_size, e2b.vocab_size
print(f"PLE table: {V:,} × {L * P:,} = {V * L * P / 1e9:.2f}B parameters")
print(f"main embedding: {V:,} × {D:,} = {V * D / 1e9:.2f}B parameters")

# %% [markdown]
# The PLE table is almost six times the size of the main embedding: 2.35B numbers, about half of
# E2B's text decoder. Yet a token uses one row of it (8,960 numbers), and no matrix product ever
# touches the rest. Compare the main embedding: it is also the output head (tied weights), so at
# every step the final hidden state is multiplied with all of its 262,144 rows.
#
# Notation for the rest of the notebook: `L` layers, PLE width `P`, model width `D`, vocabulary `V`.

# %% [markdown]
# ## 2. Build it, on a small random E-style model
# The weights do not matter for the mechanics; `minigemma.Gemma` with a small config gives us a
# full set (norm weights moved away from 1 so that a forgotten norm would show).

# %%
cfg = minigemma.TextConfig(model_type="gemma4_text", vocab_size=1000, hidden_size=32, intermediate_size=64,
                           num_hidden_layers=5, num_attention_heads=4, num_key_value_heads=1, head_dim=8,
                           global_head_dim=16, sliding_window=8, hidden_size_per_layer_input=4,
                           vocab_size_per_layer_input=1000, layer_types=e2b.layer_types[:5],
                           rope_parameters=e2b.rope_parameters, max_position_embeddings=64)
model = minigemma.Gemma(cfg).eval()
with torch.no_grad():
    for name, p in model.named_parameters():
        if "norm" in name:
            p.add_(0.3 * torch.randn(p.shape))
W = model.state_dict()
print({k: tuple(v.shape) for k, v in W.items() if "per_layer" in k and not k.startswith(("layers.1", "layers.2",
                                                                                        "layers.3", "layers.4"))})

# %% [markdown]
# Step 1, the **token** part: look the ids up and scale by `√P` (√256 = 16 on the real models).
# Step 2, the **context** part: project the *main* embedding to `L × P`, scale by `D^-½`, RMS-norm each layer's slice.
# Step 3: add them and scale by `2^-½` (so the sum of two unit-size parts stays unit-size).

# %% [markdown]
# **Why these three scales.** Each keeps a part at a known size, so that neither part drowns the other:
# - the table is stored with small rows (like the main embedding), and `√P` brings a looked-up
#   row up to the size of one number per dimension, the way `√D` does for the main embedding;
# - the projection sums `D` products, so its outputs grow like `√D`; dividing by `√D` undoes that,
#   and the RMS-norm then fixes each layer's slice at the size of its learned weights;
# - two independent parts of size 1 add up to size `√2`, so the sum is divided by `√2`.
#
# The last one is easy to check on random numbers:

# %%
a, b = torch.randn(100_000), torch.randn(100_000)  # two independent parts, RMS 1 each
rms_of_sum = ((a + b) / math.sqrt(2)).pow(2).mean().sqrt().item()
assert abs(rms_of_sum - 1) < 0.02
print(f"RMS of (a + b) / √2 = {rms_of_sum:.3f}")

# %%
def rms(x, w, eps=1e-6):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * w

def ple_inputs(ids):
    x = W["embed_tokens.weight"][ids] * math.sqrt(cfg.hidden_size)  # (B, T, D) the main embedding
    token = W["embed_tokens_per_layer.weight"][ids] * math.sqrt(cfg.hidden_size_per_layer_input)  # (B, T, L·P)
    context = (x @ W["per_layer_model_projection.weight"].T) / math.sqrt(cfg.hidden_size)  # (B, T, L·P)
    B, T = ids.shape
    token = token.view(B, T, cfg.num_hidden_layers, -1)  # (B, T, L, P)
    context = rms(context.view(B, T, cfg.num_hidden_layers, -1), W["per_layer_projection_norm.weight"])
    return (token + context) / math.sqrt(2)

ids = torch.tensor([[5, 17, 5, 903, 17]])
p = ple_inputs(ids)
print("per-layer inputs:", tuple(p.shape), "= (batch, tokens, layers, PLE width)")

# %%
with torch.no_grad():
    ours = per_layer_inputs(ids, model.embed(ids), model.embed_tokens_per_layer, model.per_layer_model_projection,
                            model.per_layer_projection_norm, cfg.num_hidden_layers, cfg.hidden_size_per_layer_input)
torch.testing.assert_close(p, ours)
print("matches the package's per_layer_inputs")

# %% [markdown]
# **Notice:** both parts depend only on the token id — the "context" projection reads the
# *input* embedding, not the hidden state. Token 5 gets the same per-layer inputs at position 0
# and position 2. Only when an image or audio embedding replaces a token embedding does the
# projection carry something new. That is what makes PLE cheap: the whole `(vocab, L·P)` result
# could be precomputed and streamed from storage.

# %%
torch.testing.assert_close(p[0, 0], p[0, 2])  # same id at positions 0 and 2: same inputs
torch.testing.assert_close(p[0, 1], p[0, 4])
fig, axes = plt.subplots(1, 3, figsize=(12, 2.6))
for ax, t in zip(axes, [0, 1, 3]):
    im = ax.imshow(p[0, t].T.numpy(), cmap="RdBu", vmin=-3, vmax=3)
    ax.set_title(f"token id {ids[0, t].item()}: per-layer inputs")
    ax.set_xlabel("layer")
    ax.set_ylabel("PLE dim")
    ax.set_xticks(range(cfg.num_hidden_layers))
fig.colorbar(im, ax=list(axes), label="value")
plt.show()

# %% [markdown]
# ## 3. How a layer consumes its slice
# After its MLP, layer `l` runs a tiny gated MLP: the layer's hidden state opens a gate
# (`gelu(W_gate y)`, width P), the gate multiplies the token's slice `p_l`, a projection brings it
# back to width D, a norm, and a residual add. Then the layer output is scaled by `layer_scalar`.
#
# Why a gate: the slice `p_l` depends on the token id alone. The gate is computed from the
# hidden state `y`, which has read the context through attention, so the layer decides, per
# token and in context, how much of each of the `P` token-specific numbers to let in.

# %%
def ple_branch(y, p_l, i):
    g = F.gelu(y @ W[f"layers.{i}.per_layer_input_gate.weight"].T, approximate="tanh")  # (B, T, P)
    out = (g * p_l) @ W[f"layers.{i}.per_layer_projection.weight"].T  # (B, T, D)
    return y + rms(out, W[f"layers.{i}.post_per_layer_input_norm.weight"])

y = torch.randn(1, 5, cfg.hidden_size)
layer = model.layers[2]
with torch.no_grad():
    package = per_layer_branch(y, p[:, :, 2], layer.per_layer_input_gate, layer.per_layer_projection,
                               layer.post_per_layer_input_norm)
torch.testing.assert_close(ple_branch(y, p[:, :, 2], 2), package)
print("matches the package's per_layer_branch")

# %% [markdown]
# The branch is cheap: two small matrices per layer (`D × P` and `P × D`, 0.8M numbers on E2B, against
# 3.1M for its query projection alone) and one norm. The token-specific information is in the table; the
# layer only decides how much of it to use.

# %% [markdown]
# ## 4. Parameter accounting: E2B and E4B
# We count every tensor the presets need (`minigemma.expected_keys`, which `tests/` checks
# against transformers' layout for the real configs), by kind.

# %%
def count(config):
    kinds = {"main embedding": 0, "PLE table": 0, "PLE projection & gates": 0, "attention": 0, "MLP": 0, "norms & scalars": 0}
    for key, shape in minigemma.expected_keys(config).items():
        n = math.prod(shape)
        if key == "embed_tokens.weight": kinds["main embedding"] += n
        elif key == "embed_tokens_per_layer.weight": kinds["PLE table"] += n
        elif "per_layer" in key and "norm" not in key: kinds["PLE projection & gates"] += n
        elif "norm" in key or "layer_scalar" in key: kinds["norms & scalars"] += n
        elif "self_attn" in key: kinds["attention"] += n
        else: kinds["MLP"] += n
    return kinds

# %% [markdown]
# The published totals include the vision and audio towers, which this course has not built
# yet. We count them from transformers' classes on the `meta` device (shapes only, no memory):

# %%
from transformers import Gemma4AudioConfig, Gemma4VisionConfig  # to count the towers (not built yet)
from transformers.models.gemma4.modeling_gemma4 import Gemma4AudioModel, Gemma4VisionModel
with torch.device("meta"):
    towers = {"vision tower": sum(p.numel() for p in Gemma4VisionModel(Gemma4VisionConfig()).parameters()),
              "audio tower": sum(p.numel() for p in Gemma4AudioModel(Gemma4AudioConfig()).parameters())}
print({k: f"{v / 1e9:.2f}B" for k, v in towers.items()})

# %%
published = {"gemma4-e2b": (5.1, 2.3), "gemma4-e4b": (8.0, 4.5)}  # (total, effective), from the model cards
for name in published:
    c = count(minigemma.preset(name))
    text = sum(c.values())
    embedders = Gemma4VisionConfig().hidden_size * minigemma.preset(name).hidden_size \
        + Gemma4AudioConfig().output_proj_dims * minigemma.preset(name).hidden_size
    total = text + sum(towers.values()) + embedders
    print(f"{name}: " + ", ".join(f"{k} {v / 1e9:.3f}B" for k, v in c.items()))
    print(f"   text decoder {text / 1e9:.2f}B + towers {sum(towers.values()) / 1e9:.2f}B + embedders "
          f"{embedders / 1e9:.3f}B = {total / 1e9:.2f}B total (published {published[name][0]}B)")
    print(f"   effective = text decoder without the PLE table = {(text - c['PLE table']) / 1e9:.2f}B "
          f"(published {published[name][1]}B)")

# %%
fig, ax = plt.subplots(figsize=(8, 2.6))
for row, name in enumerate(published):
    left = 0
    for (kind, n), colour in zip(count(minigemma.preset(name)).items(),
                                 ["#4c72b0", "#dd8452", "#937860", "#55a868", "#c44e52", "#8172b3"]):
        ax.barh(row, n / 1e9, left=left, color=colour, label=kind if row == 0 else None)
        left += n / 1e9
ax.set_yticks([0, 1], list(published))
ax.set_xlabel("billions of parameters (text decoder)")
ax.legend(fontsize=7, ncol=3, loc="upper center", bbox_to_anchor=(0.5, -0.3))  # below the axes
plt.show()

# %% [markdown]
# **What the numbers say.** E2B reproduces both published figures: 5.1B counts the text decoder
# plus the vision and audio towers; "2.3B effective" is the text decoder without the 2.35B PLE
# table. E4B's total reproduces (7.94B, published as 8B); by the same rule its effective size is
# 4.64B, above the published 4.5B. Leaving out the PLE projections and gates too (0.08B) still
# gives 4.56B; we found no convention that yields 4.5B, so we report our count and the rule.
#
# ## Exercises
# Solutions: `../solutions/05_per_layer_embeddings.py`.
#
# ## What you built
# - the two halves of the per-layer inputs (a token lookup and a projection of the main embedding),
#   each with the scale that keeps it at unit size, and their sum;
# - the gated branch through which each layer reads its slice;
# - the accounting that explains the two sizes in the names of E2B and E4B.
#
# **Exercise 5.1 — PLE end to end.** Write `ple_end_to_end(model, ids, y, i)`: starting from the
# token ids, compute the per-layer inputs and apply layer `i`'s PLE branch to the hidden state `y`
# (return `y` plus the branch), reading every weight from `model.state_dict()`. The checker uses a
# model you have not seen, with its own sizes, so take them from `model.config`.

# %%
from checks import check_exercise_5_1, check_exercise_5_2

def ple_end_to_end(model, ids, y, i):
    raise NotImplementedError  # your code here: (B, T, D)

check_exercise_5_1(ple_end_to_end)

# %% [markdown]
# **Exercise 5.2 — what must be fetched per token?** Write `ple_bytes_per_token(config, bytes_per_number)`:
# how many bytes of the PLE table one token needs (all layers). For E2B in bfloat16 (2 bytes),
# compare a 1,000-token prompt with the whole table. Why can this table stay in slow memory while
# the main embedding, which is also looked up, must not?

# %%
def ple_bytes_per_token(config, bytes_per_number):
    raise NotImplementedError  # your code here: an int

check_exercise_5_2(ple_bytes_per_token)

# %% [markdown]
# ## References
# - [Gemma 3n overview](https://ai.google.dev/gemma/docs/gemma-3n) and
#   [Gemma 3n model card](https://ai.google.dev/gemma/docs/gemma-3n/model_card) (Google AI for
#   Developers): per-layer embeddings, effective parameters.
# - [Gemma 4 E2B model card](https://huggingface.co/google/gemma-4-E2B-it) and
#   [Gemma 4 E4B model card](https://huggingface.co/google/gemma-4-E4B-it) on Hugging Face: the
#   published total and effective sizes.
# - transformers' [Gemma 4 documentation](https://huggingface.co/docs/transformers/model_doc/gemma4),
#   whose `get_per_layer_inputs` and `project_per_layer_inputs` these cells are checked against.
# - Press and Wolf, [*Using the Output Embedding to Improve Language Models*](https://arxiv.org/abs/1608.05859),
#   2016: tied input and output embeddings, why the main table is also the output head.
