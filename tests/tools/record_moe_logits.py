"""Record llama.cpp's logits for the synthetic qwen3 / qwen3moe / llama-moe files.

The files are the deterministic builders of tests/synthetic_moe.py. For each, the peer
(llama-cpp-python) evaluates a fixed token sequence twice: in one batch (prefill, the
logits of every position) and one token per call (decode). tests/test_arch_moe.py
compares llamalite with both. Each file's sha256 is stored too, so a test can tell when
the builder no longer reproduces the recorded file. Run once (needs the peer):

    .venv/bin/python tests/tools/record_moe_logits.py [--peer-python /work/peer/bin/python]

It writes tests/data/moe_logits.npz (keys "<family>/tokens", "/prefill", "/decode", "/sha256").
"""
from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
from synthetic_moe import FAMILIES, VOCAB  # noqa: E402

OUT = HERE.parent / "data" / "moe_logits.npz"
N_TOKENS = 16

PEER = r"""
import json, sys
import numpy as np
from llama_cpp import Llama
path, tokens, out = sys.argv[1], json.loads(sys.argv[2]), sys.argv[3]
llm = Llama(model_path=path, n_ctx=64, n_batch=64, n_threads=2, logits_all=True, verbose=False)
llm.eval(tokens)
prefill = np.array(llm.scores[:len(tokens)], dtype=np.float32)
llm.reset()
for t in tokens:
    llm.eval([t])
decode = np.array(llm.scores[:len(tokens)], dtype=np.float32)
np.savez(out, prefill=prefill, decode=decode)
"""


def tokens_for(name: str) -> np.ndarray:
    """The recorded token sequence of a family (fixed per name)."""
    seed = sum(name.encode())
    return np.random.default_rng(seed).integers(0, VOCAB - 3, N_TOKENS).astype(np.int32)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--peer-python", default="/work/peer/bin/python")
    args = ap.parse_args()
    arrays: dict[str, np.ndarray] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, build in FAMILIES.items():
            path = build(Path(tmp) / f"{name}.gguf")
            toks = tokens_for(name)
            out = Path(tmp) / f"{name}.npz"
            subprocess.run([args.peer_python, "-c", PEER, str(path), json.dumps(toks.tolist()),
                            str(out)], check=True)
            got = np.load(out)
            arrays[f"{name}/tokens"] = toks
            arrays[f"{name}/prefill"] = got["prefill"]
            arrays[f"{name}/decode"] = got["decode"]
            arrays[f"{name}/sha256"] = np.array(sha256(path))
            print(f"{name}: prefill vs decode max |diff| "
                  f"{np.abs(got['prefill'] - got['decode']).max():.4f}")
    np.savez_compressed(OUT, **arrays)
    print(f"wrote {OUT} ({OUT.stat().st_size:,} bytes)")


if __name__ == "__main__":
    main()
