"""The aarch64 kernel sets (neon, dotprod, i8mm) under qemu user emulation.

Runs tests/native/run-aarch64.sh: it cross-builds the core's kernels with
tests/native/test_kernels_arm.cpp, checks every entry of each set against the
generic kernels and the forward pass of tests/data/arm_forward against the x86
logits, each set under a qemu CPU model with exactly its features, and that
forcing a set the emulated CPU lacks is refused. The script installs the cross
compiler and qemu with apt-get when they are missing and it runs as root (CI);
elsewhere it fails naming the packages.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_aarch64_sets_under_qemu() -> None:
    env = dict(os.environ, PYTHON=sys.executable)
    r = subprocess.run(["bash", str(ROOT / "tests" / "native" / "run-aarch64.sh")], capture_output=True,
                       text=True, env=env, timeout=1800)
    assert r.returncode == 0, f"run-aarch64.sh failed (rc {r.returncode}):\n{r.stdout}\n{r.stderr}"
    for isa in ("neon", "dotprod", "i8mm"):
        m = re.search(rf"^{isa}: (\d+) kernels, (\d+) cases checked, forward pass of \d+ tokens", r.stdout, re.M)
        assert m, f"no summary line for {isa}:\n{r.stdout}"
        assert int(m.group(1)) == 23 and int(m.group(2)) > 1000, m.group(0)
