"""BPE merges applied the way llama.cpp does.

Byte-level BPE (`tokenizer.ggml.model = gpt2`): each pre-tokenized word is turned into
bytes, each byte into the printable character GPT-2 assigned to it, and then adjacent
symbols are merged lowest merge rank first (leftmost first on ties) until no listed
merge applies.

SentencePiece-style BPE (`tokenizer.ggml.model = gemma4`, `byte_level=False`): the
symbols are the word's characters as they are (spaces already "▁"), and a symbol
that is not a vocabulary piece falls back to byte tokens `<0xXX>`.
"""
from __future__ import annotations

import heapq
from typing import Iterable, Mapping

from .pretokenizer import PreTokenizer


def _byte_to_unicode() -> list[str]:
    """GPT-2's byte -> character table: printable Latin-1 bytes map to themselves,
    the others to code points from U+0100 on, in byte order."""
    keep = (list(range(0x21, 0x7F)) + list(range(0xA1, 0xAD)) + list(range(0xAE, 0x100)))
    table: list[str] = [""] * 256
    for b in keep:
        table[b] = chr(b)
    n = 0
    for b in range(256):
        if not table[b]:
            table[b] = chr(256 + n)
            n += 1
    return table


BYTE_TO_UNICODE: list[str] = _byte_to_unicode()
UNICODE_TO_BYTE: dict[str, int] = {c: b for b, c in enumerate(BYTE_TO_UNICODE)}
# str.translate table for text that was decoded as Latin-1 (one char per byte)
_LATIN1_TO_GPT2 = {b: c for b, c in enumerate(BYTE_TO_UNICODE)}

_CACHE_LIMIT = 200_000


def byte_encode(word: str) -> str:
    """`word` as GPT-2 byte characters (one character per UTF-8 byte)."""
    return word.encode("utf-8").decode("latin-1").translate(_LATIN1_TO_GPT2)


def byte_decode(piece: str) -> bytes:
    """Bytes of a byte-level vocabulary piece; unknown characters are rendered the
    way llama.cpp renders them ("[UNK_BYTE_0x..<piece>]")."""
    out = bytearray()
    for ch in piece:
        b = UNICODE_TO_BYTE.get(ch)
        if b is not None:
            out.append(b)
        else:
            out += b"[UNK_BYTE_0x" + ch.encode("utf-8").hex().encode() + piece.encode("utf-8") + b"]"
    return bytes(out)


class BpeEncoder:
    """Turns text (one raw fragment, special tokens already split off) into ids."""

    def __init__(self, token_to_id: Mapping[str, int], merges: Iterable[str],
                 pre: PreTokenizer, *, ignore_merges: bool = False,
                 byte_level: bool = True) -> None:
        self._token_to_id = token_to_id
        self.byte_level = byte_level
        self._merges_src = merges
        self._ranks: dict[str, int] | None = None   # "left right" -> rank, built on first use
        self.pre = pre
        self.ignore_merges = ignore_merges
        self._cache: dict[str, list[int]] = {}

    @property
    def ranks(self) -> dict[str, int]:
        if self._ranks is None:
            ranks: dict[str, int] = {}
            for i, merge in enumerate(self._merges_src):
                # llama.cpp splits at the first space after position 0
                ranks.setdefault(merge, i)
            self._ranks = ranks
            self._merges_src = ()
        return self._ranks

    def encode(self, text: str, out: list[int]) -> None:
        """Append the ids of `text` to `out`."""
        cache = self._cache
        byte_level = self.byte_level
        for word in self.pre.split(text):
            enc = byte_encode(word) if byte_level else word
            ids = cache.get(enc)
            if ids is None:
                ids = self._encode_word(enc)
                if len(cache) >= _CACHE_LIMIT:
                    cache.clear()
                cache[enc] = ids
            out.extend(ids)

    def _encode_word(self, word: str) -> list[int]:
        vocab = self._token_to_id
        # a run of newlines that is a piece stays whole in the SentencePiece-style
        # vocabulary (Gemma 4), as in llama.cpp
        if self.ignore_merges or len(word) == 1 or (
                not self.byte_level and not word.strip("\n")):
            tid = vocab.get(word)
            if tid is not None:
                return [tid]
        symbols = list(word)                       # [n] current text of each symbol, "" once merged away
        n = len(symbols)
        nxt = list(range(1, n + 1))
        nxt[-1] = -1
        prv = list(range(-1, n - 1))
        ranks = self.ranks
        heap = []                                  # (rank, left, right, merged text)
        for i in range(n - 1):
            r = ranks.get(symbols[i] + " " + symbols[i + 1])
            if r is not None:
                heap.append((r, i, i + 1, symbols[i] + symbols[i + 1]))
        heapq.heapify(heap)
        while heap:
            _, left, right, merged = heapq.heappop(heap)
            lt, rt = symbols[left], symbols[right]
            if not lt or not rt or lt + rt != merged:
                continue                           # outdated pair
            symbols[left] = merged
            symbols[right] = ""
            nr = nxt[right]
            nxt[left] = nr
            if nr >= 0:
                prv[nr] = left
            pl = prv[left]
            if pl >= 0:
                r = ranks.get(symbols[pl] + " " + merged)
                if r is not None:
                    heapq.heappush(heap, (r, pl, left, symbols[pl] + merged))
            if nr >= 0:
                r = ranks.get(merged + " " + symbols[nr])
                if r is not None:
                    heapq.heappush(heap, (r, left, nr, merged + symbols[nr]))
        ids: list[int] = []
        i = 0
        while i != -1:
            sym = symbols[i]
            tid = vocab.get(sym)
            if tid is not None:
                ids.append(tid)
            elif self.byte_level:
                # llama.cpp falls back to single-byte tokens; only ASCII bytes can match
                for b in sym.encode("utf-8"):
                    bt = vocab.get(chr(b)) if b < 0x80 else None
                    if bt is not None:
                        ids.append(bt)
            else:
                for b in sym.encode("utf-8"):
                    bt = vocab.get(f"<0x{b:02X}>")
                    if bt is not None:
                        ids.append(bt)
            i = nxt[i]
        return ids
