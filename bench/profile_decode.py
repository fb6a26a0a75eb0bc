"""Decode steps of a real model in a loop, for a profiler: `perf record -g python bench/profile_decode.py MODEL`.

Loads MODEL (a registry name or a GGUF path), runs a --prompt token prompt
(--prefill-reps times), then --steps single-token forward passes (positions
continuing), and prints the times. Meant to be run under perf / callgrind / py-spy; it does no
profiling itself.
"""
from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

import llamalite
from llamalite.model import Model


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("model")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--steps", type=int, default=64)
    p.add_argument("--prompt", type=int, default=64)
    p.add_argument("--prefill-reps", type=int, default=1,
                   help="run the prompt this many times (profile prefill with --steps 0)")
    a = p.parse_args()
    path = a.model if a.model.endswith(".gguf") else llamalite.pull(a.model)
    model = Model.load(str(path), n_threads=a.threads)
    block = 16
    n_blocks = (a.prompt + a.steps + block) // block + 1
    kv = model.new_kv_cache(n_blocks, block)
    table = np.arange(n_blocks, dtype=np.int32)[None, :]
    rng = np.random.default_rng(0)
    toks = rng.integers(10, model.n_vocab - 10, a.prompt + a.steps).astype(np.int32)

    def step(tokens: np.ndarray, start: int) -> np.ndarray:
        n = len(tokens)
        return model.forward(kv, tokens, np.arange(start, start + n, dtype=np.int32),
                             np.zeros(n, np.int32), table, np.array([n - 1], np.int32))

    for _ in range(a.prefill_reps):
        t = time.perf_counter()
        step(toks[:a.prompt], 0)
        print(f"prefill of {a.prompt} tokens: {1e3 * (time.perf_counter() - t):.1f} ms")
    if a.steps == 0:
        return
    times = []
    for i in range(a.steps):
        t = time.perf_counter()
        step(toks[a.prompt + i: a.prompt + i + 1], a.prompt + i)
        times.append(time.perf_counter() - t)
    print(f"{a.model}: median decode step {1e3 * statistics.median(times):.2f} ms "
          f"(min {1e3 * min(times):.2f}) over {a.steps} steps, {a.threads} threads")


if __name__ == "__main__":
    main()
