"""Record llama.cpp's logits on the synthetic model of every architecture family (by hand).

Never run by the test suite. Run it with an interpreter that has gguf and numpy (the
project's venv); it builds each model of tests/synthetic_families.py, then runs llama.cpp
on it under the peer's interpreter (which has llama-cpp-python but not gguf), by running
this same file there with --worker:

    .venv/bin/python tests/tools/record_arch_logits.py [--peer /work/peer/bin/python] [FAMILY ...]

For each family, with the context size of its FamilySpec, llama.cpp evaluates
PREFILL_TOKENS in one batch (logits of every position), then DECODE_TOKENS one token at a
time, and separately the whole sequence in one batch (its own yardstick: how far its
decode-step logits move when the same positions come in a batch). Written to
tests/data/arch_logits.npz, per family prefix `<name>_`:
    prefill   f32 [len(PREFILL_TOKENS), n_vocab]   llama.cpp's prefill logits
    decode    f32 [len(DECODE_TOKENS), n_vocab]    its logits of each decode step
    self_max  f32   max |decode - the same rows of the one-batch pass|
    sha256    str   the builder's file hash (tests rebuild the model and compare)
    ref_max   f32   max |llama.cpp - numpy reference| over prefill and decode, the reference
                    with llama.cpp's float16 roundings (llama_cpp_rounding=True)
    ref_rows  i32   positions where that difference is below 1e-3 (the rest are flips of
                    an 8-bit rounding; see tests/test_arch_families.py)
Families not named on the command line keep their stored entries.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
TESTS = HERE.parent
DATA = TESTS / "data" / "arch_logits.npz"


def worker(a: argparse.Namespace) -> None:
    """Under the peer's interpreter: llama.cpp's logits, written to a.out (.npz)."""
    import llama_cpp

    prefill = json.loads(a.prefill)
    decode = json.loads(a.decode)

    def model() -> "llama_cpp.Llama":
        return llama_cpp.Llama(a.model, n_ctx=a.n_ctx, n_batch=64, n_ubatch=64, logits_all=True,
                               n_threads=2, n_threads_batch=2, verbose=False)

    llm = model()
    llm.eval(prefill)
    out_prefill = np.asarray(llm.scores[:len(prefill)], dtype=np.float32).copy()
    rows = []
    for i, t in enumerate(decode):
        llm.eval([t])
        rows.append(np.asarray(llm.scores[len(prefill) + i], dtype=np.float32).copy())
    whole = model()
    whole.eval(prefill + decode)
    batch = np.asarray(whole.scores[len(prefill):len(prefill) + len(decode)], dtype=np.float32)
    np.savez(a.out, prefill=out_prefill, decode=np.stack(rows), batch=batch)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("families", nargs="*", help="families to record (default: all)")
    ap.add_argument("--peer", default="/work/peer/bin/python", help="python with llama_cpp")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--model"), ap.add_argument("--n-ctx", type=int)
    ap.add_argument("--prefill"), ap.add_argument("--decode"), ap.add_argument("--out")
    a = ap.parse_args()
    if a.worker:
        worker(a)
        return
    sys.path.insert(0, str(TESTS))
    import synthetic_families as sf
    from reference import reference_logits

    stored: dict[str, np.ndarray] = {}
    if DATA.exists():
        with np.load(DATA) as d:
            stored = {k: d[k] for k in d.files}
    names = a.families or list(sf.FAMILIES)
    toks = sf.PREFILL_TOKENS + sf.DECODE_TOKENS
    npre = len(sf.PREFILL_TOKENS)
    with tempfile.TemporaryDirectory() as tmp:
        for name in names:
            spec = sf.SPECS[name]
            path = sf.build(name, Path(tmp))
            out = Path(tmp) / f"{name}-peer.npz"
            subprocess.run([a.peer, __file__, "--worker", "--model", str(path), "--n-ctx",
                            str(spec.n_ctx), "--prefill", json.dumps(sf.PREFILL_TOKENS),
                            "--decode", json.dumps(sf.DECODE_TOKENS), "--out", str(out)],
                           check=True)
            with np.load(out) as d:
                prefill, decode, batch = d["prefill"], d["decode"], d["batch"]
            ref = reference_logits(path, toks, n_ctx=spec.n_ctx, kv_f16=True,
                                   llama_cpp_rounding=True)
            peer = np.concatenate([prefill, decode])
            ref_max = float(np.abs(peer - ref).max())
            ref_rows = int((np.abs(peer - ref).max(axis=1) < 1e-3).sum())
            self_max = float(np.abs(decode - batch).max())
            top1 = int((peer.argmax(1) == ref.argmax(1)).sum())
            print(f"{name:8s} ({spec.arch}): |llama.cpp - reference| max {ref_max:.4f} "
                  f"mean {np.abs(peer - ref).mean():.5f}, rows within 1e-3 {ref_rows}/{len(toks)}, "
                  f"top-1 {top1}/{len(toks)}; "
                  f"llama.cpp decode vs batch max {self_max:.4f}")
            stored[f"{name}_prefill"] = prefill
            stored[f"{name}_decode"] = decode
            stored[f"{name}_self_max"] = np.float32(self_max)
            stored[f"{name}_ref_max"] = np.float32(ref_max)
            stored[f"{name}_ref_rows"] = np.int32(ref_rows)
            stored[f"{name}_sha256"] = np.array(sf.file_sha256(path))
            assert npre == prefill.shape[0]
    np.savez_compressed(DATA, **stored)
    print(f"wrote {DATA} ({DATA.stat().st_size:,} bytes)")


if __name__ == "__main__":
    main()
