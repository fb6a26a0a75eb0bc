"""Record how llama.cpp renders chat prompts into tests/data/chat_template_cases.json.

Run once with the peer (llama-cpp-python), never from the test suite:

    /work/peer/venv/bin/python tests/tools/record_chat.py

For a few conversations it stores:
* `llama_cpp_smollm2`: llama_chat_apply_template (the C API) given SmolLM2's template
  text. The C API does not run Jinja: it recognises the template as ChatML.
* `jinja_smollm2`: llama_cpp.llama_chat_format.Jinja2ChatFormatter running SmolLM2's
  template with jinja2 (what the template itself says, default system prompt included).
* `llama_cpp_gemma` / `llama_cpp_chatml`: the C API's built-in "gemma" and "chatml"
  formats, which the fallbacks of llamalite.chat_template must reproduce.
"""
from __future__ import annotations

import ctypes
import json
import sys
from pathlib import Path

import llama_cpp
from llama_cpp import Llama
from llama_cpp.llama_chat_format import Jinja2ChatFormatter

HERE = Path(__file__).resolve().parent
OUT = HERE.parent / "data" / "chat_template_cases.json"
SMOLLM2 = Path.home() / ".cache/llamalite/models/SmolLM2-135M-Instruct.Q4_1.gguf"

CONVERSATIONS = [
    [{"role": "user", "content": "Hello!"}],
    [{"role": "system", "content": "You are terse."},
     {"role": "user", "content": "What is 2+2?"}],
    [{"role": "system", "content": "Answer in French."},
     {"role": "user", "content": "Good morning"},
     {"role": "assistant", "content": "Bonjour !"},
     {"role": "user", "content": "How are you?"}],
    [{"role": "user", "content": "Write a haiku about the sea."},
     {"role": "assistant", "content": "Waves fold into foam\nsalt wind carries gull voices\nthe tide keeps its time"},
     {"role": "user", "content": "Now one about 山 (mountains) 🏔️"}],
    [{"role": "system", "content": "  padded system  "},
     {"role": "user", "content": "\n  padded user\t\n"}],
]


def apply_c_template(tmpl: bytes, messages: list[dict], add_ass: bool) -> str:
    arr = (llama_cpp.llama_chat_message * len(messages))()
    keep = []
    for i, m in enumerate(messages):
        role, content = m["role"].encode(), m["content"].encode()
        keep += [role, content]
        arr[i].role, arr[i].content = role, content
    size = 4096
    while True:
        buf = ctypes.create_string_buffer(size)
        n = llama_cpp.llama_chat_apply_template(tmpl, arr, len(messages), add_ass, buf, size)
        if n < 0:
            raise RuntimeError(f"llama_chat_apply_template failed for {tmpl[:40]!r}")
        if n <= size:
            return buf.raw[:n].decode("utf-8")
        size = n + 16


def main() -> int:
    llm = Llama(model_path=str(SMOLLM2), vocab_only=True, verbose=False)
    template = llm.metadata["tokenizer.chat_template"]
    cases = []
    for messages in CONVERSATIONS:
        for add_ass in (True, False):
            jinja = Jinja2ChatFormatter(template, eos_token="<|im_end|>", bos_token="<|im_start|>",
                                        add_generation_prompt=add_ass)
            cases.append({
                "messages": messages,
                "add_generation_prompt": add_ass,
                "llama_cpp_smollm2": apply_c_template(template.encode(), messages, add_ass),
                "jinja_smollm2": jinja(messages=messages).prompt,
                "llama_cpp_gemma": apply_c_template(b"gemma", messages, add_ass),
                "llama_cpp_chatml": apply_c_template(b"chatml", messages, add_ass),
            })
    data = {"recorded_with": f"llama-cpp-python {llama_cpp.__version__}",
            "smollm2_template": template, "cases": cases}
    OUT.write_text(json.dumps(data, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {OUT} ({len(cases)} cases)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
