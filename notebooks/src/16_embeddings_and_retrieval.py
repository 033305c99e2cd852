# %% [markdown]
# # 16 · EmbeddingGemma 2: Gemma as an encoder for search
#
# Every notebook so far used Gemma to *write*. Search needs something else: one vector per text,
# such that texts that mean the same thing get vectors that point the same way. Google's
# [EmbeddingGemma](https://ai.google.dev/gemma/docs/embeddinggemma) does this with Gemma's own layers,
# and EmbeddingGemma 2 (transformers' `embedding_gemma2`) does it with Gemma 4's. In this notebook we
# look at what changes when a decoder becomes an encoder, and then *train one*, in miniature, on
# pairs of sentences we wrote ourselves.
#
# **What you will learn**
# - **bidirectional attention**: the causal mask and the encoder's mask side by side, and why a
#   sliding window becomes a *radius* `|q − k| ≤ w`;
# - **mean pooling** with padding left out, and why the vector is L2-normalised (a dot product is
#   then the cosine);
# - **contrastive training** with in-batch negatives and the InfoNCE loss, measured as recall@1 on
#   held-out pairs before and after training a tiny EmbeddingGemma;
# - **Matryoshka** embeddings: train every leading slice of the vector, and measure what
#   truncating costs;
# - **cosine search** over this course's own notebooks with the tiny model.
#
# **Prerequisites:** 02 (masks, the decoder), 04 (sliding windows), 05 (per-layer embeddings) and
# 06b (training a tiny Gemma: cross-entropy, AdamW).

# %%
import json, time
import matplotlib.pyplot as plt
import torch
import torch.nn.functional as F
import minigemma
from minigemma import TextConfig, embed
from minigemma.attention import attention_mask
from minigemma.embedding import EmbeddingGemma, matryoshka_dims
import contrastive

_ = torch.manual_seed(0)
torch.set_num_threads(1)  # this tiny model's operations are too small to share out; one thread is faster

# %% [markdown]
# ## 1. What changes when a decoder becomes an encoder
#
# EmbeddingGemma 2 keeps Gemma 4's layer as it is (`minigemma.decoder.DecoderLayer`: QK-norm, the
# norm sandwich, the per-layer-embedding branch) and changes what is around it:
#
# | | Gemma 4 decoder | EmbeddingGemma 2 |
# |---|---|---|
# | attention | causal: a token sees the tokens before it | bidirectional: it sees the whole text |
# | sliding layers | itself and the `w − 1` tokens before | every token within distance `w`, both sides |
# | per-layer embeddings (notebook 05) | token table + projection | projection only, no table |
# | output | LM head: a score per vocabulary piece | `embedding_projection`: a vector per token |
# | one text → | the next token | the mean of its tokens' vectors, L2-normalised |
#
# The published model's config, as `TextConfig` reads it (transformers' defaults for
# `embedding_gemma2`):

# %%
real = TextConfig.from_dict({"model_type": "embedding_gemma2"})
print(f"{real.num_hidden_layers} layers, hidden {real.hidden_size}, sliding radius {real.sliding_window}, "
      f"{real.layer_types.count('full_attention')} global layers")
print(f"per-token output: {real.embedding_dim} values; Matryoshka sizes {matryoshka_dims(real.embedding_dim)}")

# %% [markdown]
# ## 2. Two masks: causal and bidirectional
#
# A decoder must not see the future: it is trained to predict it. An encoder has no future to
# predict, so every token may read the whole text. That matters for a text's vector: in a causal
# model the first word's state is the same whatever follows it, so half the states that get
# averaged know only half the sentence.
#
# The sliding layers change too. Gemma's causal window counts the query itself: a token sees
# itself and the `w − 1` before it (`q − k < w`). EmbeddingGemma 2's window is a radius: a token
# sees every key with `|q − k| ≤ w`, so up to `2w + 1` keys. By hand, for `w = 3` on 10 tokens,
# checked against the package's `attention_mask`:

# %%
def causal_mask(T, window=None):
    q, k = torch.arange(T)[:, None], torch.arange(T)[None, :]
    return (k <= q) & ((q - k < window) if window else True)

def bidirectional_mask(T, window=None):
    q, k = torch.arange(T)[:, None], torch.arange(T)[None, :]
    return (q - k).abs() <= window if window else torch.ones(T, T, dtype=torch.bool)

pos = torch.arange(10)
for window in (None, 3):
    assert torch.equal(causal_mask(10, window), attention_mask(pos, pos, window))
    assert torch.equal(bidirectional_mask(10, window), attention_mask(pos, pos, window, bidirectional=True))
print("hand-built masks == minigemma.attention.attention_mask, both kinds, global and sliding")

# %% [markdown]
# The four masks, each row a query and each column a key (dark: may look):

# %%
fig, axes = plt.subplots(1, 4, figsize=(11, 3))
panels = [("causal, global", causal_mask(10)), ("causal, window 3", causal_mask(10, 3)),
          ("bidirectional, global", bidirectional_mask(10)), ("bidirectional, radius 3", bidirectional_mask(10, 3))]
for ax, (title, m) in zip(axes, panels):
    ax.imshow(m, cmap="Blues", vmin=0, vmax=1.3)
    ax.set_title(title, fontsize=10); ax.set_xlabel("key"); ax.set_xticks([]); ax.set_yticks([])
axes[0].set_ylabel("query")
plt.tight_layout(); plt.show()

# %% [markdown]
# At the real sizes: how many keys can a token in the middle of a long text see in a sliding layer?

# %%
w, pos = real.sliding_window, torch.arange(4 * real.sliding_window)
middle = len(pos) // 2
causal_keys = int(attention_mask(pos, pos, w)[middle].sum())
radius_keys = int(attention_mask(pos, pos, w, bidirectional=True)[middle].sum())
print(f"window {w}: causal {causal_keys} keys, bidirectional {radius_keys} keys")

# %% [markdown]
# 512 keys in Gemma 4's decoder, 1,025 in the encoder with the same `sliding_window` number.
# (transformers stores both as `sliding_window`; `TextConfig.is_encoder` decides which meaning
# applies.)
#
# ## 3. A tiny EmbeddingGemma, and mean pooling
#
# For the rest of the notebook we use a model small enough to train on a laptop:
# `contrastive.tiny_config`, 4 layers (3 sliding with radius 8, then 1 global), width 64, and a
# 768-wide output like the real model's. Its vocabulary is Gemma's, cut down to the pieces our
# data uses (the trick of notebook 07's tiny MoE). We load the trained one committed in
# `data/tiny_embed/` (section 6 shows how it was made):

# %%
model, tok, log = contrastive.load_tiny_embed("../data/tiny_embed")
n_params = sum(p.numel() for p in model.parameters())
print(f"{model.config.num_hidden_layers} layers, width {model.config.hidden_size}, output "
      f"{model.config.embedding_dim}; vocabulary {model.config.vocab_size:,} pieces; {n_params:,} parameters")

# %% [markdown]
# Because attention looks both ways, the *first* token's output depends on the *last* word. Two
# texts that differ only in their final word:

# %%
a, b = "The cat sees a letter at night.", "The cat sees a letter today."
ids_a, ids_b = (torch.tensor([[tok.bos_id] + tok.encode(t) + [tok.eos_id]]) for t in (a, b))
with torch.no_grad():
    out_a, out_b = model(ids_a), model(ids_b)  # (1, T, 768) each
print("first token ('<bos>') output changes by", f"{(out_a[0, 0] - out_b[0, 0]).norm():.3f}",
      "| output size", f"{out_a[0, 0].norm():.3f}")

# %% [markdown]
# A text's vector is the **mean** of its tokens' outputs. In a batch, shorter texts are padded on
# the right, and the padding must stay out of the mean (the mask says which positions are real);
# padding keys are also hidden from attention, so a text gets the same vector in any batch. Then
# the vector is divided by its length: with unit vectors, the dot product *is* the cosine, so a
# search is one matrix product. By hand, checked against `minigemma.embed` at every size the
# model accepts:

# %%
def my_embed(model, tok, texts, dim):
    rows = [[tok.bos_id] + tok.encode(t) + [tok.eos_id] for t in texts]
    T = max(map(len, rows))
    ids = torch.tensor([r + [0] * (T - len(r)) for r in rows])  # (B, T)
    mask = torch.tensor([[1] * len(r) + [0] * (T - len(r)) for r in rows]).float()  # (B, T)
    with torch.no_grad():
        out = model(ids, mask)  # (B, T, E)
    mean = (out * mask[..., None]).sum(1) / mask.sum(1, keepdim=True)  # (B, E): padding left out
    return F.normalize(mean[:, :dim], dim=-1)  # truncate (section 7), then unit length

texts = [a, "Le chat voit une lettre la nuit.", "A much longer text, padded less: " + b]
for dim in matryoshka_dims(model.config.embedding_dim):
    torch.testing.assert_close(my_embed(model, tok, texts, dim), embed(model, tok, texts, dim=dim))
print("hand-written pooling == minigemma.embed at", matryoshka_dims(model.config.embedding_dim))

# %% [markdown]
# Averaging the padding in as well gives a different vector for the short text than it gets alone,
# which would make search results depend on what else was in the batch:

# %%
rows = [[tok.bos_id] + tok.encode(t) + [tok.eos_id] for t in texts]
T = max(map(len, rows))
ids = torch.tensor([r + [0] * (T - len(r)) for r in rows])
mask = torch.tensor([[1] * len(r) + [0] * (T - len(r)) for r in rows])
with torch.no_grad():
    wrong = F.normalize(model(ids, mask).mean(1), dim=-1)  # padding averaged in
alone = embed(model, tok, texts[:1])
print(f"cosine to the text's own vector: with padding {float(wrong[0] @ alone[0]):.3f}, "
      f"without {float(embed(model, tok, texts)[0] @ alone[0]):.3f}")

# %% [markdown]
# ## 4. The data: pairs that need learning
#
# Contrastive training needs pairs: a query and the text it should find. A trap waits here: a
# *random* model already maps texts that share tokens to nearby vectors (the mean of the same
# embedding rows is similar), so pairs that share words would "work" before any training. Our
# pairs (`data/pairs/`, written by `python notebooks/contrastive.py --write-pairs`) are of two kinds:
#
# - **English ↔ French** sentences built from small lexicons (12 subjects, 10 verbs, 12 objects,
#   10 places, 6 times). The held-out pairs use subject–verb–object combinations that training never
#   saw; every word occurs in training, but never in that sentence.
# - **heading ↔ paragraph** from this course's notebooks 00–14: a section's title and the first
#   paragraph under it. Every fifth section is held out.

# %%
pairs = {kind: {split: contrastive.read_pairs(kind, split, "../data/pairs") for split in ("train", "heldout")}
         for kind in contrastive.KINDS}
for kind, splits in pairs.items():
    print(f"{kind:9s} {len(splits['train']):5d} training pairs, {len(splits['heldout']):4d} held out;",
          "e.g.", splits["heldout"][0][0][:40], "↔", splits["heldout"][0][1][:40])
def svo(english):  # the sentence up to its place: subject, verb, object
    return min((english.split(f" {place} ")[0] for place, _ in contrastive.PLACES), key=len)

seen = {svo(q) for q, _ in pairs["en_fr"]["train"]}
print("held-out subject-verb-object combinations seen in training:",
      sum(svo(q) in seen for q, _ in pairs["en_fr"]["heldout"]))

# %% [markdown]
# How many of a query's token pieces occur in its own document, and in the other held-out
# documents? (Averaged over the held-out queries.)

# %%
def found(q, d):
    pieces = set(tok.encode(q))
    return len(pieces & set(tok.encode(d))) / len(pieces)

for kind in contrastive.KINDS:
    held = pairs[kind]["heldout"]
    own = sum(found(q, d) for q, d in held) / len(held)
    other = sum(found(q, d) for i, (q, _) in enumerate(held) for j, (_, d) in enumerate(held) if i != j)
    other /= len(held) * (len(held) - 1)
    print(f"{kind:9s} query pieces found in its own document {own:.0%}, in another one {other:.0%}")

# %% [markdown]
# For the translations, a query's pieces are no more often in its own document than in another
# one (9 % both: the full stop and a few short pieces). A heading finds 36 % of its pieces in its
# own paragraph, against 20 % in another section's. So we expect a random model to fail on the
# first kind and to do better than chance on the second.
#
# ## 5. Before training: recall@1 of a random model
#
# **Recall@1**: embed every held-out query and every held-out document; for each query, take the
# document with the highest cosine; count how often it is the query's own. With 200 candidates,
# guessing gives 1/200. Here is the same tiny model with random weights (PyTorch's default
# initialisation, the seed the training run started from):

# %%
random_model = contrastive.new_model(model.config.vocab_size, seed=log["seed"])
before = contrastive.measure(random_model, tok, "../data/pairs")
for kind in contrastive.KINDS:
    n = len(pairs[kind]["heldout"])
    print(f"{kind:9s} random weights: recall@1 {before[kind][768]:.3f} (chance {1 / n:.3f})")
assert before == {k: {int(d): r for d, r in v.items()} for k, v in log["recall_before"].items()}

# %% [markdown]
# As expected: the random model finds the translation about as often as guessing would, and the
# heading's paragraph well above chance, only because they share pieces.
#
# ## 6. Contrastive training: InfoNCE with in-batch negatives
#
# Take a batch of `B` pairs `(q_i, d_i)`. Embed all of them (unit vectors) and form every cosine
# `s_ij = q_i · d_j`: a `B × B` matrix whose diagonal holds the true pairs and whose other entries
# are the **in-batch negatives**, free wrong answers. Treat each row as a classification with `B`
# classes whose right answer is the diagonal:
#
# $$\mathcal{L} = -\frac{1}{B}\sum_{i=1}^{B} \log \frac{\exp(s_{ii}/\tau)}{\sum_{j=1}^{B}\exp(s_{ij}/\tau)}$$
#
# This is **InfoNCE** ([Oord et al., 2018](https://arxiv.org/abs/1807.03748)). [Sentence-BERT
# (Reimers & Gurevych, 2019)](https://arxiv.org/abs/1908.10084) made a transformer give one vector
# per sentence for cosine search; [SimCSE (Gao et al., 2021)](https://arxiv.org/abs/2104.08821)
# trained such encoders with exactly this loss and in-batch negatives, at the temperature
# `τ = 0.05` we use. A cosine lives in `[−1, 1]`; dividing by `τ` stretches that to
# `[−20, 20]`, so the softmax can become confident. We average the loss both ways (queries pick
# documents, documents pick queries). The recipe of the first EmbeddingGemma ([Schechter Vera et
# al., 2025](https://arxiv.org/abs/2509.20354)) uses this loss with an added *hard* negative per
# query, plus a regulariser that spreads the vectors out and distillation from a larger Gemini
# embedding model; we leave those out. By hand, against `contrastive.info_nce`:

# %%
def my_info_nce(q, d, tau):
    s = q @ d.T / tau  # (B, B)
    one_way = lambda s: -(s.diagonal() - s.logsumexp(dim=1)).mean()
    return (one_way(s) + one_way(s.T)) / 2

q, d = F.normalize(torch.randn(8, 16), dim=-1), F.normalize(torch.randn(8, 16), dim=-1)
torch.testing.assert_close(my_info_nce(q, d, 0.05), contrastive.info_nce(q, d, 0.05))
print(f"random vectors: loss {my_info_nce(q, d, 0.05):.2f}; a perfect match: "
      f"{my_info_nce(q, q, 0.05):.4f}; guessing among 8: ln 8 = {torch.log(torch.tensor(8.)):.2f}")

# %% [markdown]
# The committed model was trained by `python notebooks/contrastive.py --steps 120 --seed 0`
# (AdamW, learning rate `2e-3` with a short warm-up and a cosine decay; each step one kind: 64
# English–French pairs or 32 sections). The loss, and the cosine matrix of 8 held-out pairs before
# and after training:

# %%
def cosines(m, held):
    return embed(m, tok, [q for q, _ in held]) @ embed(m, tok, [d for _, d in held]).T  # (8, 8)

held8 = pairs["en_fr"]["heldout"][:8]
fig, axes = plt.subplots(1, 3, figsize=(12, 3.3))
axes[0].plot(log["losses"][0::2], label="English–French steps")
axes[0].plot(log["losses"][1::2], label="section steps")
axes[0].set_yscale("log"); axes[0].set_xlabel("step of that kind"); axes[0].set_ylabel("MRL InfoNCE loss")
axes[0].legend()
for ax, m, title in ((axes[1], random_model, "random weights"), (axes[2], model, "trained")):
    im = ax.imshow(cosines(m, held8), cmap="RdBu_r", vmin=-1, vmax=1)
    ax.set_title(f"cosine, {title}"); ax.set_xlabel("French (held out)"); ax.set_ylabel("English")
fig.colorbar(im, ax=axes[1:]); plt.show()

# %% [markdown]
# After training the diagonal stands out: each English sentence is closest to its own
# translation, for sentences the model never saw. Measured on all held-out pairs, recomputed here
# from the committed weights and checked against the training log:

# %%
after = contrastive.measure(model, tok, "../data/pairs")
assert after == {k: {int(d): r for d, r in v.items()} for k, v in log["recall_after"].items()}
for kind in contrastive.KINDS:
    print(f"{kind:9s} recall@1: random {before[kind][768]:.3f} -> trained {after[kind][768]:.3f}")

# %% [markdown]
# The English–French pairs went from 0.000 to 0.980: the model learnt what the words mean, in
# both languages, and put them together in sentences it had never seen. The notebook sections went
# the other way, from 0.240 to 0.160. 98 training pairs are far too few: the loss on them fell
# close to zero (the model learnt to tell those 98 apart, not what a heading says about its
# paragraph), and that overwrote the piece-sharing that had helped the random model. Real
# embedding models are trained on far larger and more varied collections of pairs; the lesson of
# our small run is to measure on held-out data, and to measure the untrained model too.
#
# ### Training a few steps yourself
#
# The same loop from random weights, on English–French pairs only (64 a step), for 30 steps:

# %%
student = contrastive.new_model(model.config.vocab_size, seed=1)
short = contrastive.train(student, tok, steps=30, seed=1, progress=False, directory="../data/pairs", kinds=("en_fr",))
print("loss every 5th step:", [round(x, 2) for x in short[::5]])
recall = contrastive.recall_at_1(student, tok, pairs["en_fr"]["heldout"], dims=(768,))[768]
print(f"held-out recall@1 after 30 steps: {recall:.3f}")

# %% [markdown]
# ## 7. Matryoshka: every leading slice is an embedding
#
# A 768-value vector costs 3 KiB in float32; a search index holds millions. Matryoshka
# representation learning ([Kusupati et al., 2022](https://arxiv.org/abs/2205.13147)) trains the
# *leading* values of the vector to be an embedding on their own: the loss is summed over nested
# sizes, each vector cut to the first `m` values and renormalised,
#
# $$\mathcal{L}_\text{MRL} = \frac{1}{|M|}\sum_{m \in M} \mathcal{L}_\text{InfoNCE}\big(\tfrac{q_{:m}}{\|q_{:m}\|}, \tfrac{d_{:m}}{\|d_{:m}\|}\big),$$
#
# so a user may keep the first 128 values and throw the rest away. EmbeddingGemma publishes the
# sizes 768, 512, 256 and 128. Our run used `M` = 768 down to 8 (`contrastive.MRL_DIMS`), and a
# *control* trained with the same steps and seed on the full 768 values only. Recall@1 on the
# held-out English–French pairs at each size:

# %%
control = {int(d): r for d, r in log["recall_control"]["en_fr"].items()}
print(" size  MRL-trained  control (full size only)  bytes per vector (float32)")
for dim in contrastive.MRL_DIMS:
    print(f"{dim:5d}  {after['en_fr'][dim]:11.3f}  {control[dim]:24.3f}  {4 * dim:6d}")
fig, ax = plt.subplots(figsize=(6, 3))
ax.plot(contrastive.MRL_DIMS, [after["en_fr"][d] for d in contrastive.MRL_DIMS], "o-", label="MRL loss")
ax.plot(contrastive.MRL_DIMS, [control[d] for d in contrastive.MRL_DIMS], "s--", label="full-size loss only")
ax.set_xscale("log", base=2); ax.set_xlabel("values kept"); ax.set_ylabel("held-out recall@1"); ax.legend()
plt.show()

# %% [markdown]
# Read the table from the bottom. Cut to its first 8 values (32 bytes instead of 3,072), the
# MRL-trained vector still finds the right translation 0.915 of the time; the control's first 8
# values find it 0.265 of the time, and its first 16 values 0.620 (MRL: 0.975). Nothing in the
# control's loss asked the leading values to work alone. From 64 values up both are nearly
# perfect: our model is only 64 wide, so a slice of 64 or more values can carry everything it
# computes (the real model is 512 wide with a 768-value output, so its 128-value slice does lose
# something). The price of Matryoshka training here is small and at the top: 0.980 against 1.000
# at the full size, the vector's leading values being shared among all the sizes.
#
# ## 8. Searching the course
#
# The documents: the first paragraph of every section of notebooks 00–14 (`data/pairs/sections.json`,
# training and held-out sections alike). A few questions a learner might ask, and the three
# sections whose vectors are nearest, by the trained model and by the random one:

# %%
sections = json.loads(open("../data/pairs/sections.json", encoding="utf-8").read())
questions = ["How are the experts chosen for each token?", "Why does the cache save time when generating?",
             "How is a picture turned into tokens?", "Quelle est la différence entre un chat et un chien ?"]

models = {"trained": model, "random": random_model}
index = {name: embed(m, tok, [s["text"] for s in sections]) for name, m in models.items()}  # name -> (N, 768)

def search(m, docs, question, k=3):
    scores = embed(m, tok, [question])[0] @ docs.T  # (N,): one cosine per section
    top = [sections[i] for i in scores.topk(k).indices]
    return [f"{s:.2f} {hit['notebook'][:2]} {hit['heading'][:40]}" for s, hit in zip(scores.topk(k).values, top)]

for question in questions:
    print(question)
    for name, m in models.items():
        print(f"   {name:7s}:", " | ".join(search(m, index[name], question)))

# %% [markdown]
# The trained model answers the experts question with notebook 07's "Why mixture of experts?",
# and the picture question with sections of notebooks 08 and 09 (images, video frames). It misses
# the cache question: notebook 04, where the KV cache is taught, is not in its top three. The
# random model puts none of the three in the right notebook. The French question has no answer in
# the course, yet it gets three sections with cosines much like the others': a nearest neighbour
# always exists, so a real search needs a threshold, or a reranker, to say "nothing found". With a
# model trained on 98 sections this is a toy; what carries over is the machinery: the documents'
# vectors computed once, then one matrix product per question.
#
# ## Summary
# - An encoder is a decoder whose attention looks both ways; EmbeddingGemma 2's sliding window is
#   a radius, so a token sees up to `2w + 1` keys.
# - A text's vector is the mean of its tokens' outputs (padding left out), L2-normalised so that
#   a dot product is the cosine; `minigemma.embed` does exactly that.
# - InfoNCE makes each query pick its partner among the batch (in-batch negatives), at a
#   temperature that sharpens the cosines. Trained on 2,000 English–French pairs for 120 steps,
#   our tiny encoder finds held-out translations (recall@1 0.000 → 0.980); 98 notebook sections
#   were too few to generalise (0.240 → 0.160).
# - Matryoshka training asks every leading slice to be an embedding: 8 values kept recall@1 at
#   0.915, where the same model trained at the full size only fell to 0.265.
# - Measure retrieval on held-out pairs, and measure the untrained model first: shared tokens
#   alone give a random model some recall.
#
# ## Exercises
# Solutions: `../solutions/16_embeddings_and_retrieval.py`.
#
# **Exercise 16.1** — Write `mean_pool(out, mask)`: `out` is `(B, T, E)` per-token outputs, `mask`
# is `(B, T)` with 1 at real tokens and 0 at padding; return the `(B, E)` mean over each row's own
# tokens.

# %%
from checks import check_exercise_16_1, check_exercise_16_2, check_exercise_16_3

def mean_pool(out, mask):
    raise NotImplementedError  # your code here

check_exercise_16_1(mean_pool)

# %% [markdown]
# **Exercise 16.2** — Write `info_nce(q, d, tau)`: the *one-way* InfoNCE loss of section 6, where
# each query (a row of `q`, unit vectors) must pick its own document (the same row of `d`) among
# all the rows of `d`, at temperature `tau`. (`F.cross_entropy` is allowed.)

# %%
def info_nce(q, d, tau):
    raise NotImplementedError  # your code here

check_exercise_16_2(info_nce)

# %% [markdown]
# **Exercise 16.3** — Write `recall_at_k(q, d, k)`: `q` and `d` are `(N, dim)` unit vectors, row
# `i` of `q` paired with row `i` of `d`; return the fraction of queries whose own document is among
# the `k` documents with the highest cosine. Then use it on the tiny model: is recall@3 of the
# 8-value vectors better than recall@1 of the 768-value ones?

# %%
def recall_at_k(q, d, k):
    raise NotImplementedError  # your code here

check_exercise_16_3(recall_at_k)

# %% [markdown]
# ## References
# - H. Schechter Vera et al., [EmbeddingGemma: Powerful and Lightweight Text Representations](https://arxiv.org/abs/2509.20354),
#   2025; Google, [EmbeddingGemma documentation](https://ai.google.dev/gemma/docs/embeddinggemma) and
#   [EmbeddingGemma: architecture and recipe](https://developers.googleblog.com/en/gemma-explained-embeddinggemma-architecture-and-recipe/).
# - A. van den Oord, Y. Li, O. Vinyals, [Representation Learning with Contrastive Predictive Coding](https://arxiv.org/abs/1807.03748),
#   2018 — the InfoNCE loss.
# - N. Reimers, I. Gurevych, [Sentence-BERT](https://arxiv.org/abs/1908.10084), 2019; T. Gao, X. Yao,
#   D. Chen, [SimCSE](https://arxiv.org/abs/2104.08821), 2021 — sentence embeddings trained contrastively.
# - A. Kusupati et al., [Matryoshka Representation Learning](https://arxiv.org/abs/2205.13147), 2022.
# - Hugging Face transformers, `models/embedding_gemma2/` — the reference `minigemma.embedding` is
#   tested against (`tests/test_embedding.py`).
