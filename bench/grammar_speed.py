"""What structured output costs: per-token time with a JSON schema against unconstrained
decoding, with 1 and 8 parallel sequences, plus the schema compile time and the mask time
per step (llamalite/grammar.py).

    python bench/grammar_speed.py smollm2-135m gemma3-270m --reps 3

Both runs decode the same number of tokens from the same prompts: the constrained run
first (the schema allows long strings, so it runs to max_tokens), then unconstrained
with ignore_eos. Repetitions alternate the two; medians are reported.
"""
from __future__ import annotations

import argparse
import statistics
import time

import llamalite

# minItems keeps every constrained reply going to max_tokens, so both runs decode the same
# number of tokens with every sequence in every step.
SCHEMA = {"type": "array", "minItems": 1000,
          "items": {"type": "object",
                    "properties": {"name": {"type": "string", "maxLength": 16},
                                   "note": {"type": "string", "maxLength": 40},
                                   "count": {"type": "integer", "minimum": 0}},
                    "required": ["name", "note", "count"], "additionalProperties": False}}
PROMPT = "List some fruits with a note and a count on each, as JSON:"


def _run(llm: llamalite.LLM, n_seq: int, n_gen: int, constrained: bool) -> float:
    """Seconds per decoded token of one sequence (wall time / tokens per sequence)."""
    kw = dict(json_schema=SCHEMA) if constrained else dict(ignore_eos=True)
    t0 = time.perf_counter()
    outs = llm.generate_batch([PROMPT] * n_seq, temperature=0.7, max_tokens=n_gen, **kw)
    dt = time.perf_counter() - t0
    assert all(o.usage.completion_tokens == n_gen for o in outs), "a reply ended early"
    return dt / n_gen


def _mask_cost(llm: llamalite.LLM, n_steps: int = 64) -> tuple[float, float]:
    """(schema compile seconds, mask compute + apply seconds per step) on this model."""
    import numpy as np
    params = llamalite.SamplingParams(json_schema=SCHEMA)
    llm.engine.grammars.compile(params)                       # llguidance's vocabulary view
    t0 = time.perf_counter()
    mask = llm.engine.grammars.compile(params)
    compile_s = time.perf_counter() - t0
    logits = np.zeros(llm.n_vocab, dtype=np.float32)
    text = llm.tokenize('[{"name": "apple", "note": "red and sweet", "count": 3}, '
                        '{"name": "pear", "note": "green", "count": 12}, ', add_special=False)
    t0 = time.perf_counter()
    steps = 0
    for tok in text[:n_steps]:
        mask.compute()
        mask.apply(logits)
        mask.consume(tok)
        steps += 1
    return compile_s, (time.perf_counter() - t0) / max(steps, 1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("models", nargs="+")
    ap.add_argument("--n-gen", type=int, default=64)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--threads", type=int, default=None)
    a = ap.parse_args()
    print(f"{'model':<16} {'seqs':>4} {'free ms/tok':>12} {'schema ms/tok':>14} {'ratio':>6}"
          f" {'compile ms':>11} {'mask ms/step':>13}")
    for name in a.models:
        with llamalite.LLM(name, n_ctx=4096, n_parallel=8, n_threads=a.threads, seed=0) as llm:
            compile_s, mask_s = _mask_cost(llm)
            for n_seq in (1, 8):
                _run(llm, n_seq, 8, True)                        # warm-up
                free, fixed = [], []
                for _ in range(a.reps):
                    fixed.append(_run(llm, n_seq, a.n_gen, True))
                    free.append(_run(llm, n_seq, a.n_gen, False))
                f, c = statistics.median(free), statistics.median(fixed)
                print(f"{name:<16} {n_seq:>4} {f * 1e3:>12.2f} {c * 1e3:>14.2f} {c / f:>6.2f}"
                      f" {compile_s * 1e3:>11.2f} {mask_s * 1e3:>13.3f}")


if __name__ == "__main__":
    main()
