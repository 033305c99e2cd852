"""Constrained decoding: make any model write JSON that is valid for a schema, every time.

A language model proposes a score for each of its 262,144 vocabulary pieces at every step. To
force valid output we do not change the model: we *forbid* the pieces that would break the
format, and let the model choose among the rest (greedy = the most likely allowed piece).

Three parts, three files:

1. **The schema** (``json_schema.py``): normalised and compiled into nodes; the supported subset
   and its caps are listed there.
2. **A character-level state machine** (``json_machine.py``): ``step(state, ch)`` returns the
   state after character ``ch`` (empty when ``ch`` is not allowed).
3. **A walk over the vocabulary** (this file): pieces span several characters (``"},`` is one
   piece), so a piece is allowed when *all* its characters are, in order. Walking the pieces
   sorted as a character trie shares the work of common prefixes and stops at the first forbidden
   character of a whole branch. The result for a state is cached: most steps repeat a state
   ("inside a free string"), so the walk runs once per state. Inside a string, the pieces made
   only of ordinary characters (no ``"``, ``\\``, control characters) are handled at once with
   arrays. **A budget**: for every allowed piece the walk also records how many characters the
   shortest valid completion needs afterwards; a piece is allowed only if that fits in the tokens
   left (every character we may need is a single piece, checked up front), so the value always
   closes within ``max_new_tokens``.

**Byte-fallback pieces** (``<0x..>``) and control pieces are never allowed: a byte is not a
character, and allowing half a character would let the output be invalid UTF-8; every character
the model writes is one the vocabulary holds whole.
"""

from bisect import bisect_left

import numpy as np
import torch

from .json_machine import Machine, String
from .json_schema import NEVER, Schema, SchemaError
from .tokenizer import BYTE, CONTROL, SPACE, UNKNOWN, UNUSED

__all__ = ["JSONConstraint", "SchemaError", "Vocabulary"]


class Vocabulary:
    """Every usable piece's text, sorted for trie walks (built once per tokenizer)."""

    def __init__(self, tokenizer):
        self.size = len(tokenizer.pieces)
        entries = []
        for i, (p, t) in enumerate(zip(tokenizer.pieces, tokenizer.types)):
            if t in (BYTE, CONTROL, UNKNOWN, UNUSED) or not p:
                continue
            if p in tokenizer.special and len(p) > 1 and p.startswith("<") and p.endswith(">"):
                continue  # tag-like added pieces (<start_of_image>, ...): text would re-encode as a token
            entries.append((p.replace(SPACE, " "), i))
        entries.sort()
        self.texts = [e[0] for e in entries]
        self.ids = [e[1] for e in entries]
        self.single = {t: i for t, i in entries if len(t) == 1}  # characters that are one piece
        self.id_text = {i: t for t, i in entries}
        # Inside a string most pieces are plain characters: handle them with tensors.
        plain = [(t, i) for t, i in entries if not any(c in '"\\' or ord(c) < 32 for c in t)]
        self.plain_ids = np.array([i for _, i in plain], dtype=np.int64)
        self.plain_len = np.array([len(t) for t, _ in plain], dtype=np.int64)
        special = [(t, i) for t, i in entries if any(c in '"\\' or ord(c) < 32 for c in t)]
        self.special_texts = [t for t, _ in special]
        self.special_ids = [i for _, i in special]

    _cache = {}

    @classmethod
    def of(cls, tokenizer):
        key = id(tokenizer)
        if key not in cls._cache or cls._cache[key][0] is not tokenizer:
            cls._cache[key] = (tokenizer, cls(tokenizer))
        return cls._cache[key][1]


def _walk(machine, texts, ids, state, found, allowed_chars_fn):
    """Trie walk over sorted ``texts``: found[id] = characters left after the piece, for every
    piece whose characters the machine accepts from ``state``."""
    def visit(lo, hi, depth, state):
        while lo < hi and len(texts[lo]) == depth:  # pieces that end here
            f = machine.finish(state)
            if f < found.get(ids[lo], NEVER):
                found[ids[lo]] = f
            lo += 1
        if lo >= hi:
            return
        chars = allowed_chars_fn(state)
        if chars is not None:  # few allowed characters: jump to each one's block
            prefix = texts[lo][:depth]
            for c in sorted(chars):
                a = bisect_left(texts, prefix + c, lo, hi)
                b = bisect_left(texts, prefix + chr(ord(c) + 1), a, hi)
                if a < b:
                    nxt = machine.step(state, c)
                    if nxt:
                        visit(a, b, depth + 1, nxt)
            return
        i = lo
        while i < hi:  # many allowed characters: go through the children in order
            c = texts[i][depth]
            j = bisect_left(texts, texts[i][:depth] + chr(ord(c) + 1), i, hi)
            nxt = machine.step(state, c)
            if nxt:
                visit(i, j, depth + 1, nxt)
            i = j

    visit(0, len(texts), 0, state)


class JSONConstraint:
    """The ``constraint`` ``generate_ids`` takes: ``allowed()``, ``advance(id)``, ``done``.

    ``JSONConstraint(schema, tokenizer, max_new_tokens)``; ``text`` holds what was written.
    """

    def __init__(self, schema, tokenizer, max_new_tokens, end_id=None):
        self.schema = Schema(schema)
        self.machine = Machine(self.schema)
        self.vocab = Vocabulary.of(tokenizer)
        self.end_id = tokenizer.eos_id if end_id is None else end_id
        self.state = self.machine.start()
        self.remaining = max_new_tokens
        self.text = ""
        self.done = False
        self._cache = {}
        self._check_characters()
        need = self.machine.finish(self.state)
        if need > max_new_tokens:
            raise SchemaError(f"the shortest valid output needs {need} tokens, more than max_new_tokens={max_new_tokens}")

    def _check_characters(self):
        """Every character a shortest completion may need must be a single piece."""
        chars = set('{}[]",:-.0123456789a')
        for node in self.schema.nodes:
            if node["kind"] == "object":
                chars.update("".join(node["props"]))
            if node["kind"] == "literal":
                chars.update("".join(node["texts"]))
        missing = sorted(c for c in chars if c not in self.vocab.single)
        if missing:
            raise SchemaError(f"the vocabulary has no single piece for character(s) {missing} that the schema needs")

    def _entry(self, state):
        """Per state, once: (finish table, mask when the budget is no concern, largest finite finish).

        finish[id] = characters still needed after piece id (NEVER = forbidden)."""
        if state in self._cache:
            return self._cache[state]
        v, m = self.vocab, self.machine
        found = {}
        stacks = list(state)
        if len(stacks) == 1 and stacks[0] and isinstance(stacks[0][-1], String):  # plain pieces in a string
            stack = stacks[0]
            _walk(m, v.special_texts, v.special_ids, state, found, m.next_chars)
            node = self.schema.nodes[stack[-1].n]
            length = stack[-1].length
            cost = np.maximum(node["min"] - length - v.plain_len, 0) + 1 + m.stack_finish(stack[:-1])
            if node["max"] is not None:
                cost = np.where(length + v.plain_len <= node["max"], cost, NEVER)
            finish = np.full(v.size, NEVER, dtype=np.int64)
            finish[v.plain_ids] = cost
        else:
            _walk(m, v.texts, v.ids, state, found, m.next_chars)
            finish = np.full(v.size, NEVER, dtype=np.int64)
        if found:
            ids = np.fromiter(found.keys(), dtype=np.int64, count=len(found))
            finish[ids] = np.minimum(finish[ids], np.fromiter(found.values(), dtype=np.int64, count=len(found)))
        ok = finish < NEVER
        if m.accepting(state):
            ok[self.end_id] = True
            finish[self.end_id] = 0
        if not ok.any():
            raise RuntimeError(f"no piece can continue {self.text!r}: the vocabulary cannot write what the schema needs")
        largest = int(finish[ok].max())
        entry = (finish, torch.from_numpy(ok), largest)
        self._cache[state] = entry
        return entry

    def allowed(self):
        """(vocab,) bool: the pieces that keep the output valid and completable in time."""
        finish, mask, largest = self._entry(self.state)
        if largest > self.remaining - 1:  # near the end of the budget: only pieces that leave room
            ok = finish <= self.remaining - 1
            if not ok.any():
                raise RuntimeError(f"no piece can continue {self.text!r} within the {self.remaining} tokens left")
            mask = torch.from_numpy(ok)
        return mask

    def advance(self, token_id) -> bool:
        """Move past the chosen piece; False when it was the end token (not part of the output)."""
        self.remaining -= 1
        if token_id == self.end_id and self.machine.accepting(self.state):
            self.done = True
            return False
        piece = self.vocab.id_text.get(token_id)
        if piece is None:
            raise ValueError(f"token id {token_id} is never allowed in JSON output (a control or byte piece)")
        for ch in piece:
            self.state = self.machine.step(self.state, ch)
            if not self.state:
                raise ValueError(f"piece {piece!r} (id {token_id}) is not allowed after {self.text!r}")
        self.text += piece
        if self.machine.accepting(self.state) and (self.remaining == 0 or not self.machine.extendable(self.state)):
            self.done = True  # complete, and nothing may (or can) be added
        return True
