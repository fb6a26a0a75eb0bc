"""The engine core: one model, one paged KV pool with prefix caching, continuous batching.

Every front end submits here: `LLM.generate` / `chat` / `generate_batch` (llm.py), the
async bridge (async_stream.py) and the HTTP server. One background thread runs steps.
Each step takes the scheduler's plan (every running sequence's next token plus prefill
chunks, scheduler.py), makes ONE forward call (the C++ forward releases the GIL), samples
the rows that need it, and hands each token to its request's output processor
(output_processor.py), which makes the text, checks stops and decides the finish.
Requests join between steps; finished and cancelled ones leave and free their blocks at
once. Output reaches each request through a callback (a queue for sync callers, the
event loop for asyncio callers).

    engine = Engine(model, tokenizer, n_parallel=4, ctx_size=4096)
    for chunk in engine.iter_stream(prompt_ids, params): print(chunk.text, end="")
    async for chunk in engine.stream(prompt_ids, params): ...
"""
from __future__ import annotations

import itertools
import queue
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Iterator, Sequence

import numpy as np

from .async_stream import AsyncStream
from .engine_stats import EngineStats, StatsRecorder
from .errors import EngineError, EngineStopped, GrammarError, QueueFull, RequestRejected
from .grammar import GrammarCompiler
from .kv_blocks import BlockManager
from .output_processor import RequestOutput
from .outputs import Completion, CompletionChunk, Timings, Usage, join_chunks
from .scheduler import Request, Scheduler

__all__ = ["Engine", "EngineError", "EngineStopped", "QueueFull", "RequestRejected"]

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
    tokenizer:   has .eog_ids (text is produced by the decoder factory)
    n_parallel:  sequences running at once (rows of the block table)
    ctx_size:    tokens of KV cache in the pool (shared by all sequences; rounded up to
                 whole blocks)
    n_ctx:       most tokens (prompt + generated) one sequence may hold (default:
                 ctx_size, capped by the model's training context)
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
        if ctx_size < 2:
            raise ValueError(f"ctx_size must be at least 2 tokens, got {ctx_size}")
        if block_size < 1:
            raise ValueError(f"block_size must be positive, got {block_size}")
        if max_queue < 0:
            raise ValueError(f"max_queue must be >= 0, got {max_queue}")
        self.model = model
        self.tokenizer = tokenizer
        self.n_parallel = n_parallel
        self.block_size = block_size
        self.max_batch_tokens = max_batch_tokens
        self.max_queue = max_queue
        self.n_vocab = int(model.n_vocab)
        n_blocks = -(-ctx_size // block_size)
        self.ctx_size = ctx_size
        model_ctx = (getattr(model, "n_ctx_train", None)
                     or getattr(getattr(model, "hparams", None), "n_ctx_train", None)
                     or ctx_size)
        self.n_ctx = min(n_ctx or ctx_size, ctx_size, int(model_ctx))
        self.blocks = BlockManager(n_blocks, block_size)
        self.kv = model.new_kv_cache(n_blocks, block_size)
        self.max_blocks_per_seq = self.blocks.blocks_for(self.n_ctx)
        self.eog_ids = frozenset(int(t) for t in getattr(tokenizer, "eog_ids", ()) or ())
        self._sampler_factory = sampler_factory or _default_sampler_factory
        self._decoder_factory = decoder_factory or _default_decoder_factory
        self.grammars = GrammarCompiler(tokenizer, self.n_vocab)
        # Token masks of constrained requests are computed here while the forward runs.
        self._mask_worker: ThreadPoolExecutor | None = None
        # Held around every forward call of the model: teacher-forced scoring
        # (LLM.logits) calls the model from another thread and takes it too.
        self.forward_lock = threading.Lock()

        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._cancelled: set[str] = set()             # guarded by _lock
        self._stop = False
        self.stats_recorder = StatsRecorder()
        self.stats_recorder.set(n_parallel=n_parallel, kv_blocks_total=n_blocks)
        self.scheduler = Scheduler(self.blocks, n_parallel=n_parallel,
                                   max_batch_tokens=max_batch_tokens, lock=self._lock,
                                   stats=self.stats_recorder)
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
        thread, self._thread = self._thread, None
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)
        if self._mask_worker is not None:
            self._mask_worker.shutdown(wait=False)

    def __enter__(self) -> "Engine":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.shutdown()

    # --- submitting -----------------------------------------------------------------------

    def check_prompt(self, prompt_ids: Sequence[int], max_tokens: int | None) -> int:
        """Validate a prompt and max_tokens; return the max_tokens to use.

        A sequence holds at most n_ctx tokens, prompt and generated together, so a
        prompt may have at most n_ctx - 1 tokens. max_tokens None means "until the
        context is full". Raises RequestRejected for an empty prompt, ids outside the
        vocabulary, a prompt that does not fit, or prompt + max_tokens over n_ctx.
        """
        n = len(prompt_ids)
        if n == 0:
            raise RequestRejected("the prompt is empty: give at least one token",
                                  param="prompt", code="empty_prompt")
        bad = [t for t in prompt_ids if not (0 <= t < self.n_vocab)]
        if bad:
            raise RequestRejected(f"prompt token id {bad[0]} is outside the vocabulary: ids must "
                                  f"be in [0, {self.n_vocab})", param="prompt",
                                  code="invalid_token_id")
        if n >= self.n_ctx:
            raise RequestRejected(
                f"the prompt has {n} tokens but a sequence holds at most {self.n_ctx}, "
                f"prompt and reply together (n_prompt_tokens={n}, n_ctx={self.n_ctx}); "
                f"shorten it or raise the context size",
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
                f"{self.n_ctx} tokens (n_prompt_tokens={n}, n_ctx={self.n_ctx}); lower "
                f"max_tokens (or leave it out to generate until the context is full)",
                param="max_tokens", code="context_length_exceeded",
                n_prompt_tokens=n, n_ctx=self.n_ctx)
        return max_tokens

    def submit(self, prompt_ids: Sequence[int], params: Any,
               on_event: Callable[[CompletionChunk], None], *,
               request_id: str | None = None, mask: Any = None) -> str:
        """Queue a request; its chunks go to on_event (called on the engine thread).

        params: sampling parameters (max_tokens, stop, stop_token_ids, ignore_eos,
        logprobs, json_schema / grammar and whatever the sampler reads). mask: the
        request's TokenMask when the caller compiled it already (`grammars.compile`,
        off an event loop); otherwise a json_schema or grammar is compiled here.
        Returns the request id. Raises RequestRejected, QueueFull or EngineStopped
        without queueing.
        """
        prompt = [int(t) for t in prompt_ids]
        try:
            max_tokens = self.check_prompt(prompt, getattr(params, "max_tokens", None))
            if hasattr(params, "validate"):
                try:
                    params.validate(self.n_vocab)
                except ValueError as e:
                    raise RequestRejected(str(e), code="invalid_value") from e
            try:
                if mask is None:
                    mask = self.grammars.compile(params)
            except GrammarError as e:
                raise RequestRejected(str(e), param=e.param, code="invalid_grammar") from e
        except RequestRejected:
            self.stats_recorder.add(requests_rejected=1)
            raise
        output = RequestOutput(params, self._decoder_factory(self.tokenizer), self.eog_ids,
                               n_prompt=len(prompt), max_tokens=max_tokens, n_ctx=self.n_ctx)
        req = Request(id=request_id or f"req-{next(_ids)}", tokens=prompt, n_prompt=len(prompt),
                      params=params, sampler=self._sampler_factory(params, self.n_vocab),
                      output=output, on_event=on_event, submitted_at=time.perf_counter(),
                      mask=mask)
        with self._lock:
            if self._stop:
                raise EngineStopped("the engine has been shut down")
            if self._queue_full_locked():
                self.stats_recorder.add(requests_rejected=1)
                raise QueueFull(f"{len(self.scheduler.waiting)} requests are already waiting "
                                f"(max_queue={self.max_queue}); retry later")
            self.scheduler.waiting.append(req)
            self.stats_recorder.set(waiting=len(self.scheduler.waiting))
            self._wake.notify_all()
        return req.id

    @property
    def queue_full(self) -> bool:
        """Whether submit would refuse with QueueFull right now (a cheap early check)."""
        with self._lock:
            return self._queue_full_locked()

    def _queue_full_locked(self) -> bool:
        # Requests about to take a free slot do not count against the queue.
        return len(self.scheduler.waiting) >= self.max_queue + len(self.scheduler.free_slots)

    def cancel(self, request_id: str) -> None:
        """Stop a request (client gone); its slot and blocks are freed at the next step."""
        with self._lock:
            self._cancelled.add(request_id)
            self._wake.notify_all()

    # --- reading results ------------------------------------------------------------------

    def iter_stream(self, prompt_ids: Sequence[int], params: Any) -> Iterator[CompletionChunk]:
        """Submit now (errors raise here) and return a blocking iterator over the request's
        chunks; closing it early cancels the request."""
        q: queue.SimpleQueue[CompletionChunk] = queue.SimpleQueue()
        rid = self.submit(prompt_ids, params, q.put)
        return _ChunkReader(self, q, rid)

    def generate(self, prompt_ids: Sequence[int], params: Any) -> Completion:
        """Run one request to the end (blocking) and return it whole."""
        return join_chunks(list(self.iter_stream(prompt_ids, params)))

    def generate_many(self, prompts: Sequence[Sequence[int]], params: Any) -> list[Completion]:
        """Run several requests together (they batch in the same steps); results in order.

        params: one set for every prompt, or a list with one per prompt. Every prompt is
        checked before any is queued; a full queue is waited out."""
        per_prompt = list(params) if isinstance(params, (list, tuple)) else [params] * len(prompts)
        if len(per_prompt) != len(prompts):
            raise ValueError(f"{len(prompts)} prompts but {len(per_prompt)} sets of parameters")
        for p, pp in zip(prompts, per_prompt):
            self.check_prompt([int(t) for t in p], getattr(pp, "max_tokens", None))
        streams: list[_ChunkReader] = []
        try:
            for p, pp in zip(prompts, per_prompt):
                streams.append(self._submit_when_room(p, pp))
            return [join_chunks(list(s)) for s in streams]
        finally:
            for s in streams:
                s.close()                     # cancels what did not finish (an exception)

    def _submit_when_room(self, prompt_ids: Sequence[int], params: Any) -> "_ChunkReader":
        while True:
            try:
                return self.iter_stream(prompt_ids, params)
            except QueueFull:
                with self._lock:              # woken when a request leaves the queue
                    if self._queue_full_locked() and not self._stop:
                        self._wake.wait(0.05)

    def stream(self, prompt_ids: Sequence[int], params: Any, *, mask: Any = None) -> AsyncStream:
        """Submit now (errors raise here) and return an async iterator of chunks.

        Must be called from a running event loop. Cancelling the consuming task or calling
        `await stream.aclose()` cancels the request. mask: as in `submit`.
        """
        return AsyncStream(self, prompt_ids, params, mask=mask)

    def stats(self) -> EngineStats:
        """A snapshot of the counters (running, waiting, tokens, latencies, KV blocks)."""
        return self.stats_recorder.snapshot()

    # --- the step loop --------------------------------------------------------------------

    def _loop(self) -> None:
        sched = self.scheduler
        while True:
            with self._lock:
                while (not self._stop and not sched.waiting and not sched.running
                       and not self._cancelled):
                    self._wake.wait()
                if self._stop:
                    break
                cancelled, self._cancelled = self._cancelled, set()
            self._apply_cancellations(cancelled)
            sched.admit()
            self._update_gauges()
            if sched.running:
                try:
                    self._step()
                except Exception as e:  # a failed forward ends the batch, not the engine
                    for req in list(sched.running):
                        self._finish(req, "error", error=f"{type(e).__name__}: {e}")
            else:
                # Waiting requests that cannot start yet: nothing runs, so wait for a change.
                with self._lock:
                    if sched.waiting and not self._cancelled and not self._stop:
                        self._wake.wait(0.05)
        self._shutdown_requests()

    def _shutdown_requests(self) -> None:
        for req in list(self.scheduler.running):
            self._finish(req, "error", error="the engine was shut down")
        for req in self.scheduler.take_all_waiting():
            self._finish(req, "error", error="the engine was shut down")

    def _apply_cancellations(self, cancelled: set[str]) -> None:
        if not cancelled:
            return
        for req in list(self.scheduler.running):
            if req.id in cancelled:
                self._finish(req, "cancelled")
        for req in self.scheduler.take_waiting(cancelled):
            self._finish(req, "cancelled")
        with self._lock:
            self._wake.notify_all()           # room in the queue for _submit_when_room

    def _step(self) -> None:
        plan = self.scheduler.schedule()
        if not plan:
            return
        n_tokens = sum(n for _, n in plan)
        tokens = np.empty(n_tokens, dtype=np.int32)          # [n_tokens]
        positions = np.empty(n_tokens, dtype=np.int32)       # [n_tokens]
        seq_ids = np.empty(n_tokens, dtype=np.int32)         # [n_tokens] row of block_tables
        block_tables = np.zeros((self.n_parallel, self.max_blocks_per_seq), dtype=np.int32)
        logit_rows: list[int] = []
        sampled: list[Request] = []                          # the request of each logit row
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
                sampled.append(req)
        masks = self._start_masks(sampled)
        with self.forward_lock:
            logits = self.model.forward(self.kv, tokens, positions, seq_ids, block_tables,
                                        np.asarray(logit_rows, dtype=np.int32))
        if masks is not None:
            masks.result()
        self.stats_recorder.add(steps=1, prompt_tokens_computed=sum(
            n for r, n in plan if r.n_computed < r.n_prompt))
        for req, n in plan:
            req.n_computed += n
            self.blocks.commit_full_blocks(req.blocks, req.tokens, req.n_computed)
        now = time.perf_counter()
        for row, req in enumerate(sampled):
            self._on_logits(req, logits[row], now)
        self._update_gauges()

    def _start_masks(self, sampled: list[Request]) -> Any:
        """Compute the next-token masks of constrained requests on a worker thread while
        the forward pass runs (both release the GIL); None when no request has one."""
        masks = [r.mask for r in sampled if r.mask is not None]
        if not masks:
            return None
        if self._mask_worker is None:
            self._mask_worker = ThreadPoolExecutor(1, thread_name_prefix="llamalite-mask")

        def compute() -> None:
            for m in masks:
                m.compute()
        return self._mask_worker.submit(compute)

    def _on_logits(self, req: Request, logits_row: np.ndarray, now: float) -> None:
        if req.mask is not None:
            try:
                logits_row = req.mask.apply(logits_row)
            except GrammarError as e:
                self._finish(req, "error", error=str(e))
                return
        result = req.sampler.sample(logits_row, req.tokens)
        token = int(result.token)
        if req.mask is not None:
            try:
                req.mask.consume(token)
            except GrammarError as e:
                self._finish(req, "error", error=str(e))
                return
        req.tokens.append(token)
        self.stats_recorder.add(generated_tokens=1)
        if req.first_token_at == 0.0:
            req.first_token_at = now
            self.stats_recorder.observe_ttft(now - req.submitted_at)
        else:
            self.stats_recorder.observe_itl(now - req.last_token_at)
        req.last_token_at = now
        out = req.output.on_token(token, result,
                                  grammar_done=req.mask is not None and req.mask.done)
        if out.finish_reason is None:
            self._emit(req, CompletionChunk(out.text, out.token_ids, logprobs=out.logprobs,
                                            request_id=req.id))
        else:
            self._finish(req, out.finish_reason, text=out.text, token_ids=out.token_ids,
                         logprobs=out.logprobs)

    def _finish(self, req: Request, reason: str, *, text: str = "",
                token_ids: list[int] | None = None, logprobs: list | None = None,
                error: str | None = None) -> None:
        text += req.output.tail(reason)
        self.scheduler.release(req)
        self._update_gauges()                 # before the caller hears of the end
        if reason == "cancelled":
            self.stats_recorder.add(requests_cancelled=1)
        else:
            self.stats_recorder.add(requests_finished=1)
        self._emit(req, CompletionChunk(text, token_ids or [], finish_reason=reason,
                                        usage=Usage(req.n_prompt, req.n_generated, req.n_cached),
                                        logprobs=logprobs, request_id=req.id, error=error,
                                        timings=self._timings(req)))

    def _timings(self, req: Request) -> Timings:
        now = time.perf_counter()
        first = req.first_token_at or now
        return Timings(prompt_tokens=req.n_prompt - req.n_cached,
                       prompt_s=first - req.submitted_at,
                       generated_tokens=req.n_generated,
                       generate_s=now - first if req.first_token_at else 0.0,
                       first_token_s=first - req.submitted_at if req.first_token_at else 0.0)

    def _emit(self, req: Request, chunk: CompletionChunk) -> None:
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
        self.stats_recorder.set(running=len(self.scheduler.running), kv_blocks_used=b.used,
                                kv_blocks_cached=b.cached, prefix_cache_hit_rate=b.hit_rate,
                                prefix_cache_hit_tokens=b.prefix_hit_tokens)


class _ChunkReader:
    """Blocking iterator over one request's chunks (Engine.iter_stream). Closing it, or
    dropping it, before the last chunk cancels the request, whether or not it was read."""

    def __init__(self, engine: Engine, q: "queue.SimpleQueue[CompletionChunk]", rid: str) -> None:
        self._engine = engine
        self._queue = q
        self.request_id = rid
        self._finished = False

    def __iter__(self) -> "_ChunkReader":
        return self

    def __next__(self) -> CompletionChunk:
        if self._finished:
            raise StopIteration
        chunk = self._queue.get()
        if chunk.finish_reason is not None:
            self._finished = True
        return chunk

    def close(self) -> None:
        if not self._finished:
            self._finished = True
            self._engine.cancel(self.request_id)

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:   # interpreter shutdown: nothing left to cancel
            pass
