# %% [markdown]
# # 06b · Training a tiny Gemma: cross-entropy, backpropagation, distillation
#
# **What you will learn**
# - what a language model is trained to do, and the number that says how well it does it:
#   the **cross-entropy** loss, and its friendlier face, **perplexity**;
# - **backpropagation**: how every weight learns which way to move, checked by hand on one layer;
# - a tiny Gemma-style model, built from minigemma's own classes, trained on your CPU in well under a
#   minute — its loss curve, how to tell learning from memorising, and what it writes afterwards;
# - **knowledge distillation**, the way Gemma's small models are pre-trained: a tiny student with
#   Gemma's real 262,144-piece vocabulary learns from the real Gemma 3 270M, and we measure what the
#   teacher adds over plain cross-entropy;
# - what the **load-balancing loss** adds when the model is a mixture of experts (the lead-in to 07).
#
# **Prerequisites:** notebooks 02 and 06. Everything so far *ran* models whose weights someone else
# trained; this notebook shows where such weights come from.

# %%
import math
import torch
import torch.nn.functional as F
import matplotlib.pyplot as plt
import minigemma
from minigemma.config import FULL, SLIDING, TextConfig
from tiny_moe import init_weights  # notebooks/tiny_moe.py, the course's training script

torch.manual_seed(0)
torch.use_deterministic_algorithms(True)  # the same numbers on every run, so the notebook can be tested
torch.set_num_threads(1)

# %% [markdown]
# ## 1. The task: guess the next token
# A language model reads tokens `x₁ … x_t` and outputs one score (a *logit*) per vocabulary entry
# for the next token; a softmax turns the scores into probabilities. Training shows it real text
# and nudges the weights so that the token that really came next gets a higher probability.
#
# To keep the vocabulary small enough to learn in a minute, this notebook uses **characters** as
# tokens (Gemma's 262,144-piece vocabulary would need far more text and time). The text is the
# English part of the tiny-MoE corpus: a few hand-written paragraphs and the course's sample essay,
# then stories sampled from the real Gemma 3 270M (a base model trained on web pages, so its samples
# came with HTML tags and, between paragraphs, its `<start_of_image>` token; `tiny_moe.clean_gemma_text`
# turned those into line breaks and removed the tags before the text was stored).

# %%
from pathlib import Path
corpus_dir = Path("..") / "data" / "moe_corpus"
text = "\n".join((corpus_dir / name).read_text() for name in ("english.txt", "english_gemma3_270m.txt"))
chars = sorted(set(text))
V = len(chars)
encode = lambda s: [chars.index(c) for c in s]
decode = lambda ids: "".join(chars[i] for i in ids)
ids = torch.tensor(encode(text))
cut = int(len(ids) * 0.9)
train_ids, val_ids = ids[:cut], ids[cut:]  # the last 10 % is held out: never trained on
print(f"{len(text):,} characters, vocabulary of {V}; {len(train_ids):,} to train on, {len(val_ids):,} held out")
print(repr(text[:80]))

# %% [markdown]
# ## 2. Cross-entropy: how surprised is the model?
# If the model gives the true next token probability `p`, its loss for that position is `−ln p`:
# 0 when it was sure and right, large when it gave the truth little chance. The **cross-entropy** is
# the mean of `−ln p` over all positions. Two reference points:
#
# - a model that knows nothing spreads probability evenly: `p = 1/V`, loss `ln V`;
# - a perfect model would reach 0, but real text is not fully predictable, so no model gets there.
#
# **Perplexity** is `exp(loss)`: the number of equally likely choices the model is, on average,
# hesitating between. The uniform model's perplexity is `V` itself. Here is the loss computed by
# hand from random logits, and by PyTorch:

# %%
logits = torch.randn(5, V)  # 5 positions, one score per character
targets = torch.tensor(encode("Gemma"))
log_probs = logits - logits.logsumexp(-1, keepdim=True)  # log softmax, (5, V)
by_hand = -log_probs[torch.arange(5), targets].mean()
assert torch.allclose(by_hand, F.cross_entropy(logits, targets))
print(f"loss of random logits: {by_hand:.3f} (perplexity {by_hand.exp():.1f}); "
      f"uniform guess: ln {V} = {math.log(V):.3f} (perplexity {V})")

# %% [markdown]
# ## 3. Backpropagation, by hand on one layer
# Training needs, for every weight, the **gradient**: how much the loss would change if that weight
# moved a little. Backpropagation computes all of them in one backward sweep, applying the chain
# rule layer by layer from the loss back to the inputs (Rumelhart, Hinton and Williams, 1986).
#
# The first step of that sweep has a famously simple form. For logits `z = W x` and the softmax
# cross-entropy, `∂loss/∂z = softmax(z) − onehot(target)` (divided by the number of positions):
# push up the true token's score, push down every other score in proportion to its probability.
# Then, by the chain rule, `∂loss/∂W = (∂loss/∂z)ᵀ x`. PyTorch's autograd must agree:

# %%
x = torch.randn(5, 8)  # 5 positions, 8 features each
W = torch.randn(V, 8, requires_grad=True)
loss = F.cross_entropy(x @ W.T, targets)
loss.backward()  # autograd: the backward sweep
dz = (F.softmax(x @ W.T, -1) - F.one_hot(targets, V)) / 5  # (5, V): softmax minus one-hot
dW = dz.T @ x  # (V, 8): the chain rule through z = W x
torch.testing.assert_close(W.grad, dz.T @ x)
print("hand-made gradient == autograd; largest step for the row of", repr(decode([int(dW.abs().sum(1).argmax())])))

# %% [markdown]
# A deep model is the same story repeated: each layer receives `∂loss/∂(its output)`, passes
# `∂loss/∂(its input)` to the layer below and keeps `∂loss/∂(its weights)`. An **optimiser** then
# moves every weight a little against its gradient. We use AdamW (Loshchilov and Hutter, 2019),
# which scales each weight's step by a running estimate of its gradient's size.
#
# ## 4. A tiny Gemma, from the package's own parts
# Two layers (one sliding, one global), width 64, four query heads sharing one KV head, the Gemma 4
# norms and soft-cap: the same `minigemma.Gemma` that runs the real checkpoints, only smaller.
# Weights start small and random (`init_weights`: normal with standard deviation 0.02, norms at 1).

# %%
config = TextConfig(model_type="gemma4_text", vocab_size=V, hidden_size=64, intermediate_size=192,
                    num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=1, head_dim=16,
                    sliding_window=32, layer_types=(SLIDING, FULL), max_position_embeddings=128,
                    final_logit_softcapping=30.0,
                    rope_parameters={FULL: {"rope_type": "default", "rope_theta": 1e4},
                                     SLIDING: {"rope_type": "default", "rope_theta": 1e4}})
model = minigemma.Gemma(config)
init_weights(model, std=0.02, seed=0)
print(f"{sum(p.numel() for p in model.parameters()):,} parameters")

# %% [markdown]
# To judge a model we need its loss on a whole text, not on one random batch: `mean_loss` cuts the
# text into fixed windows of 64 characters and averages the loss over all of them, so two calls on the
# same model always agree. On the held-out text it is the number that says how well the model does.

# %%
@torch.no_grad()
def mean_loss(model, ids, seq=64):
    """Mean next-token loss over all of ``ids``, in fixed windows: the same windows every time."""
    model.eval()
    rows = torch.stack([ids[s:s + seq + 1] for s in range(0, len(ids) - seq - 1, seq)])  # (n, seq+1)
    logits = model(rows[:, :-1])
    return F.cross_entropy(logits.reshape(-1, V), rows[:, 1:].reshape(-1)).item()

print(f"before training: held-out loss {mean_loss(model, val_ids):.3f}, uniform {math.log(V):.3f}")

# %% [markdown]
# Untrained, the model is about as good as the uniform guess, as it should be. Now the training
# loop. Each step: take 16 random windows of 64 characters, predict every next character
# (**teacher forcing**: position `t` sees the true tokens before it, so one forward pass gives 64
# predictions per window), compute the loss, backpropagate, let the optimiser step.
#
# The loss of one batch is a noisy estimate: 16 windows are a few percent of the text. To see whether
# the model learns English or memorises its training text, every 50 steps we also measure the mean
# loss over **all** the training text and over all the held-out text, in the same fixed windows.

# %%
def batch(generator, size=16, seq=64):
    starts = torch.randint(0, len(train_ids) - seq - 1, (size,), generator=generator)
    return torch.stack([train_ids[s:s + seq + 1] for s in starts.tolist()])  # (size, seq+1)

def train(model, steps, lr=3e-3, every=50):
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    generator, history, measured = torch.Generator().manual_seed(0), [], []
    for step in range(steps + 1):
        if step % every == 0:  # (step, loss on all training text, loss on all held-out text)
            measured.append((step, mean_loss(model, train_ids), mean_loss(model, val_ids)))
        if step == steps:
            return history, measured
        model.train()
        rows = batch(generator)
        logits = model(rows[:, :-1])  # (16, 64, V)
        loss = F.cross_entropy(logits.reshape(-1, V), rows[:, 1:].reshape(-1))
        opt.zero_grad()
        loss.backward()  # fills p.grad for every parameter
        opt.step()
        history.append(loss.item())

# %%
history, measured = train(model, steps=400)
for step, on_train, on_held_out in measured:
    print(f"step {step:>3}: training text {on_train:.3f}, held-out {on_held_out:.3f}, "
          f"gap {on_held_out - on_train:.3f}")
(_, train_250, held_250), (_, train_400, held_400) = measured[5], measured[-1]
print(f"steps 250 -> 400: training text {train_400 - train_250:+.3f}, held-out {held_400 - held_250:+.3f}")

# %% [markdown]
# The same numbers as a picture, with the loss of every single training batch in grey behind them:

# %%
steps_seen, on_train, on_held_out = zip(*measured)
plt.figure(figsize=(7, 3))
plt.plot(history, color="0.7", lw=0.8, label="one training batch")
plt.plot(steps_seen, on_train, "o-", label="all training text")
plt.plot(steps_seen, on_held_out, "o-", label="all held-out text")
plt.axhline(math.log(V), color="k", ls="--", lw=1, label=f"uniform guess, ln {V}")
plt.xlabel("step"); plt.ylabel("cross-entropy (nats)"); plt.legend(fontsize=8); plt.show()
print(f"held-out perplexity: {math.exp(on_held_out[-1]):.1f} characters (uniform: {V})")

# %% [markdown]
# **Reading the curves.** The loss falls fast at first: which characters are common (spaces, `e`,
# `t`) is the easiest thing to learn. Then come which characters follow which (after `q` a `u`,
# after `. ` a capital) and short words. Early on, the training text and the held-out text improve
# together: what the model learns is English, and it helps on text it has never seen. From step 250
# on they part: over the last 150 steps the loss on the training text falls by another 0.228 nats
# while the held-out loss moves by only 0.011, and the gap between them grows to 0.564 nats. The model
# has started to memorise its 25,209 training characters rather than learn more English: it
# **overfits**. The held-out number is the honest one; the grey single-batch curve could not have
# shown this, as it only ever sees training text.
#
# What does a loss like this buy? Text from the package's own `generate_ids` (with the KV cache),
# once greedy and once sampled at temperature 0.8 with a fixed seed:

# %%
prompt = encode("The model ")
greedy = list(minigemma.generate_ids(model.eval(), prompt, max_new_tokens=80))
sampled = list(minigemma.generate_ids(model, prompt, max_new_tokens=80, temperature=0.8, seed=0))
print("greedy :", repr(decode(prompt + greedy)))
print("sampled:", repr(decode(prompt + sampled)))

# %% [markdown]
# Words and spaces in the right rhythm, some real words, little sense; greedy decoding, always
# taking the single likeliest character, soon repeats itself. That is what 400 steps on 25,209
# characters of text can give. Real models train the same way — the same loss, the same backward
# sweep — on trillions of tokens.

# %% [markdown]
# ## 5. Learning from a teacher: knowledge distillation
# Gemma's small models are not trained on the next token alone. The
# [Gemma 2 report](https://arxiv.org/abs/2408.00118) trains its 2B and 9B models with knowledge
# distillation instead of next-token prediction (abstract), and the
# [Gemma 3 report](https://arxiv.org/abs/2503.19786) trains its models with distillation too
# (section 2.2): a large *teacher* reads the same text, and the small *student* learns to match the
# teacher's whole next-token distribution instead of the one token that came next (the idea is from
# [Hinton, Vinyals and Dean, 2015](https://arxiv.org/abs/1503.02531)).
#
# **Why would that help?** Cross-entropy shows the student one token per position. After "The baker
# had already", our text says "opened" — and nothing about "prepared", "baked" or "left", which
# were just as sensible, nor that "purple" was not. The teacher's distribution says all of that at
# once. Each position's soft target carries far more information than the one-hot token, so each
# token of text can teach the student more — which matters most when text is scarce.
#
# Here is that position in our text, with the opinion of the real Gemma 3 270M. The stored file holds
# the teacher's 64 likeliest pieces and their log-probabilities at every position of the text, computed
# once by `notebooks/distill.py` (the teacher's forward passes take minutes on this CPU):

# %%
import json
import distill  # notebooks/distill.py: the teacher's top-k, the two students' training
from minigemma.weights import resolve
tokenizer = minigemma.Tokenizer.from_file(resolve("gemma3-270m"))
data = {name: t.long() if t.dtype == torch.int32 else t.float() for name, t in distill.load_data().items()}
log = json.loads((Path("..") / "data" / "distill" / "log.json").read_text())
w, t = 0, 32  # window 0, position 32: the teacher has read "<bos>The morning ... The baker had already"
print(repr(tokenizer.decode(data["train"][w, t - 9:t + 1].tolist())), "-> the text says",
      repr(tokenizer.decode([int(data["train"][w, t + 1])])))
for piece, logprob in zip(data["train_ids"][w, t, :8].tolist(), data["train_logprobs"][w, t, :8]):
    print(f"  {tokenizer.decode([piece])!r:>12} {logprob.exp():.3f}")

# %% [markdown]
# **The loss.** At one position let `q` be the teacher's probabilities and `p` the student's. The
# student minimises the **Kullback–Leibler divergence** of `p` from `q`:
#
# `KL(q ‖ p) = Σ_i q_i ln(q_i / p_i) = (−Σ_i q_i ln p_i) − (−Σ_i q_i ln q_i)`,
#
# the cross-entropy from the teacher to the student minus the teacher's entropy. The entropy does not
# depend on the student, so minimising the KL is minimising the cross-entropy to the teacher's
# distribution; and if `q` is one-hot, its entropy is 0 and the KL *is* section 2's cross-entropy.
# Its gradient at the logits is `p − q`: section 3's "softmax minus one-hot", with the one-hot
# replaced by the teacher's probabilities.
#
# Storing `q` over all 262,144 pieces would take a mebibyte per position in float32. Gemma 3 keeps
# 256 pieces per token, sampled in proportion to the teacher's probabilities, gives the other pieces
# probability 0 and renormalises. We keep the teacher's top 64 instead (no sampling, so the file is
# reproducible) and renormalise the same way. The student's `p` stays a softmax over the whole
# vocabulary: probability it puts outside the 64 pieces is missing from `Σ q_i ln p_i`, and costs.
# On our text the 64 kept pieces hold 88.1 % of the teacher's probability, on average:

# %%
def distillation_loss(logits, ids, logprobs):
    """(N, V) student logits; (N, k) teacher ids and log-probs -> mean over N of KL(q || p)."""
    q = logprobs.softmax(-1)  # (N, k): the teacher, renormalised on its k pieces
    log_p = logits.log_softmax(-1).gather(-1, ids)  # (N, k): the student's log-probs of those pieces
    cross_entropy = -(q * log_p).sum(-1)  # (N,): from the teacher to the student
    entropy = -(q * q.log()).sum(-1)  # (N,): the teacher's own; no student in it
    return (cross_entropy - entropy).mean()

print(f"full distribution: 262,144 × 4 bytes = {262_144 * 4 / 2**20:.1f} MiB per position in float32")
print(f"the top {data['train_ids'].shape[-1]} pieces hold {data['train_logprobs'].exp().sum(-1).mean():.1%} "
      f"of the teacher's probability, on average over the {data['train'][:, 1:].numel():,} training tokens")

# %% [markdown]
# The student is section 4's tiny Gemma with one change: its vocabulary is the teacher's 262,144
# pieces, so both models name the same tokens and their distributions can be compared piece by piece.
# With a width of 64, nearly all of its weights are the embedding, which the output head shares
# (tied, as in every Gemma). Here is the loss of the untrained student at four positions of the
# first window: the cross-entropy to the teacher, the teacher's entropy, and their difference, the KL.

# %%
student = distill.new_student(seed=0)  # the script's student: section 4's config, vocab 262,144
x, k = data["train"][:1], data["train_ids"].shape[-1]  # (1, 65): <bos> and 64 tokens
logits = student(x[:, :-1]).reshape(64, -1)  # (64, 262144)
ids, logprobs = data["train_ids"][0], data["train_logprobs"][0]  # (64, k) each
q, log_p = logprobs.softmax(-1), logits.log_softmax(-1).gather(-1, ids)
for pos in (8, 16, 32, 48):
    ce, h = -(q[pos] * log_p[pos]).sum(), -(q[pos] * q[pos].log()).sum()
    print(f"position {pos}: cross-entropy to teacher {ce:.3f} - teacher entropy {h:.3f} = KL {ce - h:.3f}")
loss = distillation_loss(logits, ids, logprobs)
torch.testing.assert_close(loss, distill.sparse_kl(logits, ids, logprobs))  # the script's loss: the same
print(f"mean KL over the window: {loss:.3f} nats (the script's sparse_kl: the same)")

# %% [markdown]
# And the gradient at the logits is `(p − q) / N`, with `q` put back on its 64 pieces and 0 elsewhere:

# %%
z = logits.detach().requires_grad_()
distillation_loss(z, ids, logprobs).backward()
q_full = torch.zeros_like(z).scatter_(-1, ids, q)  # (64, 262144): the teacher's q, 0 off its pieces
torch.testing.assert_close(z.grad, (z.softmax(-1) - q_full) / 64)
print("autograd == (p - q) / N: the student is pulled toward the teacher's whole distribution")

# %% [markdown]
# **The experiment.** `notebooks/distill.py` trains two students that differ only in their loss: one
# on plain cross-entropy with the true next token, one on the distillation loss above. Both start from
# the same weights (seed 0), see the same batches in the same order (2 windows of 64 tokens a step)
# for the same number of steps, with the same optimiser. The text is this notebook's English text,
# now in Gemma's tokens, with its last 15 % held out. Every 15 steps the script measures both
# students' cross-entropy on the held-out text: the true next tokens, the number that counts.
#
# The script's first steps can be replayed here. The same student, batches and optimiser, trained
# for three steps with this notebook's `distillation_loss`, give the losses the script logged:

# %%
opt = torch.optim.AdamW(student.parameters(), lr=log["lr"], weight_decay=0.01)
order = distill.batch_order(len(data["train"]), log["steps"], batch=log["batch"], seed=log["seed"])
for step, pick in enumerate(order[:3]):
    x = data["train"][pick]  # (2, 65)
    logits = student(x[:, :-1]).reshape(-1, student.config.vocab_size)  # (128, 262144)
    ids, logprobs = data["train_ids"][pick].reshape(-1, k), data["train_logprobs"][pick].reshape(-1, k)
    loss = distillation_loss(logits, ids, logprobs)
    opt.zero_grad()
    loss.backward()
    opt.step()
    logged = log["students"]["kl"]["loss"][step]
    print(f"step {step}: distillation loss {loss.item():.4f} (the script logged {logged:.4f})")
    assert abs(loss.item() - logged) < 1e-3

# %% [markdown]
# **The result.** The whole runs, as the script logged them (the stored file, the command and the
# timings are in `../data/distill/`):

# %%
from statistics import mean
students, names = log["students"], {"ce": "cross-entropy only", "kl": "distillation only", "mix": "half and half"}
fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.2))
for kind, run in students.items():
    left.plot(run["held_out_step"], run["held_out_ce"], "o-", ms=3, label=names[kind])
    right.plot(run["held_out_step"], run["held_out_kl"], "o-", ms=3, label=names[kind])
left.axhline(log["teacher_held_out_ce"], color="k", ls=":", lw=1, label="the teacher, Gemma 3 270M")
left.set(xlabel="step", ylabel="held-out cross-entropy (nats)", ylim=(0, None))
right.set(xlabel="step", ylabel="held-out KL to the teacher (nats)", ylim=(0, None))
left.legend(fontsize=8); plt.tight_layout(); plt.show()
seen = log["steps"] * log["batch"] * log["seq"] / log["train_tokens"]
print(f"teacher {log['teacher_parameters'] / 1e6:.0f}M parameters, student {log['student_parameters'] / 1e6:.1f}M "
      f"({log['teacher_parameters'] / log['student_parameters']:.0f}× fewer); "
      f"k = {log['k']}; {log['steps']} steps of {log['batch'] * log['seq']} tokens; {log['train_tokens']:,} "
      f"training tokens (each seen {seen:.1f} times), {log['held_out_tokens']:,} held out")
print(f"uniform guess ln 262144 = {math.log(262144):.2f}; the teacher's held-out loss {log['teacher_held_out_ce']:.3f}")
for kind, run in students.items():
    best = min(run["held_out_ce"])
    print(f"{names[kind]:>18}: held-out loss after {log['steps']} steps {run['final_held_out_ce']:.3f} "
          f"(best {best:.3f} at step {run['held_out_step'][run['held_out_ce'].index(best)]}), "
          f"KL to the teacher {run['final_held_out_kl']:.3f}; "
          f"last 15 training batches {mean(run['train_ce'][-15:]):.3f}")
gain = students["ce"]["final_held_out_ce"] - students["kl"]["final_held_out_ce"]
print(f"at step {log['steps']}, distillation's held-out loss is {gain:.3f} nats below cross-entropy's")

# %% [markdown]
# **Reading the result.** At equal steps, the same start and the same batches, the distilled
# student's held-out loss is 6.607 nats against 8.187 for the student trained on the true tokens
# alone: 1.579 nats lower. The cross-entropy student stops improving early (its best, 7.765, comes at
# step 90) and then gets worse, while the distilled one keeps improving to the last step. On its
# training batches the picture is reversed: over the last 15 steps the cross-entropy student's loss on
# the true training tokens averages 5.705, the distilled one's 6.116. The first memorises the 5,376
# tokens it sees over and over (3.6 times each); the second is never asked to, because its targets
# at a training position are the teacher's spread of plausible pieces, not the one piece the text
# happened to hold. Those spreads also name pieces that never occur in the training text; under
# cross-entropy such pieces are only ever pushed down, and the held-out text pays for it.
#
# Two cautions. Most of this text (all of the held-out part) was *sampled from the teacher*: there the
# teacher's distribution is exactly what produced the next token, which flatters distillation. And
# both students stay far from the teacher's own held-out loss, 3.122: they are 16× smaller, nearly all
# embedding, and saw a few thousand tokens, where Gemma's students see trillions. The mechanism is the
# same at that scale: more information per token than the text alone provides.

# %% [markdown]
# ## 6. Mixture of experts: what the load-balancing loss adds
# In a mixture of experts (notebook 07) a router picks `k` of `E` experts per token. The language-
# model loss alone lets a bad habit grow: an expert that happens to be picked more early on gets
# more gradient, gets better, and gets picked even more, while other experts starve. Training
# therefore adds a small **load-balancing loss** (Switch Transformer, Fedus et al., 2021):
#
# `balance = E · Σ_e f_e · P_e`, with `f_e` the fraction of the token choices that went to expert `e`
# and `P_e` the router's mean probability for `e`.
#
# It is 1 when both are spread evenly, and larger when the router concentrates. `f_e` comes from a
# `topk` and has no gradient; `P_e` does, so the loss nudges the router's probabilities away from
# the experts that are already overloaded. The tiny MoE of notebook 07 was trained with
# `loss = cross-entropy + 0.01 · balance`. Its value, measured on that model and on extreme routers:

# %%
from tiny_moe import balance_loss, load_tiny_moe, router_outputs, validation_data
tiny, vocab, _ = load_tiny_moe()
routed, remove = router_outputs(tiny)
with torch.no_grad():
    tiny(torch.tensor([validation_data(vocab)["english"][:128]]))
remove()
E, k = tiny.config.num_experts, tiny.config.top_k_experts
print(f"trained tiny MoE, English held-out text: balance loss {balance_loss(routed, E):.3f}")
even = torch.full((128, E), 1 / E), torch.arange(128 * k).reshape(128, k) % E
print(f"perfectly even router: {balance_loss([(None, even[1], even[0])], E):.3f}")
onehot = F.one_hot(torch.zeros(128, dtype=torch.long), E).float()
print(f"one expert takes every first choice with probability 1: "
      f"{balance_loss([(None, torch.stack([torch.zeros(128), torch.ones(128)], 1).long(), onehot)], E):.3f}")

# %% [markdown]
# With top-2 routing the worst case is `E / 2 = 8` rather than `E`: each token's second choice must
# go to another expert. The trained model sits near 1: its experts share the load, which is what
# makes the routing patterns of notebook 07 worth looking at.
#
# ## References
# - Rumelhart, Hinton and Williams, [*Learning representations by back-propagating errors*](https://www.nature.com/articles/323533a0), Nature, 1986.
# - Goodfellow, Bengio and Courville, [*Deep Learning*](https://www.deeplearningbook.org/), 2016: chapter 6.5 (back-propagation) and 5.5 (maximum likelihood and cross-entropy).
# - Loshchilov and Hutter, [*Decoupled Weight Decay Regularization*](https://arxiv.org/abs/1711.05101), 2019: AdamW.
# - Hinton, Vinyals and Dean, [*Distilling the Knowledge in a Neural Network*](https://arxiv.org/abs/1503.02531), 2015.
# - Gemma Team, [*Gemma 2: Improving Open Language Models at a Practical Size*](https://arxiv.org/abs/2408.00118), 2024: distillation for the 2B and 9B models.
# - Gemma Team, [*Gemma 3 Technical Report*](https://arxiv.org/abs/2503.19786), 2025: section 2.2, 256 sampled logits per token.
# - Fedus, Zoph and Shazeer, [*Switch Transformers*](https://arxiv.org/abs/2101.03961), 2021: the load-balancing loss.
# - Karpathy, [nanoGPT](https://github.com/karpathy/nanoGPT): a compact GPT training loop in PyTorch.
#
# ## Exercises
# Solutions: `../solutions/06b_training_a_tiny_gemma.py`.
#
# **Exercise 6b.1 — the gradient at the logits.** Write `logits_gradient(logits, targets)`: the
# gradient of `F.cross_entropy(logits, targets)` (mean over positions) with respect to `logits`,
# without autograd. Logits are `(N, V)`, targets `(N,)`.

# %%
from checks import check_exercise_6b_1, check_exercise_6b_2, check_exercise_6b_3

def logits_gradient(logits, targets):
    raise NotImplementedError  # your code here

check_exercise_6b_1(logits_gradient)

# %% [markdown]
# **Exercise 6b.2 — a better baseline than uniform.** A model that ignores the context but knows
# how often each token occurs always predicts the same distribution. Write
# `best_context_free_loss(ids, vocab_size)`: the lowest cross-entropy such a model can reach on
# `ids` (a 1-D tensor of token ids), in nats. Is it lower than `ln V`? When would they be equal?
# (Answer in the solutions.)

# %%
def best_context_free_loss(ids, vocab_size):
    raise NotImplementedError  # your code here

check_exercise_6b_2(best_context_free_loss)

# %% [markdown]
# **Exercise 6b.3 — break a shortcut.** The distillation loss above takes a softmax over all 262,144
# logits of the student, at every position. A tempting saving: take the softmax over the teacher's k
# pieces only, `logits.gather(-1, ids).log_softmax(-1)`, and compare that with `q`. Show why the
# script does not do this. Write `fool_the_shortcut(ids, logprobs, vocab_size)` returning student
# logits `(N, vocab_size)` for which the shortcut loss is 0 while the student gives the teacher's k
# pieces, together, less than 1 % of its probability. (Hint: what can a softmax over k numbers not
# see?) The checker prints what `distillation_loss` says about your student.

# %%
def fool_the_shortcut(ids, logprobs, vocab_size):
    raise NotImplementedError  # your code here

check_exercise_6b_3(fool_the_shortcut)
