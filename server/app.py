"""The Starlette application: routes behind the request guard (guard.py), JSON errors
everywhere, model loading in the background (GET /health answers 503 until it is done).
Serve it with uvicorn and http=protocol.http_protocol(...) (cli/serve.py does)."""
from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Callable

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response

from .backend import Backend, load_backend
from .errors import APIError
from .guard import Guard
from .protocol import GuardedH11Protocol, http_protocol
from .routes import ServerState, routes
from .settings import Settings
from .workers import CPUWorkers

log = logging.getLogger("llamalite.server")


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    return APIError(exc.status_code, f"{request.method} {request.url.path}: {exc.detail}",
                    code="not_found" if exc.status_code == 404 else None).response()


async def _server_error(request: Request, exc: Exception) -> Response:
    log.exception("unhandled error on %s", request.url.path)
    return APIError(500, f"internal error: {type(exc).__name__}: {exc}",
                    code="internal_error").response()


def create_app(settings: Settings,
               backend_factory: Callable[[Settings], Backend] | None = None) -> Starlette:
    """Build the app; the backend (model + engine) loads in a thread at startup.

    backend_factory: defaults to load_backend (the GGUF named by settings.model);
    tests pass one that builds a backend over fakes.
    """
    factory = backend_factory or load_backend
    state = ServerState(settings=settings, workers=CPUWorkers(settings.cpu_workers))

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette):
        async def load() -> None:
            try:
                state.backend = await asyncio.to_thread(factory, settings)
            except Exception as e:
                state.load_error = f"the model failed to load: {e}"
                log.error(state.load_error)
        task = asyncio.ensure_future(load())
        try:
            yield
        finally:
            task.cancel()
            state.workers.close()
            if state.backend is not None:
                state.backend.close()

    app = Starlette(routes=routes(), lifespan=lifespan,
                    middleware=[Middleware(Guard, state=state)],
                    exception_handlers={HTTPException: _http_error, Exception: _server_error})
    app.state.llamalite = state
    return app


def protocol_for(app: Starlette) -> type[GuardedH11Protocol]:
    """The uvicorn protocol class (`http=`) for an app made by create_app: its timeouts,
    and its answers counted with the app's."""
    state: ServerState = app.state.llamalite
    return http_protocol(state.settings, state.count_response)
