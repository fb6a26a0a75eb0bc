"""Time open_gguf on the real models (median of N opens, page cache warm).

    python -P bench/bench_gguf_open.py [--repeat 5] [--oracle]

--oracle also times gguf.GGUFReader once per model for comparison (slow).
"""
from __future__ import annotations

import argparse
import statistics
import time

import llamalite


def time_open(path, repeat: int) -> list[float]:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        g = llamalite.open_gguf(path)
        times.append(time.perf_counter() - t0)
        g.close()
    return times


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--oracle", action="store_true", help="also time gguf.GGUFReader once")
    args = ap.parse_args()
    for name in ("smollm2-135m", "gemma3-270m"):
        path = llamalite.pull(name)
        llamalite.open_gguf(path).close()  # warm the page cache for the header
        times = time_open(path, args.repeat)
        line = (f"{name:<14} open_gguf median {statistics.median(times) * 1e3:7.2f} ms "
                f"(min {min(times) * 1e3:.2f}, max {max(times) * 1e3:.2f}, n={len(times)})")
        if args.oracle:
            import gguf
            t0 = time.perf_counter()
            gguf.GGUFReader(str(path))
            line += f"; gguf.GGUFReader {time.perf_counter() - t0:.2f} s"
        print(line)


if __name__ == "__main__":
    main()
