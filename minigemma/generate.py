"""Text generation: run the prompt once, then one token at a time with the KV cache.

Choosing the next token from the logits ("sampling"):

* ``temperature = 0`` takes the most likely token (greedy, deterministic);
* otherwise the logits are divided by the temperature (lower = sharper), optionally cut to the
  ``top_k`` best tokens and/or to the smallest set whose probability reaches ``top_p`` and/or to
  the tokens at least ``min_p`` times as likely as the best one, and a token is drawn from what
  is left, with a ``seed`` for reproducible draws.

Generation stops at a *stop id* (by default the tokenizer's end-of-sequence and end-of-turn
tokens: ``<eos>``, Gemma 3's ``<end_of_turn>``, Gemma 4's ``<turn|>``; see ``default_stop_ids``)
or at a *stop string* (text such as ``"<turn|>"`` that our Gemma 3 vocabulary spells in several
pieces); neither is part of the result. A ``constraint`` (see ``constrained.py``) can forbid
tokens at each step: its boolean mask is applied to the logits before the choice, so greedy
decoding takes the most likely *allowed* token and sampling draws among the allowed ones.

``stream_generate`` yields text as soon as it is complete (a multi-byte character split over two
byte tokens is held back until its second half arrives); ``generate`` collects it into a string.
"""

import math

import torch

from .cache import KVCache
from .multimodal import MARKERS, multimodal_prompt


def sample_next(logits, temperature=0.0, top_k=None, top_p=None, generator=None, min_p=None, allowed=None) -> int:
    """logits: (vocab,) -> the chosen token id. ``allowed``: optional (vocab,) bool mask."""
    if allowed is not None:  # a constraint: forbidden tokens can be neither the argmax nor drawn
        logits = logits.masked_fill(~allowed, float("-inf"))
    probs = sampling_distribution(logits, temperature, top_k, top_p, min_p)
    if probs is None:
        return int(logits.float().argmax())  # the same choice; float32 argmax is 4x faster than bf16's
    return int(torch.multinomial(probs, 1, generator=generator))


def sampling_distribution(logits, temperature=0.0, top_k=None, top_p=None, min_p=None):
    """logits: (vocab,) -> the probabilities a token is drawn from (vocab,), or None for greedy."""
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0, got {temperature}")
    if top_k is not None and top_k < 1:
        raise ValueError(f"top_k must be >= 1, got {top_k}")
    if top_p is not None and not 0 < top_p <= 1:
        raise ValueError(f"top_p must be in (0, 1], got {top_p}")
    if min_p is not None and not 0 <= min_p <= 1:
        raise ValueError(f"min_p must be in [0, 1], got {min_p}")
    if temperature == 0:
        return None
    logits = logits.float() / temperature
    if top_k is not None:
        kth = torch.topk(logits, min(top_k, logits.numel())).values[-1]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p is not None:
        sorted_logits, order = logits.sort(descending=True)
        cumulative = sorted_logits.softmax(-1).cumsum(-1)
        drop = cumulative - sorted_logits.softmax(-1) >= top_p  # keep the token that crosses top_p
        logits = logits.masked_fill(torch.zeros_like(drop).scatter(0, order, drop), float("-inf"))
    if min_p is not None:  # keep tokens with p >= min_p * p_max, i.e. logit >= max + log(min_p)
        logits = logits.masked_fill(logits < logits.max() + math.log(max(min_p, 1e-45)), float("-inf"))
    return logits.softmax(-1)


def default_stop_ids(tokenizer) -> set:
    """End of sequence plus the family's end-of-turn token, where the vocabulary has it as one
    piece: Gemma 3 ``<end_of_turn>`` (106), Gemma 4 ``<turn|>`` (106 in its own vocabulary)."""
    ids = {tokenizer.eos_id}
    for piece in ("<end_of_turn>", "<turn|>"):
        if piece in tokenizer.special:
            ids.add(tokenizer.special[piece])
    return ids


@torch.no_grad()
def generate_ids(model, prompt_ids, max_new_tokens=64, temperature=0.0, top_k=None, top_p=None,
                 seed=None, stop_ids=None, min_p=None, constraint=None, images=None, videos=None, audio=None,
                 assistant=None, num_draft_tokens=None):
    """Yield new token ids one by one (stops at an id in ``stop_ids``, which is not yielded).

    ``constraint``: an object with ``allowed() -> (vocab,) bool tensor``, ``advance(id)`` and
    ``done``; generation stops (without a stop id) as soon as the constraint is ``done``.
    ``images`` / ``videos`` / ``audio`` fill the prompt's placeholder tokens (``multimodal.py``);
    they go into the prompt's forward pass only. ``assistant`` (with ``num_draft_tokens``, default
    4) switches on speculative decoding (``speculative.py``): same text, fewer target passes.
    """
    prompt_ids = [int(i) for i in prompt_ids]
    context = model.config.max_position_embeddings
    if not prompt_ids:
        raise ValueError("the prompt is empty: give at least one token (e.g. <bos>)")
    if len(prompt_ids) > context:
        raise ValueError(f"the prompt has {len(prompt_ids)} tokens, longer than the model's context of {context}")
    if len(prompt_ids) + max_new_tokens > context:
        raise ValueError(f"the prompt ({len(prompt_ids)} tokens) plus max_new_tokens ({max_new_tokens}) "
                         f"exceeds the model's context of {context}; ask for at most "
                         f"{context - len(prompt_ids)} new tokens")
    if assistant is not None:
        if images is not None or videos is not None or audio is not None:
            raise ValueError("speculative decoding (assistant=...) takes text prompts only, not media")
        if constraint is not None:
            raise ValueError("speculative decoding (assistant=...) cannot be combined with a constraint (json_schema)")
        from .speculative import speculative_ids  # imported here: speculative.py imports this module

        yield from speculative_ids(model, prompt_ids, assistant, 4 if num_draft_tokens is None else num_draft_tokens,
                                   max_new_tokens, temperature, top_k, top_p, seed, stop_ids, min_p=min_p)
        return
    if num_draft_tokens is not None:
        raise ValueError("num_draft_tokens needs an assistant (assistant=...) to draft them")
    generator = torch.Generator().manual_seed(seed) if seed is not None else None
    dtype = model.dtype
    cache = KVCache(model.config, batch=1, max_len=len(prompt_ids) + max_new_tokens, dtype=dtype)
    ids = torch.tensor([prompt_ids])  # (1, T)
    media = dict(images=images, videos=videos, audio=audio)
    for _ in range(max_new_tokens):
        logits = model(ids, cache=cache, last_only=True, **media)[0, -1]  # (vocab,)
        media = {}  # only the prompt holds placeholders
        allowed = constraint.allowed() if constraint is not None else None
        nxt = sample_next(logits, temperature, top_k, top_p, generator, min_p, allowed)
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


def stream_generate(model, tokenizer, prompt, max_new_tokens=64, temperature=0.0, top_k=None,
                    top_p=None, seed=None, add_bos=True, min_p=None, stop=None, stop_ids=None,
                    json_schema=None, images=None, videos=None, audio=None, assistant=None,
                    num_draft_tokens=None):
    """Yield pieces of the completion text as they are generated.

    ``stop``: strings that end the completion (not included); text that might be the start of one
    is held back until it is not. ``stop_ids``: token ids that end it (default:
    ``default_stop_ids(tokenizer)``). ``json_schema``: constrain the output to JSON valid for the
    schema (see ``constrained.py``); generation then ends when the value is complete.
    With media, a string ``prompt`` holds ``<|image|>`` / ``<|video|>`` / ``<|audio|>`` markers (one per
    item) that ``multimodal_prompt`` expands into placeholder tokens; a marker without its item is an
    error, not text.
    """
    if isinstance(prompt, str) and (images or videos or audio or any(m in prompt for m in MARKERS)):
        prompt_ids = multimodal_prompt(tokenizer, prompt, images or (), videos or (), audio or (), add_bos)
    else:
        prompt_ids = tokenizer.encode(prompt, add_bos=add_bos) if isinstance(prompt, str) else list(prompt)
    stops = [stop] if isinstance(stop, str) else list(stop or [])
    if any(not isinstance(s, str) or not s for s in stops):
        raise ValueError(f"stop strings must be non-empty strings, got {stop!r}")
    constraint = None
    if json_schema is not None:
        if stops:
            raise ValueError("stop strings cannot be combined with json_schema: the schema decides where the output ends")
        from .constrained import JSONConstraint
        constraint = JSONConstraint(json_schema, tokenizer, max_new_tokens)
    stop_ids = default_stop_ids(tokenizer) if stop_ids is None else set(stop_ids)
    new, printed = [], ""
    for i in generate_ids(model, prompt_ids, max_new_tokens, temperature, top_k, top_p, seed,
                          stop_ids=stop_ids, min_p=min_p, constraint=constraint,
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


def generate(model, tokenizer, prompt, max_new_tokens=64, temperature=0.0, top_k=None, top_p=None,
             seed=None, add_bos=True, stream=None, min_p=None, stop=None, stop_ids=None,
             json_schema=None, images=None, videos=None, audio=None, assistant=None,
             num_draft_tokens=None) -> str:
    """Return the completion of ``prompt`` (a string, or a list of ids); ``stream(text)`` is
    called with each new piece as it comes, e.g. ``stream=print``-like callables.
    With ``json_schema`` the result is JSON text valid for the schema (``json.loads`` it).
    Media: see ``stream_generate``. Speculative decoding: ``assistant=`` and
    ``num_draft_tokens=`` (``generate_ids``)."""
    pieces = []
    for piece in stream_generate(model, tokenizer, prompt, max_new_tokens, temperature, top_k, top_p,
                                 seed, add_bos, min_p=min_p, stop=stop, stop_ids=stop_ids,
                                 json_schema=json_schema, images=images, videos=videos, audio=audio,
                                 assistant=assistant, num_draft_tokens=num_draft_tokens):
        pieces.append(piece)
        if stream is not None:
            stream(piece)
    return "".join(pieces)
