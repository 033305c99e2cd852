"""The Gemma 4 conversation format: render messages to the text a model reads, parse what it writes.

A chat model never sees "messages"; it sees one long string in which *tags* mark who speaks and
what kind of content follows. Gemma 4's tags come in pairs ``<|name>`` ... ``<name|>`` plus a few
standalone markers ``<|name|>``:

    <|turn>system\\n<|think|>You are terse.<|tool>declaration:add{...}<tool|><turn|>
    <|turn>user\\nWhat is 2+3?<turn|>
    <|turn>model\\n<|channel>thought\\nuse the tool<channel|><|tool_call>call:add{a:2,b:3}<tool_call|>
    <|tool_response>response:add{sum:5}<tool_response|>It is 5.<turn|>

* a **turn** is ``<|turn>ROLE\\n ... <turn|>`` with ROLE one of ``system``, ``user``, ``model``;
  turns are joined by a newline;
* **thinking** is switched on by ``<|think|>`` at the start of the system turn; the model then
  writes its reasoning in a ``<|channel>thought\\n ... <channel|>`` block before the answer;
* **tools** are declared in the system turn (``<|tool>declaration:NAME{...}<tool|>``), called by
  the model (``<|tool_call>call:NAME{...}<tool_call|>``) and answered *inside the same model
  turn* (``<|tool_response>response:NAME{...}<tool_response|>``), after which the model goes on;
* values are written in Gemma's own object notation: keys unquoted, strings between ``<|"|>``
  delimiters (so a string may hold quotes, braces, commas and newlines unescaped), no spaces.

``render`` turns Hugging Face / OpenAI style messages into that string and equals Google's
reference renderer (the ``dialog`` package, 1.1.0) on every golden conversation in
``tests/golden/chat_golden.json``; ``parse`` reads one model turn back, ``parse_conversation``
a whole rendered conversation, and ``StreamParser`` turns a stream of generated text into text,
thought and tool-call events. ``format="gemma3"`` writes the same conversation with Gemma 3's
tag names (``<start_of_turn>`` ...), as ``dialog`` does, for our real Gemma 3 270M.

Where we choose differently from ``dialog`` (each raises a clear error or is documented here):
non-finite floats are refused (JSON has no NaN); numbers with an exponent (``1e-05``, which
``dialog`` itself writes for small floats but cannot read back) are accepted by our parser;
``thinking=True`` with ``format="gemma3"`` is refused (Gemma 3 has no thinking switch; ``dialog``
would write a literal ``<unusedXX>``).
"""

import json
import math
import re

# The tags. Gemma 3 spells the same structure with different (single-token) names.
TURN_OPEN, TURN_CLOSE = "<|turn>", "<turn|>"
THINK = "<|think|>"
CHANNEL_OPEN, CHANNEL_CLOSE = "<|channel>", "<channel|>"
TOOL_OPEN, TOOL_CLOSE = "<|tool>", "<tool|>"
CALL_OPEN, CALL_CLOSE = "<|tool_call>", "<tool_call|>"
RESPONSE_OPEN, RESPONSE_CLOSE = "<|tool_response>", "<tool_response|>"
QUOTE = '<|"|>'

# Media placeholders: one marker per image / audio clip in a user message. The vision and audio
# encoders replace each marker by the encoder's soft tokens before the decoder runs.
PLACEHOLDERS = {"image": "<|image|>", "audio": "<|audio|>"}

GEMMA3_NAMES = {
    TURN_OPEN: "<start_of_turn>", TURN_CLOSE: "<end_of_turn>",
    TOOL_OPEN: "<start_function_declaration>", TOOL_CLOSE: "<end_function_declaration>",
    CALL_OPEN: "<start_function_call>", CALL_CLOSE: "<end_function_call>",
    RESPONSE_OPEN: "<start_function_response>", RESPONSE_CLOSE: "<end_function_response>",
    CHANNEL_OPEN: "<start_receiver>", CHANNEL_CLOSE: "<end_receiver>",
    QUOTE: "<escape>",
}
_TO_GEMMA3 = re.compile("|".join(re.escape(k) for k in sorted(GEMMA3_NAMES)))
_FROM_GEMMA3 = re.compile("|".join(re.escape(v) for v in sorted(GEMMA3_NAMES.values())))
_GEMMA3_BACK = {v: k for k, v in GEMMA3_NAMES.items()}

MESSAGE_KEYS = {
    "system": {"role", "content"},
    "user": {"role", "content"},
    "assistant": {"role", "content", "reasoning", "tool_calls"},
    "tool": {"role", "content", "name", "tool_call_id"},
}


class ChatFormatError(ValueError):
    """A conversation that cannot be rendered, or model output that cannot be parsed."""


# ---------------------------------------------------------------------------------------------
# Values: Gemma's object notation
# ---------------------------------------------------------------------------------------------

def format_value(value) -> str:
    """A JSON value in Gemma's notation: ``{key:<|"|>text<|"|>,n:1.5,ok:true,x:null,l:[1,2]}``."""
    if isinstance(value, str):
        return QUOTE + value + QUOTE
    if isinstance(value, dict):
        return "{" + ",".join(f"{k}:{format_value(v)}" for k, v in value.items()) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(format_value(v) for v in value) + "]"
    if isinstance(value, bool):  # before int: True is an int in Python
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ChatFormatError(f"cannot write the non-finite number {value} (JSON has no NaN/inf)")
        return str(int(value)) if value.is_integer() else repr(value)  # 1.0 is written 1
    if value is None:
        return "null"
    raise ChatFormatError(f"cannot write a value of type {type(value).__name__}: {value!r} (JSON values only)")


_NUMBER = re.compile(r"-?\d+(\.\d+)?([eE][-+]?\d+)?")
_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def parse_value(text: str):
    """Inverse of ``format_value`` for a whole string (no spaces, as Gemma writes it)."""
    value, end = _parse_value(text, 0)
    if end != len(text):
        raise ChatFormatError(f"unexpected {text[end:end + 20]!r} after a complete value in {text!r}")
    return value


def _parse_value(text, i):
    """Parse one value starting at ``text[i]``; return (value, index after it)."""
    if text.startswith(QUOTE, i):
        end = text.find(QUOTE, i + len(QUOTE))
        if end < 0:
            raise ChatFormatError(f"unclosed string (no closing {QUOTE}) at {text[i:i + 30]!r}")
        return text[i + len(QUOTE):end], end + len(QUOTE)
    c = text[i:i + 1]
    if c in ("{", "["):
        close = "}" if c == "{" else "]"
        out = {} if c == "{" else []
        i += 1
        if text[i:i + 1] == close:
            return out, i + 1
        while True:
            if c == "{":
                key = _KEY.match(text, i)
                if key is None or text[key.end():key.end() + 1] != ":":
                    raise ChatFormatError(f"expected a key and ':' at {text[i:i + 30]!r}")
                value, i = _parse_value(text, key.end() + 1)
                out[key.group()] = value
            else:
                value, i = _parse_value(text, i)
                out.append(value)
            if text[i:i + 1] == ",":
                i += 1
            elif text[i:i + 1] == close:
                return out, i + 1
            else:
                raise ChatFormatError(f"expected ',' or {close!r} at {text[i:i + 30]!r}" if i < len(text)
                                      else f"unexpected end of text, expected ',' or {close!r}")
    for word, value in (("true", True), ("false", False), ("null", None)):
        if text.startswith(word, i):
            return value, i + len(word)
    number = _NUMBER.match(text, i)
    if number:
        s = number.group()
        return (float(s) if any(ch in s for ch in ".eE") else int(s)), number.end()
    raise ChatFormatError(f"expected a value at {text[i:i + 30]!r}" if i < len(text) else "unexpected end of text, expected a value")


# ---------------------------------------------------------------------------------------------
# Tool declarations: JSON schema -> Gemma's normalised form
# ---------------------------------------------------------------------------------------------

def _normalise_schema(schema, where):
    """Upper-case the types, recursively (``dialog``/Gemma's convention), drop ``$schema``."""
    if not isinstance(schema, dict):
        raise ChatFormatError(f"{where}: a schema must be a dict, got {type(schema).__name__}: {schema!r}")
    schema = {k: v for k, v in schema.items() if k != "$schema"}
    if "type" in schema:
        t = schema["type"]
        if isinstance(t, str):
            schema["type"] = t.upper()
        elif isinstance(t, list) and all(isinstance(x, str) for x in t):
            schema["type"] = [x.upper() for x in t]
        else:
            raise ChatFormatError(f"{where}: 'type' must be a string or a list of strings, got {t!r}")
    if "properties" in schema:
        if not isinstance(schema["properties"], dict):
            raise ChatFormatError(f"{where}: 'properties' must be a dict, got {schema['properties']!r}")
        schema["properties"] = {k: _normalise_schema(v, f"{where}.properties.{k}")
                                for k, v in schema["properties"].items()}
    for key in ("items", "not"):
        if key in schema:
            schema[key] = _normalise_schema(schema[key], f"{where}.{key}")
    for key in ("allOf", "anyOf", "oneOf"):
        if key in schema:
            if not isinstance(schema[key], list):
                raise ChatFormatError(f"{where}: '{key}' must be a list of schemas, got {schema[key]!r}")
            schema[key] = [_normalise_schema(s, f"{where}.{key}[{n}]") for n, s in enumerate(schema[key])]
    return schema


def _sorted_keys(value):
    if isinstance(value, dict):
        return {k: _sorted_keys(v) for k, v in sorted(value.items())}
    if isinstance(value, list):
        return [_sorted_keys(v) for v in value]
    return value


TOOL_KEYS = {"name", "description", "parameters", "response"}


def _unwrap_function(obj, what):
    """Accept ``{"name": ...}`` or OpenAI's ``{"type": "function", "function": {"name": ...}}``."""
    if not isinstance(obj, dict):
        raise ChatFormatError(f"a {what} must be a dict, got {type(obj).__name__}: {obj!r}")
    if "function" in obj:
        if obj.get("type", "function") != "function":
            raise ChatFormatError(f"a {what} of type {obj['type']!r} is not supported (only 'function')")
        extra = set(obj) - {"type", "function", "id"}
        if extra:
            raise ChatFormatError(f"unknown key(s) {sorted(extra)} in {what} {obj!r}")
        obj = obj["function"]
        if not isinstance(obj, dict):
            raise ChatFormatError(f"'function' of a {what} must be a dict, got {obj!r}")
    if not isinstance(obj.get("name"), str) or not obj["name"]:
        raise ChatFormatError(f"a {what} needs a non-empty string 'name', got {obj!r}")
    return obj


def render_tool(tool) -> str:
    """One declaration: ``<|tool>declaration:NAME{description:...,parameters:{...}}<tool|>``.

    ``tool`` is ``{"name", "description", "parameters": JSON schema, "response": JSON schema}``
    (only the name is required) or the OpenAI wrapping of it. Types are upper-cased and keys sorted.
    """
    tool = _unwrap_function(tool, "tool declaration")
    extra = set(tool) - TOOL_KEYS
    if extra:
        raise ChatFormatError(f"unknown key(s) {sorted(extra)} in the declaration of tool {tool['name']!r} "
                              f"(allowed: {sorted(TOOL_KEYS)})")
    body = {k: v for k, v in tool.items() if k != "name" and v is not None}
    for key in ("parameters", "response"):
        if key in body:
            body[key] = _normalise_schema(body[key], f"tool {tool['name']!r} {key}")
    return f"{TOOL_OPEN}declaration:{tool['name']}{format_value(_sorted_keys(body))}{TOOL_CLOSE}"


def _tool_call(call):
    call = _unwrap_function(call, "tool call")
    extra = set(call) - {"name", "arguments", "id", "type"}
    if extra:
        raise ChatFormatError(f"unknown key(s) {sorted(extra)} in tool call {call!r}")
    args = call.get("arguments")
    if args is None:
        args = {}
    if isinstance(args, str):  # OpenAI sends the arguments as a JSON string
        try:
            args = json.loads(args)
        except json.JSONDecodeError as e:
            raise ChatFormatError(f"tool call {call['name']!r}: arguments are not valid JSON ({e}): {args!r}") from None
    if not isinstance(args, dict):
        raise ChatFormatError(f"tool call {call['name']!r}: arguments must be a JSON object, got {args!r}")
    return call["name"], args


def render_call(name, arguments) -> str:
    return f"{CALL_OPEN}call:{name}{format_value(arguments)}{CALL_CLOSE}"


def render_response(name, response) -> str:
    return f"{RESPONSE_OPEN}response:{name}{format_value(response)}{RESPONSE_CLOSE}"


# ---------------------------------------------------------------------------------------------
# Rendering
# ---------------------------------------------------------------------------------------------

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
            elif kind in PLACEHOLDERS:
                out.append(PLACEHOLDERS[kind])
            else:
                raise ChatFormatError(f"message {n}: unsupported content part {part!r} "
                                      f"(expected type 'text', {', '.join(repr(k) for k in PLACEHOLDERS)})")
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


def _turns(messages, tools, thinking):
    """Messages -> [(role, [(kind, text), ...])], one entry per Gemma turn.

    kind is "text", "call" or "response" (rendering needs to know whether a turn ends with a call
    or starts with a response). Consecutive turns of the same role are merged, as ``dialog`` does.
    """
    if not isinstance(messages, (list, tuple)):
        raise ChatFormatError(f"messages must be a list of dicts, got {type(messages).__name__}")
    turns = []
    system = [("text", THINK)] if thinking else []
    rest = list(messages)
    if rest and isinstance(rest[0], dict) and rest[0].get("role") == "system":
        system.append(("text", _content_text(rest[0], 0)))
        start = 1
    else:
        start = 0
    system += [("text", render_tool(t)) for t in (tools or [])]
    if system or start == 1:
        turns.append(["system", system])
    last_calls = None  # names of the calls of the latest assistant message, answered by tool messages
    n_answered = 0
    for n, m in enumerate(rest[start:], start):
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
        if role == "user":
            chunks, gemma_role = [("text", _content_text(m, n))], "user"
            last_calls = None
        elif role == "assistant":
            chunks, gemma_role = [], "model"
            if m.get("reasoning") is not None:
                if not isinstance(m["reasoning"], str):
                    raise ChatFormatError(f"message {n}: 'reasoning' must be a string, got {m['reasoning']!r}")
                chunks.append(("text", f"{CHANNEL_OPEN}thought\n{m['reasoning']}{CHANNEL_CLOSE}"))
            chunks.append(("text", _content_text(m, n)))
            calls = [_tool_call(c) for c in (m.get("tool_calls") or [])]
            chunks += [("call", render_call(name, args)) for name, args in calls]
            last_calls, n_answered = [name for name, _ in calls], 0
        else:  # tool
            if not last_calls:
                raise ChatFormatError(f"message {n}: a tool message must answer a tool call of the assistant "
                                      f"message before it, and there is none")
            name = m.get("name")
            if name is None:  # OpenAI tool messages carry only an id: answer the calls in order
                if n_answered >= len(last_calls):
                    raise ChatFormatError(f"message {n}: more tool messages than tool calls; give it a 'name'")
                name = last_calls[n_answered]
            if not isinstance(name, str) or not name:
                raise ChatFormatError(f"message {n}: a tool message's 'name' must be a non-empty string, got {name!r}")
            chunks, gemma_role = [("response", render_response(name, _tool_content(m, n)))], "model"
            n_answered += 1
        if turns and turns[-1][0] == gemma_role:
            turns[-1][1] += chunks
        else:
            turns.append([gemma_role, chunks])
    return turns


def render(messages, tools=None, thinking=False, add_generation_prompt=True, format="gemma4") -> str:
    """Messages (Hugging Face / OpenAI shape) -> the prompt text, equal to ``dialog``'s.

    ``add_generation_prompt=True`` is ``dialog``'s ``as_text()``: it leaves a model turn open at the
    end (a new ``<|turn>model\\n``, or the last model turn itself, followed by ``<|tool_response>``
    if it ends with a call). ``False`` is ``as_text(training=True)``: every turn closed.
    """
    if format not in ("gemma4", "gemma3"):
        raise ChatFormatError(f"unknown format {format!r} (expected 'gemma4' or 'gemma3')")
    if thinking and format == "gemma3":
        raise ChatFormatError("thinking=True needs format='gemma4': Gemma 3 has no thinking switch")
    turns = _turns(messages, tools, thinking)
    if not turns:
        return ""
    if add_generation_prompt:
        if turns[-1][0] != "model":
            turns.append(["model", []])
        texts = []
        for i, (role, chunks) in enumerate(turns):
            body = "".join(text for _, text in chunks)
            first, last = i == 0, i == len(turns) - 1
            if first and role == "model":  # a conversation that starts inside a model turn
                if chunks and chunks[0][0] == "response":
                    body = body.removeprefix(RESPONSE_OPEN)
                text = body
            else:
                text = f"{TURN_OPEN}{role}\n{body}"
            if not last:
                text += TURN_CLOSE
            elif chunks and chunks[-1][0] == "call":  # the model's call waits for its response
                text += RESPONSE_OPEN
            texts.append(text)
    else:
        texts = [f"{TURN_OPEN}{role}\n{''.join(t for _, t in chunks)}{TURN_CLOSE}" for role, chunks in turns]
    text = "\n".join(texts)
    return _TO_GEMMA3.sub(lambda m: GEMMA3_NAMES[m.group()], text) if format == "gemma3" else text


# ---------------------------------------------------------------------------------------------
# Parsing: text -> tree of tags -> messages
# ---------------------------------------------------------------------------------------------

# Where plain text stops: at anything shaped like a tag (``<|"|>`` is not: it belongs to values).
_TAG = re.compile(r"<\|(\w+)>|<(\w+)\|>|<\|(\w+)\|>")
_CLOSED = {"turn", "channel", "tool", "tool_call", "tool_response"}
_STANDALONE = {"think", "image", "audio"}


def _tree(text):
    """Text -> list of nodes: str (plain text), ("token", name) or ("tag", name, children).

    A tag still open at the end of the text is closed there (generation may stop mid-turn);
    a close tag that does not match the open one is an error.
    """
    root = []
    stack = [("root", root)]
    pos = 0
    for m in _TAG.finditer(text):
        if m.start() > pos:
            stack[-1][1].append(text[pos:m.start()])
        pos = m.end()
        opened, closed, standalone = m.groups()
        if standalone is not None:
            if standalone not in _STANDALONE:
                raise ChatFormatError(f"unknown token {m.group()!r}")
            stack[-1][1].append(("token", standalone))
        elif opened is not None:
            if opened not in _CLOSED:
                raise ChatFormatError(f"unknown tag {m.group()!r}")
            children = []
            stack[-1][1].append(("tag", opened, children))
            stack.append((opened, children))
        else:
            if closed not in _CLOSED:
                raise ChatFormatError(f"unknown tag {m.group()!r}")
            if stack[-1][0] != closed:
                where = "nothing is open" if len(stack) == 1 else f"the open tag is <|{stack[-1][0]}>"
                raise ChatFormatError(f"{m.group()!r} at character {m.start()} does not close anything: {where}")
            stack.pop()
    if pos < len(text):
        stack[-1][1].append(text[pos:])
    return root


def _role_and_body(name, children):
    """``<|turn>ROLE\\n...``: split the role off the first text child."""
    if not children or not isinstance(children[0], str) or "\n" not in children[0]:
        raise ChatFormatError(f"<|{name}> must be followed by a role and a newline (e.g. '<|{name}>model\\n')")
    role, rest = children[0].split("\n", 1)
    if not re.fullmatch(r"\w+", role):
        raise ChatFormatError(f"invalid role {role!r} after <|{name}>")
    return role, ([rest] if rest else []) + children[1:]


def _tool_body(name, children, kind):
    """``<|tool_call>call:NAME{...}<tool_call|>`` -> (NAME, dict)."""
    if len(children) != 1 or not isinstance(children[0], str):
        raise ChatFormatError(f"<|{name}> must hold '{kind}:NAME{{...}}' text only, got {children!r}")
    text = children[0]
    m = re.match(r"(\w+):([ a-zA-Z0-9_:'\"/\\.()-]+)(?=\{)", text)
    if m is None:
        raise ChatFormatError(f"<|{name}> must start with '{kind}:NAME{{', got {text[:40]!r}")
    if m.group(1) != kind:
        raise ChatFormatError(f"<|{name}> holds a {m.group(1)!r}, expected '{kind}:'")
    body = text[m.end():]
    try:
        value = parse_value(body)
    except ChatFormatError as e:
        raise ChatFormatError(f"malformed {kind} of {m.group(2)!r}: {e}") from None
    if not isinstance(value, dict):
        raise ChatFormatError(f"the {kind} of {m.group(2)!r} must be an object {{...}}, got {body[:40]!r}")
    return m.group(2), value


def _text_of(children, where):
    out = []
    for c in children:
        if isinstance(c, str):
            out.append(c)
        elif c[0] == "token" and c[1] in PLACEHOLDERS:
            out.append(PLACEHOLDERS[c[1]])
        else:
            raise ChatFormatError(f"unexpected {_show(c)} inside {where}")
    return "".join(out)


def _show(node):
    return f"<|{node[1]}|>" if node[0] == "token" else f"<|{node[1]}>"


def _model_messages(children):
    """The chunks of one model turn -> assistant and tool messages (a new assistant message starts
    after each run of tool responses)."""
    messages = []

    def assistant():
        if not messages or messages[-1]["role"] != "assistant":
            messages.append({"role": "assistant", "content": "", "reasoning": None, "tool_calls": []})
        return messages[-1]

    for c in children:
        if isinstance(c, str):
            assistant()["content"] += c
        elif c[0] == "token":
            if c[1] not in PLACEHOLDERS:
                raise ChatFormatError(f"unexpected {_show(c)} in a model turn")
            assistant()["content"] += PLACEHOLDERS[c[1]]
        elif c[1] == "channel":
            role, body = _role_and_body("channel", c[2])
            if role != "thought":
                raise ChatFormatError(f"unknown channel {role!r} (only 'thought')")
            a = assistant()
            a["reasoning"] = (a["reasoning"] or "") + _text_of(body, "a thought")
        elif c[1] == "tool_call":
            name, args = _tool_body("tool_call", c[2], "call")
            assistant()["tool_calls"].append({"name": name, "arguments": args})
        elif c[1] == "tool_response":
            name, resp = _tool_body("tool_response", c[2], "response")
            messages.append({"role": "tool", "name": name, "content": resp})
        else:
            raise ChatFormatError(f"unexpected {_show(c)} in a model turn")
    return messages


def _user_content(children):
    text_only = all(isinstance(c, str) for c in children)
    if text_only:
        return "".join(children)
    parts = []
    for c in children:
        if isinstance(c, str):
            parts.append({"type": "text", "text": c})
        elif c[0] == "token" and c[1] in PLACEHOLDERS:
            parts.append({"type": c[1]})
        else:
            raise ChatFormatError(f"unexpected {_show(c)} in a user turn")
    return parts


def _from_gemma3(text):
    return _FROM_GEMMA3.sub(lambda m: _GEMMA3_BACK[m.group()], text)


def parse_conversation(text, format="gemma4") -> dict:
    """A rendered conversation -> ``{"messages": [...], "tools": [...], "thinking": bool}``.

    The inverse of ``render``: tool declarations come back normalised (upper-case types, sorted keys).
    """
    if format == "gemma3":
        text = _from_gemma3(text)
    if text.endswith(RESPONSE_OPEN):  # an open turn waiting for a tool's answer
        text = text[:-len(RESPONSE_OPEN)]
    messages, tools, thinking = [], [], False
    nodes = _tree(text)
    for i, node in enumerate(nodes):
        if isinstance(node, str):
            if node.strip():
                raise ChatFormatError(f"text outside a turn: {node[:40]!r}")
            continue
        if node[0] != "tag" or node[1] != "turn":
            raise ChatFormatError(f"a conversation holds only <|turn> tags, found {_show(node)}")
        role, body = _role_and_body("turn", node[2])
        if role == "system":
            text_parts, had_other = [], False
            for c in body:
                if isinstance(c, str):
                    text_parts.append(c)
                elif c[0] == "token" and c[1] == "think":
                    thinking, had_other = True, True
                elif c[0] == "tag" and c[1] == "tool":
                    name, decl = _tool_body("tool", c[2], "declaration")
                    tools.append({"name": name, **decl})
                    had_other = True
                else:
                    raise ChatFormatError(f"unexpected {_show(c)} in the system turn")
            if text_parts or not had_other:
                messages.append({"role": "system", "content": "".join(text_parts)})
        elif role == "user":
            messages.append({"role": "user", "content": _user_content(body)})
        elif role == "model":
            new = _model_messages(body)
            if i == len(nodes) - 1 and new == [] and len(messages) > 0:
                continue  # the empty generation prompt
            if not new and i == len(nodes) - 1:
                continue
            if not new:
                new = [{"role": "assistant", "content": "", "reasoning": None, "tool_calls": []}]
            messages += new
        else:
            raise ChatFormatError(f"unknown turn role {role!r} (expected system, user or model)")
    return {"messages": messages, "tools": tools, "thinking": thinking}


def parse(text, format="gemma4") -> dict:
    """One model turn (what the model wrote after ``<|turn>model\\n``) -> an assistant message
    ``{"role": "assistant", "content": str, "reasoning": str | None, "tool_calls": [...]}``.

    The text may start with ``<|turn>model\\n`` and end with ``<turn|>`` or ``<|tool_response>``.
    """
    if format == "gemma3":
        text = _from_gemma3(text)
    if text.endswith(RESPONSE_OPEN):
        text = text[:-len(RESPONSE_OPEN)]
    if not text.startswith(TURN_OPEN):
        text = f"{TURN_OPEN}model\n{text}"
    nodes = _tree(text)
    if len(nodes) != 1 or nodes[0][0] != "tag":
        raise ChatFormatError(f"expected exactly one model turn, got {text[:60]!r}...")
    role, body = _role_and_body("turn", nodes[0][2])
    if role != "model":
        raise ChatFormatError(f"expected a model turn, got a {role!r} turn")
    messages = _model_messages(body)
    if not messages:
        return {"role": "assistant", "content": "", "reasoning": None, "tool_calls": []}
    if len(messages) > 1 or messages[0]["role"] != "assistant":
        raise ChatFormatError("this model turn holds tool responses: read it with parse_conversation")
    return messages[0]


# ---------------------------------------------------------------------------------------------
# Streaming
# ---------------------------------------------------------------------------------------------

class StreamParser:
    """Feed generated text piece by piece; get events as soon as they are certain.

    ``feed(text)`` returns a list of ``("text", str)``, ``("thought", str)`` and
    ``("tool_call", {"name", "arguments"})`` events; ``close()`` returns the last events and sets
    ``.message`` to ``parse`` of everything fed (so the events and the final message agree).
    Text that might be the start of a tag (e.g. a trailing ``<|tool``) is held back until it is not.
    """

    def __init__(self, format="gemma4"):
        self.format = format
        self.buffer = ""  # everything fed, in Gemma 4 spelling
        self.done = 0  # how much of the buffer has been turned into events
        self.state = "text"  # "text", "thought" (inside a channel) or "call" (inside a tool call)
        self._raw = ""
        self.message = None

    def _hold(self, s):
        """Length of the tail of s that could still grow into a tag or a Gemma 3 name."""
        for k in range(min(len(s), 32), 0, -1):
            tail = s[-k:]
            if tail.startswith("<") and re.fullmatch(r"<\|?\w*\|?", tail):
                return k
        return 0

    def feed(self, piece):
        self._raw += piece
        text = _from_gemma3(self._raw) if self.format == "gemma3" else self._raw
        if self.format == "gemma3":  # a partial Gemma 3 name must also wait
            cut = text.rfind("<")
            if cut >= 0 and ">" not in text[cut:]:
                text = text[:cut]
        self.buffer = text
        return self._events(final=False)

    def _events(self, final):
        out = []
        while True:
            rest = self.buffer[self.done:]
            if self.state == "call":
                end = rest.find(CALL_CLOSE)
                if end < 0:
                    if final:
                        raise ChatFormatError(f"the model output ended inside a tool call: {rest[:60]!r}")
                    return out
                name, args = _tool_body("tool_call", [rest[:end]], "call")
                out.append(("tool_call", {"name": name, "arguments": args}))
                self.done += end + len(CALL_CLOSE)
                self.state = "text"
                continue
            m = _TAG.search(rest)
            stop = m.start() if m else len(rest)
            if m is None and not final:
                stop = len(rest) - self._hold(rest)
            if self.state == "thought" and rest.startswith("thought\n") and self._at_channel_start:
                self.done += len("thought\n")
                self._at_channel_start = False
                continue
            if self.state == "thought" and self._at_channel_start:
                if len(rest) < len("thought\n") and "thought\n".startswith(rest) and not final:
                    return out
                raise ChatFormatError(f"unknown channel: {rest[:20]!r} (only 'thought')")
            if stop > 0:
                out.append(("thought" if self.state == "thought" else "text", rest[:stop]))
                self.done += stop
                continue
            if m is None:
                return out
            tag = m.group()
            self.done += m.end()
            if tag == CHANNEL_OPEN and self.state == "text":
                self.state, self._at_channel_start = "thought", True
            elif tag == CHANNEL_CLOSE and self.state == "thought":
                self.state = "text"
            elif tag == CALL_OPEN and self.state == "text":
                self.state = "call"
            elif tag in (TURN_CLOSE, RESPONSE_OPEN) and self.state == "text":
                self.done = len(self.buffer)  # the turn is over (or waits for a tool): ignore the rest
                return out
            elif tag in PLACEHOLDERS.values():
                out.append(("thought" if self.state == "thought" else "text", tag))
            else:
                raise ChatFormatError(f"unexpected {tag!r} in model output (while in {self.state})")

    def close(self) -> list:
        self.buffer = _from_gemma3(self._raw) if self.format == "gemma3" else self._raw
        events = self._events(final=True)
        self.message = parse(self._raw, format=self.format)
        return events

    _at_channel_start = False


# ---------------------------------------------------------------------------------------------
# Chatting with a model: render, generate, parse
# ---------------------------------------------------------------------------------------------

def format_of(tokenizer) -> str:
    """'gemma4' when the vocabulary has Gemma 4's turn token, else 'gemma3' (e.g. our 270M)."""
    return "gemma4" if TURN_OPEN in tokenizer.special else "gemma3"


def tool_call_schema(tools, tool_choice):
    """The JSON schema of ``{"name": ..., "arguments": {...}}`` for the tools ``tool_choice`` allows."""
    tools = [_unwrap_function(t, "tool declaration") for t in tools or []]
    if tool_choice != "required":
        tools = [t for t in tools if t["name"] == tool_choice]
        if not tools:
            raise ChatFormatError(f"tool_choice {tool_choice!r} names no declared tool")
    if not tools:
        raise ChatFormatError("tool_choice='required' needs at least one declared tool")
    options = [{"type": "object", "required": ["name", "arguments"],
                "properties": {"name": {"const": t["name"]},
                               "arguments": t.get("parameters") or {"type": "object", "properties": {}}}}
               for t in tools]
    return options[0] if len(options) == 1 else {"anyOf": options}


def chat(model, tokenizer, messages, tools=None, thinking=False, max_new_tokens=256, temperature=0.0,
         top_k=None, top_p=None, min_p=None, seed=None, format=None, json_schema=None, tool_choice=None,
         stream=None, images=None, audio=None) -> dict:
    """Render the conversation, let the model write its turn, and parse it into a message.

    ``images`` / ``audio``: the media of the conversation's image and audio parts, in order (what
    ``preprocess_image`` and ``audio_features`` return); each part renders as its placeholder
    (``<|image|>``, ``<|audio|>``), which ``multimodal_prompt`` expands for the towers.

    ``json_schema``: the answer's content is JSON valid for the schema (constrained decoding).
    ``tool_choice``: a tool's name (or ``"required"``: any declared tool) forces a valid call: the
    call ``{"name", "arguments"}`` is generated under the tool's parameter schema by the same
    constrained decoder (as JSON, its own notation) and returned as the message's tool call.
    ``stream(kind, piece)`` is called with ``("text" | "thought", str)`` and ``("tool_call", dict)``
    events as they are generated.
    """
    from .generate import generate

    format = format or format_of(tokenizer)
    prompt = render(messages, tools=tools, thinking=thinking, add_generation_prompt=True, format=format)
    sampling = dict(max_new_tokens=max_new_tokens, temperature=temperature, top_k=top_k, top_p=top_p,
                    min_p=min_p, seed=seed, images=images, audio=audio)
    if tool_choice is not None:
        if json_schema is not None:
            raise ChatFormatError("give json_schema or tool_choice, not both")
        text = generate(model, tokenizer, prompt, json_schema=tool_call_schema(tools, tool_choice), **sampling)
        call = json.loads(text)
        if stream is not None:
            stream("tool_call", call)
        return {"role": "assistant", "content": "", "reasoning": None, "tool_calls": [call]}
    if json_schema is not None:
        text = generate(model, tokenizer, prompt, json_schema=json_schema,
                        stream=(lambda p: stream("text", p)) if stream else None, **sampling)
        return {"role": "assistant", "content": text, "reasoning": None, "tool_calls": []}
    stops = [TURN_CLOSE, RESPONSE_OPEN]
    if format == "gemma3":
        stops = [GEMMA3_NAMES[s] for s in stops]
    parser = StreamParser(format=format)

    def on_piece(piece):
        for kind, value in parser.feed(piece):
            if stream is not None:
                stream(kind, value)

    generate(model, tokenizer, prompt, stop=stops, stream=on_piece, **sampling)
    for kind, value in parser.close():
        if stream is not None:
            stream(kind, value)
    return parser.message
