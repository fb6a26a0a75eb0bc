"""Tokenizers read from GGUF metadata, giving the same ids as llama.cpp.

Three vocabulary kinds are supported:

* byte-level BPE (`tokenizer.ggml.model = gpt2`) with the pre-tokenizer named by
  `tokenizer.ggml.pre` (see `llamalite.pretokenizer`),
* SentencePiece BPE (`tokenizer.ggml.model = llama`): piece scores, byte fallback
  `<0xXX>`, spaces as U+2581, an optional leading space (`add_space_prefix`), and
* Gemma 4's BPE (`tokenizer.ggml.model = gemma4`): merges over whole lines of raw
  characters with spaces as U+2581, byte fallback `<0xXX>`, always a BOS.

>>> tok = Tokenizer.from_gguf(path)                              # doctest: +SKIP
>>> ids = tok.tokenize("Hello world")                           # doctest: +SKIP
>>> tok.detokenize(ids, skip_special=True)                      # doctest: +SKIP
'Hello world'

Special tokens: before the text is split, the texts of special tokens are cut out
of it exactly as llama.cpp does (longest token first). User-defined tokens are always
cut out; control and unknown tokens only when `parse_special=True`.
"""
from __future__ import annotations

import bisect
import codecs
import os
import re
import warnings
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from .bpe import BpeEncoder, byte_decode
from .errors import TokenizerError, TokenizerWarning
from .pretokenizer import (ADD_BOS_DEFAULT, IGNORE_MERGES, NO_CLEAN_SPACES,
                           get_splitter)
from .spm import SpmEncoder

__all__ = ["Tokenizer", "StreamDecoder", "TokenAttr"]


class TokenAttr:
    """llama.cpp's token attribute bits (llama_token_attr)."""
    UNDEFINED = 0
    UNKNOWN = 1 << 0
    UNUSED = 1 << 1
    NORMAL = 1 << 2
    CONTROL = 1 << 3
    USER_DEFINED = 1 << 4
    BYTE = 1 << 5


# GGUF token type (tokenizer.ggml.token_type) -> attribute; index = type
_TYPE_TO_ATTR = np.array([TokenAttr.UNDEFINED, TokenAttr.NORMAL, TokenAttr.UNKNOWN,
                          TokenAttr.CONTROL, TokenAttr.USER_DEFINED, TokenAttr.UNUSED,
                          TokenAttr.BYTE], dtype=np.int32)
_SPECIAL_ATTRS = TokenAttr.CONTROL | TokenAttr.USER_DEFINED | TokenAttr.UNKNOWN
_HIDDEN_ATTRS = TokenAttr.CONTROL | TokenAttr.UNKNOWN      # not rendered unless asked

_SPACE_ESCAPE = "\u2581"   # SentencePiece's visible space "▁"
_SURROGATES = re.compile("[\ud800-\udfff]")

# Token texts that llama.cpp treats as end of generation (llama-vocab.cpp, load()).
_EOG_TEXTS = frozenset([
    "<|eot_id|>", "<|im_end|>", "<|end|>", "<|return|>", "<|call|>", "<|flush|>",
    "<|calls|>", "<end_of_turn>", "<|endoftext|>", "</s>", "<|eom_id|>", "<EOT>",
    "_<EOT>", "[EOT]", "[EOS]", "<|end_of_text|>", "<end_of_utterance>", "<eos>",
    "<turn|>", "<|tool_response>", "<\uff5cend\u2581of\u2581sentence\uff5c>", "[e~[",
])
_EOT_TEXTS = ("<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>", "<|endoftext|>",
              "<|end_of_text|>", "<EOT>", "_<EOT>", "[EOT]",
              "<\uff5cend\u2581of\u2581sentence\uff5c>", "<end_of_utterance>")
# fill-in-the-middle tokens found by text when the file does not name them; key -> texts
_FIM_TEXTS = {
    "fim_pre": ("<|fim_prefix|>", "<fim-prefix>", "<fim_prefix>", "<\uff5cfim\u2581begin\uff5c>",
                "<PRE>", "\u2581<PRE>", "<|code_prefix|>", "<|prefix|>"),
    "fim_suf": ("<|fim_suffix|>", "<fim-suffix>", "<fim_suffix>", "<\uff5cfim\u2581hole\uff5c>",
                "<SUF>", "\u2581<SUF>", "<|code_suffix|>", "<|suffix|>"),
    "fim_mid": ("<|fim_middle|>", "<fim-middle>", "<fim_middle>", "<\uff5cfim\u2581end\uff5c>",
                "<MID>", "\u2581<MID>", "<|code_middle|>", "<|middle|>"),
    "fim_pad": ("<|fim_pad|>", "<fim-pad>", "<fim_pad>", "<PAD>", "[PAD]"),
    "fim_rep": ("<|fim_repo|>", "<|repo_name|>", "<fim-repo>", "<REPO>", "<reponame>"),
    "fim_sep": ("<|file_sep|>",),
}
_FIM_KEYS = {  # our key -> GGUF keys (current, deprecated)
    "fim_pre": ("tokenizer.ggml.fim_pre_token_id", "tokenizer.ggml.prefix_token_id"),
    "fim_suf": ("tokenizer.ggml.fim_suf_token_id", "tokenizer.ggml.suffix_token_id"),
    "fim_mid": ("tokenizer.ggml.fim_mid_token_id", "tokenizer.ggml.middle_token_id"),
    "fim_pad": ("tokenizer.ggml.fim_pad_token_id",),
    "fim_rep": ("tokenizer.ggml.fim_rep_token_id",),
    "fim_sep": ("tokenizer.ggml.fim_sep_token_id",),
}
# gpt-oss: llama.cpp always renders these as user-defined tokens
_FORCE_USER_DEFINED = ("<|channel|>", "<|message|>", "<|start|>", "<|constrain|>")


def _split_blob(blob: bytes, offsets: np.ndarray) -> list[str] | None:
    """Decode a compact string array (one UTF-8 blob + byte offsets) in one go.

    Decoding the blob once and slicing it by character offsets is about twice as
    fast as decoding 262,144 items one by one. Returns None when an item is not
    valid UTF-8 on its own (the caller then decodes item by item)."""
    try:
        text = blob.decode("utf-8")
    except UnicodeDecodeError:
        return None
    b = np.frombuffer(blob, dtype=np.uint8)
    is_cont = (b & 0xC0) == 0x80                     # UTF-8 continuation bytes
    off = np.asarray(offsets, dtype=np.int64)
    starts = off[:-1][off[:-1] < len(b)]
    if starts.size and is_cont[starts].any():
        return None                                  # an item starts mid-character
    n_cont = np.zeros(len(b) + 1, dtype=np.int64)
    np.cumsum(is_cont, out=n_cont[1:])
    char_off = (off - n_cont[off]).tolist()
    return [text[a:c] for a, c in zip(char_off, char_off[1:])]


def _as_str_list(value: Any, key: str) -> list[str]:
    if value is None:
        raise TokenizerError(f"the file has no {key}: it carries no vocabulary")
    if isinstance(value, (str, bytes)):
        raise TokenizerError(f"{key} must be an array of strings, got a single string")
    blob, offsets = getattr(value, "blob", None), getattr(value, "offsets", None)
    if isinstance(blob, bytes) and offsets is not None:
        items = _split_blob(blob, offsets)
        if items is not None:
            return items
    tolist = getattr(value, "tolist", None)
    items = tolist() if callable(tolist) else list(value)
    for i, item in enumerate(items):
        if not isinstance(item, str):
            raise TokenizerError(f"{key}[{i}] is {type(item).__name__}, expected a string")
    return items


def _as_int_array(value: Any, n: int, key: str) -> np.ndarray:
    arr = np.asarray(value)
    if arr.ndim != 1 or not np.issubdtype(arr.dtype, np.integer):
        raise TokenizerError(f"{key} must be an integer array")
    if len(arr) < n:
        raise TokenizerError(f"{key} has {len(arr)} entries but the vocabulary has {n} tokens")
    return arr[:n].astype(np.int32, copy=False)


def _valid_text(text: str) -> str:
    """llama.cpp reads invalid UTF-8 as U+FFFD: lone surrogates become U+FFFD (one
    character for one, so offsets into the text stay valid)."""
    if _SURROGATES.search(text):
        return _SURROGATES.sub("\ufffd", text)
    return text


def _clean_spaces(text: bytes) -> bytes:
    """llama.cpp's clean_up_tokenization_spaces, three passes over the bytes."""
    text = re.sub(rb" (?=[?!.,])", b"", text)          # " ?" " !" " ." " ,"
    text = re.sub(rb" ' ", b"'", text)                 # a lone apostrophe between spaces
    return re.sub(rb" (?='(?:[sm]|re|ve))", b"", text)  # " 's" " 'm" " 're" " 've"


class _SpecialGroup:
    """Special tokens sharing their first two characters (e.g. 6,000 "<unusedN>").

    Small groups are checked token by token (`tok in text`); large ones by looking up
    the text at each occurrence of the prefix, one slice per distinct token length."""

    _SCAN_ABOVE = 32

    def __init__(self, indices: list[int], lst: list[tuple[int, str]]) -> None:
        self.indices = indices                     # positions in the sorted special list
        self.texts = [lst[k][1] for k in indices]
        self.by_text = {lst[k][1]: k for k in indices}
        self.lengths = sorted({len(t) for t in self.texts})

    def find_in(self, text: str, prefix: str, hits: list[int]) -> None:
        """Append the positions of this group's tokens that occur in `text` to `hits`."""
        if len(self.indices) <= self._SCAN_ABOVE:
            hits.extend(k for k, t in zip(self.indices, self.texts) if t in text)
            return
        found: set[int] = set()
        by_text, lengths = self.by_text, self.lengths
        p = text.find(prefix)
        while p >= 0:
            for n in lengths:
                k = by_text.get(text[p:p + n])
                if k is not None:
                    found.add(k)
            p = text.find(prefix, p + 1)
        hits.extend(found)


class Tokenizer:
    """A GGUF vocabulary: text <-> token ids, identical to llama.cpp's.

    Build it with `Tokenizer.from_metadata(metadata)`. Attributes:
    `n_vocab`, `bos_id`, `eos_id`, `eot_id`, `add_bos`, `add_eos`, `add_space_prefix`,
    `eog_ids` (ids that end generation), `model` ("gpt2", "llama" or "gemma4"), `pre`.
    """

    def __init__(self, *, model: str, tokens: list[str], token_types: np.ndarray | None,
                 scores: np.ndarray | None = None, merges: Iterable[str] | None = None,
                 pre: str = "", metadata: Mapping[str, Any] | None = None) -> None:
        n = len(tokens)
        if n == 0:
            raise TokenizerError("tokenizer.ggml.tokens is empty")
        self.model = model
        self.n_vocab = n
        self._tokens = tokens
        self._token_to_id: dict[str, int] = dict(zip(tokens, range(n)))
        if len(self._token_to_id) != n:
            self._fix_empty_and_duplicates()
        if token_types is None:
            self._attr = np.full(n, TokenAttr.NORMAL, dtype=np.int32)
        else:   # out-of-range types count as undefined
            lut = np.append(_TYPE_TO_ATTR, TokenAttr.UNDEFINED)
            self._attr = lut[np.clip(token_types, 0, len(_TYPE_TO_ATTR))]
        default_ids = self._init_encoder(model, scores, merges, pre)
        fim = self._read_flags_and_ids(metadata or {}, *default_ids)
        self._find_special_by_text(fim)
        self._pieces: dict[bool, list[bytes | None]] = {}
        self._special_lists: dict[bool, list[tuple[int, str]]] = {}
        self._special_groups: dict[bool, dict[str, _SpecialGroup]] = {}

    def _init_encoder(self, model: str, scores: Any, merges: Iterable[str] | None,
                      pre: str) -> tuple[int | None, int | None, int | None]:
        """The encoder and llama.cpp's defaults for the vocabulary kind; returns the
        default (bos, eos, unk) ids."""
        n = self.n_vocab
        self._escape_spaces = False     # BPE over "▁"-for-space text (Gemma 4)
        if model == "llama":
            self.pre = "default"
            self.add_space_prefix, self.add_bos, self.add_eos = True, True, False
            self.clean_spaces = False
            scores_list = [0.0] * n
            if scores is not None:
                arr = np.asarray(scores)
                if arr.ndim != 1 or not np.issubdtype(arr.dtype, np.number) or len(arr) < n:
                    raise TokenizerError(f"tokenizer.ggml.scores must be {n} numbers, got "
                                         f"{arr.dtype} with shape {arr.shape}")
                scores_list = arr[:n].astype(np.float32).tolist()
            self._spm: SpmEncoder | None = SpmEncoder(self._token_to_id, scores_list)
            self._bpe: BpeEncoder | None = None
            return 1, 2, 0
        if model == "gpt2" and pre != "gemma4":
            splitter = get_splitter(pre)
            self.pre = pre or "default"
            self.add_space_prefix, self.add_eos = False, False
            self.add_bos = self.pre in ADD_BOS_DEFAULT
            self.clean_spaces = self.pre not in NO_CLEAN_SPACES
            if merges is None:
                raise TokenizerError("BPE vocabulary without tokenizer.ggml.merges")
            self._bpe = BpeEncoder(self._token_to_id, merges, splitter,
                                   ignore_merges=self.pre in IGNORE_MERGES)
            self._spm = None
            return 11, 11, None
        if model == "gemma4" or model == "gpt2":
            # llama.cpp ignores tokenizer.ggml.pre for model gemma4 and always uses its
            # "gemma4" split; model gpt2 with that split is the same tokenizer
            self.pre = "gemma4"
            self._escape_spaces = True
            self.add_space_prefix, self.add_bos, self.add_eos = False, True, False
            self.clean_spaces = True
            if merges is None:
                raise TokenizerError("BPE vocabulary without tokenizer.ggml.merges")
            self._bpe = BpeEncoder(self._token_to_id, merges, get_splitter("gemma4"),
                                   byte_level=False)
            self._spm = None
            return (11, 11, None) if model == "gpt2" else (None, None, None)
        raise TokenizerError(
            f"unsupported tokenizer.ggml.model={model!r}; supported: 'gpt2' (byte-level "
            "BPE), 'llama' (SentencePiece) and 'gemma4' (Gemma 4's BPE)")

    def _read_flags_and_ids(self, md: Mapping[str, Any], bos: int | None, eos: int | None,
                            unk: int | None) -> dict[str, int | None]:
        """Flags and special ids from the file over the defaults; returns the FIM ids."""
        n = self.n_vocab

        def token_id(key: str, default: int | None) -> int | None:
            if default is not None and default >= n:
                default = None
            value = md.get(key)
            if value is None:
                return default
            try:
                value = int(value)
            except (TypeError, ValueError):
                raise TokenizerError(f"{key} must be an integer, got {value!r}") from None
            if 0 <= value < n:
                return value
            # llama.cpp keeps the default; say so, or the file's mistake goes unnoticed
            instead = f"id {default} ({self._tokens[default]!r})" if default is not None \
                else "no token"
            warnings.warn(f"{key} is {value:,}, outside the vocabulary of {n:,} tokens "
                          f"(ids 0..{n - 1:,}); using {instead} instead (corrupt or "
                          f"mis-converted file?)", TokenizerWarning, stacklevel=4)
            return default

        self.add_space_prefix = bool(md.get("tokenizer.ggml.add_space_prefix",
                                            self.add_space_prefix))
        self.add_bos = bool(md.get("tokenizer.ggml.add_bos_token", self.add_bos))
        if self.pre == "gemma4":
            self.add_bos = True          # llama.cpp overrides a false flag for Gemma 4
        self.add_eos = bool(md.get("tokenizer.ggml.add_eos_token", self.add_eos))
        self.bos_id = token_id("tokenizer.ggml.bos_token_id", bos)
        self.eos_id = token_id("tokenizer.ggml.eos_token_id", eos)
        self.unk_id = token_id("tokenizer.ggml.unknown_token_id", unk)
        self.eot_id = token_id("tokenizer.ggml.eot_token_id", None)
        self.eom_id = token_id("tokenizer.ggml.eom_token_id", None)
        self.pad_id = token_id("tokenizer.ggml.padding_token_id", None)
        for flag, tid, what in ((self.add_bos, self.bos_id, "bos"),
                                (self.add_eos, self.eos_id, "eos")):
            if flag and tid is None:
                raise TokenizerError(f"tokenizer.ggml.add_{what}_token is true, but "
                                     f"tokenizer.ggml.{what}_token_id is not set")
        fim: dict[str, int | None] = {}
        for name, keys in _FIM_KEYS.items():
            fim[name] = next((i for i in (token_id(k, None) for k in keys) if i is not None),
                             None)
        return fim

    # --- construction ---

    @classmethod
    def from_gguf(cls, path: str | os.PathLike[str]) -> "Tokenizer":
        """The tokenizer of a GGUF file: a whole model, or a vocabulary-only file such
        as llama.cpp's `models/ggml-vocab-*.gguf` (no tensors needed).

        Raises GGUFError when the file cannot be read, TokenizerError when its
        vocabulary is missing, malformed or unsupported.
        """
        from .gguf import open_gguf
        with open_gguf(path) as f:
            return cls.from_metadata(f.metadata)

    @classmethod
    def from_metadata(cls, metadata: Mapping[str, Any]) -> "Tokenizer":
        """Build the tokenizer from GGUF key/values (the `tokenizer.ggml.*` keys).

        Raises TokenizerError naming the problem when the vocabulary is missing,
        malformed, or of a kind llamalite does not support.
        """
        model = metadata.get("tokenizer.ggml.model")
        if model is None:
            raise TokenizerError("the file has no tokenizer.ggml.model: it carries no vocabulary")
        if not isinstance(model, str):
            raise TokenizerError(f"tokenizer.ggml.model must be a string, got {type(model).__name__}")
        tokens = _as_str_list(metadata.get("tokenizer.ggml.tokens"), "tokenizer.ggml.tokens")
        types = metadata.get("tokenizer.ggml.token_type")
        types_arr = None if types is None else _as_int_array(types, len(tokens),
                                                             "tokenizer.ggml.token_type")
        merges = metadata.get("tokenizer.ggml.merges")
        if model in ("gpt2", "gemma4"):
            if merges is None:
                raise TokenizerError("the BPE vocabulary has no tokenizer.ggml.merges")
            merges = _as_str_list(merges, "tokenizer.ggml.merges")
        pre = metadata.get("tokenizer.ggml.pre") or ""
        if not isinstance(pre, str):
            raise TokenizerError("tokenizer.ggml.pre must be a string")
        return cls(model=model, tokens=tokens, token_types=types_arr,
                   scores=metadata.get("tokenizer.ggml.scores"), merges=merges,
                   pre=pre, metadata=metadata)

    def _fix_empty_and_duplicates(self) -> None:
        tokens = self._tokens
        seen: dict[str, int] = {}
        for i, t in enumerate(tokens):
            if t == "":
                t = f"[EMPTY_{i}]"       # llama.cpp renames empty pieces
                tokens[i] = t
            if t in seen:
                raise TokenizerError(
                    f"duplicate token in vocabulary: {t!r} has ids {seen[t]} and {i}")
            seen[t] = i
        self._token_to_id = seen

    def _find_special_by_text(self, fim: dict[str, int | None]) -> None:
        """llama.cpp finds EOT/EOG/FIM tokens by their text and marks them as control."""
        t2i = self._token_to_id
        attr = self._attr

        def mark_control(tid: int) -> None:
            attr[tid] |= TokenAttr.CONTROL

        # only ids found by their text are marked; ids the file names keep their type
        if self.eot_id is None:
            found = sorted(t2i[t] for t in _EOT_TEXTS if t in t2i)
            if found:
                self.eot_id = found[0]
                mark_control(self.eot_id)
        if self.eom_id is None and "<|eom_id|>" in t2i:
            self.eom_id = t2i["<|eom_id|>"]
            mark_control(self.eom_id)
        for name, texts in _FIM_TEXTS.items():
            if fim[name] is None:
                found = sorted(t2i[t] for t in texts if t in t2i)
                if found:
                    fim[name] = found[0]
                    mark_control(fim[name])
        self.fim_ids = fim

        eog: set[int] = {fim[k] for k in ("fim_pad", "fim_rep", "fim_sep") if fim[k] is not None}
        for text in _EOG_TEXTS:
            tid = t2i.get(text)
            if tid is not None:
                eog.add(tid)
                mark_control(tid)
        for text in _FORCE_USER_DEFINED:
            tid = t2i.get(text)
            if tid is not None:
                attr[tid] = TokenAttr.USER_DEFINED
        for tid in (self.eos_id, self.eot_id, self.eom_id):
            if tid is not None:
                eog.add(tid)
        texts = {self._tokens[i]: i for i in eog}
        # harmony / solar-open: "<|end|>" does not end generation there
        if "<|end|>" in texts and "<|call|>" in texts and (
                "<|return|>" in texts or "<|flush|>" in texts) or (
                "<|end|>" in texts and "<|calls|>" in texts and "<|flush|>" in texts):
            eog.discard(texts["<|end|>"])
            attr[texts["<|end|>"]] = TokenAttr.USER_DEFINED
        # gemma4 / paddleocr: "</s>" does not end generation when "<|tool_response>" exists
        if "<|tool_response>" in texts and "</s>" in texts:
            eog.discard(texts["</s>"])
            attr[texts["</s>"]] = TokenAttr.NORMAL
        self.eog_ids: frozenset[int] = frozenset(eog)

    # --- token facts ---

    def _check_id(self, tid: int) -> int:
        if not isinstance(tid, (int, np.integer)) or isinstance(tid, bool):
            raise TokenizerError(f"token id must be an int, got {type(tid).__name__}")
        if not 0 <= tid < self.n_vocab:
            raise TokenizerError(f"token id {tid} is outside the vocabulary (0..{self.n_vocab - 1})")
        return int(tid)

    def token_text(self, id: int) -> str:
        """The vocabulary piece as stored in the file (e.g. 'Ġworld', '▁world', '<0x0A>')."""
        return self._tokens[self._check_id(id)]

    def token_attr(self, id: int) -> int:
        """llama.cpp's attribute bits for the token (see TokenAttr)."""
        return int(self._attr[self._check_id(id)])

    def is_special(self, id: int) -> bool:
        """True for control, user-defined and unknown tokens (llama.cpp's special tokens)."""
        return bool(self._attr[self._check_id(id)] & _SPECIAL_ATTRS)

    def is_control(self, id: int) -> bool:
        """True for control tokens (hidden by detokenize(..., skip_special=True))."""
        return bool(self._attr[self._check_id(id)] & TokenAttr.CONTROL)

    def is_eog(self, id: int) -> bool:
        """True if the token ends generation (EOS, EOT, <|im_end|>, <end_of_turn>, ...)."""
        return id in self.eog_ids

    def token_to_id(self, text: str) -> int | None:
        """Id of the vocabulary piece `text` exactly as stored, or None."""
        return self._token_to_id.get(text)

    def token_bytes(self, id: int) -> bytes:
        """The raw bytes this token decodes to (special tokens rendered as their text)."""
        return self._piece(self._check_id(id), True)

    def _piece(self, tid: int, render_special: bool) -> bytes:
        """llama.cpp's token_to_piece(token, lstrip=0, special=render_special)."""
        cache = self._pieces.get(render_special)
        if cache is None:
            cache = self._pieces[render_special] = [None] * self.n_vocab
        piece = cache[tid]
        if piece is None:
            piece = cache[tid] = self._make_piece(tid, render_special)
        return piece

    def _make_piece(self, tid: int, render_special: bool) -> bytes:
        attr = int(self._attr[tid])
        text = self._tokens[tid]
        if not render_special and attr & _HIDDEN_ATTRS:
            return b""
        if attr & (_HIDDEN_ATTRS | TokenAttr.USER_DEFINED):
            return text.encode("utf-8")
        if attr & TokenAttr.NORMAL:
            if self.model == "llama" or self._escape_spaces:
                return text.replace(_SPACE_ESCAPE, " ").encode("utf-8")
            return byte_decode(text)
        if attr & TokenAttr.BYTE:
            try:
                return bytes([int(text[3:5], 16)])
            except ValueError:
                raise TokenizerError(f"byte token {tid} has text {text!r}, expected <0xXX>") from None
        return b""

    # --- text -> ids ---

    def tokenize(self, text: str, add_special: bool = True, parse_special: bool = False) -> list[int]:
        """Token ids of `text`, as llama_tokenize gives them.

        add_special: add BOS/EOS when the vocabulary asks for them (`add_bos`, `add_eos`).
        parse_special: also turn the text of control tokens (e.g. "<|im_start|>",
        "<start_of_turn>") into those tokens; user-defined tokens always are.
        """
        if not isinstance(text, str):
            raise TypeError(f"tokenize() takes a str, got {type(text).__name__}")
        return self._encode(self._partition(_valid_text(text), parse_special), add_special)

    def tokenize_parts(self, parts: Sequence[tuple[str, bool]],
                       add_special: bool = True) -> list[int]:
        """Token ids of the joined texts of `parts`, pairs (text, parse_special).

        Control and unknown tokens are cut out only where their whole text lies in
        parts with parse_special=True; user-defined tokens everywhere, as in tokenize().
        The joined text is split into words as one text, across part boundaries, so
        when no control-token text touches a parse_special=False part the ids are
        exactly tokenize(joined, add_special, parse_special=True). For chat prompts:
        the template's markup may write control tokens, message content may not.
        """
        texts: list[str] = []
        literal: list[tuple[int, int]] = []   # sorted, disjoint [start, end) spans
        pos = 0
        for text, parse_special in parts:
            if not isinstance(text, str):
                raise TypeError(f"tokenize_parts() takes str texts, got {type(text).__name__}")
            if text and not parse_special:
                if literal and literal[-1][1] == pos:
                    literal[-1] = (literal[-1][0], pos + len(text))
                else:
                    literal.append((pos, pos + len(text)))
            texts.append(text)
            pos += len(text)
        joined = _valid_text("".join(texts))    # same length: spans stay valid
        return self._encode(self._partition_outside(joined, literal), add_special)

    def hidden_special_spans(self, text: str) -> list[tuple[int, int, int]]:
        """(start, end, id) of each control or unknown token that
        tokenize(text, parse_special=True) cuts out of `text` (and parse_special=False
        would not)."""
        spans: list[tuple[int, int, int]] = []
        pos = 0
        for frag in self._partition(_valid_text(text), True):
            if isinstance(frag, int):
                n = len(self._tokens[frag])
                if self._attr[frag] & _HIDDEN_ATTRS:
                    spans.append((pos, pos + n, frag))
                pos += n
            else:
                pos += len(frag)
        return spans

    def _encode(self, fragments: list[str | int], add_special: bool) -> list[int]:
        """Ids of partitioned text: special ids as they are, raw fragments encoded."""
        out: list[int] = []
        if add_special and self.add_bos:
            out.append(self.bos_id)  # type: ignore[arg-type]
        if self._spm is not None:
            prev_special = True          # a space prefix goes at the start and after specials
            for frag in fragments:
                if isinstance(frag, int):
                    out.append(frag)
                    prev_special = True
                    continue
                if self.add_space_prefix and prev_special:
                    frag = " " + frag
                self._spm.encode(frag.replace(" ", _SPACE_ESCAPE), out)
                prev_special = False
        else:
            assert self._bpe is not None
            escape = self._escape_spaces
            for frag in fragments:
                if isinstance(frag, int):
                    out.append(frag)
                else:
                    self._bpe.encode(frag.replace(" ", _SPACE_ESCAPE) if escape else frag, out)
        if add_special and self.add_eos:
            out.append(self.eos_id)  # type: ignore[arg-type]
        return out

    def _special_list(self, parse_special: bool) -> list[tuple[int, str]]:
        """Special tokens that may be cut out of text, longest (in bytes) first."""
        lst = self._special_lists.get(parse_special)
        if lst is None:
            mask = (self._attr & _SPECIAL_ATTRS) != 0
            if not parse_special:
                mask &= (self._attr & _HIDDEN_ATTRS) == 0
            ids = np.nonzero(mask)[0].tolist()
            lst = [(i, self._tokens[i]) for i in ids]
            lst.sort(key=lambda it: -len(it[1].encode("utf-8")))   # stable: id order on ties
            self._special_lists[parse_special] = lst
            members: dict[str, list[int]] = {}
            for k, (_, t) in enumerate(lst):
                members.setdefault(t[:2], []).append(k)
            self._special_groups[parse_special] = {
                prefix: _SpecialGroup(ks, lst) for prefix, ks in members.items()}
        return lst

    def _partition(self, text: str, parse_special: bool) -> list[str | int]:
        """Split text into raw fragments (str) and special token ids, as llama.cpp's
        tokenizer_st_partition does: for each special token, longest first, every
        non-overlapping occurrence in the remaining raw text becomes that token."""
        if not text:
            return []
        lst = self._special_list(parse_special)
        hits: list[int] = []
        for prefix, group in self._special_groups[parse_special].items():
            if prefix in text:
                group.find_in(text, prefix, hits)
        if not hits:
            return [text]
        hits.sort()
        fragments: list[str | int] = [text]
        for k in hits:
            tid, tok = lst[k]
            size = len(tok)
            out: list[str | int] = []
            for frag in fragments:
                if isinstance(frag, int) or tok not in frag:
                    out.append(frag)
                    continue
                start = 0
                while True:
                    j = frag.find(tok, start)
                    if j < 0:
                        break
                    if j > start:
                        out.append(frag[start:j])
                    out.append(tid)
                    start = j + size
                if start < len(frag):
                    out.append(frag[start:])
            fragments = out
        return fragments

    def _partition_outside(self, text: str,
                           literal: list[tuple[int, int]]) -> list[str | int]:
        """_partition(text, parse_special=True), except that a control or unknown token
        whose text overlaps a `literal` span (sorted, disjoint) stays raw text."""
        if not literal:
            return self._partition(text, True)
        if not text:
            return []
        lst = self._special_list(True)
        hits: list[int] = []
        for prefix, group in self._special_groups[True].items():
            if prefix in text:
                group.find_in(text, prefix, hits)
        hits.sort()
        starts = [a for a, _ in literal]

        def overlaps_literal(a: int, b: int) -> bool:
            i = bisect.bisect_left(starts, b) - 1      # the last span starting before b
            return i >= 0 and literal[i][1] > a

        fragments: list[tuple[int, int] | int] = [(0, len(text))]
        for k in hits:
            tid, tok = lst[k]
            guarded = bool(self._attr[tid] & _HIDDEN_ATTRS)
            size = len(tok)
            out: list[tuple[int, int] | int] = []
            for frag in fragments:
                if isinstance(frag, int):
                    out.append(frag)
                    continue
                start, end = frag
                j = text.find(tok, start, end)
                while j >= 0:
                    if guarded and overlaps_literal(j, j + size):
                        j = text.find(tok, j + 1, end)
                        continue
                    if j > start:
                        out.append((start, j))
                    out.append(tid)
                    start = j + size
                    j = text.find(tok, start, end)
                if start < end:
                    out.append((start, end))
            fragments = out
        return [text[f[0]:f[1]] if isinstance(f, tuple) else f for f in fragments]

    # --- ids -> text ---

    def detokenize_bytes(self, ids: Sequence[int], *, skip_special: bool = False) -> bytes:
        """The bytes llama_detokenize gives (remove_special=false,
        unparse_special=not skip_special); may end inside a UTF-8 character."""
        render = not skip_special
        check = self._check_id
        parts = [self._piece(check(t), render) for t in ids]
        if parts and self.add_space_prefix and parts[0][:1] == b" ":
            parts[0] = parts[0][1:]
        raw = b"".join(parts)
        if self.clean_spaces:
            raw = _clean_spaces(raw)
        return raw

    def detokenize(self, ids: Sequence[int], *, skip_special: bool = False) -> str:
        """Text of `ids`. Control tokens (BOS, <|im_start|>, ...) appear as their text
        unless `skip_special`; user-defined tokens always do. Bytes that do not form
        valid UTF-8 become U+FFFD."""
        return self.detokenize_bytes(ids, skip_special=skip_special).decode("utf-8", "replace")

    def __repr__(self) -> str:
        return (f"Tokenizer(model={self.model!r}, pre={self.pre!r}, n_vocab={self.n_vocab}, "
                f"bos_id={self.bos_id}, eos_id={self.eos_id}, add_bos={self.add_bos})")


class StreamDecoder:
    """Incremental detokenizer for streamed generation.

    `push(id)` returns the text that token completes: "" while a multi-byte UTF-8
    character waits for its remaining bytes, so a piece never holds a broken
    character. The concatenation of all pushes plus `flush()` equals
    `tokenizer.detokenize(ids, skip_special=...)`.
    """

    # bytes held back when the tokenizer cleans spaces: a space may still be
    # removed by what follows (" ." or " 're")
    _CLEAN_HOLDBACK = 8

    def __init__(self, tokenizer: Tokenizer, *, skip_special: bool = False) -> None:
        self._tok = tokenizer
        self._render = not skip_special
        self._utf8 = codecs.getincrementaldecoder("utf-8")("replace")
        self._first = True
        self._raw = bytearray()      # only used when the tokenizer cleans spaces
        self._sent = 0               # cleaned bytes already passed to the UTF-8 decoder

    def push(self, id: int) -> str:
        piece = self._tok._piece(self._tok._check_id(id), self._render)
        if self._first:
            self._first = False
            if self._tok.add_space_prefix and piece[:1] == b" ":
                piece = piece[1:]
        if not self._tok.clean_spaces:
            return self._utf8.decode(piece)
        self._raw += piece
        cleaned = _clean_spaces(bytes(self._raw))
        ready = max(self._sent, len(cleaned) - self._CLEAN_HOLDBACK)
        out = self._utf8.decode(cleaned[self._sent:ready])
        self._sent = ready
        if len(self._raw) > self._TRIM_ABOVE:
            self._trim()
        return out

    _TRIM_ABOVE = 1024

    def _trim(self) -> None:
        """Forget raw bytes whose cleaned text is already sent, so each push stays O(1).

        The clean-up looks at most 3 bytes around a space or apostrophe, so the raw text
        can be cut where the 4 bytes before the cut hold neither: cleaning the two parts
        separately then gives the same bytes as cleaning the whole."""
        raw = self._raw
        cut = len(raw) - 64
        while cut >= 4 and (b" " in raw[cut - 4:cut] or b"'" in raw[cut - 4:cut]):
            cut -= 1
        if cut < 4:
            return
        head = _clean_spaces(bytes(raw[:cut]))
        if len(head) <= self._sent:
            del raw[:cut]
            self._sent -= len(head)

    def flush(self) -> str:
        """Text still held back (a trailing incomplete character becomes U+FFFD)."""
        tail = b""
        if self._tok.clean_spaces:
            tail = _clean_spaces(bytes(self._raw))[self._sent:]
            self._sent += len(tail)
        return self._utf8.decode(tail, final=True)
