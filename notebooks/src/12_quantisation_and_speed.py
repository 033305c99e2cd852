# %% [markdown]
# # 12 · Quantisation and speed: decoding at the memory-bandwidth limit
#
# **What you will learn**
# - why generating one token is limited by *memory bandwidth*, not arithmetic (arithmetic
#   intensity), and how to draw that as a **roofline** with points we measured;
# - int8 quantisation per output channel and int4 quantisation per group of 32, built from scratch
#   on one real weight matrix of Gemma 3 270M, with their error histograms;
# - how PyTorch's packed int4 CPU kernel wants its bytes laid out, and how llama.cpp's Q4_K block
#   is laid out (and why it moves into our int4 format without loss);
# - why PyTorch's float32 matrix-vector product used one core of two, and how cutting the matrix
#   into row blocks (float32) or packing it for oneDNN (bf16) brings decoding up to the limit;
# - which layers can take 4 bits (a measured sensitivity table), and the speed / memory /
#   perplexity trade-off of each setting.
#
# **Prerequisites:** notebook 02 (the decoder) and, for the GGUF part, the loader in `minigemma/gguf.py`.
#
# Everything heavy (timing the whole model, perplexities) was measured once by
# `benchmarks/bench.py` and `benchmarks/quality.py`; this notebook reads their stored results and
# recomputes only what is cheap, so that it runs in about a minute.

# %%
import json
from pathlib import Path
import numpy as np
import torch
import torch.nn.functional as F
import matplotlib.pyplot as plt
import minigemma
from minigemma import quant_formats as qf
from minigemma import quantize as mq
from minigemma.quant_layers import Int4Linear
from minigemma.gguf import GGUFFile, q4_k_parts
from minigemma.weights import resolve

ROOT = Path("..").resolve()
gguf = GGUFFile(resolve("gemma3-270m"))
roof = json.loads((ROOT / "benchmarks" / "results_roofline.json").read_text())
quality = json.loads((ROOT / "benchmarks" / "results_quality.json").read_text())

# %% [markdown]
# ## 1. Why decoding is memory-bound
# To produce one token, the model multiplies one activation vector by every weight matrix once.
# A matrix-vector product with an `N × K` matrix does `2·N·K` floating-point operations (a multiply
# and an add per weight) and must read `N·K` weights. In float32 that is **2 flops per 4 bytes**:
# an *arithmetic intensity* of 0.5 flop/byte. A laptop core does tens of Gflop/s but reads memory
# at a few GB/s per core, so the arithmetic units wait for the weights to arrive. The speed limit is
#
# $$\text{tokens/s} \le \frac{\text{bandwidth (bytes/s)}}{\text{bytes read per token}} .$$
#
# Two consequences: (1) fewer bytes per weight means proportionally more tokens per second —
# which is what quantisation buys; (2) in prefill, a whole prompt of `T` tokens shares each weight
# read, so the intensity grows `T`-fold and prefill is compute-bound instead.

# %%
N, K = 262_144, 640  # the tied head of Gemma 3 270M, the largest product of a step
for name, nbytes in [("float32", 4), ("bfloat16", 2), ("int8", 1), ("int4", 0.5)]:
    flops, moved = 2 * N * K, N * K * nbytes
    print(f"{name:>8}: {flops / 1e6:.0f} Mflop, {moved / 1e6:6.1f} MB read -> {flops / moved:.1f} flop/byte")

# %% [markdown]
# ## 2. The roofline, with our measured points
# The roofline plot puts arithmetic intensity on the x-axis and attainable speed on the y-axis.
# A program under the slanted line is limited by bandwidth; we plot *tokens per second* against
# *bytes read per token* instead, which is the same picture for a decoder: the limit is the
# hyperbola `bandwidth / bytes`. Points are the decode speeds that `benchmarks/bench.py` measured
# (best of interleaved rounds on a shared 2-core machine: read them as ratios, not absolutes).

# %%
bw = roof["bandwidth"]
mb = np.linspace(80, 1200, 200)
fig, ax = plt.subplots(figsize=(7, 4))
ax.plot(mb, bw / (mb * 1e6), "k-", label=f"limit: {bw / 1e9:.0f} GB/s streaming read")
for row in roof["rows"]:
    marker = "o" if row["program"] == "minigemma" else "s"
    ax.plot(row["mb_per_step"], row["tokens_per_s"], marker, ms=8, label=f"{row['program']} {row['weights']}")
ax.set(xlabel="MB read per decode step", ylabel="tokens / s", xscale="log", yscale="log",
       title="Decode speed vs bytes per step (Gemma 3 270M)")
ax.legend(fontsize=7, ncol=2)
plt.show()

# %% [markdown]
# What the kernels themselves reach, on the 262,144 × 640 head alone (a streaming `sum` of a
# huge tensor is the ceiling, the matrix-vector kernels fall short of it by different amounts).
# Look at the packed int8/int4 kernels twice: with bf16 activations they stream their weights
# quickly, with float32 activations they are several times slower than the plain float32
# product. That single measurement is why `minigemma.load(..., quantize=...)` runs the model in
# bf16 unless you ask for another dtype.

# %%
for name, gbs in roof["kernels"].items():
    print(f"{name:<36} {gbs / 1e9:5.1f} GB/s  ({100 * gbs / bw:3.0f} % of the streaming read)")

# %% [markdown]
# ## 2b. One core or all of them: float32 and bf16 at the limit
# In that list, plain `F.linear` in float32 reads the head at well under half the streaming
# ceiling — and it reaches the *same* speed with one thread or two. A single activation row sends
# PyTorch to a matrix-vector routine (BLAS `gemv`) that, in this build, runs on one core, and one
# core alone cannot pull more than ~12 GB/s out of memory. Nothing about the maths needs one core:
# each output row is an independent dot product.
#
# So cut the matrix into 16 blocks of rows, a free `view` of shape (16, N/16, K), and multiply every
# block by the same column in one *batched* product, `torch.bmm`, which the library spreads over the
# cores. The sums are the same (in another order, so float32 rounding may differ in the last bit).
# `minigemma.rowblocks.linear` does exactly this whenever up to 64 float32 rows meet a weight
# (`F.linear` is even slower on 2–64 rows than on one), which is why a plain `minigemma.load(...)`
# decodes float32 about 3× faster than transformers (`benchmarks/results_roofline.md`).

# %%
# NBVAL_IGNORE_OUTPUT
import time
from minigemma.pack import PackedLinear
from minigemma.rowblocks import linear

def best_ms(fn, repeat=5):
    fn()  # warm-up
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1e3 * min(times)

gen = torch.Generator().manual_seed(12)
big = torch.randn(65_536, 640, generator=gen)  # a quarter of the head, 168 MB: far larger than the caches
x = torch.randn(1, 640, generator=gen)
blocks = big.view(16, -1, 640)  # (16, N/16, K): a view, nothing copied
column = x.T.expand(16, 640, 1)  # (16, K, 1): the same x for every block
ours = torch.bmm(blocks, column).view(1, -1)  # (1, N)
assert torch.allclose(ours, F.linear(x, big), atol=1e-4) and torch.equal(ours, linear(x, big))
print(f"F.linear {best_ms(lambda: F.linear(x, big)):.1f} ms,  row blocks {best_ms(lambda: linear(x, big)):.1f} ms")

# %% [markdown]
# bf16 needs another trick. There, `F.linear` already uses both cores but converts the weights as it
# reads them, and the batched product is *slower*. oneDNN, the CPU kernel library inside PyTorch,
# can **pack** a weight once into the tiled layout its own kernel reads fastest; the product then
# gives `F.linear`'s numbers, bit for bit on most CPUs (on AVX-512 ones its sums may take another
# order, and a rare element then differs by a bf16 step or two). `minigemma.load(..., pack=True)` does this to every
# linear layer of the decoder at load time. The cost: packed weights are opaque tensors, and the
# tied head needs its own packed copy of the embedding (the token lookup still reads plain rows).

# %%
# NBVAL_IGNORE_OUTPUT
big16, x16 = big.bfloat16(), x.bfloat16()
packed = PackedLinear(big16)  # reordered once, at "load time"
torch.testing.assert_close(packed(x16), F.linear(x16, big16), rtol=2 ** -6, atol=0)  # two bf16 steps at most
print(f"F.linear {best_ms(lambda: F.linear(x16, big16)):.1f} ms,  packed {best_ms(lambda: packed(x16)):.1f} ms")
del big, big16, packed

# %% [markdown]
# The benchmark's kernel table as a picture: every kernel on the same 262,144 × 640 head, against the
# streaming read. Our two float paths read 2–3× faster than `F.linear`; the packed int8/int4 kernels
# read fewer bytes, so reaching a lower GB/s can still mean more tokens per second. (The ceiling itself
# moved between 30 and 54 GB/s across runs on this shared machine; compare bars within one run.)

# %%
names = list(roof["kernels"])
fig, ax = plt.subplots(figsize=(7, 3.2))
ax.barh(names, [roof["kernels"][n] / 1e9 for n in names], color="tab:blue")
ax.axvline(bw / 1e9, color="k", ls="--", label="streaming read (sum)")
ax.set(xlabel="GB/s of weights read", title="Matrix-vector kernels on the head (2 threads)")
ax.tick_params(axis="y", labelsize=7)
ax.invert_yaxis()
ax.legend(fontsize=8)
plt.show()

# %% [markdown]
# ## 3. int8 per output channel, from scratch
# Take one real matrix: the gate projection of layer 0 (2048 × 640). Symmetric int8 keeps one
# float **scale per row** (output channel) so that the row's largest weight maps to ±127:
# `q = round(w / scale)`, `w ≈ scale · q`. Rounding moves each weight by at most half a step.

# %%
w = torch.from_numpy(gguf.tensor("blk.0.ffn_gate.weight"))  # (2048, 640) float32
scale = w.abs().amax(dim=1) / 127  # (2048,): one scale per output row
q8 = torch.round(w / scale[:, None]).clamp(-127, 127).to(torch.int8)
w8 = q8.float() * scale[:, None]
ours_q, ours_scale = qf.quantize_int8(w)
assert torch.equal(q8, ours_q) and torch.allclose(scale, ours_scale)  # the package does the same
print(f"int8: mean |error| {(w8 - w).abs().mean():.2e}, weights' mean |w| {w.abs().mean():.2e}")

# %% [markdown]
# ## 4. int4 per group, from scratch
# Sixteen levels for a whole row would be far too coarse: one large weight would stretch the step
# for all 640. So each row is cut into **groups of 32** weights, and each group gets its own affine
# map `w ≈ scale · q + low` with `q ∈ {0..15}`, `low` = the group's minimum and
# `scale = (max − min) / 15`. The extra cost is two numbers per 32 weights.

# %%
G = 32
g = w.view(2048, 640 // G, G)  # (rows, groups, G)
low, high = g.amin(-1), g.amax(-1)  # (rows, groups)
s4 = (high - low) / 15
q4 = torch.round((g - low[..., None]) / s4[..., None]).clamp(0, 15).to(torch.uint8)
w4 = (q4.float() * s4[..., None] + low[..., None]).view(2048, 640)
assert torch.equal(q4.view(2048, 640), qf.quantize_int4(w, G)[0])
ratio = (w4 - w).abs().mean() / (w8 - w).abs().mean()
print(f"int4 (group {G}): mean |error| {(w4 - w).abs().mean():.2e}, {ratio:.1f}× int8's")

# %% [markdown]
# The two error distributions, on a log scale: int4's errors are about ten times wider than
# int8's (9.7×, printed above). It has 16 levels instead of 255, which alone would make its step
# about 16 times coarser, but each group of 32 spans a narrower range than a whole row. Both
# errors are bounded by half a step.

# %%
fig, ax = plt.subplots(figsize=(7, 3.5))
for name, approx in [("int8 per row", w8), ("int4 per group of 32", w4)]:
    ax.hist((approx - w).flatten().numpy(), bins=200, histtype="step", label=name, density=True)
ax.set(yscale="log", xlabel="quantised − original weight", ylabel="density",
       title="Quantisation error, layer 0 gate projection")
ax.legend()
plt.show()

# %% [markdown]
# ## 5. Group size: error against bytes
# Smaller groups fit the range more tightly (less error) but store more scales (more bytes per
# weight). With bf16 scales, the cost is `0.5 + 4 / G` bytes per weight. The slider recomputes
# the error for one group size; the static figure below it shows all of them.

# %%
def int4_error(G):
    q, s, lo = qf.quantize_int4(w, G)
    return (qf.dequantize_int4(q, s, lo) - w).pow(2).mean().sqrt().item()

sizes = [16, 32, 64, 128, 320, 640]  # divisors of 640 (the kernel takes 32, 64, 128, 256)
errors = [int4_error(G) for G in sizes]
fig, ax = plt.subplots(figsize=(6, 3.5))
ax.plot([0.5 + 4 / G for G in sizes], errors, "o-")
for G, x, e in zip(sizes, [0.5 + 4 / G for G in sizes], errors):
    ax.annotate(f"G={G}", (x, e), textcoords="offset points", xytext=(5, 5))
ax.set(xlabel="bytes per weight (bf16 scale and low)", ylabel="RMS error", title="int4: group size trade-off")
plt.show()

# %%
# NBVAL_IGNORE_OUTPUT
import ipywidgets as widgets
widgets.interact(lambda G: print(f"group {G}: RMS error {int4_error(G):.2e}, {0.5 + 4 / G:.3f} bytes/weight"),
                 G=widgets.SelectionSlider(options=sizes, value=32));

# %% [markdown]
# ## 6. Feeding the packed kernel
# PyTorch's CPU kernel `aten._weight_int4pack_mm_for_cpu` multiplies by int4 codes without ever
# building the float matrix. It wants two codes per byte in a tiled order: rows in tiles of 64;
# for each column of a tile, byte `j` holds row `j` in its low nibble and row `32 + j` in its high
# nibble. It computes `(q − 8) · scale + zero` per group, so we hand it `zero = low + 8 · scale`.
# `minigemma.quant_formats.pack_int4` builds that layout in three lines; here we check it against the
# converter PyTorch ships and the product against a plain dequantise-then-matmul.

# %%
codes = q4.view(2048, 640)
assert torch.equal(qf.pack_int4(codes), torch.ops.aten._convert_weight_to_int4pack_for_cpu(codes.int(), 2))
layer = Int4Linear(codes, s4, low, torch.float32)
x = torch.randn(1, 640, generator=torch.Generator().manual_seed(0))
err = (layer(x) - F.linear(x, w4)).abs().max().item()
assert err < 1e-5  # float rounding only: the outputs themselves are ~0.1-1
print("packed kernel == dequantise-then-matmul, up to rounding (max difference below 1e-5)")

# %% [markdown]
# ## 7. llama.cpp's Q4_K block, taken apart
# The GGUF file of our model stores `attn_output` in **Q4_K**: super-blocks of 256 weights, 144
# bytes each: `d` and `dmin` (float16), 12 bytes packing eight 6-bit scales and eight 6-bit mins,
# then 128 bytes of 4-bit codes. Sub-block `i` (32 weights) decodes as
# `w = d·scale_i · q − dmin·min_i` — an affine map of 4-bit integers per 32 weights, exactly our
# int4 format with `scale = d·scale_i`, `low = −dmin·min_i`. So those tensors load into int4
# code for code. (Q5_0, Q6_K, Q8_0 have 5, 6, 8 bits: they must be quantised again.)

# %%
info = gguf.tensors["blk.0.attn_output.weight"]
raw = np.frombuffer(gguf._buf, dtype=np.uint8, count=info.nbytes, offset=info.offset).reshape(-1, 144)
block = raw[0]
d, dmin = block[0:2].view(np.float16)[0], block[2:4].view(np.float16)[0]
print(f"{len(raw):,} super-blocks; the first: d = {d:.3e}, dmin = {dmin:.3e}, "
      f"scale bytes {block[4:16].tolist()}")
codes_k, scale_k, low_k = q4_k_parts(raw[:1])
print("sub-block scales:", np.round(scale_k[0], 5), "\nsub-block lows:  ", np.round(low_k[0], 5))

# %%
print("types in the file:", sorted({(n.split(".")[-2], i.type_name) for n, i in gguf.tensors.items()
                                    if n.startswith("blk.0.")}))

# %% [markdown]
# ## 8. Which layers can take 4 bits?
# Quantisation error is not equally harmful everywhere. `benchmarks/quality.py` put **one layer
# type at a time** into int4 (everything else float32) and measured perplexity on our evaluation
# text in `data/`. The most sensitive types are the ones `quantize="int4"` keeps at 8 bits
# (`minigemma.quantize.INT4_KEEPS_INT8`), like llama.cpp's Q4_K_M recipe keeps some at 6 bits.

# %%
f32 = quality["configs"]["float32"]["ppl"]
sens = sorted(quality["sensitivity"].items(), key=lambda kv: kv[1])
fig, ax = plt.subplots(figsize=(6, 3.5))
ax.barh([k for k, _ in sens], [100 * (p / f32 - 1) for _, p in sens])
ax.set(xlabel="perplexity increase vs float32 (%)", title="One layer type at int4, the rest float32")
plt.show()
print("int4 keeps at 8 bits:", mq.INT4_KEEPS_INT8)

# %% [markdown]
# ## 9. Speed, memory and quality together
# Each setting's weight memory, perplexity and greedy agreement (from `benchmarks/quality.py`) beside
# its decode speed (from `benchmarks/bench.py`). The perplexities of int8, int4 and int4-all were
# measured with float32 activations ("int4 bf16" shows what bf16 activations add); their speeds
# with bf16 activations, as `load` runs them.

# %%
speed = {r["weights"]: r["tokens_per_s"] for r in roof["rows"] if r["program"] == "minigemma"}
print(f"{'weights':>10} {'MB':>6} {'perplexity':>10} {'vs f32':>7} {'greedy agree':>12} {'tokens/s':>8}")
for name, row in quality["configs"].items():
    print(f"{name:>10} {row['weight_bytes'] / 1e6:6.0f} {row['ppl']:10.2f} {100 * (row['ppl'] / f32 - 1):+6.1f}% "
          f"{100 * row['agreement']:11.0f}% {speed.get(name, float('nan')):8.1f}")

# %%
fig, ax = plt.subplots(figsize=(6, 3.5))
for name, row in quality["configs"].items():
    ax.scatter(row["weight_bytes"] / 1e6, row["ppl"], s=60)
    ax.annotate(name, (row["weight_bytes"] / 1e6, row["ppl"]), textcoords="offset points", xytext=(5, 3))
ax.set(xlabel="weight memory (MB)", ylabel="perplexity (lower is better)", title="Memory vs quality")
plt.show()

# %% [markdown]
# ## Exercises
# Solutions: `../solutions/12_quantisation_and_speed.py`.
#
# **Exercise 12.1** — Write `int8_per_row(w)`: symmetric int8 per output channel; return
# `(q, scale)` with `q` int8 in −127..127 and `w ≈ scale[:, None] · q`.

# %%
from checks import check_exercise_12_1, check_exercise_12_2

def int8_per_row(w):
    raise NotImplementedError  # your code here

check_exercise_12_1(int8_per_row)

# %% [markdown]
# **Exercise 12.2** — Write `decode_step_limit(weight_bytes, bandwidth)`: the most tokens per
# second a decoder can generate if each step reads `weight_bytes` and memory delivers
# `bandwidth` bytes per second.

# %%
def decode_step_limit(weight_bytes, bandwidth):
    raise NotImplementedError  # your code here

check_exercise_12_2(decode_step_limit)

# %% [markdown]
# ## References
# - S. Williams, A. Waterman, D. Patterson, [Roofline: an insightful visual performance model for
#   multicore architectures](https://doi.org/10.1145/1498765.1498785), CACM 2009.
# - T. Dettmers et al., [LLM.int8(): 8-bit matrix multiplication for transformers at
#   scale](https://arxiv.org/abs/2208.07339), 2022.
# - E. Frantar et al., [GPTQ: accurate post-training quantization for generative pre-trained
#   transformers](https://arxiv.org/abs/2210.17323), 2022.
# - llama.cpp, [k-quants (Q4_K, Q6_K, ...)](https://github.com/ggerganov/llama.cpp/pull/1684).
# - PyTorch, [gpt-fast](https://github.com/pytorch-labs/gpt-fast): int8/int4 weight-only decoding in plain PyTorch.
# - oneDNN, [memory format propagation and weight
#   packing](https://oneapi-src.github.io/oneDNN/page_memory_format_propagation_cpp.html): why a
#   kernel wants its weights in its own blocked layout, reordered once.
# - Netlib, [BLAS](https://www.netlib.org/blas/): `sgemv` is the matrix-vector routine a single
#   activation row is handed to, `sgemm` the matrix-matrix one.
