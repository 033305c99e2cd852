"""Generation: sampling options, streaming, clear errors, and the command line."""

import subprocess
import sys

import pytest
import torch

import minigemma
from minigemma import generate, generate_ids, stream_generate
from minigemma.sampling import Sampling

from .conftest import ROOT, make_tiny_gemma3


@pytest.fixture(scope="module")
def tiny(tmp_path_factory, hf_tokenizer_dir):
    """A small random model whose context is only 256 positions."""
    d = tmp_path_factory.mktemp("tiny")
    make_tiny_gemma3(d, hf_tokenizer_dir)
    return minigemma.load(d, progress=False)


def test_greedy_is_deterministic_and_top_k_1_is_greedy(tiny):
    model, tok = tiny
    a = generate(model, tok, "hello", max_new_tokens=10)
    assert a == generate(model, tok, "hello", max_new_tokens=10)
    assert a == generate(model, tok, "hello", max_new_tokens=10, temperature=0.8, top_k=1, seed=3)


def test_seed_makes_sampling_reproducible(tiny):
    model, tok = tiny
    runs = [generate(model, tok, "hello", max_new_tokens=12, temperature=1.0, seed=s) for s in (1, 1, 2)]
    assert runs[0] == runs[1] and runs[0] != runs[2]


def test_top_p_keeps_the_smallest_set_reaching_p():
    logits = torch.log(torch.tensor([0.5, 0.3, 0.15, 0.05]))
    draws = {Sampling(1.0, top_p=0.75).pick(logits, torch.Generator().manual_seed(s))[0] for s in range(200)}
    assert draws == {0, 1}  # 0.5 alone < 0.75; 0.5 + 0.3 reaches it
    draws = {Sampling(1.0, top_k=3).pick(logits, torch.Generator().manual_seed(s))[0] for s in range(300)}
    assert draws == {0, 1, 2}


def test_streaming_pieces_add_up_to_the_text(gemma):
    model, tok = gemma
    pieces = list(stream_generate(model, tok, "The capital of France is", max_new_tokens=12))
    assert len(pieces) > 3
    streamed = []
    text = generate(model, tok, "The capital of France is", max_new_tokens=12, stream=streamed.append)
    assert "".join(pieces) == "".join(streamed) == text
    ids = list(generate_ids(model, tok.encode("The capital of France is", add_bos=True), max_new_tokens=12))
    assert text == tok.decode(ids)


def test_stops_at_eos(tiny):
    model, tok = tiny
    ids = tok.encode("hello", add_bos=True)
    first = next(generate_ids(model, ids, max_new_tokens=1))
    assert list(generate_ids(model, ids, max_new_tokens=5, stop_ids={first})) == []


def test_prompt_longer_than_the_context(tiny):
    model, tok = tiny
    with pytest.raises(ValueError, match="the prompt has 300 tokens, longer than the model's context of 256"):
        generate(model, tok, [5] * 300)
    with pytest.raises(ValueError, match=r"plus max_new_tokens \(64\) exceeds the model's context of 256; "
                                         r"ask for at most 56 new tokens"):
        generate(model, tok, [5] * 200, max_new_tokens=64)


def test_ids_outside_the_vocabulary(tiny):
    model, tok = tiny
    with pytest.raises(ValueError, match="token id 262144 is outside the vocabulary"):
        generate(model, tok, [2, 262144])
    with pytest.raises(ValueError, match="token id -1 is outside the vocabulary"):
        model(torch.tensor([[2, -1]]))


def test_bad_sampling_options():
    with pytest.raises(ValueError, match="temperature must be >= 0"):
        Sampling(-1.0)
    with pytest.raises(ValueError, match="top_p must be in"):
        Sampling(1.0, top_p=1.5)
    with pytest.raises(ValueError, match="top_k must be >= 1"):
        Sampling(1.0, top_k=0)
    with pytest.raises(ValueError, match="min_p must be in"):
        Sampling(1.0, min_p=-0.5)
    with pytest.raises(TypeError, match="unknown sampling option temprature"):
        Sampling.of(temprature=0.5)


def test_empty_prompt(tiny):
    with pytest.raises(ValueError, match="the prompt is empty"):
        list(generate_ids(tiny[0], [], max_new_tokens=3))


def test_issue_20_bad_lengths_and_tensor_prompts_are_named(tiny):
    model, tok = tiny
    for bad in (0, -1, 2.5):
        with pytest.raises(ValueError, match=f"max_new_tokens must be an integer >= 1, got {bad}"):
            generate(model, tok, "hello", max_new_tokens=bad)
    ids = tok.encode("hello", add_bos=True)
    with pytest.raises(ValueError, match=r"generation continues one prompt; got a tensor of shape \(2, 2\)"):
        list(generate_ids(model, torch.tensor([ids, ids]), max_new_tokens=2))
    one_row = list(generate_ids(model, torch.tensor([ids]), max_new_tokens=3))  # (1, T) is one prompt
    assert one_row == list(generate_ids(model, ids, max_new_tokens=3))


def test_issue_20_media_markers_on_a_text_only_model_are_text(tiny):
    model, tok = tiny
    prompt = "Describe <|image|> and <|audio|>"
    assert generate(model, tok, prompt, max_new_tokens=4) == generate(model, tok, tok.encode(prompt, add_bos=True),
                                                                       max_new_tokens=4)
    image = (torch.zeros(9, 768), torch.zeros(9, 2, dtype=torch.long))
    with pytest.raises(ValueError, match=r"images got a single preprocess_image\(...\) result itself.*images=\[item\]"):
        generate(model, tok, prompt, images=image)  # a bare (patches, positions) tuple
    with pytest.raises(ValueError, match=r"images\[0\] is not a preprocess_image\(...\) result"):
        generate(model, tok, prompt, images=[torch.zeros(9, 768)])
    with pytest.raises(ValueError, match=r"videos\[0\] is not a preprocess_video\(...\) result"):
        generate(model, tok, "<|video|>", videos=[[image]])  # frames without their timestamps
    with pytest.raises(ValueError, match=r"audio got a single audio_features\(...\) result itself"):
        generate(model, tok, "<|audio|>", audio=torch.zeros(100, 128))
    with pytest.raises(ValueError, match="images passed to a text-only model: it has no vision or audio tower"):
        generate(model, tok, "Describe <|image|>", images=[image])


def test_cli_streams_a_continuation_from_the_real_model():
    out = subprocess.run([sys.executable, "-m", "minigemma", "generate", "The capital of France is",
                          "--max-new-tokens", "8"], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("The capital of France is") and len(out.stdout) > len("The capital of France is") + 10


def test_cli_reports_errors_cleanly(tmp_path):
    out = subprocess.run([sys.executable, "-m", "minigemma", "generate", "x", "--model", str(tmp_path / "nope")],
                         capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert out.returncode == 2 and "error:" in out.stderr and "Traceback" not in out.stderr


def test_cli_speed_options_load_the_faster_model_and_refuse_a_bad_combination():
    run = [sys.executable, "-m", "minigemma", "generate", "The capital of France is", "--max-new-tokens", "6"]
    for option in (["--quantize", "int8"], ["--pack"]):
        out = subprocess.run(run + option, capture_output=True, text=True, cwd=ROOT, timeout=300)
        assert out.returncode == 0, out.stderr
        assert len(out.stdout) > len("The capital of France is") + 5
    out = subprocess.run(run + ["--quantize", "int4", "--pack"], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert out.returncode == 2 and "quantize= already packs" in out.stderr and "Traceback" not in out.stderr


def test_cache_limits_are_clear_errors(tiny):
    model, _ = tiny
    cache = minigemma.KVCache(model.config, batch=1, max_len=4)
    model(torch.tensor([[2, 5, 6]]), cache=cache)
    with pytest.raises(ValueError, match="5 positions do not fit: the cache holds 4"):
        model(torch.tensor([[7, 8]]), cache=cache)
    with pytest.raises(ValueError, match="a cache of 300 positions exceeds the model's context of 256"):
        minigemma.KVCache(model.config, batch=1, max_len=300)
    with pytest.raises(ValueError, match="257 positions do not fit: the context holds 256"):
        model(torch.zeros(1, 257, dtype=torch.long))


def test_stop_strings_cut_the_output_where_they_start(tiny):
    model, tok = tiny
    full = generate(model, tok, "hello", max_new_tokens=16, stop_ids=set())
    stop = full[5:8]
    cut = generate(model, tok, "hello", max_new_tokens=16, stop=[stop, "never appears"], stop_ids=set())
    assert cut == full[:full.index(stop)]
    pieces = list(stream_generate(model, tok, "hello", max_new_tokens=16, stop=stop, stop_ids=set()))
    assert "".join(pieces) == cut


def test_stop_ids_end_generation(tiny):
    model, tok = tiny
    ids = list(generate_ids(model, tok.encode("hello", add_bos=True), max_new_tokens=8))
    k = next((k for k in range(1, len(ids)) if ids[k] not in ids[:k]), 0)  # the first new id after the start
    assert list(generate_ids(model, tok.encode("hello", add_bos=True), max_new_tokens=8, stop_ids={ids[k]})) == ids[:k]


def test_issue_24_cli_options_agree_show_their_defaults_and_are_checked_before_loading():
    help_text = {cmd: subprocess.run([sys.executable, "-m", "minigemma", cmd, "--help"], capture_output=True, text=True,
                                     cwd=ROOT, timeout=120).stdout for cmd in ("generate", "chat")}
    for cmd, text in help_text.items():
        for option in ("--temperature", "--top-k", "--top-p", "--min-p", "--seed", "--threads", "--quantize", "--pack"):
            assert option in text, (cmd, option)
        assert "tokens to generate at most (default: 64)" in text  # the Python API's default, in both
    out = subprocess.run([sys.executable, "-m", "minigemma", "chat", "--thinking"], capture_output=True, text=True,
                         cwd=ROOT, timeout=120)
    assert out.returncode == 2 and "--thinking needs a Gemma 4 model" in out.stderr and "loading" not in out.stderr
    out = subprocess.run([sys.executable, "-m", "minigemma", "generate", "x", "--top-p", "1.5"], capture_output=True,
                         text=True, cwd=ROOT, timeout=120)
    assert out.returncode == 2 and "top_p must be in (0, 1]" in out.stderr and "Traceback" not in out.stderr


def test_cli_chat_on_the_real_model():
    out = subprocess.run([sys.executable, "-m", "minigemma", "chat", "--max-new-tokens", "6", "--system", "Be brief."],
                         input="Hello there\n\n", capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("you> model> ") and out.stdout.count("you> ") == 2
    assert len(out.stdout) > len("you> model> you> ") + 5
