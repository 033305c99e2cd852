"""Gemma's value notation: how tool declarations, calls and responses write JSON values.

``{key:<|"|>text<|"|>,n:1.5,ok:true,x:null,l:[1,2]}``: keys unquoted, strings between ``<|"|>``
delimiters (so a string may hold quotes, braces, commas and newlines unescaped), no spaces.
``format_value`` writes a value as Google's ``dialog`` 1.1.0 does; ``parse_value`` reads one back.
Where we differ from ``dialog``: non-finite floats are refused (JSON has no NaN), and numbers with
an exponent (``1e-05``, which ``dialog`` writes for small floats but cannot read) are read back.
"""

import math
import re

from .chat_tags import QUOTE, ChatFormatError

_NUMBER = re.compile(r"-?\d+(\.\d+)?([eE][-+]?\d+)?")
_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_WORDS = (("true", True), ("false", False), ("null", None))


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
    if text[i:i + 1] in ("{", "["):
        return _parse_container(text, i)
    for word, value in _WORDS:
        if text.startswith(word, i):
            return value, i + len(word)
    number = _NUMBER.match(text, i)
    if number:
        s = number.group()
        return (float(s) if any(ch in s for ch in ".eE") else int(s)), number.end()
    raise ChatFormatError(f"expected a value at {text[i:i + 30]!r}" if i < len(text) else "unexpected end of text, expected a value")


def _parse_container(text, i):
    """``{key:value,...}`` or ``[value,...]`` starting at ``text[i]``; return (value, index after it)."""
    is_object = text[i] == "{"
    close = "}" if is_object else "]"
    out = {} if is_object else []
    i += 1
    if text[i:i + 1] == close:
        return out, i + 1
    while True:
        if is_object:
            key = _KEY.match(text, i)
            if key is None or text[key.end():key.end() + 1] != ":":
                raise ChatFormatError(f"expected a key and ':' at {text[i:i + 30]!r}")
            out[key.group()], i = _parse_value(text, key.end() + 1)
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
