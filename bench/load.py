"""Load benchmark for `llamalite serve` (or any OpenAI-compatible server) on loopback.

Rounds of 1, 4, 16 and 64 concurrent clients; each client sends several streaming chat
requests one after another. Per round: aggregate generated tokens/s, time to first token
and inter-token latency (p50/p99, measured by the client), 429 refusals and other errors,
and the server's resident memory after the round.

    python bench/load.py smollm2-135m --parallel 4 --ctx-size 4096 --max-queue 16
    python bench/load.py --url http://127.0.0.1:8080 --clients 1,4   # a running server

Only loopback addresses are used. Every loop is bounded (clients x requests).
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import httpx

QUESTIONS = [
    "Explain why the sky is blue in two sentences.",
    "Write a short poem about a lighthouse.",
    "List three uses of copper.",
    "What is the capital of Australia, and why was it chosen?",
    "Describe how a bicycle gear works.",
    "Give a recipe for a simple tomato soup.",
    "Why do cats purr?",
    "Summarise the water cycle.",
]


@dataclass
class RequestResult:
    status: int
    tokens: int = 0
    ttft: float | None = None
    itls: list[float] = field(default_factory=list)
    seconds: float = 0.0


@dataclass
class RoundResult:
    clients: int
    requests: int
    ok: int
    rejected_429: int
    errors: int
    wall_s: float
    tokens: int
    tok_per_s: float
    ttft_p50_ms: float | None
    ttft_p99_ms: float | None
    itl_p50_ms: float | None
    itl_p99_ms: float | None
    max_429_ms: float | None
    rss_mb: float | None


def percentile(xs: list[float], q: float) -> float | None:
    if not xs:
        return None
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(q / 100 * (len(xs) - 1))))]


async def one_request(client: httpx.AsyncClient, url: str, model: str, question: str,
                      max_tokens: int, headers: dict) -> RequestResult:
    body = {"model": model, "messages": [{"role": "user", "content": question}],
            "max_tokens": max_tokens, "temperature": 0, "ignore_eos": True, "stream": True,
            "stream_options": {"include_usage": True}}
    t0 = time.perf_counter()
    async with client.stream("POST", url + "/v1/chat/completions", json=body,
                             headers=headers) as r:
        if r.status_code != 200:
            await r.aread()
            return RequestResult(r.status_code, seconds=time.perf_counter() - t0)
        res = RequestResult(200)
        last = None
        async for line in r.aiter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            chunk = json.loads(line[6:])
            if "error" in chunk:
                res.status = 500
                break
            choices = chunk.get("choices") or []
            if choices and choices[0]["delta"].get("content"):
                now = time.perf_counter()
                if last is None:
                    res.ttft = now - t0
                else:
                    res.itls.append(now - last)
                last = now
                res.tokens += 1       # one content chunk per token (whole characters only)
            usage = chunk.get("usage")
            if usage:
                res.tokens = usage["completion_tokens"]
        res.seconds = time.perf_counter() - t0
        return res


async def run_round(url: str, model: str, n_clients: int, n_requests: int, max_tokens: int,
                    headers: dict) -> tuple[list[RequestResult], float]:
    limits = httpx.Limits(max_connections=n_clients + 4, max_keepalive_connections=n_clients + 4)
    async with httpx.AsyncClient(timeout=600, limits=limits) as client:
        async def client_loop(i: int) -> list[RequestResult]:
            out = []
            for j in range(n_requests):
                q = QUESTIONS[(i + j) % len(QUESTIONS)]
                try:
                    out.append(await one_request(client, url, model, q, max_tokens, headers))
                except httpx.HTTPError:
                    out.append(RequestResult(-1))
            return out
        t0 = time.perf_counter()
        per_client = await asyncio.gather(*[client_loop(i) for i in range(n_clients)])
        wall = time.perf_counter() - t0
    return [r for rs in per_client for r in rs], wall


def rss_mb(pid: int | None) -> float | None:
    if pid is None:
        return None
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def summarise(clients: int, results: list[RequestResult], wall: float,
              pid: int | None) -> RoundResult:
    ok = [r for r in results if r.status == 200]
    rej = [r for r in results if r.status == 429]
    tokens = sum(r.tokens for r in ok)
    ttfts = [r.ttft for r in ok if r.ttft is not None]
    itls = [x for r in ok for x in r.itls]

    def ms(x: float | None) -> float | None:
        return None if x is None else round(x * 1000, 1)
    return RoundResult(
        clients=clients, requests=len(results), ok=len(ok), rejected_429=len(rej),
        errors=len(results) - len(ok) - len(rej), wall_s=round(wall, 2), tokens=tokens,
        tok_per_s=round(tokens / wall, 1) if wall > 0 else 0.0,
        ttft_p50_ms=ms(percentile(ttfts, 50)), ttft_p99_ms=ms(percentile(ttfts, 99)),
        itl_p50_ms=ms(percentile(itls, 50)), itl_p99_ms=ms(percentile(itls, 99)),
        max_429_ms=ms(max((r.seconds for r in rej), default=None)),
        rss_mb=None if pid is None else round(rss_mb(pid) or 0, 1))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(args) -> tuple[subprocess.Popen, str]:
    port = free_port()
    cmd = [sys.executable, "-m", "llamalite.cli.main", "serve", args.model, "--host", "127.0.0.1",
           "--port", str(port), "--parallel", str(args.parallel), "--ctx-size", str(args.ctx_size),
           "--max-queue", str(args.max_queue), "--log-level", "warning"]
    if args.threads:
        cmd += ["--threads", str(args.threads)]
    proc = subprocess.Popen(cmd, cwd="/tmp")
    url = f"http://127.0.0.1:{port}"
    wait_ready(proc, url, "server")
    return proc, url


def wait_ready(proc: subprocess.Popen, url: str, name: str, timeout_s: float = 60) -> None:
    """Poll GET /health until it answers 200; stop the process if it never does."""
    for _ in range(int(timeout_s * 10)):
        if proc.poll() is not None:
            raise SystemExit(f"{name} exited with {proc.returncode}")
        try:
            if httpx.get(url + "/health", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    proc.terminate()
    raise SystemExit(f"{name} did not become ready in {timeout_s:.0f} s")


def table(rows: list[RoundResult]) -> str:
    head = ("| clients | requests | ok | 429 | errors | tok/s | TTFT p50 / p99 ms "
            "| ITL p50 / p99 ms | slowest 429 ms | RSS MB |")
    lines = [head, "|" + "---|" * 10]
    for r in rows:
        lines.append(f"| {r.clients} | {r.requests} | {r.ok} | {r.rejected_429} | {r.errors} "
                     f"| {r.tok_per_s} | {r.ttft_p50_ms} / {r.ttft_p99_ms} "
                     f"| {r.itl_p50_ms} / {r.itl_p99_ms} | {r.max_429_ms} | {r.rss_mb} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("model", nargs="?", default="smollm2-135m", help="GGUF path or registry name")
    ap.add_argument("--url", help="benchmark a running server (loopback) instead of starting one")
    ap.add_argument("--model-id", default="", help="'model' field to send (default: none)")
    ap.add_argument("--clients", default="1,4,16,64")
    ap.add_argument("--requests", type=int, default=3, help="requests per client per round")
    ap.add_argument("--max-tokens", type=int, default=64)
    ap.add_argument("--parallel", type=int, default=4)
    ap.add_argument("--ctx-size", type=int, default=4096)
    ap.add_argument("--max-queue", type=int, default=16)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--repeat-last", type=int, default=1,
                    help="run the last round this many more times (RSS growth check)")
    ap.add_argument("--api-key", default=None)
    ap.add_argument("--out", default="", help="write the rounds as JSON here")
    args = ap.parse_args()

    proc, pid = None, None
    if args.url:
        host = httpx.URL(args.url).host
        if host not in ("127.0.0.1", "localhost", "::1"):
            raise SystemExit("only loopback servers are benchmarked")
        url = args.url.rstrip("/")
    else:
        proc, url = start_server(args)
        pid = proc.pid
    headers = {"Authorization": f"Bearer {args.api_key}"} if args.api_key else {}
    clients = [int(c) for c in args.clients.split(",")]
    clients += [clients[-1]] * args.repeat_last
    rows: list[RoundResult] = []
    try:
        asyncio.run(run_round(url, args.model_id, 1, 1, 4, headers))   # warm-up
        for n in clients:
            results, wall = asyncio.run(run_round(url, args.model_id, n, args.requests,
                                                  args.max_tokens, headers))
            rows.append(summarise(n, results, wall, pid))
            print(table(rows[-1:]).splitlines()[-1], flush=True)
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(10)
    print()
    print(f"model={args.model} parallel={args.parallel} ctx-size={args.ctx_size} "
          f"max-queue={args.max_queue} max-tokens={args.max_tokens} requests/client={args.requests}")
    print(table(rows))
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps({"args": vars(args), "rounds": [asdict(r) for r in rows]},
                                             indent=1))


if __name__ == "__main__":
    main()
