"""Stop strings on streamed text: emit only text that cannot be part of a stop string.

Text arrives in pieces (one detokenized token at a time). A stop string may span
pieces, so the tail of the text that could still grow into a stop string is held
back; the text of (and after) a stop string is never emitted.

>>> s = StopStrings(["</end>"])
>>> s.push("Hello </"), s.push("en"), s.push("d> more")
(('Hello ', False), ('', False), ('', True))
"""
from __future__ import annotations

from typing import Sequence

__all__ = ["StopStrings"]


class StopStrings:
    """Filters a stream of text pieces against a list of stop strings."""

    def __init__(self, stops: Sequence[str]) -> None:
        self.stops = [s for s in stops if s]
        self.pending = ""          # text received but not yet emitted
        self.stopped = False

    def push(self, text: str) -> tuple[str, bool]:
        """Add a piece; return (text safe to emit now, whether a stop string was found).

        Once a stop string is found, the text before it is returned and everything
        after is dropped (further pushes return nothing).
        """
        if self.stopped:
            return "", True
        if not self.stops:
            return text, False
        self.pending += text
        cut = min((i for i in (self.pending.find(s) for s in self.stops) if i >= 0), default=-1)
        if cut >= 0:
            out, self.pending, self.stopped = self.pending[:cut], "", True
            return out, True
        hold = self._partial_stop_len(self.pending)
        out = self.pending[: len(self.pending) - hold]
        self.pending = self.pending[len(self.pending) - hold:]
        return out, False

    def flush(self) -> str:
        """At the end of generation without a stop: the held-back text, which is emitted."""
        out, self.pending = ("" if self.stopped else self.pending), ""
        return out

    def _partial_stop_len(self, text: str) -> int:
        """Length of the longest suffix of text that is a proper prefix of a stop string."""
        best = 0
        for s in self.stops:
            for n in range(min(len(s) - 1, len(text)), best, -1):
                if text.endswith(s[:n]):
                    best = n
                    break
        return best
