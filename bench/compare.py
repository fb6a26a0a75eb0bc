"""llamalite vs llama.cpp, side by side: `python bench/compare.py [MODEL ...]`.

Same as `llamalite bench MODEL --compare`. The peer is llama-cpp-python installed
in its own environment; point at its interpreter with --peer-python or
LLAMALITE_PEER_PYTHON. Results are printed and written to bench/results/.
"""
from __future__ import annotations

import argparse
import os
from pathlib import Path

from llamalite.benchmark import Config, compare, format_table, parse_int_list, parse_parallel, save


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("models", nargs="*", default=["smollm2-135m", "gemma3-270m"])
    p.add_argument("--threads", default="2",
                   help="thread counts, comma-separated (1,2): one full table each")
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--n-prompt", type=int, default=512)
    p.add_argument("--n-gen", type=int, default=128)
    p.add_argument("--parallel", default=None,
                   help="sequence counts for aggregate parallel generation (default 1,4,8; "
                        "0 to skip)")
    p.add_argument("--peer-python", default=os.environ.get("LLAMALITE_PEER_PYTHON"))
    p.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    a = p.parse_args()
    try:
        threads = parse_int_list(a.threads, "--threads")
        parallel = parse_parallel(a.parallel, default=[1, 4, 8])
    except ValueError as e:
        p.error(str(e))
    cfg = Config(models=a.models, threads=threads, reps=a.reps, n_prompt=a.n_prompt,
                 n_gen=a.n_gen, parallel=parallel, peer_python=a.peer_python, out_dir=a.out)
    report = compare(cfg)
    print(format_table(report))
    print(f"written: {save(report, cfg.out_dir)}")


if __name__ == "__main__":
    main()
