"""Checkers for the notebooks' exercises. Each compares your function with minigemma's own
answer on inputs you have not seen, and says what is wrong. Solutions: ../solutions/."""

import torch

import minigemma
from minigemma.attention import attention_mask
from minigemma.norm import RMSNorm


def _attempt(n, fn, *args):
    """Call the learner's function; None means 'not attempted yet' (the stub raises NotImplementedError)."""
    try:
        return fn(*args)
    except NotImplementedError:
        print(f"Exercise {n}: not attempted yet. Fill in the function above and run this cell again.")
        return None


def _ok(n):
    print(f"Exercise {n}: correct!")


# --- 00_tour ---------------------------------------------------------------------------------
def check_exercise_0_1(fn, model, tokenizer):
    """fn(model, ids, n) -> n greedy ids, computed WITHOUT a cache (re-run the whole sequence)."""
    ids = tokenizer.encode("Water boils at", add_bos=True)
    got = _attempt("0.1", fn, model, ids, 5)
    if got is None:
        return
    want = list(minigemma.generate_ids(model, ids, max_new_tokens=5))
    assert list(got) == want, f"expected ids {want} ({tokenizer.decode(want)!r}), got {list(got)}"
    _ok("0.1")


def check_exercise_0_2(fn, model, tokenizer):
    """fn(model, tokenizer, prompt, word) -> probability that `word` is the next token."""
    got = _attempt("0.2", fn, model, tokenizer, "The sun rises in the", " east")
    if got is None:
        return
    ids = torch.tensor([tokenizer.encode("The sun rises in the", add_bos=True)])
    with torch.no_grad():
        p = model(ids)[0, -1].softmax(-1)[tokenizer.encode(" east")[0]].item()
    assert abs(float(got) - p) < 1e-4, f"expected about {p:.4f}, got {float(got):.4f} (did you softmax the last position?)"
    _ok("0.2")


# --- 01_tokenizer ----------------------------------------------------------------------------
def check_exercise_1_1(fn, tokenizer):
    """fn(tokenizer, ids) -> text, decoding byte pieces <0xNN> as UTF-8 (no skipping)."""
    text = "naïve 日本 🎉 𓀀 ok"
    ids = tokenizer.encode(text)
    got = _attempt("1.1", fn, tokenizer, ids)
    if got is None:
        return
    assert got == text, f"expected {text!r}, got {got!r}"
    _ok("1.1")


def check_exercise_1_2(fn, tokenizer):
    """fn(tokenizer, text) -> number of tokens per character (a float), without <bos>."""
    for text in ["hello world", "東京は日本の首都です", "🎉🎉🎉"]:
        got = _attempt("1.2", fn, tokenizer, text)
        if got is None:
            return
        want = len(tokenizer.encode(text)) / len(text)
        assert abs(float(got) - want) < 1e-9, f"{text!r}: expected {want:.3f}, got {got}"
    _ok("1.2")


def check_exercise_1_3(fn):
    """fn(symbols, pair) -> symbols with every left-to-right, non-overlapping occurrence of pair merged."""
    cases = [(["a", "a", "a", "b"], ("a", "a"), ["aa", "a", "b"]),
             (["l", "o", "w", "l", "o"], ("l", "o"), ["lo", "w", "lo"]),
             (["x"], ("x", "y"), ["x"])]
    for symbols, pair, want in cases:
        got = _attempt("1.3", fn, list(symbols), pair)
        if got is None:
            return
        assert list(got) == want, f"merge {pair} in {symbols}: expected {want}, got {got}"
    _ok("1.3")


# --- 02_gemma_decoder ------------------------------------------------------------------------
def check_exercise_2_1(fn):
    """fn(T, window) -> (T, T) bool sliding-window causal mask."""
    for T, window in [(6, 3), (10, 1), (5, 8)]:
        got = _attempt("2.1", fn, T, window)
        if got is None:
            return
        pos = torch.arange(T)
        want = attention_mask(pos, pos, window)
        assert got.shape == want.shape and torch.equal(got.bool(), want), \
            f"T={T}, window={window}: expected\n{want.int()}\ngot\n{got.int()}"
    _ok("2.1")


def check_exercise_2_2(fn):
    """fn(x, weight, eps) -> Gemma 3 RMSNorm of x (scale 1 + weight), computed in float32."""
    gen = torch.Generator().manual_seed(0)
    x, w = torch.randn(3, 7, 16, generator=gen), torch.randn(16, generator=gen)
    got = _attempt("2.2", fn, x, w, 1e-6)
    if got is None:
        return
    norm = RMSNorm(16, 1e-6, offset=1.0)
    with torch.no_grad():
        norm.weight.copy_(w)
        want = norm(x)
    torch.testing.assert_close(got, want, msg=lambda m: f"RMSNorm differs (is the scale 1 + weight?): {m}")
    _ok("2.2")


def check_exercise_2_3(fn, model):
    """fn(model) -> dict with the parameter counts of 'embedding', 'attention', 'mlp', 'norms'."""
    got = _attempt("2.3", fn, model)
    if got is None:
        return
    want = {"embedding": 0, "attention": 0, "mlp": 0, "norms": 0}
    for name, p in model.named_parameters():
        kind = ("embedding" if "embed" in name else "norms" if "norm" in name
                else "attention" if "self_attn" in name else "mlp")
        want[kind] += p.numel()
    assert dict(got) == want, f"expected {want}, got {dict(got)}"
    _ok("2.3")


# --- 03_rope_and_p_rope ----------------------------------------------------------------------
def check_exercise_3_1(fn):
    """fn(d, theta, proportion) -> (d/2,) p-RoPE frequencies."""
    from minigemma.rope import inv_frequencies

    for d, theta, p in [(512, 1e6, 0.25), (64, 1e4, 0.5), (32, 100.0, 1.0)]:
        got = _attempt("3.1", fn, d, theta, p)
        if got is None:
            return
        want = inv_frequencies(d, {"rope_type": "proportional", "rope_theta": theta, "partial_rotary_factor": p})
        assert got.shape == want.shape, f"d={d}: expected shape {tuple(want.shape)}, got {tuple(got.shape)}"
        torch.testing.assert_close(got.float(), want, msg=lambda m: f"d={d}, p={p}: {m} (is the exponent over d?)")
    _ok("3.1")


def check_exercise_3_2(fn):
    """fn(config) -> number of turning pairs on global layers."""
    for name, config in minigemma.PRESETS.items():
        got = _attempt("3.2", fn, config)
        if got is None:
            return
        rope = config.rope_parameters["full_attention"]
        want = int(rope["partial_rotary_factor"] * config.global_head_dim // 2)
        assert int(got) == want, f"{name}: expected {want}, got {got}"
    _ok("3.2")


# --- 04_hybrid_attention_and_kv_cache --------------------------------------------------------
def check_exercise_4_1(fn):
    """fn(n_tokens, window) -> list of the position in each slot (-1 if empty)."""
    from minigemma.cache import LayerCache

    for n, w in [(10, 4), (3, 5), (512, 512), (1000, 7)]:
        got = _attempt("4.1", fn, n, w)
        if got is None:
            return
        ring = LayerCache(1, 1, w, 1, torch.float32)
        if n:
            ring.update(torch.zeros(1, 1, n, 1), torch.zeros(1, 1, n, 1), torch.arange(n))
        assert list(got) == ring.pos.tolist(), f"n={n}, window={w}: expected {ring.pos.tolist()}, got {list(got)}"
    _ok("4.1")


def check_exercise_4_2(fn):
    """fn(config) -> bytes of bf16 KV cache added per token at long context."""
    from minigemma.cache import kv_cache_bytes

    for name, config in minigemma.PRESETS.items():
        got = _attempt("4.2", fn, config)
        if got is None:
            return
        want = kv_cache_bytes(config, 100_001) - kv_cache_bytes(config, 100_000)
        assert int(got) == want, f"{name}: expected {want} bytes per token, got {got}"
    _ok("4.2")


# --- 05_per_layer_embeddings -----------------------------------------------------------------
def check_exercise_5_1(fn):
    """fn(config) -> parameters in the PLE table (0 without PLE)."""
    for name, config in minigemma.PRESETS.items():
        got = _attempt("5.1", fn, config)
        if got is None:
            return
        want = dict(minigemma.expected_keys(config)).get("embed_tokens_per_layer.weight", (0, 0))
        want = want[0] * want[1]
        assert int(got) == want, f"{name}: expected {want:,}, got {got}"
    _ok("5.1")


def check_exercise_5_2(fn):
    """fn(y, p_l, gate_w, proj_w, norm_w, eps) -> y + norm(proj(gelu(gate(y)) * p_l))."""
    from torch import nn

    from minigemma.ple import per_layer_branch

    gen = torch.Generator().manual_seed(5)
    y, p = torch.randn(2, 3, 16, generator=gen), torch.randn(2, 3, 4, generator=gen)
    gate, proj = nn.Linear(16, 4, bias=False), nn.Linear(4, 16, bias=False)
    norm = RMSNorm(16, 1e-6, offset=0.0)
    with torch.no_grad():
        for m in (gate, proj, norm):
            m.weight.copy_(torch.randn(m.weight.shape, generator=gen))
        want = per_layer_branch(y, p, gate, proj, norm)
    got = _attempt("5.2", fn, y, p, gate.weight.detach(), proj.weight.detach(), norm.weight.detach(), 1e-6)
    if got is None:
        return
    torch.testing.assert_close(got, want, msg=lambda m: f"PLE branch differs (tanh GELU? norm scale w?): {m}")
    _ok("5.2")


# --- 06_gemma4_text_model --------------------------------------------------------------------
def check_exercise_6_1(fn):
    """fn(logits, cap) -> cap * tanh(logits / cap)."""
    x = torch.linspace(-200, 200, 41)
    got = _attempt("6.1", fn, x, 30.0)
    if got is None:
        return
    torch.testing.assert_close(got, 30.0 * torch.tanh(x / 30.0), msg=lambda m: f"softcap differs: {m}")
    _ok("6.1")


def check_exercise_6_2(fn):
    """fn(config) -> {shared layer: donor layer}."""
    for name, config in minigemma.PRESETS.items():
        got = _attempt("6.2", fn, config)
        if got is None:
            return
        want = {i: config.kv_donor(i) for i in range(config.first_kv_shared_layer, config.num_hidden_layers)}
        assert dict(got) == want, f"{name}: expected {want}, got {dict(got)}"
    _ok("6.2")


# --- 07_mixture_of_experts -------------------------------------------------------------------
def check_exercise_7_1(fn):
    """fn(probs, k, per_expert_scale) -> (weights, index) like the router's last steps."""
    gen = torch.Generator().manual_seed(7)
    probs = torch.rand(10, 16, generator=gen).softmax(-1)
    scale = torch.rand(16, generator=gen) + 0.5
    got = _attempt("7.1", fn, probs, 4, scale)
    if got is None:
        return
    top, index = probs.topk(4, dim=-1)
    want = top / top.sum(-1, keepdim=True) * scale[index]
    assert torch.equal(got[1], index), "the chosen experts differ (top-k of the probabilities, largest first)"
    torch.testing.assert_close(got[0], want, msg=lambda m: f"weights differ (renormalise, then scale): {m}")
    _ok("7.1")


def check_exercise_7_2(fn):
    """fn(index, num_experts) -> list of counts."""
    index = torch.randint(0, 16, (30, 4), generator=torch.Generator().manual_seed(8))
    got = _attempt("7.2", fn, index, 16)
    if got is None:
        return
    want = torch.bincount(index.reshape(-1), minlength=16).tolist()
    assert [int(v) for v in got] == want, f"expected {want}, got {list(got)}"
    _ok("7.2")


# --- 12_quantisation_and_speed ---------------------------------------------------------------
def check_exercise_12_1(fn):
    """fn(w) -> (q int8, scale) per output row, like minigemma.quantize.quantize_int8."""
    from minigemma.quantize import quantize_int8

    w = torch.randn(40, 96, generator=torch.Generator().manual_seed(12)) * torch.rand(40, 1) * 5
    got = _attempt("12.1", fn, w)
    if got is None:
        return
    q, scale = got
    want_q, want_scale = quantize_int8(w)
    assert q.dtype == torch.int8, f"the codes should be int8, got {q.dtype}"
    torch.testing.assert_close(scale.float(), want_scale, msg=lambda m: f"scales differ (max |w| of the row / 127): {m}")
    assert (q.int() - want_q.int()).abs().max() <= 1 and (q != want_q).float().mean() < 0.01, \
        "codes differ: q = round(w / scale), clamped to -127..127"
    _ok("12.1")


def check_exercise_12_2(fn):
    """fn(weight_bytes, bandwidth) -> tokens/s limit."""
    got = _attempt("12.2", fn, 536e6, 20e9)
    if got is None:
        return
    assert abs(float(got) - 20e9 / 536e6) < 1e-6, f"expected {20e9 / 536e6:.2f} tokens/s, got {got}"
    _ok("12.2")
