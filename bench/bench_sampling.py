"""Per-token cost of the sampler (µs/token) for both real vocabulary sizes.

    python bench/bench_sampling.py [--steps 300]

Logits are random normal * 3 (flat: a worst case for top-p, whose nucleus then
holds a large part of the vocabulary), or with --real the models' own log-probs
on tests/data/english.txt (peaked, as in generation). The history is 256 tokens.
Each configuration calls Sampler.sample once per step, as the decode loop does.
"""
from __future__ import annotations

import argparse
import time

import numpy as np

from llamalite.sampling import Sampler, SamplingParams

VOCABS = {"smollm2 (49,152)": (49_152, "smollm2-135m"), "gemma3 (262,144)": (262_144, "gemma3-270m")}
CONFIGS = {
    "greedy": dict(temperature=0.0),
    "default (top_k 40, top_p .95, min_p .05)": dict(),
    "default + repeat/presence/frequency penalties": dict(repeat_penalty=1.1, presence_penalty=0.2,
                                                          frequency_penalty=0.1),
    "default + logprobs=5": dict(logprobs=5),
    "top_k off, top_p .9": dict(top_k=0, top_p=0.9, min_p=0.0),
    "top_k off, top_p 1, min_p .05": dict(top_k=0, top_p=1.0, min_p=0.05),
    "greedy + logprobs=5": dict(temperature=0.0, logprobs=5),
}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--real", action="store_true", help="the real models' logits on English text")
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    for vname, (n_vocab, model) in VOCABS.items():
        if args.real:
            from pathlib import Path

            import llamalite
            llm = llamalite.LLM(model, n_ctx=256, n_threads=1)
            text = (Path(__file__).parent.parent / "tests/data/english.txt").read_text()
            rows = llm.logits(llm.tokenize(text)[:64])
            logits = [np.ascontiguousarray(rows[i]) for i in range(8, 64, 7)]
        else:
            logits = [(3 * rng.standard_normal(n_vocab)).astype(np.float32) for _ in range(8)]
        history = rng.integers(0, n_vocab, 256).tolist()
        print(f"vocabulary {vname}")
        for cname, kw in CONFIGS.items():
            s = Sampler(SamplingParams(seed=0, **kw), n_vocab)
            for i in range(10):
                s.sample(logits[i % 8], history)
            t0 = time.perf_counter()
            for i in range(args.steps):
                s.sample(logits[i % 8], history)
            us = (time.perf_counter() - t0) / args.steps * 1e6
            print(f"  {cname:<48} {us:8.1f} µs/token")


if __name__ == "__main__":
    main()
