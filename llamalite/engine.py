"""The serving engine: continuous batching over a paged KV cache with prefix caching.

One background thread runs steps. Each step carries every running sequence's next token
plus prefill chunks up to a token budget (chunked prefill), and makes one forward call
(the C++ forward releases the GIL). New requests join between steps; finished and
cancelled ones leave and free their blocks at once. Output goes to each request through a
callback (thread-safe queues for sync callers, the event loop for asyncio callers).

    engine = Engine(model, tokenizer, n_parallel=4, ctx_size=4096)
    for chunk in engine.iter_stream(prompt_ids, params): print(chunk.text, end="")
    async for chunk in engine.stream(prompt_ids, params): ...
"""
from __future__ import annotations

import asyncio
import itertools
import queue
import threading
import time
import weakref
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Optional, Sequence

import numpy as np

from .engine_stats import EngineStats, StatsRecorder
from .errors import LlamaliteError
from .kv_blocks import BlockManager, OutOfBlocks, SeqBlocks
from .stopping import StopStrings


# --- errors ---------------------------------------------------------------------------

class EngineError(LlamaliteError):
    """Base of the errors the engine raises to callers."""


class RequestRejected(EngineError, ValueError):
    """A request that can never be served (bad ids, too long): refused before queueing."""

    def __init__(self, message: str, *, param: str | None = None, code: str | None = None,
                 **details: Any) -> None:
        super().__init__(message)
        self.param = param
        self.code = code
        self.details = details


class QueueFull(EngineError):
    """Too many requests are waiting; retry later (the server answers 429)."""

    def __init__(self, message: str, retry_after: float = 1.0) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class EngineStopped(EngineError):
    """The engine was shut down."""


# --- results --------------------------------------------------------------------------

@dataclass
class TokenLogprob:
    """One generated token with its log-probability and the top alternatives."""
    token: int
    logprob: float
    top_logprobs: list[tuple[int, float]] = field(default_factory=list)


@dataclass
class Usage:
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@dataclass
class StreamChunk:
    """What one request gets after a step: new text, the tokens behind it, maybe the end.

    finish_reason: None while running; "stop", "length", "cancelled" or "error" at the end
    (the final chunk also carries usage, and error carries the message for "error").
    """
    request_id: str
    text: str
    token_ids: list[int]                # output tokens (an ending EOG/stop token id is left out)
    logprobs: list[TokenLogprob] | None = None
    finish_reason: str | None = None
    usage: Usage | None = None
    error: str | None = None


@dataclass
class Completion:
    """A whole generation (the chunks of one request joined)."""
    request_id: str
    text: str
    token_ids: list[int]
    finish_reason: str
    usage: Usage
    logprobs: list[TokenLogprob] | None = None


def join_chunks(chunks: Sequence[StreamChunk]) -> Completion:
    """Fold a request's stream into one Completion (raises EngineError on an error end)."""
    last = chunks[-1]
    if last.finish_reason == "error":
        raise EngineError(last.error or "generation failed")
    lps = [lp for c in chunks for lp in (c.logprobs or [])]
    return Completion(request_id=last.request_id, text="".join(c.text for c in chunks),
                      token_ids=[t for c in chunks for t in c.token_ids],
                      finish_reason=last.finish_reason or "stop",
                      usage=last.usage or Usage(0, 0),
                      logprobs=lps if any(c.logprobs is not None for c in chunks) else None)


# --- per-request state ----------------------------------------------------------------

@dataclass
class _Request:
    id: str
    tokens: list[int]                  # prompt + generated so far
    n_prompt: int
    max_tokens: int
    params: Any
    sampler: Any
    decoder: Any
    stop: StopStrings
    on_event: Callable[[StreamChunk], None]
    submitted_at: float
    n_generated: int = 0
    n_cached: int = 0                  # prompt tokens served from the prefix cache (first admission)
    n_computed: int = 0                # tokens whose K/V is in the cache
    blocks: SeqBlocks | None = None
    slot: int = -1
    admitted_once: bool = False
    last_token_at: float = 0.0
    done: bool = False

    @property
    def n_pending(self) -> int:
        return len(self.tokens) - self.n_computed


_ids = itertools.count(1)


def _default_sampler_factory(params: Any, n_vocab: int) -> Any:
    from .sampling import Sampler
    return Sampler(params, n_vocab)


def _default_decoder_factory(tokenizer: Any) -> Any:
    from .tokenizer import StreamDecoder
    return StreamDecoder(tokenizer)


class Engine:
    """Continuous-batching generation over one model, shared by many requests.

    model:       has .n_vocab, .new_kv_cache(n_blocks, block_size) and .forward(...)
    tokenizer:   has .eog_ids and .n_vocab (text is produced by the decoder factory)
    n_parallel:  sequences running at once (rows of the block table)
    ctx_size:    total tokens of KV cache in the pool (shared by all sequences)
    n_ctx:       most tokens one sequence may hold (default: ctx_size, capped by the model)
    max_batch_tokens: token budget of one step (decode tokens first, then prefill chunks)
    max_queue:   requests allowed to wait; more are refused with QueueFull
    """

    def __init__(self, model: Any, tokenizer: Any, *, n_parallel: int = 4,
                 ctx_size: int = 4096, block_size: int = 16, max_batch_tokens: int = 512,
                 max_queue: int = 64, n_ctx: int | None = None,
                 sampler_factory: Callable[[Any, int], Any] | None = None,
                 decoder_factory: Callable[[Any], Any] | None = None,
                 start: bool = True) -> None:
        if n_parallel < 1:
            raise ValueError(f"n_parallel must be at least 1, got {n_parallel}")
        if max_batch_tokens < n_parallel:
            raise ValueError(f"max_batch_tokens ({max_batch_tokens}) must be at least "
                             f"n_parallel ({n_parallel}) so every decode fits in a step")
        if ctx_size < block_size:
            raise ValueError(f"ctx_size ({ctx_size}) must hold at least one block of {block_size}")
        if max_queue < 0:
            raise ValueError(f"max_queue must be >= 0, got {max_queue}")
        self.model = model
        self.tokenizer = tokenizer
        self.n_parallel = n_parallel
        self.block_size = block_size
        self.max_batch_tokens = max_batch_tokens
        self.max_queue = max_queue
        self.n_vocab = int(model.n_vocab)
        n_blocks = ctx_size // block_size
        self.ctx_size = n_blocks * block_size
        model_ctx = (getattr(model, "n_ctx_train", None)
                     or getattr(getattr(model, "hparams", None), "n_ctx_train", None)
                     or self.ctx_size)
        self.n_ctx = min(n_ctx or self.ctx_size, self.ctx_size, int(model_ctx))
        self.blocks = BlockManager(n_blocks, block_size)
        self.kv = model.new_kv_cache(n_blocks, block_size)
        self.max_blocks_per_seq = self.blocks.blocks_for(self.n_ctx)
        self.eog_ids = frozenset(int(t) for t in getattr(tokenizer, "eog_ids", ()) or ())
        self._sampler_factory = sampler_factory or _default_sampler_factory
        self._decoder_factory = decoder_factory or _default_decoder_factory

        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._waiting: deque[_Request] = deque()      # guarded by _lock
        self._cancelled: set[str] = set()             # guarded by _lock
        self._running: list[_Request] = []            # engine thread only
        self._free_slots = list(range(n_parallel - 1, -1, -1))
        self._stop = False
        self.stats_recorder = StatsRecorder()
        self.stats_recorder.set(n_parallel=n_parallel, kv_blocks_total=n_blocks)
        self._thread: threading.Thread | None = None
        if start:
            self.start()

    # --- lifecycle ----------------------------------------------------------------------

    def start(self) -> None:
        """Start the step thread (done by the constructor unless start=False)."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="llamalite-engine",
                                            daemon=True)
            self._thread.start()

    def shutdown(self, timeout: float = 10.0) -> None:
        """Stop the step thread; every unfinished request ends with finish_reason 'error'."""
        with self._lock:
            self._stop = True
            self._wake.notify_all()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def __enter__(self) -> "Engine":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.shutdown()

    # --- submitting -----------------------------------------------------------------------

    def check_prompt(self, prompt_ids: Sequence[int], max_tokens: int | None) -> int:
        """Validate a prompt and max_tokens; return the max_tokens to use.

        Raises RequestRejected for empty prompts, ids outside the vocabulary, a prompt that
        does not fit the context, or prompt + max_tokens that can never fit.
        """
        n = len(prompt_ids)
        if n == 0:
            raise RequestRejected("the prompt is empty: give at least one token",
                                  param="prompt", code="empty_prompt")
        bad = [t for t in prompt_ids if not (0 <= t < self.n_vocab)]
        if bad:
            raise RequestRejected(f"prompt token id {bad[0]} is out of range: ids must be in "
                                  f"[0, {self.n_vocab})", param="prompt", code="invalid_token_id")
        if n >= self.n_ctx:
            raise RequestRejected(
                f"the prompt has {n} tokens but the context holds {self.n_ctx} "
                f"(n_prompt_tokens={n}, n_ctx={self.n_ctx}); shorten it or raise --ctx-size",
                param="messages", code="context_length_exceeded",
                n_prompt_tokens=n, n_ctx=self.n_ctx)
        if max_tokens is None:
            return self.n_ctx - n
        if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1:
            raise RequestRejected(f"max_tokens must be a positive integer, got {max_tokens!r}",
                                  param="max_tokens", code="invalid_value")
        if n + max_tokens > self.n_ctx:
            raise RequestRejected(
                f"prompt ({n} tokens) + max_tokens ({max_tokens}) exceeds the context of "
                f"{self.n_ctx} tokens (n_prompt_tokens={n}, n_ctx={self.n_ctx}); lower max_tokens",
                param="max_tokens", code="context_length_exceeded",
                n_prompt_tokens=n, n_ctx=self.n_ctx)
        return max_tokens

    def submit(self, prompt_ids: Sequence[int], params: Any,
               on_event: Callable[[StreamChunk], None], *,
               request_id: str | None = None) -> str:
        """Queue a request; its chunks go to on_event (called on the engine thread).

        params: sampling parameters (max_tokens, stop, stop_token_ids, ignore_eos,
        logprobs and whatever the sampler reads). Returns the request id.
        Raises RequestRejected, QueueFull or EngineStopped without queueing.
        """
        prompt = [int(t) for t in prompt_ids]
        try:
            max_tokens = self.check_prompt(prompt, getattr(params, "max_tokens", None))
            if hasattr(params, "validate"):
                try:
                    params.validate(self.n_vocab)
                except ValueError as e:
                    raise RequestRejected(str(e), code="invalid_value") from e
        except RequestRejected:
            self.stats_recorder.add(requests_rejected=1)
            raise
        req = _Request(id=request_id or f"req-{next(_ids)}", tokens=prompt, n_prompt=len(prompt),
                       max_tokens=max_tokens, params=params,
                       sampler=self._sampler_factory(params, self.n_vocab),
                       decoder=self._decoder_factory(self.tokenizer),
                       stop=StopStrings(getattr(params, "stop", None) or []),
                       on_event=on_event, submitted_at=time.perf_counter())
        with self._lock:
            if self._stop:
                raise EngineStopped("the engine has been shut down")
            if len(self._waiting) >= self.max_queue + self._free_slot_hint():
                self.stats_recorder.add(requests_rejected=1)
                raise QueueFull(f"{len(self._waiting)} requests are already waiting "
                                f"(max_queue={self.max_queue}); retry later")
            self._waiting.append(req)
            self.stats_recorder.set(waiting=len(self._waiting))
            self._wake.notify_all()
        return req.id

    @property
    def queue_full(self) -> bool:
        """Whether submit would refuse with QueueFull right now (a cheap early check)."""
        with self._lock:
            return len(self._waiting) >= self.max_queue + self._free_slot_hint()

    def _free_slot_hint(self) -> int:
        # Requests about to take a free slot do not count against the queue.
        return len(self._free_slots)

    def cancel(self, request_id: str) -> None:
        """Stop a request (client gone); its slot and blocks are freed at the next step."""
        with self._lock:
            self._cancelled.add(request_id)
            self._wake.notify_all()

    # --- convenient front ends ------------------------------------------------------------

    def iter_stream(self, prompt_ids: Sequence[int], params: Any) -> Iterator[StreamChunk]:
        """Blocking iterator over one request's chunks; closing it early cancels the request."""
        q: queue.Queue[StreamChunk] = queue.Queue()
        rid = self.submit(prompt_ids, params, q.put)
        finished = False
        try:
            while True:
                chunk = q.get()
                if chunk.finish_reason is not None:
                    finished = True
                yield chunk
                if finished:
                    return
        finally:
            if not finished:
                self.cancel(rid)

    def generate(self, prompt_ids: Sequence[int], params: Any) -> Completion:
        """Run one request to the end (blocking) and return it whole."""
        return join_chunks(list(self.iter_stream(prompt_ids, params)))

    def generate_many(self, prompts: Sequence[Sequence[int]], params: Any) -> list[Completion]:
        """Run several requests together (they batch in the same steps); results in order."""
        queues: list[queue.Queue] = []
        ids: list[str] = []
        try:
            for p in prompts:
                q: queue.Queue[StreamChunk] = queue.Queue()
                while True:
                    try:
                        ids.append(self.submit(p, params, q.put))
                        break
                    except QueueFull:
                        time.sleep(0.01)
                queues.append(q)
            results = []
            for q in queues:
                chunks = [q.get()]
                while chunks[-1].finish_reason is None:
                    chunks.append(q.get())
                results.append(join_chunks(chunks))
            return results
        except BaseException:
            for rid in ids:
                self.cancel(rid)
            raise

    def stream(self, prompt_ids: Sequence[int], params: Any) -> "AsyncStream":
        """Submit now (errors raise here) and return an async iterator of chunks.

        Must be called from a running event loop. Cancelling the consuming task or calling
        `await stream.aclose()` cancels the request.
        """
        return AsyncStream(self, prompt_ids, params)

    def stats(self) -> EngineStats:
        """A snapshot of the counters (running, waiting, tokens, latencies, KV blocks)."""
        return self.stats_recorder.snapshot()

    # --- the step loop --------------------------------------------------------------------

    def _loop(self) -> None:
        while True:
            with self._lock:
                while (not self._stop and not self._waiting and not self._running
                       and not self._cancelled):
                    self._wake.wait()
                if self._stop:
                    break
                cancelled, self._cancelled = self._cancelled, set()
            self._apply_cancellations(cancelled)
            self._admit()
            if self._running:
                try:
                    self._step()
                except Exception as e:  # a failed forward ends the batch, not the server
                    for req in list(self._running):
                        self._finish(req, "error", error=f"{type(e).__name__}: {e}")
            else:
                # Waiting requests that cannot start yet: nothing runs, so wait for a change.
                with self._lock:
                    if self._waiting and not self._cancelled and not self._stop:
                        self._wake.wait(0.05)
        self._shutdown_requests()

    def _shutdown_requests(self) -> None:
        for req in list(self._running):
            self._finish(req, "error", error="the engine was shut down")
        with self._lock:
            waiting, self._waiting = list(self._waiting), deque()
        for req in waiting:
            self._emit(req, StreamChunk(req.id, "", [], finish_reason="error",
                                        usage=Usage(req.n_prompt, 0),
                                        error="the engine was shut down"))

    def _apply_cancellations(self, cancelled: set[str]) -> None:
        if not cancelled:
            return
        for req in list(self._running):
            if req.id in cancelled:
                self._finish(req, "cancelled")
        with self._lock:
            gone = [r for r in self._waiting if r.id in cancelled]
            for r in gone:
                self._waiting.remove(r)
            self.stats_recorder.set(waiting=len(self._waiting))
        for req in gone:
            self.stats_recorder.add(requests_cancelled=1)
            self._emit(req, StreamChunk(req.id, "", [], finish_reason="cancelled",
                                        usage=Usage(req.n_prompt, req.n_generated)))

    def _admit(self) -> None:
        """Move waiting requests into free slots while blocks for their prompt are there."""
        while self._free_slots:
            with self._lock:
                if not self._waiting:
                    return
                req = self._waiting[0]
            n_hit = self.blocks.match_prefix(req.tokens[:-1])
            need = self.blocks.blocks_for(len(req.tokens)) - n_hit // self.block_size
            # Keep one block per running sequence in reserve so decodes can proceed.
            if need + len(self._running) > self.blocks.n_available and self._running:
                return
            if need > self.blocks.n_available:
                return
            with self._lock:
                self._waiting.popleft()
                self.stats_recorder.set(waiting=len(self._waiting))
            req.blocks, req.n_computed = self.blocks.start_sequence(req.tokens)
            req.slot = self._free_slots.pop()
            if not req.admitted_once:
                req.admitted_once = True
                req.n_cached = req.n_computed
                self.stats_recorder.add(prompt_tokens=req.n_prompt)
            self._running.append(req)
            self._update_gauges()

    def _plan(self) -> list[tuple[_Request, int]]:
        """Pick (request, n_tokens) for this step: decodes first, then prefill chunks."""
        budget = self.max_batch_tokens
        plan: list[tuple[_Request, int]] = []
        for req in [r for r in self._running if r.n_pending == 1]:
            plan.append((req, 1))
            budget -= 1
        for req in [r for r in self._running if r.n_pending > 1]:
            if budget <= 0:
                break
            n = min(req.n_pending, budget)
            plan.append((req, n))
            budget -= n
        return plan

    def _reserve_blocks(self, plan: list[tuple[_Request, int]]) -> list[tuple[_Request, int]]:
        """Give each planned sequence the blocks it needs; preempt the newest when short."""
        ok: list[tuple[_Request, int]] = []
        for req, n in plan:
            if req not in self._running:
                continue                       # preempted for an earlier one in this loop
            while True:
                try:
                    self.blocks.ensure_capacity(req.blocks, req.n_computed + n)
                    ok.append((req, n))
                    break
                except OutOfBlocks:
                    victim = self._running[-1]
                    self._preempt(victim)
                    if victim is req:
                        break
        return [(r, n) for r, n in ok if r in self._running]

    def _preempt(self, req: _Request) -> None:
        """Free a running sequence's blocks and put it back at the head of the queue; it
        resumes by recomputing its tokens (mostly from the prefix cache)."""
        self._release(req)
        req.n_computed = 0
        with self._lock:
            self._waiting.appendleft(req)
            self.stats_recorder.set(waiting=len(self._waiting))
        self.stats_recorder.add(preemptions=1)

    def _release(self, req: _Request) -> None:
        if req.blocks is not None:
            self.blocks.free_sequence(req.blocks)
            req.blocks = None
        if req in self._running:
            self._running.remove(req)
            self._free_slots.append(req.slot)
            req.slot = -1
        self._update_gauges()

    def _step(self) -> None:
        plan = self._reserve_blocks(self._plan())
        if not plan:
            return
        n_tokens = sum(n for _, n in plan)
        tokens = np.empty(n_tokens, dtype=np.int32)          # [n_tokens]
        positions = np.empty(n_tokens, dtype=np.int32)       # [n_tokens]
        seq_ids = np.empty(n_tokens, dtype=np.int32)         # [n_tokens] row of block_tables
        block_tables = np.zeros((self.n_parallel, self.max_blocks_per_seq), dtype=np.int32)
        logit_rows: list[int] = []
        samplers: list[_Request] = []
        i = 0
        for req, n in plan:
            start = req.n_computed
            tokens[i:i + n] = req.tokens[start:start + n]
            positions[i:i + n] = np.arange(start, start + n, dtype=np.int32)
            seq_ids[i:i + n] = req.slot
            block_tables[req.slot, :len(req.blocks.table)] = req.blocks.table
            i += n
            if start + n == len(req.tokens):
                logit_rows.append(i - 1)
                samplers.append(req)
        logits = self.model.forward(self.kv, tokens, positions, seq_ids, block_tables,
                                    np.asarray(logit_rows, dtype=np.int32))
        self.stats_recorder.add(steps=1, prompt_tokens_computed=sum(
            n for r, n in plan if r.n_computed < r.n_prompt))
        for req, n in plan:
            req.n_computed += n
            self.blocks.commit_full_blocks(req.blocks, req.tokens, req.n_computed)
        now = time.perf_counter()
        for row, req in enumerate(samplers):
            self._on_logits(req, logits[row], now)
        self._update_gauges()

    def _on_logits(self, req: _Request, logits_row: np.ndarray, now: float) -> None:
        result = req.sampler.sample(logits_row, req.tokens)
        token = int(result.token)
        req.tokens.append(token)
        req.n_generated += 1
        self.stats_recorder.add(generated_tokens=1)
        if req.n_generated == 1:
            self.stats_recorder.observe_ttft(now - req.submitted_at)
        else:
            self.stats_recorder.observe_itl(now - req.last_token_at)
        req.last_token_at = now
        lp = None
        if getattr(req.params, "logprobs", None) is not None:
            top = [(int(t), float(v)) for t, v in (getattr(result, "top_logprobs", None) or [])]
            lp = [TokenLogprob(token, float(result.logprob), top)]
        params = req.params
        end_token = (token in self.eog_ids and not getattr(params, "ignore_eos", False)) or \
            token in (getattr(params, "stop_token_ids", None) or ())
        if end_token:
            # Counted in usage, not part of the output (no text, no token id, no logprob).
            self._finish(req, "stop", logprobs=[] if lp is not None else None)
            return
        text, stopped = req.stop.push(req.decoder.push(token))
        finish = "stop" if stopped else None
        if finish is None and (req.n_generated >= req.max_tokens or len(req.tokens) >= self.n_ctx):
            finish = "length"
        if finish is None:
            self._emit(req, StreamChunk(req.id, text, [token], lp))
        else:
            self._finish(req, finish, text=text, token_ids=[token], logprobs=lp)

    def _finish(self, req: _Request, reason: str, *, text: str = "",
                token_ids: list[int] | None = None, logprobs: list | None = None,
                error: str | None = None) -> None:
        if reason in ("stop", "length") and not req.stop.stopped:
            if hasattr(req.decoder, "flush"):
                text += req.stop.push(req.decoder.flush())[0]
            text += req.stop.flush()
        self._release(req)
        if reason == "cancelled":
            self.stats_recorder.add(requests_cancelled=1)
        else:
            self.stats_recorder.add(requests_finished=1)
        self._emit(req, StreamChunk(req.id, text, token_ids or [], logprobs, finish_reason=reason,
                                    usage=Usage(req.n_prompt, req.n_generated, req.n_cached),
                                    error=error))

    def _emit(self, req: _Request, chunk: StreamChunk) -> None:
        if req.done:
            return
        if chunk.finish_reason is not None:
            req.done = True
        try:
            req.on_event(chunk)
        except Exception:  # a broken consumer (closed loop) must not stop the engine
            if chunk.finish_reason is None:
                with self._lock:
                    self._cancelled.add(req.id)

    def _update_gauges(self) -> None:
        b = self.blocks.stats()
        self.stats_recorder.set(running=len(self._running), kv_blocks_used=b.used,
                                kv_blocks_cached=b.cached, prefix_cache_hit_rate=b.hit_rate,
                                prefix_cache_hit_tokens=b.prefix_hit_tokens)


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
        self._pending: list[tuple[asyncio.Queue, StreamChunk]] = []

    @classmethod
    def of(cls, loop: asyncio.AbstractEventLoop) -> "_LoopInbox":
        with cls._registry_lock:
            inbox = cls._by_loop.get(loop)
            if inbox is None:
                inbox = cls._by_loop[loop] = cls(loop)
            return inbox

    def put(self, q: asyncio.Queue, chunk: StreamChunk) -> None:
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

    def __init__(self, engine: Engine, prompt_ids: Sequence[int], params: Any) -> None:
        self._engine = engine
        self._inbox = _LoopInbox.of(asyncio.get_running_loop())
        self._queue: asyncio.Queue[StreamChunk] = asyncio.Queue()
        self._finished = False
        self.request_id = engine.submit(prompt_ids, params, self._deliver)

    def _deliver(self, chunk: StreamChunk) -> None:
        self._inbox.put(self._queue, chunk)

    def __aiter__(self) -> "AsyncStream":
        return self

    async def __anext__(self) -> StreamChunk:
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
