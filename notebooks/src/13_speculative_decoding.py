# %% [markdown]
# # 13 · Speculative decoding and Gemma 4's multi-token-prediction drafter
#
# **What you will learn**
# - why checking 5 guessed tokens costs a memory-bound CPU far less than producing 5 one by one;
# - the accept rule that makes speculative decoding give *exactly* the text of plain greedy decoding
#   (and, for sampling, exactly the same distribution), and the expected number of tokens per pass,
#   `(1 − α^(k+1)) / (1 − α)`;
# - Gemma 4's **MTP assistant**: a 4-layer drafter that owns no keys or values — it reads the big
#   model's last hidden state and its KV cache — and its **centroid head**, which scores 4,096 of
#   262,144 tokens;
# - how a KV cache (ring buffers included) takes back rejected tokens;
# - the loop on our real Gemma 3 270M with prompt-lookup drafts, accepted and rejected tokens coloured;
# - why "the same text" needs every row of the verifying pass computed bit for bit as a one-token
#   step computes it, and how the package makes that hold in every setting (float32, bf16, int8, int4);
# - a tiny random Gemma 4 pair (`minigemma.tiny_random`) to try the MTP drafter without its weights.
#
# **Prerequisites:** notebooks 04 (KV cache, ring buffers), 06 (Gemma 4, KV sharing) and 12 (the
# roofline: why decoding is memory-bound).

# %%
import json, math, shutil, tempfile, time
from pathlib import Path
import torch
import matplotlib.pyplot as plt
from IPython.display import HTML, display
import minigemma
from minigemma import KVCache, generate_ids
from minigemma.mtp import Drafter, producer_layers
from minigemma.speculative import PromptLookup, Stats, speculative_ids
from minigemma.row_exact import one_row_at_a_time
from minigemma.weights import build_model, read_hf_directory, speed_up

_ = torch.manual_seed(0)
torch.set_num_threads(2)

# %% [markdown]
# ## 1. Why guessing pays: one pass over k + 1 tokens costs far less than k + 1 passes over 1
#
# Decoding one token with the 270M model means reading all of its weights (about 1 GB in float32)
# from memory to do two multiply-adds per weight. A CPU can do far more arithmetic per byte than
# that: notebook 12's roofline puts single-token decoding deep in the *memory-bound* corner. Give
# the same pass 5 tokens instead of 1 and it reads the same weights once, doing 5× the arithmetic
# that the processor had time for anyway. Let us measure the time of one forward pass (with a KV
# cache, after a 32-token prompt) as the number of new tokens grows.

# %%
model, tok = minigemma.load("gemma3-270m", progress=False)
weight_bytes = sum(t.numel() * t.element_size() for t in model.state_dict().values())
print(f"the 270M's weights: {weight_bytes / 1e9:.2f} GB in float32")
prompt = tok.encode("The three primary colours are red, yellow and blue. The three primary colours are",
                    add_bos=True)

def pass_time(n, repeat=3):
    times = []
    for _ in range(repeat):
        cache = KVCache(model.config, batch=1, max_len=64)
        with torch.no_grad():
            model(torch.tensor([prompt]), cache=cache)
            start = time.perf_counter()
            model(torch.tensor([prompt[:n]]), cache=cache)
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]

sizes = [1, 2, 3, 5, 8]
times = {n: pass_time(n) for n in sizes}

# %% [markdown]
# The exact numbers depend on the machine, so this cell's output is not compared when the
# notebook is tested. On an idle machine the curve stays far below the straight line "n passes
# of one token": the pass is memory-bound. On a *busy* machine (other programs competing for the
# cores, as on the shared machine where this notebook was last run) each pass gets only slices of
# a core, arithmetic becomes the bottleneck, and the curve climbs towards the straight line —
# then speculative decoding cannot win, however good the drafts. Look at your own plot.
#
# One more thing moves the curve: how close the *one*-token pass already is to the memory limit.
# Since notebook 12's row blocks, our float32 single-token pass streams its weights about 3× faster
# than before, while 5 tokens still cost more arithmetic. So the ratio for 5 tokens printed above
# changes with the machine and its load: about 1× when memory is the bottleneck everywhere, about
# 2× on an idle machine where the one-token pass streams fast (there the head took 13 ms for 1 row
# and 29 ms for 5; README, "Speed"). Drafts pay when most of them are accepted
# (`benchmarks/results_speculative.md`: 2.25× when the text repeats a list, 0.87× on free text).

# %%
# NBVAL_IGNORE_OUTPUT
fig, ax = plt.subplots(figsize=(5.5, 3.2))
ax.plot(sizes, [times[n] * 1e3 for n in sizes], "o-", label="one pass over n tokens")
ax.plot(sizes, [n * times[1] * 1e3 for n in sizes], "--", color="grey", label="n passes of 1 token")
ax.set_xlabel("tokens in the pass (1 + drafts)"); ax.set_ylabel("ms"); ax.legend()
ax.set_title("Gemma 3 270M, float32, 2 threads")
plt.show()
print({n: f"{times[n] / times[1]:.2f}× the 1-token pass" for n in sizes})

# %% [markdown]
# ## 2. The loop, and the rule that keeps the text exact
#
# ```
#  last token t ──► drafter ──► d1 d2 d3 d4            (cheap, one after another)
#  [t d1 d2 d3 d4] ──► target, ONE pass ──► its own choice after t, d1, d2, d3, d4
#  keep d1..dn while they equal the target's choices, then add the target's choice n+1
# ```
#
# Row `i` of the target's logits is what the target would have predicted after `t, d1, …, di`. If
# `d1` equals the target's choice after `t`, then row 1 is exactly the row plain decoding would have
# computed next — so the check can go on. At the first disagreement we take the target's own
# choice instead, and throw the rest away. **Every kept token is a token the target chose**, so
# greedy output is identical to plain greedy decoding; a pass yields between 1 and k + 1 tokens.
#
# For **sampling** the rule is probabilistic (Leviathan et al.; Chen et al.): keep a draft `x`
# with probability `min(1, p(x)/q(x))` (`p` the target's distribution, `q` the drafter's); on a
# rejection draw the replacement from `max(0, p − q)`, renormalised. Summing the two ways of
# producing a token gives `min(p, q) + max(0, p − q) = p`: exactly the target's distribution.
#
# **How much faster?** If each draft is accepted with probability `α` (independently), the pass
# yields `1 + α + α² + … + α^k = (1 − α^(k+1)) / (1 − α)` tokens on average.

# %%
alphas = torch.linspace(0, 0.99, 100)
fig, ax = plt.subplots(figsize=(5.5, 3.2))
for k in (1, 2, 4, 8):
    ax.plot(alphas, (1 - alphas ** (k + 1)) / (1 - alphas), label=f"k = {k}")
ax.set_xlabel("acceptance rate α"); ax.set_ylabel("tokens per target pass"); ax.legend()
ax.set_title("(1 − α^(k+1)) / (1 − α)")
plt.show()
for a, k in ((0.5, 8), (0.5, 2), (0.9, 4)):
    print(f"α = {a}, k = {k}: {(1 - a ** (k + 1)) / (1 - a):.2f} tokens per pass")

# %% [markdown]
# Long drafts only pay when `α` is high: at `α = 0.5`, `k = 8` gives 2.0 tokens per pass, barely
# more than `k = 2` (1.75), while each draft costs a drafter step and makes the verifying pass a
# little longer. At `α = 0.9`, `k = 4` gives 4.1 tokens per pass. We will compare this curve with
# what we measure in section 6.
#
# ## 3. Gemma 4's drafter: a model that borrows almost everything
#
# Google released small "assistant" drafters beside Gemma 4. Trained for *this* target, they are
# built to cost as little as possible per drafted token. The design is not new: feeding the
# drafter the target's hidden state beside the token embedding, and its own output state back at
# the next step, is how EAGLE drafts (Li et al. 2024), and DeepSeek-V3's multi-token-prediction
# modules chain the same way (DeepSeek-AI 2024). What Gemma 4's adds is reading the target's KV
# cache instead of keeping one, and the centroid head:
#
# - **input**: the target's embedding of the last token, concatenated with the target's last
#   hidden state (after its final norm), `2 × D` numbers; `pre_projection` maps them to the
#   drafter's own smaller width;
# - **layers**: a few ordinary Gemma 4 layers, except that *every* layer is KV-shared: its queries
#   attend over the keys and values the **target** already cached (for each layer type, those of
#   the target's last layer of that type that writes K/V). No prefill, no drafter cache;
# - **outputs**: `post_projection` maps the normed state back to width `D` — it stands in for the
#   target's hidden state at the next drafting step — and the tied embedding gives logits.
#
# All drafting steps of a round use the *same* position (the last token's) and the *same* target
# K/V; only the two input vectors change.
#
# Why is this cheap? A drafter step costs its own few layers (a width of 256–1,024 instead of the
# target's 1,536–5,376) plus its head, and nothing else: no key or value projection anywhere, no
# cache to fill, no prefill of the prompt — the target already did all of that. Why is it good?
# The target's last hidden state already "knows" a lot about the next few tokens (it was trained
# to predict only the next one, but its features carry further); the drafter is trained to read
# them out, one more token per step, feeding its own output state back in place of the target's.
# This is the same idea as multi-token prediction heads (Gloeckle et al.), trained after the fact
# as a separate small model so that the target's weights stay untouched.

# %%
fig, ax = plt.subplots(figsize=(9, 3.2)); ax.axis("off")
boxes = [(0.0, 0.55, "target's embedding\nof last token (D)"), (0.0, 0.1, "target's last\nhidden state (D)"),
         (0.22, 0.33, "concat (2D)\n→ pre_projection (d)"), (0.44, 0.33, "Gemma 4 layers\n(queries only)"),
         (0.66, 0.55, "norm → tied head\nor centroid head"), (0.66, 0.1, "norm →\npost_projection (D)"),
         (0.44, 0.78, "target's KV cache\n(sliding + global)"), (0.87, 0.55, "draft token"),
         (0.87, 0.1, "next step's\nhidden state")]
for x, y, text in boxes:
    ax.text(x + 0.08, y + 0.08, text, ha="center", va="center", fontsize=8.5,
            bbox=dict(boxstyle="round", fc="#e8f0fe" if "target" in text else "#fdf2e0"))
for (x0, y0), (x1, y1) in [((0.16, 0.63), (0.22, 0.45)), ((0.16, 0.18), (0.22, 0.38)), ((0.38, 0.41), (0.44, 0.41)),
                           ((0.52, 0.78), (0.52, 0.53)), ((0.6, 0.45), (0.66, 0.6)), ((0.6, 0.38), (0.66, 0.2)),
                           ((0.82, 0.63), (0.87, 0.63)), ((0.82, 0.18), (0.87, 0.18))]:
    ax.annotate("", (x1, y1), (x0, y0), arrowprops=dict(arrowstyle="->"))
ax.set_title("The MTP assistant: blue = borrowed from the target, orange = the drafter's own")
plt.show()

# %% [markdown]
# ## 4. The drafter step by step, on a tiny random pair
#
# We let transformers save a tiny random Gemma 4 target (E2B-like: per-layer embeddings, KV
# sharing, sliding window 8) and a tiny random assistant for it (3 layers, with the centroid head),
# perturbing norms and scalars so that no offset can hide. Then we load both with minigemma: the
# assistant directory gives a `Drafter`, strictly checked like every checkpoint.

# %%
from transformers import (Gemma4AssistantConfig, Gemma4AssistantForCausalLM, Gemma4ForCausalLM,
                          Gemma4TextConfig)
from transformers.utils.logging import disable_progress_bar
disable_progress_bar()  # the stored outputs should not show stuck progress bars
common = dict(vocab_size=8192, head_dim=16, global_head_dim=32, num_attention_heads=4, num_key_value_heads=1,
              sliding_window=8, max_position_embeddings=256, initializer_range=0.2)
ref_target = Gemma4ForCausalLM(Gemma4TextConfig(
    **common, hidden_size=64, intermediate_size=96, num_hidden_layers=5, hidden_size_per_layer_input=8,
    layer_types=["sliding_attention"] * 2 + ["full_attention"] + ["sliding_attention", "full_attention"],
    num_kv_shared_layers=2)).eval()
ref_assistant = Gemma4AssistantForCausalLM(Gemma4AssistantConfig(text_config=Gemma4TextConfig(
    **common, hidden_size=32, intermediate_size=48, num_hidden_layers=3, num_kv_shared_layers=3,
    layer_types=["sliding_attention", "sliding_attention", "full_attention"], hidden_size_per_layer_input=0,
    vocab_size_per_layer_input=0), backbone_hidden_size=64, use_ordered_embeddings=True, num_centroids=64,
    centroid_intermediate_top_k=4)).eval()

# %% [markdown]
# The assistant's `token_ordering` (which tokens form each cluster) is learned in the real
# drafters; here it is a random permutation. Norms and scalars are moved away from their
# initial values, then both models are saved and loaded back.

# %%
with torch.no_grad():
    for m in (ref_target, ref_assistant):
        for name, t in m.state_dict(keep_vars=True).items():
            if "norm" in name or "scalar" in name:
                t.add_(0.3 * torch.randn(t.shape))
    for p in (ref_assistant.pre_projection.weight, ref_assistant.post_projection.weight,
              ref_assistant.masked_embedding.centroids.weight):
        p.normal_(0, 0.2)
    ref_assistant.masked_embedding.token_ordering.copy_(torch.randperm(8192))
tmp = Path(tempfile.mkdtemp())
ref_target.save_pretrained(tmp / "target"); ref_assistant.save_pretrained(tmp / "assistant")
config, state, _ = read_hf_directory(tmp / "target", progress=False)  # no tokenizer for a toy vocabulary
target = speed_up(build_model(config, state))  # the layer swap load() applies (section 8 says why it matters)
drafter, _ = minigemma.load(tmp / "assistant", progress=False)
print(type(drafter).__name__, "| target layers that lend their K/V:", producer_layers(target.config))

# %% [markdown]
# Layers 2 and 1 are the target's last global and last sliding layers that compute keys and
# values (3 and 4 are KV-shared and borrow from them). Now one drafting step, by hand. The
# target reads a 12-token prompt (longer than the window) and chooses its next token `t`; the
# drafter gets the target's embedding of `t` and the hidden state that chose it.

# %%
ids = torch.randint(3, 8192, (1, 12), generator=torch.Generator().manual_seed(1))
cache = KVCache(target.config, batch=1, max_len=32)
with torch.no_grad():
    logits, hidden = target(ids, cache=cache, return_hidden=True)  # hidden: (1, 12, 64), after the final norm
t = int(logits[0, -1].argmax())
position = ids.shape[1]  # t would sit at position 12; the cache holds positions 0..11
kv = {typ: (cache.layers[j].k[:, :, :cache.layers[j].filled], cache.layers[j].v[:, :, :cache.layers[j].filled],
            cache.layers[j].pos[:cache.layers[j].filled]) for typ, j in producer_layers(target.config).items()}
x_in = torch.cat([target.embed(torch.tensor([[t]])), hidden[:, -1:]], dim=-1)  # (1, 1, 128) = 2 × D
print("drafter input:", tuple(x_in.shape), "| sliding K/V slots:", tuple(kv["sliding_attention"][0].shape))

# %% [markdown]
# Through the drafter's own weights: `pre_projection`, three layers whose attention takes the
# target's `(k, v, positions)` instead of computing its own, the final norm, then the two heads.
# The drafter's query sits at position 12 and is rotated by RoPE for that position.

# %%
from minigemma.rope import cos_sin
with torch.no_grad():
    x = drafter.pre_projection(x_in)  # (1, 1, 32)
    pos = torch.tensor([position])
    for layer in drafter.layers:
        cos, sin = cos_sin(drafter.inv_freq[layer.layer_type], pos)
        x, _ = layer(x, cos, sin, pos, shared_kv=kv[layer.layer_type])
    h = drafter.norm(x)
    next_hidden = drafter.post_projection(h)  # (1, 1, 64): back to the target's width
    by_hand = drafter.masked_embedding(h, drafter.embed_tokens.weight)  # (1, 1, 8192)
    package, package_hidden = drafter(target.embed(torch.tensor([[t]])), hidden[:, -1:], kv, position)
torch.testing.assert_close(by_hand, package); torch.testing.assert_close(next_hidden, package_hidden)
print("by hand == minigemma.mtp.Drafter")

# %% [markdown]
# And against transformers' `Gemma4AssistantForCausalLM`, given the target's hidden state from
# transformers' own forward pass and the same target K/V our cache holds (in position order):

# %%
order = {typ: k_pos.argsort() for typ, (_, _, k_pos) in kv.items()}
shared = {typ: (k[:, :, order[typ]], v[:, :, order[typ]]) for typ, (k, v, _) in kv.items()}
with torch.no_grad():
    out = ref_target(ids, output_hidden_states=True)
    embeds = ref_target.get_input_embeddings()(torch.tensor([[t]]))
    ref = ref_assistant(inputs_embeds=torch.cat([embeds, out.hidden_states[-1][:, -1:]], -1),
                        position_ids=torch.tensor([[position]]), shared_kv_states=shared)
torch.testing.assert_close(package, ref.logits, atol=1e-4, rtol=0)
torch.testing.assert_close(package_hidden, ref.last_hidden_state, atol=1e-4, rtol=0)
print(f"equal to transformers (to 1e-4; logits up to {ref.logits.abs().max():.0f})")

# %% [markdown]
# One detail: transformers' drafter lets a sliding layer see the last `window + 1` target
# positions before it (its mask is inclusive), and so does ours when given them (the tests feed
# both the full K/V). Our ring buffer keeps `window` positions, so past the window, in generation,
# our drafter sees one key fewer than transformers' would. That can change a draft, never the
# output: the target decides every token.
#
# ## 5. The centroid head: 6,144 dot products instead of 262,144
#
# The released drafters' head would cost `262,144 × d` multiply-adds per drafted token — more
# than the drafter's layers. With `use_ordered_embeddings` the vocabulary is cut into 2,048
# clusters of 128 tokens (listed cluster by cluster in `token_ordering`); 2,048 centroids score
# the hidden state, and only the tokens of the best 32 clusters get a real logit. Everyone else
# gets "the smallest real logit − 1". Our toy has 64 clusters of 128 and keeps the best 4.

# %%
head = drafter.masked_embedding
with torch.no_grad():
    cluster_scores = head.centroids(h)[0, 0]  # (64,)
    chosen = cluster_scores.topk(head.top_k).indices
grid = torch.zeros(head.num_centroids, head.per_cluster)  # cluster × slot
grid[chosen] = 1
fig, (a1, a2) = plt.subplots(1, 2, figsize=(9, 3.2), gridspec_kw={"width_ratios": [1.3, 1]})
a1.bar(range(head.num_centroids), cluster_scores, color=["C3" if i in chosen else "C0" for i in range(64)])
a1.set_xlabel("cluster"); a1.set_ylabel("centroid score"); a1.set_title("top-4 clusters (red)")
im = a2.imshow(grid, aspect="auto", cmap="Reds"); fig.colorbar(im, ax=a2, label="scored (1) or not (0)")
a2.set_xlabel("slot in cluster (token_ordering)"); a2.set_ylabel("cluster"); a2.set_title("tokens that get a logit")
plt.tight_layout(); plt.show()
print(f"{int(grid.sum())} of {8192} tokens scored")
real_head = 2048 + 32 * 128  # the released drafters: 2,048 centroids, then 32 clusters of 128 members
print(f"released drafters: {real_head:,} dot products instead of 262,144, {262144 / real_head:.0f}× fewer")

# %% [markdown]
# Why clusters? Tokens that tend to follow similar contexts get similar output embeddings, so
# a cluster of 128 of them can be represented by one centroid vector, and a hidden state that
# points towards the centroid points roughly towards its members. Scoring 2,048 centroids and
# 32 × 128 members costs 6,144 dot products: a 43× smaller head. The price: a token outside the
# 32 clusters can never be drafted, which only costs a rejection, never a wrong output.
#
# The head only helps if the token the target will choose is usually inside the chosen clusters.
# With *random* weights it cannot be (4 of 64 clusters: about 6 % by chance); a trained drafter
# learns centroids and ordering so that it nearly always is. We count it over a few drafting steps.

# %%
hits, steps = 0, 0
with torch.no_grad():
    for start in range(6, 12):
        lg, hd = target(ids[:, :start], return_hidden=True)
        c = KVCache(target.config, batch=1, max_len=32); target(ids[:, :start], cache=c)
        kv_s = {typ: (c.layers[j].k[:, :, :c.layers[j].filled], c.layers[j].v[:, :, :c.layers[j].filled],
                      c.layers[j].pos[:c.layers[j].filled]) for typ, j in producer_layers(target.config).items()}
        tok_t = int(lg[0, -1].argmax())
        x = drafter.pre_projection(torch.cat([target.embed(torch.tensor([[tok_t]])), hd[:, -1:]], -1))
        nxt = int(target(torch.cat([ids[:, :start], torch.tensor([[tok_t]])], 1))[0, -1].argmax())
        for layer in drafter.layers:
            cs, sn = cos_sin(drafter.inv_freq[layer.layer_type], torch.tensor([start]))
            x, _ = layer(x, cs, sn, torch.tensor([start]), shared_kv=kv_s[layer.layer_type])
        hits += nxt in head.candidates(drafter.norm(x))[0, 0].tolist(); steps += 1
print(f"the target's next token was among the scored ones in {hits} of {steps} steps (random weights; "
      f"by chance {head.top_k}/{head.num_centroids} = {head.top_k / head.num_centroids:.0%})")

# %% [markdown]
# ## 6. Speculative decoding with the drafter, and taking tokens back
#
# `generate_ids(..., assistant=drafter, num_draft_tokens=k)` runs the loop of section 2. After the
# verifying pass, the target's cache holds all `k + 1` tokens; `KVCache.rollback` forgets the
# rejected ones. In a ring buffer a new token *overwrites* an older one that later tokens still
# need, so `KVCache.checkpoint` first saves the `k + 1` slots about to be overwritten. The output
# must equal plain greedy decoding, and transformers' assisted generation, token for token:

# %%
prompt_ids = ids[0].tolist()
plain = list(generate_ids(target, prompt_ids, max_new_tokens=24))
stats = Stats()
spec = list(speculative_ids(target, prompt_ids, drafter, 3, max_new_tokens=24, stats=stats))
ref_assistant.generation_config.num_assistant_tokens = 3
hf = ref_target.generate(ids, assistant_model=ref_assistant, max_new_tokens=24, do_sample=False,
                         eos_token_id=None, pad_token_id=0)[0, 12:].tolist()
assert spec == plain == hf
print(f"identical: {spec == plain == hf} | target passes: {len(stats.rounds) + 1} for 24 tokens | "
      f"acceptance {stats.acceptance_rate:.0%} (random drafter)")

# %% [markdown]
# A random drafter is almost never right, so this run mostly exercised rejections and rollbacks.
# The rollback is tested on its own too: a cache that saw 8 extra tokens and took 5 back equals
# a cache that never saw those 5 — keys, values, positions in every slot of every ring.

# %%
extra = torch.randint(3, 8192, (1, 8), generator=torch.Generator().manual_seed(2))
a, b = KVCache(target.config, 1, 32), KVCache(target.config, 1, 32)
with torch.no_grad():
    target(ids, cache=a); target(ids, cache=b)
    mark = a.checkpoint(8); target(extra, cache=a); a.rollback(mark, keep=3)
    target(extra[:, :3], cache=b)
same = all(la is None or (torch.equal(la.pos, lb.pos) and torch.allclose(la.k, lb.k, atol=1e-6)
                          and torch.allclose(la.v, lb.v, atol=1e-6)) for la, lb in zip(a.layers, b.layers))
print("after rollback, equal to a cache that never saw the rejected tokens:", same, "| seen:", a.seen, b.seen)

# %% [markdown]
# ## 7. On the real 270M: drafts by copying (prompt lookup)
#
# There is no MTP assistant for Gemma 3 270M. Any source of guesses works, though, because the
# target checks them all. The cheapest is the text itself: **prompt lookup** finds the most recent
# earlier occurrence of the last 1–3 tokens and proposes what followed it. It is free and shines
# when the output repeats the input — lists, quotes, code edits. (A smaller model of the same
# vocabulary, such as an int4 copy of the 270M, plugs in the same way: `assistant=that_model`;
# it drafts one token at a time with its own KV cache, which is rolled back like the target's.)
#
# Which drafter is best depends on the text and the machine. Prompt lookup costs nothing but only
# knows how to copy. A smaller model guesses everywhere but each guess costs a forward pass of
# that model, so it pays only if it is several times cheaper than the target *and* right most of
# the time. The MTP assistant is the best of both: trained to agree with its target, and so
# small that drafting costs a few percent of a target pass.

# %%
text = ("Repeat the list exactly.\nList: red apples, green pears, ripe plums, sweet cherries, dark grapes.\n"
        "Again: red apples,")
p_ids = tok.encode(text, add_bos=True)
plain = list(generate_ids(model, p_ids, max_new_tokens=32))
stats = Stats()
spec = list(speculative_ids(model, p_ids, PromptLookup(), 4, max_new_tokens=32, stats=stats))
assert spec == plain
print(repr(tok.decode(spec)))
print(f"identical to plain greedy: {spec == plain} | {len(stats.rounds) + 1} target passes for {len(spec)} tokens"
      f" | acceptance {stats.acceptance_rate:.0%} | {stats.tokens_per_pass:.2f} tokens per verifying pass")

# %% [markdown]
# Below, each verifying pass's output: **green** tokens were drafted and accepted (free), the
# **bold** token after them is the target's own choice (a correction or the bonus token), and
# struck-through grey drafts were rejected. The first token comes from the prompt's pass.

# %%
def coloured(stats, first):
    parts = [f"<b>{tok.decode([first])}</b>"]
    for drafts, n, own in stats.rounds:
        parts += [f"<span style='background:#c8f7c5'>{tok.decode([d])}</span>" for d in drafts[:n]]
        parts += [f"<s style='color:#999'>{tok.decode([d])}</s>" for d in drafts[n:n + 1]]
        parts.append(f"<b>{tok.decode([own])}</b>")
    return HTML("<pre style='white-space:pre-wrap'>" + "".join(parts) + "</pre>")

display(coloured(stats, spec[0]))

# %% [markdown]
# The same picture as a static figure: one bar per verifying pass, how many drafts were offered
# and how many were kept. Long runs of accepted drafts are where the list repeats.

# %%
offered = [len(d) for d, _, _ in stats.rounds]; kept = [n for _, n, _ in stats.rounds]
fig, ax = plt.subplots(figsize=(7, 2.6))
ax.bar(range(len(offered)), offered, color="#ddd", label="drafts offered")
ax.bar(range(len(kept)), kept, color="C2", label="drafts accepted")
ax.set_xlabel("verifying pass"); ax.set_ylabel("tokens"); ax.legend(); plt.show()
alpha = stats.acceptance_rate
print(f"measured α = {alpha:.2f}: formula (k = 4) predicts {(1 - alpha ** 5) / (1 - alpha + 1e-12):.2f} "
      f"tokens per pass, measured {stats.tokens_per_pass:.2f}")

# %% [markdown]
# The formula assumes every draft is accepted independently with the same `α`. Prompt lookup is
# all-or-nothing instead — long runs while the text copies, nothing when it does not (and some
# passes get fewer than 4 drafts, or none) — so the measured tokens per pass and the formula's
# differ. `benchmarks/bench_speculative.py` measures wall-clock speed-ups on several prompts,
# interleaved with plain decoding, and checks the texts are identical every time.
#
# ## 8. "The same text" is a promise about the last bit
#
# Row `i` of the verifying pass must be *exactly* what a one-token step at that position computes.
# Close is not enough: a key or value that differs in its last bit is stored in the cache, nudges
# every later logit, and sooner or later flips a near-tie between two tokens. That happened here:
# with int8 weights, the 270M continued a list with "The first thing you should do…" plainly and
# "The list is a bit longer…" speculatively, every run. The cause is the CPU libraries: for one row
# and for five they pick different routines that add up the same products in a different order
# (floating-point addition is not associative). Let us measure it on the int8 model: five tokens in
# one pass against the same five as one-token steps.

# %%
from minigemma import row_exact
row_exact._verdicts.clear()  # forget what the passes of earlier sections measured (see below)
int8, _ = minigemma.load("gemma3-270m", quantize="int8", progress=False)
words = tok.encode(" cherry, date, elderberry, fig, grape", add_bos=False)[:5]
def five_tokens(together, exact=False):
    cache = KVCache(int8.config, 1, 64, dtype=int8.dtype)
    with torch.no_grad():
        int8(torch.tensor([p_ids[:20]]), cache=cache, last_only=True)
        if not together:
            return torch.cat([int8(torch.tensor([[w]]), cache=cache) for w in words], dim=1)
        if not exact:
            return int8(torch.tensor([words]), cache=cache)
        with one_row_at_a_time():
            return int8(torch.tensor([words]), cache=cache)
steps = five_tokens(False)
for exact in (False, True):
    diff = (five_tokens(True, exact).float() - steps.float()).abs().max().item()
    print(f"one pass{' (one_row_at_a_time)' if exact else '':22s} vs five steps: max |Δ logit| = {diff:.4f}")

# %% [markdown]
# Inside `one_row_at_a_time()` (`minigemma/row_exact.py`, used by every verifying pass) the
# difference is exactly zero. It works layer by layer. Attention writes the cache and attends one
# query at a time, and a mixture of experts routes one token at a time. A matrix product, the
# expensive part, is measured instead of assumed: once per layer shape and row count, random probes
# go through the product at once and row by row, and only a product that gives identical bits
# stays batched, the source of the speed-up. Which products of the int8 model stayed batched in
# that pass:

# %%
verdicts = {}
for (key, rows, threads), same in row_exact._verdicts.items():
    verdicts.setdefault(key[0], []).append(same)
for kind, v in verdicts.items():
    print(f"{kind:9s}: {sum(v)} of {len(v)} (layer shape, row count) pairs exact in one product")

# %% [markdown]
# Here the int8 kernel gives the same bits for 5 rows as for 1, so the verifying pass keeps its
# single product per layer. A bf16 product (`F.linear` or oneDNN's packed one) usually does not,
# so a bf16 target verifies row by row and drafting saves it nothing; the text is right either
# way. `tests/test_row_exact.py` checks, for float32, bf16, packed bf16, int8, int4 and int4-all,
# that a verifying pass gives the logits *and caches* of one-token steps bit for bit, and that
# speculative decoding gives the plain greedy text on the real 270M.

# %%
plain = list(generate_ids(int8, p_ids, max_new_tokens=24))
spec = list(speculative_ids(int8, p_ids, PromptLookup(), 4, max_new_tokens=24))
assert spec == plain
print("int8, prompt lookup, identical to plain greedy:", spec == plain)

# %% [markdown]
# ## 9. Try the MTP drafter without Gemma 4's weights
#
# `minigemma.tiny_random("gemma4-e2b")` builds a model with E2B's structure (its layer pattern, KV
# sharing, per-layer embeddings, towers, the real Gemma tokenizer) at toy width, and
# `tiny_random("gemma4-e2b-assistant")` a 4-layer drafter with a centroid head that fits it.
# **The weights are random**: the drafter guesses badly and the text is noise, but every step of
# sections 3–6 runs. With the real checkpoints, `minigemma.load(...)` on their directories
# replaces both lines.

# %%
tiny, tiny_tok = minigemma.tiny_random("gemma4-e2b", seed=0)
tiny_drafter, _ = minigemma.tiny_random("gemma4-e2b-assistant", seed=0)
ids_t = tiny_tok.encode("The drafter reads the target's cache and guesses", add_bos=True)
stats = Stats()
spec = list(speculative_ids(tiny, ids_t, tiny_drafter, 4, max_new_tokens=24, stats=stats))
assert spec == list(generate_ids(tiny, ids_t, max_new_tokens=24))
print(f"identical to plain greedy | {len(stats.rounds) + 1} target passes for 24 tokens | "
      f"acceptance {stats.acceptance_rate:.0%} (random weights)")

# %% [markdown]
# ### Run it on the real model (optional)
# With the real pair on disk, start Jupyter with `MINIGEMMA_GEMMA4=path/to/gemma-4-e2b-it` and
# `MINIGEMMA_GEMMA4_ASSISTANT=path/to/gemma-4-e2b-it-assistant` (the MTP drafter released for it),
# and this cell answers one question with 4 drafts per target pass and prints the drafter's
# acceptance rate, the `α` of section 2 measured on the real models (both in bfloat16, so the target
# verifies row by row, section 8). Without them, it prints how to enable it and skips (the same cell
# as in notebooks 06, 08, 09 and 10).

# %%
from real_weights import mtp_stats, real_gemma4
real = real_gemma4(assistant=True)  # (model, tokenizer, drafter) from the two variables, or None
if real:
    real_stats = mtp_stats(*real, "List the planets of the solar system, one per line.", num_draft_tokens=4)
    print(f"acceptance {real_stats.acceptance_rate:.0%}, {real_stats.tokens_per_pass:.2f} tokens per target pass")

# %% [markdown]
# ## Exercises
# Solutions: `../solutions/13_speculative_decoding.py`.
#
# **Exercise 13.1 — when the drafter tires.** Section 2's formula assumes every draft is accepted
# with the same `α`. A real drafter guesses worse the further it looks ahead. Write
# `expected_tokens(alphas)`: the expected number of tokens one verifying pass yields when
# `alphas[i]` is the chance that draft `i + 1` is accepted *given that the drafts before it were*
# (`alphas` has `k` entries; it may be empty). Hint: for each possible length of the pass's output,
# ask what must have happened for the pass to reach it. Then compare `[0.9] * 4` with
# `[0.9, 0.8, 0.6, 0.4]`: how much does the fourth draft add in each case? (Answer in the solutions.)

# %%
from checks import check_exercise_13_1, check_exercise_13_2

def expected_tokens(alphas):
    raise NotImplementedError  # your code here

check_exercise_13_1(expected_tokens)

# %% [markdown]
# **Exercise 13.2** — Write `greedy_accept(target_choices, drafts)`: `target_choices[i]` is the
# target's greedy choice after the last token and the first `i` drafts (`k + 1` entries for `k`
# drafts). Return `(number of drafts accepted, the target's next token)`.

# %%
def greedy_accept(target_choices, drafts):
    raise NotImplementedError  # your code here

check_exercise_13_2(greedy_accept)

# %% [markdown]
# ## References
# - Y. Leviathan, M. Kalman, Y. Matias, [Fast Inference from Transformers via Speculative
#   Decoding](https://arxiv.org/abs/2211.17192), ICML 2023 — the loop and the accept/reject rule.
# - C. Chen et al., [Accelerating Large Language Model Decoding with Speculative
#   Sampling](https://arxiv.org/abs/2302.01318), 2023 — the same rule, independently.
# - Y. Li, F. Wei, C. Zhang, H. Zhang, [EAGLE: Speculative Sampling Requires Rethinking Feature
#   Uncertainty](https://arxiv.org/abs/2401.15077), ICML 2024 — drafting from the target's hidden state.
# - DeepSeek-AI, [DeepSeek-V3 Technical Report](https://arxiv.org/abs/2412.19437), 2024 — chained
#   multi-token-prediction modules, used for speculative decoding.
# - F. Gloeckle et al., [Better & Faster Large Language Models via Multi-token
#   Prediction](https://arxiv.org/abs/2404.19737), 2024 — models that predict several tokens ahead.
# - Google, [Gemma 4 model overview and guides](https://ai.google.dev/gemma/docs) — including
#   "Speed-up Gemma 4 with Multi-Token Prediction" and the `google/gemma-4-*-it-assistant` drafters.
# - H. He and Thinking Machines Lab, [Defeating Nondeterminism in LLM
#   Inference](https://thinkingmachines.ai/blog/defeating-nondeterminism-in-llm-inference/), 2025 —
#   why a row's result can depend on how many rows share the kernel call ("batch invariance").
# - A. Saxena, [Prompt Lookup Decoding](https://github.com/apoorvumang/prompt-lookup-decoding),
#   2023 — drafts copied from the prompt.
# - transformers, `models/gemma4_assistant/modeling_gemma4_assistant.py` and
#   `generation/candidate_generator.py` (`SinglePositionMultiTokenCandidateGenerator`) — read for facts.
