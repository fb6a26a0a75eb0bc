"""Record llama.cpp's perplexity and greedy continuations for the end-to-end tests.

Run once with the peer's venv (llama-cpp-python), never from the test suite:

    /work/peer/venv/bin/python tests/tools/record_peer_eval.py

It writes tests/data/perplexity.json and tests/data/golden.json.

Perplexity: the text is tokenized as llama.cpp's perplexity tool does (the file's
add_bos flag, no special-token parsing), evaluated in one window with logits for
every position, and every token after the first is scored from the exact
log-softmax (float64) of the logits before it: PPL = exp(mean NLL). The figure of
llama.cpp's own tool (which scores only the second half of each window) is kept
beside it for reference.

Golden continuations: greedy (argmax) decoding of 32 tokens after each prompt,
stopping early at an end-of-generation token. Each step also records the gap
between the best and second-best logit, so a test can tell a genuine mismatch
from a near-tie that rounding may flip.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
from llama_cpp import Llama, llama_cpp as C

HERE = Path(__file__).resolve().parent
DATA = HERE.parent / "data"
CACHE = Path(os.environ.get("LLAMALITE_HOME", Path.home() / ".cache" / "llamalite")) / "models"
MODELS = {
    "smollm2-135m": CACHE / "SmolLM2-135M-Instruct.Q4_1.gguf",
    "gemma3-270m": CACHE / "gemma-3-270m-q4_k_m.gguf",
}
PROMPTS = [
    "The capital of France is",
    "def fibonacci(n):\n",
    "Once upon a time, in a small village by the sea,",
    "Water boils at a temperature of",
]
N_GOLDEN = 32


def log_softmax(x: np.ndarray) -> np.ndarray:
    x = x.astype(np.float64)
    m = x.max(axis=-1, keepdims=True)
    return x - m - np.log(np.exp(x - m).sum(axis=-1, keepdims=True))


def perplexity(llm: Llama, text: str) -> dict:
    tokens = llm.tokenize(text.encode("utf-8"), add_bos=True, special=False)
    llm.reset()
    llm.eval(tokens)
    logits = np.array(llm.scores[: len(tokens)], dtype=np.float32)  # [n_tokens, n_vocab]
    lp = log_softmax(logits[:-1])
    nll = -lp[np.arange(len(tokens) - 1), tokens[1:]]
    half = len(tokens) // 2
    return {
        "n_tokens": len(tokens),
        "tokens": tokens,
        "perplexity": float(np.exp(nll.mean())),
        "perplexity_second_half": float(np.exp(nll[half - 1:].mean())),
    }


def greedy(llm: Llama, prompt: str) -> dict:
    ids = llm.tokenize(prompt.encode("utf-8"), add_bos=True, special=False)
    vocab = llm._model.vocab
    llm.reset()
    llm.eval(ids)
    out, gaps = [], []
    for _ in range(N_GOLDEN):
        logits = np.array(llm.scores[llm.n_tokens - 1], dtype=np.float32)
        top2 = np.partition(logits, -2)[-2:]
        tok = int(np.argmax(logits))
        out.append(tok)
        gaps.append(round(float(top2[1] - top2[0]), 5))
        if C.llama_vocab_is_eog(vocab, tok):
            break
        llm.eval([tok])
    text = llm.detokenize(out).decode("utf-8", errors="replace")
    return {"prompt": prompt, "prompt_ids": ids, "ids": out, "top1_gap": gaps, "text": text}


def main() -> None:
    text = (DATA / "english.txt").read_text(encoding="utf-8")
    ppl, golden = {}, {}
    for name, path in MODELS.items():
        llm = Llama(model_path=str(path), n_ctx=2048, n_batch=2048, n_ubatch=2048,
                    logits_all=True, n_threads=2, verbose=False, seed=0)
        ppl[name] = perplexity(llm, text)
        golden[name] = [greedy(llm, p) for p in PROMPTS]
        print(name, ppl[name]["n_tokens"], ppl[name]["perplexity"], ppl[name]["perplexity_second_half"])
        for g in golden[name]:
            print("  ", repr(g["prompt"]), "->", repr(g["text"]), "min gap", min(g["top1_gap"]))
        del llm
    meta = {"recorded_with": "llama-cpp-python " + __import__("llama_cpp").__version__}
    (DATA / "perplexity.json").write_text(json.dumps({**meta, "models": ppl}) + "\n")
    (DATA / "golden.json").write_text(json.dumps({**meta, "n_tokens": N_GOLDEN, "models": golden},
                                                 indent=1) + "\n")


if __name__ == "__main__":
    main()
