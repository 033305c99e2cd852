"""Golden renderings and parses of random conversations, produced by Google's ``dialog`` 1.1.0.

Run with a Python >= 3.12 environment that has ``dialog==1.1.0`` and ``mcp<2`` installed (dialog
needs 3.12; the tests run on 3.11 without it and read the JSON this script writes):

    python -m venv /tmp/dialog-venv && /tmp/dialog-venv/bin/pip install dialog==1.1.0 "mcp<2"
    /tmp/dialog-venv/bin/python tests/golden/make_chat_golden.py

Each case is a random conversation in the Hugging Face / OpenAI message shape that
``minigemma.chat.render`` takes. This script maps it to dialog's objects by the rules of issue 12
(system text after ``<|think|>``, then the tool declarations; an assistant message = thought, text,
calls; tool messages and the following assistant message join the same model turn) and records
dialog's ``as_text()``, ``as_text(training=True)``, ``as_text(format="gemma3")`` and its parse of
the training text, converted back to messages. A second list holds model outputs (one model turn,
some deliberately malformed) with dialog's parse or the fact that it raised.
"""

import json
import random
import sys
from pathlib import Path

import dialog
from dialog import Audio, Conversation, Image, Model, System, Think, Thought, Tool, ToolCall, ToolResponse, User

assert dialog.__version__ == "1.1.0", dialog.__version__

OUT = Path(__file__).with_name("chat_golden.json")
rng = random.Random(12)

STRINGS = ["Paris", "", "a \"quoted\" word", "braces {x} and [y]", "comma, colon: semi;", "two\nlines\n",
           "日本語のテキスト", "Ελληνικά", "emoji 🙂 ok", "tab\there", "back\\slash", "x < y > z", "it's",
           "<b>bold</b>", "  spaces  ", "null", "true", "123", "-4.5", "a|b", "São Paulo"]
KEYS = ["city", "unit", "n", "e", "E", "value", "x1", "_private", "camelCase", "snake_case", "null", "true",
        "items", "a", "zz", "deep", "list", "q"]
TEXTS = STRINGS + ["Hello!", "What is the weather in Paris?", "Sure.", "I'll check.", "The answer is 42.",
                   "Line one\nLine two", "Voilà : «c'est ça»", "```python\nprint('hi')\n```"]


def rand_float():
    return rng.choice([1.5, -0.25, 3.0, 0.1, 2.5e-3, 1e-05, 1e20, 123456.789, -0.0001, 0.0, -7.0])


def rand_value(depth=0):
    kind = rng.choice(["str", "int", "float", "bool", "null", "list", "dict"] if depth < 3 else
                      ["str", "int", "float", "bool", "null"])
    if kind == "str":
        return rng.choice(STRINGS)
    if kind == "int":
        return rng.choice([0, 1, -1, 42, -17, 10**12, 7])
    if kind == "float":
        return rand_float()
    if kind == "bool":
        return rng.random() < 0.5
    if kind == "null":
        return None
    if kind == "list":
        return [rand_value(depth + 1) for _ in range(rng.randint(0, 3))]
    return rand_dict(depth + 1)


def rand_dict(depth=0):
    keys = rng.sample(KEYS, rng.randint(0, 4))
    return {k: rand_value(depth) for k in keys}


def rand_schema(depth=0):
    t = rng.choice(["string", "integer", "number", "boolean", "array", "object"] if depth < 2 else
                   ["string", "integer", "number", "boolean"])
    s = {"type": t}
    if rng.random() < 0.5:
        s["description"] = rng.choice(TEXTS)
    if t == "string" and rng.random() < 0.3:
        s["enum"] = rng.sample(["c", "f", "k", "Ωmega", "a, b"], 2)
    if t in ("integer", "number") and rng.random() < 0.3:
        s["minimum"], s["maximum"] = 0, rng.choice([10, 99.5])
    if t == "array":
        s["items"] = rand_schema(depth + 1)
    if t == "object":
        props = {k: rand_schema(depth + 1) for k in rng.sample(KEYS, rng.randint(1, 3))}
        s["properties"] = props
        if rng.random() < 0.7:
            s["required"] = sorted(rng.sample(list(props), rng.randint(1, len(props))))
    if rng.random() < 0.1:
        s["type"] = [t, "null"]
    if depth == 0 and rng.random() < 0.2:
        s["$schema"] = "http://json-schema.org/draft-07/schema#"
    return s


def rand_tool(name):
    tool = {"name": name}
    if rng.random() < 0.8:
        tool["description"] = rng.choice(TEXTS)
    if rng.random() < 0.85:
        params = rand_schema()
        if rng.random() < 0.7:
            params = {"type": "object", "properties": {k: rand_schema(1) for k in rng.sample(KEYS, rng.randint(1, 3))}}
            params["required"] = sorted(rng.sample(list(params["properties"]), 1))
        tool["parameters"] = params
    if rng.random() < 0.15:
        tool["response"] = {"type": "object", "properties": {"result": rand_schema(1)}}
    if rng.random() < 0.3:
        tool = {"type": "function", "function": tool}
    return tool


def rand_content():
    if rng.random() < 0.15:
        parts = []
        for _ in range(rng.randint(1, 3)):
            kind = rng.choice(["text", "text", "image", "audio"])
            parts.append({"type": "text", "text": rng.choice(TEXTS)} if kind == "text" else {"type": kind})
        return parts
    return rng.choice(TEXTS)


def rand_call(tool_names):
    call = {"name": rng.choice(tool_names), "arguments": rand_dict()}
    r = rng.random()
    if r < 0.2:
        call["arguments"] = json.dumps(call["arguments"])
    if r > 0.75:
        call = {"type": "function", "function": call}
    return call


def call_name(call):
    return call["function"]["name"] if "function" in call else call["name"]


def rand_conversation():
    messages, tools = [], None
    thinking = rng.random() < 0.35
    if rng.random() < 0.6:
        messages.append({"role": "system", "content": rng.choice(TEXTS)})
    names = ["get_weather", "add", "search_web", "lookup.v2", "send-mail"]
    if rng.random() < 0.55:
        tools = [rand_tool(n) for n in rng.sample(names, rng.randint(1, 3))]
    tool_names = [t["function"]["name"] if "function" in t else t["name"] for t in tools or []] or ["add"]
    n_rounds = rng.randint(1, 4)
    for r in range(n_rounds):
        messages.append({"role": "user", "content": rand_content()})
        if rng.random() < 0.08:
            messages.append({"role": "user", "content": rand_content()})
        last = r == n_rounds - 1
        if last and rng.random() < 0.3:
            break  # ends with the user: the generation prompt opens a model turn
        a = {"role": "assistant", "content": rng.choice(TEXTS + ["", ""])}
        if rng.random() < 0.35:
            a["reasoning"] = rng.choice(TEXTS)
        if rng.random() < 0.5:
            a["tool_calls"] = [rand_call(tool_names) for _ in range(rng.randint(1, 2))]
            if rng.random() < 0.3:
                a["content"] = None
        messages.append(a)
        if "tool_calls" in a:
            if last and rng.random() < 0.3:
                break  # ends with a call: the prompt waits for the tool's response
            for c in a["tool_calls"]:
                tm = {"role": "tool", "content": rand_dict()}
                if rng.random() < 0.7:
                    tm["name"] = call_name(c)
                if rng.random() < 0.3:
                    tm["content"] = json.dumps(tm["content"])
                messages.append(tm)
            if last and rng.random() < 0.3:
                break  # ends with the tool's answer: the model goes on in the same turn
            f = {"role": "assistant", "content": rng.choice(TEXTS)}
            if rng.random() < 0.2:
                f["reasoning"] = rng.choice(TEXTS)
            messages.append(f)
    return messages, tools, thinking


# --- our message shape -> dialog objects (the mapping of issue 12) ---------------------------

def to_chunks(content):
    if content is None:
        return []
    if isinstance(content, str):
        return [content]
    out = []
    for p in content:
        out.append(p["text"] if p["type"] == "text" else Image(None) if p["type"] == "image" else Audio(None))
    return out


def unwrap(obj):
    return obj["function"] if "function" in obj else obj


def to_dialog(messages, tools, thinking):
    turns = []
    system = [Think()] if thinking else []
    rest = messages
    if messages and messages[0]["role"] == "system":
        system += to_chunks(messages[0]["content"])
        rest = messages[1:]
    for t in tools or []:
        t = unwrap(t)
        mcp = {"name": t["name"]}
        if "description" in t:
            mcp["description"] = t["description"]
        if "parameters" in t:
            mcp["inputSchema"] = t["parameters"]
        if "response" in t:
            mcp["outputSchema"] = t["response"]
        system.append(Tool(mcp))
    if system or rest is not messages:
        turns.append(System(*system))
    last_calls = []
    answered = 0
    for m in rest:
        if m["role"] == "user":
            turns.append(User(*to_chunks(m["content"])))
        elif m["role"] == "assistant":
            chunks = []
            if m.get("reasoning") is not None:
                chunks.append(Thought(m["reasoning"]))
            chunks += to_chunks(m.get("content"))
            calls = []
            for c in m.get("tool_calls") or []:
                c = unwrap(c)
                args = json.loads(c["arguments"]) if isinstance(c["arguments"], str) else c["arguments"]
                calls.append(c["name"])
                chunks.append(ToolCall({"name": c["name"], "arguments": args}))
            last_calls, answered = calls, 0
            turns.append(Model(*chunks))
        elif m["role"] == "tool":
            content = json.loads(m["content"]) if isinstance(m["content"], str) else m["content"]
            name = m.get("name") or last_calls[answered]
            answered += 1
            turns.append(Model(ToolResponse({"name": name, "structuredContent": content})))
    return Conversation(*turns)


# --- dialog's parse -> our message shape -----------------------------------------------------

MCP_BACK = {"inputSchema": "parameters", "outputSchema": "response", "annotations": "toolAnnotations"}


def text_parts(chunks):
    if all(isinstance(c, dialog.Text) for c in chunks):
        return "".join(c.text for c in chunks)
    out = []
    for c in chunks:
        if isinstance(c, dialog.Text):
            out.append({"type": "text", "text": c.text})
        elif isinstance(c, Image):
            out.append({"type": "image"})
        elif isinstance(c, Audio):
            out.append({"type": "audio"})
        else:
            raise TypeError(c)
    return out


def placeholder_text(chunks):
    return "".join(c.text if isinstance(c, dialog.Text) else "<|image|>" if isinstance(c, Image) else "<|audio|>"
                   for c in chunks)


def model_messages(turn):
    msgs = []

    def assistant():
        if not msgs or msgs[-1]["role"] != "assistant":
            msgs.append({"role": "assistant", "content": "", "reasoning": None, "tool_calls": []})
        return msgs[-1]

    for c in turn.chunks:
        if isinstance(c, (dialog.Text, Image, Audio)):
            assistant()["content"] += placeholder_text([c])
        elif isinstance(c, Thought):
            a = assistant()
            a["reasoning"] = (a["reasoning"] or "") + placeholder_text(c.chunks)
        elif isinstance(c, ToolCall):
            assistant()["tool_calls"].append({"name": c.data.name, "arguments": c.data.arguments})
        elif isinstance(c, ToolResponse):
            msgs.append({"role": "tool", "name": c.data.name, "content": c.data.response})
        else:
            raise TypeError(c)
    return msgs


def from_dialog(conv):
    messages, tools, thinking = [], [], False
    for i, turn in enumerate(conv.turns):
        if isinstance(turn, System):
            texts, other = [], False
            for c in turn.chunks:
                if isinstance(c, Think):
                    thinking = other = True
                elif isinstance(c, Tool):
                    d = c.data.full_json
                    tools.append({MCP_BACK.get(k, k): v for k, v in d.items()})
                    other = True
                else:
                    texts.append(c.text)
            if texts or not other:
                messages.append({"role": "system", "content": "".join(texts)})
        elif isinstance(turn, User):
            messages.append({"role": "user", "content": text_parts(turn.chunks)})
        else:
            new = model_messages(turn)
            if not new:
                new = [{"role": "assistant", "content": "", "reasoning": None, "tool_calls": []}]
            messages += new
    return {"messages": messages, "tools": tools, "thinking": thinking}


def try_parse(text):
    try:
        return from_dialog(dialog.ConversationStr(text).as_conversation()), None
    except Exception as e:  # dialog cannot read back some of its own renderings (e.g. 1e-05)
        return None, f"{type(e).__name__}: {str(e).splitlines()[0]}"


# --- model outputs (one model turn) ----------------------------------------------------------

def rand_model_output():
    parts = []
    if rng.random() < 0.4:
        parts.append(f"<|channel>thought\n{rng.choice(TEXTS)}<channel|>")
    if rng.random() < 0.8:
        parts.append(rng.choice(TEXTS))
    n_calls = rng.choice([0, 0, 1, 2])
    for _ in range(n_calls):
        call = ToolCall({"name": rng.choice(["get_weather", "add", "lookup"]), "arguments": rand_dict()})
        parts.append(call.as_text())
    text = "".join(parts)
    text += "<|tool_response>" if n_calls else rng.choice(["<turn|>", ""])
    return text


MALFORMED = [
    "<|tool_call>call:add{a:1",  # unclosed call
    "<|tool_call>call:add{a:1<tool_call|>",  # unclosed object
    "<|tool_call>call:add{a:01x}<tool_call|>",  # bad value
    "<|tool_call>call:add{a:'x'}<tool_call|>",  # quotes instead of <|"|>
    "<|tool_call>add{a:1}<tool_call|>",  # no kind
    "<|tool_call>response:add{a:1}<tool_call|>",  # wrong kind
    "<|tool_call>call:add{a:1}<channel|>",  # mismatched close
    "<|channel>thought\nhmm<turn|>",  # thought closed by the turn
    "<|channel>plan\nhmm<channel|>ok",  # unknown channel
    "hello <|bogus|> world",  # unknown standalone token
    "hello<|bogus>x<bogus|>",  # unknown tag
    "answer<tool_call|>",  # orphan close
    "<|tool_call>call:add{a:1,}<tool_call|>",  # trailing comma
    "<|tool_call>call:add{a: 1}<tool_call|>",  # space
    "<|tool_call>call:add[1]<tool_call|>",  # not an object
    "<|tool_call>call:add{a:<|\"|>x}<tool_call|>",  # unclosed string
    "<|tool_call><tool_call|>",  # empty
    "<|channel>thought\nstill thinking",  # fine: generation stopped inside the thought
    "<|tool_call>call:add{a:1e-05}<tool_call|>",  # exponent: dialog refuses
]


def main():
    cases = []
    while len(cases) < 80:
        messages, tools, thinking = rand_conversation()
        conv = to_dialog(messages, tools, thinking)
        case = {"messages": messages, "tools": tools, "thinking": thinking,
                "inference": str(conv.as_text()), "training": str(conv.as_text(training=True)),
                "gemma3": None if thinking else str(conv.as_text(format="gemma3")),
                "gemma3_training": None if thinking else str(conv.as_text(training=True, format="gemma3"))}
        case["parsed"], case["parse_error"] = try_parse(case["training"])
        cases.append(case)
    outputs = []
    for text in [rand_model_output() for _ in range(60)] + MALFORMED:
        parsed, error = try_parse("<|turn>model\n" + text.removesuffix("<|tool_response>"))
        if parsed is not None:
            assert len(parsed["messages"]) <= 1, parsed
            parsed = parsed["messages"][0] if parsed["messages"] else {
                "role": "assistant", "content": "", "reasoning": None, "tool_calls": []}
        outputs.append({"text": text, "parsed": parsed, "error": error})
    n_fail = sum(c["parse_error"] is not None for c in cases)
    OUT.write_text(json.dumps({"dialog_version": dialog.__version__, "python": sys.version.split()[0],
                               "conversations": cases, "model_outputs": outputs},
                              ensure_ascii=False, indent=1) + "\n")
    print(f"wrote {OUT}: {len(cases)} conversations ({n_fail} that dialog cannot parse back), "
          f"{len(outputs)} model outputs ({sum(o['error'] is not None for o in outputs)} rejected by dialog)")


if __name__ == "__main__":
    main()
