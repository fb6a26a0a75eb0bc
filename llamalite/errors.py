"""Exception types. Every message says what is wrong and, where it can, the fix."""
from __future__ import annotations


class LlamaliteError(Exception):
    """Base class of every error llamalite raises on purpose."""


class GGUFError(LlamaliteError, ValueError):
    """A GGUF file is malformed, truncated, or uses something llamalite does not support."""


class RegistryError(LlamaliteError):
    """A model could not be fetched, verified or found in the cache."""


class TokenizerError(LlamaliteError, ValueError):
    """A vocabulary in the file cannot be used, or a token id / text is invalid for it."""


class TokenizerWarning(UserWarning):
    """A vocabulary problem llamalite works around as llama.cpp does (e.g. a special
    token id outside the vocabulary, replaced by the default), reported at load."""


class TemplateError(LlamaliteError):
    """A chat template failed to render: a syntax error, `raise_exception`, a sandbox
    violation (access to Python internals) or a resource limit."""
