"""End-to-end speed of the Python API: what `LLM.generate` delivers, front end included.

`llamalite bench` times the model's forward pass alone; this script times the same work
through `LLM.generate` (tokens in, engine, sampler, detokenizer, result out), so the two
side by side show what the front end costs. Prompts are random token ids, a new one per
repetition, so no repetition reuses another's cached prefix.

    python bench/api_speed.py smollm2-135m --reps 5
    python bench/api_speed.py gemma3-270m --threads 2 --json

prompt tok/s:  n_prompt / time of generate(prompt of n_prompt ids, max_tokens=1)
decode tok/s:  n_gen / (time of generate(16 ids, max_tokens=n_gen + 1) - time of
               generate(16 other ids, max_tokens=1))
Medians over the repetitions. To compare two builds, run each build's interpreter in
turn (interleaved), on the same machine, and compare the medians.
"""
from __future__ import annotations

import argparse
import json
import statistics
import time

import numpy as np

import llamalite


def _timed(llm: llamalite.LLM, ids: list[int], n: int) -> float:
    t0 = time.perf_counter()
    out = llm.generate(ids, temperature=0.0, max_tokens=n, ignore_eos=True)
    dt = time.perf_counter() - t0
    assert out.usage.completion_tokens == n, out.usage
    return dt


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("model", help="a GGUF path or a registry name")
    ap.add_argument("--n-prompt", type=int, default=512)
    ap.add_argument("--n-gen", type=int, default=128)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    a = ap.parse_args()

    llm = llamalite.LLM(a.model, n_ctx=a.n_prompt + a.n_gen + 16, n_threads=a.threads)
    rng = np.random.default_rng(0)
    vocab = llm.n_vocab

    def prompt(n: int) -> list[int]:
        return [int(t) for t in rng.integers(1000, min(vocab, 30000), n)]

    _timed(llm, prompt(a.n_prompt), 2)                         # warm-up
    pp, tg = [], []
    for _ in range(a.reps):
        pp.append(a.n_prompt / _timed(llm, prompt(a.n_prompt), 1))
        t_first = _timed(llm, prompt(16), 1)
        t_all = _timed(llm, prompt(16), a.n_gen + 1)
        tg.append(a.n_gen / max(t_all - t_first, 1e-9))
    result = {"model": a.model, "n_prompt": a.n_prompt, "n_gen": a.n_gen, "reps": a.reps,
              "prompt_tok_s": statistics.median(pp), "decode_tok_s": statistics.median(tg)}
    if a.json:
        print(json.dumps(result))
    else:
        print(f"{a.model}: prompt {result['prompt_tok_s']:.1f} tok/s, "
              f"decode {result['decode_tok_s']:.1f} tok/s (medians of {a.reps})")


if __name__ == "__main__":
    main()
