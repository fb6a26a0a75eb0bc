"""Kernel benchmark: matmul throughput beside roofs measured in the same run.

For Q4_0, Q4_1, Q4_K, Q5_0, Q6_K and Q8_0 at the real models' shapes:
- M = 1: GB/s of weights read, beside the read bandwidth of the same bytes
  (`llamalite_bench.matmul_vs_read`: rounds of one matmul, then one pass of the
  roof's read loop over the same weights, so both see the same machine).
  "hot": the same weight matrix every call (it stays in cache when it fits);
  "cold": calls cycle through enough copies (>= 96 MB) that weights come from
  DRAM, as they do in a real forward pass of a model bigger than the L3 cache.
  Hot, each round also passes a decode floor over the same bytes (`floor=True`),
  the least work a matmul of such weights does per byte, nothing else: per 32
  bytes one load, two nibble masks and two int8 dot products (4-bit, every type
  but Q8_0: each needs at least that work per byte), or one load, one sign flip
  and one int8 dot product (8-bit, Q8_0). Where the floor is below the roof, no
  kernel of that type can reach the roof on this ISA; "floor" is its GB/s and
  "%fl" the kernel's share of it.
- M = 512: GMAC/s beside the int8 dot-product peak (`llamalite_bench.int8_peak`:
  vpdpbusd or maddubs chains in registers). Under the amx instruction set also
  beside the AMX tile-product peak (TDPBSSD on full tiles, `tile=True`), which a
  kernel with a scale per 32-value block cannot approach: each block's 16 x 16
  integer tile must be stored and scaled on the vector units.
Every number is the median of several interleaved repetitions; all timing
loops run in C++ on the core's thread pool.

The loops live in the llamalite_bench module (bench/native, never in the
llamalite wheel), which compiles its own copy of the core's kernels; this script
builds it on first use (or: python bench/native_module.py) and brings it up to
date with the sources on every run.

Layout: by default each type is measured in the layout a loaded model runs it in:
the x8 layout (8 rows interleaved per block, repacked at load; every type here has
one). `--layout ggml` measures ggml rows throughout. Either way the weights lie
64-byte aligned, as in a loaded model.

    python bench/kernels.py [--threads 2] [--reps 5] [--isa avx512] [--quick]
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

import llamalite
from llamalite import _core

sys.path.insert(0, str(Path(__file__).resolve().parent))   # bench/native_module.py, also under -P
from native_module import load as load_native  # noqa: E402

bench = None  # the llamalite_bench module, set by main()

TYPES = {"Q4_0": 2, "Q4_1": 3, "Q5_0": 6, "Q8_0": 8, "Q4_K": 12, "Q6_K": 14}
# (N, K): weight rows x row length, from SmolLM2-135M (hidden 576, ffn 1536,
# vocab 49152) and Gemma 3 270M (hidden 640, ffn 2048). K-quants need K % 256 == 0.
SHAPES = [(1536, 576), (576, 1536), (2048, 640), (640, 2048), (49152, 576)]
BIG_N = 16384  # shapes with more rows than this skip M = 512 (minutes of compute)
COLD_BYTES = 96 << 20
X8_TYPES = {"Q4_0", "Q4_1", "Q5_0", "Q8_0", "Q4_K", "Q6_K"}   # repacked into the x8 layout at load


def random_weights(type_id: int, n: int, k: int, rng: np.random.Generator) -> np.ndarray:
    """uint8 [n, row_bytes]: random blocks with finite, small fp16 scales."""
    tr = _core.type_traits(type_id)
    raw = rng.integers(0, 256, size=(n * k // tr["block_size"], tr["type_size"]), dtype=np.uint8)
    fp16_fields = {"Q4_0": [0], "Q4_1": [0, 2], "Q5_0": [0], "Q8_0": [0], "Q4_K": [0, 2], "Q6_K": [208]}
    for off in fp16_fields[tr["name"]]:
        raw[:, off:off + 2] = np.array([0.01], dtype=np.float16).view(np.uint8)
    return raw.reshape(n, -1)


def time_matmul(type_id: int, W: np.ndarray, X: np.ndarray, threads: int, copies: int, budget_s: float,
                x8: bool) -> float:
    """Seconds per call, with iters chosen so one measurement takes about budget_s."""
    est = bench.time_matmul(type_id, W, X, threads, iters=2, copies=copies, x8=x8)
    iters = max(3, min(20000, int(budget_s / max(est, 1e-7))))
    return bench.time_matmul(type_id, W, X, threads, iters=iters, copies=copies, x8=x8)


def bench_case(name: str, n: int, k: int, threads: int, reps: int, rng: np.random.Generator,
               layout: str = "model") -> dict:
    type_id = TYPES[name]
    x8 = layout == "model" and name in X8_TYPES and n % 8 == 0
    W1 = random_weights(type_id, n, k, rng)
    nbytes = W1.nbytes
    copies = max(1, -(-COLD_BYTES // nbytes))
    Wc = np.ascontiguousarray(np.tile(W1, (copies, 1))) if copies > 1 else W1
    X1 = rng.standard_normal((1, k)).astype(np.float32)
    do_512 = n <= BIG_N
    X512 = rng.standard_normal((512, k)).astype(np.float32) if do_512 else None
    hot, hot_roof, hot_floor, cold, cold_roof, gmacs, peak, tile_peak = [], [], [], [], [], [], [], []
    for _ in range(reps):  # interleaved: each repetition measures everything once
        # M = 1: each round is one matmul then one read pass over the same weights
        # (and hot, passes of the type's decode floor). The 4-bit floor bounds every
        # type here but Q8_0 (which has the 8-bit one): each needs at least its work
        # per byte (Q4_0, Q4_1, Q4_K: the same nibbles plus scales; Q5_0: a fifth bit
        # on top; Q6_K: per 96 bytes 4 dot products and at least 5 shifts on the same
        # two ports, against the floor's 6 dot products).
        for copies_, out, roof, budget in ((1, hot, hot_roof, 0.03), (copies, cold, cold_roof, 0.06)):
            W = W1 if copies_ == 1 else Wc
            floor = copies_ == 1
            t = bench.matmul_vs_read(type_id, W, X1, threads, iters=2, copies=copies_, x8=x8, floor=floor)
            iters = max(3, min(20000, int(budget / max(sum(t), 1e-7))))
            t = bench.matmul_vs_read(type_id, W, X1, threads, iters=iters, copies=copies_, x8=x8, floor=floor)
            out.append(nbytes / t[0] / 1e9)
            roof.append(nbytes / t[1] / 1e9)
            if floor and t[2] > 0:
                hot_floor.append(nbytes / t[2] / 1e9)
        if do_512:
            peak.append(bench.int8_peak(threads))
            tile_peak.append(bench.int8_peak(threads, tile=True))
            gmacs.append(512 * n * k / time_matmul(type_id, W1, X512, threads, 1, 0.1, x8) / 1e9)
    med = statistics.median
    row = {
        "type": name, "N": n, "K": k, "weight_bytes": nbytes, "layout": "x8" if x8 else "ggml",
        "m1_hot_gbs": med(hot), "m1_hot_roof_gbs": med(hot_roof),
        "m1_cold_gbs": med(cold), "m1_cold_roof_gbs": med(cold_roof),
    }
    row["m1_hot_pct"] = 100 * row["m1_hot_gbs"] / row["m1_hot_roof_gbs"]
    if hot_floor:
        row["m1_hot_floor_gbs"] = med(hot_floor)
        row["m1_hot_floor_pct_of_roof"] = 100 * row["m1_hot_floor_gbs"] / row["m1_hot_roof_gbs"]
        row["m1_hot_pct_of_floor"] = 100 * row["m1_hot_gbs"] / row["m1_hot_floor_gbs"]
    row["m1_cold_pct"] = 100 * row["m1_cold_gbs"] / row["m1_cold_roof_gbs"]
    if do_512:
        row.update(m512_gmacs=med(gmacs), int8_peak_gmacs=med(peak))
        row["m512_pct"] = 100 * row["m512_gmacs"] / row["int8_peak_gmacs"]
        if med(tile_peak) > 0:
            row.update(int8_tile_peak_gmacs=med(tile_peak))
            row["m512_tile_pct"] = 100 * row["m512_gmacs"] / row["int8_tile_peak_gmacs"]
    return row


def print_table(rows: list[dict]) -> None:
    head = (f"{'type':5} {'lay':4} {'N x K':>12} {'MB':>6} | {'M=1 hot GB/s':>12} {'roof':>6} {'%':>4} "
            f"{'floor':>6} {'%fl':>4} | "
            f"{'M=1 cold GB/s':>13} {'roof':>6} {'%':>4} | {'M=512 GMAC/s':>12} {'peak':>6} {'%':>4}")
    tiles = any("int8_tile_peak_gmacs" in r for r in rows)
    if tiles:
        head += f" | {'tile peak':>9} {'%':>4}"
    print(head)
    print("-" * len(head))
    for r in rows:
        m512 = (f"{r['m512_gmacs']:12.1f} {r['int8_peak_gmacs']:6.1f} {r['m512_pct']:4.0f}"
                if "m512_gmacs" in r else f"{'-':>12} {'-':>6} {'-':>4}")
        fl = (f"{r['m1_hot_floor_gbs']:6.1f} {r['m1_hot_pct_of_floor']:4.0f}" if "m1_hot_floor_gbs" in r
              else f"{'-':>6} {'-':>4}")
        print(f"{r['type']:5} {r.get('layout', 'ggml'):4} {r['N']:>6}x{r['K']:<5} {r['weight_bytes'] / 1e6:6.2f} | "
              f"{r['m1_hot_gbs']:12.1f} {r['m1_hot_roof_gbs']:6.1f} {r['m1_hot_pct']:4.0f} {fl} | "
              f"{r['m1_cold_gbs']:13.1f} {r['m1_cold_roof_gbs']:6.1f} {r['m1_cold_pct']:4.0f} | {m512}"
              + ((f" | {r['int8_tile_peak_gmacs']:9.1f} {r['m512_tile_pct']:4.0f}" if "int8_tile_peak_gmacs" in r
                  else f" | {'-':>9} {'-':>4}") if tiles else ""))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--isa", choices=["generic", "avx2", "avx512", "amx", "neon", "dotprod", "i8mm"],
                    default=None)
    ap.add_argument("--types", default=",".join(TYPES))
    ap.add_argument("--quick", action="store_true", help="one shape per type, 3 repetitions")
    ap.add_argument("--layout", choices=["model", "ggml"], default="model",
                    help="model: the layout a loaded model runs each type in (x8 for the 32-value types); "
                         "ggml: ggml rows throughout")
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = ap.parse_args()
    global bench
    bench = load_native()
    if args.isa:
        bench.set_isa(args.isa)
    reps = 3 if args.quick else args.reps
    rng = np.random.default_rng(0)
    rows = []
    for name in args.types.split(","):
        block = _core.type_traits(TYPES[name])["block_size"]
        shapes = [(n, k) for n, k in SHAPES if k % block == 0]
        for n, k in shapes[:1] if args.quick else shapes:
            rows.append(bench_case(name, n, k, args.threads, reps, rng, args.layout))
            print(f"  {name} {n}x{k} done", flush=True)
    info = dict(llamalite.system_info(), active_isa=bench.active_isa())   # the measured kernels' set
    print(f"\nllamalite {info['version']}  isa={info['active_isa']}  threads={args.threads}  "
          f"median of {reps} interleaved repetitions")
    print_table(rows)
    if info["active_isa"] in ("neon", "dotprod", "i8mm"):
        print("\nnote: the aarch64 sets have no roof, floor or peak loops of their own; those columns "
              "are the generic scalar loops, so compare the GB/s and GMAC/s, not the percentages.")
    args.out.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    path = args.out / f"kernels-{info['active_isa']}-{stamp}.json"
    path.write_text(json.dumps({"system": info, "threads": args.threads, "reps": reps, "layout": args.layout,
                                "rows": rows}, indent=1))
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
