"""Quantizer speed: MB/s of float32 input per type, beside llama.cpp's ggml_quantize_chunk.

    python bench/quantize_speed.py [--peer-lib DIR] [--reps 5] [--threads 1] [--imatrix]
                                   [--types Q4_K,Q8_0]

The input is one tensor of the cached SmolLM2 model (blk.0.ffn_down, dequantized to
float32 with gguf.quants), or seeded random rows of the same shape when it is not cached.
llamalite's _core.quantize_rows and the peer's ggml_quantize_chunk (loaded with ctypes from
DIR/libggml-base.so, single-threaded) run interleaved, rep by rep; the table shows medians
and whether the bytes agree. Numbers from a loaded machine say little: run it on an idle one.
"""
from __future__ import annotations

import argparse
import ctypes
import statistics
import time
from pathlib import Path

import numpy as np

from llamalite import _core

PEER_LIB = Path("/work/peer/lib/python3.11/site-packages/llama_cpp/lib")
SMOLLM2 = Path.home() / ".cache/llamalite/models/SmolLM2-135M-Instruct.Q4_1.gguf"
TYPES = {"F16": 1, "BF16": 30, "Q4_0": 2, "Q4_1": 3, "Q5_0": 6, "Q5_1": 7, "Q8_0": 8, "Q2_K": 10,
         "Q3_K": 11, "Q4_K": 12, "Q5_K": 13, "Q6_K": 14, "IQ4_NL": 20, "IQ4_XS": 23}


def load_input() -> tuple[np.ndarray, str]:
    if SMOLLM2.exists():
        from gguf import GGUFReader
        from gguf.quants import dequantize
        t = next(t for t in GGUFReader(SMOLLM2).tensors if t.name == "blk.0.ffn_down.weight")
        w = dequantize(t.data, t.tensor_type).reshape(-1, int(t.shape[0]))
        return np.ascontiguousarray(w, np.float32), "SmolLM2 blk.0.ffn_down"
    rng = np.random.default_rng(0)
    return (rng.standard_normal((576, 1536)) * 0.02).astype(np.float32), "random [576, 1536]"


def peer_quantizer(lib_dir: Path):
    lib = ctypes.CDLL(str(lib_dir / "libggml-base.so"))
    fn = lib.ggml_quantize_chunk
    fn.restype = ctypes.c_size_t
    fn.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64, ctypes.c_int64,
                   ctypes.c_int64, ctypes.c_void_p]

    def run(type_id: int, x: np.ndarray, im: np.ndarray | None) -> np.ndarray:
        out = np.empty((x.shape[0], _core.row_bytes(type_id, x.shape[1])), np.uint8)
        fn(type_id, x.ctypes.data, out.ctypes.data, 0, x.shape[0], x.shape[1],
           None if im is None else im.ctypes.data)
        return out
    return run


def timed(f):
    t0 = time.perf_counter()
    out = f()
    return time.perf_counter() - t0, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--peer-lib", type=Path, default=PEER_LIB, help="folder of the peer's libggml-base.so")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1, help="llamalite's threads (the peer runs on one)")
    ap.add_argument("--imatrix", action="store_true", help="pass a seeded random importance matrix")
    ap.add_argument("--types", default=",".join(TYPES), help="comma-separated type names")
    args = ap.parse_args()

    x, what = load_input()
    im = (np.random.default_rng(1).random(x.shape[1]) + 0.05).astype(np.float32) if args.imatrix else None
    peer = peer_quantizer(args.peer_lib) if (args.peer_lib / "libggml-base.so").exists() else None
    names = [n.strip() for n in args.types.split(",") if n.strip()]
    mb = x.nbytes / 1e6
    print(f"input: {what} {list(x.shape)} ({mb:.1f} MB float32), isa {_core.active_isa()}, "
          f"threads {args.threads}, imatrix {'yes' if im is not None else 'no'}, reps {args.reps}")
    if peer is None:
        print(f"no peer library in {args.peer_lib}: llamalite only")
    print(f"{'type':8s} {'llamalite MB/s':>15s} {'llama.cpp MB/s':>15s} {'ratio':>7s}  same bytes")
    for name in names:
        t = TYPES[name]
        ours_t, peer_t, same = [], [], None
        for _ in range(args.reps):
            dt, a = timed(lambda: _core.quantize_rows(t, x, im, n_threads=args.threads))
            ours_t.append(dt)
            if peer is not None:
                dt, b = timed(lambda: peer(t, x, im))
                peer_t.append(dt)
                same = bool(np.array_equal(a, b)) if same is None else same and bool(np.array_equal(a, b))
        ours = mb / statistics.median(ours_t)
        theirs = mb / statistics.median(peer_t) if peer_t else float("nan")
        print(f"{name:8s} {ours:15.1f} {theirs:15.1f} {ours / theirs:7.2f}  {'-' if same is None else same}")


if __name__ == "__main__":
    main()
