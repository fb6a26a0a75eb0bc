"""Tokenizer speed: construction time and tokens/s, beside llama.cpp's when the peer is given.

    python bench/tokenizer_speed.py [--peer-python /path/to/peer/python] [--reps 5]

The text is the long case of tests/data/tokenizer_cases.json (about 50 KB of mixed
prose, code, scripts and emoji). "cold" tokenizes with a fresh tokenizer (empty word
cache), "warm" tokenizes the same text again.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import time
from pathlib import Path

from llamalite import open_gguf, pull
from llamalite.tokenizer import StreamDecoder, Tokenizer

ROOT = Path(__file__).resolve().parent.parent
CASES = ROOT / "tests" / "data" / "tokenizer_cases.json"

PEER = r"""
import sys, time, json
from llama_cpp import Llama
llm = Llama(model_path=sys.argv[1], vocab_only=True, verbose=False)
text = open(sys.argv[2], encoding="utf-8").read().encode()
best = 1e9
for _ in range(int(sys.argv[3])):
    t0 = time.perf_counter(); ids = llm.tokenize(text, add_bos=True, special=False)
    best = min(best, time.perf_counter() - t0)
print(json.dumps({"n_tokens": len(ids), "seconds": best}))
"""


def bench_model(name: str, text: str, reps: int) -> dict:
    path = pull(name)
    construct, cold, warm, stream = [], [], [], []
    for _ in range(reps):
        with open_gguf(path) as f:
            t0 = time.perf_counter()
            tok = Tokenizer.from_metadata(f.metadata)
            construct.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        ids = tok.tokenize(text)
        cold.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        tok.tokenize(text)
        warm.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        dec = StreamDecoder(tok)
        for i in ids:
            dec.push(i)
        dec.flush()
        stream.append(time.perf_counter() - t0)
    n = len(ids)
    return {"model": name, "n_tokens": n, "construct_s": min(construct),
            "cold_tok_s": n / min(cold), "warm_tok_s": n / min(warm),
            "stream_decode_tok_s": n / min(stream)}


def bench_peer(python: str, name: str, text_file: Path, reps: int) -> dict:
    res = subprocess.run([python, "-c", PEER, str(pull(name)), str(text_file), str(reps)],
                         capture_output=True, text=True, cwd="/")
    if res.returncode != 0:
        raise RuntimeError(res.stderr[-800:])
    r = json.loads(res.stdout.strip().splitlines()[-1])
    return {"llama_cpp_tok_s": r["n_tokens"] / r["seconds"]}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--peer-python", default=os.environ.get("LLAMALITE_PEER_PYTHON"))
    a = p.parse_args()
    data = json.loads(CASES.read_text("utf-8"))
    for name in ("smollm2-135m", "gemma3-270m"):
        text = data["models"][name]["long_case"]["text"]
        row = bench_model(name, text, a.reps)
        if a.peer_python:
            tmp = Path("/tmp/llamalite_tokenizer_bench.txt")
            tmp.write_text(text, encoding="utf-8")
            row.update(bench_peer(a.peer_python, name, tmp, a.reps))
        print("  ".join(f"{k}={v:,.3f}" if isinstance(v, float) else f"{k}={v}"
                        for k, v in row.items()))


if __name__ == "__main__":
    main()
