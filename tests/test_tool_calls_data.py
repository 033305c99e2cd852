"""The tool-calling data set (data/tool_calls/) and its scorer (notebooks/tool_calls.py).

The scorer is tested with a scripted stand-in model that writes a chosen text after each prompt,
so the real generation, stop and parsing path runs without the real model's cost.
"""

import importlib.util
import sys
from types import SimpleNamespace

import pytest
import torch

from minigemma import chat
from minigemma.chat_parse import parse
from minigemma.chat_render import render
from minigemma.chat_tags import GEMMA3_NAMES, TURN_CLOSE
from minigemma.tokenizer import Tokenizer
from minigemma.weights import resolve

from .conftest import DATA, ROOT

sys.path.insert(0, str(ROOT / "notebooks"))  # the course code
import tool_calls  # noqa: E402

SPLITS = ("train", "heldout")


def _load_make():
    spec = importlib.util.spec_from_file_location("tool_calls_make", DATA / "tool_calls" / "make.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


make = _load_make()


@pytest.fixture(scope="module")
def tokenizer():
    return Tokenizer.from_file(resolve("gemma3-270m"))


@pytest.fixture(scope="module")
def splits():
    return {s: tool_calls.read_jsonl(tool_calls.DATA / f"{s}.jsonl") for s in SPLITS}


def test_committed_files_are_what_make_writes(tmp_path, tokenizer):
    lengths = make.write(tmp_path, tokenizer)  # also runs make.check on what it built
    for split in SPLITS:
        assert (tmp_path / f"{split}.jsonl").read_bytes() == (tool_calls.DATA / f"{split}.jsonl").read_bytes()
        assert all(make.MIN_TOKENS <= n <= make.MAX_TOKENS for n in lengths[split])


def test_sizes_tools_and_argument_types(splits):
    assert {s: len(splits[s]) for s in SPLITS} == make.SIZES
    for split in SPLITS:
        calls = [tool_calls.expected_call(ex) for ex in splits[split]]
        assert {c["name"] for c in calls} == set(make.TOOLS)
        assert all(2 <= len(ex["tools"]) <= 4 for ex in splits[split])
        assert len({tuple(t["function"]["name"] for t in ex["tools"]) for ex in splits[split]}) > 10
        values = [v for c in calls for v in c["arguments"].values()]
        assert {type(v) for v in values} == {str, int, float, bool}
        assert {True, False} <= {v for v in values if isinstance(v, bool)}


def test_every_line_renders_and_its_call_parses_back(splits):
    for split in SPLITS:
        for ex in splits[split]:
            full = render(ex["messages"], tools=ex["tools"], format="gemma3", add_generation_prompt=False)
            prompt = tool_calls.prompt(ex)
            assert full.startswith(prompt)
            got = parse(full[len(prompt):], format="gemma3")["tool_calls"]
            want = tool_calls.expected_call(ex)
            assert [make.typed(c) for c in got] == [make.typed(want)]  # types too: 3 is not 3.0


def test_heldout_values_and_phrasings_are_unseen(splits):
    seen = set().union(*(make.free_values(ex) for ex in splits["train"]))
    held = set().union(*(make.free_values(ex) for ex in splits["heldout"]))
    assert held and not seen & held
    for split in SPLITS:
        for ex in splits[split]:
            text, name = ex["messages"][-2]["content"], tool_calls.expected_call(ex)["name"]
            assert {s for s, _ in make.template_of(text, name)} == {split}, text


def test_max_new_tokens_is_the_longest_expected_call(splits, tokenizer):
    assert tool_calls.longest_call(tokenizer, splits["train"] + splits["heldout"]) == tool_calls.MAX_NEW_TOKENS


@pytest.mark.parametrize("a, b, same", [
    (3, 3, True), (3, 3.0, True), (2.5, 2.5, True), (3, "3", False), (True, 1, False), (1, True, False),
    (False, 0, False), (True, True, True), ("Paris", "paris", False), ("a", "a ", False), (None, None, True),
    ({"a": 1, "b": 2}, {"b": 2, "a": 1.0}, True), ({"a": 1}, {"a": 1, "b": None}, False), ([1, 2], [2, 1], False),
])
def test_same_value(a, b, same):
    assert tool_calls.same_value(a, b) is same


class Scripted(torch.nn.Module):
    """A stand-in model: after a known prompt it writes a fixed text, then <end_of_turn>."""

    def __init__(self, tokenizer, scripts):  # {prompt text: text to write}
        super().__init__()
        self.config = SimpleNamespace(max_position_embeddings=4096, num_hidden_layers=0)  # a cache of no layers
        self.dtype = torch.float32
        end = tokenizer.special[GEMMA3_NAMES[TURN_CLOSE]]
        self.scripts = {tuple(tokenizer.encode(p, add_bos=True)): tokenizer.encode(t) + [end] for p, t in scripts.items()}
        self.todo, self.last = [], 0
        self.logits = torch.zeros(1, 1, len(tokenizer.pieces))  # reused: a fresh 1 MB tensor per step is slow

    def forward(self, ids, cache=None, last_only=True):  # ids: (1, T) -> logits (1, 1, vocab)
        if ids.shape[1] > 1:  # the prompt
            self.todo = list(self.scripts[tuple(ids[0].tolist())])
        self.logits[0, 0, self.last] = 0.0
        self.last = self.todo.pop(0)
        self.logits[0, 0, self.last] = 1.0
        return self.logits


def _call(name, arguments):
    return tool_calls.call_text({"name": name, "arguments": arguments})


def test_accuracy_is_1_for_the_expected_calls_and_agrees_with_chat(splits, tokenizer):
    examples = splits["heldout"][:15]  # every tool; the stand-in costs ~0.1 s an example
    right = {tool_calls.prompt(ex): _call(**tool_calls.expected_call(ex)) for ex in examples}
    model = Scripted(tokenizer, right)
    fraction, rows = tool_calls.accuracy(model, tokenizer, examples, progress=False)
    assert fraction == 1.0 and all(r["correct"] and r["error"] is None for r in rows)
    for ex, row in zip(examples[:3], rows):
        message = chat.chat(model, tokenizer, ex["messages"][:-1], tools=ex["tools"], format="gemma3",
                            max_new_tokens=tool_calls.MAX_NEW_TOKENS)
        assert message["tool_calls"] == row["got"]


def test_a_whole_number_written_with_a_decimal_point_is_right(splits, tokenizer):
    example = next(ex for ex in splits["heldout"] if tool_calls.expected_call(ex)["name"] == "set_timer")
    call = tool_calls.expected_call(example)
    minutes = call["arguments"]["minutes"]
    text = _call(**call).replace(f"minutes:{minutes}", f"minutes:{minutes}.0")
    assert f"{minutes}.0" in text
    fraction, rows = tool_calls.accuracy(Scripted(tokenizer, {tool_calls.prompt(example): text}), tokenizer, [example],
                                         progress=False)
    assert fraction == 1.0 and rows[0]["got"][0]["arguments"]["minutes"] == float(minutes)


def _wrong(example, kind):
    """A wrong answer of the given kind to ``example``."""
    call = tool_calls.expected_call(example)
    name, args = call["name"], dict(call["arguments"])
    if kind == "other tool":
        return _call(next(t["function"]["name"] for t in example["tools"] if t["function"]["name"] != name), args)
    if kind == "value as a string":  # 3 -> "3", or if there is no number "Paris" -> "Paris " (a space more)
        key = next((k for k, v in args.items() if type(v) in (int, float)), next(iter(args)))
        args[key] = str(args[key]) if not isinstance(args[key], str) else args[key] + " "
        return _call(name, args)
    if kind == "extra argument":
        return _call(name, {**args, "note": ""})
    if kind == "two calls":
        return _call(name, args) * 2
    if kind == "no call":
        return "I'm a language model, I cannot do that."
    text = _call(name, args)  # "unparsable": cut inside the arguments
    return text[:text.rindex("}")]


KINDS = ["other tool", "value as a string", "extra argument", "two calls", "no call", "unparsable"]


def _has_number(example):
    return any(type(v) in (int, float) for v in tool_calls.expected_call(example)["arguments"].values())


def test_accuracy_is_0_for_wrong_calls(splits, tokenizer):
    examples, kinds = [], []
    for kind in KINDS:  # two examples of each kind; a number turned into a string for one
        fits = [ex for ex in splits["heldout"] if ex not in examples and (kind != "value as a string" or _has_number(ex))]
        examples, kinds = examples + fits[:2], kinds + [kind] * 2
    answers = [_wrong(ex, kind) for ex, kind in zip(examples, kinds)]
    model = Scripted(tokenizer, {tool_calls.prompt(ex): a for ex, a in zip(examples, answers)})
    fraction, rows = tool_calls.accuracy(model, tokenizer, examples, max_new_tokens=200, progress=False)  # 2 calls
    assert fraction == 0.0
    for kind, answer, row in zip(kinds, answers, rows):
        assert row["raw"] == answer and not row["correct"]
        assert (row["got"] is None) == (kind == "unparsable") == (row["error"] is not None), (kind, row)
