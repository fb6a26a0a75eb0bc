"""What every request passes before its route: the Host check (against DNS rebinding),
JSON-only POSTs (a web page cannot send one without a CORS preflight), CORS for the origins
named by --cors-origin, and the count of every answer by status for /metrics."""
from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.datastructures import Headers
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .errors import APIError

if TYPE_CHECKING:
    from .routes import ServerState

LOCAL_NAMES = frozenset({"localhost", "127.0.0.1", "[::1]"})
CORS_METHODS = "GET, POST, OPTIONS"
CORS_HEADERS = "authorization, content-type"


def host_name(host: str) -> str:
    """The name part of a Host header value ('[::1]:8080' -> '[::1]', 'a.b.:80' -> 'a.b')."""
    host = host.strip().lower()
    if host.startswith("["):
        end = host.find("]")
        return host[:end + 1] if end > 0 else host
    if host.count(":") == 1:
        host = host.split(":", 1)[0]
    elif ":" in host:                    # a bare IPv6 address
        host = f"[{host}]"
    return host.rstrip(".")


def _bracketed(address: str) -> str:
    return f"[{address}]" if ":" in address else address


class Guard:
    """ASGI middleware in front of the routes (see the module docstring)."""

    def __init__(self, app: ASGIApp, state: "ServerState") -> None:
        self.app = app
        self.state = state
        s = state.settings
        self.any_host = "*" in s.allowed_hosts
        self.hosts = LOCAL_NAMES | {host_name(h) for h in s.allowed_hosts} | {host_name(s.host)}
        self.any_origin = "*" in s.cors_origins
        self.origins = frozenset(s.cors_origins)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        state = self.state
        headers = Headers(scope=scope)
        origin = headers.get("origin")
        cors = None
        if origin is not None and (self.any_origin or origin in self.origins):
            cors = "*" if self.any_origin else origin
        started = False

        async def counted(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                state.count_response(message["status"])
                if cors is not None:
                    message = {**message, "headers": [
                        *message.get("headers", []),
                        (b"access-control-allow-origin", cors.encode("latin-1")),
                        (b"vary", b"Origin")]}
            await send(message)

        state.requests_total += 1
        try:
            answer = self._check(scope, headers, origin, cors)
            await (answer or self.app)(scope, receive, counted)
        except BaseException:
            if not started:
                state.count_response(500)        # ServerErrorMiddleware answers it
            raise

    def _check(self, scope: Scope, headers: Headers, origin: str | None,
               cors: str | None) -> Response | None:
        """An answer that ends the request here, or None to go on to the routes."""
        host = headers.get("host")
        if host is not None and not self.any_host and not self._known_host(host, scope):
            return APIError(400, f"Host '{host[:100]}' is not served here: use localhost or the "
                                 "listening address, or start the server with --allowed-hosts "
                                 "NAME", param="Host", code="invalid_host").response()
        method = scope["method"]
        if method == "OPTIONS" and origin is not None and \
                "access-control-request-method" in headers:
            if cors is None:
                return APIError(403, f"origin '{origin[:100]}' is not allowed: start the server "
                                     "with --cors-origin ORIGIN", param="Origin",
                                code="origin_not_allowed").response()
            return Response(status_code=204, headers={
                "Access-Control-Allow-Methods": CORS_METHODS,
                "Access-Control-Allow-Headers": CORS_HEADERS,
                "Access-Control-Max-Age": "600"})
        if method == "POST":
            media, _, params = headers.get("content-type", "").partition(";")
            charset = params.strip().lower().replace('"', "")
            if media.strip().lower() != "application/json" or \
                    charset not in ("", "charset=utf-8"):
                got = headers.get("content-type", "none")[:100]
                return APIError(415, f"request bodies must be JSON: send 'Content-Type: "
                                     f"application/json' (got '{got}')", param="Content-Type",
                                code="unsupported_media_type").response()
        return None

    def _known_host(self, host: str, scope: Scope) -> bool:
        name = host_name(host)
        if name in self.hosts:
            return True
        server = scope.get("server")     # the address the client connected to, as a literal
        return bool(server) and name == _bracketed(str(server[0]).lower())
