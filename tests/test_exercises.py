"""The notebooks' exercise checkers accept the solutions, reject wrong answers with a clear
message, and treat an untouched stub as 'not attempted' (so the notebooks run under nbval)."""

import importlib.util
import sys

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
    checks.check_exercise_1_2(s.tokens_per_character, tok)
    checks.check_exercise_1_3(s.merge_pair)
    assert capsys.readouterr().out.count("correct!") == 3
    with pytest.raises(AssertionError, match="expected"):
        checks.check_exercise_1_1(lambda t, ids: "".join(t.id_to_piece(i) for i in ids), tok)
    with pytest.raises(AssertionError, match="merge"):
        checks.check_exercise_1_3(lambda symbols, pair: symbols)


def test_decoder_exercises(gemma, capsys):
    s = solutions("02_gemma_decoder")
    checks.check_exercise_2_1(s.sliding_mask)
    checks.check_exercise_2_2(s.rms_norm)
    checks.check_exercise_2_3(s.parameter_counts, gemma[0])
    assert capsys.readouterr().out.count("correct!") == 3
    with pytest.raises(AssertionError, match="window=3"):
        checks.check_exercise_2_1(lambda T, w: torch.ones(T, T).tril().bool())
    with pytest.raises(AssertionError, match="1 \\+ weight"):
        checks.check_exercise_2_2(lambda x, w, eps: x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * w)


def test_gemma4_exercises(capsys):
    import minigemma

    s3, s4 = solutions("03_rope_and_p_rope"), solutions("04_hybrid_attention_and_kv_cache")
    s5, s6 = solutions("05_per_layer_embeddings"), solutions("06_gemma4_text_model")
    checks.check_exercise_3_1(s3.p_rope)
    checks.check_exercise_3_2(s3.turning_pairs)
    checks.check_exercise_4_1(s4.ring_contents)
    checks.check_exercise_4_2(s4.kv_bytes_per_token)
    checks.check_exercise_5_1(s5.ple_table_parameters)
    checks.check_exercise_5_2(s5.ple_branch_exercise)
    checks.check_exercise_6_1(s6.softcap)
    checks.check_exercise_6_2(s6.donors)
    assert capsys.readouterr().out.count("correct!") == 8
    with pytest.raises(AssertionError, match="is the exponent over d"):
        checks.check_exercise_3_1(lambda d, theta, p: torch.cat([
            1.0 / theta ** (torch.arange(0, int(p * d / 2) * 2, 2).float() / (p * d)), torch.zeros(d // 2 - int(p * d / 2))]))
    with pytest.raises(AssertionError, match="expected"):
        checks.check_exercise_4_1(lambda n, w: list(range(w)))
    with pytest.raises(AssertionError, match="bytes per token"):
        checks.check_exercise_4_2(lambda c: 0)
    with pytest.raises(AssertionError, match="norm scale w"):
        checks.check_exercise_5_2(lambda y, p, g, pr, n, eps: y)
    with pytest.raises(AssertionError, match="gemma4-e2b: expected"):
        checks.check_exercise_6_2(lambda c: {i: i - 1 for i in range(c.first_kv_shared_layer, c.num_hidden_layers)})
    assert minigemma.preset("gemma4-e2b").kv_donor(34) == 14


def test_moe_exercises(capsys):
    s7 = solutions("07_mixture_of_experts")
    checks.check_exercise_7_1(s7.top_k_weights)
    checks.check_exercise_7_2(s7.tokens_per_expert)
    assert capsys.readouterr().out.count("correct!") == 2
    with pytest.raises(AssertionError, match="renormalise, then scale"):
        checks.check_exercise_7_1(lambda p, k, s: (p.topk(k, -1).values, p.topk(k, -1).indices))
    with pytest.raises(AssertionError, match="expected"):
        checks.check_exercise_7_2(lambda index, e: [0] * e)


def test_quantisation_exercises(capsys):
    s12 = solutions("12_quantisation_and_speed")
    checks.check_exercise_12_1(s12.int8_per_row)
    checks.check_exercise_12_2(s12.decode_step_limit)
    assert capsys.readouterr().out.count("correct!") == 2
    checks.check_exercise_12_1(stub)
    assert "not attempted" in capsys.readouterr().out
    with pytest.raises(AssertionError, match="scales differ"):
        checks.check_exercise_12_1(lambda w: (torch.zeros_like(w, dtype=torch.int8), w.abs().amax(1) / 255))
    with pytest.raises(AssertionError, match="expected 37.31 tokens/s"):
        checks.check_exercise_12_2(lambda b, bw: b / bw)
