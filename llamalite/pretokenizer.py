"""Pre-tokenizers for byte-level BPE: split text into words before the merges run.

`tokenizer.ggml.pre` names the split that the model was trained with. llama.cpp
applies a list of regular expressions one after the other: each expression
splits every piece the previous one produced, and both the matches and the text
between matches become pieces. This module reproduces that for the pre-tokenizer
names listed in `PRE_TOKENIZERS`.

Expressions without a Unicode property class are matched, as llama.cpp matches them
(std::wregex), against the text with every non-ASCII space turned into "\\v": such a
space is then whitespace only, never a member of an explicit range (DeepSeek's
U+0800-U+4E00 holds U+2000-U+200A, its punctuation set U+3000).

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

# Qwen 3.5: like Qwen 2, but combining marks (\p{M}) join the letters they follow.
_QWEN35 = (r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])"
           r"|[^\r\n\p{L}\p{N}]?[\p{L}\p{M}]+|\p{N}| ?[^\s\p{L}\p{M}\p{N}]+[\r\n]*"
           r"|\s*[\r\n]+|\s+(?!\S)|\s+")

# DeepSeek LLM: explicit letter ranges (Latin, Greek, Cyrillic, Armenian, Georgian,
# Cherokee, ...), ASCII and full-width punctuation, CJK and Hangul runs, digit runs.
_DEEPSEEK_LETTERS = (
    "A-Za-z\u00b5\u00c0-\u00d6\u00d8-\u00f6\u00f8-\u01ba\u01bc-\u01bf\u01c4-\u0293"
    "\u0295-\u02af\u0370-\u0373\u0376\u0377\u037b-\u037d\u037f\u0386\u0388-\u038a\u038c"
    "\u038e-\u03a1\u03a3-\u03f5\u03f7-\u0481\u048a-\u052f\u0531-\u0556\u10a0-\u10c5"
    "\u13a0-\u13f5\u13f8-\u13fd\u1c90-\u1cba\u1cbd-\u1cbf\u1d00-\u1d2b\u1d6b-\u1d77"
    "\u1d79-\u1d9a\u1e00-\u1f15\u1f18-\u1f1d\u1f20-\u1f45\u1f48-\u1f4d\u1f50-\u1f57\u1f59"
    "\u1f5b\u1f5d\u1f5f-\u1f7d\u1f80-\u1fb4\u1fb6-\u1fbc\u1fbe\u1fc2-\u1fc4\u1fc6-\u1fcc"
    "\u1fd0-\u1fd3\u1fd6-\u1fdb\u1fe0-\u1fec\u1ff2-\u1ff4\u1ff6-\u1ffc\u2102\u2107"
    "\u210a-\u2113\u2115\u2119-\u211d\u2124\u2126\u2128\u212a-\u212d\u212f-\u2134\u2139"
    "\u213c-\u213f\u2145-\u2149\u214e\u2183\u2184\u2c00-\u2c7b\u2c7e-\u2ce4\u2ceb-\u2cee"
    "\u2cf2\u2cf3\ua640-\ua66d\ua680-\ua69b\ua722-\ua76f\ua771-\ua787\ua78b-\ua78e"
    "\uab70-\uabbf\ufb00-\ufb06\ufb13-\ufb17\uff21-\uff3a\uff41-\uff5a"
    "\U00010400-\U0001044f\U000104b0-\U000104d3\U000104d8-\U000104fb\U00010c80-\U00010cb2"
    "\U00010cc0-\U00010cf2\U000118a0-\U000118df\U0001e900-\U0001e943")
_DEEPSEEK_LLM = (r"[\r\n]",
                 r"\s?[" + _DEEPSEEK_LETTERS + "]+",
                 r"\s?[!-/:-~\uff01-\uff0f\uff1a-\uff5e\u2018-\u201f\u3000-\u3002]+",
                 r"\s+\Z",
                 "[\u4e00-\u9fa5\u0800-\u4e00\uac00-\ud7ff]+",
                 r"\p{N}+")

# DeepSeek Coder: letters and punctuation runs with an optional leading space, CJK and
# Hangul runs, single digits.
_DEEPSEEK_CODER = (r"[\r\n]", r"\s?\p{L}+", r"\s?\p{P}+",
                   "[\u4e00-\u9fa5\u0800-\u4e00\uac00-\ud7ff]+", r"\p{N}")

# Falcon: punctuation runs (with the backtick) first, then GPT-2, then groups of three
# ASCII digits.
_FALCON = (r"[\p{P}\$\+<=>\^~\|`]+", _GPT2, r"[0-9][0-9][0-9]")

# Gemma 4 (`tokenizer.ggml.model = gemma4`): spaces are already "▁"; only runs of
# newlines are split from the rest, and the merges run over the whole line.
_NEWLINE_RUNS = (r"[^\n]+|\n+",)

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
_register(["qwen35"], [_QWEN35])
_register(["deepseek-llm"], _DEEPSEEK_LLM)
_register(["deepseek-coder"], _DEEPSEEK_CODER)
_register(["falcon"], _FALCON)
_register(["gemma4"], _NEWLINE_RUNS)

# Names whose whole-word vocabulary hits skip the merges (llama.cpp's ignore_merges).
IGNORE_MERGES = frozenset(["llama3", "llama-v3", "llama-bpe", "falcon3", "falcon-h1",
                           "pixtral", "midm-2.0", "lfm2"])
# Names that llama.cpp adds BOS for unless the file says otherwise.
ADD_BOS_DEFAULT = IGNORE_MERGES
# Names for which llama.cpp does NOT clean up spaces before punctuation when detokenizing.
NO_CLEAN_SPACES = frozenset(["qwen2", "deepseek-r1-qwen", "smollm", "command-r", "hunyuan",
                             "qwen35", "deepseek-llm", "deepseek-coder"])

# non-ASCII White_Space -> "\v" (same length, so match offsets stay valid)
_FOLD_SPACES = {c: "\v" for c in (0x85, 0xA0, 0x1680, *range(0x2000, 0x200B), 0x2028, 0x2029,
                                  0x202F, 0x205F, 0x3000)}

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
        # expressions without \p{..} see non-ASCII spaces as "\v" (see the module doc)
        self._fold = tuple("\\p{" not in p.pattern for p in self.patterns)

    def split(self, text: str) -> list[str]:
        """Words of `text`, in order; joined they give `text` back exactly."""
        pieces = [text] if text else []
        for pattern, fold in zip(self.patterns, self._fold):
            out: list[str] = []
            for piece in pieces:
                pos = 0
                for m in pattern.finditer(piece.translate(_FOLD_SPACES) if fold else piece):
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
