"""One benchmark repetition in a fresh process, for llamalite or llama.cpp.

Run as `python llamalite/bench_worker.py --engine llamalite|llamacpp --model PATH ...`; prints
one JSON object. A fresh process per repetition makes load time and peak RSS
honest (nothing cached in the interpreter) and lets the two engines run from
different Python environments (llama-cpp-python lives outside the project).

Both engines do the same work, the way llama-bench measures it: a prompt of
n_prompt random token ids processed in one batch (pp), then n_gen tokens
generated one at a time from those random ids (tg), greedy-free: the next input
is a fixed token, so sampling is not part of the figure.

With --parallel P1,P2,... the worker measures aggregate generation instead: for
each P, P sequences with short distinct prompts (random token ids, 6-9 tokens)
are prefilled together, then n_gen decode steps follow, each ONE forward call
(llamalite: Model.forward, the call the batching engine's step makes; llama.cpp:
one llama_decode) carrying one token of every sequence; the next input of each
sequence is the argmax of its logits. Only the decode steps are timed:
aggregate tok/s = P * n_gen / (time from the first decode step to the end of the
last, greedy argmax included).
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
    # flash_attn=True: llama.cpp's default context setting is "auto" (on where supported),
    # but the Llama class turns it off; on, its pp512 is up to 13% faster here (SmolLM2)
    # and tg the same, so the peer runs at its best.
    llm = llama_cpp.Llama(a.model, n_ctx=a.n_prompt + a.n_gen + 16, n_batch=a.n_prompt,
                          n_ubatch=a.n_prompt, n_threads=a.threads, n_threads_batch=a.threads,
                          flash_attn=True, verbose=False)
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


def parallel_prompts(n_seq: int, n_vocab: int, seed: int) -> list[list[int]]:
    """n_seq short distinct prompts of random token ids (lengths 6-9, one rng per sequence)."""
    out = []
    for s in range(n_seq):
        rng = np.random.default_rng([seed, s])
        out.append(rng.integers(10, n_vocab - 10, 6 + s % 4).tolist())
    return out


def lite_parallel(model, prompts: list[list[int]], n_gen: int,
                  block: int = 16) -> tuple[list[list[int]], float]:
    """Greedy generation of n_gen tokens for every prompt at once with llamalite.

    The prompts (all but their last token) are prefilled in one forward call; then
    each of the n_gen decode steps is one Model.forward over one token per sequence
    (the last prompt token first), and each sequence's next token is the argmax of
    its logits row. Returns (tokens [P][n_gen], seconds spent in the decode steps)."""
    n_seq = len(prompts)
    per_seq = max(len(p) for p in prompts) + n_gen
    blocks_per_seq = (per_seq + block - 1) // block
    kv = model.new_kv_cache(n_seq * blocks_per_seq, block)
    # [P, blocks_per_seq]: sequence s owns blocks s*blocks_per_seq ...
    tables = np.arange(n_seq * blocks_per_seq, dtype=np.int32).reshape(n_seq, blocks_per_seq)
    pre_tok = np.concatenate([np.asarray(p[:-1], np.int32) for p in prompts])
    pre_pos = np.concatenate([np.arange(len(p) - 1, dtype=np.int32) for p in prompts])
    pre_seq = np.concatenate([np.full(len(p) - 1, s, np.int32) for s, p in enumerate(prompts)])
    model.forward(kv, pre_tok, pre_pos, pre_seq, tables, np.array([len(pre_tok) - 1], np.int32))
    tokens = np.array([p[-1] for p in prompts], np.int32)          # [P] next input per sequence
    positions = np.array([len(p) - 1 for p in prompts], np.int32)  # [P]
    seq_ids = np.arange(n_seq, dtype=np.int32)                     # [P]
    rows = np.arange(n_seq, dtype=np.int32)                        # [P] logits for every token
    out = np.empty((n_gen, n_seq), np.int32)                       # [n_gen, P]
    t = time.perf_counter()
    for i in range(n_gen):
        logits = model.forward(kv, tokens, positions + i, seq_ids, tables, rows)  # [P, n_vocab]
        tokens = np.argmax(logits, axis=1).astype(np.int32)
        out[i] = tokens
    decode_s = time.perf_counter() - t
    return out.T.tolist(), decode_s


def cpp_parallel(llama_cpp, model_p, threads: int, prompts: list[list[int]],
                 n_gen: int) -> tuple[list[list[int]], float]:
    """The same greedy generation with llama.cpp's low-level API: a context with
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


def _parallel_result(n_seq: int, n_gen: int, decode_s: float) -> dict:
    return dict(tok_s=n_seq * n_gen / decode_s, decode_s=decode_s, n_tokens=n_seq * n_gen)


def run_parallel_llamalite(a) -> dict:
    from llamalite.model import Model

    model = Model.load(a.model, n_threads=a.threads)
    res = {}
    for n_seq in a.parallel:
        prompts = parallel_prompts(n_seq, model.n_vocab, a.seed)
        _, decode_s = lite_parallel(model, prompts, a.n_gen)
        res[str(n_seq)] = _parallel_result(n_seq, a.n_gen, decode_s)
    return dict(parallel=res, peak_rss_mb=_rss_peak_mb())


def run_parallel_llamacpp(a) -> dict:
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
            prompts = parallel_prompts(n_seq, n_vocab, a.seed)
            _, decode_s = cpp_parallel(llama_cpp, model_p, a.threads, prompts, a.n_gen)
            res[str(n_seq)] = _parallel_result(n_seq, a.n_gen, decode_s)
    finally:
        llama_cpp.llama_model_free(model_p)
    return dict(parallel=res, peak_rss_mb=_rss_peak_mb())


_LOG_CALLBACK = None


def _quiet_log(llama_cpp):
    """A log callback that drops llama.cpp's messages (kept alive in a global)."""
    global _LOG_CALLBACK
    _LOG_CALLBACK = llama_cpp.llama_log_callback(lambda level, text, data: None)
    return _LOG_CALLBACK


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--engine", choices=["llamalite", "llamacpp"], required=True)
    p.add_argument("--model", required=True)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--n-prompt", type=int, default=512)
    p.add_argument("--n-gen", type=int, default=128)
    p.add_argument("--seed", type=int, default=1234)
    p.add_argument("--parallel", type=lambda s: [int(x) for x in s.split(",")], default=None,
                   help="comma-separated sequence counts: measure aggregate generation only")
    a = p.parse_args()
    if a.parallel:
        res = run_parallel_llamacpp(a) if a.engine == "llamacpp" else run_parallel_llamalite(a)
    else:
        res = run_llamacpp(a) if a.engine == "llamacpp" else run_llamalite(a)
    print(json.dumps(res))


if __name__ == "__main__":
    main()
