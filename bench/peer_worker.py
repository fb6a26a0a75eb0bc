"""One repetition of llama.cpp (llama-cpp-python) for bench/compare.py; prints one JSON object.

Runs in the peer's own environment, which has llama-cpp-python but not llamalite:
`PEER_PYTHON bench/peer_worker.py --speed PATH/llamalite/speed.py --model GGUF ...`.
It does the work of `python -m llamalite.speed` (see llamalite/speed.py) with
llama.cpp, on the same token ids: the prompts come from prompt_ids() and
parallel_prompts() of llamalite/speed.py, loaded by path (they need only numpy).

- pp / tg: the prompt in one llm.eval, then n_gen single-token evals.
- --parallel P1,P2,...: llama.cpp's low-level API, a context with n_seq_max = P,
  the prompts prefilled in one llama_decode, then one llama_decode of P tokens
  (one per sequence id) per step, each next token the argmax of its logits.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import time

import numpy as np


def load_speed(path: str):
    """llamalite/speed.py as a module of its own (llamalite itself is not importable here)."""
    spec = importlib.util.spec_from_file_location("llamalite_speed", path)
    if spec is None or spec.loader is None:
        raise SystemExit(f"--speed {path}: not a Python file")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod   # its dataclasses look their module up there
    spec.loader.exec_module(mod)
    return mod


def run_llamacpp(a, speed) -> dict:
    import llama_cpp

    t0 = time.perf_counter()
    # flash_attn=True: llama.cpp's default context setting is "auto" (on where supported),
    # but the Llama class turns it off; on, its pp512 is up to 13% faster here (SmolLM2)
    # and tg the same, so the peer runs at its best.
    llm = llama_cpp.Llama(a.model, n_ctx=a.n_prompt + a.n_gen + 16, n_batch=a.n_prompt,
                          n_ubatch=a.n_prompt, n_threads=a.threads, n_threads_batch=a.threads,
                          flash_attn=True, verbose=False)
    load_s = time.perf_counter() - t0
    prompt = speed.prompt_ids(llm.n_vocab(), a.n_prompt, a.seed).tolist()
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
                tg_tok_s=a.n_gen / tg_s, peak_rss_mb=speed.rss_peak_mb())


def cpp_parallel(llama_cpp, model_p, threads: int, prompts: list[list[int]],
                 n_gen: int) -> tuple[list[list[int]], float]:
    """Greedy generation with llama.cpp's low-level API: a context with
    n_seq_max = P (separate KV streams per sequence, kv_unified off, as llama.cpp
    advises for sequences without a shared prefix), the prompts prefilled in one
    llama_decode, then one llama_decode of P tokens (one per sequence id) per step."""
    n_seq = len(prompts)
    per_seq = max(len(p) for p in prompts) + n_gen
    params = llama_cpp.llama_context_default_params()
    params.n_ctx = n_seq * ((per_seq + 255) // 256 * 256)
    n_batch = max(sum(len(p) for p in prompts), n_seq)
    params.n_batch = params.n_ubatch = n_batch
    params.n_seq_max = n_seq
    params.kv_unified = False
    params.n_threads = params.n_threads_batch = threads
    # flash_attn_type stays llama.cpp's default (auto): about 10% faster here than the
    # Llama class's "disabled" for these short contexts, so the peer gets its best.
    ctx = llama_cpp.llama_init_from_model(model_p, params)
    if not ctx:
        raise RuntimeError(f"llama.cpp could not create a context for {n_seq} sequences")
    n_vocab = llama_cpp.llama_vocab_n_tokens(llama_cpp.llama_model_get_vocab(model_p))
    batch = llama_cpp.llama_batch_init(n_batch, 0, 1)
    try:
        def decode(items: list[tuple[int, int, int, bool]]) -> None:
            batch.n_tokens = len(items)
            for j, (tok, pos, seq, want) in enumerate(items):
                batch.token[j], batch.pos[j] = tok, pos
                batch.n_seq_id[j] = 1
                batch.seq_id[j][0] = seq
                batch.logits[j] = want
            rc = llama_cpp.llama_decode(ctx, batch)
            if rc != 0:
                raise RuntimeError(f"llama_decode returned {rc}")

        decode([(tok, pos, s, False) for s, p in enumerate(prompts)
                for pos, tok in enumerate(p[:-1])])
        tokens = [p[-1] for p in prompts]
        out: list[list[int]] = [[] for _ in prompts]
        t = time.perf_counter()
        for i in range(n_gen):
            decode([(tokens[s], len(p) - 1 + i, s, True) for s, p in enumerate(prompts)])
            for s in range(n_seq):
                row = np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(ctx, s), (n_vocab,))
                tokens[s] = int(np.argmax(row))
                out[s].append(tokens[s])
        decode_s = time.perf_counter() - t
    finally:
        llama_cpp.llama_batch_free(batch)
        llama_cpp.llama_free(ctx)
    return out, decode_s


def run_parallel_llamacpp(a, speed) -> dict:
    import llama_cpp

    llama_cpp.llama_backend_init()
    llama_cpp.llama_log_set(_quiet_log(llama_cpp), None)
    mparams = llama_cpp.llama_model_default_params()
    model_p = llama_cpp.llama_model_load_from_file(a.model.encode(), mparams)
    if not model_p:
        raise RuntimeError(f"llama.cpp could not load {a.model}")
    n_vocab = llama_cpp.llama_vocab_n_tokens(llama_cpp.llama_model_get_vocab(model_p))
    res = {}
    try:
        for n_seq in a.parallel:
            prompts = speed.parallel_prompts(n_seq, n_vocab, a.seed)
            _, decode_s = cpp_parallel(llama_cpp, model_p, a.threads, prompts, a.n_gen)
            res[str(n_seq)] = speed.parallel_result(n_seq, a.n_gen, decode_s)
    finally:
        llama_cpp.llama_model_free(model_p)
    return dict(parallel=res, peak_rss_mb=speed.rss_peak_mb())


_LOG_CALLBACK = None


def _quiet_log(llama_cpp):
    """A log callback that drops llama.cpp's messages (kept alive in a global)."""
    global _LOG_CALLBACK
    _LOG_CALLBACK = llama_cpp.llama_log_callback(lambda level, text, data: None)
    return _LOG_CALLBACK


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--speed", required=True, help="path of llamalite/speed.py (the prompts)")
    p.add_argument("--model", required=True)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--n-prompt", type=int, default=512)
    p.add_argument("--n-gen", type=int, default=128)
    p.add_argument("--seed", type=int, default=1234)
    p.add_argument("--parallel", type=lambda s: [int(x) for x in s.split(",")], default=None,
                   help="comma-separated sequence counts: measure aggregate generation only")
    a = p.parse_args()
    speed = load_speed(a.speed)
    res = run_parallel_llamacpp(a, speed) if a.parallel else run_llamacpp(a, speed)
    print(json.dumps(res))


if __name__ == "__main__":
    main()
