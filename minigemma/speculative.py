"""Speculative decoding: guess k tokens cheaply, let the big model check all of them in one pass.

On a CPU (or a phone) decoding one token is *memory-bound*: every weight of the model is read from
memory to do a handful of multiply-adds with it. Feeding the model k+1 tokens instead of one reads
the same weights once and does k+1 times the arithmetic, which the processor mostly had time for:
a pass over 5 tokens costs far less than 5 passes over 1 (measured in notebook 13 and
``benchmarks/results_speculative.md``). So:

1. a **drafter** proposes k tokens ``d1..dk`` after the last token ``t`` (cheaply: a tiny model,
   Gemma 4's MTP assistant ``mtp.py``, or copying from the text itself, ``PromptLookup``);
2. the **target** runs once over ``[t, d1, .., dk]``: row ``i`` of its logits is what it would have
   chosen after ``d1..di``;
3. greedy: keep the longest prefix of drafts that equals the target's own choices, then add the
   target's choice at the first disagreement (or after the last draft): 1 to k+1 tokens per pass,
   and *exactly* the text plain greedy decoding gives. Sampling: draft ``d`` is kept with
   probability ``min(1, p(d)/q(d))`` (``p`` target, ``q`` drafter); on a rejection the replacement
   is drawn from ``max(0, p - q)``, renormalised. This makes every token distributed exactly as
   ``p`` (Leviathan et al. 2023; Chen et al. 2023);
4. the target's KV cache wrote all k+1 tokens; the rejected ones are taken back
   (``KVCache.checkpoint`` / ``rollback``, ring buffers included).

If each draft is accepted with probability ``α``, one target pass yields on average
``(1 - α^(k+1)) / (1 - α)`` tokens.
"""

from dataclasses import dataclass, field

import torch
from torch import nn

from .cache import KVCache
from .decoder import Gemma
from .mtp import Drafter, check_pair, producer_layers
from .row_exact import one_row_at_a_time
from .sampling import Sampling
from .swap import decoder_modules


@dataclass
class Stats:
    """What happened, pass by pass: ``rounds`` holds (drafted, accepted, target's token) per pass."""

    rounds: list = field(default_factory=list)

    @property
    def drafted(self):
        return sum(len(d) for d, _, _ in self.rounds)

    @property
    def accepted(self):
        return sum(a for _, a, _ in self.rounds)

    @property
    def acceptance_rate(self):
        return self.accepted / max(self.drafted, 1)

    @property
    def tokens_per_pass(self):
        return (self.accepted + len(self.rounds)) / max(len(self.rounds), 1)


def cached_kv(target: Gemma, cache: KVCache, j: int):
    """Layer j's cached keys, values and positions: (B, K, S, hd) twice and (S,). A values-only cache
    (keys-as-values layers, ``cache.py``) keeps no keys: they are rebuilt from the values."""
    layer, n = cache.layers[j], cache.layers[j].filled
    v, pos = layer.v[:, :, :n], layer.pos[:n]
    if layer.k is not None:
        return layer.k[:, :, :n], v, pos
    return target.layers[j].self_attn.keys_from_values(v, *(t[:n] for t in layer.key_rope)), v, pos


class MTPDrafting:
    """Drafts with a Gemma 4 assistant: it reads the target's hidden state and cached K/V (``mtp.py``)."""

    def __init__(self, drafter: Drafter, target: Gemma):
        check_pair(drafter, target.config)
        self.drafter, self.target = drafter, target
        self.producers = producer_layers(target.config)  # layer type -> target layer whose K/V it reads

    def start(self, max_len):
        pass  # no cache of its own

    def propose(self, ids, hidden, cache, k, draw):
        """ids: every token so far (the last one not yet seen by the target); hidden: (1, 1, D) the
        target's state that chose it -> k drafts and their distributions (None when greedy)."""
        kv = {}
        for typ, j in self.producers.items():
            kv[typ] = cached_kv(self.target, cache, j)
        position, token = len(ids) - 1, ids[-1]
        drafts, dists = [], []
        for _ in range(k):
            embeds = self.target.embed(torch.tensor([[token]]))  # (1, 1, D): the target's embedding
            logits, hidden = self.drafter(embeds, hidden, kv, position)  # same position, same K/V each step
            token, q = draw(logits[0, -1])
            drafts.append(token)
            dists.append(q)
        return drafts, dists

    def accepted(self, n):
        pass


class ModelDrafting:
    """Drafts with a smaller model of the same vocabulary, one token at a time with its own cache."""

    def __init__(self, model: Gemma, target: Gemma):
        if model.config.vocab_size != target.config.vocab_size:
            raise ValueError(f"the drafting model's vocabulary ({model.config.vocab_size}) differs from the "
                             f"target's ({target.config.vocab_size}): its tokens would mean something else")
        self.model = model

    def start(self, max_len):
        dtype = self.model.dtype
        self.cache = KVCache(self.model.config, batch=1, max_len=max_len, dtype=dtype)

    def propose(self, ids, hidden, cache, k, draw):
        pending = torch.tensor([ids[self.cache.seen:]])  # (1, P): accepted tokens it has not seen yet
        logits = self.model(pending, cache=self.cache, last_only=True)[0, -1]
        self.mark = self.cache.checkpoint(k - 1)  # drafts 1..k-1 go into its cache, to be taken back
        drafts, dists = [], []
        for i in range(k):
            token, q = draw(logits)
            drafts.append(token)
            dists.append(q)
            if i < k - 1:
                logits = self.model(torch.tensor([[token]]), cache=self.cache, last_only=True)[0, -1]
        return drafts, dists

    def accepted(self, n):
        self.cache.rollback(self.mark, min(n, len(self.mark[1])))


class PromptLookup:
    """Drafts by copying (prompt lookup / n-gram drafting): find the most recent earlier occurrence of
    the last ``n`` tokens (n = ``max_ngram`` down to 1) and propose the tokens that followed it.
    Free, and good whenever the output repeats the input (summaries, code edits, quotes)."""

    def __init__(self, max_ngram: int = 3):
        if max_ngram < 1:
            raise ValueError(f"max_ngram must be >= 1, got {max_ngram}")
        self.max_ngram = max_ngram

    def start(self, max_len):
        pass

    def propose(self, ids, hidden, cache, k, draw):
        for n in range(min(self.max_ngram, len(ids) - 1), 0, -1):
            tail = ids[-n:]
            for start in range(len(ids) - n - 1, -1, -1):  # most recent first, not the tail itself
                if ids[start:start + n] == tail:
                    drafts = ids[start + n:start + n + k]
                    return drafts, [None] * len(drafts)  # deterministic guesses: q is one-hot
        return [], []

    def accepted(self, n):
        pass


def as_drafting(assistant, target):
    """A Gemma 4 assistant, a smaller ``Gemma``, ``"prompt_lookup"`` or a drafting object -> drafting object."""
    if isinstance(assistant, Drafter):
        return MTPDrafting(assistant, target)
    if isinstance(assistant, Gemma):
        return ModelDrafting(assistant, target)
    if isinstance(assistant, str) and assistant == "prompt_lookup":
        return PromptLookup()
    if all(hasattr(assistant, m) for m in ("start", "propose", "accepted")):
        return assistant
    raise TypeError(f"assistant must be a Gemma 4 assistant (minigemma.load on its directory), a smaller Gemma "
                    f"model of the same vocabulary, 'prompt_lookup', or a drafting object; got {assistant!r}")


def check_row_exact(target):
    """Raise unless every layer of the target's decoder can compute a verifying pass row by row
    (``row_exact.py``): plain ``nn.Linear`` layers and an ``nn.Embedding`` head cannot, as
    ``F.linear`` rounds one row and several differently. ``load`` swaps them; a model built by hand
    needs ``use_row_blocks``."""
    plain = [name for name, m in decoder_modules(target) if type(m) is nn.Linear and ".lora_" not in name
             or name == "embed_tokens" and type(m) is nn.Embedding]
    if plain:
        raise ValueError(f"the target has plain nn.Linear/nn.Embedding layers ({plain[0]}, ...), whose "
                         "products round differently for one row and for a verifying pass of several, so "
                         "speculative decoding could change the text: swap them first with "
                         "minigemma.rowblocks.use_row_blocks(model) (load() does it)")


def verify(logits, drafts, dists, sampling, generator=None):
    """logits: (k+1, vocab) the target's rows for [t, d1..dk] -> (drafts accepted, the target's next token)."""
    for i, d in enumerate(drafts):
        if sampling.greedy:  # keep the draft iff it is the target's own choice
            choice, _ = sampling.pick(logits[i])
            if choice != d:
                return i, choice
            continue
        p = sampling.distribution(logits[i])  # (vocab,)
        q = dists[i] if dists[i] is not None else torch.nn.functional.one_hot(torch.tensor(d), p.numel()).float()
        if torch.rand((), generator=generator) < torch.clamp(p[d] / q[d], max=1.0):
            continue  # accepted with probability min(1, p/q)
        residual = torch.clamp(p - q, min=0)  # where the target wants more than the drafter gave
        if residual.sum() <= 0:  # only by rounding (p == q): any draw from p is then correct
            residual = p
        return i, int(torch.multinomial(residual / residual.sum(), 1, generator=generator))
    token, _ = sampling.pick(logits[len(drafts)], generator)  # every draft accepted: a bonus token from the last row
    return len(drafts), token


@torch.no_grad()
def speculative_ids(target, prompt_ids, assistant, num_draft_tokens, max_new_tokens=64, sampling=None,
                    stop_ids=None, stats=None, **options):
    """Yield new token ids, as ``generate_ids`` does, drafting ``num_draft_tokens`` per target pass.

    ``sampling`` / ``options``: as in ``generate_ids``. ``stats``: a ``Stats`` to fill with what was
    drafted and accepted. The prompt is checked by ``generate_ids`` (call it with ``assistant=``)."""
    if not isinstance(num_draft_tokens, int) or num_draft_tokens < 1:
        raise ValueError(f"num_draft_tokens must be an integer >= 1, got {num_draft_tokens!r}")
    sampling = Sampling.of(sampling, **options)
    generator = sampling.generator()
    check_row_exact(target)

    def draw(logits):  # (vocab,) -> (token, its distribution or None): how drafters pick their guesses
        return sampling.pick(logits, generator)

    drafting = as_drafting(assistant, target)
    max_len = len(prompt_ids) + max_new_tokens
    cache = KVCache(target.config, batch=1, max_len=max_len, dtype=target.dtype)
    smallest = min(layer.size for layer in cache.layers if layer is not None)
    if min(num_draft_tokens, max_new_tokens - 1) + 1 > smallest:
        raise ValueError(f"num_draft_tokens={num_draft_tokens}: a verification pass of {num_draft_tokens + 1} "
                         f"tokens must fit in the smallest ring buffer ({smallest} positions, the sliding window)")
    drafting.start(max_len)
    logits, hidden = target(torch.tensor([prompt_ids]), cache=cache, last_only=True, return_hidden=True)
    token, _ = sampling.pick(logits[0, -1], generator)
    ids, produced, pending = list(prompt_ids), 0, [token]  # pending: chosen, not yet given out
    while True:
        for t in pending:
            if stop_ids and t in stop_ids:
                return
            yield t
            ids.append(t)
            produced += 1
            if produced == max_new_tokens:
                return
        k = min(num_draft_tokens, max_new_tokens - produced)
        drafts, dists = drafting.propose(ids, hidden, cache, k, draw)
        mark = cache.checkpoint(len(drafts) + 1)
        with one_row_at_a_time():  # each row exactly as a one-token step computes it (row_exact.py)
            logits, hiddens = target(torch.tensor([[token] + drafts]), cache=cache, return_hidden=True)  # one pass
        n, token = verify(logits[0], drafts, dists, sampling, generator)
        cache.rollback(mark, keep=n + 1)  # the last token and the accepted drafts stay
        drafting.accepted(n)
        hidden = hiddens[:, n:n + 1]  # (1, 1, D): the state that chose the new token
        if stats is not None:
            stats.rounds.append((drafts, n, token))
        pending = drafts[:n] + [token]  # the accepted drafts, then the target's own next token
