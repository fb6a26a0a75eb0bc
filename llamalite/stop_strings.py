"""Stop strings over streamed text: hold back only what could still become a stop string."""
from __future__ import annotations

from typing import Sequence


class StopMatcher:
    """Feed text deltas; get back the text that is safe to emit and whether a stop matched.

    The output never contains a stop string or anything after it, and text is held back
    only while it is a prefix of some stop string (so streaming stays prompt).
    """

    def __init__(self, stops: Sequence[str] | None) -> None:
        self.stops = [s for s in (stops or []) if s]
        self._pending = ""
        self.stopped = False

    def push(self, delta: str) -> str:
        """Add generated text; return the part that can be emitted now."""
        if self.stopped:
            return ""
        if not self.stops:
            return delta
        text = self._pending + delta
        cut = min((i for i in (text.find(s) for s in self.stops) if i >= 0), default=-1)
        if cut >= 0:
            self.stopped = True
            self._pending = ""
            return text[:cut]
        hold = self._held_suffix(text)
        self._pending = text[len(text) - hold:] if hold else ""
        return text[:len(text) - hold]

    def flush(self) -> str:
        """At the end of generation: release any held text (it never became a stop)."""
        out, self._pending = ("" if self.stopped else self._pending), ""
        return out

    def _held_suffix(self, text: str) -> int:
        """Length of the longest suffix of text that is a proper prefix of a stop string."""
        best = 0
        for s in self.stops:
            for n in range(min(len(s) - 1, len(text)), best, -1):
                if text.endswith(s[:n]):
                    best = n
                    break
        return best
