"""Record llama.cpp's quantizer output into tests/data/quant_vectors.npz.

Run with the peer (llama-cpp-python's libggml-base), never from the test suite:

    /work/peer/bin/python tests/tools/record_quant_vectors.py
    /work/peer/bin/python tests/tools/record_quant_vectors.py --real /path/to/venv/site-packages

For every type llamalite quantizes to, it calls llama.cpp's ggml_quantize_chunk (through
ctypes) on a few small inputs (normal rows, rows with outliers, all-zero and sparse rows,
tiny and huge magnitudes, constant rows, rows of the cached real models' weights), with and
without an importance matrix, and stores the inputs, the imatrices and the output bytes:

    in/<case>                float32 [rows, 512]
    im/<name>                float32 [512]
    out/<type>/<case>/<im>   uint8 [rows, row_bytes]   (<im> is "none" or an im/ name)

The inputs are stored whole (float32), so the tests need nothing else.

--real SITE_PACKAGES: instead of recording, dequantize whole tensors of the two cached models to float32
with gguf.quants, quantize each with the peer and with the llamalite installed in
SITE_PACKAGES to every type (with and without a synthetic imatrix), and print how many
rows come out bit-identical. Only llamalite's compiled core (_core*.so) is loaded from
there, so the peer's Python needs none of llamalite's dependencies. Nothing is written.
"""
from __future__ import annotations

import argparse
import ctypes
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
OUT = HERE.parent / "data" / "quant_vectors.npz"
PEER_LIB = Path("/work/peer/lib/python3.11/site-packages/llama_cpp/lib")
MODELS = Path.home() / ".cache/llamalite/models"
SMOLLM2 = MODELS / "SmolLM2-135M-Instruct.Q4_1.gguf"
GEMMA = MODELS / "gemma-3-270m-q4_k_m.gguf"

# GGUF type ids and sizes (block values, block bytes) of the types llamalite makes.
TYPES = {
    "F16": (1, 1, 2), "BF16": (30, 1, 2), "Q4_0": (2, 32, 18), "Q4_1": (3, 32, 20),
    "Q5_0": (6, 32, 22), "Q5_1": (7, 32, 24), "Q8_0": (8, 32, 34), "Q2_K": (10, 256, 84),
    "Q3_K": (11, 256, 110), "Q4_K": (12, 256, 144), "Q5_K": (13, 256, 176), "Q6_K": (14, 256, 210),
    "IQ4_NL": (20, 32, 18), "IQ4_XS": (23, 256, 136),
}
N = 512  # values per row of the stored cases


def load_ggml():
    lib = ctypes.CDLL(str(PEER_LIB / "libggml-base.so"))
    fn = lib.ggml_quantize_chunk
    fn.restype = ctypes.c_size_t
    fn.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64, ctypes.c_int64,
                   ctypes.c_int64, ctypes.c_void_p]
    return fn


def peer_quantize(fn, name: str, x: np.ndarray, imatrix: np.ndarray | None) -> np.ndarray:
    type_id, block, size = TYPES[name]
    x = np.ascontiguousarray(x, dtype=np.float32)
    rows, n = x.shape
    out = np.zeros((rows, n // block * size), np.uint8)
    im = None if imatrix is None else np.ascontiguousarray(imatrix, dtype=np.float32)
    got = fn(type_id, x.ctypes.data, out.ctypes.data, 0, rows, n,
             None if im is None else im.ctypes.data)
    assert got == out.size, (name, got, out.size)
    return out


def model_rows(path: Path, name: str, rows: list[int]) -> np.ndarray:
    """Rows of a tensor of a cached model, dequantized with gguf.quants, first N values each."""
    from gguf import GGUFReader
    from gguf.quants import dequantize
    t = next(t for t in GGUFReader(path).tensors if t.name == name)
    w = dequantize(t.data, t.tensor_type).reshape(-1, int(t.shape[0]))
    return np.ascontiguousarray(w[rows, :N], dtype=np.float32)


def cases() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(20261207)
    normal = (rng.standard_normal((2, N)) * 0.02).astype(np.float32)
    spikes = rng.standard_normal((2, N)) * 0.02
    spikes[rng.random((2, N)) < 0.01] *= 40
    sparse = np.zeros((2, N), np.float32)
    sparse[1, 40:50] = rng.standard_normal(10)          # one 32-block and a 16-sub-block mostly empty
    sparse[1, 300] = -2.5                                 # one lone value in a 256 block
    ramp = np.linspace(-1, 1, N, dtype=np.float32)
    out = {
        "normal": normal,
        "outliers": spikes.astype(np.float32),
        "sparse": sparse,
        "tiny": (rng.standard_normal((2, N)) * 1e-7).astype(np.float32),
        "huge": (rng.standard_normal((2, N)) * 3e4).astype(np.float32),
        "constant": np.stack([np.full(N, 0.25), np.full(N, -3.0)]).astype(np.float32),
        "skewed": np.stack([np.abs(normal[0]) + 0.01, ramp]).astype(np.float32),
    }
    if SMOLLM2.exists() and GEMMA.exists():
        out["smollm2"] = model_rows(SMOLLM2, "blk.0.ffn_down.weight", [0, 100])
        out["gemma"] = model_rows(GEMMA, "blk.0.ffn_down.weight", [0, 300])
    else:
        print("cached models missing: the real-weight cases are left out", file=sys.stderr)
    return out


def imatrices() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(7)
    heavy = (rng.random(N) ** 4 * 50 + 1e-3).astype(np.float32)
    holes = (rng.random(N) * 2).astype(np.float32)
    holes[rng.random(N) < 0.3] = 0.0                      # columns never activated
    return {"heavy": heavy, "holes": holes}


def imatrix_names(tname: str, cname: str) -> list[str]:
    """Which imatrices a (type, case) is recorded with: F16 and BF16 take none (they have no
    use for one), Q8_0 one (llama.cpp ignores it), the "holes" one only the varied cases."""
    if tname in ("F16", "BF16"):
        return ["none"]
    if tname == "Q8_0":
        return ["none", "heavy"]
    if cname in ("normal", "outliers", "sparse", "smollm2", "gemma"):
        return ["none", "heavy", "holes"]
    return ["none", "heavy"]


def record() -> None:
    fn = load_ggml()
    data: dict[str, np.ndarray] = {}
    ins = cases()
    ims = imatrices()
    for cname, x in ins.items():
        data[f"in/{cname}"] = x
    for iname, im in ims.items():
        data[f"im/{iname}"] = im
    for tname in TYPES:
        for cname, x in ins.items():
            for iname in imatrix_names(tname, cname):
                im = None if iname == "none" else ims[iname]
                data[f"out/{tname}/{cname}/{iname}"] = peer_quantize(fn, tname, x, im)
    np.savez_compressed(OUT, **data)
    print(f"wrote {OUT} ({OUT.stat().st_size} bytes, {len(data)} arrays)")


def real_check(site_packages: str) -> None:
    """Whole tensors of both cached models through the peer and llamalite: identical rows per type."""
    import importlib.machinery
    import importlib.util
    from gguf import GGUFReader
    from gguf.quants import dequantize
    so = next((Path(site_packages) / "llamalite").glob("_core*.so"))
    loader = importlib.machinery.ExtensionFileLoader("llamalite._core", str(so))
    spec = importlib.util.spec_from_loader("llamalite._core", loader)
    _core = importlib.util.module_from_spec(spec)
    loader.exec_module(_core)
    fn = load_ggml()
    rng = np.random.default_rng(3)
    # Only the ffn_down rows (1536 and 2048 values) are a multiple of 256: the K-quants and
    # IQ4_XS see those; the 32-value types and F16/BF16 see all.
    picks = {SMOLLM2: ["blk.0.attn_q.weight", "blk.3.ffn_down.weight", "blk.20.ffn_down.weight",
                       "blk.7.ffn_gate.weight"],
             GEMMA: ["blk.0.attn_k.weight", "blk.2.ffn_down.weight", "blk.11.ffn_down.weight",
                     "blk.5.ffn_up.weight"]}
    totals: dict[str, list[int]] = {}
    for path, names in picks.items():
        tensors = {t.name: t for t in GGUFReader(path).tensors}
        for name in names:
            t = tensors[name]
            w = np.ascontiguousarray(dequantize(t.data, t.tensor_type).reshape(-1, int(t.shape[0])), np.float32)
            im = (rng.random(w.shape[1]) ** 3 * 10).astype(np.float32)
            for tname, (type_id, block, _) in TYPES.items():
                if w.shape[1] % block:
                    continue
                for imx in (None, im):
                    theirs = peer_quantize(fn, tname, w, imx)
                    for isa in _core.supported_isas():
                        _core.set_isa(isa)
                        ours = _core.quantize_rows(type_id, w, imx, n_threads=2)
                        same = int((ours == theirs).all(axis=1).sum())
                        key = f"{tname}{'+imatrix' if imx is not None else ''} {isa}"
                        tot = totals.setdefault(key, [0, 0])
                        tot[0] += same
                        tot[1] += w.shape[0]
                        if same != w.shape[0]:
                            print(f"DIFF {path.name} {name} {key}: {same}/{w.shape[0]} rows identical")
            print(f"{path.name} {name} {list(w.shape)} done", flush=True)
    for key, (same, rows) in totals.items():
        print(f"{key:24s} {same}/{rows} rows bit-identical")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--real", metavar="SITE_PACKAGES",
                    help="compare whole real tensors with the llamalite installed there (no recording)")
    args = ap.parse_args()
    if args.real:
        real_check(args.real)
    else:
        record()


if __name__ == "__main__":
    main()
