"""Text generation: run the prompt once, then one token at a time with the KV cache.

How each token is chosen (greedy, temperature, top-k, top-p, min-p, seed) is a ``Sampling``
(``sampling.py``); every function here takes one, or its fields as keyword options
(``generate(model, tok, prompt, temperature=0.8, top_p=0.95)``).

Generation stops at a *stop id* (by default the tokenizer's end-of-sequence and end-of-turn
tokens: ``<eos>``, Gemma 3's ``<end_of_turn>``, Gemma 4's ``<turn|>``; see ``default_stop_ids``)
or at a *stop string* (text such as ``"<turn|>"`` that our Gemma 3 vocabulary spells in several
pieces); neither is part of the result. A ``constraint`` (see ``constrained.py``) can forbid
tokens at each step: its boolean mask is applied to the logits before the choice, so greedy
decoding takes the most likely *allowed* token and sampling draws among the allowed ones.

``stream_generate`` yields text as soon as it is complete (a multi-byte character split over two
byte tokens is held back until its second half arrives); ``generate`` collects it into a string.
"""

import torch

from .cache import KVCache
from .constrained import JSONConstraint
from .multimodal import has_towers, media_prompt
from .sampling import Sampling
from .speculative import speculative_ids


def default_stop_ids(tokenizer) -> set:
    """End of sequence plus the family's end-of-turn token, where the vocabulary has it as one
    piece: Gemma 3 ``<end_of_turn>`` (106), Gemma 4 ``<turn|>`` (106 in its own vocabulary)."""
    ids = {tokenizer.eos_id}
    for piece in ("<end_of_turn>", "<turn|>"):
        if piece in tokenizer.special:
            ids.add(tokenizer.special[piece])
    return ids


def check_prompt(model, prompt_ids, max_new_tokens) -> list:
    """The prompt as a list of ints, or a clear error if it cannot be continued by this many tokens."""
    if getattr(model.config, "is_encoder", False):
        raise ValueError("this is an embedding model (EmbeddingGemma 2): it has no LM head and writes no text; "
                         "use minigemma.embed(model, tokenizer, texts) for its vectors")
    if isinstance(prompt_ids, torch.Tensor):
        if prompt_ids.dim() > 1 and prompt_ids.shape[0] != 1:
            raise ValueError(f"generation continues one prompt; got a tensor of shape {tuple(prompt_ids.shape)} "
                             "(for a batch, call it once per row)")
        prompt_ids = prompt_ids.reshape(-1).tolist()
    prompt_ids = [int(i) for i in prompt_ids]
    if not isinstance(max_new_tokens, int) or max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be an integer >= 1, got {max_new_tokens!r}")
    context = model.config.max_position_embeddings
    if not prompt_ids:
        raise ValueError("the prompt is empty: give at least one token (e.g. <bos>)")
    if len(prompt_ids) > context:
        raise ValueError(f"the prompt has {len(prompt_ids)} tokens, longer than the model's context of {context}")
    if len(prompt_ids) + max_new_tokens > context:
        raise ValueError(f"the prompt ({len(prompt_ids)} tokens) plus max_new_tokens ({max_new_tokens}) "
                         f"exceeds the model's context of {context}; ask for at most "
                         f"{context - len(prompt_ids)} new tokens")
    return prompt_ids


@torch.no_grad()
def generate_ids(model, prompt_ids, max_new_tokens=64, sampling=None, stop_ids=None, constraint=None,
                 images=None, videos=None, audio=None, assistant=None, num_draft_tokens=None, **options):
    """Yield new token ids one by one (stops at an id in ``stop_ids``, which is not yielded).

    ``sampling`` / ``options``: how to pick each token (``Sampling``, or its fields by name).
    ``constraint``: an object with ``allowed() -> (vocab,) bool tensor``, ``advance(id)`` and
    ``done``; generation stops (without a stop id) as soon as the constraint is ``done``.
    ``images`` / ``videos`` / ``audio`` fill the prompt's placeholder tokens (``multimodal.py``);
    they go into the prompt's forward pass only. ``assistant`` (with ``num_draft_tokens``, default
    4) switches on speculative decoding (``speculative.py``): same text, fewer target passes.
    """
    sampling = Sampling.of(sampling, **options)
    prompt_ids = check_prompt(model, prompt_ids, max_new_tokens)
    media = {k: v for k, v in dict(images=images, videos=videos, audio=audio).items() if v is not None}
    if assistant is not None:
        if media:
            raise ValueError("speculative decoding (assistant=...) takes text prompts only, not media")
        if constraint is not None:
            raise ValueError("speculative decoding (assistant=...) cannot be combined with a constraint (json_schema)")
        yield from speculative_ids(model, prompt_ids, assistant, 4 if num_draft_tokens is None else num_draft_tokens,
                                   max_new_tokens, sampling, stop_ids)
        return
    if num_draft_tokens is not None:
        raise ValueError("num_draft_tokens needs an assistant (assistant=...) to draft them")
    if media and not has_towers(model):
        raise ValueError(f"{' and '.join(media)} passed to a text-only model: it has no vision or audio tower "
                         "(load a Gemma 4 checkpoint whose config.json has a vision_config / audio_config)")
    generator = sampling.generator()
    cache = KVCache(model.config, batch=1, max_len=len(prompt_ids) + max_new_tokens, dtype=model.dtype)
    ids = torch.tensor([prompt_ids])  # (1, T)
    for _ in range(max_new_tokens):
        logits = model(ids, cache=cache, last_only=True, **media)[0, -1]  # (vocab,)
        media = {}  # only the prompt holds placeholders
        allowed = constraint.allowed() if constraint is not None else None
        nxt, _ = sampling.pick(logits, generator, allowed)
        if constraint is not None:
            if constraint.advance(nxt):  # False: the end token, after a complete value
                yield nxt
            if constraint.done:
                return
        elif stop_ids and nxt in stop_ids:
            return
        else:
            yield nxt
        ids = torch.tensor([[nxt]])  # (1, 1): from now on one token per step
    if constraint is not None:  # the constraint plans to finish in time; this guards that promise
        raise RuntimeError(f"the constrained output did not complete within max_new_tokens={max_new_tokens}")


def _held_back(text, stops):
    """Length of the longest tail of ``text`` that could be the start of a stop string."""
    return max((k for s in stops for k in range(min(len(s) - 1, len(text)), 0, -1) if s.startswith(text[-k:])),
               default=0)


def stream_generate(model, tokenizer, prompt, max_new_tokens=64, sampling=None, add_bos=True, stop=None,
                    stop_ids=None, json_schema=None, images=None, videos=None, audio=None, assistant=None,
                    num_draft_tokens=None, **options):
    """Yield pieces of the completion text as they are generated.

    ``stop``: strings that end the completion (not included); text that might be the start of one
    is held back until it is not. ``stop_ids``: token ids that end it (default:
    ``default_stop_ids(tokenizer)``). ``json_schema``: constrain the output to JSON valid for the
    schema (see ``constrained.py``); generation then ends when the value is complete.
    With media, a string ``prompt`` holds ``<|image|>`` / ``<|video|>`` / ``<|audio|>`` markers (one per
    item) that ``multimodal.media_prompt`` expands into placeholder tokens; on a model without
    towers the markers are plain text.
    """
    sampling = Sampling.of(sampling, **options)
    if isinstance(prompt, str):
        prompt_ids = media_prompt(model, tokenizer, prompt, images, videos, audio, add_bos)
    else:
        prompt_ids = prompt
    stops = [stop] if isinstance(stop, str) else list(stop or [])
    if any(not isinstance(s, str) or not s for s in stops):
        raise ValueError(f"stop strings must be non-empty strings, got {stop!r}")
    constraint = None
    if json_schema is not None:
        if stops:
            raise ValueError("stop strings cannot be combined with json_schema: the schema decides where the output ends")
        constraint = JSONConstraint(json_schema, tokenizer, max_new_tokens)
    stop_ids = default_stop_ids(tokenizer) if stop_ids is None else set(stop_ids)
    new, printed = [], ""
    for i in generate_ids(model, prompt_ids, max_new_tokens, sampling, stop_ids=stop_ids, constraint=constraint,
                          images=images, videos=videos, audio=audio,
                          assistant=assistant, num_draft_tokens=num_draft_tokens):
        new.append(i)
        text = tokenizer.decode(new)
        hits = [text.find(s, max(0, len(printed) - len(s))) for s in stops]
        hits = [h for h in hits if h >= 0]
        if hits:
            end = min(hits)
            if end > len(printed):
                yield text[len(printed):end]
            return
        if text.endswith("\ufffd"):  # an incomplete UTF-8 character waits for its next byte
            continue
        ready = len(text) - _held_back(text, stops)
        if ready > len(printed):
            yield text[len(printed):ready]
            printed = text[:ready]
    text = tokenizer.decode(new)
    if len(text) > len(printed):
        yield text[len(printed):]


def generate(model, tokenizer, prompt, max_new_tokens=64, sampling=None, stream=None, **kwargs) -> str:
    """Return the completion of ``prompt`` (a string, or a list of ids); ``stream(text)`` is
    called with each new piece as it comes (``stream=print``-like callables).

    Every other keyword is ``stream_generate``'s: the sampling options (``temperature``, ``top_k``,
    ``top_p``, ``min_p``, ``seed``, or ``sampling=Sampling(...)``), ``stop``, ``stop_ids``,
    ``json_schema`` (the result is then JSON text valid for the schema), media (``images``,
    ``videos``, ``audio``) and speculative decoding (``assistant``, ``num_draft_tokens``)."""
    pieces = []
    for piece in stream_generate(model, tokenizer, prompt, max_new_tokens, sampling, **kwargs):
        pieces.append(piece)
        if stream is not None:
            stream(piece)
    return "".join(pieces)
