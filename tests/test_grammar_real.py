"""Structured output on the real models: for a set of schemas the reply always parses and
validates (checked by `jsonschema`), greedy and sampled over many seeds, batched; a GBNF
grammar constrains the reply."""
from __future__ import annotations

import json
import re

import jsonschema
import pytest

import llamalite

SCHEMAS = {
    "nested": {
        "type": "object",
        "properties": {
            "city": {"type": "string", "maxLength": 24},
            "country": {"type": "object",
                        "properties": {"name": {"type": "string", "maxLength": 24},
                                       "code": {"type": "string", "pattern": "^[A-Z]{2}$"}},
                        "required": ["name", "code"], "additionalProperties": False},
        },
        "required": ["city", "country"], "additionalProperties": False,
    },
    "array-enum": {
        "type": "object",
        "properties": {"colors": {"type": "array", "minItems": 1, "maxItems": 4,
                                  "items": {"enum": ["red", "green", "blue", "yellow"]}}},
        "required": ["colors"], "additionalProperties": False,
    },
    "bounded-numbers": {
        "type": "object",
        "properties": {"year": {"type": "integer", "minimum": 1900, "maximum": 2100},
                       "score": {"type": "number", "minimum": 0, "maximum": 1},
                       "ok": {"type": "boolean"}},
        "required": ["year", "score", "ok"], "additionalProperties": False,
    },
}
PROMPT = "Answer with JSON only. Describe a famous city and its country."


@pytest.fixture(scope="module", params=["smollm2-135m", "gemma3-270m"])
def llm(request):
    with llamalite.LLM(request.param, n_ctx=2048, n_parallel=8, seed=0) as llm:
        yield llm


@pytest.mark.slow
@pytest.mark.parametrize("name", list(SCHEMAS))
def test_schema_replies_validate_greedy_and_sampled(llm, name):
    schema = SCHEMAS[name]
    greedy = llm.chat([{"role": "user", "content": PROMPT}], temperature=0, max_tokens=120,
                      response_format={"type": "json_schema",
                                       "json_schema": {"name": name, "schema": schema}})
    assert greedy["choices"][0]["finish_reason"] == "stop"
    jsonschema.validate(json.loads(greedy["choices"][0]["message"]["content"]), schema)
    # No seed given: each request draws its own from the LLM's seed sequence.
    sampled = llm.generate_batch([PROMPT] * 8, json_schema=schema, temperature=1.0,
                                 max_tokens=120)
    for seed_offset, out in enumerate(sampled):
        assert out.finish_reason == "stop", (seed_offset, out.text)
        jsonschema.validate(json.loads(out.text), schema)


@pytest.mark.slow
def test_gbnf_grammar_on_a_real_model(llm):
    gbnf = 'root ::= "The answer is " ("yes" | "no") "."'
    out = llm.generate("Is the sky blue?", grammar=gbnf, temperature=1.0, seed=2)
    assert re.fullmatch(r"The answer is (yes|no)\.", out.text) and out.finish_reason == "stop"


WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "Current weather in a city",
    "parameters": {"type": "object",
                   "properties": {"city": {"type": "string", "maxLength": 30},
                                  "unit": {"enum": ["celsius", "fahrenheit"]}},
                   "required": ["city", "unit"], "additionalProperties": False}}}


@pytest.mark.slow
def test_required_tool_call_on_a_real_model(llm):
    msgs = [{"role": "user", "content": "What is the weather in Paris?"}]
    r = llm.chat(msgs, tools=[WEATHER], tool_choice="required", parallel_tool_calls=False,
                 temperature=0, max_tokens=120)
    choice = r["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    (call,) = choice["message"]["tool_calls"][:1]
    assert call["function"]["name"] == "get_weather"
    jsonschema.validate(json.loads(call["function"]["arguments"]),
                        WEATHER["function"]["parameters"])
    # The result goes back through the template and the model answers in text.
    msgs += [choice["message"], {"role": "tool", "tool_call_id": call["id"],
                                 "content": "18 degrees, sunny"}]
    r = llm.chat(msgs, tools=[WEATHER], tool_choice="none", temperature=0, max_tokens=24)
    assert r["choices"][0]["message"]["content"] and "tool_calls" not in r["choices"][0]["message"]
