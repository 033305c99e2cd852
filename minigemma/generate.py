"""Text generation: run the prompt once, then one token at a time with the KV cache.

Choosing the next token from the logits ("sampling"):

* ``temperature = 0`` takes the most likely token (greedy, deterministic);
* otherwise the logits are divided by the temperature (lower = sharper), optionally cut to the
  ``top_k`` best tokens and/or to the smallest set whose probability reaches ``top_p``, and a
  token is drawn from what is left, with a ``seed`` for reproducible draws.

``stream_generate`` yields text as soon as it is complete (a multi-byte character split over two
byte tokens is held back until its second half arrives); ``generate`` collects it into a string.
"""

import torch

from .cache import KVCache


def sample_next(logits, temperature=0.0, top_k=None, top_p=None, generator=None) -> int:
    """logits: (vocab,) -> the chosen token id."""
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0, got {temperature}")
    if top_k is not None and top_k < 1:
        raise ValueError(f"top_k must be >= 1, got {top_k}")
    if top_p is not None and not 0 < top_p <= 1:
        raise ValueError(f"top_p must be in (0, 1], got {top_p}")
    if temperature == 0:
        return int(logits.argmax())
    logits = logits.float() / temperature
    if top_k is not None:
        kth = torch.topk(logits, min(top_k, logits.numel())).values[-1]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p is not None:
        sorted_logits, order = logits.sort(descending=True)
        cumulative = sorted_logits.softmax(-1).cumsum(-1)
        drop = cumulative - sorted_logits.softmax(-1) >= top_p  # keep the token that crosses top_p
        logits = logits.masked_fill(torch.zeros_like(drop).scatter(0, order, drop), float("-inf"))
    return int(torch.multinomial(logits.softmax(-1), 1, generator=generator))


@torch.no_grad()
def generate_ids(model, prompt_ids, max_new_tokens=64, temperature=0.0, top_k=None, top_p=None,
                 seed=None, stop_ids=None):
    """Yield new token ids one by one (stops at an id in ``stop_ids``, which is not yielded)."""
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
    generator = torch.Generator().manual_seed(seed) if seed is not None else None
    dtype = model.dtype
    cache = KVCache(model.config, batch=1, max_len=len(prompt_ids) + max_new_tokens, dtype=dtype)
    ids = torch.tensor([prompt_ids])  # (1, T)
    for _ in range(max_new_tokens):
        logits = model(ids, cache=cache, last_only=True)[0, -1]  # (vocab,)
        nxt = sample_next(logits, temperature, top_k, top_p, generator)
        if stop_ids and nxt in stop_ids:
            return
        yield nxt
        ids = torch.tensor([[nxt]])  # (1, 1): from now on one token per step


def stream_generate(model, tokenizer, prompt, max_new_tokens=64, temperature=0.0, top_k=None,
                    top_p=None, seed=None, add_bos=True):
    """Yield pieces of the completion text as they are generated."""
    prompt_ids = tokenizer.encode(prompt, add_bos=add_bos) if isinstance(prompt, str) else list(prompt)
    new, printed = [], ""
    for i in generate_ids(model, prompt_ids, max_new_tokens, temperature, top_k, top_p, seed,
                          stop_ids={tokenizer.eos_id}):
        new.append(i)
        text = tokenizer.decode(new)
        if not text.endswith("\ufffd"):  # an incomplete UTF-8 character waits for its next byte
            yield text[len(printed):]
            printed = text
    text = tokenizer.decode(new)
    if len(text) > len(printed):
        yield text[len(printed):]


def generate(model, tokenizer, prompt, max_new_tokens=64, temperature=0.0, top_k=None, top_p=None,
             seed=None, add_bos=True, stream=None) -> str:
    """Return the completion of ``prompt`` (a string, or a list of ids); ``stream(text)`` is
    called with each new piece as it comes, e.g. ``stream=print``-like callables."""
    pieces = []
    for piece in stream_generate(model, tokenizer, prompt, max_new_tokens, temperature, top_k, top_p,
                                 seed, add_bos):
        pieces.append(piece)
        if stream is not None:
            stream(piece)
    return "".join(pieces)
