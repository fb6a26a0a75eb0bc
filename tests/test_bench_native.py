"""The benchmark's roofs and floors live in bench/native (the llamalite_bench module),
never in the product: llamalite._core and csrc have none of them.

The module's measurements are checked against the machine's own numbers after the
tests build it (`python bench/native_module.py`, incremental after the first time).
"""
from __future__ import annotations

import importlib
import sys

import numpy as np
import pytest
from conftest import TESTS_DIR

from llamalite import _core

REPO = TESTS_DIR.parent
NATIVE_BUILD = REPO / "bench" / "native" / "build"
# Names of the roof/floor machinery; none may appear in the product's C++ or module.
BENCH_NAMES = ("bench_", "read_bytes_", "int8_peak", "decode4_floor", "decode8_floor", "ReadBytesFn",
               "Int8PeakFn", "fill_bench_table")


def _native():
    """The module, built first where it is missing or stale (~40 s the first time on 2 cores:
    it compiles its own copy of the core's kernels)."""
    import subprocess
    res = subprocess.run([sys.executable, str(REPO / "bench" / "native_module.py")],
                         capture_output=True, text=True, timeout=1200)
    assert res.returncode == 0, res.stderr[-3000:]
    sys.path.insert(0, str(NATIVE_BUILD))
    try:
        return importlib.import_module("llamalite_bench")
    finally:
        sys.path.remove(str(NATIVE_BUILD))


def test_the_core_module_has_no_bench_code():
    names = [n for n in dir(_core) if any(b in n for b in BENCH_NAMES)]
    assert names == []


def test_csrc_and_the_build_have_no_bench_code():
    found = []
    for path in sorted(p for p in (REPO / "csrc").rglob("*") if p.is_file()):
        text = path.read_text()
        found += [f"{path.name}: {b}" for b in BENCH_NAMES if b in text]
    assert found == []
    top = (REPO / "CMakeLists.txt").read_text()
    assert "bench" not in top


def test_the_native_module_compiles_the_kernels_with_the_core_flags():
    """One file of per-ISA flags for both builds, so the roofs time the same code."""
    for cmake in (REPO / "CMakeLists.txt", REPO / "bench" / "native" / "CMakeLists.txt"):
        text = cmake.read_text()
        assert "cmake/isa_flags.cmake" in text and "llamalite_isa_sources(" in text, cmake
        assert "-mavx" not in text and "-ffp-contract" not in text, cmake
    assert "-mavx512vnni" in (REPO / "cmake" / "isa_flags.cmake").read_text()


def test_tile_peak_only_where_there_are_tiles():
    bench = _native()
    before = bench.active_isa()
    try:
        for isa in bench.supported_isas():
            bench.set_isa(isa)
            peak = bench.int8_peak(1, tile=True)
            assert (peak > 0) == (isa == "amx"), isa
    finally:
        bench.set_isa(before)


def test_decode_floor_only_where_there_are_vector_kernels():
    """matmul_vs_read(floor=True) adds the decode floor's seconds: a real pass for
    quantized weights on the SIMD sets (the 4-bit floor for Q4_0, the 8-bit one for
    Q8_0), 0.0 on generic (no floor loop) and for float weights; without floor, two
    values."""
    bench = _native()
    rng = np.random.default_rng(3)
    N, K = 64, 256
    cases = []
    for qtype, size in ((2, 18), (8, 34)):   # Q4_0, Q8_0: fp16 scale first
        blocks = rng.integers(0, 256, size=(N * K // 32, size), dtype=np.uint8)
        blocks[:, :2] = np.array([0.01], dtype=np.float16).view(np.uint8)   # finite scales
        cases.append((qtype, blocks.reshape(N, -1), True))
    cases.append((0, rng.standard_normal((N, K)).astype(np.float32).view(np.uint8), False))   # F32
    X = rng.standard_normal((1, K)).astype(np.float32)
    before = bench.active_isa()
    try:
        for isa in bench.supported_isas():
            bench.set_isa(isa)
            for qtype, W, x8 in cases:
                mm, rd, fl = bench.matmul_vs_read(qtype, W, X, 1, iters=3, x8=x8, floor=True)
                assert mm > 0 and rd > 0
                assert (fl > 0) == (isa != "generic" and qtype != 0), (isa, qtype)
                assert len(bench.matmul_vs_read(qtype, W, X, 1, iters=2, x8=x8)) == 2
    finally:
        bench.set_isa(before)


def test_bad_arguments_are_clear_errors():
    bench = _native()
    W = np.zeros((8, 18), np.uint8)
    X = np.zeros((1, 32), np.float32)
    with pytest.raises(ValueError, match="W must be"):
        bench.time_matmul(2, W, np.zeros((1, 64), np.float32))
    with pytest.raises(ValueError, match="no x8 layout"):
        bench.time_matmul(2, W[:5], X, x8=True)
    with pytest.raises(ValueError, match="unknown instruction set"):
        bench.set_isa("sse9")
    with pytest.raises(ValueError, match="positive"):
        bench.read_bandwidth(0)
