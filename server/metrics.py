"""Prometheus text exposition of the engine's counters (GET /metrics)."""
from __future__ import annotations

from llamalite.engine_stats import EngineStats, Histogram

PREFIX = "llamalite"


def _line(name: str, kind: str, help_text: str, value: float) -> list[str]:
    return [f"# HELP {PREFIX}_{name} {help_text}", f"# TYPE {PREFIX}_{name} {kind}",
            f"{PREFIX}_{name} {value:g}"]


def _histogram(name: str, help_text: str, h: Histogram) -> list[str]:
    out = [f"# HELP {PREFIX}_{name} {help_text}", f"# TYPE {PREFIX}_{name} histogram"]
    total = 0
    for bound, count in zip(h.bounds, h.counts):
        total += count
        out.append(f'{PREFIX}_{name}_bucket{{le="{bound:g}"}} {total}')
    out.append(f'{PREFIX}_{name}_bucket{{le="+Inf"}} {h.count}')
    out.append(f"{PREFIX}_{name}_sum {h.sum:.6f}")
    out.append(f"{PREFIX}_{name}_count {h.count}")
    return out


def render_metrics(s: EngineStats, requests_total: int, errors_total: int,
                   refused_early: int = 0, responses: dict[int, int] | None = None) -> str:
    """The whole /metrics page.

    refused_early: requests the server refused before they reached the engine (the early
    queue-full check), counted in requests_rejected_total with the engine's refusals.
    responses: answers by HTTP status (every status, the connection-level 400/408 too).
    """
    lines: list[str] = []
    lines += _line("requests_running", "gauge", "Sequences being generated.", s.running)
    lines += _line("requests_waiting", "gauge", "Requests queued for a slot.", s.waiting)
    lines += _line("n_parallel", "gauge", "Sequence slots.", s.n_parallel)
    lines += _line("prompt_tokens_total", "counter", "Prompt tokens admitted.", s.prompt_tokens)
    lines += _line("prompt_tokens_computed_total", "counter",
                   "Prompt tokens run through the model (prefix-cache hits excluded).",
                   s.prompt_tokens_computed)
    lines += _line("generation_tokens_total", "counter", "Tokens generated.", s.generated_tokens)
    lines += _line("requests_finished_total", "counter", "Requests that ended.", s.requests_finished)
    lines += _line("requests_cancelled_total", "counter", "Requests cancelled (client gone).",
                   s.requests_cancelled)
    lines += _line("requests_rejected_total", "counter",
                   "Requests refused before queueing (queue full, too long, invalid sampling).",
                   s.requests_rejected + refused_early)
    lines += _line("preemptions_total", "counter", "Sequences preempted for KV blocks.",
                   s.preemptions)
    lines += _line("engine_steps_total", "counter", "Forward steps run.", s.steps)
    lines += _line("kv_blocks_total", "gauge", "KV cache blocks in the pool.", s.kv_blocks_total)
    lines += _line("kv_blocks_used", "gauge", "KV blocks referenced by sequences.", s.kv_blocks_used)
    lines += _line("kv_blocks_cached", "gauge", "Unreferenced KV blocks kept for prefix reuse.",
                   s.kv_blocks_cached)
    lines += _line("prefix_cache_hit_rate", "gauge",
                   "Fraction of prompt tokens served from the prefix cache.",
                   s.prefix_cache_hit_rate)
    lines += _line("http_requests_total", "counter", "HTTP requests handled.", requests_total)
    lines += _line("http_errors_total", "counter", "HTTP requests answered with an error.",
                   errors_total)
    lines += [f"# HELP {PREFIX}_http_responses_total HTTP answers by status code.",
              f"# TYPE {PREFIX}_http_responses_total counter"]
    lines += [f'{PREFIX}_http_responses_total{{status="{code}"}} {n}'
              for code, n in sorted((responses or {}).items())]
    lines += _histogram("time_to_first_token_seconds", "Time from submission to first token.",
                        s.ttft)
    lines += _histogram("inter_token_latency_seconds", "Time between consecutive tokens.", s.itl)
    return "\n".join(lines) + "\n"
