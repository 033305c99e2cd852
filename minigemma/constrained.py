"""Constrained decoding: make any model write JSON that is valid for a schema, every time.

A language model proposes a score for each of its 262,144 vocabulary pieces at every step. To
force valid output we do not change the model: we *forbid* the pieces that would break the
format, and let the model choose among the rest (greedy = the most likely allowed piece).

Three parts:

1. **A character-level state machine** for the schema. Its state is a stack of frames
   (``{"a": [1, 2`` is "inside an array, inside an object at property a"); ``_step(stack, ch)``
   returns the stacks that can follow character ``ch`` (several when ``anyOf`` leaves a choice
   open, none when ``ch`` is not allowed).
2. **A walk over the vocabulary**: pieces span several characters (``"},`` is one piece), so a
   piece is allowed when *all* its characters are, in order. Walking the pieces sorted as a
   character trie shares the work of common prefixes and stops at the first forbidden character
   of a whole branch. The result for a state is cached: most steps repeat a state ("inside a free
   string"), so the walk runs once per state. Inside a string, the pieces made only of ordinary
   characters (no ``"``, ``\\``, control characters) are handled at once with tensors.
3. **A budget**: for every allowed piece the walk also records how many characters the shortest
   valid completion needs afterwards. A piece is allowed only if that fits in the tokens left
   (every character we may need is a single piece, checked up front), so the value always closes
   within ``max_new_tokens``; the schema's unbounded parts (string length, number of items) are
   capped by that budget alone.

Caps and choices (documented, deliberate):

* output is compact JSON: **no whitespace** between tokens; keys are written in any order, each at
  most once, only the declared ``properties`` (``additionalProperties`` may only be ``false``);
* numbers: at most 15 integer digits and 6 fraction digits, no exponent; integers have no fraction;
* strings: any character except ``"``, ``\\`` and control characters, plus the escapes ``\\"``,
  ``\\\\``, ``\\/``, ``\\n``, ``\\t`` (not ``\\uXXXX``);
* **byte-fallback pieces** (``<0x..>``) and control pieces are never allowed: a byte is not a
  character, and allowing half a character would let the output be invalid UTF-8; every
  character the model writes is one the vocabulary holds whole;
* supported keywords: ``type`` (``object``, ``array``, ``string``, ``integer``, ``number``,
  ``boolean``, ``null``, or a list of them), ``properties``, ``required``, ``items``, ``minItems``,
  ``maxItems``, ``enum``, ``const``, ``minLength``, ``maxLength``, ``minimum``, ``maximum``,
  ``anyOf``; ``title``, ``description``, ``default``, ``examples``, ``$schema`` are annotations
  and change nothing; any other keyword is an error that names it.
"""

import json
import math
from bisect import bisect_left

import numpy as np
import torch

from .tokenizer import BYTE, CONTROL, SPACE, UNKNOWN, UNUSED

MAX_INT_DIGITS = 15
MAX_FRAC_DIGITS = 6
ESCAPES = {'"': '"', "\\": "\\", "/": "/", "n": "\n", "t": "\t"}
ANNOTATIONS = {"title", "description", "default", "examples", "$schema", "$comment"}
KEYWORDS = {"type", "properties", "required", "items", "minItems", "maxItems", "enum", "const",
            "minLength", "maxLength", "minimum", "maximum", "anyOf", "additionalProperties"}
TYPE_KEYWORDS = {"object": {"properties", "required", "additionalProperties"},
                 "array": {"items", "minItems", "maxItems"}, "string": {"minLength", "maxLength"},
                 "integer": {"minimum", "maximum"}, "number": {"minimum", "maximum"}, "boolean": set(), "null": set()}
NEVER = 1 << 30  # "no completion": a forbidden piece's finishing cost


class SchemaError(ValueError):
    """A schema outside the supported subset, or one no output can satisfy."""


# ---------------------------------------------------------------------------------------------
# 1. The schema, compiled into a list of nodes
# ---------------------------------------------------------------------------------------------

def _dumps(value):
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


class Schema:
    """``nodes[i]`` is a dict with a ``kind``: object, array, string, integer, number, literal, anyof."""

    def __init__(self, schema):
        self.nodes = []
        self.root = self._compile(schema, "schema")
        self._min = {}

    def _add(self, node):
        self.nodes.append(node)
        return len(self.nodes) - 1

    def _compile(self, s, where):
        if not isinstance(s, dict):
            raise SchemaError(f"{where}: a schema must be a dict, got {s!r}")
        unknown = set(s) - KEYWORDS - ANNOTATIONS
        if unknown:
            raise SchemaError(f"{where}: unsupported keyword(s) {sorted(unknown)} "
                              f"(supported: {sorted(KEYWORDS)})")
        if "const" in s:
            return self._add({"kind": "literal", "texts": (_dumps(s["const"]),)})
        if "enum" in s:
            if not isinstance(s["enum"], list) or not s["enum"]:
                raise SchemaError(f"{where}: 'enum' must be a non-empty list, got {s['enum']!r}")
            return self._add({"kind": "literal", "texts": tuple(dict.fromkeys(_dumps(v) for v in s["enum"]))})
        if "anyOf" in s:
            if set(s) - ANNOTATIONS - {"anyOf"}:
                raise SchemaError(f"{where}: 'anyOf' must stand alone (found {sorted(set(s) - ANNOTATIONS)})")
            if not isinstance(s["anyOf"], list) or not s["anyOf"]:
                raise SchemaError(f"{where}: 'anyOf' must be a non-empty list of schemas")
            return self._add({"kind": "anyof", "options": [self._compile(o, f"{where}.anyOf[{i}]")
                                                           for i, o in enumerate(s["anyOf"])]})
        t = s.get("type")
        if t is None:
            raise SchemaError(f"{where}: needs a 'type' (or 'enum', 'const', 'anyOf'); an unconstrained "
                              f"value is not supported")
        if isinstance(t, list):  # one option per type, each with the keywords that apply to it
            if not t:
                raise SchemaError(f"{where}: 'type' is an empty list")
            for x in t:
                if x not in TYPE_KEYWORDS:
                    raise SchemaError(f"{where}: unknown type {x!r}")
            return self._add({"kind": "anyof", "options": [
                self._compile({k: v for k, v in s.items() if k in TYPE_KEYWORDS[x] | ANNOTATIONS} | {"type": x},
                              f"{where}[{x}]") for x in t]})
        if t not in TYPE_KEYWORDS:
            raise SchemaError(f"{where}: unknown type {t!r}")
        bad = set(s) & (set().union(*TYPE_KEYWORDS.values()) - TYPE_KEYWORDS[t])
        if bad:
            raise SchemaError(f"{where}: keyword(s) {sorted(bad)} do not apply to type {t!r}")
        if t == "object":
            props = s.get("properties", {})
            if not isinstance(props, dict):
                raise SchemaError(f"{where}: 'properties' must be a dict")
            for name in props:
                if any(c in name for c in '"\\') or any(ord(c) < 32 for c in name):
                    raise SchemaError(f"{where}: property name {name!r} would need escaping (unsupported)")
            required = s.get("required", [])
            missing = [r for r in required if r not in props]
            if missing:
                raise SchemaError(f"{where}: required {missing} not in 'properties' (only declared properties are written)")
            if s.get("additionalProperties", False) is not False:
                raise SchemaError(f"{where}: 'additionalProperties' may only be false (only declared properties are written)")
            children = {k: self._compile(v, f"{where}.properties.{k}") for k, v in props.items()}
            return self._add({"kind": "object", "props": children, "required": tuple(dict.fromkeys(required))})
        if t == "array":
            if "items" not in s:
                raise SchemaError(f"{where}: an array needs an 'items' schema")
            lo, hi = s.get("minItems", 0), s.get("maxItems")
            self._check_bounds(where, "minItems", "maxItems", lo, hi, int)
            return self._add({"kind": "array", "items": self._compile(s["items"], f"{where}.items"), "min": lo, "max": hi})
        if t == "string":
            lo, hi = s.get("minLength", 0), s.get("maxLength")
            self._check_bounds(where, "minLength", "maxLength", lo, hi, int)
            return self._add({"kind": "string", "min": lo, "max": hi})
        if t in ("integer", "number"):
            lo, hi = s.get("minimum", -math.inf), s.get("maximum", math.inf)
            self._check_bounds(where, "minimum", "maximum", lo, hi, (int, float))
            if t == "integer" and math.isfinite(lo) and math.isfinite(hi) and math.ceil(lo) > math.floor(hi):
                raise SchemaError(f"{where}: no integer lies in [{lo}, {hi}]")
            node = self._add({"kind": t, "lo": lo, "hi": hi})
            if _number_finish(self.nodes[node], "") >= NEVER:
                raise SchemaError(f"{where}: no number with at most {MAX_FRAC_DIGITS} decimals lies in [{lo}, {hi}]")
            return node
        if t == "boolean":
            return self._add({"kind": "literal", "texts": ("true", "false")})
        if t == "null":
            return self._add({"kind": "literal", "texts": ("null",)})
        raise SchemaError(f"{where}: unknown type {t!r}")

    @staticmethod
    def _check_bounds(where, lo_name, hi_name, lo, hi, types):
        for name, v in ((lo_name, lo), (hi_name, hi)):
            if v is not None and (isinstance(v, bool) or not isinstance(v, types)):
                raise SchemaError(f"{where}: '{name}' must be a number, got {v!r}")
        if types is int and lo < 0:
            raise SchemaError(f"{where}: '{lo_name}' must be >= 0, got {lo}")
        if hi is not None and lo > hi:
            raise SchemaError(f"{where}: '{lo_name}' ({lo}) is larger than '{hi_name}' ({hi})")

    def min_len(self, n):
        """Characters of the shortest valid value of node n."""
        if n not in self._min:
            self._min[n] = NEVER  # guards recursion
            node = self.nodes[n]
            k = node["kind"]
            if k == "object":
                v = 1 + _object_rest(self, n, (), first=True)
            elif k == "array":
                v = 1 + _array_rest(self, n, 0, "start")
            elif k == "string":
                v = 2 + node["min"]
            elif k in ("integer", "number"):
                v = _number_finish(node, "")
            elif k == "literal":
                v = min(len(t) for t in node["texts"])
            else:
                v = min(self.min_len(o) for o in node["options"])
            self._min[n] = v
        return self._min[n]


def _object_rest(schema, n, done, first=False):
    """Characters to close object n after its properties ``done`` (``first``: nothing written yet)."""
    node = schema.nodes[n]
    missing = [r for r in node["required"] if r not in done]
    cost = sum(len(r) + 3 + schema.min_len(node["props"][r]) for r in missing) + len(missing) + 1
    return cost - 1 if first and missing else cost  # no comma before the first property


def _array_rest(schema, n, count, phase):
    """Characters to close array n holding ``count`` items; phase "start" (after ``[``),
    "after" (after an item) or "item" (after a comma: an item must follow)."""
    node = schema.nodes[n]
    item = schema.min_len(node["items"])
    if phase == "item":
        more = max(node["min"] - count, 1)
        return more * item + (more - 1) + 1
    more = max(node["min"] - count, 0)
    if more == 0:
        return 1
    return more * item + (more - 1) + (1 if phase == "after" else 0) + 1


# ---------------------------------------------------------------------------------------------
# Numbers: which prefixes can still become a valid number within [minimum, maximum]
# ---------------------------------------------------------------------------------------------

def _number_shape(node, text):
    """Is ``text`` a prefix of a number we may write? -> (sign, int digits, frac digits or None)."""
    sign = text.startswith("-")
    body = text[1:] if sign else text
    ip, dot, fp = body.partition(".")
    if not ip.isdigit() and ip != "":
        return None
    if (fp and not fp.isdigit()) or (dot and (node["kind"] == "integer" or not ip)):
        return None
    if len(ip) > 1 and ip[0] == "0" or len(ip) > MAX_INT_DIGITS or len(fp) > MAX_FRAC_DIGITS:
        return None
    return sign, ip, (fp if dot else None)


def _number_viable(node, text):
    shape = _number_shape(node, text)
    if shape is None:
        return False
    sign, ip, fp = shape
    lo, hi = node["lo"], node["hi"]
    intervals = []  # closed intervals of absolute values reachable from this prefix
    if fp is not None:
        base = float(f"{ip}.{fp}" if fp else ip)
        intervals.append((base, base + 10.0 ** -len(fp)))
    elif ip == "":
        intervals.append((0, 10.0 ** MAX_INT_DIGITS))
    elif ip == "0":
        intervals.append((0, 0 if node["kind"] == "integer" else 1))
    else:
        frac = 0 if node["kind"] == "integer" else 1
        for k in range(MAX_INT_DIGITS - len(ip) + 1):
            intervals.append((int(ip) * 10 ** k, (int(ip) + 1) * 10 ** k - 1 + frac))
    for a, b in intervals:
        if sign:
            a, b = -b, -a
        if a <= hi and b >= lo:
            return True
    return False


def _number_complete(node, text):
    shape = _number_shape(node, text)
    if shape is None or shape[1] == "" or shape[2] == "":
        return False
    value = float(text) if node["kind"] == "number" else int(text)
    return node["lo"] <= value <= node["hi"]


_NUMBER_FINISH = {}


def _number_finish(node, text):
    """Fewest characters to append to ``text`` to make a complete number (breadth-first)."""
    key = (node["kind"], node["lo"], node["hi"], text)
    if key not in _NUMBER_FINISH:
        frontier, found = [text], NEVER
        for depth in range(MAX_INT_DIGITS + MAX_FRAC_DIGITS + 3):
            if any(_number_complete(node, t) for t in frontier):
                found = depth
                break
            frontier = [t + c for t in frontier for c in "-0123456789." if _number_viable(node, t + c)]
            frontier = sorted(set(frontier))[:200]  # a wide frontier means it finishes soon anyway
            if not frontier:
                break
        _NUMBER_FINISH[key] = found
    return _NUMBER_FINISH[key]


# ---------------------------------------------------------------------------------------------
# 2. The state machine: stacks of frames, one character at a time
# ---------------------------------------------------------------------------------------------
# Frames (tuples, so states are hashable and can key the mask cache):
#   ("V", n)                  a value of node n must start here
#   ("S", n, length)          inside a string (length capped at minLength when maxLength is unset)
#   ("E", n, length)          inside a string, after a backslash
#   ("K", n, done, prefix)    inside a property name of object n (properties ``done`` written)
#   ("O", n, done, phase)     object n between tokens; phase "start", "key" (after ','), "after"
#                             (after a value) or ":name" (after the name, before ':')
#   ("A", n, count, phase)    array n holding ``count`` items; phase "start", "item", "after"
#   ("N", n, text)            a number being written
#   ("L", texts)              a literal (true, an enum value...): the candidate remainders

class Machine:
    def __init__(self, schema: Schema):
        self.schema = schema
        self.nodes = schema.nodes

    def start(self):
        return frozenset(self._expand((("V", self.schema.root),)))

    def _expand(self, stack):
        """Replace a top ("V", anyOf) by one stack per option."""
        if stack and stack[-1][0] == "V" and self.nodes[stack[-1][1]]["kind"] == "anyof":
            out = []
            for o in self.nodes[stack[-1][1]]["options"]:
                out += self._expand(stack[:-1] + (("V", o),))
            return out
        return [stack]

    def step(self, state, ch):
        out = set()
        for stack in state:
            for s in self._step(stack, ch):
                out.update(self._expand(s))
        return frozenset(out)

    def _string_len(self, n, length):
        node = self.nodes[n]
        return length if node["max"] is not None else min(length, node["min"])

    def _step(self, stack, ch):
        if not stack:
            return []
        top, rest = stack[-1], stack[:-1]
        kind = top[0]
        if kind == "V":
            node = self.nodes[top[1]]
            k = node["kind"]
            if k == "anyof":
                return [t for o in node["options"] for t in self._step(rest + (("V", o),), ch)]
            if k == "object" and ch == "{":
                return [rest + (("O", top[1], (), "start"),)]
            if k == "array" and ch == "[":
                return [rest + (("A", top[1], 0, "start"),)]
            if k == "string" and ch == '"':
                return [rest + (("S", top[1], 0),)]
            if k in ("integer", "number") and _number_viable(node, ch):
                return [rest + (("N", top[1], ch),)]
            if k == "literal":
                texts = tuple(t[1:] for t in node["texts"] if t[0] == ch)
                return [self._literal(rest, texts)] if texts else []
            return []
        if kind == "S":
            n, length = top[1], top[2]
            node = self.nodes[n]
            if ch == '"':
                return [rest] if length >= node["min"] else []
            if ch == "\\":
                return [rest + (("E", n, length),)] if node["max"] is None or length < node["max"] else []
            if ord(ch) < 32 or (node["max"] is not None and length >= node["max"]):
                return []
            return [rest + (("S", n, self._string_len(n, length + 1)),)]
        if kind == "E":
            return [rest + (("S", top[1], self._string_len(top[1], top[2] + 1)),)] if ch in ESCAPES else []
        if kind == "K":
            n, done, prefix = top[1], top[2], top[3]
            names = [p for p in self.nodes[n]["props"] if p not in done and p.startswith(prefix)]
            if ch == '"':
                return [rest + (("O", n, done, ":" + prefix),)] if prefix in names else []
            if any(p.startswith(prefix + ch) for p in names):
                return [rest + (("K", n, done, prefix + ch),)]
            return []
        if kind == "O":
            n, done, phase = top[1], top[2], top[3]
            node = self.nodes[n]
            left = [p for p in node["props"] if p not in done]
            if phase.startswith(":"):
                name = phase[1:]
                return [rest + (("O", n, done + (name,), "after"), ("V", node["props"][name]))] if ch == ":" else []
            if ch == '"' and phase in ("start", "key") and left:
                return [rest + (("K", n, done, ""),)]
            if ch == "," and phase == "after" and left:
                return [rest + (("O", n, done, "key"),)]
            if ch == "}" and phase in ("start", "after") and all(r in done for r in node["required"]):
                return [rest]
            return []
        if kind == "A":
            n, count, phase = top[1], top[2], top[3]
            node = self.nodes[n]
            if ch == "]" and phase in ("start", "after") and count >= node["min"]:
                return [rest]
            if ch == "," and phase == "after" and (node["max"] is None or count < node["max"]):
                return [rest + (("A", n, count, "item"),)]
            if phase in ("start", "item") and (node["max"] is None or count < node["max"]):
                counted = count + 1 if node["max"] is not None else min(count + 1, node["min"])
                return self._step(rest + (("A", n, counted, "after"), ("V", node["items"])), ch)
            return []
        if kind == "N":
            node = self.nodes[top[1]]
            if _number_viable(node, top[2] + ch):
                return [rest + (("N", top[1], top[2] + ch),)]
            if _number_complete(node, top[2]):  # the number ended; the character belongs to the parent
                return self._step(rest, ch)
            return []
        if kind == "L":
            texts = tuple(t[1:] for t in top[1] if t and t[0] == ch)
            out = [self._literal(rest, texts)] if texts else []
            if "" in top[1]:
                out += self._step(rest, ch)
            return out
        raise AssertionError(kind)

    @staticmethod
    def _literal(rest, texts):
        return rest if texts == ("",) else rest + (("L", texts),)

    # --- completion ---------------------------------------------------------------------------
    def finish(self, state):
        """Fewest characters that complete the value from ``state`` (NEVER if it cannot)."""
        return min((self._stack_finish(s) for s in state), default=NEVER)

    def _stack_finish(self, stack):
        total = 0
        for i in range(len(stack) - 1, -1, -1):
            f = stack[i]
            kind = f[0]
            if kind == "V":
                total += self.schema.min_len(f[1])
            elif kind == "S":
                total += max(0, self.nodes[f[1]]["min"] - f[2]) + 1
            elif kind == "E":
                total += 1 + max(0, self.nodes[f[1]]["min"] - f[2] - 1) + 1
            elif kind == "K":
                n, done, prefix = f[1], f[2], f[3]
                node = self.nodes[n]
                total += min((len(p) - len(prefix) + 2 + self.schema.min_len(node["props"][p])
                              + _object_rest(self.schema, n, done + (p,))
                              for p in node["props"] if p not in done and p.startswith(prefix)), default=NEVER)
            elif kind == "O":
                n, done, phase = f[1], f[2], f[3]
                node = self.nodes[n]
                if phase.startswith(":"):
                    name = phase[1:]
                    total += 1 + self.schema.min_len(node["props"][name]) + _object_rest(self.schema, n, done + (name,))
                elif phase == "key":
                    total += min((len(p) + 3 + self.schema.min_len(node["props"][p])
                                  + _object_rest(self.schema, n, done + (p,))
                                  for p in node["props"] if p not in done), default=NEVER)
                else:
                    total += _object_rest(self.schema, n, done, first=phase == "start")
            elif kind == "A":
                total += _array_rest(self.schema, f[1], f[2], f[3])
            elif kind == "N":
                total += _number_finish(self.nodes[f[1]], f[2])
            elif kind == "L":
                total += min(len(t) for t in f[1])
        return total

    def accepting(self, state):
        return any(self._stack_finish(s) == 0 and len(s) <= 1 for s in state)

    def extendable(self, state):
        """Can any character still be added (a top-level number or an ambiguous literal)?"""
        for s in state:
            if s and s[-1][0] == "N" and any(_number_viable(self.nodes[s[-1][1]], s[-1][2] + c) for c in "0123456789."):
                return True
            if s and s[-1][0] == "L" and any(s[-1][1]):
                return True
            if s and s[-1][0] not in ("N", "L"):
                return True
        return False

    def next_chars(self, state):
        """The few characters a structural state allows, or None when many are (inside strings)."""
        chars = set()
        for stack in state:
            if not stack:
                continue
            top = stack[-1]
            if top[0] in ("S", "E"):
                return None
            if top[0] == "K":
                node = self.nodes[top[1]]
                chars.update(p[len(top[3])] for p in node["props"] if p not in top[2]
                             and p.startswith(top[3]) and len(p) > len(top[3]))
                chars.add('"')
            elif top[0] == "L":
                chars.update(t[0] for t in top[1] if t)
                chars.update(",}]")
            else:
                chars.update('{}[]",:-.0123456789')
                if top[0] == "V" and self.nodes[top[1]]["kind"] == "literal":
                    chars.update(t[0] for t in self.nodes[top[1]]["texts"])
                if top[0] == "A":  # an item may start with anything a value starts with
                    chars.update(self._first_chars(self.nodes[top[1]]["items"]))
        return chars

    def _first_chars(self, n):
        node = self.nodes[n]
        k = node["kind"]
        if k == "literal":
            return {t[0] for t in node["texts"]}
        if k == "anyof":
            return set().union(*(self._first_chars(o) for o in node["options"]))
        return set('{["-0123456789')


# ---------------------------------------------------------------------------------------------
# 3. The vocabulary, and the per-state masks
# ---------------------------------------------------------------------------------------------

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
        if len(stacks) == 1 and stacks[0] and stacks[0][-1][0] == "S":  # plain pieces in a string: lengths only
            stack = stacks[0]
            _walk(m, v.special_texts, v.special_ids, state, found, m.next_chars)
            node = self.schema.nodes[stack[-1][1]]
            length = stack[-1][2]
            cost = np.maximum(node["min"] - length - v.plain_len, 0) + 1 + m._stack_finish(stack[:-1])
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
