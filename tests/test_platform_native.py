"""csrc/platform.cpp and the thread pool, run natively in both of their Linux builds.

tests/native/platform_test.cpp is compiled with the C++ compiler (CXX, else c++) twice:
as the wheel builds it on Linux (futex waits, sched_getaffinity, MAP_POPULATE) and with
-DLL_PORTABLE_POSIX=1, the versions macOS and the BSDs get (condition-variable waits,
no affinity mask, no populate flag), so that path runs somewhere. The Windows versions
are only compiled (tests/native/run-cross-compile.sh).
"""
from __future__ import annotations

import os
import shutil
import subprocess

import pytest
from conftest import TESTS_DIR

REPO = TESTS_DIR.parent
CSRC = REPO / "csrc"


def _cxx() -> str:
    cxx = os.environ.get("CXX") or shutil.which("c++") or shutil.which("g++")
    assert cxx, "no C++ compiler found: set CXX or install g++"
    return cxx


@pytest.mark.parametrize("defines", [[], ["-DLL_PORTABLE_POSIX=1"]], ids=["linux", "portable-posix"])
def test_platform_and_thread_pool(defines, tmp_path):
    exe = tmp_path / "platform_test"
    cmd = [_cxx(), "-std=c++17", "-O1", "-Wall", "-Wextra", "-Werror", "-Wno-unused-parameter", "-pthread",
           *defines, f"-I{CSRC}", str(TESTS_DIR / "native" / "platform_test.cpp"),
           str(CSRC / "platform.cpp"), str(CSRC / "threadpool.cpp"), "-o", str(exe)]
    build = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert build.returncode == 0, build.stderr[-4000:]
    # The timeout only catches a hang (a lost wake-up); the checks do not depend on time.
    run = subprocess.run([str(exe)], capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
    expected = "portable posix" if defines else "linux"
    assert f"platform: {expected}" in run.stdout
    assert run.stdout.rstrip().endswith("all passed")
    for line in ("ok page_size", "ok map_anonymous / release_pages", "ok physical_core_count",
                 "ok thread pool of 8"):
        assert line in run.stdout
