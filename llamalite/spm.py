"""SentencePiece BPE (`tokenizer.ggml.model = llama`), as llama.cpp's llm_tokenizer_spm runs it.

The whole fragment (spaces already replaced by U+2581) starts as one symbol per
character; the adjacent pair whose concatenation is the highest-scoring vocabulary
piece is merged first (leftmost on ties), again and again. Symbols that are not in
the vocabulary come out as byte tokens `<0xXX>` (byte fallback).
"""
from __future__ import annotations

import heapq
from typing import Mapping, Sequence

from .errors import TokenizerError


class SpmEncoder:
    """Turns one escaped text fragment into ids."""

    def __init__(self, token_to_id: Mapping[str, int], scores: Sequence[float]) -> None:
        self._token_to_id = token_to_id
        self._scores = scores
        self._byte_ids: list[int | None] | None = None

    def byte_id(self, b: int) -> int:
        """Id of the byte-fallback token for byte `b` (`<0xXX>`, else the 1-byte piece)."""
        if self._byte_ids is None:
            vocab = self._token_to_id
            table: list[int | None] = []
            for v in range(256):
                tid = vocab.get(f"<0x{v:02X}>")
                if tid is None and v < 0x80:
                    tid = vocab.get(chr(v))
                table.append(tid)
            self._byte_ids = table
        tid = self._byte_ids[b]
        if tid is None:
            raise TokenizerError(
                f"the vocabulary has no byte-fallback token <0x{b:02X}> for a character "
                "it cannot spell (the file's SentencePiece vocabulary lacks byte tokens)")
        return tid

    def encode(self, text: str, out: list[int]) -> None:
        """Append the ids of `text` (spaces already escaped as U+2581) to `out`."""
        n = len(text)
        if n == 0:
            return
        vocab = self._token_to_id
        scores = self._scores
        symbols = list(text)                  # [n] symbol texts, "" once merged away
        nxt = list(range(1, n + 1))
        nxt[-1] = -1
        prv = list(range(-1, n - 1))
        heap = []                             # (-score, left, right, merged length)
        for i in range(n - 1):
            tid = vocab.get(text[i:i + 2])
            if tid is not None:
                heap.append((-scores[tid], i, i + 1, 2))
        heapq.heapify(heap)
        while heap:
            _, left, right, size = heapq.heappop(heap)
            lt, rt = symbols[left], symbols[right]
            if not lt or not rt or len(lt) + len(rt) != size:
                continue                      # one side changed since the pair was queued
            merged = lt + rt
            symbols[left] = merged
            symbols[right] = ""
            nr = nxt[right]
            nxt[left] = nr
            if nr >= 0:
                prv[nr] = left
            pl = prv[left]
            if pl >= 0:
                s = symbols[pl] + merged
                tid = vocab.get(s)
                if tid is not None:
                    heapq.heappush(heap, (-scores[tid], pl, left, len(s)))
            if nr >= 0:
                s = merged + symbols[nr]
                tid = vocab.get(s)
                if tid is not None:
                    heapq.heappush(heap, (-scores[tid], left, nr, len(s)))
        i = 0
        while i != -1:
            sym = symbols[i]
            tid = vocab.get(sym)
            if tid is not None:
                out.append(tid)
            else:
                out.extend(self.byte_id(b) for b in sym.encode("utf-8"))
            i = nxt[i]
