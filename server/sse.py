"""Server-sent events that notice a client leaving at once, even while nothing is sent
(a long prefill), and cancel the generation."""
from __future__ import annotations

import asyncio
import json
from typing import AsyncIterator, Callable

from starlette.types import Receive, Scope, Send


def sse_event(payload: dict | str) -> bytes:
    """One `data: ...` event (a dict is sent as compact JSON)."""
    data = payload if isinstance(payload, str) else json.dumps(payload, ensure_ascii=False,
                                                               separators=(",", ":"))
    return f"data: {data}\n\n".encode("utf-8")


async def wait_for_disconnect(receive: Receive) -> None:
    """Return when the client has gone (the body must already be read)."""
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return


class SSEResponse:
    """An ASGI response streaming events from an async iterator of bytes.

    on_disconnect runs if the client goes away before the stream ends.
    """

    def __init__(self, events: AsyncIterator[bytes], on_disconnect: Callable[[], None]) -> None:
        self.events = events
        self.on_disconnect = on_disconnect

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": [
            (b"content-type", b"text/event-stream; charset=utf-8"),
            (b"cache-control", b"no-cache"),
            (b"x-accel-buffering", b"no"),
        ]})
        sender = asyncio.ensure_future(self._send_all(send))
        watcher = asyncio.ensure_future(wait_for_disconnect(receive))
        done, pending = await asyncio.wait({sender, watcher}, return_when=asyncio.FIRST_COMPLETED)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        gone = watcher in done or (sender.exception() is not None)
        if gone:
            self.on_disconnect()
        aclose = getattr(self.events, "aclose", None)
        if aclose is not None:
            await aclose()

    async def _send_all(self, send: Send) -> None:
        async for event in self.events:
            await send({"type": "http.response.body", "body": event, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})
