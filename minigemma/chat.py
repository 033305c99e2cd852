"""The Gemma 4 conversation format, and ``chat()``: render messages, let the model write, parse.

A chat model never sees "messages"; it sees one long string in which *tags* mark who speaks and
what kind of content follows. Gemma 4's tags come in pairs ``<|name>`` ... ``<name|>`` plus a few
standalone markers ``<|name|>``:

    <|turn>system\\n<|think|>You are terse.<|tool>declaration:add{...}<tool|><turn|>
    <|turn>user\\nWhat is 2+3?<turn|>
    <|turn>model\\n<|channel>thought\\nuse the tool<channel|><|tool_call>call:add{a:2,b:3}<tool_call|>
    <|tool_response>response:add{sum:5}<tool_response|>It is 5.<turn|>

* a **turn** is ``<|turn>ROLE\\n ... <turn|>`` with ROLE one of ``system``, ``user``, ``model``;
* **thinking** is switched on by ``<|think|>`` at the start of the system turn; the model then
  writes its reasoning in a ``<|channel>thought\\n ... <channel|>`` block before the answer;
* **tools** are declared in the system turn, called by the model and answered *inside the same
  model turn*, after which the model goes on;
* values are written in Gemma's own object notation (keys unquoted, strings between ``<|"|>``).

One idea per file: ``chat_tags.py`` (the tag names, their ``gemma3`` spellings), ``chat_values.py`` (the
value notation), ``chat_tools.py`` (declarations, calls, responses), ``chat_render.py``
(messages -> text, equal to Google's ``dialog`` 1.1.0), ``chat_parse.py`` (text -> messages, one
grammar for whole texts and streams). This file re-exports their public names and adds ``chat()``.
"""

import json

from .chat_parse import Reader, StreamParser, parse, parse_conversation
from .chat_render import MESSAGE_KEYS, render
from .chat_tags import (GEMMA3_NAMES, MARKERS, RESPONSE_OPEN, TURN_CLOSE, ChatFormatError, chat_format,
                        from_gemma3, to_gemma3)
from .chat_tools import render_call, render_response, render_tool, tool_call_schema
from .chat_values import format_value, parse_value
from .generate import generate
from .sampling import Sampling

__all__ = ["ChatFormatError", "GEMMA3_NAMES", "MARKERS", "MESSAGE_KEYS", "Reader", "StreamParser", "chat",
           "chat_format", "format_value", "from_gemma3", "parse", "parse_conversation", "parse_value", "render",
           "render_call", "render_response", "render_tool", "to_gemma3", "tool_call_schema"]

_ASSISTANT = {"role": "assistant", "content": "", "reasoning": None, "tool_calls": []}


def chat(model, tokenizer, messages, tools=None, thinking=False, max_new_tokens=256, sampling=None, format=None,
         json_schema=None, tool_choice=None, on_event=None, images=None, audio=None, **options) -> dict:
    """Render the conversation, let the model write its turn, and parse it into a message.

    ``sampling``: a ``Sampling``, or its fields by name in ``options`` (``temperature=0.7``,
    ``top_k``, ``top_p``, ``min_p``, ``seed``); greedy by default.
    ``images`` / ``audio``: the media of the conversation's image and audio parts, in order (what
    ``preprocess_image`` and ``audio_features`` return); each part renders as its marker
    (``<|image|>``, ``<|audio|>``), which ``multimodal_prompt`` expands for the towers.
    ``json_schema``: the answer's content is JSON valid for the schema (constrained decoding).
    ``tool_choice``: a tool's name (or ``"required"``: any declared tool) forces a valid call: the
    call ``{"name", "arguments"}`` is generated under the tool's parameter schema by the same
    constrained decoder (as JSON, its own notation) and returned as the message's tool call.
    ``on_event(kind, value)`` is called with ``("text" | "thought", str)`` and ``("tool_call",
    dict)`` events as they are generated (``generate``'s ``stream(piece)`` gets raw text instead).
    """
    if "stream" in options:
        raise TypeError("chat() calls on_event(kind, value), not stream=: generate's stream(piece) gets raw "
                        "text, chat's events are parsed ('text', 'thought', 'tool_call')")
    format = format or chat_format(tokenizer)
    prompt = render(messages, tools=tools, thinking=thinking, add_generation_prompt=True, format=format)
    common = dict(max_new_tokens=max_new_tokens, sampling=Sampling.of(sampling, **options), images=images,
                  audio=audio)
    emit = on_event or (lambda kind, value: None)
    if tool_choice is not None:
        if json_schema is not None:
            raise ChatFormatError("give json_schema or tool_choice, not both")
        call = json.loads(generate(model, tokenizer, prompt, json_schema=tool_call_schema(tools, tool_choice), **common))
        emit("tool_call", call)
        return {**_ASSISTANT, "tool_calls": [call]}
    if json_schema is not None:
        text = generate(model, tokenizer, prompt, json_schema=json_schema, stream=lambda p: emit("text", p), **common)
        return {**_ASSISTANT, "content": text}
    stops = [TURN_CLOSE, RESPONSE_OPEN]
    if format == "gemma3":
        stops = [GEMMA3_NAMES[s] for s in stops]
    parser = StreamParser(format=format)

    def on_piece(piece):
        for kind, value in parser.feed(piece):
            emit(kind, value)

    generate(model, tokenizer, prompt, stop=stops, stream=on_piece, **common)
    for kind, value in parser.close():
        emit(kind, value)
    return parser.message
