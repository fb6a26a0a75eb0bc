"""uvicorn's h11 connection with what a server facing hostile clients needs:

* a header timeout: a connection that has not sent a whole request head within
  header_timeout_s of opening (or of the first byte of a later request) gets a 408 and is
  closed, so slowloris connections do not pile up;
* a body timeout backstop: the routes answer 408 themselves when a body is late
  (schemas.read_body); this closes the connection when a body is still trickling in
  after a route answered without reading it (or stopped reading it);
* JSON errors for requests h11 cannot parse (a NUL in a header, `Content-Length: abc`),
  where uvicorn answers text/plain.

Every answer given here is counted like the routes' answers (ServerState.count_response).
"""
from __future__ import annotations

import asyncio
import json
import logging
from http import HTTPStatus
from typing import Any, Callable

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from .errors import APIError
from .settings import Settings

log = logging.getLogger("llamalite.server")

BODY_GRACE_S = 1.0          # the routes' own 408 comes first; this only closes stragglers


class _Connection(h11.Connection):
    """h11's server side, telling its protocol when a head or a body is complete and
    keeping the parse error (uvicorn drops it) for the 400 message."""

    def __init__(self, protocol: "GuardedH11Protocol", max_event_size: int) -> None:
        super().__init__(h11.SERVER, max_incomplete_event_size=max_event_size)
        self.protocol = protocol
        self.error: h11.RemoteProtocolError | None = None

    def next_event(self) -> Any:
        try:
            event = super().next_event()
        except h11.RemoteProtocolError as e:
            self.error = e
            raise
        if isinstance(event, h11.Request):
            self.protocol.head_received()
        elif isinstance(event, h11.EndOfMessage):
            self.protocol.body_received()
        return event


def json_error_bytes(status: int, message: str, code: str) -> bytes:
    """A whole HTTP/1.1 response with the routes' JSON error body, closing the connection."""
    body = json.dumps(APIError(status, message, code=code).body()).encode()
    head = (f"HTTP/1.1 {status} {HTTPStatus(status).phrase}\r\n"
            "content-type: application/json\r\n"
            f"content-length: {len(body)}\r\nconnection: close\r\n\r\n")
    return head.encode("latin-1") + body


class GuardedH11Protocol(H11Protocol):
    """H11Protocol plus the timeouts and JSON errors above (http_protocol sets the
    class attributes from the settings)."""

    header_timeout_s: float = 10.0
    body_timeout_s: float = 60.0
    count_response: Callable[[int], None] = staticmethod(lambda status: None)

    def __init__(self, config: Any, *args: Any, **kwargs: Any) -> None:
        super().__init__(config, *args, **kwargs)
        size = getattr(config, "h11_max_incomplete_event_size", None) or 16 * 1024
        self.conn = _Connection(self, size)
        self._head_timer: asyncio.TimerHandle | None = None
        self._body_timer: asyncio.TimerHandle | None = None

    # --- connection events -------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_head_timer()

    def data_received(self, data: bytes) -> None:
        if self._head_timer is None and (self.cycle is None or self.cycle.response_complete) \
                and self.conn.their_state in (h11.IDLE, h11.DONE):
            self._arm_head_timer()          # the first byte of the next request
        super().data_received(data)

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_timers()
        super().connection_lost(exc)

    def head_received(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None
        if self._body_timer is not None:
            self._body_timer.cancel()
        self._body_timer = self.loop.call_later(self.body_timeout_s + BODY_GRACE_S,
                                                self._body_timeout)

    def body_received(self) -> None:
        if self._body_timer is not None:
            self._body_timer.cancel()
            self._body_timer = None

    # --- answers -----------------------------------------------------------------------

    def send_400_response(self, msg: str) -> None:
        """h11 could not parse the request: a JSON 400 (431 for an oversized head) naming
        what h11 found, then close (uvicorn's own answer is text/plain)."""
        self._cancel_timers()
        err = self.conn.error
        status = getattr(err, "error_status_hint", 400) if err is not None else 400
        detail = str(err)[:200] if err is not None and str(err) else msg
        self._answer_and_close(status, f"invalid HTTP request: {detail}", "invalid_http_request")

    def _head_timeout(self) -> None:
        self._head_timer = None
        if self.transport.is_closing() or not (self.cycle is None or self.cycle.response_complete):
            return
        self._answer_and_close(408, f"the request head did not arrive within "
                                    f"{self.header_timeout_s:g} s (--header-timeout)",
                               "request_timeout")

    def _body_timeout(self) -> None:
        self._body_timer = None
        if self.transport.is_closing():
            return
        if self.cycle is not None and not self.cycle.response_started:
            self.cycle.disconnected = True          # the route stops waiting for the body
            self.cycle.message_event.set()
            self._answer_and_close(408, f"the request body did not arrive within "
                                        f"{self.body_timeout_s:g} s (--body-timeout)",
                                   "request_timeout")
        else:
            self.transport.close()                  # answered already; drop the rest

    def _answer_and_close(self, status: int, message: str, code: str) -> None:
        log.info("%s: %d %s", self.client and "%s:%d" % self.client, status, message)
        self.transport.write(json_error_bytes(status, message, code))
        self.transport.close()
        self.count_response(status)

    # --- timers ------------------------------------------------------------------------

    def _arm_head_timer(self) -> None:
        self._head_timer = self.loop.call_later(self.header_timeout_s, self._head_timeout)

    def _cancel_timers(self) -> None:
        for timer in (self._head_timer, self._body_timer):
            if timer is not None:
                timer.cancel()
        self._head_timer = self._body_timer = None


def http_protocol(settings: Settings,
                  count_response: Callable[[int], None]) -> type[GuardedH11Protocol]:
    """The protocol class to give uvicorn (`http=`) for these settings."""
    return type("LlamaliteH11Protocol", (GuardedH11Protocol,), {
        "header_timeout_s": settings.header_timeout_s,
        "body_timeout_s": settings.body_timeout_s,
        "count_response": staticmethod(count_response)})
