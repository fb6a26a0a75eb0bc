"""Pre-tokenizers for byte-level BPE: split text into words before the merges run.

`tokenizer.ggml.pre` names the split that the model was trained with. llama.cpp
applies a list of regular expressions one after the other: each expression
splits every piece the previous one produced, and both the matches and the text
between matches become pieces. This module reproduces that for the pre-tokenizer
names listed in `PRE_TOKENIZERS`.

The expressions use Unicode property classes (\\p{L} letters, \\p{N} numbers),
which Python's `re` lacks; the `regex` package supplies them, and its `\\s` is
exactly the Unicode White_Space set that llama.cpp's `is_whitespace` uses.
"""
from __future__ import annotations

from typing import Sequence

import regex

from .errors import TokenizerError

# --- the expressions, as llama.cpp's llm_tokenizer_bpe lists them ---

# GPT-2. llama.cpp runs a hand-written matcher equivalent to this expression
# followed by `|\s+` (whitespace left over becomes its own piece either way).
_GPT2 = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"

# Llama 3: case-insensitive contractions, numbers in groups of up to three digits.
_LLAMA3 = (r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])"
           r"|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
           r"|\s*[\r\n]+|\s+(?!\S)|\s+")

# Qwen 2: like Llama 3 but every digit is its own piece.
_QWEN2 = (r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])"
          r"|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
          r"|\s*[\r\n]+|\s+(?!\S)|\s+")

# pre-tokenizer name -> expressions applied in order (llama.cpp's grouping of names)
PRE_TOKENIZERS: dict[str, tuple[str, ...]] = {}


def _register(names: Sequence[str], exprs: Sequence[str]) -> None:
    for name in names:
        PRE_TOKENIZERS[name] = tuple(exprs)


_register(["default"], [r"[\p{P}\$\+<=>\^~\|]+", _GPT2, r"\p{N}+", r"[0-9][0-9][0-9]"])
_register(["gpt2", "gpt-2", "phi-2", "mpt", "olmo", "jais", "jina-es", "jina-de",
           "jina-v2-es", "jina-v2-de", "roberta-bpe", "jina-v1-en", "jina-v2-code",
           "gigachat", "exaone4", "trillion", "granite-docling"], [_GPT2])
_register(["llama3", "llama-v3", "llama-bpe", "falcon3", "falcon-h1", "pixtral",
           "midm-2.0", "lfm2", "dbrx", "smaug-bpe"], [_LLAMA3])
_register(["smollm", "starcoder", "refact", "command-r", "codeshell", "exaone",
           "minerva-7b"], [r"\p{N}", _GPT2])
_register(["qwen2", "deepseek-r1-qwen", "stablelm2", "megrez", "hunyuan"], [_QWEN2])

# Names whose whole-word vocabulary hits skip the merges (llama.cpp's ignore_merges).
IGNORE_MERGES = frozenset(["llama3", "llama-v3", "llama-bpe", "falcon3", "falcon-h1",
                           "pixtral", "midm-2.0", "lfm2"])
# Names that llama.cpp adds BOS for unless the file says otherwise.
ADD_BOS_DEFAULT = IGNORE_MERGES
# Names for which llama.cpp does NOT clean up spaces before punctuation when detokenizing.
NO_CLEAN_SPACES = frozenset(["qwen2", "deepseek-r1-qwen", "smollm", "command-r", "hunyuan"])

_compiled: dict[str, tuple[regex.Pattern, ...]] = {}


def pre_tokenizer_names() -> list[str]:
    """The `tokenizer.ggml.pre` values this module supports."""
    return sorted(PRE_TOKENIZERS)


def get_splitter(name: str) -> "PreTokenizer":
    """The pre-tokenizer for a `tokenizer.ggml.pre` value ('' means 'default', as in llama.cpp)."""
    key = name or "default"
    if key not in PRE_TOKENIZERS:
        raise TokenizerError(
            f"unsupported BPE pre-tokenizer tokenizer.ggml.pre={name!r}; supported: "
            + ", ".join(pre_tokenizer_names()))
    if key not in _compiled:
        _compiled[key] = tuple(regex.compile(e) for e in PRE_TOKENIZERS[key])
    return PreTokenizer(key, _compiled[key])


class PreTokenizer:
    """Splits text into the words that byte-level BPE merges independently."""

    def __init__(self, name: str, patterns: Sequence[regex.Pattern]) -> None:
        self.name = name
        self.patterns = tuple(patterns)

    def split(self, text: str) -> list[str]:
        """Words of `text`, in order; joined they give `text` back exactly."""
        pieces = [text] if text else []
        for pattern in self.patterns:
            out: list[str] = []
            for piece in pieces:
                pos = 0
                for m in pattern.finditer(piece):
                    start, end = m.span()
                    if start == end:
                        continue
                    if start > pos:
                        out.append(piece[pos:start])
                    out.append(piece[start:end])
                    pos = end
                if pos < len(piece):
                    out.append(piece[pos:])
            pieces = out
        return pieces
