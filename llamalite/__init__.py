"""llamalite: a portable CPU runtime for quantized GGUF language models.

>>> import llamalite
>>> path = llamalite.pull("smollm2-135m")      # fetched once, then cached
>>> llm = llamalite.LLM("smollm2-135m")         # doctest: +SKIP
>>> print(llm.generate("Why is the sky blue?", max_tokens=64).text)  # doctest: +SKIP
"""
from __future__ import annotations

import importlib
from typing import Any

from . import _core
from .errors import (EngineError, GGUFError, LlamaliteError, QueueFull, RegistryError,
                     RequestRejected, TemplateError, TokenizerWarning)

__version__ = _core.__version__

# The rest of the public names import their module on first use, so a command that
# needs only the file reader (quantize, info) starts without the engine, the tokenizer
# or the template engine (PEP 562).
_LAZY = {
    "ChatTemplate": "chat_template",
    "GGUFFile": "gguf", "GGUFFormatError": "gguf", "GGUFTensorError": "gguf",
    "GGUFTokenizerError": "gguf", "GGUFTruncatedError": "gguf", "GGUFValueError": "gguf",
    "TensorInfo": "gguf", "open_gguf": "gguf",
    "LLM": "llm",
    "HParams": "model", "KVCache": "model", "Model": "model",
    "Completion": "outputs", "CompletionChunk": "outputs", "Timings": "outputs",
    "TokenLogprob": "outputs", "Usage": "outputs",
    "MODELS": "registry", "cache_dir": "registry", "list_cached": "registry", "pull": "registry",
    "resolve_model": "registry",
    "Sampler": "sampling", "SampleResult": "sampling", "SamplingParams": "sampling",
    "system_info": "system",
    "Tokenizer": "tokenizer",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'llamalite' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


__all__ = [
    "ChatTemplate",
    "Completion",
    "CompletionChunk",
    "EngineError",
    "GGUFError",
    "GGUFFile",
    "GGUFFormatError",
    "GGUFTensorError",
    "GGUFTokenizerError",
    "GGUFTruncatedError",
    "GGUFValueError",
    "HParams",
    "KVCache",
    "LLM",
    "LlamaliteError",
    "MODELS",
    "QueueFull",
    "Model",
    "RegistryError",
    "RequestRejected",
    "SampleResult",
    "Sampler",
    "SamplingParams",
    "TemplateError",
    "TensorInfo",
    "Timings",
    "TokenizerWarning",
    "TokenLogprob",
    "Tokenizer",
    "Usage",
    "cache_dir",
    "list_cached",
    "open_gguf",
    "pull",
    "resolve_model",
    "system_info",
    "__version__",
]
