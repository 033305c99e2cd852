# %% [markdown]
# # 07 · Mixture of experts: the 26B-A4B router, 128 experts, and routing you can see
#
# **What you will learn**
# - the router of Gemma 4 26B-A4B: which input it reads (the raw residual — two ports got this
#   wrong), its norm and scales, softmax, top-8, renormalisation, per-expert scale;
# - the experts and three ways to run them: a per-token loop, "every expert on every token", and
#   grouping tokens by expert, timed against each other;
# - why the model stores 25.2B parameters but uses about 3.8B per token;
# - what a small trained MoE does with English, French, Python and arithmetic.
#
# **Prerequisites:** notebooks 02 and 06.

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
# ## 1. The router, from scratch
# For a token's residual `h` (width D): RMS-norm **without a weight**, times a learned `scale`,
# times `D^-½`; project to one score per expert; softmax in float32; keep the top k; make those k
# sum to 1; multiply each by its expert's `per_expert_scale`.

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

def route(h, R):
    D = h.shape[-1]
    r = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + 1e-6) * R["scale"] * D ** -0.5
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
# ## 2. The experts and three ways to run them
# Each expert is a gated-GELU MLP. The checkpoint packs all of them in two tensors:
# `gate_up_proj (E, 2·I, D)` (gate rows first) and `down_proj (E, D, I)`.

# %%
E = experts.state_dict()

def expert(e, x):
    gate, up = (x @ E["gate_up_proj"][e].T).chunk(2, dim=-1)
    return (F.gelu(gate, approximate="tanh") * up) @ E["down_proj"][e].T

def run_loop(x, index, weights):  # one token, one chosen expert at a time
    out = torch.zeros_like(x)
    for t in range(x.shape[0]):
        for k in range(index.shape[1]):
            out[t] += weights[t, k] * expert(int(index[t, k]), x[t])
    return out

def run_dense(x, index, weights):  # every expert on every token, keep the chosen
    mix = torch.zeros(x.shape[0], cfg.num_experts).scatter(1, index, weights)  # (N, E)
    return sum(mix[:, e:e + 1] * expert(e, x) for e in range(cfg.num_experts))

def run_grouped(x, index, weights):  # sort the (token, choice) pairs by expert; each expert runs once
    flat = index.reshape(-1)
    order = flat.argsort(stable=True)
    out = torch.zeros_like(x)
    for e in flat.unique():
        rows = order[flat[order] == e]  # the (token, choice) pairs that chose e
        tokens = rows // index.shape[1]
        out.index_add_(0, tokens, weights.reshape(-1)[rows, None] * expert(int(e), x[tokens]))
    return out

x = torch.randn(20, 32)
w, i, _ = router(x)
with torch.no_grad():
    a, b, c, package = run_loop(x, i, w), run_dense(x, i, w), run_grouped(x, i, w), experts(x, i, w)
for name, y in [("loop", a), ("dense", b), ("grouped", c)]:
    torch.testing.assert_close(y, package, atol=1e-5, rtol=1e-5)
print("all three equal the package's Experts")

# %% [markdown]
# **Cost.** The loop runs `tokens × k` tiny matrix products (Python overhead dominates); the
# dense version does `E / k` times the necessary arithmetic (16× for 26B-A4B); grouping does just
# the necessary arithmetic in `≤ E` batched products. Timed here on a block with 64 experts, top-8:

# %%
# NBVAL_IGNORE_OUTPUT
big = TextConfig(model_type="gemma4_text", hidden_size=256, num_hidden_layers=1, layer_types=("full_attention",),
                 num_attention_heads=4, num_key_value_heads=1, enable_moe_block=True, num_experts=64,
                 top_k_experts=8, moe_intermediate_size=64)
r_big, e_big = Router(big), Experts(big)
randomise(r_big, e_big, std=0.05)
from minigemma.moe import experts_dense, experts_naive
results = {}
with torch.no_grad():
    for n in (1, 64, 512):
        xb = torch.randn(n, 256)
        wb, ib, _ = r_big(xb)
        for name, fn in [("per-token loop", experts_naive), ("every expert", experts_dense), ("grouped", None)]:
            run = (lambda: e_big(xb, ib, wb)) if fn is None else (lambda: fn(e_big, xb, ib, wb))
            run()
            start = time.perf_counter(); run(); results[(name, n)] = n / (time.perf_counter() - start)
fig, ax = plt.subplots(figsize=(7, 3))
for j, name in enumerate(["per-token loop", "every expert", "grouped"]):
    ax.bar([k + (j - 1) * 0.27 for k in range(3)], [results[(name, n)] for n in (1, 64, 512)], 0.27, label=name)
ax.set_xticks(range(3), ["1 token", "64 tokens", "512 tokens"]); ax.set_yscale("log"); ax.set_ylabel("tokens / s")
ax.legend(); plt.show()

# %% [markdown]
# `benchmarks/bench_moe.py` measures the same three against transformers' experts block on the
# same weights (the README has the table): at 2,048 tokens grouping is ~30× the loop, ~15× the
# dense version and 1.6–2× transformers; at 64 tokens transformers' single grouped kernel wins.
#
# ## 3. Where the experts sit in a Gemma 4 layer
# `h` is the residual after attention. The dense MLP runs as in every Gemma layer; beside it:
# ```
# dense   = post_ffw_norm_1( mlp( pre_ffw_norm(h) ) )
# weights, experts = router( h )                      # the RAW residual
# moe     = post_ffw_norm_2( Σ weights · expert( pre_ffw_norm_2(h) ) )
# out     = h + post_ffw_norm( dense + moe )
# ```
# Two PyPI ports fed the router `pre_ffw_norm(h)` instead: with norms left at 1 their logits looked
# perfect (1.5e-6), with realistic norms they were off by 0.31 (`tests/test_gemma4.py` perturbs every
# norm and router scale, and checks each token's chosen experts against transformers).
#
# ## 4. Stored vs used parameters: 26B-A4B

# %%
moe_cfg = minigemma.preset("gemma4-26b-a4b")
keys = minigemma.expected_keys(moe_cfg)
total, active = active_parameters(moe_cfg, keys)
experts_total = sum(math.prod(s) for k, s in keys.items() if ".experts." in k)
print(f"stored: {total / 1e9:.2f}B (published 25.2B), of which experts {experts_total / 1e9:.2f}B")
print(f"used per token: {active / 1e9:.2f}B (published 3.8B) = everything but the experts "
      f"+ {moe_cfg.top_k_experts} of {moe_cfg.num_experts} experts")

# %% [markdown]
# Both published figures reproduce from the preset, counting the text decoder only (the vision
# tower is not in 25.2B) and counting the whole embedding matrix as used, since the tied output
# head multiplies every token by all of it.
#
# ## 5. A tiny MoE that has learned something
# Random weights route at random. `python -m minigemma.train_tiny_moe` trains a 4-layer model with
# this same MoE block (16 experts, top-2) on four kinds of text in `../data/moe_corpus/`, in about a
# minute and a half on 2 CPU cores. The checkpoint is committed (`../data/tiny_moe/`, 4.3 MB).

# %%
from minigemma.train_tiny_moe import KINDS, evaluate, load_tiny_moe, read_corpus, validation_data
tiny, vocab, log = load_tiny_moe()
print(log["command"], f"({log['seconds']} s)")
print("validation loss:", log["validation_loss"])
losses = evaluate(tiny, validation_data(vocab))
assert all(abs(losses[k] - v) < 1e-3 for k, v in log["validation_loss"].items())  # reproduces the log
curve = torch.tensor(log["train_loss"])
plt.figure(figsize=(7, 2.6))
plt.plot(curve, alpha=0.3); plt.plot(torch.nn.functional.avg_pool1d(curve[None, None], 20, 1)[0, 0], lw=2)
plt.xlabel("step"); plt.ylabel("training loss"); plt.show()

# %% [markdown]
# The prose texts are only a few kilobytes, so the model memorises them (training loss 0.6,
# validation loss high for English and French); arithmetic and code generalise better. For what
# we want to see, routing, that is enough.

# %%
corpus = read_corpus(vocab.tokenizer)
held_out = {kind: [vocab.small.get(i, 0) for i in corpus[kind][1][:200]] for kind in KINDS}
layer = 1
maps = {kind: viz.routing(tiny, torch.tensor([ids]))[layer] for kind, ids in held_out.items()}
fig = viz.plot_expert_load({kind: (m > 0).float().mean(0) for kind, m in maps.items()},
                           f"layer {layer}: share of each kind's tokens choosing each expert (held-out text)")
plt.show()

# %%
fig, axes = plt.subplots(1, 4, figsize=(14, 5))
for ax, (kind, ids) in zip(axes, held_out.items()):
    viz.plot_routing(maps[kind][:24], vocab.pieces(ids[:24]), kind, ax)
fig.suptitle(f"layer {layer}: router weights, first 24 held-out tokens of each kind")
fig.tight_layout()
plt.show()

# %% [markdown]
# Explore every layer and your own text (run the notebook; the picture above is the static version):

# %%
# NBVAL_IGNORE_OUTPUT
viz.routing_explorer(tiny, vocab, {"English": "The train left the station at eight in the morning.",
                                   "French": "Le train quitte la gare à huit heures du matin.",
                                   "Python": "def add(a, b):\n    return a + b\n",
                                   "arithmetic": "12 + 30 = 42\n7 * 8 = 56\n"})

# %% [markdown]
# ## 6. What did the experts learn?
# For each layer: the two experts each kind uses most, and how concentrated that is (with 16
# experts and 2 choices, a router that ignored the text would give each expert 12.5 % of tokens).

# %%
for l in range(len(tiny.layers)):
    row = []
    for kind, ids in held_out.items():
        share = (viz.routing(tiny, torch.tensor([ids]))[l] > 0).float().mean(0)
        top = share.topk(2)
        row.append(f"{kind} → {top.indices[0].item()} ({top.values[0]:.0%}), {top.indices[1].item()} ({top.values[1]:.0%})")
    print(f"layer {l}: " + ";  ".join(row))

# %%
share_l1 = {kind: (m > 0).float().mean(0) for kind, m in maps.items()}
for kind in KINDS:
    favourite = int(share_l1[kind].argmax())
    tokens = [p for p, w in zip(vocab.pieces(held_out[kind]), maps[kind][:, favourite]) if w > 0][:12]
    print(f"layer {layer}, expert {favourite:>2} (favourite of {kind}): {tokens}")

# %% [markdown]
# **What we see.** Every kind of text has favourite experts that take 30–63 % of its tokens, far
# above the 12.5 % of a router that ignored its input. In layer 1 French goes to experts 4 and 1,
# arithmetic to 15 and 5 (expert 15 takes digits, spaces and operators), while English prose and
# Python share expert 8 (Latin-script words, punctuation, newlines) and part ways on their second
# choice (4 for English, 6 for Python). Experts are reused across kinds in other layers (expert 8
# serves English and French in layer 3). Nobody told the router about languages; the split comes
# from the language-model loss plus the load-balancing loss.
#
# ## Exercises
# Solutions: `../solutions/07_mixture_of_experts.py`.
#
# **Exercise 7.1** — Write `top_k_weights(probs, k, per_expert_scale)`: the router's last three
# steps (top k, renormalise, per-expert scale); return `(weights, index)`.

# %%
from checks import check_exercise_7_1, check_exercise_7_2

def top_k_weights(probs, k, per_expert_scale):
    raise NotImplementedError  # your code here

check_exercise_7_1(top_k_weights)

# %% [markdown]
# **Exercise 7.2** — Write `tokens_per_expert(index, num_experts)`: how many (token, choice)
# pairs each expert receives — the load histogram, as a list of ints.

# %%
def tokens_per_expert(index, num_experts):
    raise NotImplementedError  # your code here

check_exercise_7_2(tokens_per_expert)
