"""Reading Gemma's conversation format back: one grammar, for whole texts and for streams.

``Reader`` is the grammar. It reads text incrementally (``feed`` any piece, ``close`` at the end)
and reports what it is certain of as events, holding back only a tail that may still grow into
a tag. The structure it accepts:

* paired tags ``<|turn>ROLE\\n``, ``<|channel>thought\\n``, ``<|tool>``, ``<|tool_call>``,
  ``<|tool_response>`` and standalone markers ``<|think|>``, ``<|image|>``, ``<|audio|>``;
* each place holds only what it may (``HOLDS``): a system turn ``<|think|>`` and declarations, a
  user turn media, a model turn thoughts, calls, responses and media, a thought media;
* ``<|tool>``, ``<|tool_call>``, ``<|tool_response>`` hold ``KIND:NAME{...}`` text only;
* a tag still open at the end of the text is closed there, as ``dialog``'s grammar does
  (``unclosed_tag``): generation may stop mid-turn, and an unterminated but complete
  ``<|tool_call>call:add{a:2}`` is a call; an unterminated incomplete one is an error (its value
  is cut). A ``<|tool_response>`` left empty at the end means the turn waits for a tool.

``parse`` is a ``StreamParser`` fed the whole text at once, so the two give one answer;
``parse_conversation`` reads a whole rendered conversation with the same ``Reader``.
"""

import re

from .chat_tags import CHAT_MEDIA, MARKERS, TURN_OPEN, ChatFormatError, check_format, from_gemma3
from .chat_values import parse_value

_TAG = re.compile(r"<\|(\w+)>|<(\w+)\|>|<\|(\w+)\|>")  # not <|"|>: that belongs to values
_PARTIAL_TAG = re.compile(r"<\|?\w*\|?")
_LONGEST_TAG = 32  # a longer tail cannot be the start of a tag: emit it
ROLES = ("system", "user", "model")
BODIES = {"tool": "declaration", "tool_call": "call", "tool_response": "response"}  # tag -> KIND
CLOSED = {"turn", "channel"} | set(BODIES)
STANDALONE = {"think"} | set(CHAT_MEDIA)
HOLDS = {"root": {"turn"}, "system": {"think", "tool"}, "user": set(CHAT_MEDIA),
         "model": {"channel", "tool_call", "tool_response"} | set(CHAT_MEDIA), "channel": set(CHAT_MEDIA)}
PLACE_NAMES = {"root": "a conversation (only <|turn> tags)", "system": "the system turn", "user": "a user turn",
               "model": "a model turn", "channel": "a thought"}
EMPTY = {"role": "assistant", "content": "", "reasoning": None, "tool_calls": []}


def _hold(text):
    """Length of the tail of ``text`` that could still grow into a tag."""
    i = text.rfind("<", max(0, len(text) - _LONGEST_TAG))
    return len(text) - i if i >= 0 and _PARTIAL_TAG.fullmatch(text, i) else 0


def _tool_body(tag, text):
    """``call:NAME{...}`` (the text of a <|tool_call>) -> (NAME, dict)."""
    kind = BODIES[tag]
    m = re.match(r"(\w+):([ a-zA-Z0-9_:'\"/\\.()-]+)(?=\{)", text)
    if m is None:
        raise ChatFormatError(f"<|{tag}> must start with '{kind}:NAME{{', got {text[:40]!r}")
    if m.group(1) != kind:
        raise ChatFormatError(f"<|{tag}> holds a {m.group(1)!r}, expected '{kind}:'")
    body = text[m.end():]
    try:
        value = parse_value(body)
    except ChatFormatError as e:
        raise ChatFormatError(f"malformed {kind} of {m.group(2)!r}: {e}") from None
    if not isinstance(value, dict):
        raise ChatFormatError(f"the {kind} of {m.group(2)!r} must be an object {{...}}, got {body[:40]!r}")
    return m.group(2), value


class _Open:
    """An open tag: ``head`` collects ``ROLE\\n`` until it is read (None after), ``body`` the text
    of a tool tag."""

    def __init__(self, tag, role=None, head=None):
        self.tag, self.role, self.head, self.body = tag, role, head, []

    @property
    def place(self):
        return self.role if self.tag == "turn" else self.tag


class Reader:
    """The grammar, read incrementally: ``feed(text)`` and ``close()`` return events.

    Events: ("turn", role), ("text", str), ("media", "image" | "audio"), ("think", None),
    ("channel", None) then ("thought", str)..., ("tool", {"name", ...declaration}),
    ("tool_call", {"name", "arguments"}), ("tool_response", {"role": "tool", "name", "content"}).
    ``in_model_turn``: the text starts inside a model turn (what a model writes after
    ``<|turn>model\\n``).
    """

    def __init__(self, in_model_turn=False):
        self.stack = [_Open("root")] + ([_Open("turn", role="model")] if in_model_turn else [])
        self.in_model_turn = in_model_turn
        self.pending = ""  # text fed but not read yet
        self.offset = 0  # characters read before ``pending`` (for error messages)

    def feed(self, text) -> list:
        self.pending += text
        return self._read(final=False)

    def close(self) -> list:
        events = self._read(final=True)
        while len(self.stack) > 1:  # tags open at the end close there
            events += self._end(at_end=True)
        return events

    def _read(self, final):
        out = []
        while True:
            m = _TAG.search(self.pending)
            stop = m.start() if m else len(self.pending) - (0 if final else _hold(self.pending))
            if stop > 0:
                self._text(self.pending[:stop], out)
                self.pending, self.offset = self.pending[stop:], self.offset + stop
            if m is None:
                return out
            at, n = self.offset, m.end() - m.start()
            self.pending, self.offset = self.pending[n:], self.offset + n
            self._tag(m.group(), *m.groups(), at, out)

    def _text(self, s, out):
        top = self.stack[-1]
        if top.head is not None:  # still reading "ROLE\n"
            top.head += s
            if "\n" not in top.head:
                return
            head, s = top.head.split("\n", 1)
            top.head = None
            out.append(self._start(top, head))
            if not s:
                return
        if top.tag == "root":
            if s.strip():
                where = self.offset + len(s) - len(s.lstrip())
                raise ChatFormatError(f"text outside a turn at character {where}: {s.strip()[:40]!r}")
        elif top.tag in BODIES:
            top.body.append(s)
        else:
            out.append(("thought" if top.tag == "channel" else "text", s))

    @staticmethod
    def _start(top, head):
        """The role of a turn or channel is read: check it."""
        if not re.fullmatch(r"\w+", head):
            raise ChatFormatError(f"invalid role {head!r} after <|{top.tag}>")
        if top.tag == "channel":
            if head != "thought":
                raise ChatFormatError(f"unknown channel {head!r} (only 'thought')")
            return ("channel", None)
        if head not in ROLES:
            raise ChatFormatError(f"unknown turn role {head!r} (expected system, user or model)")
        top.role = head
        return ("turn", head)

    def _tag(self, text, opened, closed, alone, at, out):
        top = self.stack[-1]
        if alone is not None and alone not in STANDALONE:
            raise ChatFormatError(f"unknown token {text!r}")
        if alone is None and (opened or closed) not in CLOSED:
            raise ChatFormatError(f"unknown tag {text!r}")
        if closed is not None:
            if top.tag != closed:
                where = "nothing is open" if len(self.stack) == 1 else f"the open tag is <|{top.tag}>"
                raise ChatFormatError(f"{text!r} at character {at} does not close anything: {where}")
            out += self._end(at_end=False)
            return
        if top.head is not None:
            raise self._no_role(top.tag)
        if top.tag in BODIES:
            raise ChatFormatError(f"<|{top.tag}> must hold '{BODIES[top.tag]}:NAME{{...}}' text only, found {text!r}")
        if (opened or alone) not in HOLDS[top.place]:
            raise ChatFormatError(f"unexpected {text!r} in {PLACE_NAMES[top.place]}")
        if alone == "think":
            out.append(("think", None))
        elif alone is not None:
            out.append(("thought", MARKERS[alone]) if top.tag == "channel" else ("media", alone))
        else:
            self.stack.append(_Open(opened, head="" if opened in ("turn", "channel") else None))

    @staticmethod
    def _no_role(tag):
        example = "thought" if tag == "channel" else "model"
        return ChatFormatError(f"<|{tag}> must be followed by a role and a newline (e.g. '<|{tag}>{example}\\n')")

    def _end(self, at_end):
        top = self.stack.pop()
        if top.head is not None:
            raise self._no_role(top.tag)
        if top.tag not in BODIES:
            return []
        body = "".join(top.body)
        if at_end and top.tag == "tool_response" and not body:
            return []  # the turn waits for a tool's answer
        name, value = _tool_body(top.tag, body)
        if top.tag == "tool_call":
            return [("tool_call", {"name": name, "arguments": value})]
        if top.tag == "tool":
            return [("tool", {"name": name, **value})]
        return [("tool_response", {"role": "tool", "name": name, "content": value})]


def _turns(events, first=None):
    """Events -> [(role, [events of that turn])]; ``first``: the role of a turn already open."""
    turns = [(first, [])] if first else []
    for kind, value in events:
        if kind == "turn":
            turns.append((value, []))
        else:
            turns[-1][1].append((kind, value))
    return turns


def _model_messages(events):
    """The events of one model turn -> assistant and tool messages (a new assistant message starts
    after each run of tool responses)."""
    messages = []

    def assistant():
        if not messages or messages[-1]["role"] != "assistant":
            messages.append({**EMPTY, "tool_calls": []})
        return messages[-1]

    for kind, value in events:
        if kind in ("text", "media"):
            assistant()["content"] += MARKERS[value] if kind == "media" else value
        elif kind in ("channel", "thought"):
            a = assistant()
            a["reasoning"] = (a["reasoning"] or "") + (value or "")
        elif kind == "tool_call":
            assistant()["tool_calls"].append(value)
        elif kind == "tool_response":
            messages.append(value)
    return messages


def _user_content(events):
    """Text, or a list of parts when the turn holds media (adjacent texts merged)."""
    if all(kind == "text" for kind, _ in events):
        return "".join(value for _, value in events)
    parts = []
    for kind, value in events:
        if kind == "media":
            parts.append({"type": value})
        elif parts and parts[-1]["type"] == "text":
            parts[-1]["text"] += value
        else:
            parts.append({"type": "text", "text": value})
    return parts


def _system(events, out):
    """The system turn's events -> its message (if it holds text, or nothing else), tools, thinking."""
    text = "".join(value for kind, value in events if kind == "text")
    out["tools"] += [value for kind, value in events if kind == "tool"]
    out["thinking"] = any(kind == "think" for kind, _ in events)
    if text or all(kind == "text" for kind, _ in events):
        out["messages"].append({"role": "system", "content": text})


def parse_conversation(text, format="gemma4") -> dict:
    """A rendered conversation -> ``{"messages": [...], "tools": [...], "thinking": bool}``.

    The inverse of ``render``: tool declarations come back normalised (upper-case types, sorted keys).
    """
    check_format(format)
    reader = Reader()
    events = reader.feed(from_gemma3(text) if format == "gemma3" else text) + reader.close()
    out = {"messages": [], "tools": [], "thinking": False}
    turns = _turns(events)
    for i, (role, turn) in enumerate(turns):
        if role == "system":
            _system(turn, out)
        elif role == "user":
            out["messages"].append({"role": "user", "content": _user_content(turn)})
        else:
            new = _model_messages(turn)
            if not new and i == len(turns) - 1:
                continue  # the empty generation prompt
            out["messages"] += new or [dict(EMPTY)]
    return out


class StreamParser:
    """Feed generated text piece by piece; get events as soon as they are certain.

    ``feed(text)`` returns a list of ``("text", str)``, ``("thought", str)`` and
    ``("tool_call", {"name", "arguments"})`` events (a media marker is text); ``close()`` returns
    the last events and sets ``.message`` to the assistant message of everything fed. Text that
    might be the start of a tag (e.g. a trailing ``<|tool``) is held back until it is not.
    """

    def __init__(self, format="gemma4"):
        check_format(format)
        self.format = format
        self.message = None
        self._raw = ""  # everything fed, as written
        self._given = 0  # characters (in Gemma 4 spelling) given to the reader
        self._reader = None  # made when we know whether the text starts with <|turn>
        self._events = []

    def feed(self, piece) -> list:
        self._raw += piece
        return self._advance(final=False)

    def close(self) -> list:
        events = self._advance(final=True) + self._reader.close()
        self._events += events
        self.message = self._message()
        return _public(events)

    def _advance(self, final):
        text = self._raw
        if self.format == "gemma3":
            text = from_gemma3(text)
            cut = text.rfind("<")
            if not final and cut >= 0 and ">" not in text[cut:]:  # a partial Gemma 3 name must wait
                text = text[:cut]
        if self._reader is None:
            if not final and len(text) < len(TURN_OPEN) and TURN_OPEN.startswith(text):
                return []  # may still become <|turn>
            self._reader = Reader(in_model_turn=not text.startswith(TURN_OPEN))
        events = self._reader.feed(text[self._given:])
        self._given = len(text)
        self._events += events
        return _public(events)

    def _message(self):
        turns = _turns(self._events, first="model" if self._reader.in_model_turn else None)
        if len(turns) != 1:
            raise ChatFormatError(f"expected exactly one model turn, got {len(turns)} turns")
        role, events = turns[0]
        if role != "model":
            raise ChatFormatError(f"expected a model turn, got a {role!r} turn")
        messages = _model_messages(events) or [dict(EMPTY)]
        if len(messages) > 1 or messages[0]["role"] != "assistant":
            raise ChatFormatError("this model turn holds tool responses: read it with parse_conversation")
        return messages[0]


def _public(events):
    """The events a stream's reader sees: text (media markers included), thoughts, tool calls."""
    out = []
    for kind, value in events:
        if kind == "media":
            out.append(("text", MARKERS[value]))
        elif kind in ("text", "thought", "tool_call"):
            out.append((kind, value))
    return out


def parse(text, format="gemma4") -> dict:
    """One model turn (what the model wrote after ``<|turn>model\\n``) -> an assistant message
    ``{"role": "assistant", "content": str, "reasoning": str | None, "tool_calls": [...]}``.

    The text may start with ``<|turn>model\\n`` and end with ``<turn|>`` or ``<|tool_response>``.
    """
    parser = StreamParser(format)
    parser.feed(text)
    parser.close()
    return parser.message
