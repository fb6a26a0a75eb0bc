"""The benchmark's native module, llamalite_bench (bench/native): build it and import it.

    python bench/native_module.py        # configure (once) and build bench/native/build

bench/kernels.py and bench/compare.py call load(), which brings the build up to
date first (an incremental `cmake --build`: a few seconds when nothing changed,
minutes the first time: the module compiles its own copy of the core's kernels).
The module is never part of the llamalite wheel.
"""
from __future__ import annotations

import importlib
import shutil
import subprocess
import sys
from pathlib import Path

SOURCE = Path(__file__).resolve().parent / "native"
BUILD = SOURCE / "build"


def commands(python: str = sys.executable) -> list[list[str]]:
    """The configure (only while the build folder has no cache) and build commands."""
    import pybind11

    cmds = []
    if not (BUILD / "CMakeCache.txt").is_file():
        gen = ["-G", "Ninja"] if shutil.which("ninja") else []
        cmds.append(["cmake", "-S", str(SOURCE), "-B", str(BUILD), *gen, "-DCMAKE_BUILD_TYPE=Release",
                     f"-Dpybind11_DIR={pybind11.get_cmake_dir()}", f"-DPython_EXECUTABLE={python}"])
    cmds.append(["cmake", "--build", str(BUILD), "-j"])
    return cmds


def build(verbose: bool = True) -> None:
    for cmd in commands():
        if verbose:
            print("$ " + " ".join(cmd), file=sys.stderr, flush=True)
        res = subprocess.run(cmd, capture_output=not verbose, text=True)
        if res.returncode != 0:
            why = (res.stderr or res.stdout or "").strip()[-2000:] if not verbose else ""
            raise SystemExit(f"building llamalite_bench failed ({' '.join(cmd)}){': ' + why if why else ''}")


def load(build_first: bool = True):
    """The llamalite_bench module, built or brought up to date first unless told not to."""
    if build_first:
        build(verbose=not (BUILD / "CMakeCache.txt").is_file())
    if str(BUILD) not in sys.path:
        sys.path.insert(0, str(BUILD))
    try:
        return importlib.import_module("llamalite_bench")
    except ImportError as e:
        raise SystemExit(f"llamalite_bench is not built ({e}); build it with: "
                         "python bench/native_module.py") from None


if __name__ == "__main__":
    build()
    mod = load(build_first=False)
    print(f"{mod.__file__}  (active isa {mod.active_isa()})")
