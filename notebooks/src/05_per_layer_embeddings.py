# %% [markdown]
# # 05 · Per-layer embeddings (PLE): how E2B has 5.1B parameters but "runs like" 2.3B
#
# **What you will learn**
# - what per-layer embeddings are: a second, much larger embedding table that hands every layer
#   its own small vector for each token;
# - every scale and norm on the way, built from scratch and checked against the package;
# - why the table can live outside fast memory (it is only *looked up*, never multiplied);
# - parameter accounting for E2B and E4B from the presets, against the published figures;
# - what Gemma 4 kept from Gemma 3n (PLE, KV sharing) and what it dropped (AltUp, LAuReL, MatFormer).
#
# **Prerequisites:** notebooks 02 and 04.
#
# **Where it comes from.** Per-layer embeddings were introduced with
# [Gemma 3n](https://ai.google.dev/gemma/docs/gemma-3n), Google's models for phones and laptops,
# together with KV sharing and the "E" in E2B/E4B (*effective* size). Gemma 4's E2B and E4B keep
# those and drop the rest of Gemma 3n's machinery (section 5).
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
text_decoder = sum(math.prod(shape) for shape in minigemma.expected_keys(e2b).values())
print(f"PLE table = {L * P / D:.1f}× the main embedding = {V * L * P / text_decoder:.0%} of the text decoder")

# %% [markdown]
# The PLE table is almost six times the size of the main embedding (5.8×): 2.35B numbers, about
# half of E2B's text decoder (51 %). Yet a token uses one row of it (8,960 numbers), and no matrix product ever
# touches the rest. Compare the main embedding: it is also the output head (tied weights), so at
# every step the final hidden state is multiplied with all of its 262,144 rows.
#
# Notation for the rest of the notebook: `L` layers, PLE width `P`, model width `D`, vocabulary `V`.
#
# **The whole path at a glance.** Each token's per-layer inputs are made once, from two parts: a
# row of the PLE table (the *token-identity* part) and a projection of the token's ordinary
# embedding (the *projection* part). Layer `i` takes its slice `p_i` and lets it into its residual
# stream through a small gate. Sections 2 and 3 build the two halves of this picture.

# %%
def draw(ax, boxes, arrows):
    """boxes: name -> (x, y, text, colour); arrows: (from, to) pairs, drawn edge to edge."""
    t = {k: ax.text(x, y, s, ha="center", va="center", fontsize=8.5,
                    bbox=dict(boxstyle="round,pad=0.45", fc=c, ec="#555555")) for k, (x, y, s, c) in boxes.items()}
    for a, b in arrows:
        ax.annotate("", xy=boxes[b][:2], xytext=boxes[a][:2], arrowprops=dict(
            arrowstyle="-|>", color="#333333", patchA=t[a].get_bbox_patch(), patchB=t[b].get_bbox_patch()))

TOK, PROJ, MIX, LAYER = "#f3d9a4", "#bcd4ee", "#d6e8c6", "#eeeeee"
boxes = {"id": (0.7, 3, "token id", "white"),
         "row": (3.0, 4.7, "PLE table row\n(L·P numbers)", TOK), "tok": (5.7, 4.7, "× √P\nreshape to (L, P)", TOK),
         "emb": (3.0, 1.3, "main embedding\nE[id] · √D", PROJ),
         "prj": (5.7, 1.3, "project D → L·P, × D^-½\nRMS-norm each layer", PROJ),
         "mix": (8.1, 3, "add, × 2^-½\n(L, P) per token", MIX), "pi": (10.1, 3, "slice p_i\n(P numbers)", MIX),
         "y": (13.2, 5.2, "layer i: attention + MLP\n→ hidden state y", LAYER),
         "gate": (13.2, 3.9, "gate = gelu(W_gate y)\n(P numbers)", LAYER),
         "mul": (13.2, 2.6, "gate ⊙ p_i → W_proj (P → D)\n→ RMS-norm", LAYER),
         "add": (13.2, 1.3, "y + branch,\n× layer_scalar", LAYER), "next": (13.2, 0.1, "to layer i + 1", "white")}
arrows = [("id", "row"), ("id", "emb"), ("row", "tok"), ("emb", "prj"), ("tok", "mix"), ("prj", "mix"),
          ("mix", "pi"), ("y", "gate"), ("gate", "mul"), ("pi", "mul"), ("mul", "add"), ("add", "next")]

# %%
fig, ax = plt.subplots(figsize=(12, 4.2))
ax.set_xlim(-0.2, 15.2); ax.set_ylim(-0.5, 5.8); ax.axis("off")
ax.add_patch(plt.Rectangle((11.05, 0.6), 4.3, 5.15, fc="#f8f8f8", ec="#999999", ls="--"))
ax.text(1.6, 5.5, "token-identity part (a lookup)", color="#a0701a", fontsize=9)
ax.text(1.6, 0.25, "projection part (from the main embedding)", color="#2d5f93", fontsize=9)
draw(ax, boxes, arrows)
ax.annotate("", xy=(14.9, 1.3), xytext=(14.9, 5.2),
            arrowprops=dict(arrowstyle="-|>", connectionstyle="arc3,rad=-0.3", color="#999999"))
ax.text(15.1, 3.2, "residual", rotation=90, va="center", fontsize=8, color="#777777")
ax.set_title("PLE: from a token id into every layer (made once per token; layer i takes slice i)")
plt.show()

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
# Step 1, the **token-identity** part: look the ids up and scale by `√P` (√256 = 16 on the real models).
# Step 2, the **projection** part: project the token's *main* embedding (its ordinary input
# embedding, not a hidden state) to `L × P`, scale by `D^-½`, RMS-norm each layer's slice.
# Step 3: add them and scale by `2^-½` (so the sum of two unit-size parts stays unit-size).

# %% [markdown]
# **Why these three scales.** Each keeps a part at a known size, so that neither part drowns the other:
# - the table is stored with small rows (like the main embedding), and `√P` brings a looked-up
#   row up to the size of one number per dimension, the way `√D` does for the main embedding;
# - the projection sums `D` products, so its outputs grow like `√D`, and `D^-½` brings them back.
#   But the RMS-norm right after it divides out *any* constant factor (up to its tiny `eps`), so
#   this scale changes almost nothing: what sets the size of the projection part is the norm's
#   learned weight;
# - two independent parts of size 1 add up to size `√2`, so the sum is divided by `√2`.
#
# The second and the third are easy to check on random numbers:

# %%
z = 7 * torch.randn(4, 256)  # a projection output of any size
diff = (F.rms_norm(z / math.sqrt(1536), (256,), eps=1e-6) - F.rms_norm(z, (256,), eps=1e-6)).abs().max().item()
print(f"RMS-norm with and without the D^-½ scale (D = 1536): largest difference {diff:.0e}")
a, b = torch.randn(100_000), torch.randn(100_000)  # two independent parts, RMS 1 each
rms_of_sum = ((a + b) / math.sqrt(2)).pow(2).mean().sqrt().item()
assert abs(rms_of_sum - 1) < 0.02 and diff < 1e-3
print(f"RMS of (a + b) / √2 = {rms_of_sum:.3f}")

# %%
def rms(x, w, eps=1e-6):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * w

def ple_inputs(ids):
    x = W["embed_tokens.weight"][ids] * math.sqrt(cfg.hidden_size)  # (B, T, D) the main embedding
    token = W["embed_tokens_per_layer.weight"][ids] * math.sqrt(cfg.hidden_size_per_layer_input)  # (B, T, L·P)
    proj = (x @ W["per_layer_model_projection.weight"].T) / math.sqrt(cfg.hidden_size)  # (B, T, L·P)
    B, T = ids.shape
    token = token.view(B, T, cfg.num_hidden_layers, -1)  # (B, T, L, P)
    proj = rms(proj.view(B, T, cfg.num_hidden_layers, -1), W["per_layer_projection_norm.weight"])  # (B, T, L, P)
    return (token + proj) / math.sqrt(2)

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
# **Notice:** for text, *both* parts depend only on the token id. The projection part reads the
# token's *input* embedding, not a hidden state, so it has seen no context at all (transformers'
# docstring calls it "context-aware"; for text it is not). Token 5 gets the same per-layer inputs at
# position 0 and position 2. Only when an image or audio embedding replaces a token embedding
# does the projection carry something the id does not. That is what makes PLE cheap: for text,
# the whole `(vocab, L·P)` result could be precomputed and streamed from storage.

# %%
torch.testing.assert_close(p[0, 0], p[0, 2])  # token 5 at positions 0 and 2: the same inputs
torch.testing.assert_close(p[0, 1], p[0, 4])  # token 17 at positions 1 and 4
print("ids:", ids[0].tolist())
print("same id, same per-layer inputs, wherever it stands:", torch.equal(p[0, 0], p[0, 2]) and torch.equal(p[0, 1], p[0, 4]))

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
shapes = minigemma.expected_keys(e2b)
branch = sum(math.prod(shapes[f"layers.0.{n}.weight"]) for n in ("per_layer_input_gate", "per_layer_projection"))
print(f"E2B layer 0: PLE branch {branch / 1e6:.1f}M numbers, query projection "
      f"{math.prod(shapes['layers.0.self_attn.q_proj.weight']) / 1e6:.1f}M")

# %% [markdown]
# The branch is cheap: two small matrices per layer (`D × P` and `P × D`, 0.8M numbers on E2B, against
# 3.1M for the query projection of a sliding layer alone) and one norm. The token-specific information is in the table; the
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
          f"(published {published[name][1]}B); without the PLE projections and gates too: "
          f"{(text - c['PLE table'] - c['PLE projection & gates']) / 1e9:.2f}B")

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
# ## 5. What Gemma 4 kept and dropped from Gemma 3n
# Gemma 3n was Google's "mobile-first" family, and its E2B and E4B brought several new
# pieces at once ([developer guide](https://developers.googleblog.com/en/introducing-gemma-3n-developer-guide/)).
# Gemma 4's E2B and E4B are their successors, and keep two of those pieces.
#
# **Kept**
# - **Per-layer embeddings**, this notebook. One thing moved: in Gemma 3n the PLE branch's output
#   is added to AltUp's extra copies of the residual stream (below), not to the copy the layer
#   computes on; with AltUp gone, Gemma 4 adds it to its one residual stream.
# - **KV-cache sharing**, notebook 04 section 3: the last layers reuse the keys and values of
#   the last layer of their type that makes its own.
#
# **Dropped**
# - **AltUp**, alternating updates ([Baykal et al., 2023](https://arxiv.org/abs/2301.13310)):
#   Gemma 3n carries its residual stream as several copies of width `D` (`altup_num_inputs`). Each
#   layer computes on one of them; a cheap learned map predicts the others before the layer and
#   corrects them after it, so the model gets a wider residual stream for little extra compute.
#   Gemma 4 has one residual stream of width `D`.
# - **LAuReL**, the learned augmented residual layer ([Menghani et al., 2024](https://arxiv.org/abs/2411.07501)):
#   beside its attention, each Gemma 3n layer adds a low-rank learned path (`D → laurel_rank → D`,
#   then a norm) to the residual connection. Gemma 4's residual connections are plain additions.
# - **Activation sparsity**: Gemma 3n's first layers zero all but the largest MLP gate activations
#   (a cut-off set from their mean and standard deviation, `activation_sparsity_pattern`). Gemma 4's MLPs are dense.
# - **MatFormer**, the nested "Matryoshka" transformer ([Devvrit et al., 2023](https://arxiv.org/abs/2310.07707)):
#   Gemma 3n's E4B was trained with E2B inside it. E2B is E4B with fewer layers and narrower MLPs at
#   the same width, and "Mix-n-Match" cuts sizes in between (the developer guide above;
#   [google/gemma3n-slicing-configs](https://huggingface.co/datasets/google/gemma3n-slicing-configs)).
#   Gemma 4's E2B and E4B have different widths (printed below), so one cannot be a slice of the
#   other, and Gemma 4's documentation explains the "E" by PLE alone
#   ([overview](https://ai.google.dev/gemma/docs/core), [model card](https://ai.google.dev/gemma/docs/core/model_card_4)).
#   Whether each Gemma 4 model was trained with nested MLPs inside it, we found no source saying,
#   so we do not claim it.
#
# transformers' two text configs show the same thing field by field: the AltUp, LAuReL and sparsity
# settings exist only in Gemma 3n's; the PLE and KV-sharing ones in both. (Defaults printed; those of
# `Gemma3nTextConfig` are gemma-3n-E4B's.)

# %%
from transformers import Gemma3nTextConfig, Gemma4TextConfig  # their fields, as facts about each design
g3n, g4 = Gemma3nTextConfig().to_dict(), Gemma4TextConfig().to_dict()
print("only in Gemma 3n's text config:")
for key in sorted(set(g3n) - set(g4)):
    v = g3n[key]
    print(f"   {key} = {v if not isinstance(v, list) else f'[{v[0]}] × {v.count(v[0])} + [{v[-1]}] × {v.count(v[-1])}'}")
shared = ("hidden_size_per_layer_input", "vocab_size_per_layer_input", "num_kv_shared_layers")
print("in both:", ", ".join(key for key in shared if key in g3n and key in g4))
print(f"Gemma 3n E4B (config defaults): width {g3n['hidden_size']}, {g3n['num_hidden_layers']} layers")
for name in ("gemma4-e2b", "gemma4-e4b"):
    c = minigemma.preset(name)
    print(f"{name}: width {c.hidden_size}, {c.num_hidden_layers} layers")

# %% [markdown]
# ## What you built
# - the two halves of the per-layer inputs (a token-identity lookup and a projection of the main
#   embedding), each with its scale, and their sum;
# - the gated branch through which each layer reads its slice, and the picture of the whole path;
# - the accounting that explains the two sizes in the names of E2B and E4B;
# - what Gemma 4 kept from Gemma 3n (PLE, KV sharing) and what it dropped (AltUp, LAuReL,
#   activation sparsity, MatFormer nesting).
#
# ## Exercises
# Solutions: `../solutions/05_per_layer_embeddings.py`.
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
# - Google, [*Introducing Gemma 3n: the developer guide*](https://developers.googleblog.com/en/introducing-gemma-3n-developer-guide/),
#   2025: MatFormer and Mix-n-Match, PLE, KV-cache sharing.
# - Baykal et al., [*Alternating Updates for Efficient Transformers*](https://arxiv.org/abs/2301.13310), 2023 (AltUp).
# - Menghani et al., [*LAuReL: Learned Augmented Residual Layer*](https://arxiv.org/abs/2411.07501), 2024.
# - Devvrit et al., [*MatFormer: Nested Transformer for Elastic Inference*](https://arxiv.org/abs/2310.07707), 2023.
# - transformers' [Gemma 3n text config](https://github.com/huggingface/transformers/blob/main/src/transformers/models/gemma3n/configuration_gemma3n.py)
#   and [Gemma 3n model](https://github.com/huggingface/transformers/blob/main/src/transformers/models/gemma3n/modeling_gemma3n.py)
#   (`Gemma3nTextAltUp`, `Gemma3nTextLaurelBlock`, the decoder layer), read for facts.
