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


class EngineError(LlamaliteError):
    """Base of the errors the generation engine raises to callers."""


class RequestRejected(EngineError, ValueError):
    """A request that can never be served (bad ids, too long): refused before queueing.

    param names the request field at fault; code is a short machine-readable reason.
    """

    def __init__(self, message: str, *, param: str | None = None, code: str | None = None,
                 **details: object) -> None:
        super().__init__(message)
        self.param = param
        self.code = code
        self.details = details


class QueueFull(EngineError):
    """Too many requests are waiting; retry later (the server answers 429)."""

    def __init__(self, message: str, retry_after: float = 1.0) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class EngineStopped(EngineError):
    """The engine was shut down."""


class GrammarError(LlamaliteError, ValueError):
    """A JSON schema or grammar cannot constrain generation (it does not parse, or uses
    what the grammar engine does not support). param names the request field."""

    def __init__(self, message: str, *, param: str | None = None) -> None:
        super().__init__(message)
        self.param = param
