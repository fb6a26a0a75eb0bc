"""The core compiles and links for every platform the project can build here:
tests/native/run-cross-compile.sh (GCC and Clang for x86-64 Linux, the aarch64 cross GCC,
MinGW-w64 GCC for Windows; see docs/platforms.md). The aarch64 program also runs under
qemu-aarch64; the Windows one is compile-only.

The script installs missing compilers with apt-get when run as root (as CI is); builds
are incremental in build/cross/. About 2 minutes of CPU on a cold build.
"""
from __future__ import annotations

import os
import subprocess
import sys

from conftest import TESTS_DIR

SCRIPT = TESTS_DIR / "native" / "run-cross-compile.sh"
TARGETS = {  # compiler -> target, one report line each
    "g++": "x86_64-linux",
    "clang++": "x86_64-linux",
    "aarch64-linux-gnu-g++": "aarch64-linux",
    "qemu-aarch64 platform_test": "aarch64-linux",
    "x86_64-w64-mingw32-g++-posix": "x86_64-windows",
}


def test_the_core_compiles_for_every_target():
    env = {**os.environ, "PYTHON": sys.executable}   # this interpreter's headers and pybind11
    res = subprocess.run(["bash", str(SCRIPT)], capture_output=True, text=True, timeout=3000, env=env)
    out = res.stdout + res.stderr
    assert res.returncode == 0, out[-6000:]
    lines = {}
    for line in res.stdout.splitlines():
        for compiler, target in TARGETS.items():
            if line.startswith(compiler + " ") and line.split()[len(compiler.split())] == target:
                lines[compiler] = line
    assert set(lines) == set(TARGETS), out[-6000:]
    for compiler, line in lines.items():
        assert " OK: " in line, line
    assert "core+bindings" in lines["g++"] and "core+bindings" in lines["clang++"]
