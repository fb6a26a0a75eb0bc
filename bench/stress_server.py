"""Hostile-client stress run for `llamalite serve`, to compare release to release.

Phases, each while a prober GETs /health every 50 ms (its slowest answer is reported):
  1. hostile bodies: 8 MB prompts, 100,000-deep JSON, huge token lists, bodies over the
     limit, non-JSON content types, unknown and structured-output fields, bad UTF-8,
     a foreign Host, and raw requests h11 cannot parse (NUL in a header, bad Content-Length);
  2. slowloris: connections that trickle a request head, and bodies shorter than their
     Content-Length (the server should close them at its header / body timeout);
  3. load: C clients x R streaming chat requests each (200 / 429 / other counts);
  4. dropped streams: D streaming requests closed after their first event; then the
     running slots and KV blocks in use, from /metrics, until they are back to 0.
Then /metrics' refusal counters and the server's RSS.

    python bench/stress_server.py smollm2-135m               # starts a server on loopback
    python bench/stress_server.py --url http://127.0.0.1:8080 --pid 1234

Only loopback addresses are used. Every loop is bounded in count and time.
"""
from __future__ import annotations

import argparse
import asyncio
import collections
import json
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).parent))
from load import free_port, rss_mb, wait_ready  # noqa: E402  (bench/load.py beside this file)

MSGS = [{"role": "user", "content": "Say hello."}]
JSON = {"content-type": "application/json"}


# --- /health prober ------------------------------------------------------------------------

class HealthProbe:
    """GET /health every 50 ms from a separate process (so the load generator's own GIL does
    not delay it); each answer's latency is attributed to the phase running when it was sent,
    and the slowest per phase is kept."""

    PROBER = """
import sys, time, httpx
url, end = sys.argv[1], time.time() + float(sys.argv[2])
with httpx.Client(timeout=30) as c:
    while time.time() < end:
        t, t0 = time.time(), time.perf_counter()
        try:
            ok = c.get(url + "/health").status_code == 200
        except httpx.HTTPError:
            ok = False
        print(t, time.perf_counter() - t0, int(ok), flush=True)
        time.sleep(0.05)
"""

    def __init__(self, url: str, max_s: float) -> None:
        self.proc = subprocess.Popen([sys.executable, "-c", self.PROBER, url, str(max_s)],
                                     stdout=subprocess.PIPE, text=True)
        self.marks: list[tuple[float, str]] = [(0.0, "idle")]
        self.worst: dict[str, float] = collections.defaultdict(float)
        self.failures: dict[str, int] = collections.defaultdict(int)

    @property
    def phase(self) -> str:
        return self.marks[-1][1]

    @phase.setter
    def phase(self, name: str) -> None:
        self.marks.append((time.time(), name))

    def finish(self) -> None:
        """Stop the prober and attribute its samples to the phases."""
        self.proc.terminate()
        out, _ = self.proc.communicate(timeout=30)
        for line in out.splitlines():
            t, dt, ok = line.split()
            phase = [name for start, name in self.marks if start <= float(t)][-1]
            self.worst[phase] = max(self.worst[phase], float(dt))
            self.failures[phase] += ok == "0"


# --- phase 1: hostile bodies ---------------------------------------------------------------

def hostile_cases(body_bytes: int, prompt_chars: int) -> list[tuple[str, str, bytes, dict]]:
    """Bodies up to the server's body limit (body_bytes) and prompts at its character limit
    (prompt_chars: tokenized, the most CPU one request can cost)."""
    deep = 100_000
    fill = body_bytes - 64

    def js(obj) -> bytes:
        return json.dumps(obj).encode()
    return [
        ("spaces at the char limit", "/v1/completions",
         js({"prompt": " " * prompt_chars, "max_tokens": 1}), JSON),
        ("one word at char limit", "/tokenize", js({"content": "a" * prompt_chars}), JSON),
        ("body-limit spaces", "/v1/completions", js({"prompt": " " * fill}), JSON),
        ("body-limit token ids", "/v1/completions", js({"prompt": [1] * (fill // 3)}), JSON),
        ("body-limit messages", "/v1/chat/completions",
         js({"messages": [{"role": "user", "content": ""}] * (fill // 40)}), JSON),
        ("100,000-deep messages", "/v1/chat/completions",
         b'{"messages": ' + b"[" * deep + b"]" * deep + b"}", JSON),
        ("100,000-deep /tokenize", "/tokenize", b'{"content": ' + b"[" * deep + b"]" * deep + b"}",
         JSON),
        ("8 MiB body", "/v1/completions", js({"prompt": "a" * (8 << 20)}), JSON),
        ("text/plain body", "/v1/chat/completions", js({"messages": MSGS}),
         {"content-type": "text/plain"}),
        ("unknown field", "/v1/chat/completions", js({"messages": MSGS, "frobnicate": 1}), JSON),
        ("tools", "/v1/chat/completions", js({"messages": MSGS, "tools": []}), JSON),
        ("user: 5", "/v1/chat/completions", js({"messages": MSGS, "user": 5}), JSON),
        ("bad UTF-8", "/tokenize", b'{"content": "\xff\xfe"}', JSON),
        ("foreign Host", "/tokenize", b'{"content": "a"}', {**JSON, "host": "evil.example"}),
    ]


RAW_CASES = [
    ("NUL in a header", b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX: a\x00b\r\n\r\n"),
    ("Content-Length: abc", b"POST /tokenize HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                            b"Content-Type: application/json\r\nContent-Length: abc\r\n\r\n{}"),
]


def raw_request(port: int, data: bytes, timeout_s: float = 30) -> int:
    """Send raw bytes, read until the server closes; the status code (0: none)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout_s) as sock:
        try:
            sock.sendall(data)
        except OSError:
            pass
        got = b""
        for _ in range(1000):
            try:
                chunk = sock.recv(65536)
            except OSError:
                break
            if not chunk:
                break
            got += chunk
    try:
        return int(got.split(b" ", 2)[1])
    except (IndexError, ValueError):
        return 0


def phase_hostile(url: str, port: int, headers: dict, reps: int, body_bytes: int,
                  prompt_chars: int, probe: "HealthProbe") -> list[str]:
    lines = []
    with httpx.Client(timeout=300) as client:
        for name, path, body, extra in hostile_cases(body_bytes, prompt_chars):
            probe.phase = f"hostile: {name}"
            codes, worst = collections.Counter(), 0.0
            for _ in range(reps):
                t0 = time.perf_counter()
                try:
                    codes[client.post(url + path, content=body,
                                      headers={**headers, **extra}).status_code] += 1
                except httpx.HTTPError as e:
                    codes[type(e).__name__] += 1
                worst = max(worst, time.perf_counter() - t0)
            lines.append(f"  {name:<24} {dict(codes)}  slowest {worst * 1000:.0f} ms")
            print(lines[-1], flush=True)
    probe.phase = "hostile: raw"
    for name, data in RAW_CASES:
        codes = collections.Counter(raw_request(port, data) for _ in range(reps))
        lines.append(f"  {name:<24} {dict(codes)}")
    return lines


# --- phase 2: slowloris ----------------------------------------------------------------------

def phase_slowloris(port: int, n: int, limit_s: float) -> list[str]:
    """n connections trickling a head one byte per 0.2 s and n short bodies; how many the
    server closed (and with which status) within limit_s."""
    socks = []
    for i in range(2 * n):
        s = socket.create_connection(("127.0.0.1", port), timeout=5)
        s.setblocking(False)
        if i >= n:      # a body shorter than its Content-Length
            s.sendall(b"POST /tokenize HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: "
                      b"application/json\r\nContent-Length: 1000\r\n\r\n{\"content\": \"")
        socks.append(s)
    head = b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: " + b"a" * 10_000
    closed: dict[int, bytes] = {}
    t0 = time.time()
    for step in range(int(limit_s / 0.2) + 1):
        for i, s in enumerate(socks):
            if i in closed:
                continue
            try:
                data = s.recv(65536)
                closed[i] = data if data else closed.get(i, b"")
                continue
            except BlockingIOError:
                pass
            except OSError:
                closed[i] = b""
                continue
            if i < n and step < len(head):
                try:
                    s.send(head[step:step + 1])
                except OSError:
                    closed[i] = b""
        if len(closed) == len(socks) or time.time() - t0 > limit_s:
            break
        time.sleep(0.2)
    for s in socks:
        s.close()

    def status(data: bytes) -> str:
        parts = data.split(b" ", 2)
        return parts[1].decode() if len(parts) > 1 else "closed"
    heads = collections.Counter(status(closed[i]) for i in range(n) if i in closed)
    bodies = collections.Counter(status(closed[i]) for i in range(n, 2 * n) if i in closed)
    return [f"  trickled heads: {sum(heads.values())}/{n} closed by the server {dict(heads)}",
            f"  short bodies:   {sum(bodies.values())}/{n} closed by the server {dict(bodies)}",
            f"  within {time.time() - t0:.1f} s"]


# --- phases 3 and 4: load and dropped streams -------------------------------------------------

async def chat_stream(client: httpx.AsyncClient, url: str, headers: dict, max_tokens: int,
                      drop: bool) -> int | str:
    body = {"messages": MSGS, "max_tokens": max_tokens, "stream": True}
    try:
        async with client.stream("POST", url + "/v1/chat/completions", json=body,
                                 headers=headers) as r:
            async for _ in r.aiter_lines():
                if drop:
                    break
            return r.status_code
    except httpx.HTTPError as e:
        return type(e).__name__


async def load_round(url: str, headers: dict, clients: int, requests: int,
                     max_tokens: int) -> collections.Counter:
    limits = httpx.Limits(max_connections=clients + 8)
    async with httpx.AsyncClient(timeout=300, limits=limits) as client:
        async def one(_: int) -> list:
            return [await chat_stream(client, url, headers, max_tokens, False)
                    for _ in range(requests)]
        results = await asyncio.gather(*[one(i) for i in range(clients)])
    return collections.Counter(x for rs in results for x in rs)


async def drop_streams(url: str, headers: dict, n: int) -> collections.Counter:
    async with httpx.AsyncClient(timeout=300, limits=httpx.Limits(max_connections=16)) as client:
        sem = asyncio.Semaphore(16)

        async def one(_: int):
            async with sem:
                return await chat_stream(client, url, headers, 2000, True)
        return collections.Counter(await asyncio.gather(*[one(i) for i in range(n)]))


def metrics(url: str, headers: dict) -> dict[str, float]:
    out = {}
    for line in httpx.get(url + "/metrics", headers=headers, timeout=30).text.splitlines():
        if line.startswith("llamalite_"):
            name, _, value = line.rpartition(" ")
            out[name[len("llamalite_"):]] = float(value)
    return out


def wait_freed(url: str, headers: dict, limit_s: float) -> tuple[float, dict]:
    t0 = time.time()
    for _ in range(int(limit_s * 10)):
        m = metrics(url, headers)
        if m.get("requests_running", 1) == 0 and m.get("kv_blocks_used", 1) == 0:
            break
        time.sleep(0.1)
    return time.time() - t0, m


# --- main ----------------------------------------------------------------------------------

def start_server(args) -> tuple[subprocess.Popen, str, int]:
    port = free_port()
    cmd = [sys.executable, "-m", "llamalite.cli.main", "serve", args.model, "--host", "127.0.0.1",
           "--port", str(port), "--parallel", str(args.parallel), "--ctx-size", str(args.ctx_size),
           "--max-queue", str(args.max_queue), "--log-level", "warning",
           "--header-timeout", str(args.header_timeout), "--body-timeout", str(args.body_timeout)]
    proc = subprocess.Popen(cmd, cwd="/tmp")
    url = f"http://127.0.0.1:{port}"
    wait_ready(proc, url, "server", timeout_s=120)
    return proc, url, port


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("model", nargs="?", default="smollm2-135m", help="GGUF path or registry name")
    ap.add_argument("--url", help="a running server on loopback instead of starting one")
    ap.add_argument("--pid", type=int, help="the running server's process id (for its RSS)")
    ap.add_argument("--api-key", default=None)
    ap.add_argument("--parallel", type=int, default=4)
    ap.add_argument("--ctx-size", type=int, default=4096)
    ap.add_argument("--max-queue", type=int, default=16)
    ap.add_argument("--header-timeout", type=float, default=2.0, help="for a started server")
    ap.add_argument("--body-timeout", type=float, default=4.0, help="for a started server")
    ap.add_argument("--reps", type=int, default=2, help="repetitions of each hostile body")
    ap.add_argument("--body-bytes", type=int, default=1 << 20,
                    help="the server's body limit (default: the default for --ctx-size 4096)")
    ap.add_argument("--prompt-chars", type=int, default=0,
                    help="the server's prompt limit in characters (default: 32 x --ctx-size)")
    ap.add_argument("--slowloris", type=int, default=50, help="trickling connections (x2)")
    ap.add_argument("--slowloris-limit", type=float, default=30.0, help="seconds to wait")
    ap.add_argument("--clients", type=int, default=64)
    ap.add_argument("--requests", type=int, default=8)
    ap.add_argument("--max-tokens", type=int, default=16)
    ap.add_argument("--drops", type=int, default=100)
    args = ap.parse_args()

    proc = None
    if args.url:
        url = args.url.rstrip("/")
        if httpx.URL(url).host not in ("127.0.0.1", "localhost", "::1"):
            raise SystemExit("only loopback servers are stressed")
        port, pid = httpx.URL(url).port or 80, args.pid
    else:
        proc, url, port = start_server(args)
        pid = proc.pid
    headers = {"Authorization": f"Bearer {args.api_key}"} if args.api_key else {}
    probe = HealthProbe(url, max_s=3600)
    report: list[str] = []
    try:
        t0 = time.time()
        report += ["hostile bodies (status counts):"] + phase_hostile(
            url, port, headers, args.reps, args.body_bytes, args.prompt_chars or 32 * args.ctx_size,
            probe)
        probe.phase = "slowloris"
        report += ["slowloris:"] + phase_slowloris(port, args.slowloris, args.slowloris_limit)
        probe.phase = "load"
        codes = asyncio.run(load_round(url, headers, args.clients, args.requests, args.max_tokens))
        report += [f"load: {args.clients} clients x {args.requests} streaming chats: {dict(codes)}"]
        probe.phase = "drops"
        codes = asyncio.run(drop_streams(url, headers, args.drops))
        freed_s, m = wait_freed(url, headers, 60)
        report += [f"dropped streams: {args.drops}: {dict(codes)}; slots and KV blocks freed "
                   f"after {freed_s:.1f} s: running={m.get('requests_running')} "
                   f"kv_blocks_used={m.get('kv_blocks_used')} "
                   f"cancelled_total={m.get('requests_cancelled_total')}"]
        probe.phase = "idle"
        responses = {k.split('"')[1]: int(v) for k, v in m.items()
                     if k.startswith("http_responses_total{")}
        report += [f"metrics: requests_rejected_total={m.get('requests_rejected_total')} "
                   f"http_errors_total={m.get('http_errors_total')} responses={responses}",
                   f"server RSS: {rss_mb(pid) if pid else None} MB; wall {time.time() - t0:.0f} s"]
    finally:
        probe.finish()
        if proc is not None:
            proc.terminate()
            proc.wait(20)
    report += [f"  /health at most {v * 1000:.0f} ms during {k}" for k, v in probe.worst.items()
               if k.startswith("hostile: ")]
    hostile = [v for k, v in probe.worst.items() if k.startswith("hostile")]
    phases = {"hostile": max(hostile, default=0.0),
              **{k: v for k, v in probe.worst.items() if not k.startswith("hostile")}}
    report += ["max /health latency by phase: " + ", ".join(
        f"{k} {v * 1000:.0f} ms" for k, v in phases.items()) +
        f"; /health failures: {sum(probe.failures.values())}"]
    print("\n".join(report))


if __name__ == "__main__":
    main()
