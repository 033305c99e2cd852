"""Choosing the next token from the logits: the one place that does it.

A model gives one score (logit) per vocabulary entry; something must turn them into *one* token.

* ``temperature = 0`` takes the most likely token (greedy, deterministic);
* otherwise the logits are divided by the temperature (lower = sharper), optionally cut to the
  ``top_k`` best tokens, to the smallest set whose probability reaches ``top_p`` (nucleus sampling,
  Holtzman et al. 2019) and/or to the tokens at least ``min_p`` times as likely as the best one
  (min-p, Nguyen et al. 2024), and a token is drawn from what is left. ``seed`` makes the draws
  reproducible.

``Sampling`` holds these five settings and nothing else; plain generation (``generate.py``),
speculative decoding (``speculative.py``) and chat (``chat.py``) all take one, and all pick their
tokens with its ``pick``. ``Sampling.of(None, temperature=0.8)`` builds one from keyword options,
which is how ``generate(model, tok, prompt, temperature=0.8)`` reads.
"""

import dataclasses
import math
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Sampling:
    temperature: float = 0.0
    top_k: int | None = None
    top_p: float | None = None
    min_p: float | None = None
    seed: int | None = None

    def __post_init__(self):
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {self.temperature}")
        if self.top_k is not None and self.top_k < 1:
            raise ValueError(f"top_k must be >= 1, got {self.top_k}")
        if self.top_p is not None and not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.min_p is not None and not 0 <= self.min_p <= 1:
            raise ValueError(f"min_p must be in [0, 1], got {self.min_p}")

    @classmethod
    def of(cls, sampling=None, **options) -> "Sampling":
        """``sampling`` (or the default: greedy) with any of its fields replaced by ``options``."""
        names = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(options) - set(names))
        if unknown:
            raise TypeError(f"unknown sampling option {', '.join(unknown)}: the options are {', '.join(names)}")
        if sampling is not None and not isinstance(sampling, Sampling):
            raise TypeError(f"sampling must be a minigemma Sampling, got {type(sampling).__name__}")
        return dataclasses.replace(sampling or cls(), **options)

    @property
    def greedy(self) -> bool:
        return self.temperature == 0

    def generator(self):
        """A fresh random generator for one generation (None without a seed: torch's global one)."""
        return torch.Generator().manual_seed(self.seed) if self.seed is not None else None

    def distribution(self, logits):
        """logits: (vocab,) -> the probabilities a token is drawn from (vocab,), or None when greedy."""
        if self.greedy:
            return None
        logits = logits.float() / self.temperature
        if self.top_k is not None:
            kth = torch.topk(logits, min(self.top_k, logits.numel())).values[-1]
            logits = logits.masked_fill(logits < kth, float("-inf"))
        if self.top_p is not None:
            sorted_logits, order = logits.sort(descending=True)
            probs = sorted_logits.softmax(-1)
            drop = probs.cumsum(-1) - probs >= self.top_p  # keep the token that crosses top_p
            logits = logits.masked_fill(torch.zeros_like(drop).scatter(0, order, drop), float("-inf"))
        if self.min_p is not None:  # keep tokens with p >= min_p * p_max, i.e. logit >= max + log(min_p)
            logits = logits.masked_fill(logits < logits.max() + math.log(max(self.min_p, 1e-45)), float("-inf"))
        return logits.softmax(-1)

    def pick(self, logits, generator=None, allowed=None):
        """logits: (vocab,) -> (token id, the distribution it was drawn from, or None when greedy).

        ``allowed``: an optional (vocab,) bool mask (a constraint, ``constrained.py``): forbidden
        tokens can be neither the argmax nor drawn."""
        if allowed is not None:
            logits = logits.masked_fill(~allowed, float("-inf"))
        probs = self.distribution(logits)
        if probs is None:
            return int(logits.float().argmax()), None  # float32: bf16's argmax is several times slower
        return int(torch.multinomial(probs, 1, generator=generator)), probs
