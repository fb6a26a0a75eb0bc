"""The scripts of bench/ as modules, for tests of their pure parts (tables, costs).

They are scripts of the repository, not part of the package: loaded by path. They
import the installed llamalite like any user code.
"""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent.parent / "bench"


def bench_script(name: str):
    """bench/<name>.py as a module of its own."""
    spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCH_DIR / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod
