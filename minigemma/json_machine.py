"""The character-level state machine of a compiled JSON schema (see ``json_schema.py``).

A *stack* of frames says where we are (``{"a": [1, 2`` is "inside an array, inside an object at
property a"); a *state* is a frozenset of stacks, several when ``anyOf`` leaves a choice open.
``Machine.step(state, ch)`` returns the state after character ``ch`` (empty: not allowed),
``finish(state)`` the fewest characters that complete the value, ``next_chars(state)`` the few
characters a structural state may take (None inside strings, where almost any may come).

Each frame kind is one small class that knows those three things for itself. Frames are
NamedTuples so that states hash fast and can key the decoder's mask cache; NamedTuples compare
as plain tuples, so each carries its kind in a last default field (``Key(1, (), "start")`` must
not equal ``Object(1, (), "start")``). Output is compact JSON: no whitespace between tokens; keys
in any order, each at most once; string escapes ``\\"``, ``\\\\``, ``\\/``, ``\\n``, ``\\t`` only.
"""

from typing import NamedTuple

from .json_schema import NEVER, Schema, number_complete, number_finish, number_viable

ESCAPES = {'"': '"', "\\": "\\", "/": "/", "n": "\n", "t": "\t"}
STRUCTURAL = frozenset('{}[]",:-.0123456789')  # what may follow a structural frame (a superset)
ENDS = frozenset(",}]")  # what may follow a finished literal


class Value(NamedTuple):
    """A value of node n must start here."""
    n: int
    kind: str = "V"

    def step(self, m, rest, ch):
        node = m.nodes[self.n]
        k = node["kind"]
        if k == "anyof":
            return [t for o in node["options"] for t in m.step_stack(rest + (Value(o),), ch)]
        if k == "object":
            return [rest + (Object(self.n, (), "start"),)] if ch == "{" else []
        if k == "array":
            return [rest + (Array(self.n, 0, "start"),)] if ch == "[" else []
        if k == "string":
            return [rest + (String(self.n, 0),)] if ch == '"' else []
        if k in ("integer", "number"):
            return [rest + (Number(self.n, ch),)] if number_viable(node, ch) else []
        texts = tuple(t[1:] for t in node["texts"] if t[0] == ch)  # a literal
        return [Literal.of(rest, texts)] if texts else []

    def finish(self, m):
        return m.schema.min_len(self.n)

    def next_chars(self, m):
        return STRUCTURAL | m.first_chars(self.n)


class String(NamedTuple):
    """Inside a string of node n holding ``length`` characters (capped at minLength when there is
    no maxLength, so that free strings share one state)."""
    n: int
    length: int
    kind: str = "S"

    def step(self, m, rest, ch):
        node = m.nodes[self.n]
        if ch == '"':
            return [rest] if self.length >= node["min"] else []
        if ch == "\\":
            return [rest + (Escape(self.n, self.length),)] if node["max"] is None or self.length < node["max"] else []
        if ord(ch) < 32 or (node["max"] is not None and self.length >= node["max"]):
            return []
        return [rest + (String(self.n, m.string_len(self.n, self.length + 1)),)]

    def finish(self, m):
        return max(0, m.nodes[self.n]["min"] - self.length) + 1

    def next_chars(self, m):
        return None


class Escape(NamedTuple):
    """Inside a string of node n, just after a backslash."""
    n: int
    length: int
    kind: str = "E"

    def step(self, m, rest, ch):
        return [rest + (String(self.n, m.string_len(self.n, self.length + 1)),)] if ch in ESCAPES else []

    def finish(self, m):
        return 1 + max(0, m.nodes[self.n]["min"] - self.length - 1) + 1

    def next_chars(self, m):
        return None


class Key(NamedTuple):
    """Inside a property name of object n, ``prefix`` written; the properties ``done`` are written."""
    n: int
    done: tuple
    prefix: str
    kind: str = "K"

    def names(self, m):
        return [p for p in m.nodes[self.n]["props"] if p not in self.done and p.startswith(self.prefix)]

    def step(self, m, rest, ch):
        names = self.names(m)
        if ch == '"':
            return [rest + (Object(self.n, self.done, ":" + self.prefix),)] if self.prefix in names else []
        if any(p.startswith(self.prefix + ch) for p in names):
            return [rest + (Key(self.n, self.done, self.prefix + ch),)]
        return []

    def finish(self, m):
        props = m.nodes[self.n]["props"]
        return min((len(p) - len(self.prefix) + 2 + m.schema.min_len(props[p])
                    + m.schema.object_rest(self.n, self.done + (p,)) for p in self.names(m)), default=NEVER)

    def next_chars(self, m):
        return {p[len(self.prefix)] for p in self.names(m) if len(p) > len(self.prefix)} | {'"'}


class Object(NamedTuple):
    """Object n between tokens, the properties ``done`` written; ``phase`` is "start", "key"
    (after a comma), "after" (after a value) or ":name" (after a name, before its colon)."""
    n: int
    done: tuple
    phase: str
    kind: str = "O"

    def step(self, m, rest, ch):
        node = m.nodes[self.n]
        left = [p for p in node["props"] if p not in self.done]
        if self.phase.startswith(":"):
            name = self.phase[1:]
            return [rest + (Object(self.n, self.done + (name,), "after"), Value(node["props"][name]))] if ch == ":" else []
        if ch == '"' and self.phase in ("start", "key") and left:
            return [rest + (Key(self.n, self.done, ""),)]
        if ch == "," and self.phase == "after" and left:
            return [rest + (Object(self.n, self.done, "key"),)]
        if ch == "}" and self.phase in ("start", "after") and all(r in self.done for r in node["required"]):
            return [rest]
        return []

    def finish(self, m):
        props, schema = m.nodes[self.n]["props"], m.schema
        if self.phase.startswith(":"):
            name = self.phase[1:]
            return 1 + schema.min_len(props[name]) + schema.object_rest(self.n, self.done + (name,))
        if self.phase == "key":
            return min((len(p) + 3 + schema.min_len(props[p]) + schema.object_rest(self.n, self.done + (p,))
                        for p in props if p not in self.done), default=NEVER)
        return schema.object_rest(self.n, self.done, first=self.phase == "start")

    def next_chars(self, m):
        return STRUCTURAL


class Array(NamedTuple):
    """Array n holding ``count`` items (capped at minItems when there is no maxItems); ``phase``
    is "start", "item" (after a comma) or "after" (after an item)."""
    n: int
    count: int
    phase: str
    kind: str = "A"

    def step(self, m, rest, ch):
        node = m.nodes[self.n]
        room = node["max"] is None or self.count < node["max"]
        if ch == "]" and self.phase in ("start", "after") and self.count >= node["min"]:
            return [rest]
        if ch == "," and self.phase == "after" and room:
            return [rest + (Array(self.n, self.count, "item"),)]
        if self.phase in ("start", "item") and room:
            counted = self.count + 1 if node["max"] is not None else min(self.count + 1, node["min"])
            return m.step_stack(rest + (Array(self.n, counted, "after"), Value(node["items"])), ch)
        return []

    def finish(self, m):
        return m.schema.array_rest(self.n, self.count, self.phase)

    def next_chars(self, m):
        return STRUCTURAL | m.first_chars(m.nodes[self.n]["items"])


class Number(NamedTuple):
    """A number of node n being written, ``text`` so far."""
    n: int
    text: str
    kind: str = "N"

    def step(self, m, rest, ch):
        node = m.nodes[self.n]
        if number_viable(node, self.text + ch):
            return [rest + (Number(self.n, self.text + ch),)]
        if number_complete(node, self.text):  # the number ended; the character belongs to the parent
            return m.step_stack(rest, ch)
        return []

    def finish(self, m):
        return number_finish(m.nodes[self.n], self.text)

    def next_chars(self, m):
        return STRUCTURAL

    def grows(self, m):
        return any(number_viable(m.nodes[self.n], self.text + c) for c in "0123456789.")


class Literal(NamedTuple):
    """A literal (true, an enum value...) being written: the candidate remainders ``texts``."""
    texts: tuple
    kind: str = "L"

    @staticmethod
    def of(rest, texts):
        return rest if texts == ("",) else rest + (Literal(texts),)

    def step(self, m, rest, ch):
        texts = tuple(t[1:] for t in self.texts if t and t[0] == ch)
        out = [Literal.of(rest, texts)] if texts else []
        if "" in self.texts:  # one candidate is complete: the character may belong to the parent
            out += m.step_stack(rest, ch)
        return out

    def finish(self, m):
        return min(len(t) for t in self.texts)

    def next_chars(self, m):
        return {t[0] for t in self.texts if t} | ENDS

    def grows(self, m):
        return any(self.texts)


class Machine:
    """Steps, completes and lists the next characters of states (frozensets of frame stacks)."""

    def __init__(self, schema: Schema):
        self.schema = schema
        self.nodes = schema.nodes

    def start(self):
        return frozenset(self._expand((Value(self.schema.root),)))

    def _expand(self, stack):
        """Replace a top Value of an anyOf node by one stack per option."""
        if stack and isinstance(stack[-1], Value) and self.nodes[stack[-1].n]["kind"] == "anyof":
            return [s for o in self.nodes[stack[-1].n]["options"] for s in self._expand(stack[:-1] + (Value(o),))]
        return [stack]

    def step(self, state, ch):
        out = set()
        for stack in state:
            if stack:
                for s in stack[-1].step(self, stack[:-1], ch):
                    out.update(self._expand(s))
        return frozenset(out)

    def step_stack(self, stack, ch):
        return stack[-1].step(self, stack[:-1], ch) if stack else []

    def string_len(self, n, length):
        node = self.nodes[n]
        return length if node["max"] is not None else min(length, node["min"])

    def finish(self, state):
        """Fewest characters that complete the value from ``state`` (NEVER if it cannot)."""
        return min((self.stack_finish(s) for s in state), default=NEVER)

    def stack_finish(self, stack):
        return sum(frame.finish(self) for frame in stack)

    def accepting(self, state):
        return any(len(s) <= 1 and self.stack_finish(s) == 0 for s in state)

    def extendable(self, state):
        """Can any character still be added (a top-level number or an ambiguous literal)?"""
        return any(s and (s[-1].grows(self) if isinstance(s[-1], (Number, Literal)) else True) for s in state)

    def next_chars(self, state):
        """The few characters a structural state allows, or None when many are (inside strings)."""
        chars = set()
        for stack in state:
            if stack:
                top = stack[-1].next_chars(self)
                if top is None:
                    return None
                chars |= top
        return chars

    def first_chars(self, n):
        """Characters a value of node n may start with, beyond STRUCTURAL (a literal's)."""
        node = self.nodes[n]
        if node["kind"] == "literal":
            return {t[0] for t in node["texts"]}
        if node["kind"] == "anyof":
            return set().union(*(self.first_chars(o) for o in node["options"]))
        return set()
