"""Tool calls (OpenAI's `tools` and `tool_choice`) in the formats the template families use.

A conversation with tools renders them through the model's chat template. With
`tool_choice="required"` or a named function the reply is constrained by a grammar (the
family's call markup around JSON that the function's parameter schema allows), so the
call is enforced, not hoped for; with `"auto"` the model may answer in text or call, and
the reply is parsed for calls afterwards. Formats:

| family | a call looks like | found in templates with |
| --- | --- | --- |
| Hermes / Qwen 2.5, 3 | `<tool_call>\\n{"name": ..., "arguments": {...}}\\n</tool_call>` | `<tool_call>` |
| Mistral | `[TOOL_CALLS][{"name": ..., "arguments": {...}}, ...]` | `[TOOL_CALLS]` |
| Llama 3.x | `{"name": ..., "parameters": {...}}` | `ipython` |
| generic (any other template) | `{"tool_calls": [{"name": ..., "arguments": {...}}]}` | - |

For the generic format, and for any template that does not read `tools`, the tools and
the format are described in a system message, as llama.cpp's server does.
"""
from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass
from typing import Any, Optional

from .errors import GrammarError

__all__ = ["ToolCall", "ToolFormat", "check_tools", "tool_choice_mode", "format_for",
           "prepare_messages"]

_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


def _bad(param: str, why: str) -> GrammarError:
    return GrammarError(f"{param} {why}", param=param)


def check_tools(tools: Any) -> list[dict]:
    """OpenAI's tool list, checked: [{"type": "function", "function": {"name", "description"?,
    "parameters"?, "strict"?}}]. GrammarError naming `tools` otherwise."""
    if tools is None:
        return []
    if not isinstance(tools, list):
        raise _bad("tools", "must be a list of {'type': 'function', 'function': {...}}")
    seen = set()
    for i, t in enumerate(tools):
        if not isinstance(t, dict) or t.get("type") != "function" or \
                not isinstance(t.get("function"), dict):
            raise _bad("tools", f"[{i}] must be {{'type': 'function', 'function': {{...}}}}")
        fn = t["function"]
        unknown = set(fn) - {"name", "description", "parameters", "strict"}
        if unknown or set(t) - {"type", "function"}:
            raise _bad("tools", f"[{i}] has unknown field(s) "
                                f"{', '.join(sorted(unknown | (set(t) - {'type', 'function'})))}")
        name = fn.get("name")
        if not isinstance(name, str) or not _NAME.match(name):
            raise _bad("tools", f"[{i}].function.name must be 1-64 letters, digits, _ or -")
        if name in seen:
            raise _bad("tools", f"[{i}]: the function name '{name}' is given twice")
        seen.add(name)
        if "parameters" in fn and not isinstance(fn["parameters"], dict):
            raise _bad("tools", f"[{i}].function.parameters must be a JSON schema object")
        if "description" in fn and not isinstance(fn["description"], str):
            raise _bad("tools", f"[{i}].function.description must be a string")
    return tools


def tool_choice_mode(tool_choice: Any, tools: list[dict]) -> tuple[str, list[str]]:
    """("none" | "auto" | "required", the names a call may use)."""
    names = [t["function"]["name"] for t in tools]
    if tool_choice is None:
        return ("auto" if tools else "none"), names
    if tool_choice in ("none", "auto", "required"):
        if tool_choice != "none" and not tools:
            raise _bad("tool_choice", f"'{tool_choice}' needs tools")
        return tool_choice, names
    if isinstance(tool_choice, dict) and tool_choice.get("type") == "function" and \
            isinstance(tool_choice.get("function"), dict):
        name = tool_choice["function"].get("name")
        if name not in names:
            raise _bad("tool_choice", f"names the function {name!r}, which is not in tools "
                                      f"({', '.join(names) or 'none given'})")
        return "required", [name]
    raise _bad("tool_choice", "must be 'none', 'auto', 'required' or "
                              "{'type': 'function', 'function': {'name': ...}}")


@dataclass
class ToolCall:
    """One function call of a reply; arguments is JSON text (as OpenAI sends it)."""

    name: str
    arguments: str
    id: str = ""

    def __post_init__(self) -> None:
        if not self.id:
            self.id = "call_" + uuid.uuid4().hex[:24]

    def as_openai(self) -> dict:
        return {"id": self.id, "type": "function",
                "function": {"name": self.name, "arguments": self.arguments}}


# JSON inside call markup is written as json.dumps writes it (see grammar.py).
_JSON_STYLE = {"item_separator": ", ", "key_separator": ": ", "whitespace_flexible": False}


def _json_rule(schema: dict) -> str:
    """A Lark rule body (llguidance's %json) for JSON under schema, in json.dumps style."""
    return "%json " + json.dumps({**schema, "x-guidance": _JSON_STYLE})


def _call_schema(tools: list[dict], args_key: str) -> dict:
    """JSON schema of one call {"name": N, args_key: <N's parameters>} of any tool."""
    options = []
    for t in tools:
        fn = t["function"]
        params = fn.get("parameters") or {"type": "object"}
        options.append({"type": "object",
                        "properties": {"name": {"const": fn["name"]}, args_key: params},
                        "required": ["name", args_key], "additionalProperties": False})
    return options[0] if len(options) == 1 else {"anyOf": options}


def _json_objects(text: str) -> list[tuple[int, int, Any]]:
    """Every top-level JSON value that starts with '{' or '[' in text: (start, end, value)."""
    dec = json.JSONDecoder()
    found, i = [], 0
    while i < len(text):
        if text[i] in "{[":
            try:
                value, end = dec.raw_decode(text, i)
                found.append((i, end, value))
                i = end
                continue
            except ValueError:
                pass
        i += 1
    return found


def _as_call(obj: Any, args_key: str) -> Optional[ToolCall]:
    if not isinstance(obj, dict) or not isinstance(obj.get("name"), str):
        return None
    args = obj.get(args_key, obj.get("arguments", obj.get("parameters", {})))
    if isinstance(args, str):
        return ToolCall(obj["name"], args)
    return ToolCall(obj["name"], json.dumps(args, ensure_ascii=False))


class ToolFormat:
    """How one template family writes calls: a grammar that forces calls, and a parser."""

    name = "generic"
    args_key = "arguments"

    def grammar(self, tools: list[dict], parallel: bool) -> str:
        """A Lark grammar (llguidance dialect, %json for schemas) of one or more calls."""
        schema = {"type": "object",
                  "properties": {"tool_calls": {"type": "array", "minItems": 1,
                                                **({} if parallel else {"maxItems": 1}),
                                                "items": _call_schema(tools, self.args_key)}},
                  "required": ["tool_calls"], "additionalProperties": False}
        return f"start: {_json_rule(schema)}\n"

    def parse(self, text: str) -> tuple[str, list[ToolCall]]:
        """(the text that is not a call, the calls) of a reply."""
        for start, end, value in _json_objects(text):
            if isinstance(value, dict) and isinstance(value.get("tool_calls"), list):
                calls = [c for c in (_as_call(v, self.args_key) for v in value["tool_calls"]) if c]
                if calls:
                    return (text[:start] + text[end:]).strip(), calls
        return text, []

    def system_prompt(self, tools: list[dict]) -> str:
        """Describes the tools and the call format for templates that do not read `tools`."""
        return ("You can call these functions:\n"
                + "\n".join(json.dumps(t["function"], ensure_ascii=False) for t in tools)
                + '\nTo call functions, reply with only JSON: {"tool_calls": [{"name": '
                  '<function name>, "arguments": <arguments object>}]}')


class HermesFormat(ToolFormat):
    name = "hermes"

    def grammar(self, tools: list[dict], parallel: bool) -> str:
        more = ' ("\\n" call)*' if parallel else ""
        return (f'start: call{more}\n'
                f'call: "<tool_call>\\n" body "\\n</tool_call>"\n'
                f'body: {_json_rule(_call_schema(tools, "arguments"))}\n')

    def parse(self, text: str) -> tuple[str, list[ToolCall]]:
        calls, rest = [], text
        for m in re.finditer(r"<tool_call>(.*?)(?:</tool_call>|$)", text, re.S):
            objs = _json_objects(m.group(1))
            call = _as_call(objs[0][2], "arguments") if objs else None
            if call:
                calls.append(call)
                rest = rest.replace(m.group(0), "", 1)
        return (rest.strip(), calls) if calls else (text, [])


class MistralFormat(ToolFormat):
    name = "mistral"
    marker = "[TOOL_CALLS]"

    def grammar(self, tools: list[dict], parallel: bool) -> str:
        schema = {"type": "array", "minItems": 1, **({} if parallel else {"maxItems": 1}),
                  "items": _call_schema(tools, "arguments")}
        return f'start: "{self.marker}" body\nbody: {_json_rule(schema)}\n'

    def parse(self, text: str) -> tuple[str, list[ToolCall]]:
        at = text.find(self.marker)
        if at < 0:
            return text, []
        objs = _json_objects(text[at + len(self.marker):])
        if not objs or not isinstance(objs[0][2], list):
            return text, []
        calls = [c for c in (_as_call(v, "arguments") for v in objs[0][2]) if c]
        return (text[:at].strip(), calls) if calls else (text, [])


class Llama3Format(ToolFormat):
    name = "llama3"
    args_key = "parameters"

    def grammar(self, tools: list[dict], parallel: bool) -> str:
        more = ' ("; " call)*' if parallel else ""
        return f"start: call{more}\ncall: {_json_rule(_call_schema(tools, 'parameters'))}\n"

    def parse(self, text: str) -> tuple[str, list[ToolCall]]:
        body = text.replace("<|python_tag|>", "")
        calls, rest = [], body
        for start, end, value in _json_objects(body):
            call = _as_call(value, "parameters") if isinstance(value, dict) and \
                ("parameters" in value or "arguments" in value) else None
            if call:
                calls.append(call)
                rest = rest.replace(body[start:end], "", 1)
        return (rest.strip(" ;\n"), calls) if calls else (text, [])


def format_for(template_source: str) -> ToolFormat:
    """The call format of a chat template, by the markup it contains."""
    if "<tool_call>" in template_source:
        return HermesFormat()
    if "[TOOL_CALLS]" in template_source:
        return MistralFormat()
    if "ipython" in template_source:
        return Llama3Format()
    return ToolFormat()


def prepare_messages(messages: list[dict], tools: list[dict], fmt: ToolFormat,
                     template_reads_tools: bool) -> list[dict]:
    """Messages ready for the template: tool-call arguments as objects (templates write
    them with tojson), and the tools described in the system message when the template
    does not read `tools` itself."""
    out = []
    for m in messages:
        if isinstance(m, dict) and isinstance(m.get("tool_calls"), list):
            m = dict(m)
            m["tool_calls"] = [_with_object_arguments(c) for c in m["tool_calls"]]
            if m.get("content") is None:
                m["content"] = ""
        out.append(m)
    if tools and not template_reads_tools:
        note = fmt.system_prompt(tools)
        if out and isinstance(out[0], dict) and out[0].get("role") == "system":
            out[0] = {**out[0], "content": f"{out[0].get('content') or ''}\n\n{note}".strip()}
        else:
            out.insert(0, {"role": "system", "content": note})
    return out


def _with_object_arguments(call: Any) -> Any:
    if not isinstance(call, dict) or not isinstance(call.get("function"), dict):
        return call
    fn = dict(call["function"])
    if isinstance(fn.get("arguments"), str):
        try:
            fn["arguments"] = json.loads(fn["arguments"])
        except ValueError:
            pass                 # left as text: the template writes what it was given
    return {**call, "function": fn}


@dataclass
class ToolPlan:
    """What a chat request's tools mean for its prompt, its constraint and its reply."""

    mode: str                          # "none" | "auto" | "required"
    tools: list[dict]                  # the tools the template sees ([] for "none")
    fmt: ToolFormat
    grammar: Optional[str]             # the call grammar under "required", else None

    @property
    def parses_calls(self) -> bool:
        return self.mode != "none"

    def messages(self, messages: list[dict], template_source: str) -> list[dict]:
        return prepare_messages(messages, self.tools, self.fmt, "tools" in template_source)


def plan_tools(tools: Any, tool_choice: Any, template_source: str, *,
               parallel_tool_calls: bool = True) -> ToolPlan:
    """Check tools and tool_choice (GrammarError naming the field) and plan the request."""
    checked = check_tools(tools)
    mode, names = tool_choice_mode(tool_choice, checked)
    if not isinstance(parallel_tool_calls, bool):
        raise _bad("parallel_tool_calls", "must be true or false")
    fmt = format_for(template_source)
    grammar = None
    if mode == "required":
        chosen = [t for t in checked if t["function"]["name"] in names]
        grammar = fmt.grammar(chosen, parallel_tool_calls)
    return ToolPlan(mode, checked if mode != "none" else [], fmt, grammar)
