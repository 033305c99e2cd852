# %% [markdown]
# # 04 · Hybrid attention and the KV cache
#
# **What you will learn**
# - how Gemma 4 interleaves sliding-window and global layers, and how each model lays them out;
# - the KV cache: why generation keeps keys and values, and the **ring buffer** that lets a
#   sliding layer keep only its window;
# - **KV sharing** (E2B/E4B): the last layers borrow keys and values instead of making their own;
# - **keys as values** (26B/31B global layers): why the cache can keep V alone and rebuild K;
# - how much memory each real Gemma 4 model's cache needs from 8K to 256K tokens, and which
#   savings are standard (transformers' cache makes them too) and which one is this course's own.
#
# **Prerequisites:** notebooks 02 and 03.

# %%
import torch
import matplotlib.pyplot as plt
import minigemma
from minigemma import viz
from minigemma.cache import KVCache, kv_cache_bytes

presets = minigemma.PRESETS

# %% [markdown]
# ## 0. Why a KV cache at all?
# A decoder produces one token per step, and each step needs the keys and values of *every*
# earlier token (notebook 02: attention compares the new query with all visible keys). Without a
# cache, step `t` runs the whole sequence of `t` tokens through all layers again, just to read the
# scores at the last position: the work per step grows with the text, and the whole generation
# costs about `n²/2` token-passes. But the keys and values of earlier tokens never change (a token
# only looks backwards), so a generator can **keep** them: each step then runs only the one new
# token through the layers and reads the old keys and values from memory. Let us time both on the
# real Gemma 3 270M: a 150-token prompt, then 8 new tokens.

# %%
# NBVAL_IGNORE_OUTPUT
import time
model270, tok = minigemma.load("gemma3-270m", progress=False)
prompt = tok.encode(open("../data/sample_text.txt").read(), add_bos=True)[:150]
times = {"no cache": [], "KV cache": []}
with torch.no_grad():
    model270(torch.tensor([prompt]), last_only=True)  # warm-up, untimed: first calls pay one-off costs
    seq = list(prompt)  # without a cache: the whole sequence again at every step
    cache = KVCache(model270.config, batch=1, max_len=len(prompt) + 8)
    step, cached = torch.tensor([prompt]), []  # with a cache: the prompt once, then one token per step
    for _ in range(8):  # the two take turns, so that a busy moment of the machine slows both alike
        start = time.perf_counter()
        seq.append(int(model270(torch.tensor([seq]), last_only=True)[0, -1].argmax()))
        times["no cache"].append(time.perf_counter() - start)
        start = time.perf_counter()
        cached.append(int(model270(step, cache=cache, last_only=True)[0, -1].argmax()))
        times["KV cache"].append(time.perf_counter() - start)
        step = torch.tensor([[cached[-1]]])
assert cached == seq[len(prompt):]  # the same tokens either way

# %%
# NBVAL_IGNORE_OUTPUT
cached_step = sorted(times["KV cache"][1:])[3]  # the median cached step (steps 2-8): our unit of time
fig, ax = plt.subplots(figsize=(7, 3))
for label, ts in times.items():
    ax.plot(range(1, 9), [t / cached_step for t in ts], "o-", label=label)
ax.set_xlabel("generation step (step 1 includes the 150-token prompt)")
ax.set_ylabel("time ÷ one cached step")
ax.set_xticks(range(1, 9))
ax.legend(loc="upper right", fontsize=8)
plt.show()
uncached_step = sorted(times["no cache"][1:])[3]
print(f"steps 2-8 (medians): an uncached step takes {uncached_step / cached_step:.1f}× as long as a cached one")
print(f"step 1 (the prompt): the cached run took {times['KV cache'][0] / times['no cache'][0]:.1f}× the uncached time")

# %% [markdown]
# The plot and the ratios compare the two generators just above, which took turns on the same
# machine; absolute times would say more about how busy the machine is than about the cache, so
# we show none. Ratios still vary from run to run, so the test of this notebook does not compare this
# cell's output (the assert above, that both give the same tokens, always runs).
# The first cached step costs about as much as an uncached one (a ratio near 1 at step 1): it has
# to process the whole prompt (the *prefill*). After that, every uncached step still pays for
# 150+ tokens while a cached step pays for one, and the gap grows with the length of the text.
# The price of the cache is memory, and the rest of this notebook is about making that memory small.
#
# Why is a cached step not free? It still runs the new token through every layer's projections
# and MLP, and through the output head, which scores all 262,144 pieces against a 640-number
# vector: for a model this small, that head is most of the weights a cached step multiplies
# with (63 %):

# %%
head = model270.embed_tokens.weight.numel()  # the tied output head: vocabulary × width
rest = sum(p.numel() for name, p in model270.named_parameters() if name != "embed_tokens.weight")
print(f"weights one cached step multiplies with: output head {head / 1e6:.0f}M, all layers {rest / 1e6:.0f}M "
      f"-> the head is {head / (head + rest):.0%}")

# %% [markdown]
# ### Four questions a config answers for each layer
# Gemma 4's layers are not all alike, so the cache asks the config, per layer `i`:
# - `config.is_global(i)`: a global layer (keeps every position) or a sliding one (keeps its window)?
# - `config.kv_heads_of(i)`: how many key/value heads it stores (26B/31B use fewer on global layers);
# - `config.head_dim_of(i)`: how many numbers per head (256 on sliding layers, 512 on global ones);
# - `config.kv_donor(i)`: for a KV-shared layer (section 3), the layer whose keys and values it
#   reads; `None` for a layer that makes its own.

# %%
for name in ["gemma4-e2b", "gemma4-31b"]:
    c = presets[name]
    for i in [0, 4, 5, 14, 34]:
        if i < c.num_hidden_layers:
            print(f"{name} layer {i:>2}: global={c.is_global(i)!s:<5} kv_heads={c.kv_heads_of(i)} "
                  f"head_dim={c.head_dim_of(i)} kv_donor={c.kv_donor(i)}")

# %% [markdown]
# ## 1. The layer plan of each model
# Light blue: sliding layers (window 512 on E2B/E4B, 1024 on 26B/31B). Dark blue: global layers
# (p-RoPE, head dim 512). Orange: KV-shared layers, which compute no keys or values.

# %%
fig = viz.plot_layer_plan(presets)
plt.show()
for name, c in presets.items():
    n_global = sum(c.is_global(i) for i in range(c.num_hidden_layers))
    print(f"{name:>15}: {c.num_hidden_layers} layers, {n_global} global, window {c.sliding_window}, "
          f"{c.num_kv_shared_layers} KV-shared")

# %% [markdown]
# ## 2. The ring buffer
# A sliding layer never looks more than `window − 1` tokens back, so its cache needs only
# `window` slots. Token `p` goes to slot `p % window`, overwriting the token that just left the
# window. Each slot remembers its position, so the attention mask can be built from positions
# and the order inside the ring never matters. Here: window 4, ten tokens.

# %%
window, slots = 4, [-1] * 4
history = []
for p in range(10):
    slots[p % window] = p
    history.append(list(slots))
    print(f"token {p}: slots {slots}  -> attends to {sorted(s for s in slots if s >= 0)}")

# %%
grid = torch.tensor(history, dtype=torch.float).masked_fill(torch.tensor(history) < 0, float("nan"))
fig, ax = plt.subplots(figsize=(6.5, 3))
im = ax.imshow(grid.T.numpy(), cmap="viridis", aspect="auto", vmin=0, vmax=9)
for t in range(10):
    for s in range(window):
        if grid[t, s] >= 0:
            ax.text(t, s, int(grid[t, s]), ha="center", va="center", color="w", fontsize=8)
ax.set_xticks(range(10))
ax.set_yticks(range(window))
ax.set_xlabel("after token")
ax.set_ylabel("slot")
ax.set_title("what each ring slot holds (white: empty)")
fig.colorbar(im, ax=ax, ticks=range(10), label="position held")
plt.show()

# %% [markdown]
# The package's `LayerCache` is this ring, for keys and values of shape `(batch, kv_heads, slots, head_dim)`.
#
# Keeping only the window is standard, not our invention: transformers' cache does it for every
# sliding layer. Its `DynamicSlidingWindowLayer` appends the new keys and cuts the tensor back to the
# last `window − 1` positions; its `StaticSlidingWindowLayer` (a fixed buffer, for `torch.compile`)
# shifts the buffer by one slot per new token ([`cache_utils.py`](https://github.com/huggingface/transformers/blob/main/src/transformers/cache_utils.py)).
# A ring writes the one new slot in place and never moves the others; the memory is the same.

# %%
from minigemma.cache import LayerCache
ring = LayerCache(batch=1, kv_heads=1, size=4, head_dim=2, dtype=torch.float32)
for p in range(10):
    k = torch.full((1, 1, 1, 2), float(p))
    ring.update(k, k, torch.tensor([p]))
assert ring.pos.tolist() == history[-1]
print("package ring after 10 tokens:", ring.pos.tolist())

# %% [markdown]
# ## 3. KV sharing
# On E2B the last 20 of 35 layers make no keys or values. Each reuses those of the **last
# non-shared layer of the same type**: sliding layers read layer 13, global layers read layer 14.
# The idea comes from [Gemma 3n](https://ai.google.dev/gemma/docs/gemma-3n) ("KV cache sharing"); notebook 05
# ends with what else Gemma 4 kept from Gemma 3n, and what it dropped.
# Why the same type: a sliding and a global layer do not produce compatible keys and values (other
# head size, other RoPE, other reach), so a shared layer must borrow from its own kind. Getting the
# donor wrong is a classic port bug (e.g. [mlx-swift-lm#333](https://github.com/ml-explore/mlx-swift-lm/issues/333)).

# %%
e2b = presets["gemma4-e2b"]
donors = {i: e2b.kv_donor(i) for i in range(e2b.first_kv_shared_layer, e2b.num_hidden_layers)}
print("shared layer -> donor:", donors)

# %% [markdown]
# This too is standard. transformers shares KV the same way for Gemma 3n and Gemma 4:
# `Gemma4TextConfig.kv_sharing_modes` marks the donor of each layer type `"store"` and every shared
# layer `"reuse"`; the cache gives a reusing layer a `DummyLayer` that stores nothing, and its
# attention reads the donor's keys and values from a `shared_kv_states` dictionary
# ([`configuration_gemma4.py`](https://github.com/huggingface/transformers/blob/main/src/transformers/models/gemma4/configuration_gemma4.py),
# [`modeling_gemma4.py`](https://github.com/huggingface/transformers/blob/main/src/transformers/models/gemma4/modeling_gemma4.py)).
# Its plan for E2B's layer types is ours:

# %%
from transformers import Gemma4TextConfig  # the reference's plan, for the check only
modes = Gemma4TextConfig(num_hidden_layers=35, layer_types=list(e2b.layer_types), num_kv_shared_layers=20).kv_sharing_modes
assert [i for i, m in enumerate(modes) if m == "reuse"] == list(donors)
assert [i for i, m in enumerate(modes) if m == "store"] == sorted(set(donors.values()))
print("transformers: 'store' at layers", [i for i, m in enumerate(modes) if m == "store"],
      f"| 'reuse' at {modes.count('reuse')} layers, the same as our donors")

# %% [markdown]
# ## 4. Keys as values: the cache can hold V alone
# First, one piece of Gemma 4 attention that notebook 02 did not need. Gemma 3 normalises each
# query and key head (`q_norm`, `k_norm`, with learned weights); Gemma 4 also normalises the
# **values**, with `v_norm`: an RMSNorm *without* a learned scale. Each value head is divided by its
# root mean square, `v_norm(x) = x / rms(x)`, and that is all: no weight, and no RoPE (values carry
# no position). It came with Gemma 3n, and every Gemma 4 layer that makes its own values applies it
# ([architecture notes: transformers' `Gemma4TextAttention`](https://github.com/huggingface/transformers/blob/main/src/transformers/models/gemma4/modeling_gemma4.py),
# `v_norm = Gemma4RMSNorm(head_dim, with_scale=False)`). Notebook 06 puts it in the whole layer.

# %%
from minigemma.norm import RMSNorm
v_norm = RMSNorm(8, eps=1e-6, with_scale=False)
x = 5 * torch.randn(3, 8, generator=torch.Generator().manual_seed(0))  # three "heads" of 8 numbers
torch.testing.assert_close(v_norm(x), x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6))
print("learned numbers in v_norm:", sum(p.numel() for p in v_norm.parameters()))
print("rms of each head before:", x.pow(2).mean(-1).sqrt().numpy().round(2), "after:",
      v_norm(x).pow(2).mean(-1).sqrt().numpy().round(2))

# %% [markdown]
# On 26B and 31B the global layers have **no value projection** (`attention_k_eq_v`): the value is
# the key projection's raw output `x`, before any norm. Follow both through their norms:
#
# - key: `k_norm(x) = x / rms(x) · w_k`, then RoPE;
# - value: `v_norm(x) = x / rms(x)` — the same RMS, and no weight.
#
# So before RoPE the key **is** the value times the key-norm weight, and
# $K = \mathrm{RoPE}(V \odot w_k)$. A cache that holds V can rebuild K whenever attention reads it,
# and needs no K at all. That halves exactly the layers that grow with the context. The rebuild is
# the norm's own last step (a float32 multiply by `w_k`), so in float32 the rebuilt keys equal the
# stored ones bit for bit (in bf16, up to one rounding).
#
# Two details make it cheap. RoPE needs each cached position's angles; p-RoPE turns only a quarter
# of the pairs (notebook 03), so the cache keeps a small table of cosines and sines for those
# pairs, shared by every such layer. And `Attention.keys_from_values` rotates only those pairs;
# the rest of K is `V ⊙ w_k`. Here is the check on one global layer of a small random 31B-style model.

# %%
from minigemma.rope import apply_rope, cos_sin
style31 = minigemma.TextConfig(model_type="gemma4_text", vocab_size=1000, hidden_size=32, intermediate_size=64,
                               num_hidden_layers=6, num_attention_heads=4, num_key_value_heads=2, head_dim=8,
                               global_head_dim=16, num_global_key_value_heads=1, attention_k_eq_v=True,
                               sliding_window=8, layer_types=("sliding_attention",) * 5 + ("full_attention",),
                               rope_parameters=presets["gemma4-31b"].rope_parameters, max_position_embeddings=64)
torch.manual_seed(0)
big = minigemma.Gemma(style31).eval()
attn = big.layers[5].self_attn  # the global layer
with torch.no_grad():
    attn.k_norm.weight.normal_()  # a trained-looking key-norm weight, not all ones
    x = torch.randn(1, 10, 32)
    raw = attn.k_proj(x).view(1, 10, 1, 16)  # (B, T, K, hd): the only projection
    positions = torch.arange(10)
    cos, sin = cos_sin(big.inv_freq["full_attention"], positions)  # (T, hd)
    k_made = apply_rope(attn.k_norm(raw).transpose(1, 2), cos, sin)  # (B, K, T, hd), as attention makes it
    v = attn.v_norm(raw).transpose(1, 2)  # (B, K, T, hd)
    turning = KVCache(style31, batch=1, max_len=10).layers[5].key_rope  # (cos, sin) of the turning pairs
    k_rebuilt = attn.keys_from_values(v, *turning)
assert torch.equal(k_rebuilt, k_made)
print("turning pairs per head:", turning[0].shape[1] // 2, "of", 16 // 2,
      "| rebuilt keys == the keys k_norm and RoPE made, bit for bit")

# %% [markdown]
# **What is new here, and what is not.** transformers runs these layers the same way (its
# attention passes the raw key projection on as the value), but its cache then stores both keys
# and values: two tensors of the same size. Storing V alone and rebuilding K when attention reads
# it is minigemma's own addition, and the cache uses it by default (`KVCache(..., values_only=True)`).
#
# It has a price: every decode step rebuilds K over the whole context. The script
# `benchmarks/bench_keys_as_values.py` times a decode step of a 31B-shaped tiny model with each
# cache (too slow for this notebook; its stored result is read here):

# %%
import math
bench = open("../benchmarks/results_keys_as_values.md").read().splitlines()
print(bench[0])
for row in bench[4:]:
    context, *_, ratio = [c.strip() for c in row.strip("|").split("|")]
    print(f"context {int(context.replace(',', '')) // 1024}K: a V-only step takes {ratio} the time of a K-and-V step")
weights = 2 * sum(math.prod(s) for s in minigemma.expected_keys(presets["gemma4-31b"]).values())
print(f"the real 31B's text decoder in bf16: {weights / 1e9:.0f} GB, read once per decode step")

# %% [markdown]
# On the tiny model a V-only step took 1.2× as long at 4K and 16K tokens and 1.7× at 64K, where
# its attention is nearly all the work. The real 31B also reads its whole text decoder, 61 GB in
# bf16, at every step, so the rebuild is a small share until the context is very long.
# `values_only=False` keeps K and V, for speed when memory is not the limit.
#
# ## 5. How much memory does the cache need?
# Per layer: `2 (K and V) × kv_heads × positions × head_dim × 2 bytes (bf16)`. Three caches, each
# keeping less than the one before:
# - **every layer, every position**: a cache that ignores the layer plan;
# - **window + sharing**: sliding layers keep their window, KV-shared layers keep nothing. Not
#   new: this is what transformers' cache keeps for Gemma 4 (sections 2 and 3), up to one slot
#   per sliding layer;
# - **+ V only**: keys-as-values layers keep V alone, plus the one small table of RoPE angles.
#   This column is the only one that is minigemma's own.

# %%
def cache_bytes(config, context, every_position, values_only=True):
    total, table = 0, 0
    for i in range(config.num_hidden_layers):
        if not every_position and config.kv_donor(i) is not None:
            continue
        kept = context if every_position or config.is_global(i) else min(config.sliding_window, context)
        v_only = not every_position and values_only and config.k_eq_v(i)
        total += (1 if v_only else 2) * config.kv_heads_of(i) * kept * config.head_dim_of(i) * 2
        if v_only:  # cos and sin of the turning pairs, one table for all such layers
            turning = int(config.rope_parameters["full_attention"].get("partial_rotary_factor", 1)
                          * config.head_dim_of(i) // 2)
            table = 2 * context * 2 * turning * 2
    return total + table

# %%
contexts = [8192, 32768, 131072, 262144]
print(f"{'GiB (bf16)':>15} {'context':>8} {'every':>8} {'window+':>8} {'+ V':>8} {'saved':>6}")
print(f"{'':>15} {'':>8} {'position':>8} {'sharing':>8} {'only':>8} {'':>6}")
rows = {}
for name, c in presets.items():
    for n in contexts:
        if n > c.max_position_embeddings:
            continue
        flat, both, ours = cache_bytes(c, n, True), cache_bytes(c, n, False, False), cache_bytes(c, n, False)
        assert ours == kv_cache_bytes(c, n) and flat == kv_cache_bytes(c, n, naive=True)
        assert both == kv_cache_bytes(c, n, values_only=False)
        rows.setdefault(name, []).append((n, flat, both, ours))
        print(f"{name:>15} {n // 1024:>7}K {flat / 2**30:>8.2f} {both / 2**30:>8.2f} {ours / 2**30:>8.2f} "
              f"{1 - ours / flat:>6.0%}")

# %%
fig, axes = plt.subplots(1, 4, figsize=(14, 3.4), sharey=False)
labels = ["every layer, every position", "window + sharing (as transformers keeps it)", "+ V only (minigemma's own)"]
for ax, (name, r) in zip(axes, rows.items()):
    for j, (label, color) in enumerate(zip(labels, ["#bbbbbb", "#8fb0d8", "#1f4e8c"])):
        ax.bar([x + (j - 1) * 0.27 for x in range(len(r))], [t[j + 1] / 2**30 for t in r], 0.27,
               label=label, color=color)
    ax.set_xticks(range(len(r)), [f"{n // 1024}K" for n, *_ in r])
    ax.set_yscale("log"); ax.set_title(name); ax.set_ylabel("KV cache, GiB (bf16, log scale)")
fig.legend(labels, loc="lower center", ncol=3, frameon=False)
fig.tight_layout(rect=(0, 0.08, 1, 1))
plt.show()

# %% [markdown]
# ("saved" compares the last column with the first.) The scale is logarithmic: each grid line
# is ten times the one below. Most of what is left is
# the global layers: at 256K tokens, 31B's 10 global layers hold 4 KV heads × 512 dims for every
# position. Keeping V alone takes 31B at 256K from 20.8 GiB to 10.9 GiB, and 26B-A4B from 5.2 to
# 2.8 GiB; E2B and E4B have no keys-as-values layers, so nothing changes for them. Sliding layers
# cost a fixed amount, whatever the context.
#
# ## 6. Check against the package: the cache really allocates what we counted
# `KVCache` gives each non-shared layer a buffer: a ring of `window` slots for a sliding layer, one
# slot per position for a global layer; shared layers get none and read their donor's. Decoding
# token by token through it must give the same logits as one full forward pass over all 40
# tokens, and its buffers must add up to the bytes counted above.
# A small random model with every kind of layer (sliding, global, KV-shared), 40 tokens, window 8.

# %%
tiny = minigemma.TextConfig(model_type="gemma4_text", vocab_size=1000, hidden_size=32, intermediate_size=64,
                            num_hidden_layers=7, num_attention_heads=4, num_key_value_heads=1, head_dim=8,
                            global_head_dim=16, sliding_window=8, layer_types=presets["gemma4-e2b"].layer_types[:5]
                            + ("sliding_attention", "full_attention"), num_kv_shared_layers=2,
                            rope_parameters=e2b.rope_parameters, max_position_embeddings=128)
model = minigemma.Gemma(tiny).eval()
cache = KVCache(tiny, batch=1, max_len=40)
ids = torch.randint(0, 1000, (1, 40), generator=torch.Generator().manual_seed(0))
with torch.no_grad():
    full = model(ids)
    stepwise = torch.cat([model(ids[:, :20], cache=cache)] + [model(ids[:, i:i + 1], cache=cache) for i in range(20, 40)], 1)
torch.testing.assert_close(stepwise, full, atol=1e-4, rtol=0)
assert cache.nbytes == cache_bytes(tiny, 40, every_position=False) * 2  # float32 here: 4 bytes, not 2
print("cached decoding == full forward; cache bytes", cache.nbytes, "== our count")

# %% [markdown]
# ## What you built
# - the reason for a KV cache, timed on a real model (as ratios within one run);
# - the per-layer questions (`is_global`, `kv_heads_of`, `head_dim_of`, `kv_donor`) and the layer plans;
# - the ring buffer and KV sharing, which transformers' cache has too, and `v_norm`;
# - keys as values with a V-only cache, this course's own addition, and the memory each model's cache needs.
#
# ## Exercises
# Solutions: `../solutions/04_hybrid_attention_and_kv_cache.py`.
#
# **Exercise 4.1 — one cached decode step, by hand.** Write
# `decode_attention(attn, x_t, t, past_k, past_v, rope)`: the output of one attention layer
# (`minigemma.attention.Attention`, read its `forward`) for the single new token `x_t: (1, 1, D)`
# at position `t`, given the keys and values of positions `0 … t−1`, already normed and rotated:
# `past_k, past_v: (1, K, t, hd)`. `rope(x, position)` rotates `x: (1, heads, 1, hd)` for this
# layer. Project, norm and rotate the new token's query and key, make its value, append, keep only
# what the layer may see (`attn.window`), attend with `attn.scaling`, and project out. The checker
# compares with a full forward pass on a sliding and a global layer of a model you have not seen.

# %%
from checks import check_exercise_4_1, check_exercise_4_2

def decode_attention(attn, x_t, t, past_k, past_v, rope):
    raise NotImplementedError  # your code here: (1, 1, D)

check_exercise_4_1(decode_attention)
# %% [markdown]
# **Exercise 4.2** — Write `kv_bytes_per_token(config)`: how many bytes (bf16) of KV cache one more
# token adds once the context is longer than every window. Only global, non-shared layers grow:
# by K and V, or by V alone on keys-as-values layers, whose models also add one row to the shared
# table (cosine and sine of each turning pair).

# %%
def kv_bytes_per_token(config):
    raise NotImplementedError  # your code here

check_exercise_4_2(kv_bytes_per_token)

# %% [markdown]
# ## References
# - Pope et al., [*Efficiently Scaling Transformer Inference*](https://arxiv.org/abs/2211.05102), 2022: KV-cache memory and multi-query attention at inference.
# - Beltagy et al., [*Longformer*](https://arxiv.org/abs/2004.05150), 2020: sliding-window attention.
# - Gemma Team, [*Gemma 3 Technical Report*](https://arxiv.org/abs/2503.19786), 2025: 5:1 local/global layers to shrink the KV cache.
# - [Gemma 3n overview](https://ai.google.dev/gemma/docs/gemma-3n): KV-cache sharing, which E2B/E4B inherit.
# - transformers' [`cache_utils.py`](https://github.com/huggingface/transformers/blob/main/src/transformers/cache_utils.py)
#   (sliding-window cache layers, `DummyLayer` for KV-shared layers) and
#   [`modeling_gemma4.py`](https://github.com/huggingface/transformers/blob/main/src/transformers/models/gemma4/modeling_gemma4.py)
#   (`v_norm`, `shared_kv_states`), read for facts; version 5.24 is the one installed here.
# - Ainslie et al., [*GQA*](https://arxiv.org/abs/2305.13245), 2023: fewer KV heads, a smaller cache.
