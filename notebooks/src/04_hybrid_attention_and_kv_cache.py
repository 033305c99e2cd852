# %% [markdown]
# # 04 · Hybrid attention and the KV cache
#
# **What you will learn**
# - how Gemma 4 interleaves sliding-window and global layers, and how each model lays them out;
# - the KV cache: why generation keeps keys and values, and the **ring buffer** that lets a
#   sliding layer keep only its window;
# - **KV sharing** (E2B/E4B): the last layers borrow keys and values instead of making their own;
# - how much memory the cache of each real Gemma 4 model needs at 8K–256K tokens, naive vs minigemma.
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
grid = torch.tensor(history, dtype=torch.float)
fig, ax = plt.subplots(figsize=(6, 3))
ax.imshow(grid.T.numpy(), cmap="viridis", aspect="auto")
for t in range(10):
    for s in range(window):
        if grid[t, s] >= 0:
            ax.text(t, s, int(grid[t, s]), ha="center", va="center", color="w", fontsize=8)
ax.set_xlabel("after token"); ax.set_ylabel("slot"); ax.set_title("what each ring slot holds")
plt.show()

# %% [markdown]
# The package's `LayerCache` is this ring, for keys and values of shape `(batch, kv_heads, slots, head_dim)`.

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
# (One PyPI port hard-coded these donors; another Swift port compared layer 15 with the wrong
# donor and got cosine 0.10 instead of 0.9995.)

# %%
e2b = presets["gemma4-e2b"]
donors = {i: e2b.kv_donor(i) for i in range(e2b.first_kv_shared_layer, e2b.num_hidden_layers)}
print("shared layer -> donor:", donors)

# %% [markdown]
# ## 4. Keys as values: the cache can hold V alone
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
# The cache uses this by default (`KVCache(..., keys_from_values=True)`). It has a price: every
# decode step rebuilds K over the whole context. On a 31B-shaped tiny model (one thread,
# `benchmarks/bench_keys_as_values.py`, two runs) a step took 1.1–1.2× as long at 4K–16K tokens and
# 1.5–1.7× at 64K, where the tiny model's attention is nearly all the work. On the real 31B a step
# also reads ~60 GB of weights, so the rebuild is a small share until the context is very long.
# `keys_from_values=False` keeps K and V, for speed when memory is not the limit.
#
# ## 5. How much memory does the cache need?
# Per layer: `2 (K and V) × kv_heads × positions × head_dim × 2 bytes (bf16)`.
# - **naive**: every layer keeps every position;
# - **minigemma**: sliding layers keep their window, KV-shared layers keep nothing, and
#   keys-as-values layers keep V alone (plus the one small table of RoPE angles).

# %%
def cache_bytes(config, context, naive, keys_from_values=True):
    total, table = 0, 0
    for i in range(config.num_hidden_layers):
        if not naive and config.kv_donor(i) is not None:
            continue
        kept = context if naive or config.is_global(i) else min(config.sliding_window, context)
        v_only = not naive and keys_from_values and config.k_eq_v(i)
        total += (1 if v_only else 2) * config.kv_heads_of(i) * kept * config.head_dim_of(i) * 2
        if v_only:  # cos and sin of the turning pairs, one table for all such layers
            turning = int(config.rope_parameters["full_attention"].get("partial_rotary_factor", 1)
                          * config.head_dim_of(i) // 2)
            table = 2 * context * 2 * turning * 2
    return total + table

# %%
contexts = [8192, 32768, 131072, 262144]
print(f"{'model':>15} {'context':>8} {'naive':>8} {'K and V':>8} {'V only':>8} {'saved':>6}")
rows = {}
for name, c in presets.items():
    for n in contexts:
        if n > c.max_position_embeddings:
            continue
        naive, both, ours = cache_bytes(c, n, True), cache_bytes(c, n, False, False), cache_bytes(c, n, False)
        assert ours == kv_cache_bytes(c, n) and naive == kv_cache_bytes(c, n, naive=True)
        assert both == kv_cache_bytes(c, n, keys_from_values=False)
        rows.setdefault(name, []).append((n, naive, both, ours))
        print(f"{name:>15} {n // 1024:>7}K {naive / 2**30:>7.2f}G {both / 2**30:>7.2f}G {ours / 2**30:>7.2f}G "
              f"{1 - ours / naive:>6.0%}")

# %%
fig, axes = plt.subplots(1, 4, figsize=(14, 3.4), sharey=False)
labels = ["naive", "window + sharing (K and V)", "+ keys as values (V only)"]
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
# The scale is logarithmic: each grid line is ten times the one below. Most of what is left is
# the global layers: at 256K tokens, 31B's 10 global layers hold 4 KV heads × 512 dims for every
# position. Keeping V alone takes 31B at 256K from 20.8 GiB to 10.9 GiB, and 26B-A4B from 5.2 to
# 2.8 GiB; E2B and E4B have no keys-as-values layers, so nothing changes for them. Sliding layers
# cost a fixed amount, whatever the context.
#
# ## 6. Check against the package: the cache really allocates what we counted
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
assert cache.nbytes == cache_bytes(tiny, 40, naive=False) * 2  # float32 here: 4 bytes, not 2
print("cached decoding == full forward; cache bytes", cache.nbytes, "== our count")

# %% [markdown]
# ## Exercises
# Solutions: `../solutions/04_hybrid_attention_and_kv_cache.py`.
#
# **Exercise 4.1** — Write `ring_contents(n_tokens, window)`: the positions each slot holds after
# `n_tokens` tokens (`-1` for an empty slot), like the table above.

# %%
from checks import check_exercise_4_1, check_exercise_4_2

def ring_contents(n_tokens, window):
    raise NotImplementedError  # your code here

check_exercise_4_1(ring_contents)

# %% [markdown]
# **Exercise 4.2** — Write `kv_bytes_per_token(config)`: how many bytes (bf16) of KV cache one more
# token adds once the context is longer than every window. Only global, non-shared layers grow:
# by K and V, or by V alone on keys-as-values layers, whose models also add one row to the shared
# table (cosine and sine of each turning pair).

# %%
def kv_bytes_per_token(config):
    raise NotImplementedError  # your code here

check_exercise_4_2(kv_bytes_per_token)
