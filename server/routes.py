"""HTTP routes: OpenAI-compatible completions and chat, models, tokenize, health, metrics."""
from __future__ import annotations

import asyncio
import hmac
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, AsyncIterator, Awaitable, Callable

from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from llamalite.async_stream import AsyncStream
from llamalite.errors import (EngineError, EngineStopped, GrammarError, QueueFull,
                              RequestRejected, TemplateError)
from llamalite.openai_format import OpenAIShape
from llamalite.outputs import join_chunks

from .backend import Backend
from .errors import APIError, bad_request
from .metrics import render_metrics
from .schemas import (Common, parse_chat, parse_completion, parse_detokenize, parse_json,
                      parse_tokenize, read_body)
from .settings import Settings
from .sse import SSEResponse, sse_event, wait_for_disconnect
from .workers import CPUWorkers


@dataclass
class ServerState:
    """Shared by every route: settings, the backend once loaded, the CPU workers, HTTP
    counters (kept by guard.Guard and the connection protocol through count_response)."""
    settings: Settings
    backend: Backend | None = None
    load_error: str | None = None
    workers: CPUWorkers | None = None
    requests_total: int = 0
    errors_total: int = 0
    refused_early: int = 0                  # 429s of the early queue check (not the engine's)
    responses: Counter = field(default_factory=Counter)   # status -> answers

    def count_response(self, status: int) -> None:
        self.responses[status] += 1
        if status >= 400:
            self.errors_total += 1


Handler = Callable[[Request, ServerState], Awaitable[Response]]


def _check_auth(request: Request, settings: Settings) -> None:
    if not settings.api_key:
        return
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(),
                                                             settings.api_key.encode()):
        raise APIError(401, "missing or invalid API key: send 'Authorization: Bearer <key>'",
                       code="invalid_api_key")


def endpoint(fn: Handler, *, auth: bool = True, needs_model: bool = True):
    """Wrap a handler with auth, the loading check and APIError -> JSON error response."""
    async def handler(request: Request) -> Response:
        state: ServerState = request.app.state.llamalite
        try:
            if auth:
                _check_auth(request, state.settings)
            if needs_model and state.backend is None:
                msg = state.load_error or "the model is still loading; retry shortly"
                raise APIError(503, msg, code="model_loading",
                               headers={"Retry-After": str(state.settings.retry_after_s)})
            return await fn(request, state)
        except APIError as e:
            return e.response()
    return handler


# --- generation -------------------------------------------------------------------------

def _start(b: Backend, state: ServerState, prompt: list[int], params: Any,
           prompt_param: str, mask: Any = None) -> AsyncStream:
    try:
        return b.engine.stream(prompt, params, mask=mask)
    except QueueFull as e:
        raise APIError(429, str(e), code="queue_full",
                       headers={"Retry-After": str(state.settings.retry_after_s)})
    except RequestRejected as e:
        param = prompt_param if e.param in ("messages", "prompt") else e.param
        raise APIError(400, str(e), param=param, code=e.code)
    except EngineStopped as e:
        raise APIError(503, str(e), code="engine_stopped")


async def _stream_events(shape: OpenAIShape, stream: AsyncStream,
                         include_usage: bool) -> AsyncIterator[bytes]:
    if shape.kind == "chat":
        yield sse_event(shape.chunk("", role=True))
    usage = None
    async for ch in stream:
        if ch.finish_reason == "error":
            err = APIError(500, ch.error or "generation failed", code="generation_failed")
            yield sse_event(err.body())
            break
        for event in shape.events(ch):
            yield sse_event(event)
        if ch.finish_reason is not None:
            usage = ch.usage
    if include_usage:
        yield sse_event(shape.usage_chunk(usage))
    yield sse_event("[DONE]")


async def _generate(request: Request, state: ServerState, kind: str, prompt: list[int],
                    params: Any, common: Common, tool_plan: Any = None) -> Response:
    b = state.backend
    assert b is not None
    shape = OpenAIShape(kind, b.name, b.tokenizer.token_bytes)
    mask = await _compile_constraint(b, state, params)
    stream = _start(b, state, prompt, params, "messages" if kind == "chat" else "prompt", mask)
    calls = tool_plan if tool_plan is not None and tool_plan.parses_calls else None
    if common.stream:
        events = (_tool_stream_events(shape, stream, common.include_usage, calls) if calls
                  else _stream_events(shape, stream, common.include_usage))
        return SSEResponse(events, stream.cancel)
    collect = asyncio.ensure_future(stream.collect())
    gone = asyncio.ensure_future(wait_for_disconnect(request.receive))
    try:
        await asyncio.wait({collect, gone}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        if not collect.done():
            collect.cancel()
            stream.cancel()
        gone.cancel()
    if not collect.done() or collect.cancelled():
        return Response(status_code=499)        # the client is gone; nobody reads this
    try:
        completion = collect.result()
    except EngineError as e:
        raise APIError(500, str(e), code="generation_failed")
    if calls:
        content, found = calls.parse(completion.text)
        return JSONResponse(shape.whole(completion, found, content))
    return JSONResponse(shape.whole(completion))


async def _compile_constraint(b: Backend, state: ServerState, params: Any) -> Any:
    """The request's token mask, compiled on a worker (a large schema, or the first one
    on a model, costs the event loop too much); None when it has no constraint."""
    if getattr(params, "json_schema", None) is None and getattr(params, "grammar", None) is None:
        return None
    try:
        return await state.workers.run(b.engine.grammars.compile, params)
    except GrammarError as e:
        raise bad_request(str(e), e.param, "invalid_grammar")


async def _tool_stream_events(shape: OpenAIShape, stream: AsyncStream, include_usage: bool,
                              plan: Any) -> AsyncIterator[bytes]:
    """A chat stream whose reply may hold tool calls: held back until it ends, then sent
    as a content delta or one tool_calls delta per call."""
    yield sse_event(shape.chunk("", role=True))
    chunks = []
    async for ch in stream:
        if ch.finish_reason == "error":
            err = APIError(500, ch.error or "generation failed", code="generation_failed")
            yield sse_event(err.body())
            yield sse_event("[DONE]")
            return
        chunks.append(ch)
    out = join_chunks(chunks)
    content, found = plan.parse(out.text)
    for event in shape.tool_reply_events(out, found, content):
        yield sse_event(event)
    if include_usage:
        yield sse_event(shape.usage_chunk(out.usage))
    yield sse_event("[DONE]")


def _params(b: Backend, common: Common, logprobs: int | None) -> Any:
    sampling = dict(common.sampling)            # max_tokens None: the engine fills the context
    try:
        return b.make_params(**sampling, logprobs=logprobs)
    except (ValueError, TypeError) as e:
        raise bad_request(str(e))


def _refuse_if_queue_full(state: ServerState) -> None:
    """Answer 429 before any parsing or tokenizing when the queue is already full."""
    if state.backend.engine.queue_full:
        state.refused_early += 1
        raise APIError(429, f"too many requests are waiting (max_queue="
                            f"{state.backend.engine.max_queue}); retry later", code="queue_full",
                       headers={"Retry-After": str(state.settings.retry_after_s)})


def _check_model(b: Backend, common: Common) -> None:
    if not b.knows_model(common.model):
        raise APIError(404, f"model '{common.model}' is not served here; this server serves "
                            f"'{b.name}' (see GET /v1/models)", param="model",
                       code="model_not_found")


async def _read_body(request: Request, state: ServerState) -> bytes:
    """The raw body, read on the loop (size and time limits); _parse decodes it."""
    return await read_body(request, state.settings.body_bytes_limit, state.settings.body_timeout_s)


async def _parse(state: ServerState, parser: Callable[..., Any], raw: bytes, *args: Any) -> Any:
    """JSON-decode and validate a body on a worker thread (big bodies cost CPU)."""
    def work() -> Any:
        return parser(parse_json(raw), *args)
    return await state.workers.run(work)


async def _generation_request(request: Request, state: ServerState,
                              parser: Callable[..., Any]) -> tuple[Backend, Any]:
    """The backend and the validated body of a chat or text completion: 429 before any
    parsing when the queue is full, 404 for a model not served here."""
    b = state.backend
    raw = await _read_body(request, state)
    _refuse_if_queue_full(state)
    req = await _parse(state, parser, raw, b.n_vocab, state.settings.prompt_chars_limit)
    _check_model(b, req.common)
    return b, req


async def chat_completions(request: Request, state: ServerState) -> Response:
    b, req = await _generation_request(request, state, parse_chat)

    def prepare() -> Any:
        return b.llm.prepare_chat(req.messages, tools=req.tools, tool_choice=req.tool_choice,
                                  parallel_tool_calls=req.parallel_tool_calls,
                                  response_format=req.response_format,
                                  sampling=req.common.sampling)
    try:
        prepared = await state.workers.run(prepare)
    except GrammarError as e:    # tools, tool_choice or response_format
        raise bad_request(str(e), e.param, "invalid_value")
    except TemplateError as e:   # the messages do not fit the model's template
        raise bad_request(f"cannot apply the chat template: {e}", "messages")
    req.common.sampling = prepared.sampling
    params = _params(b, req.common, req.logprobs)
    return await _generate(request, state, "chat", prepared.prompt_ids, params, req.common,
                           tool_plan=prepared.plan)


async def completions(request: Request, state: ServerState) -> Response:
    b, req = await _generation_request(request, state, parse_completion)
    prompt = req.prompt
    if isinstance(prompt, str):
        prompt = await state.workers.run(b.text_prompt, prompt)
    params = _params(b, req.common, req.logprobs)
    return await _generate(request, state, "text", prompt, params, req.common)


# --- the rest ---------------------------------------------------------------------------

async def models(request: Request, state: ServerState) -> Response:
    b = state.backend
    return JSONResponse({"object": "list", "data": [{
        "id": b.name, "object": "model", "created": 0, "owned_by": "llamalite", "meta": b.info}]})


async def tokenize(request: Request, state: ServerState) -> Response:
    b = state.backend
    content, add_special, with_pieces = await _parse(
        state, parse_tokenize, await _read_body(request, state), state.settings.prompt_chars_limit)

    def work() -> Response:                 # tokens and their JSON on a worker thread
        ids = list(b.tokenizer.tokenize(content, add_special=add_special, parse_special=True))
        if with_pieces:
            return JSONResponse({"tokens": [{"id": t, "piece": b.piece(t)} for t in ids]})
        return JSONResponse({"tokens": ids})
    return await state.workers.run(work)


async def detokenize(request: Request, state: ServerState) -> Response:
    b = state.backend
    ids = await _parse(state, parse_detokenize, await _read_body(request, state), b.n_vocab)
    return await state.workers.run(lambda: JSONResponse({"content": b.tokenizer.detokenize(ids)}))


async def health(request: Request, state: ServerState) -> Response:
    if state.backend is None:
        status = "error" if state.load_error else "loading"
        return JSONResponse({"status": status, "error": state.load_error}, status_code=503)
    return JSONResponse({"status": "ok"})


async def metrics(request: Request, state: ServerState) -> Response:
    text = render_metrics(state.backend.engine.stats(), state.requests_total, state.errors_total,
                          state.refused_early, dict(state.responses))
    return PlainTextResponse(text, media_type="text/plain; version=0.0.4; charset=utf-8")


def routes() -> list[Route]:
    return [
        Route("/v1/chat/completions", endpoint(chat_completions), methods=["POST"]),
        Route("/v1/completions", endpoint(completions), methods=["POST"]),
        Route("/v1/models", endpoint(models), methods=["GET"]),
        Route("/tokenize", endpoint(tokenize), methods=["POST"]),
        Route("/detokenize", endpoint(detokenize), methods=["POST"]),
        Route("/health", endpoint(health, auth=False, needs_model=False), methods=["GET"]),
        Route("/metrics", endpoint(metrics), methods=["GET"]),
    ]
