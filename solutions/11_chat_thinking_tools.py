"""Solutions to the exercises of notebooks/11_chat_thinking_tools.ipynb."""


def gemma_value(value):
    if isinstance(value, str):
        return '<|"|>' + value + '<|"|>'
    if isinstance(value, dict):
        return "{" + ",".join(f"{k}:{gemma_value(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ",".join(gemma_value(v) for v in value) + "]"
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return repr(value)


def choice_mask(written, pieces, choices, tokens_left):
    # A piece is allowed when the text after it is the start of a choice (all its characters, not
    # only the first) and the characters that choice still lacks fit in the tokens left after this
    # one, at one token per character, the worst case the decoder plans for.
    mask = []
    for piece in pieces:
        text = written + piece
        mask.append(any(c.startswith(text) and len(c) - len(text) <= tokens_left - 1 for c in choices))
    return mask
