# %% [markdown]
# # 06 · The Gemma 4 text model, assembled
#
# **What you will learn**
# - every change from Gemma 3 to Gemma 4's decoder, in one place;
# - the whole Gemma 4 forward pass written out as plain functions over a state dict, equal to
#   the package and to transformers on small models of both kinds (E-style and 31B-style);
# - the size of the four real models, from the presets;
# - a tiny model run end to end: text in, tokens out, with the cache.
#
# **Prerequisites:** notebooks 02–05.

# %% [markdown]
# | | Gemma 3 | Gemma 4 |
# |---|---|---|
# | norm scale | `1 + w` | `w` |
# | attention scale | `query_pre_attn_scalar^-½` | 1 (QK-norm does it) |
# | values | raw projection | RMS-normed, no weight (`v_norm`) |
# | global layers | same as sliding, RoPE base 1e6 | head dim 512, p-RoPE 25 %, own KV-head count, keys as values (26B/31B) |
# | last layers | — | KV-shared (E2B 20, E4B 18), double-wide MLP on E2B |
# | per token, per layer | — | per-layer embeddings (E2B/E4B) |
# | layer output | — | × `layer_scalar` |
# | logits | — | `30·tanh(logits/30)` |
# | MLP | dense | 26B-A4B: dense + 128 experts (notebook 07) |

# %%
import math
from dataclasses import asdict
import torch
import torch.nn.functional as F
import matplotlib.pyplot as plt
import minigemma
from minigemma import TextConfig

_ = torch.manual_seed(0)

# %% [markdown]
# ## 1. Two small models with every feature
# - **E-style** (like E2B): PLE, 2 KV-shared layers, 4:1 pattern, double-wide MLP;
# - **31B-style**: keys as values on global layers, 1 global KV head, 5:1 pattern.
# Random weights, with every norm and layer scalar moved away from its initial value.

# %%
common = dict(model_type="gemma4_text", vocab_size=512, hidden_size=32, intermediate_size=48, num_attention_heads=4,
              head_dim=8, global_head_dim=16, sliding_window=6, max_position_embeddings=128,
              final_logit_softcapping=30.0, rope_parameters=minigemma.preset("gemma4-e2b").rope_parameters)
S, G = "sliding_attention", "full_attention"
configs = {
    "e-style": TextConfig(**common, num_hidden_layers=7, num_key_value_heads=1, layer_types=(S,) * 4 + (G, S, G),
                          num_kv_shared_layers=2, use_double_wide_mlp=True, hidden_size_per_layer_input=4,
                          vocab_size_per_layer_input=512),
    "31b-style": TextConfig(**common, num_hidden_layers=7, num_key_value_heads=2, num_global_key_value_heads=1,
                            attention_k_eq_v=True, layer_types=(S,) * 5 + (G, G)),
}

def random_model(config):
    model = minigemma.Gemma(config).eval()
    with torch.no_grad():
        for name, t in model.state_dict(keep_vars=True).items():
            if "norm" in name or "layer_scalar" in name:
                t.add_(0.3 * torch.randn(t.shape))
    return model

models = {name: random_model(c) for name, c in configs.items()}
print({name: sum(p.numel() for p in m.parameters()) for name, m in models.items()}, "parameters")

# %% [markdown]
# ## 2. The forward pass as plain functions
# Everything below reads tensors from the state dict `W` by their checkpoint names.

# %%
def rms(x, w=None, eps=1e-6):
    y = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps)
    return y if w is None else y * w  # Gemma 4: scale by w itself

def rope(x, pos, freqs):  # x: (B, heads, T, d); freqs: (d/2,)
    angles = pos.float()[:, None] * freqs[None, :]
    cos, sin = angles.cos().repeat(1, 2), angles.sin().repeat(1, 2)
    x1, x2 = x.chunk(2, dim=-1)
    return x * cos + torch.cat([-x2, x1], -1) * sin

def freqs(c, i):
    d = c.head_dim_of(i)
    if not c.is_global(i):
        return 1.0 / 1e4 ** (torch.arange(0, d, 2).float() / d)
    n = int(0.25 * d / 2)  # p-RoPE: a quarter of the pairs turn
    return torch.cat([1.0 / 1e6 ** (torch.arange(0, 2 * n, 2).float() / d), torch.zeros(d // 2 - n)])

def attention(W, c, i, x, pos, kv_store):
    B, T, _ = x.shape
    H, K, hd, p = c.num_attention_heads, c.kv_heads_of(i), c.head_dim_of(i), f"layers.{i}.self_attn."
    q = rope(rms((x @ W[p + "q_proj.weight"].T).view(B, T, H, hd), W[p + "q_norm.weight"]).transpose(1, 2), pos, freqs(c, i))
    if c.kv_donor(i) is not None:
        k, v = kv_store[c.kv_donor(i)]  # borrowed, already normed and rotated
    else:
        k_raw = (x @ W[p + "k_proj.weight"].T).view(B, T, K, hd)
        v = k_raw if c.k_eq_v(i) else (x @ W[p + "v_proj.weight"].T).view(B, T, K, hd)  # keys as values
        k = rope(rms(k_raw, W[p + "k_norm.weight"]).transpose(1, 2), pos, freqs(c, i))
        v = rms(v).transpose(1, 2)  # the value norm has no weight
        kv_store[i] = (k, v)
    k, v = k.repeat_interleave(H // K, 1), v.repeat_interleave(H // K, 1)
    scores = q @ k.transpose(-1, -2)  # scale 1.0
    allowed = pos[None, :] <= pos[:, None]
    if not c.is_global(i):
        allowed &= pos[:, None] - pos[None, :] < c.sliding_window
    out = scores.masked_fill(~allowed, float("-inf")).softmax(-1) @ v
    return out.transpose(1, 2).reshape(B, T, H * hd) @ W[p + "o_proj.weight"].T

def mlp(W, i, x):
    p = f"layers.{i}.mlp."
    return (F.gelu(x @ W[p + "gate_proj.weight"].T, approximate="tanh") * (x @ W[p + "up_proj.weight"].T)) @ W[p + "down_proj.weight"].T

def gemma4_forward(W, c, ids):
    x = W["embed_tokens.weight"][ids] * math.sqrt(c.hidden_size)
    pos, kv_store, ple = torch.arange(ids.shape[1]), {}, None
    if c.hidden_size_per_layer_input:  # notebook 05
        B, T, L = *ids.shape, c.num_hidden_layers
        token = (W["embed_tokens_per_layer.weight"][ids] * math.sqrt(c.hidden_size_per_layer_input)).view(B, T, L, -1)
        context = rms(((x @ W["per_layer_model_projection.weight"].T) / math.sqrt(c.hidden_size)).view(B, T, L, -1),
                      W["per_layer_projection_norm.weight"])
        ple = (token + context) / math.sqrt(2)
    for i in range(c.num_hidden_layers):
        n = lambda name, h: rms(h, W[f"layers.{i}.{name}.weight"])
        h = x + n("post_attention_layernorm", attention(W, c, i, n("input_layernorm", x), pos, kv_store))
        x = h + n("post_feedforward_layernorm", mlp(W, i, n("pre_feedforward_layernorm", h)))
        if ple is not None:
            g = F.gelu(x @ W[f"layers.{i}.per_layer_input_gate.weight"].T, approximate="tanh") * ple[:, :, i]
            x = x + n("post_per_layer_input_norm", g @ W[f"layers.{i}.per_layer_projection.weight"].T)
        x = x * W[f"layers.{i}.layer_scalar"]
    logits = rms(x, W["norm.weight"]) @ W["embed_tokens.weight"].T
    return 30.0 * torch.tanh(logits / 30.0)

# %% [markdown]
# ## 3. Check: notebook == package == transformers
# 20 tokens, window 6, so both layer types and the KV-shared layers are exercised.

# %%
from transformers import Gemma4ForCausalLM, Gemma4TextConfig  # the reference

ids = torch.randint(0, 512, (1, 20), generator=torch.Generator().manual_seed(1))
for name, model in models.items():
    c, W = configs[name], model.state_dict()
    hf_kwargs = {k: v for k, v in asdict(c).items() if k != "model_type" and v is not None}
    hf = Gemma4ForCausalLM(Gemma4TextConfig(**{**hf_kwargs, "layer_types": list(c.layer_types)})).eval()
    hf.model.load_state_dict(W, strict=True)
    with torch.no_grad():
        ours, package, reference = gemma4_forward(W, c, ids), model(ids), hf(ids).logits
    torch.testing.assert_close(ours, package, atol=1e-4, rtol=0)
    torch.testing.assert_close(package, reference, atol=1e-4, rtol=0)
    print(f"{name}: notebook == package == transformers (within 1e-4)")

# %% [markdown]
# ## 4. The four real models, from the presets
# Counted from the tensors each needs (`minigemma.expected_keys`, checked against transformers'
# layout in `tests/test_gemma4.py`); text decoder only, towers not included.

# %%
def breakdown(config):
    kinds = dict(embedding=0, PLE=0, attention=0, MLP=0, experts=0, other=0)
    for key, shape in minigemma.expected_keys(config).items():
        n = math.prod(shape)
        kind = ("embedding" if key == "embed_tokens.weight" else "PLE" if "per_layer" in key
                else "experts" if ".experts." in key or ".router." in key else "attention" if "self_attn" in key
                else "MLP" if ".mlp." in key else "other")
        kinds[kind] += n
    return kinds

table = {name: breakdown(c) for name, c in minigemma.PRESETS.items()}
print(f"{'':>15}" + "".join(f"{k:>11}" for k in next(iter(table.values()))) + f"{'total':>11}")
for name, kinds in table.items():
    print(f"{name:>15}" + "".join(f"{v / 1e9:>10.2f}B" for v in kinds.values()) + f"{sum(kinds.values()) / 1e9:>10.2f}B")

# %%
fig, ax = plt.subplots(figsize=(9, 2.8))
colours = ["#4c72b0", "#dd8452", "#55a868", "#c44e52", "#8172b3", "#937860"]
for row, (name, kinds) in enumerate(table.items()):
    left = 0
    for (kind, n), colour in zip(kinds.items(), colours):
        ax.barh(row, n / 1e9, left=left, color=colour, label=kind if row == 0 else None)
        left += n / 1e9
ax.set_yticks(range(len(table)), list(table)); ax.set_xlabel("billions of parameters (text decoder)")
ax.legend(ncol=6, fontsize=8, loc="lower right")
plt.show()

# %% [markdown]
# The 26B-A4B total (25.2B) matches its published size; notebook 07 counts how few of those
# parameters one token actually uses.
#
# ## 5. End to end: text in, tokens out
# A tiny random Gemma 4 with the real 262k vocabulary, the tokenizer from notebook 01, generation
# with the KV cache. The weights are random, so the text is noise; what matters is that every
# piece runs together and the cache holds exactly what notebook 04 predicted.

# %%
from minigemma.weights import resolve
tok = minigemma.Tokenizer.from_file(resolve("gemma3-270m"))
tiny = TextConfig(**{**asdict(configs["e-style"]), "vocab_size": tok.vocab_size, "vocab_size_per_layer_input": tok.vocab_size,
                     "layer_types": configs["e-style"].layer_types, "rope_parameters": common["rope_parameters"]})
model = random_model(tiny)
text = minigemma.generate(model, tok, "The capital of France is", max_new_tokens=8)
print(repr(text))
print("KV cache for 14 positions:", minigemma.kv_cache_bytes(tiny, 14, torch.float32), "bytes")

# %% [markdown]
# With a real checkpoint directory (`config.json`, `model.safetensors`, `tokenizer.json`) the same
# two lines run the real model: `model, tok = minigemma.load("path/to/gemma-4-E2B-it")`.
#
# ## Exercises
# Solutions: `../solutions/06_gemma4_text_model.py`.
#
# **Exercise 6.1** — Write `softcap(logits, cap)`. What does it do to a logit of 10? Of 100?

# %%
from checks import check_exercise_6_1, check_exercise_6_2

def softcap(logits, cap):
    raise NotImplementedError  # your code here

check_exercise_6_1(softcap)

# %% [markdown]
# **Exercise 6.2** — Write `donors(config)`: a dict from each KV-shared layer to the layer whose
# keys and values it reads, without calling `config.kv_donor`.

# %%
def donors(config):
    raise NotImplementedError  # your code here

check_exercise_6_2(donors)
