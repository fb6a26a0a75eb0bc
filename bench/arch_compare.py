"""llamalite vs llama.cpp on the synthetic model of every architecture family, side by side.

    python bench/arch_compare.py [FAMILY ...] --peer-python PATH [--threads 2] [--reps 3]
                                 [--n-prompt 128] [--n-gen 32] [--dir FOLDER]

Builds each family's small random model (tests/synthetic_families.py: llama3, mistral,
qwen2, phi3, gemma2, qwen3, and the mixtures of experts qwen3moe and mixtral) into --dir
(kept between runs; built once), then times both engines on it with bench/compare.py's
machinery: pp (the prompt in one batch) and tg (one token at a time), the same token ids
and shapes for both, each repetition in a fresh process, the engines interleaved. The
models are tiny (2-3 layers, n_embd 256), so the figures show per-token overheads of each
family's graph (biases, fused matrices, soft-capping, expert routing) more than matmul
speed. The report is printed and written to bench/results/ (--out).
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "tests"))

import compare  # noqa: E402  (bench/compare.py)
import synthetic_families as sf  # noqa: E402
from llamalite.speed import Config, parse_int_list  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("families", nargs="*", default=list(sf.FAMILIES),
                   help=f"families to time (default: all of {', '.join(sf.FAMILIES)})")
    p.add_argument("--threads", default="2", help="thread counts, comma-separated")
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--n-prompt", type=int, default=128)
    p.add_argument("--n-gen", type=int, default=32)
    p.add_argument("--peer-python", default=os.environ.get("LLAMALITE_PEER_PYTHON"),
                   help="interpreter with llama-cpp-python (default: $LLAMALITE_PEER_PYTHON; "
                        "none: llamalite alone)")
    p.add_argument("--dir", type=Path, default=Path.home() / ".cache" / "llamalite" / "synthetic",
                   help="folder for the built models")
    p.add_argument("--out", type=Path, default=HERE / "results", help="folder for the JSON report")
    a = p.parse_args()
    unknown = [f for f in a.families if f not in sf.FAMILIES]
    if unknown:
        p.error(f"unknown families {unknown}; known: {', '.join(sf.FAMILIES)}")
    if a.peer_python and not os.path.exists(a.peer_python):
        p.error(f"--peer-python {a.peer_python}: no such file")
    a.dir.mkdir(parents=True, exist_ok=True)
    paths = [str(sf.build(f, a.dir)) for f in a.families]
    try:
        cfg = Config(models=paths, threads=parse_int_list(a.threads, "--threads"), reps=a.reps,
                     n_prompt=a.n_prompt, n_gen=a.n_gen, parallel=[])
    except ValueError as e:
        p.error(str(e))
    report = compare.compare(cfg, a.peer_python, native=None,
                             log=lambda msg: print(msg, file=sys.stderr))
    report["families"] = {path: f for path, f in zip(paths, a.families)}
    print(compare.format_table(report))
    print(f"written: {compare.save(report, a.out)}")


if __name__ == "__main__":
    main()
