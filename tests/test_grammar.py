"""Structured output on the fakes: token masks from JSON schemas and GBNF grammars
(llamalite/grammar.py, llguidance) applied in the engine's batched step. Outputs are
checked with `jsonschema` and Python's json parser, independent of the grammar engine."""
from __future__ import annotations

import json

import jsonschema
import pytest
from fakes import FakeChatTemplate, FakeStreamDecoder, FakeTokenizer, HashModel

from llamalite.errors import GrammarError, RequestRejected
from llamalite.grammar import schema_of_response_format
from llamalite.llm import LLM

PERSON = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "maxLength": 8},
        "age": {"type": "integer", "minimum": 0, "maximum": 120},
        "role": {"enum": ["admin", "user"]},
        "tags": {"type": "array", "items": {"type": "string", "maxLength": 4}, "maxItems": 3},
        "address": {"type": "object", "properties": {"zip": {"type": "string",
                                                             "pattern": "^[0-9]{5}$"}},
                    "required": ["zip"], "additionalProperties": False},
    },
    "required": ["name", "age", "role", "address"],
    "additionalProperties": False,
}


@pytest.fixture(scope="module")
def llm():
    """Random-logit fake (printable ASCII only): any JSON that comes out is the mask's doing."""
    with LLM._from_parts(HashModel(), FakeTokenizer(), FakeChatTemplate(), FakeStreamDecoder,
                         n_ctx=4096, n_parallel=8, name="fake") as llm:
        yield llm


def test_schema_output_always_validates_over_many_seeds_batched(llm):
    prompts = [f"person {i}:" for i in range(8)]
    outs = llm.generate_batch(prompts, json_schema=PERSON, temperature=1.0, top_k=0, top_p=1.0,
                              min_p=0.0, seed=11, max_tokens=400)
    for out in outs:
        assert out.finish_reason == "stop", out.text
        jsonschema.validate(json.loads(out.text), PERSON)
    assert len({o.text for o in outs}) > 1           # different prompts, different values


def test_unconstrained_fake_output_is_not_json(llm):
    """The check above can fail: without the mask the fake writes no JSON."""
    out = llm.generate("person 0:", temperature=1.0, seed=11, max_tokens=40)
    with pytest.raises(ValueError):
        json.loads(out.text)


def test_gbnf_grammar_constrains_streamed_output(llm):
    gbnf = 'root ::= "[" num ("," num)* "]"\nnum ::= [1-9] [0-9]?'
    pieces = list(llm.generate("numbers:", grammar=gbnf, stream=True, temperature=1.0,
                               seed=3, max_tokens=200))
    text = "".join(c.text for c in pieces)
    assert pieces[-1].finish_reason == "stop"
    values = json.loads(text)
    assert values and all(1 <= v <= 99 for v in values)


def test_mixed_batch_constrained_and_free(llm):
    outs = llm.generate_batch(["a", "b"], temperature=0, max_tokens=20)
    free = [o.text for o in outs]
    constrained = llm.generate("a", json_schema={"type": "boolean"}, temperature=0)
    assert constrained.text in ("true", "false") and constrained.finish_reason == "stop"
    assert [o.text for o in llm.generate_batch(["a", "b"], temperature=0, max_tokens=20)] == free


def test_response_format_and_chat(llm):
    r = llm.chat([{"role": "user", "content": "hi"}], temperature=0.7, seed=1, max_tokens=300,
                 response_format={"type": "json_object"})
    assert isinstance(json.loads(r["choices"][0]["message"]["content"]), dict)
    assert schema_of_response_format({"type": "text"}) is None
    assert schema_of_response_format({"type": "json_schema",
                                      "json_schema": {"name": "p", "schema": PERSON}}) == PERSON


@pytest.mark.parametrize("kwargs, field, words", [
    (dict(json_schema={"type": "object", "properties": {"a": {"type": "wat"}}}), "json_schema",
     "cannot be used"),
    (dict(json_schema="{not json"), "json_schema", "not valid JSON"),
    (dict(grammar='root ::= "a" undefined_rule'), "grammar", "undefined_rule"),
    (dict(grammar="root ::= ("), "grammar", "grammar"),
])
def test_bad_schemas_and_grammars_are_refused_before_queueing(llm, kwargs, field, words):
    with pytest.raises(RequestRejected, match=words) as e:
        llm.generate("x", **kwargs)
    assert e.value.param == field and e.value.code == "invalid_grammar"
    assert llm.engine.stats().running == 0


@pytest.mark.parametrize("rf, words", [
    ({"type": "json"}, "type must be"),
    ({"type": "json_schema"}, "needs json_schema.schema"),
    ({"type": "json_object", "extra": 1}, "unknown field"),
    ("json", "must be an object"),
])
def test_bad_response_format(llm, rf, words):
    with pytest.raises(GrammarError, match=words) as e:
        llm.chat([{"role": "user", "content": "hi"}], response_format=rf)
    assert e.value.param == "response_format"


def test_schema_and_grammar_together_are_refused(llm):
    with pytest.raises(ValueError, match="not both"):
        llm.generate("x", json_schema={"type": "object"}, grammar='root ::= "a"')
