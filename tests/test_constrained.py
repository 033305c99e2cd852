"""JSON-constrained decoding: every output parses and validates (jsonschema is the test-only
reference) for a varied set of schemas: with random choices among the allowed pieces (to reach
every corner of the state machine) and on the real Gemma 3 270M (greedy and sampled)."""

import json

import jsonschema
import pytest
import torch

import minigemma
from minigemma.constrained import JSONConstraint, SchemaError
from minigemma.generate import default_stop_ids
from minigemma.sampling import Sampling

SCHEMAS = [
    {"type": "object", "properties": {"name": {"type": "string", "maxLength": 12}, "age": {"type": "integer", "minimum": 0, "maximum": 120},
                                      "city": {"type": "string", "enum": ["Paris", "London", "東京"]}}, "required": ["name", "age"]},
    {"type": "array", "items": {"type": "integer"}, "minItems": 2, "maxItems": 4},
    {"type": "boolean"},
    {"type": "null"},
    {"type": "number", "minimum": -5, "maximum": 5.5},
    {"type": "integer", "minimum": -50, "maximum": -10},
    {"type": "number", "minimum": 0.5, "maximum": 0.75},
    {"type": "integer", "minimum": 100, "maximum": 250},
    {"type": "string", "minLength": 3, "maxLength": 8},
    {"type": "string"},
    {"enum": [1, "two", None, {"x": [1, 2]}, 12, "tw"]},
    {"const": {"ok": True, "msg": "a \"quoted\"\nline"}},
    {"anyOf": [{"type": "string", "maxLength": 5}, {"type": "integer"}, {"type": "array", "items": {"type": "boolean"}, "maxItems": 2}]},
    {"type": ["string", "null"], "maxLength": 4},
    {"type": "object", "properties": {}},
    {"type": "object", "title": "Person", "description": "annotations change nothing", "additionalProperties": False,
     "properties": {"tags": {"type": "array", "items": {"type": "string", "enum": ["a", "b", "c"]}, "maxItems": 3},
                    "meta": {"type": "object", "properties": {"id": {"type": "integer"}, "score": {"type": "number"}},
                             "required": ["id"]},
                    "flag": {"type": "boolean"}},
     "required": ["meta", "flag"]},
    {"type": "array", "items": {"type": "object", "properties": {"k": {"type": "string", "minLength": 1, "maxLength": 3},
                                                                  "v": {"anyOf": [{"type": "integer"}, {"type": "null"}]}},
                                "required": ["k", "v"]}, "minItems": 1, "maxItems": 2},
    {"type": "array", "items": {"type": "array", "items": {"type": "integer", "minimum": 0, "maximum": 9}, "maxItems": 2}, "maxItems": 2},
]


def _run(constraint, generator, vocab=None):
    """Uniformly random choices among the allowed pieces: exercises rare paths."""
    ids = []
    while not constraint.done:
        allowed = constraint.allowed().nonzero()[:, 0]  # (n_allowed,)
        nxt = int(allowed[torch.randint(len(allowed), (1,), generator=generator)])
        if constraint.advance(nxt):
            ids.append(nxt)
    return ids


@pytest.mark.parametrize("i", range(len(SCHEMAS)))
def test_random_choices_always_give_valid_json(gemma, i):
    _, tok = gemma
    schema = SCHEMAS[i]
    g = torch.Generator().manual_seed(i)
    probe = JSONConstraint(schema, tok, 10_000)
    need = probe.machine.finish(probe.state)  # characters of the shortest valid output
    for budget in (need, need + 6, need + 40):  # a budget of exactly `need` must still finish
        for _ in range(3):
            c = JSONConstraint(schema, tok, budget)
            ids = _run(c, g, tok.vocab_size)
            assert len(ids) <= budget
            text = tok.decode(ids)
            assert text == c.text
            jsonschema.validate(json.loads(text), schema)


@pytest.mark.parametrize("i", [0, 1, 7, 12, 15])
def test_real_model_greedy_output_is_valid(gemma, i):
    model, tok = gemma
    schema = SCHEMAS[i]
    text = minigemma.generate(model, tok, "A JSON value:\n", max_new_tokens=40, json_schema=schema)
    jsonschema.validate(json.loads(text), schema)


def test_real_model_sampled_output_is_valid(gemma):
    model, tok = gemma
    schema = SCHEMAS[16]
    for seed in (0,):
        text = minigemma.generate(model, tok, "Data:\n", max_new_tokens=30, json_schema=schema, temperature=1.0,
                                  seed=seed, top_p=0.95)
        jsonschema.validate(json.loads(text), schema)


def test_greedy_takes_the_most_likely_allowed_piece(gemma):
    model, tok = gemma
    schema = SCHEMAS[0]
    prompt = tok.encode("A JSON value:\n", add_bos=True)
    ids = list(minigemma.generate_ids(model, prompt, max_new_tokens=24, constraint=JSONConstraint(schema, tok, 24)))
    c = JSONConstraint(schema, tok, 24)
    for k, chosen in enumerate(ids[:8]):
        logits = model(torch.tensor([prompt + ids[:k]]))[0, -1]
        allowed = c.allowed()
        assert chosen == int(logits.masked_fill(~allowed, float("-inf")).argmax())
        c.advance(chosen)


def test_budget_is_respected_when_tight(gemma):
    _, tok = gemma
    schema = {"type": "array", "items": {"type": "string"}, "minItems": 3}
    need = len('["","",""]')  # one piece per character at worst
    for seed in range(5):
        c = JSONConstraint(schema, tok, need)
        ids = _run(c, torch.Generator().manual_seed(seed))
        assert len(ids) <= need
        jsonschema.validate(json.loads(tok.decode(ids)), schema)
    with pytest.raises(SchemaError, match="needs 10 tokens, more than max_new_tokens=9"):
        JSONConstraint(schema, tok, need - 1)


@pytest.mark.parametrize("schema, message", [
    ({"type": "string", "pattern": "a+"}, r"unsupported keyword\(s\) \['pattern'\]"),
    ({"type": "object", "properties": {"a": {"type": "integer", "multipleOf": 2}}}, r"schema.properties.a: unsupported keyword\(s\) \['multipleOf'\]"),
    ({}, "needs a 'type'"),
    ({"type": "tuple"}, "unknown type 'tuple'"),
    ({"type": "array"}, "needs an 'items' schema"),
    ({"type": "string", "minimum": 1}, r"\['minimum'\] do not apply to type 'string'"),
    ({"type": "string", "minLength": 5, "maxLength": 2}, r"'minLength' \(5\) is larger than 'maxLength' \(2\)"),
    ({"type": "integer", "minimum": 1.2, "maximum": 1.8}, r"no integer lies in \[1.2, 1.8\]"),
    ({"type": "number", "minimum": 1e-9, "maximum": 2e-9}, "no number with at most 6 decimals"),
    ({"enum": []}, "'enum' must be a non-empty list"),
    ({"anyOf": []}, "'anyOf' must be a non-empty list"),
    ({"anyOf": [{"type": "null"}], "type": "string"}, "'anyOf' must stand alone"),
    ({"type": "object", "properties": {"a": {"type": "null"}}, "required": ["b"]}, r"required \['b'\] not in 'properties'"),
    ({"type": "object", "properties": {}, "additionalProperties": True}, "'additionalProperties' may only be false"),
    ({"type": "object", "properties": {'a"b': {"type": "null"}}}, "would need escaping"),
    ({"type": "array", "items": {"type": "null"}, "minItems": -1}, "'minItems' must be >= 0"),
    ({"type": "string", "maxLength": "5"}, "'maxLength' must be a number"),
    ([1], "a schema must be a dict"),
    ({"type": "object", "properties": {"name": {"type": "string"}}, "required": "name"},
     r"'required' must be a list of property names, got the string 'name' \(write \['name'\]\)"),
    ({"type": "object", "properties": [{"name": "a"}]}, r"'properties' must be a dict \(name -> schema\)"),
    ({"type": "object", "properties": {"a": "string"}}, r"schema.properties.a: a schema must be a dict, got str"),
    ({"enum": "abc"}, "'enum' must be a list of values, got str"),
    ({"type": "array", "items": [{"type": "null"}]}, r"schema.items: a schema must be a dict, got list: .* not supported"),
    ({"anyOf": {"type": "null"}}, "'anyOf' must be a list of schemas, got dict"),
    ({"type": 3}, "'type' must be a string or a list of strings"),
])
def test_schema_errors(gemma, schema, message):
    _, tok = gemma
    with pytest.raises(SchemaError, match=message):
        JSONConstraint(schema, tok, 64)


def test_upper_case_types_as_gemma_writes_them(gemma):
    """Tool declarations may use Gemma/OpenAPI's upper-case types: one normalisation reads both."""
    _, tok = gemma
    upper = {"type": "OBJECT", "required": ["n"], "properties": {"n": {"type": ["INTEGER", "NULL"], "maximum": 9}}}
    c = JSONConstraint(upper, tok, 16)
    ids = _run(c, torch.Generator().manual_seed(0))
    jsonschema.validate(json.loads(tok.decode(ids)), {"type": "object", "required": ["n"], "properties": {
        "n": {"type": ["integer", "null"], "maximum": 9}}})


def test_generate_errors(gemma):
    model, tok = gemma
    with pytest.raises(ValueError, match="stop strings cannot be combined with json_schema"):
        minigemma.generate(model, tok, "x", json_schema={"type": "null"}, stop=["}"])
    with pytest.raises(ValueError, match="min_p must be in"):
        minigemma.generate(model, tok, "x", min_p=1.5)
    with pytest.raises(ValueError, match="stop strings must be non-empty strings"):
        minigemma.generate(model, tok, "x", stop=[""])


def test_min_p_keeps_tokens_near_the_best():
    logits = torch.log(torch.tensor([0.5, 0.3, 0.15, 0.05]))
    draws = {Sampling(1.0, min_p=0.5).pick(logits, torch.Generator().manual_seed(s))[0] for s in range(200)}
    assert draws == {0, 1}  # 0.3 >= 0.5 * 0.5; 0.15 is not


def test_stop_ids_per_family(gemma):
    _, tok = gemma
    assert default_stop_ids(tok) == {tok.eos_id, tok.special["<end_of_turn>"]} == {1, 106}
