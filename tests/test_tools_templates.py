"""The tool-call formats against the real chat templates in llama.cpp's tree: the template
is the oracle of its family's format. For every template that writes tool calls, a
conversation with one call is rendered; the format llamalite picks for that template must
read the call back out of the assistant's turn exactly (the generic format reads bare
call objects, as GigaChat writes them). Families whose format llamalite does not read are
listed (they fall back to the generic JSON format)."""
from __future__ import annotations

import json


from llamalite import ChatTemplate
from llamalite.tools import ToolFormat, format_for, prepare_messages

TOOLS = [{"type": "function", "function": {
    "name": "get_weather", "description": "Weather forecast",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"},
                                                    "days": {"type": "integer"}},
                   "required": ["city", "days"]}}}]
CALL = {"id": "abc123XYZ", "type": "function",          # Mistral templates want 9 alphanumerics
        "function": {"name": "get_weather", "arguments": '{"city": "Paris", "days": 3}'}}
MESSAGES = [{"role": "user", "content": "weather?"},
            {"role": "assistant", "content": None, "tool_calls": [CALL]}]

# Families with a call format of their own that llamalite does not read (generic JSON is
# used for them), by file-name fragment.
NOT_READ = ("Apertus", "Cohere", "Kimi", "LFM2", "MiniMax-M2", "MiniMax-M3", "deepseek",
            "firefunction", "gemma-4", "granite-3.3", "llm-jp", "functionary-medium-v3.2",
            "moonshotai", "muse-glimmer", "gpt-oss", "MiniCPM5", "Hy3", "Solar")


def tool_templates(tree) -> list:
    return sorted(p for p in (tree / "models" / "templates").glob("*.jinja")
                  if "tool_call" in p.read_text(encoding="utf-8"))


def test_every_tool_template_is_read_or_listed(llama_cpp_tree):
    read, listed = [], []
    for path in tool_templates(llama_cpp_tree):
        source = path.read_text(encoding="utf-8")
        fmt = format_for(source)
        if any(part in path.name for part in NOT_READ):
            listed.append(path.name)
            assert type(fmt) is ToolFormat, f"{path.name} is listed as not read but is {fmt.name}"
            continue
        template = ChatTemplate(source, bos_token="<s>", eos_token="</s>")
        text = template.render(prepare_messages(MESSAGES, TOOLS, fmt, True),
                               add_generation_prompt=False, tools=TOOLS)
        reply = text[text.rindex("weather?") + len("weather?"):]   # the assistant's turn on
        content, calls = fmt.parse(reply, TOOLS)
        assert [(c.name, json.loads(c.arguments)) for c in calls] == \
            [("get_weather", {"city": "Paris", "days": 3})], (path.name, fmt.name, reply[:300])
        read.append((path.name, fmt.name))
    formats = {f for _, f in read}
    assert len(read) >= 30 and {"hermes", "llama3", "mistral", "mistral-args", "qwen-xml",
                                "glm"} <= formats, read
    assert len(listed) < len(read)
