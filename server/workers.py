"""CPU work of a request (JSON parsing, validation, chat-template rendering, tokenizing,
detokenizing) on a few worker threads, so the event loop keeps answering every other
connection (/health included) while one big request is being prepared."""
from __future__ import annotations

import asyncio
import functools
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, TypeVar

T = TypeVar("T")


class CPUWorkers:
    """A fixed number of threads; requests beyond that wait in line (a flood of big
    requests uses at most n threads' worth of CPU, never one thread per request).

    A request whose client leaves while it waits in line is dropped from the line.
    """

    def __init__(self, n: int) -> None:
        if n < 1:
            raise ValueError(f"cpu_workers must be at least 1, got {n}")
        self._pool = ThreadPoolExecutor(max_workers=n, thread_name_prefix="llamalite-cpu")

    async def run(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, functools.partial(fn, *args, **kwargs))

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
