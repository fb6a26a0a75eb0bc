"""llamalite: a portable CPU runtime for quantized GGUF language models.

>>> import llamalite
>>> path = llamalite.pull("smollm2-135m")      # fetched once, then cached
"""
from __future__ import annotations

from . import _core
from .errors import GGUFError, LlamaliteError, RegistryError
from .gguf import (GGUFFile, GGUFFormatError, GGUFTensorError, GGUFTokenizerError,
                   GGUFTruncatedError, GGUFValueError, TensorInfo, open_gguf)
from .registry import MODELS, cache_dir, list_cached, pull, resolve_model

__version__ = _core.__version__

__all__ = [
    "GGUFError",
    "GGUFFile",
    "GGUFFormatError",
    "GGUFTensorError",
    "GGUFTokenizerError",
    "GGUFTruncatedError",
    "GGUFValueError",
    "LlamaliteError",
    "MODELS",
    "RegistryError",
    "TensorInfo",
    "cache_dir",
    "list_cached",
    "open_gguf",
    "pull",
    "resolve_model",
    "__version__",
]
