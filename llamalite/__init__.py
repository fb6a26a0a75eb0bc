"""llamalite: a portable CPU runtime for quantized GGUF language models.

>>> import llamalite
>>> path = llamalite.pull("smollm2-135m")      # fetched once, then cached
>>> llm = llamalite.LLM("smollm2-135m")         # doctest: +SKIP
>>> print(llm.generate("Why is the sky blue?", max_tokens=64).text)  # doctest: +SKIP
"""
from __future__ import annotations

from . import _core
from .chat_template import ChatTemplate
from .errors import (EngineError, GGUFError, LlamaliteError, QueueFull, RegistryError,
                     RequestRejected, TemplateError, TokenizerWarning)
from .gguf import (GGUFFile, GGUFFormatError, GGUFTensorError, GGUFTokenizerError,
                   GGUFTruncatedError, GGUFValueError, TensorInfo, open_gguf)
from .llm import LLM
from .model import HParams, KVCache, Model
from .outputs import Completion, CompletionChunk, Timings, TokenLogprob, Usage
from .registry import MODELS, cache_dir, list_cached, pull, resolve_model
from .sampling import Sampler, SampleResult, SamplingParams
from .system import system_info
from .tokenizer import Tokenizer

__version__ = _core.__version__

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
