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
