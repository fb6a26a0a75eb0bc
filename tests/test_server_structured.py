"""Structured output over HTTP, through the `openai` client and raw JSON, on the fake model:
response_format, llama-server's json_schema and grammar fields, and tool calls round-tripping
(streamed and not). Outputs are checked with `jsonschema`, independent of the grammar engine."""
from __future__ import annotations

import json

import httpx
import jsonschema
import openai
import pytest

from test_server import MSGS, NAME, assert_idle, serve
from llamalite.server.settings import Settings

POINT = {"type": "object",
         "properties": {"x": {"type": "integer", "minimum": -9, "maximum": 9},
                        "label": {"type": "string", "maxLength": 6}},
         "required": ["x", "label"], "additionalProperties": False}
WEATHER = {"type": "function", "function": {
    "name": "get_weather",
    "parameters": {"type": "object", "properties": {"city": {"type": "string", "maxLength": 10}},
                   "required": ["city"], "additionalProperties": False}}}


@pytest.fixture(scope="module")
def srv():
    s = serve(Settings(model=NAME + ".gguf", ctx_size=4096))
    yield s
    s.stop()


def client(srv) -> openai.OpenAI:
    return openai.OpenAI(base_url=srv.url + "/v1", api_key="none", max_retries=0)


def test_response_format_json_schema_through_openai(srv):
    r = client(srv).chat.completions.create(
        model=NAME, messages=MSGS, max_tokens=200, temperature=1.0, seed=4,
        response_format={"type": "json_schema", "json_schema": {"name": "point", "schema": POINT}})
    assert r.choices[0].finish_reason == "stop"
    jsonschema.validate(json.loads(r.choices[0].message.content), POINT)
    assert_idle(srv)


def test_json_schema_and_grammar_fields_on_completions(srv):
    r = httpx.post(srv.url + "/v1/completions", json={
        "prompt": "p", "json_schema": POINT, "max_tokens": 200, "temperature": 1.0, "seed": 1})
    assert r.status_code == 200, r.text
    jsonschema.validate(json.loads(r.json()["choices"][0]["text"]), POINT)
    r = httpx.post(srv.url + "/v1/completions", json={
        "prompt": "p", "grammar": 'root ::= ("yes" | "no") "!"', "max_tokens": 20,
        "temperature": 1.0})
    assert r.json()["choices"][0]["text"] in ("yes!", "no!")


def test_required_tool_call_round_trip_through_openai(srv):
    c = client(srv)
    r = c.chat.completions.create(model=NAME, messages=MSGS, tools=[WEATHER],
                                  tool_choice="required", parallel_tool_calls=False,
                                  max_tokens=300, temperature=1.0, seed=2)
    choice = r.choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.content is None
    (call,) = choice.message.tool_calls
    assert call.function.name == "get_weather" and call.id.startswith("call_")
    jsonschema.validate(json.loads(call.function.arguments), WEATHER["function"]["parameters"])
    # The assistant's call and the tool's result go back in; the reply is text.
    history = MSGS + [choice.message.model_dump(exclude_none=True),
                      {"role": "tool", "tool_call_id": call.id, "content": "sunny"}]
    r = c.chat.completions.create(model=NAME, messages=history, tools=[WEATHER],
                                  tool_choice="none", max_tokens=5, temperature=0)
    assert r.choices[0].message.tool_calls is None and r.choices[0].message.content


def test_streamed_tool_calls_through_openai(srv):
    deltas, finish = [], None
    for chunk in client(srv).chat.completions.create(
            model=NAME, messages=MSGS, tools=[WEATHER],
            tool_choice={"type": "function", "function": {"name": "get_weather"}},
            parallel_tool_calls=False, max_tokens=300, temperature=1.0, seed=3, stream=True):
        for ch in chunk.choices:
            deltas += ch.delta.tool_calls or []
            finish = ch.finish_reason or finish
    assert finish == "tool_calls" and len(deltas) == 1
    assert deltas[0].function.name == "get_weather"
    jsonschema.validate(json.loads(deltas[0].function.arguments),
                        WEATHER["function"]["parameters"])
    assert_idle(srv)


@pytest.mark.parametrize("body, param, words", [
    ({"tools": [WEATHER], "tool_choice": {"type": "function", "function": {"name": "nope"}}},
     "tool_choice", "not in tools"),
    ({"tools": [{"type": "function", "function": {"name": "bad name"}}]}, "tools", "name"),
    ({"response_format": {"type": "json_schema"}}, "response_format", "json_schema.schema"),
    ({"json_schema": POINT, "grammar": 'root ::= "a"'}, "grammar", "not both"),
    ({"response_format": {"type": "json_object"}, "json_schema": POINT}, "response_format",
     "one constraint"),
    ({"messages": [{"role": "user", "content": "x", "tool_call_id": "c1"}]},
     "messages[0].tool_call_id", "tool message"),
])
def test_bad_structured_requests_are_400_naming_the_field(srv, body, param, words):
    r = httpx.post(srv.url + "/v1/chat/completions", json={"messages": MSGS, **body})
    assert r.status_code == 400, r.text
    err = r.json()["error"]
    assert err["param"] == param and words in err["message"]
    assert httpx.get(srv.url + "/health").status_code == 200
