"""Score a model on tool calls: does it call the right tool with exactly the right arguments?

Course code for turning Gemma 3 270M into a tiny "FunctionGemma" (Google's FunctionGemma is this
same 270M fine-tuned on tool calls written in Gemma 3's spelling of the Gemma 4 chat format, which
``render(..., format="gemma3")`` writes). The examples are ``data/tool_calls/train.jsonl`` and
``heldout.jsonl`` (written by ``data/tool_calls/make.py``): per line a user request, the tools on
offer and the assistant's one call.

``accuracy`` renders each conversation up to the assistant's turn, lets the model write greedily
and reads the turn back. It does what ``minigemma.chat.chat`` does (render, ``generate`` with
chat's two stop strings, parse) in two visible steps, so that the raw text of every answer is
kept: ``chat`` returns the parsed message only, and raises on text it cannot parse.

Course code, not part of the ``minigemma`` package; notebooks import it from ``notebooks/``,
tests with ``notebooks/`` on sys.path.
"""

import json
import time
from pathlib import Path

from tqdm.auto import tqdm

from minigemma.chat_parse import parse
from minigemma.chat_render import render
from minigemma.chat_tags import GEMMA3_NAMES, RESPONSE_OPEN, TURN_CLOSE, ChatFormatError, to_gemma3
from minigemma.chat_tools import render_call
from minigemma.generate import generate

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "data" / "tool_calls"
STOPS = [GEMMA3_NAMES[TURN_CLOSE], GEMMA3_NAMES[RESPONSE_OPEN]]  # where chat() stops a gemma3 turn
# The longest expected call in train.jsonl and heldout.jsonl, in tokens of the 270M's vocabulary,
# from <start_function_call> to <end_function_call> (``longest_call``; a test keeps them equal).
# A turn cut right after its call still parses, so the model needs no room for the stop.
MAX_NEW_TOKENS = 60


def read_jsonl(path) -> list:
    """One JSON value per non-empty line -> a list."""
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def expected_call(example) -> dict:
    """The assistant's call of an example: {"name", "arguments"}."""
    call = example["messages"][-1]["tool_calls"][0]
    call = call.get("function", call)
    return {"name": call["name"], "arguments": call["arguments"]}


def prompt(example) -> str:
    """The conversation before the assistant's turn, with a model turn opened (gemma3 spelling)."""
    return render(example["messages"][:-1], tools=example["tools"], format="gemma3")


def call_text(call) -> str:
    """A call as the model should write it: ``<start_function_call>call:NAME{...}<end_function_call>``."""
    return to_gemma3(render_call(call["name"], call["arguments"]))


def call_tokens(tokenizer, example) -> int:
    """Tokens of the expected call (``make.py`` checks that the prompt's tokens followed by the
    answer's are the tokens of the whole conversation, so these are the tokens the model writes)."""
    return len(tokenizer.encode(call_text(expected_call(example))))


def longest_call(tokenizer, examples) -> int:
    return max(call_tokens(tokenizer, ex) for ex in examples)


def same_value(a, b) -> bool:
    """JSON equality: numbers by value (3 == 3.0), but a boolean, number and string never match."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return a == b
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same_value(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same_value(x, y) for x, y in zip(a, b))
    return type(a) is type(b) and a == b


def is_correct(expected, calls) -> bool:
    """Exactly one call, of the expected tool, with exactly the expected arguments.

    Same keys (an optional argument the user did not mention must be left out, a required one
    given), strings equal character for character (case and spaces too), booleans ``true`` /
    ``false`` only, numbers by value: ``3`` and ``3.0`` match, since Gemma's notation writes the
    float 3.0 as ``3`` (so a call cannot tell them apart) and JSON Schema counts 3.0 as an integer;
    ``"3"`` never matches ``3``. Text around the call is allowed; text that does not parse is wrong.
    """
    return (calls is not None and len(calls) == 1 and calls[0]["name"] == expected["name"]
            and same_value(calls[0]["arguments"], expected["arguments"]))


def answer(model, tokenizer, example, max_new_tokens=MAX_NEW_TOKENS) -> str:
    """The raw text the model writes (greedy) after the example's prompt, stopped where chat() stops."""
    return generate(model, tokenizer, prompt(example), max_new_tokens=max_new_tokens, stop=STOPS)


def accuracy(model, tokenizer, examples, max_new_tokens=MAX_NEW_TOKENS, progress=True):
    """-> (fraction of examples answered with the exact expected call, one row per example).

    A row is {"expected": {"name", "arguments"}, "got": [calls] or None (unparsable), "raw": the
    text written, "error": the parse error or None, "correct": bool, "seconds": float}.
    """
    rows, right = [], 0
    bar = tqdm(examples, desc="tool calls", unit="example", disable=not progress)
    for example in bar:
        start = time.perf_counter()
        raw = answer(model, tokenizer, example, max_new_tokens)
        try:
            got, error = parse(raw, format="gemma3")["tool_calls"], None
        except ChatFormatError as e:
            got, error = None, str(e)
        want = expected_call(example)
        ok = is_correct(want, got)
        right += ok
        rows.append({"expected": want, "got": got, "raw": raw, "error": error, "correct": ok,
                     "seconds": time.perf_counter() - start})
        bar.set_postfix(correct=f"{right}/{len(rows)}")
    return right / max(len(rows), 1), rows


def summary(accuracy_value, rows, seconds) -> dict:
    """What results.json keeps of one model's run: the score, the time and every raw answer."""
    return {"accuracy": accuracy_value, "correct": sum(r["correct"] for r in rows), "examples": len(rows),
            "seconds": round(seconds, 1), "answers": [r["raw"] for r in rows], "right": [r["correct"] for r in rows]}


def main(argv=None):
    """``python notebooks/tool_calls.py [--adapter DIR] [--only base|tuned]``: score the base 270M and
    the 270M with the adapter on the held-out set; write ``data/tool_calls/results.json``."""
    import argparse

    import minigemma
    from minigemma.lora import load_adapter

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--adapter", default=str(DATA / "adapter"))
    parser.add_argument("--only", choices=("base", "tuned"), default=None, help="measure one, keep the other's")
    args = parser.parse_args(argv)
    out = DATA / "results.json"
    results = json.loads(out.read_text()) if out.exists() else {}
    examples = read_jsonl(DATA / "heldout.jsonl")
    for who in ("base", "tuned"):
        if args.only not in (None, who):
            continue
        model, tokenizer = minigemma.load("gemma3-270m", progress=False)
        if who == "tuned":
            load_adapter(model, args.adapter)
        start = time.perf_counter()
        value, rows = accuracy(model, tokenizer, examples)
        results[who] = summary(value, rows, time.perf_counter() - start)
        print(f"{who}: {results[who]['correct']}/{len(rows)} exact calls", flush=True)
    out.write_text(json.dumps(results, indent=1, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main()
