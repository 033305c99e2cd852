# %% [markdown]
# # 07 · Mixture of experts: the 26B-A4B router, 128 experts, and routing you can see
#
# **What you will learn**
# - why a model would want many small MLPs ("experts") and use only a few per token;
# - the router of Gemma 4 26B-A4B: which input it reads (the raw residual), its norm and scales,
#   softmax, top-8, renormalisation, and the per-expert scale;
# - the experts and three ways to run them: a per-token loop, "every expert on every token", and
#   **grouped dispatch**, worked by hand on 6 tokens; then grouped dispatch without its Python
#   loop, as two **grouped matrix products** (what the package runs), and all of them timed;
# - why the model stores 25.2B parameters but uses about 3.8B per token;
# - what a small trained MoE does with English, French, Python and arithmetic, and which of its
#   routing patterns survive a comparison with an **untrained router**.
#
# **Prerequisites:** notebooks 02 and 06 (06b explains training and the load-balancing loss).

# %%
import math
import time
import torch
import torch.nn.functional as F
import matplotlib.pyplot as plt
import minigemma
from minigemma import viz
from minigemma.config import TextConfig
from minigemma.moe import Experts, Router, active_parameters

_ = torch.manual_seed(0)

# %% [markdown]
# ## 1. Why mixture of experts?
# In a dense transformer every token goes through every weight. Knowledge lives mostly in the MLPs,
# so a model that should know more needs wider MLPs — and then *every* token pays for the width,
# whether it is a French verb, a Python keyword or a digit.
#
# A mixture-of-experts (MoE) layer replaces one wide MLP by **many small ones** and adds a tiny
# **router** that picks, for each token, the few experts that should handle it. The stored
# parameters grow with the number of experts; the work per token grows only with how many are
# picked (`k`). This is *conditional computation*: Shazeer et al. (2017) showed it at scale with
# thousands of experts between LSTM layers; GShard (Lepikhin et al., 2020) and the Switch
# Transformer (Fedus et al., 2021) put experts into transformers and trained them across many
# machines. The price is that the model needs memory for all experts, that tokens of one batch go
# to different weights (which is awkward to run fast), and that training must stop the router from
# sending everything to a few favourites (the **load-balancing loss**, notebook 06b).
#
# Gemma 4 26B-A4B has 128 experts per layer and picks 8. Every token also goes through a dense MLP
# beside them. That much is common: DeepSeekMoE ([Dai et al., 2024](https://arxiv.org/abs/2401.06066))
# keeps a few always-active **shared experts** next to its routed ones, Qwen1.5-MoE and Qwen2-MoE
# add one large shared expert ([transformers' Qwen2-MoE](https://huggingface.co/docs/transformers/model_doc/qwen2_moe)),
# and Snowflake Arctic runs a 10B dense transformer with a residual 128-expert MoE MLP beside it
# ([model card](https://huggingface.co/Snowflake/snowflake-arctic-base)). What is Gemma 4's own is
# how the two branches are joined (section 4; `minigemma/decoder.py`, checked against transformers'
# [`modeling_gemma4.py`](https://github.com/huggingface/transformers/blob/main/src/transformers/models/gemma4/modeling_gemma4.py)):
# - **each branch has its own norms.** The dense MLP (hidden 2112, three experts' width) reads
#   `pre_feedforward_layernorm(h)` and its output is normed by `post_feedforward_layernorm_1`; the
#   experts read `pre_feedforward_layernorm_2(h)` and their sum is normed by
#   `post_feedforward_layernorm_2`; the two normed outputs are added and normed once more
#   (`post_feedforward_layernorm`). DeepSeekMoE and DeepSeek-V3 add the shared experts' output to
#   the routed sum as it is; Qwen2-MoE scales its shared expert by a learned sigmoid gate first.
# - **the router reads the raw residual** `h`, with a weightless norm and a learned scale of its
#   own, not the experts' normed input.
# - **the dense part is a Gemma MLP, not an expert:** it has its own width and is not counted among
#   the 128, where a shared expert in DeepSeekMoE is an expert of the same small size.
#
# The picture below is one such layer for one token.

# %%
from matplotlib.patches import FancyBboxPatch

def box(ax, x, y, text, color, w=1.5, h=0.6):
    ax.add_patch(FancyBboxPatch((x - w / 2, y - h / 2), w, h, boxstyle="round,pad=0.05", fc=color, ec="#333"))
    ax.text(x, y, text, ha="center", va="center", fontsize=8)

def arrow(ax, a, b, **kw):
    ax.annotate("", xy=b, xytext=a, arrowprops=dict(arrowstyle="->", color=kw.get("color", "#333"), lw=kw.get("lw", 1)))

fig, ax = plt.subplots(figsize=(10, 3.6))
box(ax, 0, 2, "residual h", "#eeeeee"); box(ax, 2.2, 3.2, "dense MLP", "#c6dbef"); box(ax, 2.2, 1.0, "router", "#fdd0a2")
chosen = {1: 0.6, 5: 0.4}  # two of eight experts, with the router's weights
for e in range(8):
    color = "#fd8d3c" if e in chosen else "#f7f7f7"
    box(ax, 4.6 + (e % 4) * 1.1, 1.5 - (e // 4) * 1.0, f"expert {e}", color, w=0.95, h=0.5)
    if e in chosen:
        arrow(ax, (2.95, 1.0), (4.15 + (e % 4) * 1.1, 1.5 - (e // 4) * 1.0), color="#d94801", lw=1.5)
box(ax, 9.6, 2, "h + norm(dense\n+ Σ w·expert)", "#e5f5e0", w=1.9, h=0.9)
arrow(ax, (0.75, 2.1), (1.45, 3.1)); arrow(ax, (0.75, 1.9), (1.45, 1.1)); arrow(ax, (2.95, 3.2), (8.65, 2.2))
arrow(ax, (8.35, 1.0), (8.75, 1.6), color="#d94801", lw=1.5)
ax.text(8.2, 1.3, "0.6·e1 + 0.4·e5", ha="right", fontsize=7, color="#d94801")
ax.text(2.2, 0.45, "scores → softmax → top-2\nweights 0.6 (expert 1), 0.4 (expert 5)", ha="center", fontsize=7)
ax.set_xlim(-1, 10.8); ax.set_ylim(-0.2, 3.8); ax.axis("off")
ax.set_title("one MoE layer, one token: the dense MLP always runs; the router picks k of E experts")
plt.show()

# %% [markdown]
# ## 2. The router, from scratch
# For a token's residual `h` (width D) the router:
# 1. RMS-normalises `h` **without a weight**, multiplies by a learned `scale` (one number per
#    dimension) and by `D^-½`, so the scores stay the same size whatever the width;
# 2. projects to one score per expert and takes a softmax (in float32);
# 3. keeps the `k` largest probabilities and divides them by their sum, so the `k` weights add up
#    to 1: the token's output will be a weighted average of its experts;
# 4. multiplies each weight by its expert's `per_expert_scale` (next section).
#
# The input is the **raw residual** `h`, not the normed input the experts receive
# (`pre_feedforward_layernorm_2(h)`): the router has its own norm. `tests/test_moe.py` checks the
# chosen experts against transformers on a checkpoint whose every norm and scale is randomised, so
# swapping the two inputs would fail.

# %%
cfg = TextConfig(model_type="gemma4_text", hidden_size=32, num_hidden_layers=1, layer_types=("full_attention",),
                 num_attention_heads=4, num_key_value_heads=1, enable_moe_block=True, num_experts=8,
                 top_k_experts=2, moe_intermediate_size=16)

def randomise(*modules, std):
    with torch.no_grad():
        for m in modules:
            for p in m.parameters():
                p.copy_(torch.randn(p.shape) * std)

router, experts = Router(cfg), Experts(cfg)
randomise(router, experts, std=0.5)

# %%
def route(h, R):
    D = h.shape[-1]
    r = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + 1e-6) * R["scale"] * D ** -0.5  # (N, D)
    probs = (r @ R["proj.weight"].T).float().softmax(-1)  # (N, E)
    top, index = probs.topk(cfg.top_k_experts, dim=-1)  # (N, k)
    return top / top.sum(-1, keepdim=True) * R["per_expert_scale"][index], index

h = torch.randn(6, 32)
weights, index = route(h, router.state_dict())
print("experts chosen per token:", index.tolist())
package_weights, package_index, _ = router(h)
assert torch.equal(index, package_index)
torch.testing.assert_close(weights, package_weights)
print("router matches the package")

# %% [markdown]
# ### What `per_expert_scale` is for
# After step 3 a token's weights sum to 1, whatever experts it picked: the router decides *how to
# share* a token between experts, but not how loud each expert's output should be. Gemma 4 stores
# one more learned number per expert, `per_expert_scale` (E values), and multiplies the weight of
# expert `e` by it for every token that picked `e`. An expert's output is linear in its last
# projection (`down_proj`), so this is the same as scaling that expert's `down_proj` by
# `per_expert_scale[e]`: a gain per expert, kept outside the expert so that the router's weights
# can stay a clean average. The cell checks that equivalence (exercise 7.2 asks you to fold the
# scale into the experts yourself).

# %%
x = torch.randn(6, 32)
w, i, _ = router(x)
unscaled = w / router.per_expert_scale[i]  # the weights before step 4: each row sums to 1
torch.testing.assert_close(unscaled.sum(-1), torch.ones(6))
folded = Experts(cfg)
with torch.no_grad():
    folded.gate_up_proj.copy_(experts.gate_up_proj)
    folded.down_proj.copy_(experts.down_proj * router.per_expert_scale[:, None, None].detach())
    torch.testing.assert_close(experts(x, i, w), folded(x, i, unscaled))
print("per_expert_scale:", [round(v, 2) for v in router.per_expert_scale.tolist()])
print("scaling the weights == scaling each expert's down_proj")

# %% [markdown]
# ## 3. The experts and three ways to run them
# Each expert is a gated-GELU MLP, like Gemma's dense MLP but narrower. The checkpoint packs all of
# them into two tensors: `gate_up_proj (E, 2·I, D)` (gate rows first) and `down_proj (E, D, I)`.

# %%
E = experts.state_dict()

def expert(e, x):
    gate, up = (x @ E["gate_up_proj"][e].T).chunk(2, dim=-1)  # (n, I) each
    return (F.gelu(gate, approximate="tanh") * up) @ E["down_proj"][e].T  # (n, D)

# %% [markdown]
# **A per-token loop** is obviously right: for each token, for each of its `k` choices, run that
# expert on that one token and add its weighted output. It runs `tokens × k` tiny matrix products,
# so Python's overhead dominates.

# %%
def run_loop(x, index, weights):
    out = torch.zeros_like(x)
    for t in range(x.shape[0]):
        for k in range(index.shape[1]):
            out[t] += weights[t, k] * expert(int(index[t, k]), x[t])
    return out

# %% [markdown]
# **Every expert on every token**, then keep only the chosen outputs: a few big tensor operations,
# but `E / k` times the necessary arithmetic (16× for 26B-A4B: 128 experts, 8 chosen).

# %%
def run_dense(x, index, weights):
    mix = torch.zeros(x.shape[0], cfg.num_experts).scatter(1, index, weights)  # (N, E): 0 where not chosen
    return sum(mix[:, e:e + 1] * expert(e, x) for e in range(cfg.num_experts))

# %% [markdown]
# ### Grouped dispatch, worked by hand on 6 tokens
# The fast way does only the necessary arithmetic, in at most `E` batched products: gather the
# tokens that chose expert `e`, run `e` once on all of them, scatter the results back. Take 6 tokens,
# 4 experts, top-2. Each token's two choices are a row of `index`:

# %%
toy_index = torch.tensor([[2, 0], [1, 2], [0, 3], [2, 1], [3, 0], [2, 3]])  # (N=6, k=2)
flat = toy_index.reshape(-1)  # (12,): one entry per (token, choice)
order = flat.argsort(stable=True)  # entries sorted by expert; ties keep token order
counts = torch.bincount(flat, minlength=4)  # how many entries each expert gets
print("flat experts :", flat.tolist())
print("token of each:", (torch.arange(12) // 2).tolist())
print("sorted order :", order.tolist())
print("counts       :", counts.tolist(), "-> sum", int(counts.sum()), "= 6 tokens × k=2")
start = 0
for e, n in enumerate(counts.tolist()):
    rows = order[start:start + n]
    print(f"expert {e}: entries {rows.tolist()} -> tokens {(rows // 2).tolist()}")
    start += n

# %% [markdown]
# Read it as a plan: the 12 `(token, choice)` entries are sorted by expert, so expert 0's entries
# come first (tokens 0, 2, 4), then expert 1's (tokens 1, 3), and so on. Entry `j` belongs to token
# `j // k`. Each expert then runs **once**, on a small batch of its tokens, and `index_add_` puts
# every weighted result back on its token's row (a token with two choices receives two additions).
# The picture shows the same plan: rows are tokens, colours are the expert that handles each choice.

# %%
fig, (a, b) = plt.subplots(1, 2, figsize=(10, 2.8), gridspec_kw={"width_ratios": [1, 2]})
im = a.imshow(toy_index.numpy(), cmap="tab10", vmin=0, vmax=9)
for t in range(6):
    for k in range(2):
        a.text(k, t, int(toy_index[t, k]), ha="center", va="center", color="w")
a.set_xticks([0, 1], ["1st", "2nd"]); a.set_xlabel("choice"); a.set_ylabel("token"); a.set_title("index (N, k)")
start = 0
for e, n in enumerate(counts.tolist()):
    tokens = (order[start:start + n] // 2).tolist()
    b.barh([e] * n, [1] * n, left=range(start, start + n), color=plt.cm.tab10(e), edgecolor="w")
    for j, t in enumerate(tokens):
        b.text(start + j + 0.5, e, f"t{t}", ha="center", va="center", color="w", fontsize=8)
    start += n
b.set_yticks(range(4), [f"expert {e}" for e in range(4)]); b.invert_yaxis()
b.set_xlabel("position in the sorted list of 12 entries"); b.set_title("grouped: each expert runs once")
fig.tight_layout(); plt.show()

# %% [markdown]
# The same steps as a function, for any batch:

# %%
def run_grouped(x, index, weights):
    flat = index.reshape(-1)
    order = flat.argsort(stable=True)
    out, start = torch.zeros_like(x), 0
    for e, n in enumerate(torch.bincount(flat, minlength=cfg.num_experts).tolist()):
        rows = order[start:start + n]  # the entries that chose e
        tokens = rows // index.shape[1]
        out.index_add_(0, tokens, weights.reshape(-1)[rows, None] * expert(e, x[tokens]))
        start += n
    return out

x = torch.randn(20, 32)
w, i, _ = router(x)
with torch.no_grad():
    package = experts(x, i, w)
    for name, fn in [("loop", run_loop), ("dense", run_dense), ("grouped", run_grouped)]:
        torch.testing.assert_close(fn(x, i, w), package, atol=1e-5, rtol=1e-5)
print("all three equal the package's Experts")

# %% [markdown]
# ### Without the loop: two grouped matrix products
# `run_grouped` still loops over the experts in Python: up to 128 small products per layer for
# 26B-A4B. With 64 tokens, each of the 128 experts gets about 4 rows, so that loop spends most of
# its time in Python, not in arithmetic.
# [`torch.nn.functional.grouped_mm`](https://docs.pytorch.org/docs/main/generated/torch.nn.functional.grouped_mm.html)
# runs the whole loop in one call. It takes
# - the stacked weights `(E, out, in)`, as the checkpoint stores them;
# - the sorted entries as the **columns** of one matrix, one block of columns per expert;
# - `offs`: where each expert's block ends, the running total of `counts` (for the 6-token
#   example, `[3, 5, 9, 12]`);
#
# and multiplies weight `e` by block `e` for every `e` (on a CPU, a loop of matrix products in
# C++; an expert with an empty block costs next to nothing). Two details:
# - the weight is on the left (`W x`, tokens as columns): with a few tokens per expert each
#   product is nearly a matrix-vector product, and the CPU's math library runs those about twice
#   as fast this way round as `x @ W.T`;
# - the router weight multiplies the hidden activations, before `down_proj`: a linear layer
#   scales with its input, so this equals weighting the output, on `I` numbers instead of `D`.

# %%
def run_grouped_mm(x, index, weights):
    flat = index.reshape(-1)
    order = flat.argsort(stable=True)
    tokens = order // index.shape[1]  # the token of each sorted entry
    offs = torch.bincount(flat, minlength=cfg.num_experts).cumsum(0).to(torch.int32)  # (E,) block ends
    cols = x[tokens].T  # (D, N·k): one column per entry, in expert blocks
    gate, up = F.grouped_mm(E["gate_up_proj"], cols, offs=offs).chunk(2, dim=0)  # (I, N·k) each
    hidden = F.gelu(gate, approximate="tanh") * up * weights.reshape(-1)[order]  # (I, N·k)
    y = F.grouped_mm(E["down_proj"], hidden, offs=offs)  # (D, N·k)
    return torch.zeros_like(x).index_add_(0, tokens, y.T)  # (N, D): each token adds its k columns

print("offs for the 6-token example:", torch.bincount(toy_index.reshape(-1), minlength=4).cumsum(0).tolist())
with torch.no_grad():
    torch.testing.assert_close(run_grouped_mm(x, i, w), experts(x, i, w))
print("grouped matrix products equal the package's Experts")

# %% [markdown]
# This is what `Experts.forward` runs while experts get few rows each (`minigemma.moe.experts_grouped`,
# which also lays `hidden` out token by token, the layout `grouped_mm` reads fastest). Measured in
# `benchmarks/results_moe.md` (128 experts, top-8, width 512, 2 threads), at 64 tokens it runs
# 7,862 tokens/s: 2.6× the loop over experts (3,060) and 1.9× transformers' `grouped_mm` path
# (4,149), which puts its weights on the right. With many rows per expert the loop's Python
# overhead stops mattering and the loop is faster again (2,048 tokens, 128 rows per expert: 30,135
# tokens/s against 18,670), so from 128 rows per expert on the package runs the loop
# (`moe.LOOP_FROM`).
#
# **Cost.** All four timed here on a block with 64 experts, top-8 (timings vary from run to run, so
# this cell's output is not compared when the notebook is tested):

# %%
# NBVAL_IGNORE_OUTPUT
from minigemma.moe import experts_loop
from moe_baselines import experts_dense, experts_naive  # notebooks/moe_baselines.py: the slow two
big = TextConfig(model_type="gemma4_text", hidden_size=256, num_hidden_layers=1, layer_types=("full_attention",),
                 num_attention_heads=4, num_key_value_heads=1, enable_moe_block=True, num_experts=64,
                 top_k_experts=8, moe_intermediate_size=64)
r_big, e_big = Router(big), Experts(big)
randomise(r_big, e_big, std=0.05)
results = {}
with torch.no_grad():
    for n in (1, 64, 512):
        xb = torch.randn(n, 256)
        wb, ib, _ = r_big(xb)
        for name, fn in [("per-token loop", experts_naive), ("every expert", experts_dense),
                         ("loop over experts", experts_loop), ("grouped matmul (package)", None)]:
            run = (lambda: e_big(xb, ib, wb)) if fn is None else (lambda: fn(e_big, xb, ib, wb))
            run()
            start = time.perf_counter(); run(); results[(name, n)] = n / (time.perf_counter() - start)
fig, ax = plt.subplots(figsize=(7, 3))
for j, name in enumerate(["per-token loop", "every expert", "loop over experts", "grouped matmul (package)"]):
    ax.bar([k + (j - 1.5) * 0.2 for k in range(3)], [results[(name, n)] for n in (1, 64, 512)], 0.2, label=name)
ax.set_xticks(range(3), ["1 token", "64 tokens", "512 tokens"]); ax.set_yscale("log"); ax.set_ylabel("tokens / s (log)")
ax.legend(loc="upper left", fontsize=8); plt.show()

# %% [markdown]
# With one token every version but the dense one does about the same work; with more, grouping
# wins because each expert's tokens share one matrix product, and while experts get only a few
# rows each, the grouped matrix products beat the loop over experts. `benchmarks/bench_moe.py`
# measures them against transformers' experts block on the same weights (the README has the
# table): at 2,048 tokens the loop over experts is ~27× the per-token loop, ~14× the dense version
# and 1.75× transformers (1.5× at one token).
#
# ## 4. Where the experts sit in a Gemma 4 layer
# `h` is the residual after attention. The dense MLP runs as in every Gemma layer; beside it:
# ```
# dense   = post_ffw_norm_1( mlp( pre_ffw_norm(h) ) )
# weights, experts = router( h )                      # the RAW residual
# moe     = post_ffw_norm_2( Σ weights · expert( pre_ffw_norm_2(h) ) )
# out     = h + post_ffw_norm( dense + moe )
# ```
# Each branch has its own output norm before the two are added, so neither can drown the other.
#
# ## 5. Stored vs used parameters: 26B-A4B

# %%
moe_cfg = minigemma.preset("gemma4-26b-a4b")
keys = minigemma.expected_keys(moe_cfg)
total, active = active_parameters(moe_cfg, keys)
experts_total = sum(math.prod(s) for k, s in keys.items() if ".experts." in k)
print(f"stored: {total / 1e9:.2f}B (published 25.2B), of which experts {experts_total / 1e9:.2f}B")
print(f"used per token: {active / 1e9:.2f}B (published 3.8B) = everything but the experts "
      f"+ {moe_cfg.top_k_experts} of {moe_cfg.num_experts} experts")

# %% [markdown]
# Both published figures ([Gemma 4 model card](https://ai.google.dev/gemma/docs/core/model_card_4))
# reproduce from the preset, counting the text decoder only (the vision tower is not in 25.2B) and
# counting the whole embedding matrix as used, since the tied output head multiplies every token by
# all of it. Memory must hold all 25.2B; each token's arithmetic touches about 3.8B.
#
# ## 6. A tiny MoE that has learned something
# `python notebooks/tiny_moe.py` trains a 4-layer model with this same MoE block (16 experts,
# top-2) on four kinds of text in `../data/moe_corpus/`: English and French prose (a few
# hand-written paragraphs plus 32 short stories per language sampled, with a fixed seed, from the
# real Gemma 3 270M), Python code and arithmetic. Its training log, printed below, records the
# command and how long the 150 steps took (59 s, on one thread of the shared machine); the
# checkpoint is committed in `../data/tiny_moe/`. (Trained longer, this small model memorises its
# prose: on an earlier version of the corpus, 600 steps gave held-out English and French losses
# barely under the uniform guess.)
#
# First: did it learn anything? A model that knows nothing spreads its probability evenly over the
# vocabulary, and its loss is `ln(vocabulary size)`. Every held-out loss must be clearly below that.

# %%
from tiny_moe import KINDS, evaluate, load_tiny_moe, read_corpus, validation_data
tiny, vocab, log = load_tiny_moe()
uniform = math.log(tiny.config.vocab_size)
print(log["command"], f"({log['seconds']} s)")
losses = evaluate(tiny, validation_data(vocab))
assert all(abs(losses[k] - v) < 1e-3 for k, v in log["validation_loss"].items())  # reproduces the log
for kind, loss in losses.items():
    print(f"{kind:>10}: held-out loss {loss:.2f} nats, {uniform - loss:.2f} below uniform {uniform:.2f} "
          f"(perplexity {math.exp(loss):,.0f} vs {tiny.config.vocab_size:,})")
assert all(loss < uniform - 1 for loss in losses.values())

# %%
curve = torch.tensor(log["train_loss"])
plt.figure(figsize=(7, 2.6))
plt.plot(curve, alpha=0.3, label="each step"); plt.plot(F.avg_pool1d(curve[None, None], 20, 1)[0, 0], lw=2, label="mean of 20")
plt.axhline(uniform, color="k", ls="--", lw=1, label="uniform guess, ln(vocab)")
plt.xlabel("step"); plt.ylabel("training loss (nats)"); plt.legend(fontsize=8); plt.show()

# %% [markdown]
# ### Routing, and the baseline it must beat
# A router with random weights does **not** route at random: it computes the same scores for the
# same token every time, so it sends each token deterministically wherever its random projection
# happens to point. Since English, French, Python and arithmetic use mostly different tokens, even
# an untrained router gives each kind "favourite" experts. Any claim about what the router
# *learned* must therefore beat a baseline: the same trained model with its routers re-initialised
# as before training (`with_untrained_routers`), several times with different seeds.
#
# The measure: the **mutual information** between the kind of text and the expert chosen, in bits
# (0 = the expert tells nothing about the kind; 2 = it tells which of the four kinds it is).

# %%
from tiny_moe import expert_shares, kind_information, with_untrained_routers
corpus = read_corpus(vocab.tokenizer)
held_out = {kind: [vocab.small.get(i, 0) for i in corpus[kind][1][:200]] for kind in KINDS}
baselines = [with_untrained_routers(tiny, seed) for seed in range(5)]
trained_shares = expert_shares(tiny, held_out)  # per layer: {kind: (E,) fractions}
baseline_shares = [expert_shares(b, held_out) for b in baselines]
info = [kind_information(s) for s in trained_shares]
base_info = [[kind_information(b[layer]) for b in baseline_shares] for layer in range(len(tiny.layers))]
for layer, (t, base) in enumerate(zip(info, base_info)):
    print(f"layer {layer}: trained router {t:.2f} bits; untrained routers {min(base):.2f}–{max(base):.2f} bits")

# %%
layer = 1
fig = viz.plot_expert_load(trained_shares[layer], f"layer {layer}, trained router: fraction of each kind's "
                           "held-out tokens choosing each expert", top_k=tiny.config.top_k_experts)
plt.show()
fig = viz.plot_expert_load(baseline_shares[0][layer], f"layer {layer}, untrained router (seed 0), same model "
                           "otherwise", top_k=tiny.config.top_k_experts)
plt.show()

# %% [markdown]
# Each token chooses 2 of the 16 experts, so each kind's bars add up to **2** (200 %), not 1; the
# dashed line at 12.5 % = 2/16 is what every expert would get if choices were spread evenly.
#
# The heat maps show the router's weight for each of the first 24 held-out tokens of each kind
# (white = not chosen):

# %%
maps = {kind: viz.routing(tiny, torch.tensor([ids]))[layer][:24] for kind, ids in held_out.items()}
top = max(float(m.max()) for m in maps.values())  # one colour scale for all four panels
fig, axes = plt.subplots(1, 4, figsize=(15, 5))
for ax, (kind, ids) in zip(axes, held_out.items()):
    viz.plot_routing(maps[kind], vocab.pieces(ids[:24]), kind, ax, vmax=top)
fig.suptitle(f"layer {layer}: router weights, first 24 held-out tokens of each kind")
fig.tight_layout()
fig.colorbar(axes[-1].images[0], ax=axes, shrink=0.6, label="router weight")
plt.show()

# %% [markdown]
# Explore every layer and your own text when you run the notebook (the widget needs a live kernel;
# the heat maps above are its static version):

# %%
# NBVAL_IGNORE_OUTPUT
viz.routing_explorer(tiny, vocab, {"English": "The train left the station at eight in the morning.",
                                   "French": "Le train quitte la gare à huit heures du matin.",
                                   "Python": "def add(a, b):\n    return a + b\n",
                                   "arithmetic": "12 + 30 = 42\n7 * 8 = 56\n"})

# %% [markdown]
# One more comparison. Training added a load-balancing loss (notebook 06b) that should keep any
# one expert from taking too many tokens. Does the trained router spread the load more evenly than
# untrained ones? The measure: the fraction of all held-out tokens (the four kinds pooled) that
# choose the busiest expert; an even spread would give 2/16 = 12.5 %.

# %%
def busiest(shares):
    return float(torch.stack(list(shares.values())).mean(0).max())

print(f"an even spread: {tiny.config.top_k_experts}/{tiny.config.num_experts} = "
      f"{tiny.config.top_k_experts / tiny.config.num_experts:.1%} of tokens per expert")
for layer in range(len(tiny.layers)):
    base = [busiest(b[layer]) for b in baseline_shares]
    print(f"layer {layer}: busiest expert takes {busiest(trained_shares[layer]):.0%} of tokens (trained router); "
          f"{min(base):.0%}–{max(base):.0%} (untrained routers)")

# %% [markdown]
# ## 7. What survives the baseline
# - **The model learned.** Every held-out loss is well below the uniform guess: by 1.4–1.6 nats
#   for English and French prose (perplexity near 1,000 instead of 4,190), by more for Python (2.4),
#   and arithmetic is far easier still (perplexity 10). That is still a weak language model — it
#   has seen a few thousand tokens of each language — but it is no longer guessing.
# - **Favourite experts alone prove nothing; here the trained routers do beat the baseline.** An
#   untrained router on the same model already gives each kind its favourites, because the kinds
#   use different tokens and a router is a deterministic function of its input. That is why the
#   comparison matters: in all four layers the trained router carries more information about the
#   kind of text than every one of the five untrained ones, 0.89–1.26 bits against at most 0.97.
#   The margin is widest in layer 1 (1.26 bits against at most 0.94) and narrowest in layer 0
#   (0.89 against at most 0.81).
# - **Load sharing: only partly.** The load-balancing loss asks for an even spread (12.5 % per
#   expert here). Only in layer 1 is the trained router more even than every untrained one (its
#   busiest expert takes 25 % of the tokens, against 26 % or more); in layer 2 it ties the most
#   even untrained router (30 %), and in layers 0 and 3 it falls inside the untrained range (24 % and
#   43 %), so there the difference could be chance.
# - What we do **not** claim: that an expert "is" the French expert or the digits expert. With
#   this little training, *which* expert a kind prefers may say as much about the random starting
#   point as about learning; the heat maps above are worth reading as pictures of routing, not as
#   evidence of specialisation.
#
# ## References
# - Shazeer et al., [*Outrageously Large Neural Networks: The Sparsely-Gated Mixture-of-Experts Layer*](https://arxiv.org/abs/1701.06538), 2017: conditional computation, top-k gating, a balancing loss.
# - Lepikhin et al., [*GShard: Scaling Giant Models with Conditional Computation and Automatic Sharding*](https://arxiv.org/abs/2006.16668), 2020: experts in every other transformer layer, top-2.
# - Fedus, Zoph and Shazeer, [*Switch Transformers*](https://arxiv.org/abs/2101.03961), 2021: top-1 routing and the load-balancing loss used to train the tiny MoE here.
# - Jiang et al., [*Mixtral of Experts*](https://arxiv.org/abs/2401.04088), 2024: a widely used open MoE decoder (8 experts, top-2).
# - Google, [Gemma 4 model card](https://ai.google.dev/gemma/docs/core/model_card_4): 26B-A4B, 25.2B stored and 3.8B active parameters.
#
# ## Exercises
# Solutions: `../solutions/07_mixture_of_experts.py`.
#
# **Exercise 7.1 — grouped dispatch on a toy batch.** Write `dispatch_plan(index, num_experts)`:
# for each expert, the list of tokens it processes, in the order grouped dispatch runs them
# (`index` is `(N, k)`; a token that chose an expert twice would appear twice). For the 6-token
# example above the answer is `[[0, 2, 4], [1, 3], [0, 1, 3, 5], [2, 4, 5]]`.

# %%
from checks import check_exercise_7_1, check_exercise_7_2, check_exercise_7_3

def dispatch_plan(index, num_experts):
    raise NotImplementedError  # your code here

check_exercise_7_1(dispatch_plan)

# %% [markdown]
# **Exercise 7.2 — fold `per_expert_scale` into the experts.** Write
# `fold_per_expert_scale(per_expert_scale, down_proj)` returning a new `down_proj (E, D, I)` such that
# experts with it, fed the weights *before* the per-expert scale, give the same output as the
# original experts fed the router's final weights. Which projection could you *not* fold it into,
# and why? (Answer in the solutions.)

# %%
def fold_per_expert_scale(per_expert_scale, down_proj):
    raise NotImplementedError  # your code here

check_exercise_7_2(fold_per_expert_scale)

# %% [markdown]
# **Exercise 7.3 — the load-balancing loss.** Write `balance_loss(index, probs, num_experts)` for
# one layer: `E · Σ_e f_e · P_e`, where `f_e` is the fraction of the `(token, choice)` entries that
# went to expert `e` and `P_e` the mean router probability of `e` over tokens. What is its value when
# every expert gets the same share and the same mean probability? (Answer in the solutions.)

# %%
def balance_loss(index, probs, num_experts):
    raise NotImplementedError  # your code here

check_exercise_7_3(balance_loss)
