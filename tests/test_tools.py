"""Tool calls: checking tools and tool_choice, the call formats of the template families
(parsed from text, and forced by grammar under "required"), and the OpenAI shapes of the
reply, on the fakes. Arguments are checked against each tool's schema with `jsonschema`."""
from __future__ import annotations

import json

import jsonschema
import pytest
from fakes import FakeChatTemplate, FakeStreamDecoder, FakeTokenizer, HashModel

from llamalite.errors import GrammarError
from llamalite.llm import LLM
from llamalite.tools import (HermesFormat, Llama3Format, MistralFormat, ToolFormat, format_for,
                             plan_tools)

WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "Weather in a city",
    "parameters": {"type": "object",
                   "properties": {"city": {"type": "string", "maxLength": 12},
                                  "unit": {"enum": ["C", "F"]}},
                   "required": ["city", "unit"], "additionalProperties": False}}}
TIME = {"type": "function", "function": {
    "name": "get_time", "parameters": {"type": "object",
                                       "properties": {"zone": {"type": "string", "maxLength": 8}},
                                       "required": ["zone"], "additionalProperties": False}}}
TOOLS = [WEATHER, TIME]
SCHEMAS = {t["function"]["name"]: t["function"]["parameters"] for t in TOOLS}
MSGS = [{"role": "user", "content": "weather in Paris?"}]


@pytest.fixture(scope="module")
def llm():
    """Random-logit fake whose end-of-generation token competes with the others, so a
    grammar that may end (after one call or several) does end."""
    with LLM._from_parts(HashModel(eos_logit=1.0), FakeTokenizer(), FakeChatTemplate(), FakeStreamDecoder,
                         n_ctx=4096, n_parallel=4, seed=0, name="fake") as llm:
        yield llm


def check_calls(calls: list[dict], names=None) -> None:
    assert calls
    for c in calls:
        assert c["type"] == "function" and c["id"].startswith("call_")
        name = c["function"]["name"]
        assert name in (names or SCHEMAS)
        jsonschema.validate(json.loads(c["function"]["arguments"]), SCHEMAS[name])


@pytest.mark.parametrize("fmt", [ToolFormat(), HermesFormat(), MistralFormat(), Llama3Format()])
def test_each_format_grammar_forces_calls_that_its_parser_reads(llm, fmt):
    plan = plan_tools(TOOLS, "required", {"generic": "", "hermes": "<tool_call>",
                                          "mistral": "[TOOL_CALLS]", "llama3": "ipython"}[fmt.name])
    assert type(plan.fmt) is type(fmt)
    outs = llm.generate_batch(["a", "b", "c"], grammar=plan.grammar, temperature=1.0,
                              top_k=0, top_p=1.0, min_p=0.0, max_tokens=600)
    for out in outs:
        assert out.finish_reason == "stop", out.text
        content, calls = fmt.parse(out.text)
        assert content == ""
        check_calls([c.as_openai() for c in calls])


def test_required_chat_returns_tool_calls(llm):
    r = llm.chat(MSGS, tools=TOOLS, tool_choice="required", temperature=1.0, max_tokens=600)
    choice = r["choices"][0]
    assert choice["finish_reason"] == "tool_calls" and choice["message"]["content"] is None
    check_calls(choice["message"]["tool_calls"])


def test_named_function_and_single_call(llm):
    r = llm.chat(MSGS, tools=TOOLS, tool_choice={"type": "function",
                                                 "function": {"name": "get_time"}},
                 parallel_tool_calls=False, temperature=1.0, max_tokens=600)
    calls = r["choices"][0]["message"]["tool_calls"]
    assert len(calls) == 1
    check_calls(calls, names=["get_time"])


def test_streamed_tool_calls_are_deltas(llm):
    chunks = list(llm.chat(MSGS, tools=TOOLS, tool_choice="required", stream=True,
                           temperature=1.0, max_tokens=600))
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    deltas = [c["choices"][0]["delta"]["tool_calls"][0] for c in chunks
              if c["choices"] and "tool_calls" in c["choices"][0]["delta"]]
    assert [d["index"] for d in deltas] == list(range(len(deltas)))
    check_calls([{k: v for k, v in d.items() if k != "index"} for d in deltas])
    assert chunks[-2]["choices"][0]["finish_reason"] == "tool_calls"
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] > 0


def test_auto_without_a_call_is_plain_text(llm):
    r = llm.chat(MSGS, tools=TOOLS, temperature=0, max_tokens=8)
    msg = r["choices"][0]["message"]
    assert "tool_calls" not in msg and r["choices"][0]["finish_reason"] == "length"


def test_tools_are_described_to_templates_that_do_not_read_them(llm):
    plan = plan_tools(TOOLS, "auto", FakeChatTemplate.source)
    msgs = plan.messages(MSGS, FakeChatTemplate.source)
    assert msgs[0]["role"] == "system" and "get_weather" in msgs[0]["content"]
    plan = plan_tools(TOOLS, "auto", "{% for t in tools %}{% endfor %}<tool_call>")
    assert plan.messages(MSGS, "{{ tools }}") == MSGS


def test_parsers_on_written_replies():
    c, calls = HermesFormat().parse('Sure.\n<tool_call>\n{"name": "get_time", "arguments": '
                                    '{"zone": "UTC"}}\n</tool_call>')
    assert c == "Sure." and [(x.name, json.loads(x.arguments)) for x in calls] == \
        [("get_time", {"zone": "UTC"})]
    c, calls = MistralFormat().parse('[TOOL_CALLS][{"name": "a", "arguments": {}}, '
                                     '{"name": "b", "arguments": {"x": 1}}]')
    assert [x.name for x in calls] == ["a", "b"] and json.loads(calls[1].arguments) == {"x": 1}
    c, calls = Llama3Format().parse('<|python_tag|>{"name": "get_time", "parameters": '
                                    '{"zone": "CET"}}')
    assert calls[0].name == "get_time" and json.loads(calls[0].arguments) == {"zone": "CET"}
    assert HermesFormat().parse("no call here") == ("no call here", [])
    assert isinstance(format_for("{{ '<tool_call>' }}"), HermesFormat)


def test_tool_results_are_fed_back_through_the_template(llm):
    history = MSGS + [
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "call_1", "type": "function",
             "function": {"name": "get_weather", "arguments": '{"city": "Paris", "unit": "C"}'}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "18 C, sunny"}]
    plan = plan_tools(TOOLS, "auto", "{{ tools }}")
    msgs = plan.messages(history, "{{ tools }}")
    assert msgs[1]["tool_calls"][0]["function"]["arguments"] == {"city": "Paris", "unit": "C"}
    assert msgs[1]["content"] == "" and msgs[2]["content"] == "18 C, sunny"
    r = llm.chat(history, tools=TOOLS, temperature=0, max_tokens=4)
    assert r["usage"]["prompt_tokens"] > len(llm.tokenize("18 C, sunny"))


@pytest.mark.parametrize("kwargs, param, words", [
    (dict(tools=[{"type": "function", "function": {"name": "bad name"}}]), "tools", "name"),
    (dict(tools="get_weather"), "tools", "must be a list"),
    (dict(tools=[WEATHER, WEATHER]), "tools", "twice"),
    (dict(tools=[{"type": "function", "function": {"name": "x", "oops": 1}}]), "tools",
     "unknown field"),
    (dict(tools=TOOLS, tool_choice={"type": "function", "function": {"name": "nope"}}),
     "tool_choice", "not in tools"),
    (dict(tool_choice="required"), "tool_choice", "needs tools"),
    (dict(tools=TOOLS, tool_choice="always"), "tool_choice", "must be"),
    (dict(tools=TOOLS, tool_choice="required", response_format={"type": "json_object"}),
     "response_format", "one constraint"),
])
def test_bad_tool_requests_name_the_field(llm, kwargs, param, words):
    with pytest.raises(GrammarError, match=words) as e:
        llm.chat(MSGS, **kwargs)
    assert e.value.param == param
