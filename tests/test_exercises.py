"""The notebooks' exercise checkers accept the solutions, reject wrong answers with a clear
message, and treat an untouched stub as 'not attempted' (so the notebooks run under nbval)."""

import importlib.util
import math
import sys

import numpy as np
import pytest
import torch

from .conftest import ROOT

sys.path.insert(0, str(ROOT / "notebooks"))
import checks  # noqa: E402


def solutions(name):
    spec = importlib.util.spec_from_file_location(name, ROOT / "solutions" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def stub(*args):
    raise NotImplementedError


class _no_window:
    """An attention layer that pretends to be global: a wrong answer for the sliding layer."""

    def __init__(self, attn):
        self.attn = attn

    def __getattr__(self, name):
        return None if name == "window" else getattr(self.attn, name)


def test_tour_exercises(gemma, capsys):
    model, tok = gemma
    s = solutions("00_tour")
    checks.check_exercise_0_1(s.greedy_no_cache, model, tok)
    checks.check_exercise_0_2(s.next_token_probability, model, tok)
    checks.check_exercise_0_1(stub, model, tok)
    out = capsys.readouterr().out
    assert out.count("correct!") == 2 and "not attempted yet" in out
    with pytest.raises(AssertionError, match="expected ids"):
        checks.check_exercise_0_1(lambda m, ids, n: [0] * n, model, tok)
    with pytest.raises(AssertionError, match="did you softmax"):
        checks.check_exercise_0_2(lambda *a: 0.5, model, tok)


def test_tokenizer_exercises(gemma, capsys):
    tok = gemma[1]
    s = solutions("01_tokenizer")
    checks.check_exercise_1_1(s.decode_with_bytes, tok)
    checks.check_exercise_1_2(s.split_special, tok)
    checks.check_exercise_1_3(s.apply_merges)
    assert capsys.readouterr().out.count("correct!") == 3
    with pytest.raises(AssertionError, match="expected"):
        checks.check_exercise_1_1(lambda t, ids: "".join(t.id_to_piece(i) for i in ids), tok)
    with pytest.raises(AssertionError, match="longest special piece"):  # no newline runs: 5 newlines -> 5 x '\n'
        checks.check_exercise_1_2(lambda text, sp: s.split_special(text, {p: i for p, i in sp.items() if len(p) < 2}
                                                                   | {p: i for p, i in sp.items() if "\n" not in p}), tok)
    with pytest.raises(AssertionError, match="do not join back"):  # special pieces dropped
        checks.check_exercise_1_2(lambda text, sp: [(c, i) for c, i in s.split_special(text, sp) if i is None], tok)
    with pytest.raises(AssertionError, match="earliest learned merge"):  # the last learned merge first
        checks.check_exercise_1_3(lambda word, merges: checks._apply_merges_reference(word, merges[::-1]))


def test_decoder_exercises(gemma, capsys):
    s = solutions("02_gemma_decoder")
    checks.check_exercise_2_1(s.earliest_reachable)
    checks.check_exercise_2_2(s.relative_score)
    checks.check_exercise_2_3(s.parameter_counts, gemma[0])
    assert capsys.readouterr().out.count("correct!") == 3
    with pytest.raises(AssertionError, match="n_layers=2"):  # one layer's reach, not n layers'
        checks.check_exercise_2_1(lambda T, w, n: [max(0, t - w + 1) for t in range(T)])
    with pytest.raises(AssertionError, match="distance=3"):  # the plain dot product ignores position
        checks.check_exercise_2_2(lambda q, k, dist, theta: (q @ k).item())
def test_gemma4_exercises(capsys):
    import minigemma

    s3, s4 = solutions("03_rope_and_p_rope"), solutions("04_hybrid_attention_and_kv_cache")
    s5, s6 = solutions("05_per_layer_embeddings"), solutions("06_gemma4_text_model")
    checks.check_exercise_3_1(s3.slowest_turn)
    checks.check_exercise_3_2(s3.to_rotate_half, s3.interleaved_rope)
    checks.check_exercise_4_1(s4.decode_attention)
    checks.check_exercise_4_2(s4.kv_bytes_per_token)
    checks.check_exercise_5_1(s5.ple_end_to_end)
    checks.check_exercise_5_2(s5.ple_bytes_per_token)
    checks.check_exercise_6_1(s6.kv_projection_savings)
    checks.check_exercise_6_2(s6.donors)
    assert capsys.readouterr().out.count("correct!") == 8
    with pytest.raises(AssertionError, match="full_attention"):  # a full RoPE's slowest pair on global layers
        checks.check_exercise_3_1(lambda c, i: 2 * math.pi * c.rope_parameters[c.layer_types[i]]["rope_theta"]
                                  ** ((c.head_dim_of(i) - 2) / c.head_dim_of(i)))
    with pytest.raises(AssertionError, match="n_heads=3, head_dim=16"):  # one head's reordering applied to all rows at once
        checks.check_exercise_3_2(lambda w, H, hd: s3.to_rotate_half(w, 1, H * hd), s3.interleaved_rope)
    with pytest.raises(AssertionError, match="n_heads=1, head_dim=8"):  # no conversion
        checks.check_exercise_3_2(lambda w, H, hd: w, s3.interleaved_rope)
    with pytest.raises(AssertionError, match="sliding_attention"):  # forgets the window
        checks.check_exercise_4_1(lambda attn, x, t, pk, pv, rope: s4.decode_attention(_no_window(attn), x, t, pk, pv, rope))
    with pytest.raises(AssertionError, match="bytes per token"):
        checks.check_exercise_4_2(lambda c: 0)
    with pytest.raises(AssertionError, match="the three scales"):
        checks.check_exercise_5_1(lambda model, ids, y, i: y)
    with pytest.raises(AssertionError, match="gemma4-e2b, 2 bytes per number"):  # one layer's slice only
        checks.check_exercise_5_2(lambda c, b: c.hidden_size_per_layer_input * b)
    with pytest.raises(AssertionError, match="gemma4-e2b: expected .* parameters saved"):  # sharing only
        checks.check_exercise_6_1(lambda c: sum(2 * c.hidden_size * c.kv_heads_of(i) * c.head_dim_of(i)
                                                for i in range(c.first_kv_shared_layer, c.num_hidden_layers)) + 1)
    with pytest.raises(AssertionError, match="gemma4-e2b: expected"):
        checks.check_exercise_6_2(lambda c: {i: i - 1 for i in range(c.first_kv_shared_layer, c.num_hidden_layers)})
    assert minigemma.preset("gemma4-e2b").kv_donor(34) == 14


def test_training_exercises(capsys):
    s = solutions("06b_training_a_tiny_gemma")
    checks.check_exercise_6b_1(s.logits_gradient)
    checks.check_exercise_6b_2(s.best_context_free_loss)
    checks.check_exercise_6b_3(s.fool_the_shortcut)
    assert capsys.readouterr().out.count("correct!") == 3
    with pytest.raises(AssertionError, match="divided by N"):
        checks.check_exercise_6b_1(lambda z, t: z.softmax(-1) - torch.nn.functional.one_hot(t, z.shape[1]))
    with pytest.raises(AssertionError, match="token's frequency"):
        checks.check_exercise_6b_2(lambda ids, V: torch.log(torch.tensor(float(V))))
    with pytest.raises(AssertionError, match="must agree with the teacher"):  # mass away, shape of q lost
        checks.check_exercise_6b_3(lambda ids, lp, V: torch.zeros(len(ids), V).scatter(-1, ids, -20.0))
    with pytest.raises(AssertionError, match="aim is under 1 %"):  # the honest student: matches the teacher
        checks.check_exercise_6b_3(lambda ids, lp, V: torch.full((len(ids), V), -30.0).scatter(-1, ids, lp))


def test_moe_exercises(capsys):
    s7 = solutions("07_mixture_of_experts")
    checks.check_exercise_7_1(s7.dispatch_plan)
    checks.check_exercise_7_2(s7.fold_per_expert_scale)
    checks.check_exercise_7_3(s7.balance_loss)
    checks.check_exercise_7_1(stub)
    out = capsys.readouterr().out
    assert out.count("correct!") == 3 and "not attempted yet" in out
    assert s7.dispatch_plan(torch.tensor([[2, 0], [1, 2], [0, 3], [2, 1], [3, 0], [2, 3]]), 4) == \
        [[0, 2, 4], [1, 3], [0, 1, 3, 5], [2, 4, 5]]  # the worked example of notebook 07
    with pytest.raises(AssertionError, match="expert 0 of 4 .*expected tokens"):  # entries, not tokens
        checks.check_exercise_7_1(lambda index, E: [(index.reshape(-1) == e).nonzero()[:, 0].tolist() for e in range(E)])
    with pytest.raises(AssertionError, match="linear in down_proj"):
        checks.check_exercise_7_2(lambda s, down: down * s.mean())
    with pytest.raises(AssertionError, match="expected .* got"):
        checks.check_exercise_7_3(lambda index, probs, E: (torch.bincount(index.reshape(-1), minlength=E)
                                                           / index.shape[0] * probs.mean(0)).sum() * E)


def test_vision_exercises(capsys):
    s8 = solutions("08_vision")
    checks.check_exercise_8_1(s8.resized)
    checks.check_exercise_8_2(s8.token_of_patch)
    assert capsys.readouterr().out.count("correct!") == 2
    checks.check_exercise_8_1(stub)
    assert "not attempted" in capsys.readouterr().out
    with pytest.raises(AssertionError, match="expected"):
        checks.check_exercise_8_1(lambda h, w, b: (h // 48 * 48, w // 48 * 48))  # no budget
    with pytest.raises(AssertionError, match="wrong tokens"):
        checks.check_exercise_8_2(lambda pos: pos[:, 0] // 3 + pos[:, 1] // 3)  # forgets the row width


def test_video_exercises(capsys):
    s9 = solutions("09_video")
    checks.check_exercise_9_1(s9.frame_indices)
    checks.check_exercise_9_2(s9.video_text)
    assert capsys.readouterr().out.count("correct!") == 2
    checks.check_exercise_9_2(stub)
    assert "not attempted" in capsys.readouterr().out
    with pytest.raises(AssertionError, match="expected"):
        checks.check_exercise_9_1(lambda total, n: list(range(min(n, total))))  # the first n frames
    with pytest.raises(AssertionError, match="expected"):
        checks.check_exercise_9_2(lambda times, n: "".join(f"{t:05.2f} <start_of_image>" + "<|video|>" * n
                                                           + "<end_of_image>" for t in times))


def test_audio_exercises(capsys):
    s10 = solutions("10_audio")
    checks.check_exercise_10_1(s10.audio_tokens)
    checks.check_exercise_10_2(s10.log_mel)
    checks.check_exercise_10_3(s10.visible)
    checks.check_exercise_10_1(stub)
    out = capsys.readouterr().out
    assert out.count("correct!") == 3 and "not attempted yet" in out
    with pytest.raises(AssertionError, match="count the frames first"):
        checks.check_exercise_10_1(lambda n: n // 640)
    with pytest.raises(AssertionError, match="Hann window"):
        checks.check_exercise_10_2(lambda f: np.log(np.abs(np.fft.rfft(f, n=512)) @ s10.MEL_BANK + 1e-3))
    with pytest.raises(AssertionError, match="rows differ"):
        checks.check_exercise_10_3(lambda T, p, f: s10.visible(T, p + 1, f))


def test_chat_exercises(capsys):
    s11 = solutions("11_chat_thinking_tools")
    checks.check_exercise_11_1(s11.gemma_value)
    checks.check_exercise_11_2(s11.choice_mask)
    assert capsys.readouterr().out.count("correct!") == 2
    with pytest.raises(AssertionError, match="expected '3', got '3.0'"):
        checks.check_exercise_11_1(lambda v: s11.gemma_value(v) if v != 3.0 or v is True or isinstance(v, int) else "3.0")
    first_char_only = lambda w, ps, cs, n: [any(c.startswith(w + p[:1]) for c in cs) for p in ps]  # noqa: E731
    with pytest.raises(AssertionError, match="runs past every choice: .* piece 'sno' should be forbidden"):
        checks.check_exercise_11_2(first_char_only)
    no_budget = lambda w, ps, cs, n: s11.choice_mask(w, ps, cs, 10**6)  # noqa: E731
    with pytest.raises(AssertionError, match="budget that binds: .* piece 'c' should be forbidden"):
        checks.check_exercise_11_2(no_budget)
    off_by_one = lambda w, ps, cs, n: s11.choice_mask(w, ps, cs, n + 1)  # noqa: E731
    with pytest.raises(AssertionError, match="should be forbidden"):
        checks.check_exercise_11_2(off_by_one)
    checks.check_exercise_11_2(stub)
    checks.check_exercise_11_1(stub)
    assert "not attempted" in capsys.readouterr().out


def test_speculative_decoding_exercises(capsys):
    s13 = solutions("13_speculative_decoding")
    checks.check_exercise_13_1(s13.expected_tokens)
    checks.check_exercise_13_2(s13.greedy_accept)
    assert capsys.readouterr().out.count("correct!") == 2
    checks.check_exercise_13_1(stub)
    assert "not attempted yet" in capsys.readouterr().out
    with pytest.raises(AssertionError, match="every draft before it"):  # each draft counted on its own
        checks.check_exercise_13_1(lambda alphas: 1 + sum(alphas))
    with pytest.raises(AssertionError, match="expected"):  # section 2's closed form, with the mean α
        checks.check_exercise_13_1(lambda alphas: s13.expected_tokens([sum(alphas) / len(alphas)] * len(alphas))
                                   if alphas else 1.0)
    with pytest.raises(AssertionError, match=r"expected \(accepted, next\)"):
        checks.check_exercise_13_2(lambda choices, drafts: (len(drafts), choices[-1]))


def test_quantisation_exercises(capsys):
    s12 = solutions("12_quantisation_and_speed")
    checks.check_exercise_12_1(s12.int8_per_row)
    checks.check_exercise_12_2(s12.fake_q4_0)
    assert capsys.readouterr().out.count("correct!") == 2
    checks.check_exercise_12_1(stub)
    checks.check_exercise_12_2(stub)
    assert capsys.readouterr().out.count("not attempted") == 2
    with pytest.raises(AssertionError, match="scales differ"):
        checks.check_exercise_12_1(lambda w: (torch.zeros_like(w, dtype=torch.int8), w.abs().amax(1) / 255))

    def symmetric(w):  # d = max|w| / 8 ignoring the sign: a positive-led block loses its largest weight
        b = w.reshape(-1, 32)
        d = b.abs().amax(1, keepdim=True).detach() / 8
        return w + ((torch.round(b.detach() / d).clamp(-8, 7) * d).reshape(w.shape) - w).detach()

    with pytest.raises(AssertionError, match="largest-magnitude weight"):
        checks.check_exercise_12_2(symmetric)
    with pytest.raises(AssertionError, match="straight through"):
        checks.check_exercise_12_2(lambda w: s12.fake_q4_0(w).detach())
    with pytest.raises(AssertionError, match="largest-magnitude"):  # blocks down the columns, not along rows
        checks.check_exercise_12_2(lambda w: s12.fake_q4_0(w.T.contiguous()).T)

    def truncated(w):  # codes rounded down instead of to the nearest value
        b = w.reshape(-1, 32)
        d = b.gather(1, b.abs().argmax(1, keepdim=True)).detach() / -8
        return w + ((((b.detach() / d + 8).floor().clamp(0, 15) - 8) * d).reshape(w.shape) - w).detach()

    with pytest.raises(AssertionError, match="rounded to nearest"):
        checks.check_exercise_12_2(truncated)


def test_fine_tuning_exercises(capsys):
    s14 = solutions("14_fine_tuning")
    checks.check_exercise_14_1(s14.merged_weight)
    checks.check_exercise_14_2(s14.lora_parameters)
    assert capsys.readouterr().out.count("correct!") == 2
    checks.check_exercise_14_1(stub)
    assert "not attempted yet" in capsys.readouterr().out
    with pytest.raises(AssertionError, match="scale alpha/r"):
        checks.check_exercise_14_1(lambda W, A, B, alpha, r: W + B @ A)
    with pytest.raises(AssertionError, match="gemma4-e2b, r=8"):  # forgot the KV-shared layers
        checks.check_exercise_14_2(lambda c, r, t: sum(r * (c.hidden_size + c.num_attention_heads * c.head_dim_of(i))
                                                        + r * (c.hidden_size + c.kv_heads_of(i) * c.head_dim_of(i))
                                                        for i in range(c.num_hidden_layers)))


def test_encoder_free_unified_model_exercises(capsys):
    s15 = solutions("15_encoder_free_unified_model")
    checks.check_exercise_15_1(s15.merge_patches)
    checks.check_exercise_15_2(s15.invisible)
    checks.check_exercise_15_3(s15.embedder_parameters)
    assert capsys.readouterr().out.count("correct!") == 3
    checks.check_exercise_15_2(stub)
    assert "not attempted yet" in capsys.readouterr().out

    def nine_in_a_row(patches, positions):  # the 9 patches one after another, not rows of 48 pixels
        _, pos = s15.merge_patches(patches, positions)
        merged = []
        for x, y in pos.tolist():
            inside = torch.nonzero((positions[:, 0] // 3 == x) & (positions[:, 1] // 3 == y)).flatten()
            inside = inside[torch.argsort(positions[inside, 1] * 1000 + positions[inside, 0])]  # reading order
            merged.append(patches[inside].reshape(-1))
        return torch.stack(merged), pos
    with pytest.raises(AssertionError, match="one after another"):
        checks.check_exercise_15_1(nine_in_a_row)
    with pytest.raises(AssertionError, match="can see this change"):  # more red: not the same change for every number
        checks.check_exercise_15_2(lambda p: (p.reshape(len(p), -1, 3) * torch.tensor([1.0, 0.8, 0.8])).reshape(len(p), -1))
    with pytest.raises(AssertionError, match="a vector per column"):
        checks.check_exercise_15_3(lambda c, t: s15.embedder_parameters(c, t) - c.mm_posemb_size * c.mm_embed_dim)


def test_embeddings_exercises(capsys):
    s16 = solutions("16_embeddings_and_retrieval")
    checks.check_exercise_16_1(s16.mean_pool)
    checks.check_exercise_16_2(s16.info_nce)
    checks.check_exercise_16_3(s16.recall_at_k)
    assert capsys.readouterr().out.count("correct!") == 3
    checks.check_exercise_16_1(stub)
    assert "not attempted yet" in capsys.readouterr().out
    with pytest.raises(AssertionError, match="padding positions"):  # averaged the padding in
        checks.check_exercise_16_1(lambda out, mask: out.mean(1))
    with pytest.raises(AssertionError, match="divide the cosines by tau"):  # forgot the temperature
        checks.check_exercise_16_2(lambda q, d, tau: torch.nn.functional.cross_entropy(q @ d.T, torch.arange(len(q))))
    with pytest.raises(AssertionError, match="along each row"):  # ranked the queries for each document
        checks.check_exercise_16_3(lambda q, d, k: (((q @ d.T).topk(k, dim=0).indices
                                                     == torch.arange(len(q))[None, :]).any(0).float().mean().item()))
