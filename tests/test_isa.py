"""Instruction-set detection, LLAMALITE_ISA, system_info()."""
from __future__ import annotations

import os
import re
import subprocess
import sys

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
    assert "LLAMALITE_ISA=avx9000" in r.stderr and "expected generic, avx2, avx512, amx, neon, dotprod or i8mm" in r.stderr


def test_set_isa_unsupported_names_missing_features():
    for isa in ("avx2", "avx512", "amx", "neon", "dotprod", "i8mm"):
        if isa not in _core.supported_isas():
            with pytest.raises(RuntimeError, match="missing"):
                _core.set_isa(isa)
    with pytest.raises(ValueError, match="unknown instruction set"):
        _core.set_isa("sve")


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
