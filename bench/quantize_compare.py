"""`llamalite quantize` beside llama.cpp's llama_model_quantize: time and perplexity.

    python bench/quantize_compare.py --peer-python /work/peer/bin/python [--reps 3]
        [--peer-quantize /path/to/llama-quantize] [--speed-only]

1. F16 versions of the cached SmolLM2-135M and Gemma 3 270M (their tensors dequantized
   with gguf.quants, written once to <cache>/f16/ and reused).
2. Each F16 file quantized to Q4_K_M and Q8_0 by llamalite (`python -m llamalite.cli.main
   quantize -t T`) and by llama.cpp: the llama-quantize program when --peer-quantize
   names it, else llama_model_quantize (nthread T) under the peer's interpreter. Each
   repetition is a fresh process writing a file that does not exist yet (the previous
   output is deleted untimed), the two interleaved (A B B A ...); medians of the wall
   times. Whether the two outputs are byte-identical is reported.
3. Perplexity (LLM.perplexity, tests/data/english.txt) of the F16 file and of llamalite's
   quantized files without and with an importance matrix collected by `llamalite
   imatrix` on the project's docs (text disjoint from the scored one).
The report is printed and written to bench/results/quantize-compare.json (--out).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
MODELS = ("smollm2-135m", "gemma3-270m")
TYPES = ("Q4_K_M", "Q8_0")
FTYPE = {"Q4_K_M": 15, "Q8_0": 7}

PEER_SCRIPT = r'''
import ctypes, sys
import llama_cpp as L
p = L.llama_model_quantize_default_params()
p.ftype = int(sys.argv[3])
p.nthread = int(sys.argv[4])
sys.exit(L.llama_model_quantize(sys.argv[1].encode(), sys.argv[2].encode(), ctypes.byref(p)))
'''


def f16_copy(name: str) -> Path:
    """The model with every quantized tensor dequantized to F16 (F32 ones kept), cached."""
    from gguf import GGMLQuantizationType, quants

    from llamalite import cache_dir, pull
    from llamalite.gguf import open_gguf
    from llamalite.quant import gguf_writer as gw
    from llamalite.quant.quantize import kv_blocks

    dst = Path(cache_dir()) / "f16" / f"{name}-f16.gguf"
    if dst.exists():
        return dst
    dst.parent.mkdir(parents=True, exist_ok=True)
    src = pull(name)
    with open_gguf(src) as g:
        kvs = [b for k, b in kv_blocks(g) if k != "general.file_type"]
        kvs.append(gw.kv("general.file_type", gw.UINT32, 1))
        specs = [(t.name, t.shape, 0 if t.type == 0 else 1) for t in g.tensors.values()]
        sizes = [int(np.prod(s)) * (4 if t == 0 else 2) for _, s, t in specs]
        offsets = gw.data_offsets(sizes, g.alignment)
        tmp = dst.with_suffix(".part")
        with open(tmp, "wb") as f:
            f.write(gw.header(kvs, [gw.tensor_info(n, s, t, o) for (n, s, t), o in
                                    zip(specs, offsets)], g.alignment))
            for (n, s, t), size in zip(specs, sizes):
                info = g.tensors[n]
                if info.type == 0:
                    f.write(g.tensor_bytes(n).tobytes())
                else:
                    rows = g.tensor_bytes(n).reshape(int(np.prod(s[1:])), -1)
                    x = quants.dequantize(rows, GGMLQuantizationType(info.type))
                    f.write(x.astype("<f2").tobytes())
                f.write(b"\0" * gw.pad(size, g.alignment))
        os.replace(tmp, dst)
    return dst


def sha(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for b in iter(lambda: f.read(1 << 20), b""):
            h.update(b)
    return h.hexdigest()


def timed(cmd: list[str], output: Path) -> float:
    output.unlink(missing_ok=True)
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                   cwd=tempfile.gettempdir())
    return time.perf_counter() - t0


def compare_speed(src: Path, qtype: str, out: Path, peer: str | None, peer_quantize: str | None,
                  threads: int, reps: int) -> dict:
    mine, cpp = out / f"ll-{qtype}.gguf", out / f"cpp-{qtype}.gguf"
    ours = [sys.executable, "-P", "-m", "llamalite.cli.main", "quantize", str(src), str(mine),
            qtype, "-t", str(threads)]
    script = out / "peer_quantize.py"
    script.write_text(PEER_SCRIPT)
    if peer_quantize:
        theirs = [peer_quantize, str(src), str(cpp), qtype, str(threads)]
    else:
        theirs = [peer, str(script), str(src), str(cpp), str(FTYPE[qtype]), str(threads)] if peer else None
    times: dict[str, list[float]] = {"llamalite": [], "llama.cpp": []}
    for r in range(reps):
        order = [("llamalite", ours, mine), ("llama.cpp", theirs, cpp)]
        if r % 2:
            order.reverse()
        for engine, cmd, output in order:
            if cmd is not None:
                times[engine].append(timed(cmd, output))
    row = {k: statistics.median(v) for k, v in times.items() if v}
    row["runs"] = times
    if theirs:
        row["identical"] = sha(mine) == sha(cpp)
    return row


def perplexity(path: Path, text: str) -> float:
    from llamalite import LLM
    with LLM(path, n_ctx=512) as llm:
        return llm.perplexity(text)


def calibration_text() -> str:
    return "\n\n".join(p.read_text(encoding="utf-8") for p in sorted((ROOT / "docs").glob("*.md")))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("models", nargs="*", default=list(MODELS))
    ap.add_argument("--peer-python", default=os.environ.get("LLAMALITE_PEER_PYTHON"))
    ap.add_argument("--peer-quantize", help="llama.cpp's llama-quantize program (built from "
                    "its source); without it the peer's llama_model_quantize is timed")
    ap.add_argument("--speed-only", action="store_true", help="time the quantizers; no imatrix, "
                    "no perplexity")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--chunks", type=int, default=8, help="imatrix chunks of 256 tokens")
    ap.add_argument("--out", type=Path, default=HERE / "results")
    args = ap.parse_args()
    held_out = (ROOT / "tests" / "data" / "english.txt").read_text(encoding="utf-8")
    report: dict = {"threads": args.threads, "reps": args.reps,
                    "peer": "llama-quantize" if args.peer_quantize else "llama_model_quantize",
                    "models": {}}
    with tempfile.TemporaryDirectory() as d:
        work = Path(d)
        calib = work / "calibration.txt"
        calib.write_text(calibration_text(), encoding="utf-8")
        for name in args.models:
            src = f16_copy(name)
            if args.speed_only:
                entry = {"types": {q: compare_speed(src, q, work, args.peer_python, args.peer_quantize,
                                                    args.threads, args.reps) for q in TYPES}}
                for q, r in entry["types"].items():
                    r["mib"] = (work / f"ll-{q}.gguf").stat().st_size / 2**20
                report["models"][name] = entry
                continue
            entry: dict = {"f16_ppl": perplexity(src, held_out), "types": {}}
            im = work / f"{name}-imatrix.gguf"
            subprocess.run([sys.executable, "-P", "-m", "llamalite.cli.main", "imatrix", str(src),
                            "--text", str(calib), "-o", str(im), "--chunk-size", "256",
                            "--chunks", str(args.chunks), "-t", str(args.threads)],
                           check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                           cwd=tempfile.gettempdir())
            for qtype in TYPES:
                row = compare_speed(src, qtype, work, args.peer_python, args.peer_quantize,
                                    args.threads, args.reps)
                row["ppl"] = perplexity(work / f"ll-{qtype}.gguf", held_out)
                with_im = work / f"ll-{qtype}-imatrix.gguf"
                subprocess.run([sys.executable, "-P", "-m", "llamalite.cli.main", "quantize", str(src),
                                str(with_im), qtype, "--imatrix", str(im), "-t", str(args.threads)],
                               check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               cwd=tempfile.gettempdir())
                row["ppl_imatrix"] = perplexity(with_im, held_out)
                row["mib"] = (work / f"ll-{qtype}.gguf").stat().st_size / 2**20
                entry["types"][qtype] = row
            report["models"][name] = entry
    print(f"threads {args.threads}, medians of {args.reps} interleaved runs (seconds); "
          f"llama.cpp: {report['peer']}")
    print(f"{'model':<14} {'type':<7} {'MiB':>7} {'llamalite':>9} {'llama.cpp':>9} {'ratio':>6} "
          f"{'same':>5} {'ppl':>8} {'ppl+imat':>8} {'ppl F16':>8}")
    for name, e in report["models"].items():
        for qtype, r in e["types"].items():
            cpp = f"{r['llama.cpp']:9.2f}" if "llama.cpp" in r else f"{'-':>9}"
            ratio = f"{r['llamalite'] / r['llama.cpp']:6.2f}" if "llama.cpp" in r else f"{'-':>6}"
            ppl = "".join(f" {r[k]:8.3f}" if k in r else f" {'-':>8}" for k in ("ppl", "ppl_imatrix"))
            f16 = f" {e['f16_ppl']:8.3f}" if "f16_ppl" in e else f" {'-':>8}"
            print(f"{name:<14} {qtype:<7} {r['mib']:7.1f} {r['llamalite']:9.2f} {cpp} {ratio} "
                  f"{str(r.get('identical', '-')):>5}{ppl}{f16}")
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "quantize-compare.json"
    path.write_text(json.dumps(report, indent=2))
    print("wrote", path)


if __name__ == "__main__":
    main()
