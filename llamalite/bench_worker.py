"""One benchmark repetition in a fresh process, for llamalite or llama.cpp.

Run as `python llamalite/bench_worker.py --engine llamalite|llamacpp --model PATH ...`; prints
one JSON object. A fresh process per repetition makes load time and peak RSS
honest (nothing cached in the interpreter) and lets the two engines run from
different Python environments (llama-cpp-python lives outside the project).

Both engines do the same work, the way llama-bench measures it: a prompt of
n_prompt random token ids processed in one batch (pp), then n_gen tokens
generated one at a time from those random ids (tg), greedy-free: the next input
is a fixed token, so sampling is not part of the figure.
"""
from __future__ import annotations

import argparse
import json
import resource
import time

import numpy as np


def _rss_peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


def run_llamacpp(a) -> dict:
    import llama_cpp

    t0 = time.perf_counter()
    llm = llama_cpp.Llama(a.model, n_ctx=a.n_prompt + a.n_gen + 16, n_batch=a.n_prompt,
                          n_ubatch=a.n_prompt, n_threads=a.threads, n_threads_batch=a.threads,
                          verbose=False)
    load_s = time.perf_counter() - t0
    rng = np.random.default_rng(a.seed)
    n_vocab = llm.n_vocab()
    prompt = rng.integers(10, n_vocab - 10, a.n_prompt).tolist()
    # load -> first token: a one-token prompt right after load
    llm.eval(prompt[:1])
    first_s = time.perf_counter() - t0
    llm.reset()
    t = time.perf_counter()
    llm.eval(prompt)
    pp_s = time.perf_counter() - t
    t = time.perf_counter()
    for i in range(a.n_gen):
        llm.eval([prompt[i % a.n_prompt]])
    tg_s = time.perf_counter() - t
    return dict(load_s=load_s, first_token_s=first_s, pp_tok_s=a.n_prompt / pp_s,
                tg_tok_s=a.n_gen / tg_s, peak_rss_mb=_rss_peak_mb())


def run_llamalite(a) -> dict:
    from llamalite.model import Model

    t0 = time.perf_counter()
    model = Model.load(a.model, n_threads=a.threads)
    block = 16
    n_ctx = a.n_prompt + a.n_gen + 16
    n_blocks = (n_ctx + block - 1) // block
    kv = model.new_kv_cache(n_blocks, block)
    load_s = time.perf_counter() - t0
    table = np.arange(n_blocks, dtype=np.int32)[None, :]
    rng = np.random.default_rng(a.seed)
    prompt = rng.integers(10, model.n_vocab - 10, a.n_prompt).astype(np.int32)

    def step(tokens: np.ndarray, start: int) -> np.ndarray:
        n = len(tokens)
        return model.forward(kv, tokens, np.arange(start, start + n, dtype=np.int32),
                             np.zeros(n, np.int32), table, np.array([n - 1], np.int32))

    step(prompt[:1], 0)
    first_s = time.perf_counter() - t0
    t = time.perf_counter()
    step(prompt, 0)
    pp_s = time.perf_counter() - t
    t = time.perf_counter()
    for i in range(a.n_gen):
        step(prompt[i % a.n_prompt: i % a.n_prompt + 1], a.n_prompt + i)
    tg_s = time.perf_counter() - t
    return dict(load_s=load_s, first_token_s=first_s, pp_tok_s=a.n_prompt / pp_s,
                tg_tok_s=a.n_gen / tg_s, peak_rss_mb=_rss_peak_mb())


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--engine", choices=["llamalite", "llamacpp"], required=True)
    p.add_argument("--model", required=True)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--n-prompt", type=int, default=512)
    p.add_argument("--n-gen", type=int, default=128)
    p.add_argument("--seed", type=int, default=1234)
    a = p.parse_args()
    res = run_llamacpp(a) if a.engine == "llamacpp" else run_llamalite(a)
    print(json.dumps(res))


if __name__ == "__main__":
    main()
