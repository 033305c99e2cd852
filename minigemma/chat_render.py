"""Rendering: Hugging Face / OpenAI style messages -> the text a Gemma model reads.

Equal to Google's reference renderer (``dialog`` 1.1.0) on every golden conversation in
``tests/golden/chat_golden.json``: turns ``<|turn>ROLE\\n ... <turn|>`` joined by newlines, the
assistant's role called ``model``, ``<|think|>`` and tool declarations at the start of the system
turn, tool responses inside the model turn that called them, consecutive turns of one role merged.
Left out on purpose: ``thinking=True`` with ``format="gemma3"`` is refused (Gemma 3 has no
thinking switch; ``dialog`` would write a literal ``<unusedXX>``).
"""

import json

from .chat_tags import (CHANNEL_CLOSE, CHANNEL_OPEN, CHAT_MEDIA, MARKERS, RESPONSE_OPEN, THINK, TURN_CLOSE, TURN_OPEN,
                        ChatFormatError, check_format, to_gemma3)
from .chat_tools import render_call, render_response, render_tool, tool_call

MESSAGE_KEYS = {
    "system": {"role", "content"},
    "user": {"role", "content"},
    "assistant": {"role", "content", "reasoning", "tool_calls"},
    "tool": {"role", "content", "name", "tool_call_id"},
}


def _content_text(message, n):
    """A message's content as text: a string, or a list of parts (text / image / audio)."""
    content = message.get("content")
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        out = []
        for part in content:
            kind = part.get("type") if isinstance(part, dict) else None
            if kind == "text" and isinstance(part.get("text"), str):
                out.append(part["text"])
            elif kind in CHAT_MEDIA:
                out.append(MARKERS[kind])
            else:
                raise ChatFormatError(f"message {n}: unsupported content part {part!r} "
                                      f"(expected type 'text', {', '.join(repr(k) for k in CHAT_MEDIA)})")
        return "".join(out)
    raise ChatFormatError(f"message {n}: content must be a string or a list of parts, got {type(content).__name__}")


def _tool_content(message, n):
    content = message.get("content")
    if isinstance(content, str):
        try:
            content = json.loads(content)
        except json.JSONDecodeError:
            raise ChatFormatError(f"message {n}: a tool message's content must be a dict or a JSON object "
                                  f"string, got the plain string {message['content']!r}") from None
    if not isinstance(content, dict):
        raise ChatFormatError(f"message {n}: a tool message's content must be a dict (a JSON object), got {content!r}")
    return content


def _check_message(m, n):
    if not isinstance(m, dict):
        raise ChatFormatError(f"message {n} must be a dict, got {type(m).__name__}")
    role = m.get("role")
    if role not in MESSAGE_KEYS:
        raise ChatFormatError(f"message {n}: unknown role {role!r} (expected one of {sorted(MESSAGE_KEYS)})")
    extra = set(m) - MESSAGE_KEYS[role]
    if extra:
        raise ChatFormatError(f"message {n} ({role}): unknown key(s) {sorted(extra)} "
                              f"(allowed: {sorted(MESSAGE_KEYS[role])})")
    if role == "system":
        raise ChatFormatError(f"message {n}: a system message must come first (only one is allowed)")
    return role


def _assistant_chunks(m, n):
    """An assistant message -> its chunks (thought, text, calls) and the names of its calls."""
    chunks = []
    if m.get("reasoning") is not None:
        if not isinstance(m["reasoning"], str):
            raise ChatFormatError(f"message {n}: 'reasoning' must be a string, got {m['reasoning']!r}")
        chunks.append(("text", f"{CHANNEL_OPEN}thought\n{m['reasoning']}{CHANNEL_CLOSE}"))
    chunks.append(("text", _content_text(m, n)))
    calls = [tool_call(c) for c in (m.get("tool_calls") or [])]
    chunks += [("call", render_call(name, args)) for name, args in calls]
    return chunks, [name for name, _ in calls]


def _tool_name(m, n, last_calls, n_answered):
    """The name a tool message answers: its own, or (OpenAI: ids only) the next unanswered call's."""
    if not last_calls:
        raise ChatFormatError(f"message {n}: a tool message must answer a tool call of the assistant "
                              f"message before it, and there is none")
    name = m.get("name")
    if name is None:
        if n_answered >= len(last_calls):
            raise ChatFormatError(f"message {n}: more tool messages than tool calls; give it a 'name'")
        name = last_calls[n_answered]
    if not isinstance(name, str) or not name:
        raise ChatFormatError(f"message {n}: a tool message's 'name' must be a non-empty string, got {name!r}")
    return name


def _turns(messages, tools, thinking):
    """Messages -> [[role, [(kind, text), ...]]], one entry per Gemma turn.

    kind is "text", "call" or "response" (rendering needs to know whether a turn ends with a call
    or starts with a response). Consecutive turns of the same role are merged, as ``dialog`` does.
    """
    if not isinstance(messages, (list, tuple)):
        raise ChatFormatError(f"messages must be a list of dicts, got {type(messages).__name__}")
    rest = list(messages)
    system = [("text", THINK)] if thinking else []
    start = 1 if rest and isinstance(rest[0], dict) and rest[0].get("role") == "system" else 0
    if start:
        system.append(("text", _content_text(rest[0], 0)))
    system += [("text", render_tool(t)) for t in (tools or [])]
    turns = [["system", system]] if system or start else []
    last_calls, n_answered = None, 0  # the calls of the latest assistant message, answered in order
    for n, m in enumerate(rest[start:], start):
        role = _check_message(m, n)
        if role == "user":
            chunks, gemma_role, last_calls = [("text", _content_text(m, n))], "user", None
        elif role == "assistant":
            (chunks, last_calls), gemma_role, n_answered = _assistant_chunks(m, n), "model", 0
        else:
            name = _tool_name(m, n, last_calls, n_answered)
            chunks, gemma_role = [("response", render_response(name, _tool_content(m, n)))], "model"
            n_answered += 1
        if turns and turns[-1][0] == gemma_role:
            turns[-1][1] += chunks
        else:
            turns.append([gemma_role, chunks])
    return turns


def _open_text(turns):
    """The inference form: the last model turn left open (or a new one opened) for the model."""
    if turns[-1][0] != "model":
        turns.append(["model", []])
    texts = []
    for i, (role, chunks) in enumerate(turns):
        body = "".join(text for _, text in chunks)
        if i == 0 and role == "model":  # a conversation that starts inside a model turn
            text = body.removeprefix(RESPONSE_OPEN) if chunks and chunks[0][0] == "response" else body
        else:
            text = f"{TURN_OPEN}{role}\n{body}"
        if i < len(turns) - 1:
            text += TURN_CLOSE
        elif chunks and chunks[-1][0] == "call":  # the model's call waits for its response
            text += RESPONSE_OPEN
        texts.append(text)
    return "\n".join(texts)


def render(messages, tools=None, thinking=False, add_generation_prompt=True, format="gemma4") -> str:
    """Messages (Hugging Face / OpenAI shape) -> the prompt text, equal to ``dialog``'s.

    ``add_generation_prompt=True`` is ``dialog``'s ``as_text()``: it leaves a model turn open at the
    end (a new ``<|turn>model\\n``, or the last model turn itself, followed by ``<|tool_response>``
    if it ends with a call). ``False`` is ``as_text(training=True)``: every turn closed.
    ``format="gemma3"``: the same Gemma 4 structure with Gemma 3 token names, FunctionGemma's format
    (not Gemma 3's own template, which has no system turn; see ``chat_tags.py``).
    """
    check_format(format)
    if thinking and format == "gemma3":
        raise ChatFormatError("thinking=True needs format='gemma4': Gemma 3 has no thinking switch")
    turns = _turns(messages, tools, thinking)
    if not turns:
        return ""
    if add_generation_prompt:
        text = _open_text(turns)
    else:
        text = "\n".join(f"{TURN_OPEN}{role}\n{''.join(t for _, t in chunks)}{TURN_CLOSE}" for role, chunks in turns)
    return to_gemma3(text) if format == "gemma3" else text
