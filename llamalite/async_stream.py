"""The async bridge: a request's chunks, produced on the engine thread, read by asyncio code.

`Engine.stream(...)` returns an `AsyncStream`; `LLM.astream` and the server's routes
iterate it. Cancelling the consuming task, or `aclose()`, cancels the request.
"""
from __future__ import annotations

import asyncio
import threading
import weakref
from typing import TYPE_CHECKING, Any, Sequence

from .outputs import Completion, CompletionChunk, join_chunks

if TYPE_CHECKING:
    from .engine import Engine

__all__ = ["AsyncStream"]


class _LoopInbox:
    """Chunks from the engine thread to one event loop, one wakeup per batch.

    A step emits a chunk for every running sequence; waking the loop once per
    chunk (call_soon_threadsafe each) costs a self-pipe write, a loop iteration
    and a GIL hand-over per token, CPU taken from the forward pass on a small
    machine. Here the first chunk of a batch schedules one flush and the rest
    join it; each queue still gets its chunks in order."""

    _by_loop: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _LoopInbox]" = \
        weakref.WeakKeyDictionary()
    _registry_lock = threading.Lock()

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop_ref = weakref.ref(loop)   # not strong: the registry's key must be able to die
        self._lock = threading.Lock()
        self._pending: list[tuple[asyncio.Queue, CompletionChunk]] = []

    @classmethod
    def of(cls, loop: asyncio.AbstractEventLoop) -> "_LoopInbox":
        with cls._registry_lock:
            inbox = cls._by_loop.get(loop)
            if inbox is None:
                inbox = cls._by_loop[loop] = cls(loop)
            return inbox

    def put(self, q: asyncio.Queue, chunk: CompletionChunk) -> None:
        with self._lock:
            first = not self._pending
            self._pending.append((q, chunk))
        if first:
            loop = self._loop_ref()
            try:
                if loop is None:
                    raise RuntimeError("the event loop is gone")
                loop.call_soon_threadsafe(self._flush)
            except RuntimeError:   # the loop is closed: nobody will read these
                with self._lock:
                    self._pending.clear()
                raise

    def _flush(self) -> None:
        with self._lock:
            items, self._pending = self._pending, []
        for q, chunk in items:
            q.put_nowait(chunk)


class AsyncStream:
    """Async iterator over one request's chunks (see Engine.stream)."""

    def __init__(self, engine: "Engine", prompt_ids: Sequence[int], params: Any, *,
                 mask: Any = None) -> None:
        self._engine = engine
        self._inbox = _LoopInbox.of(asyncio.get_running_loop())
        self._queue: asyncio.Queue[CompletionChunk] = asyncio.Queue()
        self._finished = False
        self.request_id = engine.submit(prompt_ids, params, self._deliver, mask=mask)

    def _deliver(self, chunk: CompletionChunk) -> None:
        self._inbox.put(self._queue, chunk)

    def __aiter__(self) -> "AsyncStream":
        return self

    async def __anext__(self) -> CompletionChunk:
        if self._finished:
            raise StopAsyncIteration
        try:
            chunk = await self._queue.get()
        except BaseException:
            self.cancel()
            raise
        if chunk.finish_reason is not None:
            self._finished = True
        return chunk

    def cancel(self) -> None:
        """Cancel the request unless it already ended."""
        if not self._finished:
            self._finished = True
            self._engine.cancel(self.request_id)

    async def aclose(self) -> None:
        self.cancel()

    async def collect(self) -> Completion:
        """Wait for the whole generation."""
        chunks = [c async for c in self]
        return join_chunks(chunks)
