"""JSON schemas for constrained decoding: one normalisation, and a compiler to a list of nodes.

``normalise`` is the one walk over a schema's structure that both users of schemas share: the
tool declarations of ``chat_tools.py`` (types upper-cased, Gemma's convention) and the
constrained decoder (types lower-cased, JSON Schema's). It checks the shape of the structural
keywords (``properties`` a dict, ``required`` a list of names, ``items`` a schema, ...) and drops
``$schema``. ``Schema`` then compiles the supported subset into nodes the state machine of
``json_machine.py`` walks, and knows the shortest valid value of each node.

Supported (anything else is an error that names it): ``type`` (``object``, ``array``,
``string``, ``integer``, ``number``, ``boolean``, ``null``, or a list of them), ``properties``,
``required``, ``items``, ``minItems``, ``maxItems``, ``enum``, ``const``, ``minLength``,
``maxLength``, ``minimum``, ``maximum``, ``anyOf``, ``additionalProperties: false``; ``title``,
``description``, ``default``, ``examples``, ``$schema``, ``$comment`` are annotations. Numbers
have at most 15 integer and 6 fraction digits and no exponent; integers have no fraction.
"""

import json
import math

MAX_INT_DIGITS = 15
MAX_FRAC_DIGITS = 6
ANNOTATIONS = {"title", "description", "default", "examples", "$schema", "$comment"}
KEYWORDS = {"type", "properties", "required", "items", "minItems", "maxItems", "enum", "const",
            "minLength", "maxLength", "minimum", "maximum", "anyOf", "additionalProperties"}
TYPE_KEYWORDS = {"object": {"properties", "required", "additionalProperties"},
                 "array": {"items", "minItems", "maxItems"}, "string": {"minLength", "maxLength"},
                 "integer": {"minimum", "maximum"}, "number": {"minimum", "maximum"}, "boolean": set(), "null": set()}
NEVER = 1 << 30  # "no completion": a forbidden piece's finishing cost
# number_finish searches number prefixes breadth-first, 12 candidate characters per prefix. Keeping
# at most this many prefixes per depth bounds its cost; a frontier that wide only happens when
# most digit strings are still in range (a complete number is near), and cutting it can only
# overestimate the characters needed, which keeps the budget check on the safe side.
NUMBER_SEARCH_WIDTH = 200


class SchemaError(ValueError):
    """A schema outside the supported subset, or one no output can satisfy."""


def _schema_dict(s, where):
    if not isinstance(s, dict):
        hint = " ('items' as a list of schemas, one per position, is not supported)" if isinstance(s, list) else ""
        raise SchemaError(f"{where}: a schema must be a dict, got {type(s).__name__}: {s!r}{hint}")


def _schema_list(s, key, where):
    if not isinstance(s[key], list):
        raise SchemaError(f"{where}: '{key}' must be a list of schemas, got {type(s[key]).__name__}: {s[key]!r}")


def normalise(schema, where="schema", case=str.lower):
    """A copy of ``schema`` with every ``type`` written by ``case`` and ``$schema`` dropped;
    raises SchemaError when a structural keyword has the wrong shape. Other keywords pass through."""
    _schema_dict(schema, where)
    s = {k: v for k, v in schema.items() if k != "$schema"}
    t = s.get("type")
    if isinstance(t, str):
        s["type"] = case(t)
    elif isinstance(t, list) and all(isinstance(x, str) for x in t):
        s["type"] = [case(x) for x in t]
    elif "type" in s:
        raise SchemaError(f"{where}: 'type' must be a string or a list of strings, got {t!r}")
    if "properties" in s:
        if not isinstance(s["properties"], dict):
            raise SchemaError(f"{where}: 'properties' must be a dict (name -> schema), got {s['properties']!r}")
        s["properties"] = {k: normalise(v, f"{where}.properties.{k}", case) for k, v in s["properties"].items()}
    required = s.get("required", [])
    if isinstance(required, str):
        raise SchemaError(f"{where}: 'required' must be a list of property names, got the string {required!r} "
                          f"(write [{required!r}])")
    if not isinstance(required, list) or not all(isinstance(r, str) for r in required):
        raise SchemaError(f"{where}: 'required' must be a list of property names, got {required!r}")
    if "enum" in s and not isinstance(s["enum"], list):
        raise SchemaError(f"{where}: 'enum' must be a list of values, got {type(s['enum']).__name__}: {s['enum']!r}")
    for key in ("items", "not"):
        if key in s:
            s[key] = normalise(s[key], f"{where}.{key}", case)
    for key in ("allOf", "anyOf", "oneOf"):
        if key in s:
            _schema_list(s, key, where)
            s[key] = [normalise(o, f"{where}.{key}[{n}]", case) for n, o in enumerate(s[key])]
    return s


def _dumps(value):
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


class Schema:
    """``nodes[i]`` is a dict with a ``kind``: object, array, string, integer, number, literal, anyof."""

    def __init__(self, schema):
        self.nodes = []
        self._min = {}
        self.root = self._compile(normalise(schema), "schema")

    def _add(self, node):
        self.nodes.append(node)
        return len(self.nodes) - 1

    def _compile(self, s, where):
        unknown = set(s) - KEYWORDS - ANNOTATIONS
        if unknown:
            raise SchemaError(f"{where}: unsupported keyword(s) {sorted(unknown)} (supported: {sorted(KEYWORDS)})")
        if "const" in s:
            return self._add({"kind": "literal", "texts": (_dumps(s["const"]),)})
        if "enum" in s:
            if not s["enum"]:
                raise SchemaError(f"{where}: 'enum' must be a non-empty list, got {s['enum']!r}")
            return self._add({"kind": "literal", "texts": tuple(dict.fromkeys(_dumps(v) for v in s["enum"]))})
        if "anyOf" in s:
            if set(s) - ANNOTATIONS - {"anyOf"}:
                raise SchemaError(f"{where}: 'anyOf' must stand alone (found {sorted(set(s) - ANNOTATIONS)})")
            if not s["anyOf"]:
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
        return getattr(self, f"_compile_{t}")(s, where)

    def _compile_object(self, s, where):
        props = s.get("properties", {})
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

    def _compile_array(self, s, where):
        if "items" not in s:
            raise SchemaError(f"{where}: an array needs an 'items' schema")
        lo, hi = s.get("minItems", 0), s.get("maxItems")
        _check_bounds(where, "minItems", "maxItems", lo, hi, int)
        return self._add({"kind": "array", "items": self._compile(s["items"], f"{where}.items"), "min": lo, "max": hi})

    def _compile_string(self, s, where):
        lo, hi = s.get("minLength", 0), s.get("maxLength")
        _check_bounds(where, "minLength", "maxLength", lo, hi, int)
        return self._add({"kind": "string", "min": lo, "max": hi})

    def _compile_integer(self, s, where, t="integer"):
        lo, hi = s.get("minimum", -math.inf), s.get("maximum", math.inf)
        _check_bounds(where, "minimum", "maximum", lo, hi, (int, float))
        if t == "integer" and math.isfinite(lo) and math.isfinite(hi) and math.ceil(lo) > math.floor(hi):
            raise SchemaError(f"{where}: no integer lies in [{lo}, {hi}]")
        node = self._add({"kind": t, "lo": lo, "hi": hi})
        if number_finish(self.nodes[node], "") >= NEVER:
            raise SchemaError(f"{where}: no number with at most {MAX_FRAC_DIGITS} decimals lies in [{lo}, {hi}]")
        return node

    def _compile_number(self, s, where):
        return self._compile_integer(s, where, "number")

    def _compile_boolean(self, s, where):
        return self._add({"kind": "literal", "texts": ("true", "false")})

    def _compile_null(self, s, where):
        return self._add({"kind": "literal", "texts": ("null",)})

    def min_len(self, n):
        """Characters of the shortest valid value of node n."""
        if n not in self._min:
            self._min[n] = NEVER  # guards recursion
            node = self.nodes[n]
            k = node["kind"]
            if k == "object":
                v = 1 + self.object_rest(n, (), first=True)
            elif k == "array":
                v = 1 + self.array_rest(n, 0, "start")
            elif k == "string":
                v = 2 + node["min"]
            elif k in ("integer", "number"):
                v = number_finish(node, "")
            elif k == "literal":
                v = min(len(t) for t in node["texts"])
            else:
                v = min(self.min_len(o) for o in node["options"])
            self._min[n] = v
        return self._min[n]

    def object_rest(self, n, done, first=False):
        """Characters to close object n after its properties ``done`` (``first``: nothing written yet)."""
        node = self.nodes[n]
        missing = [r for r in node["required"] if r not in done]
        cost = sum(len(r) + 3 + self.min_len(node["props"][r]) for r in missing) + len(missing) + 1
        return cost - 1 if first and missing else cost  # no comma before the first property

    def array_rest(self, n, count, phase):
        """Characters to close array n holding ``count`` items; phase "start" (after ``[``),
        "after" (after an item) or "item" (after a comma: an item must follow)."""
        node = self.nodes[n]
        item = self.min_len(node["items"])
        if phase == "item":
            more = max(node["min"] - count, 1)
            return more * item + (more - 1) + 1
        more = max(node["min"] - count, 0)
        if more == 0:
            return 1
        return more * item + (more - 1) + (1 if phase == "after" else 0) + 1


def _check_bounds(where, lo_name, hi_name, lo, hi, types):
    for name, v in ((lo_name, lo), (hi_name, hi)):
        if v is not None and (isinstance(v, bool) or not isinstance(v, types)):
            raise SchemaError(f"{where}: '{name}' must be a number, got {v!r}")
    if types is int and lo < 0:
        raise SchemaError(f"{where}: '{lo_name}' must be >= 0, got {lo}")
    if hi is not None and lo > hi:
        raise SchemaError(f"{where}: '{lo_name}' ({lo}) is larger than '{hi_name}' ({hi})")


# Numbers: which prefixes can still become a valid number within [minimum, maximum]

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


def number_viable(node, text):
    """Can ``text`` still grow into a number of node n's kind within [minimum, maximum]?"""
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


def number_complete(node, text):
    """Is ``text`` a whole number of node n's kind within [minimum, maximum]?"""
    shape = _number_shape(node, text)
    if shape is None or shape[1] == "" or shape[2] == "":
        return False
    value = float(text) if node["kind"] == "number" else int(text)
    return node["lo"] <= value <= node["hi"]


_NUMBER_FINISH = {}


def number_finish(node, text):
    """Fewest characters to append to ``text`` to make a complete number (breadth-first)."""
    key = (node["kind"], node["lo"], node["hi"], text)
    if key not in _NUMBER_FINISH:
        frontier, found = [text], NEVER
        for depth in range(MAX_INT_DIGITS + MAX_FRAC_DIGITS + 3):
            if any(number_complete(node, t) for t in frontier):
                found = depth
                break
            frontier = [t + c for t in frontier for c in "-0123456789." if number_viable(node, t + c)]
            frontier = sorted(set(frontier))[:NUMBER_SEARCH_WIDTH]
            if not frontier:
                break
        _NUMBER_FINISH[key] = found
    return _NUMBER_FINISH[key]
