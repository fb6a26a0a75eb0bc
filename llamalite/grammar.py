"""Structured output: which tokens may come next under a JSON schema or a grammar.

llguidance (Microsoft's Rust library behind Guidance) compiles JSON schemas, GBNF (via its
converter to Lark) and regular expressions into an Earley parser over a lexer, and
computes the set of allowed tokens for the whole vocabulary in tens of microseconds per
step, Gemma's 262,144 tokens included. Chosen over XGrammar (which wants PyTorch for its
mask and ships CUDA-minded wheels) and outlines-core (which builds a whole-vocabulary
index per regex up front: seconds for a 262k vocabulary, and no GBNF).

`GrammarCompiler(tokenizer)` is built once per model (the llguidance view of the
vocabulary is made on first use); `compile(params)` gives a request's `TokenMask`, or None
for an unconstrained request. The engine asks each constrained request's mask for the
next step before the forward call, applies it to the logits row, and feeds the sampled
token back (`consume`); the mask says when the grammar is complete (`done`).
"""
from __future__ import annotations

import json
import threading
from typing import Any, Optional

import numpy as np

from .errors import GrammarError

__all__ = ["GrammarCompiler", "TokenMask", "JSON_OBJECT_SCHEMA", "schema_of_response_format"]

# OpenAI's response_format {"type": "json_object"}: any JSON object.
JSON_OBJECT_SCHEMA: dict = {"type": "object"}
# JSON as json.dumps writes it (", " and ": ", no other whitespace): the layout models
# saw most, and no room for a run of blank space that never ends.
_JSON_STYLE = {"item_separator": ", ", "key_separator": ": ", "whitespace_flexible": False}


def schema_of_response_format(response_format: Any) -> Optional[dict]:
    """The JSON schema an OpenAI `response_format` asks for (None for plain text).

    {"type": "text"}; {"type": "json_object"}; {"type": "json_schema", "json_schema":
    {"name": ..., "schema": {...}, "strict": ...}}. Anything else is a GrammarError
    naming response_format."""
    def bad(why: str) -> GrammarError:
        return GrammarError(f"response_format {why}", param="response_format")
    if response_format is None:
        return None
    if not isinstance(response_format, dict):
        raise bad("must be an object with a 'type'")
    kind = response_format.get("type")
    extra = set(response_format) - {"type", "json_schema"}
    if extra:
        raise bad(f"has unknown field(s) {', '.join(sorted(extra))}")
    if kind == "text":
        return None
    if kind == "json_object":
        return dict(JSON_OBJECT_SCHEMA)
    if kind == "json_schema":
        spec = response_format.get("json_schema")
        if not isinstance(spec, dict) or not isinstance(spec.get("schema"), dict):
            raise bad("of type json_schema needs json_schema.schema, a JSON schema object")
        unknown = set(spec) - {"name", "schema", "strict", "description"}
        if unknown:
            raise bad(f"json_schema has unknown field(s) {', '.join(sorted(unknown))}")
        return spec["schema"]
    raise bad(f"type must be 'text', 'json_object' or 'json_schema', got {kind!r}")


def _llguidance() -> Any:
    try:
        import llguidance
        import llguidance.gbnf_to_lark
    except ImportError as e:   # a dependency of the package: only a broken install lacks it
        raise GrammarError("structured output needs the 'llguidance' package "
                           "(pip install llguidance)") from e
    return llguidance


class TokenMask:
    """One request's constraint: the tokens allowed next, and the tokens taken so far."""

    def __init__(self, matcher: Any, n_vocab: int) -> None:
        self._matcher = matcher
        self.n_vocab = n_vocab
        self._bits = np.zeros(((n_vocab + 31) // 32,), dtype=np.int32)   # [ceil(n_vocab/32)]
        self._ready = False

    def compute(self) -> None:
        """Fill the mask for the next token (may run beside the forward pass)."""
        self._matcher.unsafe_compute_mask_ptr(self._bits.ctypes.data, self._bits.nbytes)
        self._ready = True

    def apply(self, logits: np.ndarray) -> np.ndarray:
        """A copy of logits [n_vocab] with every disallowed token at -inf."""
        if not self._ready:
            self.compute()
        self._ready = False
        allowed = np.unpackbits(self._bits.view(np.uint8), bitorder="little")[:self.n_vocab]
        out = np.where(allowed.astype(bool), logits, np.float32(-np.inf))
        if not np.isfinite(out).any():
            raise GrammarError(f"the grammar allows no token here "
                               f"({self._matcher.get_error() or 'no continuation'})")
        return out.astype(np.float32, copy=False)

    def consume(self, token: int) -> None:
        """Advance past a sampled token (one the mask allowed)."""
        if not self._matcher.consume_token(int(token)):
            raise GrammarError(f"token {token} does not fit the grammar: "
                               f"{self._matcher.get_error()}")

    @property
    def done(self) -> bool:
        """The grammar is complete: nothing more may follow."""
        return bool(self._matcher.is_stopped())


class GrammarCompiler:
    """Compiles requests' JSON schemas and grammars against one model's vocabulary.

    tokenizer: llamalite's Tokenizer (token_bytes, is_control, eog_ids, tokenize)
    """

    def __init__(self, tokenizer: Any, n_vocab: int) -> None:
        self.tokenizer = tokenizer
        self.n_vocab = n_vocab
        self._lock = threading.Lock()
        self._lltok: Any = None

    def _ll_tokenizer(self) -> Any:
        """llguidance's view of the vocabulary (built once, ~1 s for 262k tokens)."""
        with self._lock:
            if self._lltok is None:
                llg = _llguidance()
                vocab = _Vocab(self.tokenizer, self.n_vocab)
                self._lltok = llg.LLTokenizer(llg.TokenizerWrapper(vocab),
                                              eos_token=vocab.end_ids or None)
            return self._lltok

    def grammar_of(self, params: Any) -> Optional[tuple[str, str]]:
        """(llguidance grammar, the request field it came from) or None if unconstrained."""
        llg = _llguidance()
        schema = getattr(params, "json_schema", None)
        grammar = getattr(params, "grammar", None)
        if schema is not None:
            if isinstance(schema, str):
                try:
                    schema = json.loads(schema)
                except ValueError as e:
                    raise GrammarError(f"json_schema is not valid JSON: {e}",
                                       param="json_schema") from None
            if not isinstance(schema, dict):
                raise GrammarError("json_schema must be a JSON object (a schema)",
                                   param="json_schema")
            try:
                return llg.LLMatcher.grammar_from_json_schema(
                    schema, defaults=_JSON_STYLE), "json_schema"
            except (ValueError, TypeError) as e:
                raise GrammarError(f"json_schema cannot be used: {e}", param="json_schema") from None
        if grammar is not None:
            if not isinstance(grammar, str) or not grammar.strip():
                raise GrammarError("grammar must be a non-empty GBNF (or Lark) text",
                                   param="grammar")
            try:
                lark = llg.gbnf_to_lark.any_to_lark(grammar)
            except Exception as e:      # the converter raises plain errors on bad GBNF
                raise GrammarError(f"grammar does not parse: {e}", param="grammar") from None
            return llg.LLMatcher.grammar_from_lark(lark), "grammar"
        return None

    def compile(self, params: Any) -> Optional[TokenMask]:
        """The request's TokenMask (None when it has no constraint); GrammarError naming
        the field when the schema or grammar cannot be used."""
        found = self.grammar_of(params)
        if found is None:
            return None
        grammar, field = found
        llg = _llguidance()
        lltok = self._ll_tokenizer()
        error = llg.LLMatcher.validate_grammar(grammar, lltok)
        if error:
            raise GrammarError(f"{field} cannot be used: {error}", param=field)
        matcher = llg.LLMatcher(lltok, grammar, log_level=0)
        if matcher.is_error():
            raise GrammarError(f"{field} cannot be used: {matcher.get_error()}", param=field)
        return TokenMask(matcher, self.n_vocab)


class _Vocab:
    """The shape llguidance.TokenizerWrapper reads: token bytes (control tokens marked by a
    leading 0xff, so no grammar text can produce them), the end tokens, and an encoder."""

    def __init__(self, tokenizer: Any, n_vocab: int) -> None:
        self._tok = tokenizer
        eog = sorted(getattr(tokenizer, "eog_ids", ()) or ())
        eos = getattr(tokenizer, "eos_id", None)
        self.eos_token_id = eos if eos is not None else (eog[0] if eog else 0)
        self.end_ids = eog                       # a complete grammar lets these end the reply
        self.bos_token_id = getattr(tokenizer, "bos_id", None)
        is_control = getattr(tokenizer, "is_control", lambda t: False)
        tokens = []
        for t in range(n_vocab):
            raw = bytes(tokenizer.token_bytes(t))
            tokens.append(b"\xff" + raw if is_control(t) or t in eog else raw)
        self.tokens = tokens
        self.special_token_ids = [t for t in range(n_vocab) if tokens[t][:1] == b"\xff"]

    def __call__(self, text: Any) -> list[int]:
        if isinstance(text, bytes):
            text = text.decode("utf-8", errors="replace")
        return list(self._tok.tokenize(text, add_special=False))
