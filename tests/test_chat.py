"""The conversation format against Google's ``dialog`` 1.1.0 (golden renderings and parses in
tests/golden/chat_golden.json, made by tests/golden/make_chat_golden.py), round trips, streaming
and the error messages."""

import json
import random
from pathlib import Path

import pytest

from minigemma import chat
from minigemma.chat import ChatFormatError
from minigemma.sampling import Sampling

GOLDEN = json.loads((Path(__file__).parent / "golden" / "chat_golden.json").read_text())
CASES = GOLDEN["conversations"]
OUTPUTS = GOLDEN["model_outputs"]


def _check_golden_is_large_and_varied():
    """A precondition of the tests below, checked when they are collected (a test of the data alone
    could not fail on the code): the recorded file is dialog 1.1.0's and covers every feature."""
    assert GOLDEN["dialog_version"] == "1.1.0"
    assert len(CASES) >= 50
    text = "".join(c["training"] for c in CASES)
    for feature in ["<|think|>", "<|tool>", "<|tool_call>", "<|tool_response>", "<|channel>thought", "<|image|>",
                    "<|audio|>", "STRING", "null", "true", "false", "日本語", "\n"]:
        assert feature in text, f"tests/golden/chat_golden.json has no {feature!r}: regenerate it"
    assert any(c["inference"].endswith("<|tool_response>") for c in CASES)
    assert any(c["inference"].endswith("<|turn>model\n") for c in CASES)


_check_golden_is_large_and_varied()
FORMS = [("inference", {}), ("training", {"add_generation_prompt": False}), ("gemma3", {"format": "gemma3"}),
         ("gemma3_training", {"format": "gemma3", "add_generation_prompt": False})]
EXPONENT = "No terminal matches 'e'"  # dialog's parser cannot read the floats it writes as 1e-05


@pytest.mark.parametrize("i", range(len(CASES)))
def test_render_equals_dialog(i):
    c = CASES[i]
    for key, kwargs in FORMS:
        if c[key] is None:  # thinking in gemma3 format: refused on purpose
            with pytest.raises(ChatFormatError, match="Gemma 3 has no thinking"):
                chat.render(c["messages"], c["tools"], c["thinking"], **kwargs)
            continue
        assert chat.render(c["messages"], c["tools"], c["thinking"], **kwargs) == c[key], key


@pytest.mark.parametrize("i", range(len(CASES)))
def test_parse_conversation_equals_dialog(i):
    c = CASES[i]
    ours = chat.parse_conversation(c["training"])
    if c["parsed"] is not None:
        assert ours == c["parsed"]
        if c["gemma3_training"] is not None:
            assert chat.parse_conversation(c["gemma3_training"], format="gemma3") == c["parsed"]
    else:  # the only documented difference: we read exponents back
        assert EXPONENT in c["parse_error"] and ("e-" in c["training"] or "e+" in c["training"])


@pytest.mark.parametrize("i", range(len(OUTPUTS)))
def test_parse_model_output_equals_dialog(i):
    o = OUTPUTS[i]
    if o["error"] is None:
        assert chat.parse(o["text"]) == o["parsed"]
    elif EXPONENT in o["error"]:
        msg = chat.parse(o["text"])
        assert any("e-" in repr(call["arguments"]) for call in msg["tool_calls"])
    else:
        with pytest.raises(ChatFormatError):
            chat.parse(o["text"])


def _canonical(messages, thinking, tools):
    """What a message list means, in the shape parse_conversation returns."""
    out, calls, answered = [], [], 0
    if (thinking or tools) and messages and messages[0] == {"role": "system", "content": ""}:
        messages = messages[1:]  # an empty system text beside <|think|> or tools writes nothing
    for m in messages:
        if m["role"] == "assistant":
            tool_calls = []
            for c in m.get("tool_calls") or []:
                c = c.get("function", c)
                args = json.loads(c["arguments"]) if isinstance(c["arguments"], str) else c["arguments"]
                tool_calls.append({"name": c["name"], "arguments": args})
            calls, answered = [c["name"] for c in tool_calls], 0
            out.append({"role": "assistant", "content": m.get("content") or "", "reasoning": m.get("reasoning"),
                        "tool_calls": tool_calls})
        elif m["role"] == "tool":
            content = json.loads(m["content"]) if isinstance(m["content"], str) else m["content"]
            out.append({"role": "tool", "name": m.get("name") or calls[answered], "content": content})
            answered += 1
        elif isinstance(m["content"], list):  # text parts next to each other read back as one
            parts = []
            for part in m["content"]:
                if part == {"type": "text", "text": ""}:
                    continue
                if part["type"] == "text" and parts and parts[-1]["type"] == "text":
                    parts[-1] = {"type": "text", "text": parts[-1]["text"] + part["text"]}
                else:
                    parts.append(part)
            types = [p["type"] for p in parts]
            content = "".join(p["text"] for p in parts) if set(types) <= {"text"} else parts
            out.append({"role": m["role"], "content": content})
        else:
            out.append(dict(m))
    empty = {"role": "assistant", "content": "", "reasoning": None, "tool_calls": []}
    # an empty answer after tool responses writes nothing; an empty last model turn is read as
    # "no answer yet", as dialog does
    out = [m for n, m in enumerate(out) if not (m == empty and n and out[n - 1]["role"] == "tool")]
    if out and out[-1] == empty:
        out.pop()
    return out


def test_parse_recovers_render():
    checked = 0
    for c in CASES:
        roles = [m["role"] for m in c["messages"]]
        if any(a == b == "user" for a, b in zip(roles, roles[1:])):
            continue  # two user messages become one turn: not invertible
        back = chat.parse_conversation(chat.render(c["messages"], c["tools"], c["thinking"], add_generation_prompt=False))
        assert back["messages"] == _canonical(c["messages"], c["thinking"], c["tools"])
        assert back["thinking"] == c["thinking"]
        assert [t["name"] for t in back["tools"]] == [t.get("function", t)["name"] for t in c["tools"] or []]
        checked += 1
    assert checked >= 50


def test_parse_prompt_with_generation_prompt():
    messages = [{"role": "user", "content": "hi"}]
    assert chat.parse_conversation(chat.render(messages))["messages"] == messages


def _stream(text, rng):
    parser = chat.StreamParser()
    events, i = [], 0
    while i < len(text):
        n = rng.randint(1, 6)
        events += parser.feed(text[i:i + n])
        i += n
    events += parser.close()
    return events, parser.message


UNTERMINATED_CALL = "<|tool_call>call:add{a:2}"  # generation stopped before <tool_call|>
TEXTS = [o["text"] for o in OUTPUTS] + [UNTERMINATED_CALL, "<|turn>model\nHi<turn|>", "Hi <|image|>", ""]


def _outcome(read):
    try:
        return read()
    except ChatFormatError as e:
        return ("error", str(e))


@pytest.mark.parametrize("i", range(len(TEXTS)))
def test_stream_parser_and_parse_give_one_answer(i):
    """One grammar: every golden model output (well-formed or not), fed whole to parse and in
    random-size pieces to StreamParser, gives the same message or the same error."""
    text = TEXTS[i]
    whole = _outcome(lambda: chat.parse(text))
    for seed in range(3):
        assert _outcome(lambda: _stream(text, random.Random(seed))[1]) == whole


def test_unterminated_tool_call_is_a_call():
    # dialog's grammar closes a tag left open at the end of the text (its ``unclosed_tag`` rule),
    # so a complete call cut before <tool_call|> is a call, in parse and in the stream alike
    call = {"name": "add", "arguments": {"a": 2}}
    assert chat.parse(UNTERMINATED_CALL)["tool_calls"] == [call]
    events, message = _stream(UNTERMINATED_CALL, random.Random(0))
    assert events == [("tool_call", call)] and message["tool_calls"] == [call]


@pytest.mark.parametrize("i", [i for i, o in enumerate(OUTPUTS) if o["error"] is None])
def test_stream_events_agree_with_parse(i):
    text = OUTPUTS[i]["text"]
    events, message = _stream(text, random.Random(i))
    assert message == chat.parse(text)
    assert "".join(e[1] for e in events if e[0] == "text") == message["content"]
    thought = [e[1] for e in events if e[0] == "thought"]
    assert ("".join(thought) if thought or "<|channel>" in text else None) == message["reasoning"]
    assert [e[1] for e in events if e[0] == "tool_call"] == message["tool_calls"]


def test_stream_parser_holds_back_a_partial_tag():
    p = chat.StreamParser()
    assert p.feed("Hello <|tool") == [("text", "Hello ")]
    assert p.feed("_call>call:f{a:1}") == []
    assert p.feed("<tool_call|>") == [("tool_call", {"name": "f", "arguments": {"a": 1}})]
    assert p.feed("<|tool_response>") == []
    assert p.close() == []


def test_stream_parser_gemma3_names():
    p = chat.StreamParser(format="gemma3")
    events = p.feed("Hi<start_function_call>call:f{q:<escape>x, y<escape>}") + p.feed("<end_function_call>")
    events += p.close()
    assert events == [("text", "Hi"), ("tool_call", {"name": "f", "arguments": {"q": "x, y"}})]


def test_stream_parser_error_on_unclosed_incomplete_call():
    p = chat.StreamParser()
    p.feed("<|tool_call>call:f{a:1")
    with pytest.raises(ChatFormatError, match="malformed call of 'f': unexpected end of text"):
        p.close()


def test_values_written_as_dialog_does():
    # spot checks of what the golden file covers at random (the expected strings come from dialog
    # via the golden file: this one is the first tool call in it)
    call = next(c for c in OUTPUTS if "<|tool_call>" in c["text"] and c["error"] is None)
    first = call["parsed"]["tool_calls"][0]
    assert chat.render_call(first["name"], first["arguments"]) in call["text"]


@pytest.mark.parametrize("value, message", [
    ({"x": float("nan")}, "non-finite"),
    ({"x": {1, 2}}, "type set"),
])
def test_bad_values(value, message):
    with pytest.raises(ChatFormatError, match=message):
        chat.format_value(value)


@pytest.mark.parametrize("messages, kwargs, message", [
    ("hello", {}, "messages must be a list"),
    ([{"role": "robot", "content": "x"}], {}, "unknown role 'robot'"),
    ([{"role": "user", "content": "x", "extra": 1}], {}, r"unknown key\(s\) \['extra'\]"),
    ([{"role": "user", "content": "x"}, {"role": "system", "content": "y"}], {}, "system message must come first"),
    ([{"role": "user", "content": 5}], {}, "content must be a string or a list of parts"),
    ([{"role": "user", "content": [{"type": "video"}]}], {}, "unsupported content part"),
    ([{"role": "tool", "name": "f", "content": {}}], {}, "must answer a tool call"),
    ([{"role": "assistant", "content": "", "tool_calls": [{"name": "f", "arguments": {}}]},
      {"role": "tool", "name": "f", "content": "22 degrees"}], {}, "plain string '22 degrees'"),
    ([{"role": "assistant", "content": "", "tool_calls": [{"name": "f", "arguments": {}}]},
      {"role": "tool", "name": "f", "content": [1]}], {}, "must be a dict"),
    ([{"role": "assistant", "content": "", "tool_calls": [{"name": "f", "arguments": {}}]},
      {"role": "tool", "content": {}}, {"role": "tool", "content": {}}], {}, "more tool messages than tool calls"),
    ([{"role": "assistant", "tool_calls": [{"name": "f", "arguments": "{bad"}]}], {}, "arguments are not valid JSON"),
    ([{"role": "assistant", "tool_calls": [{"name": "f", "arguments": [1]}]}], {}, "arguments must be a JSON object"),
    ([{"role": "assistant", "tool_calls": [{"arguments": {}}]}], {}, "needs a non-empty string 'name'"),
    ([{"role": "assistant", "tool_calls": [{"type": "retrieval", "function": {"name": "f"}}]}], {}, "type 'retrieval'"),
    ([{"role": "assistant", "reasoning": 3}], {}, "'reasoning' must be a string"),
    ([], {"tools": [{"name": "f", "strict": True}]}, r"unknown key\(s\) \['strict'\]"),
    ([], {"tools": [{"name": "f", "parameters": {"type": 3}}]}, "'type' must be a string"),
    ([], {"tools": [{"name": "f", "parameters": {"type": "object", "properties": []}}]}, "'properties' must be a dict"),
    ([], {"tools": [{"name": "f", "parameters": {"items": [{}]}}]}, "a schema must be a dict"),
    ([], {"tools": [{"name": "f", "parameters": {"anyOf": {}}}]}, "'anyOf' must be a list"),
    ([], {"tools": [{"name": "f", "parameters": {"type": "object", "required": "city"}}]},
     r"'required' must be a list of property names, got the string 'city' \(write \['city'\]\)"),
    ([], {"tools": [{"name": "f", "parameters": {"required": [1]}}]}, "'required' must be a list of property names"),
    ([], {"tools": [{"name": "f", "parameters": {"enum": "ab"}}]}, "'enum' must be a list of values, got str"),
    ([], {"tools": [{"name": "f", "parameters": {"items": [{"type": "string"}]}}]}, "not supported"),
    ([], {"tools": [{"name": "f", "parameters": {"properties": {"a": "string"}}}]}, r"properties\.a: a schema must be a dict"),
    ([], {"format": "chatml"}, "unknown format 'chatml'"),
    ([], {"format": "gemma3", "thinking": True}, "Gemma 3 has no thinking switch"),
])
def test_render_errors(messages, kwargs, message):
    with pytest.raises(ChatFormatError, match=message):
        chat.render(messages, **kwargs)


@pytest.mark.parametrize("text, message", [
    ("<|tool_call>call:add{a:1", "unexpected end of text"),
    ("<|tool_call>call:add{a:1<tool_call|>", "malformed call of 'add'"),
    ("<|tool_call>call:add{a:'x'}<tool_call|>", "expected a value"),
    ("<|tool_call>response:add{a:1}<tool_call|>", "holds a 'response', expected 'call:'"),
    ("<|tool_call>call:add[1]<tool_call|>", "must start with 'call:NAME{'"),
    ("<|channel>thought\nhmm<turn|>", "does not close anything: the open tag is <|channel>"),
    ("<|channel>plan\nhmm<channel|>", "unknown channel 'plan'"),
    ("hi <|bogus|>", "unknown token '<|bogus|>'"),
    ("hi <|bogus>", "unknown tag '<|bogus>'"),
    ("<|tool_call>call:f{a:1}<tool_call|><|tool_response>response:f{b:2}<tool_response|>ok", "parse_conversation"),
    ("<|turn>user\nhi<turn|>", "expected a model turn"),
])
def test_parse_errors(text, message):
    with pytest.raises(ChatFormatError, match=message):
        chat.parse(text)


def test_parse_conversation_errors():
    with pytest.raises(ChatFormatError, match="text outside a turn"):
        chat.parse_conversation("hello<|turn>user\nhi<turn|>")
    with pytest.raises(ChatFormatError, match="unknown turn role 'robot'"):
        chat.parse_conversation("<|turn>robot\nhi<turn|>")
    with pytest.raises(ChatFormatError, match="must be followed by a role and a newline"):
        chat.parse_conversation("<|turn>user hi<turn|>")


# --- chat() on the real Gemma 3 270M (a base model: the constrained paths are what make it useful)

WEATHER = [{"type": "function", "function": {
    "name": "get_weather", "description": "Current weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string", "maxLength": 20},
                                                    "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}},
                   "required": ["city", "unit"]}}}]


def test_chat_forced_tool_call_is_valid_and_round_trips(gemma):
    import jsonschema

    model, tok = gemma
    assert chat.chat_format(tok) == "gemma3"
    messages = [{"role": "user", "content": "What's the weather in Paris?"}]
    events = []
    reply = chat.chat(model, tok, messages, tools=WEATHER, tool_choice="get_weather", max_new_tokens=80,
                      on_event=lambda kind, value: events.append((kind, value)))
    (call,) = reply["tool_calls"]
    assert call["name"] == "get_weather" and events == [("tool_call", call)]
    jsonschema.validate(call["arguments"], WEATHER[0]["function"]["parameters"])
    # the call goes back into the conversation and renders as Gemma writes it
    convo = messages + [reply, {"role": "tool", "name": "get_weather", "content": {"temperature": 21}}]
    assert chat.parse_conversation(chat.render(convo, tools=WEATHER, format="gemma3"), format="gemma3")["messages"][1:] == [
        reply, {"role": "tool", "name": "get_weather", "content": {"temperature": 21}}]


def test_chat_json_answer_and_free_answer(gemma):
    model, tok = gemma
    messages = [{"role": "user", "content": "Name a city."}]
    schema = {"type": "object", "properties": {"city": {"type": "string", "maxLength": 16}}, "required": ["city"]}
    reply = chat.chat(model, tok, messages, json_schema=schema, max_new_tokens=24)
    assert set(json.loads(reply["content"])) == {"city"}
    events = []
    free = chat.chat(model, tok, messages, max_new_tokens=12, on_event=lambda k, v: events.append((k, v)))
    assert free["role"] == "assistant" and "".join(v for k, v in events if k == "text") == free["content"]


def test_chat_errors(gemma):
    model, tok = gemma
    messages = [{"role": "user", "content": "hi"}]
    with pytest.raises(ChatFormatError, match="names no declared tool"):
        chat.chat(model, tok, messages, tools=WEATHER, tool_choice="send_mail")
    with pytest.raises(ChatFormatError, match="needs at least one declared tool"):
        chat.chat(model, tok, messages, tool_choice="required")
    with pytest.raises(ChatFormatError, match="not both"):
        chat.chat(model, tok, messages, tools=WEATHER, tool_choice="get_weather", json_schema={"type": "null"})
    with pytest.raises(TypeError, match="on_event"):
        chat.chat(model, tok, messages, stream=print)
    with pytest.raises(TypeError, match="unknown sampling option temprature"):
        chat.chat(model, tok, messages, temprature=0.7)


def test_chat_sampling_options_by_name_or_object(gemma):
    model, tok = gemma
    messages = [{"role": "user", "content": "Name a city."}]
    by_name = chat.chat(model, tok, messages, max_new_tokens=6, temperature=0.7, seed=3)
    by_object = chat.chat(model, tok, messages, max_new_tokens=6, sampling=Sampling(temperature=0.7, seed=3))
    assert by_name == by_object


def test_forced_call_with_upper_case_types(gemma):
    """Gemma/OpenAPI-style upper-case types, which render accepts, work under tool_choice too: the
    declaration and the constrained decoder share one schema normalisation."""
    model, tok = gemma
    tool = {"name": "get_weather", "parameters": {"type": "OBJECT", "required": ["city"], "properties": {
        "city": {"type": "STRING", "maxLength": 12}, "days": {"type": "INTEGER", "minimum": 1, "maximum": 7}}}}
    assert '<|"|>OBJECT<|"|>' in chat.render_tool(tool)
    reply = chat.chat(model, tok, [{"role": "user", "content": "Weather in Oslo?"}], tools=[tool],
                      tool_choice="get_weather", max_new_tokens=80)
    (call,) = reply["tool_calls"]
    assert call["name"] == "get_weather" and isinstance(call["arguments"]["city"], str)
