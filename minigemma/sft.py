"""Supervised fine-tuning data: conversations -> token ids and the labels the loss reads.

A data set is a JSONL file, one example a line, in one of two shapes:

    {"messages": [{"role": "user", ...}, {"role": "assistant", ...}], "tools": [...]}   # a chat
    {"text": "Once upon a time ..."}                                                    # plain text

A chat is rendered exactly as ``chat()`` would show it to the model (``chat_render.render``, the
model family's spelling), and the model learns *only its own turns*: the tokens after
``<|turn>model\\n`` through the turn's closing ``<turn|>`` (so it learns to stop), but not what a
tool answered inside the turn (``<|tool_response>`` opens it: the model writes that marker, the
tool writes the rest). The spans are found in the rendered *text* (a base Gemma 3 vocabulary spells
``<start_function_call>`` and its kin as several ordinary pieces, not one token), then mapped to
the tokens that start inside them. The system and user turns are context, not targets. Plain text learns
every token.

Each example becomes ``ids`` (T,) and ``targets`` (T,): ``targets[t]`` is the token the model should
predict at position t (``ids[t + 1]``), or ``IGNORE`` where there is nothing to learn. An example
longer than ``max_length`` is cut (and counted, so the caller can say so).
"""

import json
from dataclasses import dataclass
from pathlib import Path

from .chat_render import render
from .chat_tags import GEMMA3_NAMES, RESPONSE_CLOSE, RESPONSE_OPEN, TURN_CLOSE, TURN_OPEN, chat_format
from .tokenizer import BYTE, SPACE

IGNORE = -100  # a target the loss skips (PyTorch's cross_entropy default ignore_index)


@dataclass
class Example:
    ids: list  # (T,) token ids, <bos> first
    targets: list  # (T,) next-token targets, IGNORE where the loss does not look
    truncated: bool = False

    @property
    def labelled(self) -> int:
        return sum(t != IGNORE for t in self.targets)


def read_jsonl(path) -> list:
    """Read a JSONL data set -> list of dicts; a malformed line is an error naming its number."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such data file")
    examples = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}, line {n}: not valid JSON ({e.msg} at column {e.colno})") from None
        if not isinstance(item, dict) or ("messages" in item) == ("text" in item):
            raise ValueError(f"{path}, line {n}: expected an object with either \"messages\" (a chat) or \"text\"")
        if "text" in item and not isinstance(item["text"], str):
            raise ValueError(f"{path}, line {n}: \"text\" must be a string")
        if "messages" in item and (not isinstance(item["messages"], list) or not item["messages"]):
            raise ValueError(f"{path}, line {n}: \"messages\" must be a non-empty list of messages")
        if not isinstance(item.get("tools", []), list):
            raise ValueError(f"{path}, line {n}: \"tools\" must be a list of tool declarations")
        unknown = set(item) - {"messages", "tools", "text"}
        if unknown:
            raise ValueError(f"{path}, line {n}: unknown field(s) {sorted(unknown)} (expected messages, tools or text)")
        item["line"] = n
        examples.append(item)
    if not examples:
        raise ValueError(f"{path}: no examples")
    return examples


def model_spans(text, format) -> list:
    """The rendered conversation -> [(start, end)] character spans the model wrote: each model turn
    from after ``model\n`` through its closing tag, minus the inside of its tool responses."""
    turn_open, turn_close, response_open, response_close = (
        (GEMMA3_NAMES[t] if format == "gemma3" else t) for t in (TURN_OPEN, TURN_CLOSE, RESPONSE_OPEN, RESPONSE_CLOSE))
    header = turn_open + "model\n"
    spans, at = [], text.find(header)
    while at >= 0:
        start = at + len(header)
        end = text.find(turn_close, start)
        end = len(text) if end < 0 else end + len(turn_close)
        while True:  # cut the tool responses out: the model writes the opening marker, the tool the rest
            r = text.find(response_open, start, end)
            if r < 0:
                break
            spans.append((start, r + len(response_open)))
            close = text.find(response_close, r, end)
            start = end if close < 0 else close + len(response_close)
        spans.append((start, end))
        at = text.find(header, end)
    return [(s, e) for s, e in spans if e > s]


def token_offsets(tokenizer, ids) -> list:
    """ids -> the UTF-8 byte offset where each token starts in the decoded text (Gemma's tokenizer
    neither normalises nor adds a prefix space, so the pieces spell the text exactly)."""
    offsets, at = [], 0
    for i in ids:
        offsets.append(at)
        piece = tokenizer.pieces[i]
        at += 1 if tokenizer.types[i] == BYTE else len(piece.replace(SPACE, " ").encode("utf-8"))
    return offsets


def model_turn_mask(tokenizer, text, ids, format) -> list:
    """One bool per token of ``ids`` (the encoding of ``text``): True where the model wrote it."""
    data = text.encode("utf-8")
    offsets = token_offsets(tokenizer, ids)
    starts = [len(text[:s].encode("utf-8")) for s, _ in model_spans(text, format)]
    ends = [len(text[:e].encode("utf-8")) for _, e in model_spans(text, format)]
    if tokenizer.decode(ids).encode("utf-8") != data:
        raise ValueError("the tokenizer does not spell the rendered text back exactly; cannot place the labels")
    return [any(s <= o < e for s, e in zip(starts, ends)) for o in offsets]


def tokenize(tokenizer, item, max_length=None, format=None) -> Example:
    """One data-set item (a chat or a text) -> an ``Example`` with its targets."""
    if "text" in item:
        ids = [tokenizer.bos_id] + tokenizer.encode(item["text"])
        learn = [True] * len(ids)
    else:
        format = format or chat_format(tokenizer)
        text = render(item["messages"], tools=item.get("tools") or None, add_generation_prompt=False, format=format)
        if any(marker in text for marker in ("<|image|>", "<|audio|>", "<|video|>")):
            raise ValueError(f"line {item.get('line', '?')}: images and audio are not supported in fine-tuning "
                             "data (text conversations only)")
        body = tokenizer.encode(text)
        ids = [tokenizer.bos_id] + body
        learn = [False] + model_turn_mask(tokenizer, text, body, format)
        if not any(learn):
            raise ValueError(f"line {item.get('line', '?')}: the conversation has no assistant turn to learn from")
    truncated = max_length is not None and len(ids) > max_length
    if truncated:
        ids, learn = ids[:max_length], learn[:max_length]
    targets = [ids[t + 1] if learn[t + 1] else IGNORE for t in range(len(ids) - 1)] + [IGNORE]
    return Example(ids, targets, truncated)
