# %% [markdown]
# # 06b · Training a tiny Gemma: cross-entropy, perplexity, backpropagation
#
# **What you will learn**
# - what a language model is trained to do, and the number that says how well it does it:
#   the **cross-entropy** loss, and its friendlier face, **perplexity**;
# - **backpropagation**: how every weight learns which way to move, checked by hand on one layer;
# - a tiny Gemma-style model, built from minigemma's own classes, trained on your CPU in well under a
#   minute — its loss curve, and what it writes afterwards;
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
# then stories sampled from the real Gemma 3 270M.

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

# %%
@torch.no_grad()
def held_out_loss(model, seq=64):
    """Mean next-token loss on the held-out text, in fixed windows."""
    model.eval()
    rows = torch.stack([val_ids[s:s + seq + 1] for s in range(0, len(val_ids) - seq - 1, seq)])  # (n, seq+1)
    logits = model(rows[:, :-1])
    return F.cross_entropy(logits.reshape(-1, V), rows[:, 1:].reshape(-1)).item()

print(f"before training: held-out loss {held_out_loss(model):.3f}, uniform {math.log(V):.3f}")

# %% [markdown]
# Untrained, the model is about as good as the uniform guess, as it should be. Now the training
# loop. Each step: take 16 random windows of 64 characters, predict every next character
# (**teacher forcing**: position `t` sees the true tokens before it, so one forward pass gives 64
# predictions per window), compute the loss, backpropagate, let the optimiser step.

# %%
def batch(generator, size=16, seq=64):
    starts = torch.randint(0, len(train_ids) - seq - 1, (size,), generator=generator)
    return torch.stack([train_ids[s:s + seq + 1] for s in starts.tolist()])  # (size, seq+1)

def train(model, steps, lr=3e-3):
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    generator, history = torch.Generator().manual_seed(0), []
    for step in range(steps):
        model.train()
        rows = batch(generator)
        logits = model(rows[:, :-1])  # (16, 64, V)
        loss = F.cross_entropy(logits.reshape(-1, V), rows[:, 1:].reshape(-1))
        opt.zero_grad()
        loss.backward()  # fills p.grad for every parameter
        opt.step()
        history.append(loss.item())
        if step % 100 == 0 or step == steps - 1:
            print(f"step {step:>3}: training loss {loss.item():.2f}, held-out {held_out_loss(model):.2f}")
    return history

# %%
history = train(model, steps=400)

# %%
final = held_out_loss(model)
plt.figure(figsize=(7, 3))
plt.plot(history, label="training loss (one batch)")
plt.axhline(math.log(V), color="k", ls="--", lw=1, label=f"uniform guess, ln {V}")
plt.axhline(final, color="C1", lw=1, label=f"held-out after training ({final:.2f})")
plt.xlabel("step"); plt.ylabel("cross-entropy (nats)"); plt.legend(fontsize=8); plt.show()
print(f"held-out perplexity: {math.exp(final):.1f} characters (uniform: {V})")

# %% [markdown]
# **Reading the curve.** The loss falls fast at first: which characters are common (spaces, `e`,
# `t`) is the easiest thing to learn. Then come which characters follow which (after `q` a `u`,
# after `. ` a capital) and short words. Near the end the training loss keeps falling while the
# held-out loss stops: the model starts to memorise its 26,000 training characters instead of
# learning English (*overfitting*). The held-out number is the honest one.
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
# taking the single likeliest character, soon repeats itself. That is what 400 steps on 26 KB of
# text can give. Real models train the same way — the same loss, the same backward sweep — on
# trillions of tokens.
#
# ## 5. Mixture of experts: what the load-balancing loss adds
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
from checks import check_exercise_6b_1, check_exercise_6b_2

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
