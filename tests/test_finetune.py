"""Fine-tuning: which tokens a chat teaches, the data file's errors, and the command -- its log,
``--resume``, and 2 processes under torchrun giving the 1-process adapters and losses."""

import json
import os
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

from minigemma.__main__ import main
from minigemma.chat_render import render
from minigemma.finetune import global_batch, learning_rate, prepare
from minigemma.sft import IGNORE, model_spans, read_jsonl, tokenize

from .conftest import make_tiny_gemma3

TOOLS = [{"type": "function", "function": {"name": "add", "description": "Add two integers.", "parameters": {
    "type": "object", "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}}, "required": ["a", "b"]}}}]
CONVERSATION = [
    {"role": "system", "content": "Use the tools."},
    {"role": "user", "content": "What is 2 plus 3?"},
    {"role": "assistant", "tool_calls": [{"type": "function", "function": {"name": "add", "arguments": {"a": 2, "b": 3}}}]},
    {"role": "tool", "name": "add", "content": {"sum": 5}},
    {"role": "assistant", "content": "It is 5."},
    {"role": "user", "content": "Thanks!"},
    {"role": "assistant", "content": "You're welcome."},
]


def learned_text(tokenizer, example):
    """The text of the tokens the loss looks at, as runs: [(text of a run of labelled targets)]."""
    runs, current = [], []
    for t in example.targets:
        if t == IGNORE:
            if current:
                runs.append(tokenizer.decode(current))
            current = []
        else:
            current.append(t)
    return runs + ([tokenizer.decode(current)] if current else [])


@pytest.mark.parametrize("format", ["gemma3", "gemma4"])
def test_the_loss_reads_the_model_turns_only(gemma, format):
    """The model's turns through their closing tag, the tool response's opening marker (the model
    writes it) but not the response itself; no system or user text."""
    _, tokenizer = gemma
    example = tokenize(tokenizer, {"messages": CONVERSATION, "tools": TOOLS}, format=format)
    text = render(CONVERSATION, tools=TOOLS, add_generation_prompt=False, format=format)
    assert example.ids == [tokenizer.bos_id] + tokenizer.encode(text)
    close, call, response = (("<end_of_turn>", "<start_function_call>call:add{a:2,b:3}<end_function_call>",
                              "<start_function_response>") if format == "gemma3" else
                             ("<turn|>", "<|tool_call>call:add{a:2,b:3}<tool_call|>", "<|tool_response>"))
    assert learned_text(tokenizer, example) == [call + response, "It is 5." + close, "You're welcome." + close]
    assert [text[s:e] for s, e in model_spans(text, format)] == [call + response, "It is 5." + close,
                                                                 "You're welcome." + close]


def test_plain_text_learns_every_token_and_long_examples_are_cut(gemma, tmp_path):
    _, tokenizer = gemma
    example = tokenize(tokenizer, {"text": "one two three"})
    assert example.targets == example.ids[1:] + [IGNORE]
    data = tmp_path / "d.jsonl"
    data.write_text("\n".join(json.dumps({"text": "word " * n}) for n in (3, 50, 60)) + "\n")
    with pytest.warns(UserWarning, match="2 of 3 examples are longer than max_length=20"):
        examples = prepare(tokenizer, data, max_length=20)
    assert [len(e.ids) for e in examples] == [1 + len(tokenizer.encode("word " * 3)), 20, 20] and [e.truncated for e in examples] == [False, True, True]


@pytest.mark.parametrize("line, message", [
    ('{"messages": [', "line 2: not valid JSON"),
    ('["a list"]', 'line 2: expected an object with either "messages"'),
    ('{"text": "a", "messages": []}', 'line 2: expected an object with either "messages"'),
    ('{"text": 3}', 'line 2: "text" must be a string'),
    ('{"messages": []}', 'line 2: "messages" must be a non-empty list'),
    ('{"text": "a", "label": 1}', r"line 2: unknown field\(s\) \['label'\]"),
])
def test_a_malformed_line_is_an_error_naming_its_number(tmp_path, line, message):
    data = tmp_path / "bad.jsonl"
    data.write_text('{"text": "fine"}\n' + line + "\n")
    with pytest.raises(ValueError, match=message):
        read_jsonl(data)


def test_a_chat_without_a_model_turn_or_with_media_is_refused(gemma, tmp_path):
    _, tokenizer = gemma
    data = tmp_path / "d.jsonl"
    data.write_text(json.dumps({"messages": [{"role": "user", "content": "hi"}]}) + "\n")
    with pytest.raises(ValueError, match="line 1: the conversation has no assistant turn"):
        prepare(tokenizer, data, 100)
    image = [{"type": "image"}, {"type": "text", "text": "what is it?"}]
    data.write_text(json.dumps({"messages": [{"role": "user", "content": image},
                                             {"role": "assistant", "content": "a cat"}]}) + "\n")
    with pytest.raises(ValueError, match="line 1: images and audio are not supported"):
        prepare(tokenizer, data, 100)


def test_batches_cover_each_epoch_once():
    examples = list(range(10))
    first_epoch = [x for step in range(3) for x in global_batch(examples, 3, seed=0, step=step)]
    assert len(set(first_epoch)) == 9  # 3 batches of 3; the 10th example waits for another epoch
    assert global_batch(examples, 3, 0, 3) != global_batch(examples, 3, 1, 3)  # the seed matters


@pytest.fixture(scope="module")
def run(tmp_path_factory, hf_tokenizer_dir):
    """A tiny Gemma 3 checkpoint and a chat data set of 8 tool calls."""
    root = tmp_path_factory.mktemp("finetune")
    make_tiny_gemma3(root / "model", hf_tokenizer_dir)
    lines = [{"messages": [{"role": "user", "content": f"What is {a} plus {b}?"},
                           {"role": "assistant", "tool_calls": [
                               {"type": "function", "function": {"name": "add", "arguments": {"a": a, "b": b}}}]}],
              "tools": TOOLS} for a in range(4) for b in range(2)]
    (root / "train.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))

    def finetune(out, *extra):
        args = ["finetune", "--model", str(root / "model"), "--data", str(root / "train.jsonl"), "--out", str(out),
                "--batch-size", "4", "--lr", "1e-2", "--lora-r", "4", *extra]
        return args
    return root, finetune


def adapters(directory):
    return load_file(directory / "adapter_model.safetensors")


def test_finetune_command_writes_the_adapter_and_the_log(run):
    root, finetune = run
    assert main(finetune(root / "four", "--steps", "4", "--eval", str(root / "train.jsonl"))) == 0
    log = json.loads((root / "four" / "train_log.json").read_text())
    assert log["world_size"] == 1 and log["steps"] == 4 and len(log["losses"]) == 4
    assert log["losses"][-1] < log["losses"][0] and log["eval_loss"] < log["losses"][0]
    config = json.loads((root / "four" / "adapter_config.json").read_text())
    assert config["r"] == 4 and config["peft_type"] == "LORA"
    assert any(v.abs().max() > 0 for k, v in adapters(root / "four").items() if "lora_B" in k)


def test_resume_continues_the_same_run(run):
    root, finetune = run
    if not (root / "four").exists():
        assert main(finetune(root / "four", "--steps", "4")) == 0
    assert main(finetune(root / "two", "--steps", "2")) == 0
    assert main(finetune(root / "resumed", "--steps", "4", "--resume", str(root / "two"))) == 0
    whole, resumed = adapters(root / "four"), adapters(root / "resumed")
    assert all(torch.equal(whole[k], resumed[k]) for k in whole)
    assert json.loads((root / "resumed" / "train_log.json").read_text())["losses"] == \
        json.loads((root / "four" / "train_log.json").read_text())["losses"]
    assert main(finetune(root / "bad", "--steps", "4", "--resume", str(root / "two"), "--seed", "1")) == 2


def test_a_resumed_cosine_run_takes_the_rates_of_one_run(run):
    root, finetune = run
    cosine = ("--schedule", "cosine", "--warmup-steps", "1")
    assert main(finetune(root / "cos4", "--steps", "4", *cosine)) == 0
    assert main(finetune(root / "cos2", "--steps", "2", *cosine)) == 0
    assert main(finetune(root / "cos_resumed", "--steps", "4", "--resume", str(root / "cos2"), *cosine)) == 0
    whole, resumed = (json.loads((root / d / "train_log.json").read_text()) for d in ("cos4", "cos_resumed"))
    assert whole["schedule"] == "cosine" and whole["warmup_steps"] == 1
    assert whole["learning_rates"][0] == 1e-2 and 0 < whole["learning_rates"][3] < whole["learning_rates"][2] < 1e-2
    assert resumed["learning_rates"][2:] == whole["learning_rates"][2:]


def test_learning_rate_schedules():
    assert [learning_rate(s, 4, 1.0) for s in range(4)] == [1.0] * 4
    assert [learning_rate(s, 4, 1.0, warmup_steps=2) for s in range(4)] == [0.5, 1.0, 1.0, 1.0]
    rates = [learning_rate(s, 10, 2.0, "cosine", warmup_steps=2) for s in range(10)]
    assert rates[:3] == [1.0, 2.0, 2.0] and rates[-1] > 0 and all(a > b for a, b in zip(rates[2:], rates[3:]))
    assert learning_rate(6, 10, 2.0, "cosine", 2) == pytest.approx(1.0)  # half-way through the cosine
    with pytest.raises(ValueError, match="unknown learning-rate schedule 'linear'"):
        learning_rate(0, 10, 1.0, "linear")


def test_two_processes_train_the_one_process_adapters(run):
    """torchrun with 2 processes (gloo): each takes half of every global batch; DDP averages the
    gradients. Same seed and data: the same losses and adapters, up to float rounding."""
    root, finetune = run
    common = ["--steps", "3", "--gradient-checkpointing"]
    assert main(finetune(root / "one", *common)) == 0
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "-m", "minigemma",
               *finetune(root / "two_procs", *common)]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    one = json.loads((root / "one" / "train_log.json").read_text())
    two = json.loads((root / "two_procs" / "train_log.json").read_text())
    assert one["world_size"] == 1 and two["world_size"] == 2
    torch.testing.assert_close(torch.tensor(two["losses"]), torch.tensor(one["losses"]), rtol=1e-5, atol=1e-6)
    a, b = adapters(root / "one"), adapters(root / "two_procs")
    assert a.keys() == b.keys()
    for k in a:
        assert (a[k] - b[k]).norm() <= 1e-3 * a[k].norm(), k


def test_finetune_checks_its_options(run, capsys):
    root, finetune = run
    assert main(finetune(root / "x", "--steps", "0")) == 2
    assert "--steps must be at least 1" in capsys.readouterr().err
    assert main(["finetune", "--data", str(root / "missing.jsonl"), "--out", str(root / "x")]) == 2
    assert "missing.jsonl does not exist" in capsys.readouterr().err
    assert main(finetune(root / "x", "--batch-size", "9")) == 2
    assert "batch size 9 is larger than the data set (8 examples)" in capsys.readouterr().err
