"""Prefix caching: time to first token for a repeated ~500-token system prompt, cold vs warm.

    python bench/prefix_cache.py smollm2-135m

Runs the engine directly (no HTTP). The first request computes the whole prompt; later
requests with the same system prompt and a different question reuse its full KV blocks.
Prints TTFT cold vs warm (median of the warm ones), the saving, and the hit rate.
"""
from __future__ import annotations

import argparse
import queue
import statistics
import time

import llamalite
from llamalite.engine import Engine
from llamalite.model import Model
from llamalite.sampling import SamplingParams
from llamalite.tokenizer import Tokenizer

SYSTEM = ("You are a meticulous assistant for a small engineering team. Answer briefly, cite "
          "units, prefer metric, and say when you are unsure. ") * 20
QUESTIONS = ["What is the boiling point of water?", "How long is a marathon?",
             "What is the speed of light?", "How heavy is a litre of water?",
             "What is the freezing point of mercury?", "How tall is Mount Everest?"]


def ttft(engine: Engine, ids: list[int]) -> float:
    q: queue.Queue = queue.Queue()
    t0 = time.perf_counter()
    engine.submit(ids, SamplingParams(temperature=0.0, max_tokens=1), q.put)
    while True:
        chunk = q.get()
        if chunk.token_ids or chunk.finish_reason:
            t = time.perf_counter() - t0
            while chunk.finish_reason is None:
                chunk = q.get()
            return t


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("model", nargs="?", default="smollm2-135m")
    ap.add_argument("--system-tokens", type=int, default=500)
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args()
    model = Model.load(str(llamalite.resolve_model(args.model)), n_threads=args.threads)
    tok = Tokenizer.from_metadata(model.gguf.metadata)
    system = tok.tokenize(SYSTEM, add_special=True)[:args.system_tokens]
    prompts = [system + tok.tokenize(" " + q, add_special=False) for q in QUESTIONS]
    with Engine(model, tok, n_parallel=1, ctx_size=2048) as eng:
        cold = ttft(eng, prompts[0])
        warm = [ttft(eng, p) for p in prompts[1:]]
        s = eng.stats()
    w = statistics.median(warm)
    print(f"model={args.model} system prompt={len(system)} tokens, prompts "
          f"{min(map(len, prompts))}-{max(map(len, prompts))} tokens")
    print(f"TTFT cold {cold * 1e3:.1f} ms, warm median {w * 1e3:.1f} ms "
          f"(saving {(1 - w / cold) * 100:.0f}%), prefix-cache hit rate {s.prefix_cache_hit_rate:.2f} "
          f"({s.prefix_cache_hit_tokens} of {s.prompt_tokens} prompt tokens)")


if __name__ == "__main__":
    main()
