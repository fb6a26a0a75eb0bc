"""Record llama.cpp's quantizer outputs for tests/test_quant_*.py (run once, by hand).

    .venv/bin/python tests/tools/record_quantize.py        # needs the peer: /work/peer

Writes tests/data/quantize_reference.json:
- "plans": for F16 copies of the cached SmolLM2-135M and Gemma 3 270M (the real tensor
  names and shapes; zero data) quantized by llama.cpp's llama_model_quantize to every
  mix, the type of every tensor;
- "files": for the tiny synthetic models of tests/quant_models.py, the sha256 of the
  input and of llama.cpp's output for each type (and with a synthetic importance matrix,
  passed as llama-quantize passes it: values = in_sum2 / counts, plus its
  quantize.imatrix.* keys), with the per-tensor types;
- "arch_plans": every mix's types for qwen3moe (8 experts) and phi3 (fused attn_qkv)
  shapes from tests/quant_models.py (zero data), in the order of their tensor list.
and tests/data/imatrix_llama_cpp.{gguf,dat}: small importance matrices written field by
field from llama.cpp's documented layouts (tools/imatrix/imatrix.cpp), for the reader.
llama-cpp-python runs in its own venv (PEER below), called as a subprocess.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import struct
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests"))

from quant_models import F16, F32, TINY, write_model  # noqa: E402

from llamalite.gguf import open_gguf  # noqa: E402
from llamalite.quant import gguf_writer as gw  # noqa: E402
from llamalite.quant.plan import FILE_TYPES, FT, facts_from_metadata  # noqa: E402
from llamalite.quant.quantize import kv_blocks  # noqa: E402
from llamalite.registry import resolve_model  # noqa: E402

PEER = "/work/peer/bin/python"
OUT = ROOT / "tests" / "data"
MIXES = [n for n in FILE_TYPES if n not in ("F32", "Q2_K_S")]
IMATRIX_TYPES = ["Q4_0", "Q4_K_M", "IQ4_XS", "Q3_K_S", "Q2_K_S"]

# Runs in the peer's venv: one llama_model_quantize per job; imatrix data and the
# quantize.imatrix.* keys built as llama-quantize builds them.
PEER_SCRIPT = r'''
import ctypes, json, sys
import numpy as np
import llama_cpp as L
jobs = json.load(open(sys.argv[1]))
for job in jobs:
    p = L.llama_model_quantize_default_params()
    p.ftype = job["ftype"]
    p.nthread = job.get("nthread", 2)
    p.allow_requantize = bool(job.get("allow_requantize", False))
    keep = []
    if job.get("imatrix"):
        im = np.load(job["imatrix"])
        names = sorted(im.files)
        arr = (L.llama_model_imatrix_data * (len(names) + 1))()
        for i, name in enumerate(names):
            v = np.ascontiguousarray(im[name], dtype=np.float32)
            keep.append(v)
            arr[i].name = name.encode()
            arr[i].data = v.ctypes.data_as(ctypes.POINTER(ctypes.c_float))
            arr[i].size = v.size
        arr[len(names)].name = None
        p.imatrix = ctypes.cast(arr, ctypes.POINTER(L.llama_model_imatrix_data))
        ov = (L.llama_model_kv_override * (len(job["overrides"]) + 1))()
        for i, (key, tag, val) in enumerate(job["overrides"]):
            ov[i].key = key.encode()
            ov[i].tag = tag
            if tag == 0:
                ov[i].value.val_i64 = val
            else:
                ov[i].value.val_str = val.encode()
        ov[len(job["overrides"])].key = b""
        keep += [arr, ov]
        p.kv_overrides = ctypes.cast(ov, ctypes.POINTER(L.llama_model_kv_override))
    rc = L.llama_model_quantize(job["src"].encode(), job["dst"].encode(), ctypes.byref(p))
    if rc != 0:
        sys.exit(f"llama_model_quantize failed ({rc}) for {job}")
'''


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for b in iter(lambda: f.read(1 << 20), b""):
            h.update(b)
    return h.hexdigest()


def run_peer(jobs: list[dict], tmp: Path) -> None:
    script, job_file = tmp / "peer.py", tmp / "jobs.json"
    script.write_text(PEER_SCRIPT)
    job_file.write_text(json.dumps(jobs))
    subprocess.run([PEER, str(script), str(job_file)], check=True, stdout=subprocess.DEVNULL)


def types_of(path: Path) -> dict[str, str]:
    with open_gguf(path) as g:
        return {n: t.type_name for n, t in g.tensors.items()}


def zero_f16_copy(src: Path, dst: Path) -> list[list]:
    """The real model's metadata and tensor names/shapes; matrices F16, vectors F32, zeros."""
    with open_gguf(src) as g:
        kvs = [b for key, b in kv_blocks(g) if key != "general.file_type"]
        kvs.append(gw.kv("general.file_type", gw.UINT32, 1))
        specs = [(t.name, tuple(t.shape), F32 if len(t.shape) == 1 else F16) for t in g.tensors.values()]
    sizes = [int(np.prod(s)) * (4 if t == F32 else 2) for _, s, t in specs]
    offsets = gw.data_offsets(sizes, 32)
    head = gw.header(kvs, [gw.tensor_info(n, s, t, o) for (n, s, t), o in zip(specs, offsets)], 32)
    with open(dst, "wb") as f:
        f.write(head)
        f.truncate(len(head) + offsets[-1] + sizes[-1] + gw.pad(sizes[-1], 32))
    return [[n, list(s), t] for n, s, t in specs]


def record_plans(tmp: Path) -> dict:
    out = {}
    for model in ("smollm2-135m", "gemma3-270m"):
        src = tmp / f"{model}-f16.gguf"
        tensors = zero_f16_copy(resolve_model(model), src)
        jobs = [dict(src=str(src), dst=str(tmp / f"{model}-{m}.gguf"), ftype=FT[m]) for m in MIXES]
        run_peer(jobs, tmp)
        with open_gguf(src) as g:
            facts = facts_from_metadata(g.metadata)
        order = [n for n, *_ in tensors]
        out[model] = {"facts": dataclasses.asdict(facts), "tensors": tensors, "types": {}}
        for m, job in zip(MIXES, jobs):
            t = types_of(Path(job["dst"]))
            out[model]["types"][m] = [t[n] for n in order]
            Path(job["dst"]).unlink()
        src.unlink()
    return out


def record_arch_plans(tmp: Path) -> dict:
    """Type plans of every mix for qwen3moe and phi3 shapes (zero F16 data)."""
    from quant_models import moe_and_fused_specs
    out = {}
    for arch in ("qwen3moe", "phi3"):
        shapes, kvs = moe_and_fused_specs(arch)
        specs = [(n, s, F32 if len(s) == 1 else F16) for n, s in shapes]
        sizes = [int(np.prod(s)) * (4 if t == F32 else 2) for _, s, t in specs]
        offsets = gw.data_offsets(sizes, 32)
        src = tmp / f"{arch}.gguf"
        head = gw.header(kvs, [gw.tensor_info(n, s, t, o) for (n, s, t), o in zip(specs, offsets)], 32)
        with open(src, "wb") as f:
            f.write(head)
            f.truncate(len(head) + offsets[-1] + sizes[-1] + gw.pad(sizes[-1], 32))
        jobs = [dict(src=str(src), dst=str(tmp / f"{arch}-{m}.gguf"), ftype=FT[m]) for m in MIXES]
        run_peer(jobs, tmp)
        order = [n for n, _ in shapes]
        out[arch] = {m: [types_of(Path(j["dst"]))[n] for n in order] for m, j in zip(MIXES, jobs)}
        for j in jobs:
            Path(j["dst"]).unlink()
    return out


def synthetic_imatrix(path: Path, shape_name: str) -> dict[str, np.ndarray]:
    """Positive per-column values for every layer weight of a tiny model, as an .npz."""
    from quant_models import tensor_shapes
    rng = np.random.default_rng(7)
    vals = {n: (rng.gamma(2.0, 1.0, s[0]) ** 2).astype(np.float32)
            for n, s in tensor_shapes(TINY[shape_name]) if n.startswith("blk.") and len(s) == 2}
    np.savez(path, **vals)
    return vals


def record_files(tmp: Path) -> dict:
    out = {}
    for name, shape in TINY.items():
        src = write_model(tmp / f"tiny-{name}.gguf", shape)
        entry = {"input_sha256": sha256(src), "types": {}, "sha256": {},
                 "imatrix_sha256": {}, "imatrix_types": {}}
        jobs = [dict(src=str(src), dst=str(tmp / f"tiny-{name}-{m}.gguf"), ftype=FT[m]) for m in MIXES]
        im_path = tmp / f"imatrix-{name}.npz"
        vals = synthetic_imatrix(im_path, name)
        INT, STR = 0, 3   # LLAMA_KV_OVERRIDE_TYPE_*
        overrides = [["quantize.imatrix.file", STR, "imatrix.gguf"],
                     ["quantize.imatrix.dataset", STR, "synthetic"],
                     ["quantize.imatrix.entries_count", INT, len(vals)],
                     ["quantize.imatrix.chunks_count", INT, 4]]
        im_jobs = [dict(src=str(src), dst=str(tmp / f"tiny-{name}-{m}-imatrix.gguf"), ftype=FT[m],
                        imatrix=str(im_path), overrides=overrides) for m in IMATRIX_TYPES]
        run_peer(jobs + im_jobs, tmp)
        for m, job in zip(MIXES, jobs):
            entry["sha256"][m] = sha256(Path(job["dst"]))
            entry["types"][m] = types_of(Path(job["dst"]))
        for m, job in zip(IMATRIX_TYPES, im_jobs):
            entry["imatrix_sha256"][m] = sha256(Path(job["dst"]))
            entry["imatrix_types"][m] = types_of(Path(job["dst"]))
        out[name] = entry
    return out


def write_reference_imatrix_files() -> None:
    """Two small importance matrices in llama.cpp's formats, written field by field."""
    rng = np.random.default_rng(3)
    entries = {f"blk.{i}.{w}.weight": rng.uniform(0.0, 50.0, 32).astype(np.float32)
               for i in range(2) for w in ("attn_q", "ffn_down")}
    counts = {n: 512 * (i + 1) for i, n in enumerate(sorted(entries))}
    # GGUF: general.type, imatrix.datasets / chunk_count / chunk_size; <name>.in_sum2 [32, 1]
    # and <name>.counts [1, 1], F32, tensors in sorted name order.
    kvs = [gw.kv("general.type", gw.STRING, "imatrix"),
           gw.kv("imatrix.datasets", gw.ARRAY, ["calibration.txt"]),
           gw.kv("imatrix.chunk_count", gw.UINT32, 4),
           gw.kv("imatrix.chunk_size", gw.UINT32, 512)]
    blobs = []
    for n in sorted(entries):
        blobs.append((f"{n}.in_sum2", (32, 1), entries[n].tobytes()))
        blobs.append((f"{n}.counts", (1, 1), np.float32(counts[n]).tobytes()))
    offsets = gw.data_offsets([len(b) for *_, b in blobs], 32)
    with open(OUT / "imatrix_llama_cpp.gguf", "wb") as f:
        f.write(gw.header(kvs, [gw.tensor_info(n, s, 0, o) for (n, s, _), o in zip(blobs, offsets)], 32))
        for *_, b in blobs:
            f.write(b + b"\0" * gw.pad(len(b), 32))
    # legacy: i32 n; per entry i32 len, name, i32 ncall, i32 nval, f32 (sum/count)*ncall;
    # i32 chunk count, i32 len, dataset
    parts = [struct.pack("<i", len(entries))]
    for n in sorted(entries):
        ncall = counts[n] // 512
        vals = (entries[n] / np.float32(counts[n])) * np.float32(ncall)
        parts += [struct.pack("<i", len(n)), n.encode(), struct.pack("<ii", ncall, 32),
                  vals.astype("<f4").tobytes()]
    parts += [struct.pack("<i", 4), struct.pack("<i", 15), b"calibration.txt"]
    (OUT / "imatrix_llama_cpp.dat").write_bytes(b"".join(parts))
    np.savez(OUT / "imatrix_llama_cpp_expected.npz",
             **{n: (entries[n] / np.float32(counts[n])).astype(np.float32) for n in entries})


def main() -> None:
    write_reference_imatrix_files()
    with tempfile.TemporaryDirectory(dir="/tmp") as d:
        tmp = Path(d)
        ref = {"files": record_files(tmp), "plans": record_plans(tmp),
               "arch_plans": record_arch_plans(tmp)}
    (OUT / "quantize_reference.json").write_text(json.dumps(ref, indent=0, sort_keys=True))
    print("wrote", OUT / "quantize_reference.json")


if __name__ == "__main__":
    main()
