"""Record llama.cpp's llama-imatrix on synthetic models for tests/test_imatrix.py (by hand).

    .venv/bin/python tests/tools/record_imatrix.py [--imatrix-bin /work/llama-build/bin/llama-imatrix]

For the dense qwen2 and the mixture-of-experts qwen3moe models of tests/synthetic_families.py
(rebuilt here, deterministically), llama-imatrix runs over tests/data/forward_text.txt
(`-c 32 --chunks 4 -t 2`, the text given by its bare name so the recorded dataset is
"forward_text.txt") and writes both of its formats:
tests/data/imatrix_llama_cpp_{qwen2,qwen3moe}.{gguf,dat}. Then the peer (llama-cpp-python's
llama_model_quantize, /work/peer) requantizes each model to a few types with that GGUF
importance matrix, passed as llama-quantize passes it (per weight in_sum2 / counts per
expert, 1 for an expert that saw no token; read here with gguf-py, not llamalite's reader)
with its quantize.imatrix.* keys. tests/data/imatrix_llama_cpp_runs.json keeps, per model,
the sha256 of the model file the runs used, the run's settings, and the sha256 of the
peer's outputs.

The text and chunking are chosen so that no token's routing is a near-tie: the smallest
gap between a token's 2nd and 3rd router logits, relative to the largest of its top 3, is
about 6e-3 over these 128 tokens (with english.txt and 64-token chunks it is 2e-3 and one
token per layer goes to another expert in llama.cpp than in llamalite).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "tests" / "tools"))

import synthetic_families as sf  # noqa: E402
from record_quantize import run_peer, sha256, types_of  # noqa: E402

from llamalite.quant.plan import FT  # noqa: E402

OUT = ROOT / "tests" / "data"
FAMILIES = ("qwen2", "qwen3moe")
TEXT = "forward_text.txt"
CHUNK_SIZE, CHUNKS = 32, 4
QUANT_TYPES = ["IQ4_XS", "Q4_K_M", "Q2_K_S"]


def llama_cpp_weights(path: Path) -> dict[str, np.ndarray]:
    """What llama-quantize hands llama_model_quantize for a GGUF imatrix (gguf-py reads it)."""
    from gguf import GGUFReader
    r = GGUFReader(path)
    t = {x.name: np.asarray(x.data, dtype=np.float32) for x in r.tensors}
    out = {}
    for name, s in t.items():
        if not name.endswith(".in_sum2"):
            continue
        w = name[:-len(".in_sum2")]
        c = t[w + ".counts"].reshape(-1)
        s = s.reshape(len(c), -1)
        v = np.ones_like(s)
        v[c > 0] = s[c > 0] / c[c > 0, None]
        out[w] = v.reshape(-1)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--imatrix-bin", default="/work/llama-build/bin/llama-imatrix")
    args = ap.parse_args()
    binary = Path(args.imatrix_bin)
    env = {"LD_LIBRARY_PATH": str(binary.parent), "PATH": "/usr/bin:/bin"}
    runs = {}
    with tempfile.TemporaryDirectory(dir="/tmp") as d:
        tmp = Path(d)
        shutil.copy(OUT / TEXT, tmp / TEXT)
        for fam in FAMILIES:
            model = sf.build(fam, tmp)
            entry = {"model_sha256": sha256(model), "text": TEXT, "chunk_size": CHUNK_SIZE,
                     "chunks": CHUNKS, "files": {}, "quantized_sha256": {}, "quantized_types": {}}
            for fmt in ("gguf", "dat"):
                name = f"imatrix_llama_cpp_{fam}.{fmt}"
                cmd = [str(binary), "-m", model.name, "-f", TEXT, "-o", name, "--output-format", fmt,
                       "-c", str(CHUNK_SIZE), "--chunks", str(CHUNKS), "-t", "2"]
                subprocess.run(cmd, cwd=tmp, env=env, check=True, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
                shutil.copy(tmp / name, OUT / name)
                entry["files"][fmt] = name
                entry.setdefault("commands", {})[fmt] = " ".join(["llama-imatrix"] + cmd[1:])
            im_name = entry["files"]["gguf"]
            vals = llama_cpp_weights(tmp / im_name)
            np.savez(tmp / f"{fam}-im.npz", **vals)
            INT, STR = 0, 3   # LLAMA_KV_OVERRIDE_TYPE_*
            overrides = [["quantize.imatrix.file", STR, im_name],
                         ["quantize.imatrix.dataset", STR, TEXT],
                         ["quantize.imatrix.entries_count", INT, len(vals)],
                         ["quantize.imatrix.chunks_count", INT, CHUNKS]]
            jobs = [dict(src=str(model), dst=str(tmp / f"{fam}-{m}.gguf"), ftype=FT[m],
                         imatrix=str(tmp / f"{fam}-im.npz"), overrides=overrides,
                         allow_requantize=True) for m in QUANT_TYPES]
            run_peer(jobs, tmp)
            for m, job in zip(QUANT_TYPES, jobs):
                entry["quantized_sha256"][m] = sha256(Path(job["dst"]))
                entry["quantized_types"][m] = types_of(Path(job["dst"]))
            runs[fam] = entry
    (OUT / "imatrix_llama_cpp_runs.json").write_text(json.dumps(runs, indent=1, sort_keys=True))
    print("wrote", OUT / "imatrix_llama_cpp_runs.json")


if __name__ == "__main__":
    main()
