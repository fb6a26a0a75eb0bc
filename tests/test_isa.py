"""Instruction-set detection, LLAMALITE_ISA, system_info()."""
from __future__ import annotations

import os
import re
import subprocess
import sys

import numpy as np
import pytest

import llamalite
from llamalite import _core


def _run(code: str, isa: str | None) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env.pop("LLAMALITE_ISA", None)
    if isa is not None:
        env["LLAMALITE_ISA"] = isa
    return subprocess.run([sys.executable, "-P", "-c", code], capture_output=True, text=True, env=env,
                          cwd="/", timeout=120)


def test_supported_and_active():
    isas = _core.supported_isas()
    assert isas[0] == "generic"
    assert _core.best_isa() == isas[-1]
    assert _core.active_isa() in isas
    feats = _core.cpu_features().split()
    if "avx512" in isas:
        assert {"avx512f", "avx512bw", "avx512vl", "avx512vnni"} <= set(feats)
    if "avx2" in isas:
        assert {"avx2", "fma", "f16c"} <= set(feats)
    if "amx" in isas:
        assert "avx512" in isas and {"amx-tile", "amx-int8"} <= set(feats)


def test_default_isa_is_best():
    r = _run("from llamalite import _core; print(_core.active_isa())", None)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == _core.best_isa()


@pytest.mark.parametrize("isa", _core.supported_isas())
def test_env_forces_isa(isa):
    r = _run("import llamalite; print(llamalite.system_info()['active_isa'])", isa)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == isa


def test_env_unknown_isa_is_clear_error():
    r = _run("import llamalite", "avx9000")
    assert r.returncode != 0
    assert "LLAMALITE_ISA=avx9000" in r.stderr and "expected generic, avx2, avx512 or amx" in r.stderr


def test_set_isa_unsupported_names_missing_features():
    for isa in ("avx2", "avx512", "amx"):
        if isa not in _core.supported_isas():
            with pytest.raises(RuntimeError, match="missing"):
                _core.set_isa(isa)
    with pytest.raises(ValueError, match="unknown instruction set"):
        _core.set_isa("neon")


def test_system_info():
    info = llamalite.system_info()
    assert info["active_isa"] == _core.active_isa()
    assert info["supported_isas"] == _core.supported_isas()
    assert isinstance(info["cpu_features"], list)
    assert info["default_threads"] >= 1
    assert info["version"] == llamalite.__version__


def _run_masked(code: str, isa: str | None, disabled: str) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env.pop("LLAMALITE_ISA", None)
    env["LLAMALITE_DISABLE_FEATURES"] = disabled
    if isa is not None:
        env["LLAMALITE_ISA"] = isa
    return subprocess.run([sys.executable, "-P", "-c", code], capture_output=True, text=True, env=env,
                          cwd="/", timeout=120)


@pytest.mark.skipif("avx2" not in _core.supported_isas(), reason="needs an AVX2 machine to mask features")
def test_fallback_when_features_are_missing():
    """With features masked (test hook), the best ISA falls back and forcing a
    missing one names what is missing."""
    code = "from llamalite import _core; print(_core.active_isa(), ','.join(_core.supported_isas()))"
    r = _run_masked(code, None, "avx512vnni")
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["avx2", "generic,avx2"]
    r = _run_masked(code, None, "avx2,fma")
    assert r.stdout.split() == ["generic", "generic"]
    r = _run_masked("import llamalite", "avx512", "avx512vnni,avx512bw")
    assert r.returncode != 0
    assert "LLAMALITE_ISA=avx512" in r.stderr
    missing = re.search(r"missing ([\w\- ()]+?) \(use", r.stderr).group(1).split()
    # The masked features are named; a CPU without AVX-512 also lacks the rest.
    assert {"avx512bw", "avx512vnni"} <= set(missing)
    if "avx512" in _core.supported_isas():
        assert missing == ["avx512bw", "avx512vnni"]
    r = _run_masked("import llamalite", "avx2", "fma")
    assert "'avx2' is not available on this CPU: missing fma" in r.stderr


@pytest.mark.skipif("amx" not in _core.supported_isas(), reason="needs a CPU and OS with AMX-INT8")
def test_amx_falls_back_to_avx512_when_masked():
    """Masking AMX-INT8 (test hook) leaves avx512 as the best set; forcing amx then
    names what is missing."""
    code = "from llamalite import _core; print(_core.active_isa(), ','.join(_core.supported_isas()))"
    r = _run_masked(code, None, "amx-int8")
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["avx512", "generic,avx2,avx512"]
    r = _run_masked("import llamalite", "amx", "amx-tile")
    assert r.returncode != 0
    assert "LLAMALITE_ISA=amx" in r.stderr and "missing amx-tile" in r.stderr


def test_tile_peak_only_where_there_are_tiles():
    before = _core.active_isa()
    try:
        for isa in _core.supported_isas():
            _core.set_isa(isa)
            peak = _core.bench_int8_peak(1, tile=True)
            assert (peak > 0) == (isa == "amx"), isa
    finally:
        _core.set_isa(before)


def test_decode_floor_only_where_there_are_vector_kernels():
    """bench_matmul_vs_read(floor=True) adds the decode floor's seconds: a real pass
    for quantized weights on the SIMD sets (the 4-bit floor for Q4_0, the 8-bit one
    for Q8_0), 0.0 on generic (no floor loop) and for float weights; without floor,
    two values."""
    rng = np.random.default_rng(3)
    N, K = 64, 256
    cases = []
    for qtype, size in ((2, 18), (8, 34)):   # Q4_0, Q8_0: fp16 scale first
        blocks = rng.integers(0, 256, size=(N * K // 32, size), dtype=np.uint8)
        blocks[:, :2] = np.array([0.01], dtype=np.float16).view(np.uint8)   # finite scales
        cases.append((qtype, blocks.reshape(N, -1), True))
    cases.append((0, rng.standard_normal((N, K)).astype(np.float32).view(np.uint8), False))   # F32
    X = rng.standard_normal((1, K)).astype(np.float32)
    before = _core.active_isa()
    try:
        for isa in _core.supported_isas():
            _core.set_isa(isa)
            for qtype, W, x8 in cases:
                mm, rd, fl = _core.bench_matmul_vs_read(qtype, W, X, 1, iters=3, x8=x8, floor=True)
                assert mm > 0 and rd > 0
                assert (fl > 0) == (isa != "generic" and qtype != 0), (isa, qtype)
                assert len(_core.bench_matmul_vs_read(qtype, W, X, 1, iters=2, x8=x8)) == 2
    finally:
        _core.set_isa(before)
