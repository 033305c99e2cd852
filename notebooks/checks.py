"""Checkers for the notebooks' exercises. Each compares your function with minigemma's own
answer on inputs you have not seen, and says what is wrong. Solutions: ../solutions/."""

import math

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
    """fn(text, specials) -> [(chunk, id or None), ...]: special pieces cut out, leftmost and longest first."""
    texts = ["<start_of_turn>user\nHi there<end_of_turn>\n<start_of_turn>model\n", "\n\n\n\n\nend",
             "a" + " " * 45 + "b", "<start_of_tur<start_of_image>", "<<bos>>", "", "plain words only",
             "<table><tr><td>1</td></tr></table>", "\t\tindent\n\t\t\tmore", "<end_of_turn><end_of_turn>x"]
    for text in texts:
        got = _attempt("1.2", fn, text, dict(tokenizer.special))
        if got is None:
            return
        got = [(chunk, None if i is None else int(i)) for chunk, i in got]
        assert "".join(chunk for chunk, _ in got) == text, f"{text!r}: your chunks {got} do not join back to the text"
        want = list(tokenizer._split_special(text))
        assert got == want, (f"{text!r}: expected {want}, got {got} (at each position take the longest special "
                             "piece that starts there; a stretch of ordinary text is one chunk)")
    _ok("1.2")


def _apply_merges_reference(word, merges):
    rank = {pair: r for r, pair in enumerate(merges)}
    symbols = list(word)
    while True:
        ranked = [(rank[p], i) for i, p in enumerate(zip(symbols, symbols[1:])) if p in rank]
        if not ranked:
            return symbols
        _, i = min(ranked)  # the earliest learned merge; leftmost on ties
        symbols[i:i + 2] = [symbols[i] + symbols[i + 1]]


def check_exercise_1_3(fn):
    """fn(word, merges) -> pieces, applying learned merges in the order they were learned."""
    merges = [("a", "b"), ("b", "c"), ("ab", "c"), ("c", "c"), ("▁", "ab"), ("▁ab", "c"), ("l", "o"), ("lo", "w")]
    for word in ["abc", "bcc", "▁abcc", "▁bcab", "xyz", "", "lowlow", "cccc", "▁abc▁abc"]:
        got = _attempt("1.3", fn, word, list(merges))
        if got is None:
            return
        want = _apply_merges_reference(word, merges)
        assert list(got) == want, f"{word!r}: expected {want}, got {list(got)} (earliest learned merge first)"
    _ok("1.3")


# --- 02_gemma_decoder ------------------------------------------------------------------------


def check_exercise_2_1(fn):
    """fn(T, window, n_layers) -> for each position, the earliest position that can reach it."""
    for T, window, n in [(12, 3, 1), (12, 3, 2), (20, 4, 3), (6, 1, 5), (30, 512, 2)]:
        got = _attempt("2.1", fn, T, window, n)
        if got is None:
            return
        pos = torch.arange(T)
        step = attention_mask(pos, pos, window).int()  # (T, T): who reads whom in one layer
        reach = torch.linalg.matrix_power(step, n) > 0  # paths of n layers
        want = reach.int().argmax(-1).tolist()  # first reachable key of each row
        assert [int(v) for v in got] == want, (
            f"T={T}, window={window}, n_layers={n}: expected {want}, got {list(got)} "
            "(each layer reaches window - 1 further back)")
    _ok("2.1")


def check_exercise_2_2(fn):
    """fn(q, k, distance, theta) -> RoPE score of q at m and k at m - distance, for any m."""
    from minigemma.rope import apply_rope, cos_sin, inv_frequencies

    gen = torch.Generator().manual_seed(2)
    for d, theta, distance in [(8, 1e4, 3), (64, 1e4, 100), (256, 1e6, 5000), (16, 100.0, 0)]:
        q, k = torch.randn(d, generator=gen), torch.randn(d, generator=gen)
        got = _attempt("2.2", fn, q.clone(), k.clone(), distance, theta)
        if got is None:
            return
        m = 7000
        cos, sin = cos_sin(inv_frequencies(d, {"rope_theta": theta}), torch.tensor([m, m - distance]))
        rq = apply_rope(q.view(1, 1, 1, d), cos[:1], sin[:1])
        rk = apply_rope(k.view(1, 1, 1, d), cos[1:], sin[1:])
        want = (rq * rk).sum().item()
        assert abs(float(got) - want) < 1e-3 * max(1.0, abs(want)), (
            f"d={d}, theta={theta}, distance={distance}: expected {want:.4f}, got {float(got):.4f} "
            "(rotate one vector by the distance; pairs are (i, i + d/2))")
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
    """fn(config, i) -> tokens per full turn of layer i's slowest turning RoPE pair."""
    from minigemma.rope import inv_frequencies

    for name, config in minigemma.PRESETS.items():
        for i in sorted({0, config.layer_types.index("full_attention"), config.num_hidden_layers - 1}):
            got = _attempt("3.1", fn, config, i)
            if got is None:
                return
            f = inv_frequencies(config.head_dim_of(i), config.rope_parameters[config.layer_types[i]])
            want = float(2 * math.pi / f[f > 0].min())
            assert abs(float(got) - want) < 1e-3 * want, (
                f"{name}, layer {i} ({config.layer_types[i]}): expected {want:,.1f} tokens, got {float(got):,.1f} "
                "(this layer's head dim and RoPE settings; pairs with frequency 0 never turn)")
    _ok("3.1")


def check_exercise_3_2(fn, interleaved_rope):
    """fn(w, n_heads, head_dim) -> w with its output rows reordered from the interleaved RoPE layout
    (pairs (2i, 2i + 1)) to Gemma's rotate-half layout (pairs (i, i + d/2)); same scores after RoPE."""
    from minigemma.rope import apply_rope, cos_sin, inv_frequencies

    gen = torch.Generator().manual_seed(3)
    cases = [(1, 8, {"rope_theta": 1e4}), (3, 16, {"rope_theta": 1e4}), (2, 32, {"rope_type": "proportional",
             "partial_rotary_factor": 0.25, "rope_theta": 1e6}), (4, 64, {"rope_theta": 100.0})]
    for H, hd, rope in cases:
        width, T = 12, 6
        x = torch.randn(1, T, width, generator=gen)
        wq, wk = torch.randn(H * hd, width, generator=gen), torch.randn(H * hd, width, generator=gen)
        f, pos = inv_frequencies(hd, rope), torch.arange(T) * 7
        heads = lambda w: (x @ w.T).view(1, T, H, hd).transpose(1, 2)  # (1, H, T, hd)
        want = interleaved_rope(heads(wq), f, pos) @ interleaved_rope(heads(wk), f, pos).transpose(-1, -2)
        new_q = _attempt("3.2", fn, wq.clone(), H, hd)
        if new_q is None:
            return
        new_k = fn(wk.clone(), H, hd)
        assert tuple(new_q.shape) == tuple(wq.shape), f"expected a weight of shape {tuple(wq.shape)}, got {tuple(new_q.shape)}"
        cos, sin = cos_sin(f, pos)
        got = apply_rope(heads(new_q), cos, sin) @ apply_rope(heads(new_k), cos, sin).transpose(-1, -2)
        err = (got - want).abs().max().item()
        assert err < 1e-3 * want.abs().max().item(), (
            f"n_heads={H}, head_dim={hd}: scores differ by up to {err:.3g} (apply_rope turns lane j with lane j + d/2; "
            "each head is reordered on its own)")
    _ok("3.2")


# --- 04_hybrid_attention_and_kv_cache --------------------------------------------------------


def check_exercise_4_1(fn):
    """fn(attn, x_t, t, past_k, past_v, rope) -> (1, 1, D): one cached attention step."""
    from minigemma.rope import apply_rope, cos_sin, inv_frequencies

    gen = torch.Generator().manual_seed(4)
    cfg = minigemma.TextConfig(model_type="gemma4_text", vocab_size=50, hidden_size=16, intermediate_size=16,
                               num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, head_dim=8,
                               global_head_dim=16, sliding_window=4, max_position_embeddings=32,
                               layer_types=("sliding_attention", "full_attention"),
                               rope_parameters=minigemma.preset("gemma4-e2b").rope_parameters)
    model = minigemma.Gemma(cfg).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.5 + ("norm" in name))
    x = torch.randn(1, 9, 16, generator=gen)
    for i, layer in enumerate(model.layers):
        attn, t = layer.self_attn, 8
        freqs = inv_frequencies(cfg.head_dim_of(i), cfg.rope_parameters[cfg.layer_types[i]])
        cos, sin = cos_sin(freqs, torch.arange(9))
        with torch.no_grad():
            want = attn(x, cos, sin, torch.arange(9))[0][:, t:]  # (1, 1, D)
            _, (k, v, _) = attn(x[:, :t], cos[:t], sin[:t], torch.arange(t))
        rope = lambda y, pos, f=freqs: apply_rope(y, *cos_sin(f, torch.tensor([pos])))
        with torch.no_grad():
            got = _attempt("4.1", fn, attn, x[:, t:].clone(), t, k.clone(), v.clone(), rope)
        if got is None:
            return
        kind = cfg.layer_types[i]
        torch.testing.assert_close(got, want, msg=lambda m: f"layer {i} ({kind}): {m} (the value norm? the window? "
                                   "the scale? each KV head serves heads // kv_heads query heads)")
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
    """fn(model, ids, y, i) -> y + layer i's PLE branch, with the per-layer inputs computed from ids."""
    from minigemma.ple import per_layer_branch, per_layer_inputs

    gen = torch.Generator().manual_seed(5)
    cfg = minigemma.TextConfig(model_type="gemma4_text", vocab_size=300, hidden_size=24, intermediate_size=32,
                               num_hidden_layers=4, num_attention_heads=2, num_key_value_heads=1, head_dim=8,
                               global_head_dim=8, sliding_window=4, hidden_size_per_layer_input=6,
                               vocab_size_per_layer_input=300, max_position_embeddings=32,
                               layer_types=("sliding_attention",) * 3 + ("full_attention",))
    model = minigemma.Gemma(cfg).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * (1.0 if "norm" in name else 0.2) + ("norm" in name))
    ids, y = torch.tensor([[3, 250, 3, 17]]), torch.randn(1, 4, 24, generator=gen)
    for i in (1, 3):
        got = _attempt("5.1", fn, model, ids, y.clone(), i)
        if got is None:
            return
        with torch.no_grad():
            p = per_layer_inputs(ids, model.embed(ids), model.embed_tokens_per_layer, model.per_layer_model_projection,
                                 model.per_layer_projection_norm, cfg.num_hidden_layers, cfg.hidden_size_per_layer_input)
            layer = model.layers[i]
            want = per_layer_branch(y, p[:, :, i], layer.per_layer_input_gate, layer.per_layer_projection,
                                    layer.post_per_layer_input_norm)
        torch.testing.assert_close(got, want, msg=lambda m: f"layer {i}: {m} (the three scales √P, 1/√D, 1/√2? "
                                   "the norm on each layer's slice? layer i's columns of the table?)")
    _ok("5.1")


def check_exercise_5_2(fn):
    """fn(config, bytes_per_number) -> bytes of PLE table read per token."""
    for name, config in minigemma.PRESETS.items():
        for nbytes in (2, 4):
            got = _attempt("5.2", fn, config, nbytes)
            if got is None:
                return
            shape = dict(minigemma.expected_keys(config)).get("embed_tokens_per_layer.weight", (1, 0))
            want = shape[1] * nbytes  # one row: every layer's slice
            assert int(got) == want, f"{name}, {nbytes} bytes per number: expected {want:,}, got {got}"
    _ok("5.2")


# --- 06_gemma4_text_model --------------------------------------------------------------------


def check_exercise_6_1(fn):
    """fn(config) -> k_proj/v_proj parameters saved by KV sharing and keys as values."""
    for name, config in minigemma.PRESETS.items():
        got = _attempt("6.1", fn, config)
        if got is None:
            return
        full = sum(2 * config.hidden_size * config.kv_heads_of(i) * config.head_dim_of(i)
                   for i in range(config.num_hidden_layers))
        have = sum(math.prod(shape) for key, shape in minigemma.expected_keys(config).items()
                   if key.endswith(("k_proj.weight", "v_proj.weight")))
        assert int(got) == full - have, (f"{name}: expected {full - have:,} parameters saved, got {int(got):,} "
                                         "(count both mechanisms, with each layer's own heads and head dim)")
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


# --- 06b_training_a_tiny_gemma ---------------------------------------------------------------


def check_exercise_6b_1(fn):
    """fn(logits, targets) -> d cross_entropy / d logits, without autograd."""
    gen = torch.Generator().manual_seed(61)
    for N, V in [(5, 7), (32, 100)]:
        logits = torch.randn(N, V, generator=gen) * 3
        targets = torch.randint(0, V, (N,), generator=gen)
        got = _attempt("6b.1", fn, logits.clone(), targets)
        if got is None:
            return
        leaf = logits.clone().requires_grad_(True)
        torch.nn.functional.cross_entropy(leaf, targets).backward()
        assert tuple(got.shape) == (N, V), f"expected shape {(N, V)}, got {tuple(got.shape)}"
        torch.testing.assert_close(got, leaf.grad, msg=lambda m: (
            f"N={N}: gradient differs from autograd (softmax minus one-hot, divided by N?) {m}"))
    _ok("6b.1")


def check_exercise_6b_2(fn):
    """fn(ids, vocab_size) -> cross-entropy of the best context-free (unigram) model, in nats."""
    gen = torch.Generator().manual_seed(62)
    cases = [torch.tensor([0, 0, 0, 1]), torch.randint(0, 50, (500,), generator=gen) % 13, torch.arange(8)]
    for ids in cases:
        got = _attempt("6b.2", fn, ids, 50)
        if got is None:
            return
        p = torch.bincount(ids, minlength=50).double() / len(ids)
        want = float(-(p[p > 0] * p[p > 0].log()).sum())
        assert abs(float(got) - want) < 1e-6, (f"ids {ids.tolist()[:8]}...: expected {want:.6f} nats, got {float(got):.6f} "
                                              "(the best fixed prediction is each token's frequency)")
    _ok("6b.2")


def check_exercise_6b_3(fn):
    """fn(ids, logprobs, vocab_size) -> (N, V) logits that fool the k-piece shortcut loss."""
    gen = torch.Generator().manual_seed(63)
    for N, V, k in [(3, 40, 4), (16, 1000, 32)]:
        ids = torch.stack([torch.randperm(V, generator=gen)[:k] for _ in range(N)])  # (N, k)
        logprobs = (torch.randn(N, V, generator=gen) * 2).log_softmax(-1).gather(-1, ids)
        logits = _attempt("6b.3", fn, ids.clone(), logprobs.clone(), V)
        if logits is None:
            return
        logits = torch.as_tensor(logits, dtype=torch.float32)
        assert tuple(logits.shape) == (N, V), f"expected logits of shape {(N, V)}, got {tuple(logits.shape)}"
        q = logprobs.softmax(-1)
        shortcut = (q * (q.log() - logits.gather(-1, ids).log_softmax(-1))).sum(-1)  # softmax over the k only
        assert shortcut.max() < 1e-4, (f"V={V}: the shortcut loss is {shortcut.max():.4f}, not 0: on the k pieces "
                                       "alone, the student must agree with the teacher")
        mass = logits.softmax(-1).gather(-1, ids).sum(-1)  # the student's real probability of the k pieces
        assert mass.max() < 0.01, (f"V={V}: the student still gives the teacher's pieces {mass.max():.1%} of its "
                                   "probability; the aim is under 1 %")
        print(f"V={V}: shortcut loss {shortcut.max():.5f}; the real sparse KL "
              f"{float((q * (q.log() - logits.log_softmax(-1).gather(-1, ids))).sum(-1).mean()):.2f} nats")
    _ok("6b.3")


# --- 07_mixture_of_experts -------------------------------------------------------------------


def check_exercise_7_1(fn):
    """fn(index, num_experts) -> for each expert, the tokens grouped dispatch runs it on, in order."""
    gen = torch.Generator().manual_seed(7)
    cases = [(torch.tensor([[2, 0], [1, 2], [0, 3], [2, 1], [3, 0], [2, 3]]), 4),
             (torch.randint(0, 16, (30, 4), generator=gen), 16), (torch.tensor([[5, 1, 2]]), 8)]
    for index, E in cases:
        got = _attempt("7.1", fn, index, E)
        if got is None:
            return
        flat = index.reshape(-1)
        order = flat.argsort(stable=True)
        want = [(order[flat[order] == e] // index.shape[1]).tolist() for e in range(E)]
        got = [[int(t) for t in tokens] for tokens in got]
        assert len(got) == E, f"expected one list per expert ({E}), got {len(got)}"
        for e in range(E):
            assert got[e] == want[e], (f"expert {e} of {E} (index {index.tolist() if index.numel() < 20 else '...'}): "
                                       f"expected tokens {want[e]}, got {got[e]}")
    _ok("7.1")


def check_exercise_7_2(fn):
    """fn(per_expert_scale, down_proj) -> down_proj with the per-expert scale folded in."""
    from minigemma.config import TextConfig
    from minigemma.moe import Experts, Router

    cfg = TextConfig(model_type="gemma4_text", hidden_size=16, num_hidden_layers=1, layer_types=("full_attention",),
                     num_attention_heads=2, num_key_value_heads=1, enable_moe_block=True, num_experts=6,
                     top_k_experts=2, moe_intermediate_size=8)
    gen = torch.Generator().manual_seed(9)
    router, experts = Router(cfg), Experts(cfg)
    with torch.no_grad():
        for p in list(router.parameters()) + list(experts.parameters()):
            p.copy_(torch.randn(p.shape, generator=gen))
    got = _attempt("7.2", fn, router.per_expert_scale.detach().clone(), experts.down_proj.detach().clone())
    if got is None:
        return
    assert tuple(got.shape) == tuple(experts.down_proj.shape), f"expected shape {tuple(experts.down_proj.shape)}"
    x = torch.randn(12, 16, generator=gen)
    with torch.no_grad():
        weights, index, _ = router(x)
        want = experts(x, index, weights)
        folded = Experts(cfg)
        folded.gate_up_proj.copy_(experts.gate_up_proj)
        folded.down_proj.copy_(got)
        out = folded(x, index, weights / router.per_expert_scale[index])
    torch.testing.assert_close(out, want, atol=1e-4, rtol=1e-4, msg=lambda m: (
        "outputs differ: expert e's output is linear in down_proj[e]; scale all of down_proj[e] by "
        f"per_expert_scale[e]. {m}"))
    _ok("7.2")


def check_exercise_7_3(fn):
    """fn(index, probs, num_experts) -> the Switch-style load-balancing loss of one layer."""
    from tiny_moe import balance_loss  # notebooks/tiny_moe.py, beside this file

    gen = torch.Generator().manual_seed(10)
    for N, E, k in [(40, 8, 2), (7, 16, 4)]:
        probs = torch.randn(N, E, generator=gen).softmax(-1)
        index = probs.topk(k, dim=-1).indices
        got = _attempt("7.3", fn, index, probs, E)
        if got is None:
            return
        want = balance_loss([(None, index, probs)], E)
        assert abs(float(got) - float(want)) < 1e-5, (f"N={N}, E={E}, k={k}: expected {float(want):.5f}, got "
                                                      f"{float(got):.5f} (f_e: share of the N·k entries; P_e: mean "
                                                      "probability over tokens; times E)")
    _ok("7.3")


# --- 08_vision -------------------------------------------------------------------------------


def check_exercise_8_1(fn):
    """fn(height, width, budget) -> (h, w), the budget resize."""
    from minigemma.preprocess import BUDGETS, resized_size

    gen = torch.Generator().manual_seed(81)
    sizes = [(600, 512), (23, 31), (40, 900), (1600, 90), (1, 5000), (3000, 2), (48, 48)]
    sizes += [tuple(torch.randint(1, 4000, (2,), generator=gen).tolist()) for _ in range(40)]
    for budget in BUDGETS:
        for h, w in sizes:
            got = _attempt("8.1", fn, h, w, budget)
            if got is None:
                return
            want = resized_size(h, w, budget)
            assert tuple(got) == want, f"{h}×{w} at {budget} tokens: expected {want}, got {tuple(got)}"
    _ok("8.1")


def check_exercise_8_2(fn):
    """fn(positions (n, 2)) -> (n,) token index of each patch."""
    from minigemma.preprocess import patchify
    from minigemma.vision import pool

    for h, w in [(144, 240), (48, 1440), (960, 48), (432, 336)]:
        positions = patchify(torch.zeros(h, w, 3).numpy())[1]
        positions = positions[torch.randperm(len(positions), generator=torch.Generator().manual_seed(h))]
        got = _attempt("8.2", fn, positions)
        if got is None:
            return
        want = pool(torch.arange(len(positions)).float()[None, :, None], positions[None])[0, :, 0]  # mean patch index
        got = torch.as_tensor(got).long()
        assert got.shape == (len(positions),), f"expected one token per patch, got shape {tuple(got.shape)}"
        means = torch.zeros(len(want)).index_add_(0, got, torch.arange(len(positions)).float()) / 9
        assert torch.allclose(means, want), f"{h}×{w}: patches are grouped into the wrong tokens"
    _ok("8.2")


# --- 09_video --------------------------------------------------------------------------------


def check_exercise_9_1(fn):
    """fn(total, n) -> list of frame indices."""
    from minigemma.preprocess import sample_frames

    for total in (1, 5, 31, 32, 33, 100, 120, 1001, 7200):
        for n in (8, 32):
            got = _attempt("9.1", fn, total, n)
            if got is None:
                return
            want = sample_frames(total, 1.0, n)[0]
            assert [int(i) for i in got] == want, f"{total} frames, {n} wanted: expected {want[:6]}…, got {list(got)[:6]}…"
    _ok("9.1")


def check_exercise_9_2(fn):
    """fn(timestamps, tokens_per_frame) -> the video's prompt text."""
    from types import SimpleNamespace

    from transformers.models.gemma4.processing_gemma4 import Gemma4Processor

    proc = SimpleNamespace(boi_token="<start_of_image>", eoi_token="<end_of_image>", video_token="<|video|>")
    for times, n in [([0.0, 0.5, 1.0], 2), ([0.0, 59.9, 60.0, 61.5, 3599.0], 3)]:
        got = _attempt("9.2", fn, times, n)
        if got is None:
            return
        want = Gemma4Processor.replace_video_token(
            proc, {"num_soft_tokens_per_video": [n], "video_metadata": [SimpleNamespace(fps=1, timestamps=times)]}, 0)
        assert got == want, f"expected {want!r}, got {got!r}"
    _ok("9.2")


# --- 10_audio --------------------------------------------------------------------------------


def check_exercise_10_1(fn):
    """fn(num_samples) -> audio tokens of a 16 kHz clip of that many samples."""
    from minigemma.log_mel import audio_token_count, frame_count

    lengths = [161, 320, 321, 480, 481, 800, 37920, 160_000, 480_000]
    got = _attempt("10.1", lambda: [fn(n) for n in lengths])
    if got is None:
        return
    want = [audio_token_count(frame_count(n)) for n in lengths]
    for n, g, w in zip(lengths, got, want):
        assert int(g) == w, (f"{n} samples: expected {w} tokens, got {g} (count the frames first: section 2 says "
                             "how long a window is and where the first one starts; then section 5: what does a "
                             "stride-2 convolution with padding 1 keep of an odd number of steps?)")
    _ok("10.1")


def check_exercise_10_2(fn):
    """fn(frame (320,)) -> (128,) log-mel values."""
    import numpy as np

    from minigemma.log_mel import audio_features

    x = np.random.default_rng(10).uniform(-0.5, 0.5, 1601).astype(np.float32)
    frame = x[:320]  # the second frame of the clip x starts at sample 0 (the first is half padding)
    got = _attempt("10.2", fn, frame)
    if got is None:
        return
    want = audio_features(x, sampling_rate=16000)[1]
    got = np.asarray(got, dtype=np.float64).reshape(-1)
    assert got.shape == (128,), f"expected 128 values, got shape {got.shape}"
    err = np.abs(got - want).max()
    assert err < 1e-4, f"off by {err:.3g}: periodic Hann window, |rfft(n=512)|, @ MEL_BANK, log(mel + 0.001)?"
    _ok("10.2")


def check_exercise_10_3(fn):
    """fn(T, past, future) -> (T, T) bool: may query q attend to key t?"""
    from minigemma.audio import local_attention_mask

    for T, past, future in [(13, 12, 0), (20, 4, 3), (9, 2, 1)]:
        got = _attempt("10.3", fn, T, past, future)
        if got is None:
            return
        blocked = local_attention_mask(T, 5, past, future)  # (blocks, 5, context)
        want = torch.zeros(T, T, dtype=torch.bool)
        for b in range(blocked.shape[0]):
            for c in range(5):
                for s in range(blocked.shape[2]):
                    q, t = b * 5 + c, b * 5 - past + s
                    if q < T and blocked[b, c, s]:
                        want[q, t] = True
        got = torch.as_tensor(got).bool()
        assert got.shape == (T, T), f"expected shape {(T, T)}, got {tuple(got.shape)}"
        assert torch.equal(got, want), (f"T={T}, past={past}, future={future}: rows differ, e.g. query "
                                        f"{int((got != want).any(1).nonzero()[0])}")
    _ok("10.3")


# --- 11_chat_thinking_tools ------------------------------------------------------------------


def check_exercise_11_1(fn):
    """fn(value) -> the value in Gemma's notation, as minigemma.chat.format_value writes it."""
    from minigemma.chat import format_value

    cases = [{}, [], "plain", 'quote " and, comma: {brace}', 0, -17, 2.5, 3.0, 1e-05, True, False, None,
             {"a": "x", "b": [1, 2.5, True, None]}, {"deep": {"list": [[], {}, ["日本"]]}, "n": -0.25}]
    for value in cases:
        got = _attempt("11.1", fn, value)
        if got is None:
            return
        want = format_value(value)
        assert got == want, f"for {value!r}: expected {want!r}, got {got!r}"
    _ok("11.1")


def _choice_mask(written, pieces, choices, tokens_left):
    """The checker's own answer: the piece leads to a choice whose rest fits in the tokens left after it."""
    return [any(c.startswith(written + p) and len(c) - len(written + p) <= tokens_left - 1 for c in choices)
            for p in pieces]


def _choice_cases():
    """Named cases (each catches one mistake), then random vocabularies, choices and budgets."""
    yield "a piece that runs past every choice", ("ye", ["s", "sno", "sy", "es"], ["yes", "no"], 5)
    yield "a piece that completes one choice but only starts another", ("no", ["ne", "n", "t"], ["no", "none", "not"], 2)
    yield "a budget that binds", ("", ["c", "cel", "celsius", "f", "fahrenheit"], ["celsius", "fahrenheit"], 1)
    yield "a budget that leaves exactly enough", ("fahr", ["e", "en", "enheit"], ["fahrenheit"], 5)
    import random

    rng = random.Random(1102)
    words = ["red", "green", "blue", "gre", "bluest", "mauve", "ma", "yes", "no", "none", "nonetheless", "celsius"]
    for _ in range(300):
        choices = rng.sample(words, rng.randint(1, 4))
        target = rng.choice(choices)
        written = target[:rng.randint(0, len(target) - 1)]
        pieces = sorted({w[i:j] for w in choices + words[:3] for i in range(len(w)) for j in range(i + 1, len(w) + 1)
                         if rng.random() < 0.08} | {target[len(written):]})
        yield "random", (written, pieces, choices, rng.randint(1, 6))


def check_exercise_11_2(fn):
    """fn(written, pieces, choices, tokens_left) -> one bool per piece: the mask of a 'one of these strings' decoder."""
    for name, (written, pieces, choices, left) in _choice_cases():
        got = _attempt("11.2", fn, written, list(pieces), list(choices), left)
        if got is None:
            return
        got = [bool(x) for x in got]
        want = _choice_mask(written, pieces, choices, left)
        assert len(got) == len(pieces), f"expected one bool per piece ({len(pieces)}), got {len(got)}"
        wrong = [(p, w) for p, g, w in zip(pieces, got, want) if g != w]
        assert not wrong, (f"{name}: written={written!r}, choices={choices}, tokens_left={left}: piece {wrong[0][0]!r} "
                           f"should be {'allowed' if wrong[0][1] else 'forbidden'} ({len(wrong)} of {len(pieces)} pieces wrong)")
    _ok("11.2")


# --- 12_quantisation_and_speed ---------------------------------------------------------------


def check_exercise_12_1(fn):
    """fn(w) -> (q int8, scale) per output row, like minigemma.quant_formats.quantize_int8."""
    from minigemma.quant_formats import quantize_int8

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


def _q4_0(w):
    """llama.cpp's quantize_row_q4_0 (scale kept in float32), dequantised: (N, d_in) -> (N, d_in)."""
    b = w.detach().float().reshape(-1, 32)
    signed_max = b.gather(1, b.abs().argmax(1, keepdim=True))  # (blocks, 1): largest magnitude, with its sign
    d = signed_max / -8
    q = torch.floor(b / d + 8.5).clamp(0, 15)  # ggml: (int8_t)(x * id + 8.5), at most 15
    return ((q - 8) * d).reshape(w.shape)


def check_exercise_12_2(fn):
    """fn(w (N, d_in)) -> Q4_0 values of w, with a straight-through gradient."""
    gen = torch.Generator().manual_seed(1222)
    w = torch.randn(24, 96, generator=gen) * torch.rand(24, 1, generator=gen) * 0.1
    w[0, 5], w[1, 40] = 0.9, -0.9  # one block led by a positive weight, one by a negative one
    w.requires_grad_(True)
    got = _attempt("12.2", fn, w)
    if got is None:
        return
    assert got.shape == w.shape, f"expected shape {tuple(w.shape)}, got {tuple(got.shape)}"
    want = _q4_0(w)
    lead = w.detach().reshape(-1, 32).abs().argmax(1)
    assert torch.equal(got.detach().reshape(-1, 32).gather(1, lead[:, None]), w.detach().reshape(-1, 32).gather(1, lead[:, None])), \
        "each block's largest-magnitude weight should come out exactly (it is code 0: d = that weight / -8)"
    step = (want.reshape(-1, 32) - want.reshape(-1, 32).roll(1, 1)).abs().amax(1, keepdim=True)  # >= |d|
    off = (got.detach() - want).abs().reshape(-1, 32) > 1e-6 * step
    assert off.float().mean() < 0.01 and not torch.any((got.detach() - want).abs().reshape(-1, 32) > 1.01 * step), \
        "values differ from Q4_0: blocks of 32 along each row, codes 0..15 meaning d·(q − 8), rounded to nearest"
    upstream = torch.randn(w.shape, generator=gen)
    grad = torch.autograd.grad(got, w, upstream, allow_unused=True)[0] if got.requires_grad else None
    assert grad is not None and torch.allclose(grad, upstream), \
        "the gradient should pass straight through: d(output)/dw = 1 (round has no useful gradient of its own)"
    _ok("12.2")


# --- 13_speculative_decoding -----------------------------------------------------------------


def check_exercise_13_1(fn):
    """fn(alphas) -> expected tokens per target pass; alphas[i]: chance that draft i + 1 is accepted
    when drafts 1..i were."""
    gen = torch.Generator().manual_seed(131)
    cases = [[], [0.0, 0.9, 0.9], [0.5], [0.8] * 4, [1.0] * 3, [0.9, 0.8, 0.6, 0.4], [1.0, 1.0, 0.0, 1.0]]
    cases += [torch.rand(int(torch.randint(1, 9, (1,), generator=gen)), generator=gen).tolist() for _ in range(5)]
    for alphas in cases:
        got = _attempt("13.1", fn, list(alphas))
        if got is None:
            return
        want, reach = 1.0, 1.0  # the target's own token always comes; draft i counts if 1..i were all kept
        for a in alphas:
            reach *= a
            want += reach
        assert abs(float(got) - want) < 1e-9, (f"alphas={[round(a, 3) for a in alphas]}: expected {want:.6f}, got "
                                               f"{got} (when does draft i count? only if every draft before it "
                                               "was kept too; and the target's own token always comes)")
    _ok("13.1")


def check_exercise_13_2(fn):
    """fn(target_choices, drafts) -> (accepted, next_token) for greedy verification."""
    from minigemma.sampling import Sampling
    from minigemma.speculative import verify

    gen = torch.Generator().manual_seed(13)
    for trial in range(30):
        k = int(torch.randint(1, 6, (1,), generator=gen))
        logits = torch.randn(k + 1, 20, generator=gen)
        choices = logits.argmax(-1).tolist()
        drafts = [c if torch.rand(1, generator=gen) < 0.7 else (c + 1) % 20 for c in choices[:k]]
        got = _attempt("13.2", fn, choices, drafts)
        if got is None:
            return
        want = verify(logits, drafts, [None] * k, Sampling())
        assert tuple(got) == want, (f"target choices {choices}, drafts {drafts}: expected (accepted, next) = "
                                    f"{want}, got {tuple(got)}")
    _ok("13.2")


# --- 14_fine_tuning --------------------------------------------------------------------------


def check_exercise_14_1(fn):
    """fn(W, A, B, alpha, r) -> the merged weight: x @ merged.T equals the LoRA layer's output."""
    from minigemma.lora import LoRALinear

    gen = torch.Generator().manual_seed(14)
    for d_in, d_out, r, alpha in ((12, 20, 2, 4), (64, 16, 8, 16), (30, 30, 4, 1)):
        layer = LoRALinear(torch.nn.Linear(d_in, d_out, bias=False), r=r, alpha=alpha)
        with torch.no_grad():
            layer.lora_B.weight.copy_(torch.randn(d_out, r, generator=gen))
        W, A, B = layer.base_layer.weight.detach(), layer.lora_A.weight.detach(), layer.lora_B.weight.detach()
        got = _attempt("14.1", fn, W.clone(), A.clone(), B.clone(), alpha, r)
        if got is None:
            return
        assert tuple(got.shape) == (d_out, d_in), f"the merged weight is (out, in) = {(d_out, d_in)}, got {tuple(got.shape)}"
        x = torch.randn(5, d_in, generator=gen)
        with torch.no_grad():
            want = layer(x)
        assert torch.allclose(x @ got.T, want, atol=1e-4), (f"d_in={d_in}, d_out={d_out}, r={r}, alpha={alpha}: "
                                                            "x @ merged.T differs from the LoRA layer (scale alpha/r?)")
    _ok("14.1")


def check_exercise_14_2(fn):
    """fn(config, r, targets) -> the number of adapter parameters add_lora would train."""
    from minigemma.lora import add_lora, trainable_parameters
    from minigemma.weights import new_model

    cases = [("gemma4-e2b", 8, ("q_proj", "v_proj")), ("gemma4-31b", 16, ("q_proj", "k_proj", "v_proj", "o_proj")),
             ("gemma4-e4b", 4, ("k_proj", "gate_proj", "down_proj"))]
    for name, r, targets in cases:
        config = minigemma.preset(name)
        got = _attempt("14.2", fn, config, r, targets)
        if got is None:
            return
        with torch.device("meta"):
            model = add_lora(new_model(config), r=r, alpha=r, target_modules=targets)
        want = sum(p.numel() for p in trainable_parameters(model))
        assert got == want, f"{name}, r={r}, targets {targets}: expected {want:,} parameters, got {got:,}"
    _ok("14.2")


# --- 15_encoder_free_unified_model -----------------------------------------------------------


def check_exercise_15_1(fn):
    """fn(patches (9n, 768), positions (9n, 2)) -> (patches (n, 6912), positions (n, 2)), row by row."""
    from minigemma.preprocess import patchify

    gen = torch.Generator().manual_seed(15)
    for h, w in ((48, 48), (96, 144), (192, 96), (144, 240)):
        image = torch.rand(h, w, 3, generator=gen).numpy()
        p16, pos16 = patchify(image, 16)
        want_p, want_pos = patchify(image, 48)
        order = torch.randperm(len(p16), generator=gen)  # any order in, row by row out
        got = _attempt("15.1", fn, p16[order].clone(), pos16[order].clone())
        if got is None:
            return
        got_p, got_pos = (torch.as_tensor(x) for x in got)
        assert tuple(got_p.shape) == tuple(want_p.shape), (f"a {h}×{w} image: expected patches of shape "
                                                           f"{tuple(want_p.shape)}, got {tuple(got_p.shape)}")
        assert torch.equal(got_pos.long(), want_pos), (f"a {h}×{w} image: positions should be the (column, row) "
                                                       f"of each 48-pixel patch, numbered row by row; got "
                                                       f"{got_pos[:4].tolist()}…, expected {want_pos[:4].tolist()}…")
        if not torch.allclose(got_p.float(), want_p):
            nine = torch.stack([p16[(pos16[:, 0] // 3 == x) & (pos16[:, 1] // 3 == y)].reshape(-1) for x, y in want_pos])
            hint = (" (that is the nine patches one after another: a 48-pixel patch is flattened row by row over "
                    "48 pixels, so each row of it crosses three 16-pixel patches)") if torch.allclose(got_p.float(), nine) else ""
            raise AssertionError(f"a {h}×{w} image: the 48-pixel patches differ from the image's 48×48 squares "
                                 f"flattened row by row, colours last{hint}")
    _ok("15.1")


def _random_unified_embedder(seed, width=16, text=24):
    from minigemma.multimodal import MultimodalEmbedder
    from minigemma.unified import PatchEmbedder, UnifiedVisionConfig

    torch.manual_seed(seed)
    patch = PatchEmbedder(UnifiedVisionConfig(mm_embed_dim=width, output_proj_dims=width, mm_posemb_size=8))
    out = MultimodalEmbedder(width, text)
    with torch.no_grad():
        for t in [*patch.parameters(), *out.parameters()]:
            t.copy_(torch.randn(t.shape) * (0.3 if t.dim() > 1 else 1.0) + (1.0 if t.dim() == 1 else 0.0))
    return lambda p, pos: out(patch([(p, pos)]))


def check_exercise_15_2(fn):
    """fn(patches (n, 6912) in [0, 1]) -> other patches in [0, 1] the 12B's embedder cannot tell apart."""
    gen = torch.Generator().manual_seed(152)
    for trial in range(3):
        n = 4 + 3 * trial
        patches = 0.15 + 0.7 * torch.rand(n, 6912, generator=gen)  # pixels in [0.15, 0.85]
        positions = torch.randint(0, 8, (n, 2), generator=gen)
        got = _attempt("15.2", fn, patches.clone())
        if got is None:
            return
        got = torch.as_tensor(got).float()
        assert got.shape == patches.shape, f"expected patches of shape {tuple(patches.shape)}, got {tuple(got.shape)}"
        assert got.min() >= -1e-6 and got.max() <= 1 + 1e-6, "pixel values must stay in [0, 1]"
        assert (got - patches).abs().max() >= 0.1, "no pixel moved by 0.1 or more: change the picture visibly"
        for seed in (trial, 10 + trial):
            embed = _random_unified_embedder(seed)
            with torch.no_grad():
                before, after = embed(patches, positions), embed(got, positions)
            change = ((after - before).norm() / before.norm()).item()
            assert change < 1e-3, (f"the embedder's soft tokens moved by {change:.1%}: it can see this change. "
                                   "What does the very first step do to a patch, and which changes does it undo? "
                                   "(Treat every patch on its own; and keep its contrast: the norm's eps sees "
                                   "very flat patches.)")
    _ok("15.2")


def check_exercise_15_3(fn):
    """fn(vision_config, text_width) -> parameters of the 12B's vision_embedder + embed_vision."""
    from dataclasses import replace

    from minigemma.multimodal import MultimodalEmbedder
    from minigemma.unified import PatchEmbedder, UnifiedVisionConfig

    base = UnifiedVisionConfig()
    cases = [(base, 3840), (replace(base, mm_embed_dim=64, output_proj_dims=64, mm_posemb_size=40), 96),
             (replace(base, mm_embed_dim=1152, output_proj_dims=1152, mm_posemb_size=300), 2560)]
    for config, text in cases:
        got = _attempt("15.3", fn, config, text)
        if got is None:
            return
        with torch.device("meta"):
            parts = [PatchEmbedder(config), MultimodalEmbedder(config.mm_embed_dim, text)]
        want = sum(p.numel() for m in parts for p in m.parameters())
        E = config.mm_embed_dim
        hint = ""
        if want - got == config.mm_posemb_size * E:
            hint = " (the position table holds a vector per column *and* one per row)"
        elif want - got in (6912 + 2 * E, 6912 + 3 * E):  # the biases left out
            hint = " (LayerNorms have a weight and a bias; the dense layer has a bias too)"
        assert got == want, (f"mm_embed_dim {E}, mm_posemb_size {config.mm_posemb_size}, text width {text}: "
                             f"expected {want:,} parameters, got {got:,}{hint}")
    _ok("15.3")


# --- 16_embeddings_and_retrieval -------------------------------------------------------------


def check_exercise_16_1(fn):
    """fn(out, mask) -> (B, E) mean of each row's outputs over its own tokens (mask 1), padding left out."""
    from minigemma.embedding import pool

    gen = torch.Generator().manual_seed(16)
    for lengths, T, E in (([5, 2, 7], 7, 4), ([1, 9], 12, 3), ([3], 3, 6)):
        out = torch.randn(len(lengths), T, E, generator=gen) + 3.0  # padding rows far from zero
        mask = (torch.arange(T)[None, :] < torch.tensor(lengths)[:, None]).long()  # (B, T)
        got = _attempt("16.1", fn, out.clone(), mask.clone())
        if got is None:
            return
        want = pool(out, mask)
        assert tuple(got.shape) == tuple(want.shape), f"expected shape {tuple(want.shape)}, got {tuple(got.shape)}"
        assert torch.allclose(got.float(), want, atol=1e-5), (
            f"lengths {lengths} padded to {T}: wrong means. Are the padding positions (mask 0) left out of "
            "both the sum and the count?")
    _ok("16.1")


def check_exercise_16_2(fn):
    """fn(q, d, tau) -> one-way InfoNCE: cross-entropy of each query picking its own row of d."""
    import torch.nn.functional as F

    gen = torch.Generator().manual_seed(17)
    for B, dim, tau in ((6, 8, 0.05), (3, 4, 1.0), (10, 16, 0.2)):
        q = F.normalize(torch.randn(B, dim, generator=gen), dim=-1)
        d = F.normalize(q + 0.5 * torch.randn(B, dim, generator=gen), dim=-1)
        got = _attempt("16.2", fn, q.clone(), d.clone(), tau)
        if got is None:
            return
        want = F.cross_entropy(q @ d.T / tau, torch.arange(B))
        assert torch.as_tensor(got).numel() == 1, "the loss is one number (the mean over the queries)"
        assert abs(float(got) - float(want)) < 1e-4, (
            f"B={B}, tau={tau}: expected {float(want):.4f}, got {float(got):.4f} (divide the cosines by tau; "
            "row i's right answer is column i; average over the queries)")
    _ok("16.2")


def check_exercise_16_3(fn):
    """fn(q, d, k) -> fraction of queries whose own document is among the k highest cosines."""
    import torch.nn.functional as F

    gen = torch.Generator().manual_seed(18)
    for N, dim, k in ((20, 8, 1), (30, 4, 3), (12, 6, 5)):
        q = F.normalize(torch.randn(N, dim, generator=gen), dim=-1)
        d = F.normalize(q + 0.9 * torch.randn(N, dim, generator=gen), dim=-1)
        got = _attempt("16.3", fn, q.clone(), d.clone(), k)
        if got is None:
            return
        top = (q @ d.T).topk(k, dim=1).indices  # (N, k): each query's k best documents
        want = (top == torch.arange(N)[:, None]).any(1).float().mean().item()
        assert abs(float(got) - want) < 1e-6, (
            f"N={N}, k={k}: expected {want:.4f}, got {float(got):.4f} (rank the documents for each query, "
            "i.e. along each row of q @ d.T, not the queries for each document)")
    _ok("16.3")
