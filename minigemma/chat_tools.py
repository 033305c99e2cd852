"""Tools in the conversation: declarations, calls and responses, and what ``tool_choice`` forces.

A tool is declared in the system turn as ``<|tool>declaration:NAME{description:...,parameters:
{...}}<tool|>``: its JSON schemas are normalised by ``json_schema.normalise`` (the same walker
the constrained decoder uses) with types upper-cased (``dialog``/Gemma's convention) and keys
sorted. A model calls a tool with ``<|tool_call>call:NAME{...}<tool_call|>`` and the answer comes
back inside the same model turn as ``<|tool_response>response:NAME{...}<tool_response|>``.
Tools may be given bare (``{"name", ...}``) or in OpenAI's ``{"type": "function", "function": ...}``.
"""

import json

from .chat_tags import CALL_CLOSE, CALL_OPEN, RESPONSE_CLOSE, RESPONSE_OPEN, TOOL_CLOSE, TOOL_OPEN, ChatFormatError
from .chat_values import format_value
from .json_schema import SchemaError, normalise

TOOL_KEYS = {"name", "description", "parameters", "response"}
CALL_KEYS = {"name", "arguments", "id", "type"}


def unwrap_function(obj, what):
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


def _sorted_keys(value):
    if isinstance(value, dict):
        return {k: _sorted_keys(v) for k, v in sorted(value.items())}
    if isinstance(value, list):
        return [_sorted_keys(v) for v in value]
    return value


def render_tool(tool) -> str:
    """One declaration: ``<|tool>declaration:NAME{description:...,parameters:{...}}<tool|>``.

    ``tool`` is ``{"name", "description", "parameters": JSON schema, "response": JSON schema}``
    (only the name is required) or the OpenAI wrapping of it. Types are upper-cased and keys sorted.
    """
    tool = unwrap_function(tool, "tool declaration")
    extra = set(tool) - TOOL_KEYS
    if extra:
        raise ChatFormatError(f"unknown key(s) {sorted(extra)} in the declaration of tool {tool['name']!r} "
                              f"(allowed: {sorted(TOOL_KEYS)})")
    body = {k: v for k, v in tool.items() if k != "name" and v is not None}
    for key in ("parameters", "response"):
        if key in body:
            try:
                body[key] = normalise(body[key], f"tool {tool['name']!r} {key}", case=str.upper)
            except SchemaError as e:
                raise ChatFormatError(str(e)) from None
    return f"{TOOL_OPEN}declaration:{tool['name']}{format_value(_sorted_keys(body))}{TOOL_CLOSE}"


def tool_call(call):
    """An assistant message's tool call (bare or OpenAI-wrapped) -> (name, arguments dict)."""
    call = unwrap_function(call, "tool call")
    extra = set(call) - CALL_KEYS
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


def tool_call_schema(tools, tool_choice):
    """The JSON schema of ``{"name": ..., "arguments": {...}}`` for the tools ``tool_choice`` allows
    (a tool's name, or ``"required"``: any declared tool)."""
    tools = [unwrap_function(t, "tool declaration") for t in tools or []]
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
