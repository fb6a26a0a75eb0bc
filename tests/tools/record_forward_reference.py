"""Record llama.cpp's teacher-forced logits on the real models (run once, by hand).

Runs under the peer's interpreter, never in the test suite:

    /work/peer/venv/bin/python tests/tools/record_forward_reference.py

For each model it tokenizes tests/data/forward_text.txt with llama.cpp, evaluates the
whole sequence in one batch (logits for every position) and writes to
tests/data/forward_reference.npz, per model key prefix `<name>_`:
    tokens   int32 [n]       llama.cpp's token ids for the text (BOS included if the file adds it)
    argmax   int32 [n]       llama.cpp's top-1 token at each position
    top_ids  int32 [n, 32]   the 32 highest-scoring token ids at each position (descending)
    top_vals f32   [n, 32]   their logits
    lse      f64   [n]       log-sum-exp of the full logit row (checks the whole distribution)
    self_top1, self_max, self_mean   llama.cpp's own consistency: the same text evaluated one
             token at a time on 1 thread vs the batch above (top-1 agreements, max and mean
             |logit difference| over the top 32), the yardstick for "close to llama.cpp"
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import llama_cpp

HERE = Path(__file__).resolve().parent
DATA = HERE.parent / "data"
MODELS = Path(os.environ.get("LLAMALITE_HOME", Path.home() / ".cache" / "llamalite")) / "models"
FILES = {
    "smollm2": MODELS / "SmolLM2-135M-Instruct.Q4_1.gguf",
    "gemma3": MODELS / "gemma-3-270m-q4_k_m.gguf",
}
TOP = 32


def record(name: str, path: Path, text: str) -> dict[str, np.ndarray]:
    llm = llama_cpp.Llama(str(path), n_ctx=512, n_batch=512, logits_all=True,
                          n_threads=2, verbose=False)
    tokens = llm.tokenize(text.encode("utf-8"), add_bos=True, special=False)
    llm.reset()
    llm.eval(tokens)
    scores = np.asarray(llm.scores[: len(tokens)], dtype=np.float32)   # [n, n_vocab]
    top_ids = np.argsort(-scores, axis=1, kind="stable")[:, :TOP].astype(np.int32)
    top_vals = np.take_along_axis(scores, top_ids, axis=1).astype(np.float32)
    s64 = scores.astype(np.float64)
    mx = s64.max(axis=1, keepdims=True)
    lse = (mx[:, 0] + np.log(np.exp(s64 - mx).sum(axis=1)))
    print(f"{name}: {len(tokens)} tokens, vocab {scores.shape[1]}")
    one = llama_cpp.Llama(str(path), n_ctx=512, n_batch=1, n_ubatch=1, logits_all=True,
                          n_threads=1, verbose=False)
    one.eval(tokens)
    seq = np.asarray(one.scores[: len(tokens)], dtype=np.float32)
    self_diff = np.abs(np.take_along_axis(seq, top_ids, axis=1) - top_vals)
    self_top1 = int((seq.argmax(axis=1) == scores.argmax(axis=1)).sum())
    print(f"  llama.cpp token-by-token vs batched: top-1 {self_top1}/{len(tokens)}, "
          f"max {self_diff.max():.3f}, mean {self_diff.mean():.3f}")
    return {
        f"{name}_self_top1": np.int32(self_top1),
        f"{name}_self_max": np.float32(self_diff.max()),
        f"{name}_self_mean": np.float32(self_diff.mean()),
        f"{name}_tokens": np.asarray(tokens, dtype=np.int32),
        f"{name}_argmax": scores.argmax(axis=1).astype(np.int32),
        f"{name}_top_ids": top_ids,
        f"{name}_top_vals": top_vals,
        f"{name}_lse": lse,
    }


def main() -> None:
    text = (DATA / "forward_text.txt").read_text(encoding="utf-8")
    out: dict[str, np.ndarray] = {}
    for name, path in FILES.items():
        out.update(record(name, path, text))
    np.savez_compressed(DATA / "forward_reference.npz", **out)
    print("wrote", DATA / "forward_reference.npz")


if __name__ == "__main__":
    main()
