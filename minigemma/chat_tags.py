"""The tags of Gemma 4's conversation format, their ``gemma3`` spellings, and the format's error.

Gemma 4 marks structure with paired tags ``<|name>`` ... ``<name|>`` (turn, channel, tool,
tool_call, tool_response) and standalone markers ``<|name|>`` (think, image, audio); strings in
values sit between ``<|"|>`` delimiters. The ``gemma3`` format is ``dialog``'s spelling of that
same Gemma 4 structure with Gemma 3 token names (``<start_of_turn>``, ``<start_function_call>``,
``<escape>`` ...), which ``to_gemma3`` / ``from_gemma3`` swap: the format of FunctionGemma (Gemma 3
270M fine-tuned for tool calls). It is not Gemma 3's own chat template, which has no system turn
(it puts a system message at the start of the first user turn) and no tool tags.
This file holds names only: rendering is in ``chat_render.py``, reading in ``chat_parse.py``.
"""

import re

TURN_OPEN, TURN_CLOSE = "<|turn>", "<turn|>"
THINK = "<|think|>"
CHANNEL_OPEN, CHANNEL_CLOSE = "<|channel>", "<channel|>"
TOOL_OPEN, TOOL_CLOSE = "<|tool>", "<tool|>"
CALL_OPEN, CALL_CLOSE = "<|tool_call>", "<tool_call|>"
RESPONSE_OPEN, RESPONSE_CLOSE = "<|tool_response>", "<tool_response|>"
QUOTE = '<|"|>'

# Media markers: where an image, a video or a clip sits in a prompt (kind -> marker text, transformers'
# spelling). The towers' soft tokens replace each one (``multimodal.py``). A chat message may hold
# images and audio clips (``CHAT_MEDIA``, as dialog's format has them).
MARKERS = {"image": "<|image|>", "video": "<|video|>", "audio": "<|audio|>"}
CHAT_MEDIA = ("image", "audio")

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
FORMATS = ("gemma4", "gemma3")


class ChatFormatError(ValueError):
    """A conversation that cannot be rendered, or model output that cannot be parsed."""


def check_format(format):
    if format not in FORMATS:
        raise ChatFormatError(f"unknown format {format!r} (expected 'gemma4' or 'gemma3')")


def to_gemma3(text: str) -> str:
    """Gemma 4 tag names -> their ``gemma3`` spellings (the structure stays Gemma 4's)."""
    return _TO_GEMMA3.sub(lambda m: GEMMA3_NAMES[m.group()], text)


def from_gemma3(text: str) -> str:
    """``gemma3`` tag spellings -> Gemma 4's names."""
    return _FROM_GEMMA3.sub(lambda m: _GEMMA3_BACK[m.group()], text)


def chat_format(tokenizer) -> str:
    """'gemma4' when the vocabulary has Gemma 4's turn token, else 'gemma3' (e.g. our 270M)."""
    return "gemma4" if TURN_OPEN in tokenizer.special else "gemma3"
