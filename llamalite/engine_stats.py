"""Counters and latency histograms the engine keeps for /metrics, benchmarks and tests."""
from __future__ import annotations

import bisect
import threading
from dataclasses import dataclass, field

# Seconds; Prometheus-style cumulative buckets (+Inf is implicit).
TTFT_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
ITL_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)


class Histogram:
    """A fixed-bucket histogram (count per upper bound, plus sum and count)."""

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)   # last one is +Inf
        self.sum = 0.0
        self.count = 0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.sum += value
        self.count += 1

    def copy(self) -> "Histogram":
        h = Histogram(self.bounds)
        h.counts, h.sum, h.count = list(self.counts), self.sum, self.count
        return h


@dataclass
class EngineStats:
    """A consistent snapshot of the engine's counters."""
    running: int = 0
    waiting: int = 0
    n_parallel: int = 0
    prompt_tokens: int = 0            # prompt tokens submitted by admitted requests
    prompt_tokens_computed: int = 0   # prompt tokens actually run (cache hits excluded)
    generated_tokens: int = 0
    requests_finished: int = 0
    requests_cancelled: int = 0
    requests_rejected: int = 0        # refused before queueing (queue full, too long)
    preemptions: int = 0
    steps: int = 0
    kv_blocks_total: int = 0
    kv_blocks_used: int = 0
    kv_blocks_cached: int = 0
    prefix_cache_hit_rate: float = 0.0
    prefix_cache_hit_tokens: int = 0
    ttft: Histogram = field(default_factory=lambda: Histogram(TTFT_BUCKETS))
    itl: Histogram = field(default_factory=lambda: Histogram(ITL_BUCKETS))


class StatsRecorder:
    """Thread-safe accumulation; the engine thread writes, anyone may snapshot."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._s = EngineStats()

    def add(self, **deltas: int) -> None:
        with self._lock:
            for name, d in deltas.items():
                setattr(self._s, name, getattr(self._s, name) + d)

    def set(self, **values) -> None:
        with self._lock:
            for name, v in values.items():
                setattr(self._s, name, v)

    def observe_ttft(self, seconds: float) -> None:
        with self._lock:
            self._s.ttft.observe(seconds)

    def observe_itl(self, seconds: float) -> None:
        with self._lock:
            self._s.itl.observe(seconds)

    def snapshot(self) -> EngineStats:
        with self._lock:
            s = self._s
            return EngineStats(**{**s.__dict__, "ttft": s.ttft.copy(), "itl": s.itl.copy()})
