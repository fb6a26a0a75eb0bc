"""Chat templates: renderings against llama.cpp's, the fallbacks, and the sandbox.

tests/data/chat_template_cases.json is written by tests/tools/record_chat.py with the peer.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from llamalite import open_gguf
from llamalite.chat_template import (CHATML_TEMPLATE, GEMMA_TEMPLATE, ChatTemplate,
                                     TemplateLimits)
from llamalite.errors import TemplateError
from llamalite.tokenizer import Tokenizer

DATA = json.loads((Path(__file__).parent / "data" / "chat_template_cases.json").read_text("utf-8"))
CASES = DATA["cases"]


@pytest.fixture(scope="module")
def smollm2_metadata(smollm2_path):
    with open_gguf(smollm2_path) as f:
        return dict(f.metadata)


@pytest.fixture(scope="module")
def gemma3_metadata(gemma3_path):
    with open_gguf(gemma3_path) as f:
        return dict(f.metadata)


def _render(tmpl: ChatTemplate, case: dict) -> str:
    return tmpl.render(case["messages"], add_generation_prompt=case["add_generation_prompt"])


# --- the real models ---

def test_smollm2_uses_its_file_template(smollm2_metadata):
    tmpl = ChatTemplate.from_metadata(smollm2_metadata, "llama")
    assert not tmpl.is_fallback and tmpl.source == DATA["smollm2_template"]
    assert tmpl.bos_token == "<|im_start|>" and tmpl.eos_token == "<|im_end|>"


@pytest.mark.parametrize("index", range(len(CASES)))
def test_smollm2_template_matches_jinja_rendering(smollm2_metadata, index):
    """Same text as llama-cpp-python's Jinja2ChatFormatter running the file's template."""
    tmpl = ChatTemplate.from_metadata(smollm2_metadata, "llama")
    assert _render(tmpl, CASES[index]) == CASES[index]["jinja_smollm2"]


@pytest.mark.parametrize("index", range(len(CASES)))
def test_smollm2_template_matches_llama_cpp_c_api(smollm2_metadata, index):
    """llama_chat_apply_template reads SmolLM2's template as plain ChatML: it never adds the
    template's default system prompt. With a system message both agree exactly."""
    case = CASES[index]
    tmpl = ChatTemplate.from_metadata(smollm2_metadata, "llama")
    ours = _render(tmpl, case)
    if case["messages"][0]["role"] == "system":
        assert ours == case["llama_cpp_smollm2"]
    else:
        default = ("<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by "
                   "Hugging Face<|im_end|>\n")
        assert ours == default + case["llama_cpp_smollm2"]


def test_gemma3_has_no_template_and_falls_back(gemma3_metadata):
    assert "tokenizer.chat_template" not in gemma3_metadata
    tmpl = ChatTemplate.from_metadata(gemma3_metadata, "gemma3")
    assert tmpl.is_fallback and tmpl.source == GEMMA_TEMPLATE and tmpl.name == "gemma"
    assert tmpl.bos_token == "<bos>" and tmpl.eos_token == "<eos>"


@pytest.mark.parametrize("index", range(len(CASES)))
def test_gemma_fallback_matches_llama_cpp(gemma3_metadata, index):
    tmpl = ChatTemplate.from_metadata(gemma3_metadata, "gemma3")
    assert _render(tmpl, CASES[index]) == CASES[index]["llama_cpp_gemma"]


@pytest.mark.parametrize("index", range(len(CASES)))
def test_chatml_fallback_matches_llama_cpp(index):
    tmpl = ChatTemplate.from_metadata({}, "llama")
    assert tmpl.is_fallback and tmpl.source == CHATML_TEMPLATE
    assert _render(tmpl, CASES[index]) == CASES[index]["llama_cpp_chatml"]


def test_gemma_prompt_tokenizes_to_turn_tokens(gemma3_metadata):
    tok = Tokenizer.from_metadata(gemma3_metadata)
    prompt = ChatTemplate.from_metadata(gemma3_metadata, "gemma3").render(
        [{"role": "user", "content": "Hi"}])
    ids = tok.tokenize(prompt, add_special=True, parse_special=True)
    assert ids[0] == tok.bos_id and ids.count(tok.bos_id) == 1
    assert tok.token_to_id("<start_of_turn>") in ids and tok.token_to_id("<end_of_turn>") in ids


def test_content_parts_are_joined():
    tmpl = ChatTemplate(CHATML_TEMPLATE, is_fallback=True)
    msg = [{"role": "user", "content": [{"type": "text", "text": "a"},
                                        {"type": "image_url", "image_url": "x"},
                                        {"type": "text", "text": "b"}]}]
    assert tmpl.render(msg, add_generation_prompt=False) == "<|im_start|>user\nab<|im_end|>\n"


# --- template features ---

def test_variables_filters_and_tools():
    src = ("{{ bos_token }}{% for m in messages %}{{ m.role }}:{{ m.content }};{% endfor %}"
           "{% if tools %}{{ tools | tojson(indent=2) }}{% endif %}"
           "{% for x in [1, 2, 3] %}{% if x == 2 %}{% continue %}{% endif %}{{ x }}{% endfor %}"
           "{{ extra_flag }}{% if add_generation_prompt %}>{% endif %}")
    tmpl = ChatTemplate(src, bos_token="<s>", eos_token="</s>")
    tools = [{"type": "function", "function": {"name": "get_weather", "description": "Météo <now>"}}]
    out = tmpl.render([{"role": "user", "content": "hi"}], tools=tools, extra_flag="X")
    assert out.startswith("<s>user:hi;")
    assert json.dumps(tools, indent=2, ensure_ascii=False) in out    # no HTML escaping
    assert out.endswith("13X>")
    assert "{% generation %}" not in ChatTemplate("{% generation %}ok{% endgeneration %}").render([])


TOOL_TEMPLATE = """{%- set ns = namespace(system=none, n_tools=0) -%}
{%- if messages and messages[0].role == 'system' -%}{%- set ns.system = messages[0].content.strip() -%}{%- endif -%}
<|im_start|>system
{{ ns.system if ns.system is not none else 'You are helpful.' }}
{%- if tools %}

Tools ({{ tools | length }}): {{ tools | map(attribute='function.name') | join(', ') }}
{%- for tool in tools %}
{{ tool | tojson(indent=4) }}
{%- endfor %}
{%- endif %}<|im_end|>
{% for message in messages | rejectattr('role', 'equalto', 'system') -%}
<|im_start|>{{ message.role }}
{%- if message.tool_calls is defined and message.tool_calls %}
{%- for call in message.tool_calls %}
<tool_call>{{ {'name': call.function.name, 'arguments': call.function.arguments} | tojson }}</tool_call>
{%- endfor %}
{%- else %}
{{ message.content | trim }}
{%- endif %}<|im_end|>{{ '\n' if not loop.last else '' }}
{%- endfor %}
{%- if add_generation_prompt %}
<|im_start|>assistant
{% endif %}"""


def _reference_render(src: str, **ctx) -> str:
    """What Hugging Face's apply_chat_template does: stock sandbox, trim/lstrip blocks,
    json.dumps as tojson."""
    import jinja2.ext
    from jinja2.sandbox import ImmutableSandboxedEnvironment
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                        extensions=[jinja2.ext.loopcontrols])
    env.filters["tojson"] = lambda x, indent=None, ensure_ascii=False: json.dumps(
        x, indent=indent, ensure_ascii=ensure_ascii)
    return env.from_string(src).render(**ctx)


def test_tool_calling_template_renders_like_stock_jinja():
    tools = [{"type": "function", "function": {"name": "get_time", "parameters": {}}},
             {"type": "function", "function": {"name": "add", "parameters": {"a": 1}}}]
    msgs = [{"role": "system", "content": " Be brief. "},
            {"role": "user", "content": "What time is it?"},
            {"role": "assistant", "content": "",
             "tool_calls": [{"function": {"name": "get_time", "arguments": {"tz": "UTC"}}}]},
            {"role": "tool", "content": "12:00"}]
    for kwargs in ({"messages": msgs, "tools": tools, "add_generation_prompt": True},
                   {"messages": msgs[1:2], "tools": None, "add_generation_prompt": False}):
        ours = ChatTemplate(TOOL_TEMPLATE).render(
            kwargs["messages"], tools=kwargs["tools"],
            add_generation_prompt=kwargs["add_generation_prompt"])
        assert ours == _reference_render(TOOL_TEMPLATE, **kwargs)
    out = ChatTemplate(TOOL_TEMPLATE).render(msgs, tools=tools)
    assert "Tools (2): get_time, add" in out
    assert '<tool_call>{"name": "get_time", "arguments": {"tz": "UTC"}}</tool_call>' in out
    assert out.endswith("<|im_start|>assistant\n")


def test_smollm2_template_renders_like_stock_jinja(smollm2_metadata):
    tmpl = ChatTemplate.from_metadata(smollm2_metadata, "llama")
    for case in CASES:
        assert _render(tmpl, case) == _reference_render(
            tmpl.source, messages=case["messages"],
            add_generation_prompt=case["add_generation_prompt"])


def test_raise_exception_is_a_template_error():
    tmpl = ChatTemplate("{% if messages[0].role != 'user' %}"
                        "{{ raise_exception('Conversation must start with user') }}{% endif %}ok")
    assert tmpl.render([{"role": "user", "content": "x"}]) == "ok"
    with pytest.raises(TemplateError, match="must start with user"):
        tmpl.render([{"role": "assistant", "content": "x"}])


def test_syntax_and_runtime_errors_are_template_errors():
    with pytest.raises(TemplateError, match="syntax error on line 1"):
        ChatTemplate("{% for %}")
    with pytest.raises(TemplateError, match="failed"):
        ChatTemplate("{{ 1 / 0 }}").render([])
    with pytest.raises(TemplateError, match="list of dicts"):
        ChatTemplate("x").render("not a list")  # type: ignore[arg-type]


# --- the sandbox ---

class Canary:
    """Records whether a template managed to call into it."""

    def __init__(self) -> None:
        self.fired = False

    def _fire(self) -> str:
        self.fired = True
        return "fired"

    def fire(self) -> str:
        return self._fire()


@pytest.mark.parametrize("src", [
    "{{ canary._fire() }}",
    "{{ canary.fire.__func__(canary) }}",
    "{{ canary.__class__.fire(canary) }}",
    "{{ canary.fire.__self__._fire() }}",
])
def test_blocked_access_runs_nothing(src):
    canary = Canary()
    with pytest.raises(TemplateError, match="not allowed"):
        ChatTemplate(src).render([], canary=canary)
    assert not canary.fired
    assert ChatTemplate("{{ canary.fire() }}").render([], canary=canary) == "fired"


@pytest.mark.parametrize("src", [
    "{{ ''.__class__ }}",
    "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "{{ ''['__class__'] }}",
    "{{ ''|attr('__class__') }}",
    "{{ messages.__class__.__base__ }}",
    "{{ raise_exception.__globals__ }}",
    "{{ cycler.__init__.__globals__.os }}",
    "{{ self.__init__.__globals__ }}",
    "{% set x = namespace() %}{{ x.__class__ }}",
    "{{ ().__class__.__bases__[0].__subclasses__() }}",
])
def test_python_internals_are_refused(src):
    with pytest.raises(TemplateError):
        ChatTemplate(src).render([{"role": "user", "content": "x"}])


def test_mutation_is_refused():
    with pytest.raises(TemplateError):
        ChatTemplate("{% set _ = messages.append({'role': 'x'}) %}").render([])
    msgs = [{"role": "user", "content": "x"}]
    with pytest.raises(TemplateError):
        ChatTemplate("{{ messages[0].update({'role': 'system'}) }}").render(msgs)
    assert msgs == [{"role": "user", "content": "x"}]


@pytest.mark.parametrize("src,reason", [
    ("{% for i in range(10**9) %}x{% endfor %}", "range"),
    ("{{ range(100000000) | list | length }}", "range"),
    ("{% for i in range(10000) %}{% for j in range(10000) %}{% endfor %}{% endfor %}", "iterations"),
    ("{{ 'x' * 1000000000 }}", "characters"),
    ("{{ ['x'] * 1000000000 }}", "characters"),
    ("{{ ('x' * 1000000) * 1000 }}", "characters"),
    ("{{ 9 ** 9999999 }}", "power"),
    ("{{ '%1000000000s' % 'x' }}", "width"),
    ("{{ 'x'.ljust(1000000000) }}", "characters"),
    ("{{ 'x' | center(1000000000) }}", "characters"),
    ("{{ ('x' * 1000000) | replace('x', 'xxxxxxxxxx') }}", "characters"),
    ("{{ '{:1000000000}'.format('x') }}", "width"),
    ("{% set ns = namespace(s='x') %}{% for i in range(100) %}{% set ns.s = ns.s ~ ns.s %}"
     "{% endfor %}", "characters"),
    ("{% set ns = namespace(s='x') %}{% for i in range(100) %}{% set ns.s = ns.s + ns.s %}"
     "{% endfor %}", "characters"),
    ("{% for i in range(10000) %}{{ 'y' * 3000 }}{% endfor %}", "output"),
    ("{{ range(10000) | map('string') | map('center', 3000000) | join }}", "characters"),
])
def test_resource_use_is_bounded(src, reason):
    t0 = time.monotonic()
    with pytest.raises(TemplateError, match=reason):
        ChatTemplate(src).render([])
    assert time.monotonic() - t0 < 10


def test_limits_are_configurable():
    tmpl = ChatTemplate("{% for i in range(50) %}{% endfor %}ok",
                        limits=TemplateLimits(max_range=10))
    with pytest.raises(TemplateError, match="range"):
        tmpl.render([])
    assert ChatTemplate("{% for i in range(50) %}{% endfor %}ok").render([]) == "ok"


@pytest.mark.parametrize("src,reason", [
    # a number squared in a loop: each step doubles its size and its cost
    ("{% set ns = namespace(x=10**100) %}{% for i in range(16) %}{% set ns.x = ns.x * ns.x %}"
     "{% endfor %}{{ ns.x % 10 }}", "more than 4,096 bits"),
    ("{{ (10**100) ** 100 }}", "power whose result has more than 4,096 bits"),
    ("{{ ((2**4095) + (2**4095)) - 1 }}", "subtracts an integer with more than 4,096 bits"),
    ("{{ (16).from_bytes('x'.encode() * 1000, 'big') }}", "more than 4,096 bits"),
    ("{{ lipsum(200000) }}", "lipsum"),
    ("{{ messages | tojson(indent=100000000) }}", "indent of 100,000,000"),
    ("{{ messages | tojson(indent=' ' * 1000) }}", "indent of 1,000"),
    ("{% set ns = namespace(x=1) %}{% for i in range(900) %}{% set ns.x = [ns.x] %}{% endfor %}"
     "{{ ns.x | tojson(indent=64) }}", "JSON layout"),
    ("{{ range(1000) | list | tojson(separators=(' ' * 10000, ':')) }}", "JSON layout"),
    ("{{ [1] | batch(5000000, 0) | list | length }}", "builds a"),
    ("{{ [1] | slice(5000000) | list | length }}", "builds a"),
    ("{{ (5).to_bytes(10000000, 'big') | length }}", "builds a"),
    ("{{ 'x'.encode().ljust(10000000) | length }}", "builds a"),
    ("{{ ('x'.encode() * 10000000) | length }}", "builds a"),
    ("{{ ('\t' * 100000).expandtabs(100) }}", "builds a"),
    ("{{ ('a' * 1000).translate({97: 'x' * 10000}) }}", "builds a"),
    ("{{ ('a ' * 10000) | wordwrap(1, wrapstring='x' * 1000) }}", "builds a"),
    ("{{ [[1] * 1000] * 4000 | sum(start=[]) | length }}", "start that is not a number"),
])
def test_more_resource_use_is_bounded(src, reason):
    with pytest.raises(TemplateError, match=reason):
        ChatTemplate(src).render([{"role": "user", "content": "x"}])


def test_small_numbers_and_json_still_work():
    src = ("{{ 2 ** 4095 % 1000 }} {{ (10**100 * 10**100) % 7 }} {{ [1, 2, 3] | sum }} "
           "{{ {'a': [1, {'b': 2}]} | tojson(indent=2) }} {{ [1, 2, 3] | batch(2, 0) | list }}"
           "{{ {'a': [1, 2]} | tojson(separators=(',', ':')) }}")
    out = ChatTemplate(src).render([])
    assert out.startswith(f"{2 ** 4095 % 1000} {(10**100 * 10**100) % 7} 6 ")
    assert json.dumps({"a": [1, {"b": 2}]}, indent=2) in out
    assert out.endswith('[[1, 2], [3, 0]]{"a":[1,2]}')


class _Clock:
    """time.monotonic for the template module: the first reading is 0 (the guard's
    start), every later one is past any limit."""

    def __init__(self) -> None:
        self.readings = 0

    def monotonic(self) -> float:
        self.readings += 1
        return 0.0 if self.readings == 1 else 1e9


class _CountingMessage(dict):
    """A message that counts how often the template reads it."""
    reads = 0

    def __getitem__(self, key):
        type(self).reads += 1
        return super().__getitem__(key)


@pytest.mark.parametrize("src", [
    "{% for i in range(50) %}{% set r = messages[0].role %}{% endfor %}ok",        # loop
    "{% set a = messages[0].role %}{% set b = messages[0].role %}ok",               # attributes
    "{% set a = messages | map(attribute='role') | list %}{% set b = messages[0].role %}ok",
])
def test_time_limit_is_checked_inside_the_rendering(monkeypatch, src):
    """The clock is read at every loop iteration, attribute access and filter, so a
    template past its time stops at once, not at its next output."""
    import llamalite.chat_template as ct
    monkeypatch.setattr(ct, "time", _Clock())
    monkeypatch.setattr(_CountingMessage, "reads", 0)
    with pytest.raises(TemplateError, match=r"time limit of 5\.0 s"):
        ChatTemplate(src).render([_CountingMessage(role="user", content="x")])
    assert _CountingMessage.reads <= 1
