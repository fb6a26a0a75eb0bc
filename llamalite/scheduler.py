"""The scheduler: which requests run, and which of their tokens go into the next step.

Admission moves waiting requests into free slots (rows of the block table) while the
block pool can hold their prompts; each step carries every running sequence's next token
first, then prefill chunks up to the token budget (chunked prefill, so a long prompt
cannot stall the others). When the pool runs short, the newest running sequence is
preempted: its blocks are freed and it goes back to the head of the queue, to resume by
recomputing its tokens (mostly from the prefix cache).

The block manager (kv_blocks.py) owns the pool; the engine (engine.py) owns the thread
and the forward call.
"""
from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass
from typing import Any, Callable, Optional

from .engine_stats import StatsRecorder
from .kv_blocks import BlockManager, OutOfBlocks, SeqBlocks
from .output_processor import RequestOutput
from .outputs import CompletionChunk

__all__ = ["Request", "Scheduler"]


@dataclass
class Request:
    """One request's state while it waits or runs."""

    id: str
    tokens: list[int]                  # prompt + generated so far
    n_prompt: int
    params: Any
    sampler: Any
    output: RequestOutput
    on_event: Callable[[CompletionChunk], None]
    submitted_at: float
    n_cached: int = 0                  # prompt tokens served from the prefix cache (first admission)
    n_computed: int = 0                # tokens whose K/V is in the cache
    blocks: Optional[SeqBlocks] = None
    slot: int = -1
    admitted_once: bool = False
    mask: Any = None                   # grammar.TokenMask of a constrained request
    first_token_at: float = 0.0
    last_token_at: float = 0.0
    done: bool = False

    @property
    def n_generated(self) -> int:
        return self.output.n_generated

    @property
    def n_pending(self) -> int:
        return len(self.tokens) - self.n_computed


class Scheduler:
    """Admission, step planning and preemption over one block pool.

    `waiting` is shared with submitting threads and guarded by `lock`; everything
    else belongs to the engine's step thread.
    """

    def __init__(self, blocks: BlockManager, *, n_parallel: int, max_batch_tokens: int,
                 lock: threading.Lock, stats: StatsRecorder) -> None:
        self.blocks = blocks
        self.n_parallel = n_parallel
        self.max_batch_tokens = max_batch_tokens
        self.lock = lock
        self.stats = stats
        self.waiting: deque[Request] = deque()         # guarded by lock
        self.running: list[Request] = []
        self.free_slots = list(range(n_parallel - 1, -1, -1))

    def admit(self) -> None:
        """Move waiting requests into free slots while blocks for their prompt are there."""
        bs = self.blocks.block_size
        while self.free_slots:
            with self.lock:
                if not self.waiting:
                    return
                req = self.waiting[0]
            n_hit = self.blocks.match_prefix(req.tokens[:-1])
            need = self.blocks.blocks_for(len(req.tokens)) - n_hit // bs
            # Keep one block per running sequence in reserve so decodes can proceed.
            if need + len(self.running) > self.blocks.n_available and self.running:
                return
            if need > self.blocks.n_available:
                return
            with self.lock:
                self.waiting.popleft()
                self.stats.set(waiting=len(self.waiting))
            req.blocks, req.n_computed = self.blocks.start_sequence(req.tokens)
            req.slot = self.free_slots.pop()
            if not req.admitted_once:
                req.admitted_once = True
                req.n_cached = req.n_computed
                self.stats.add(prompt_tokens=req.n_prompt)
            self.running.append(req)

    def schedule(self) -> list[tuple[Request, int]]:
        """(request, n_tokens) for the next step, with the blocks they need reserved."""
        return self._reserve_blocks(self._plan())

    def _plan(self) -> list[tuple[Request, int]]:
        """Decodes first, then prefill chunks while the token budget lasts."""
        budget = self.max_batch_tokens
        plan: list[tuple[Request, int]] = []
        for req in [r for r in self.running if r.n_pending == 1]:
            plan.append((req, 1))
            budget -= 1
        for req in [r for r in self.running if r.n_pending > 1]:
            if budget <= 0:
                break
            n = min(req.n_pending, budget)
            plan.append((req, n))
            budget -= n
        return plan

    def _reserve_blocks(self, plan: list[tuple[Request, int]]) -> list[tuple[Request, int]]:
        """Give each planned sequence the blocks it needs; preempt the newest when short."""
        ok: list[tuple[Request, int]] = []
        for req, n in plan:
            if req not in self.running:
                continue                       # preempted for an earlier one in this loop
            while True:
                try:
                    self.blocks.ensure_capacity(req.blocks, req.n_computed + n)
                    ok.append((req, n))
                    break
                except OutOfBlocks:
                    victim = self.running[-1]
                    self._preempt(victim)
                    if victim is req:
                        break
        return [(r, n) for r, n in ok if r in self.running]

    def _preempt(self, req: Request) -> None:
        self.release(req)
        req.n_computed = 0
        with self.lock:
            self.waiting.appendleft(req)
            self.stats.set(waiting=len(self.waiting))
        self.stats.add(preemptions=1)

    def release(self, req: Request) -> None:
        """Free a sequence's blocks and its slot (finished, cancelled or preempted)."""
        if req.blocks is not None:
            self.blocks.free_sequence(req.blocks)
            req.blocks = None
        if req in self.running:
            self.running.remove(req)
            self.free_slots.append(req.slot)
            req.slot = -1

    def take_waiting(self, ids: set[str]) -> list[Request]:
        """Remove and return the waiting requests whose id is in ids (cancelled)."""
        with self.lock:
            gone = [r for r in self.waiting if r.id in ids]
            for r in gone:
                self.waiting.remove(r)
            self.stats.set(waiting=len(self.waiting))
        return gone

    def take_all_waiting(self) -> list[Request]:
        with self.lock:
            waiting, self.waiting = list(self.waiting), deque()
        return waiting
