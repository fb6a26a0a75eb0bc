"""Importance matrices: collected by the core's forward pass, read and written in
llama.cpp's GGUF and legacy .dat formats.

The collected sums are checked against the numpy reference forward pass
(tests/reference, its ACT_HOOK sees the float activations entering every matmul) on a
tiny F32 model, where the two agree to float32 accuracy. The llama.cpp-format files in
tests/data were written field by field from llama.cpp's layouts by
tests/tools/record_quantize.py.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

import reference.forward as ref_forward
from conftest import run_cli
from llamalite.quant import imatrix_file
from llamalite.quant.imatrix import ImatrixInputError, chunks_of, collect
from llamalite.tokenizer import Tokenizer
from quant_models import F32, TINY, write_model

DATA = Path(__file__).parent / "data"
SHAPE = dataclasses.replace(TINY["llama"], n_layer=2)
TEXT = (DATA / "english.txt").read_text(encoding="utf-8")[:600]


@pytest.fixture(scope="module")
def f32_llama(tmp_path_factory) -> Path:
    # two layers: deeper, the random model's chaos amplifies the last-bit differences of the
    # core's SIMD activations past a useful tolerance
    return write_model(tmp_path_factory.mktemp("im") / "llama-f32.gguf", SHAPE, dtype=F32)


def _numpy_sums(path: Path, chunks: list[list[int]]) -> tuple[dict, dict]:
    sums: dict[str, np.ndarray] = {}
    counts: dict[str, int] = {}

    def hook(name: str, x: np.ndarray) -> None:
        if name.startswith("blk."):
            x64 = x.astype(np.float64)
            sums[name] = sums.get(name, 0.0) + (x64 * x64).sum(axis=0)
            counts[name] = counts.get(name, 0) + x.shape[0]
    ref_forward.ACT_HOOK = hook
    try:
        for c in chunks:
            ref_forward.reference_logits(path, c, act_quant=False, kv_f16=True)
    finally:
        ref_forward.ACT_HOOK = None
    return sums, counts


def test_collected_sums_match_numpy(f32_llama):
    got = collect(f32_llama, TEXT, chunk_size=48, n_chunks=2, n_threads=2)
    tok = Tokenizer.from_gguf(f32_llama)
    chunks = chunks_of(tok.tokenize(TEXT), 48, 2, tok.bos_id)
    assert got.n_chunks == 2 and all(c[0] == tok.bos_id for c in chunks)
    want_sums, want_counts = _numpy_sums(f32_llama, chunks)
    assert sorted(got.sums) == sorted(want_sums) and len(want_sums) == 7 * SHAPE.n_layer
    for name, s in want_sums.items():
        assert got.counts[name] == want_counts[name] == 96
        # the f16 KV caches may round a value to neighbouring halves and the core's SIMD
        # silu differs in the last bits (median relative difference measured: 2e-5)
        np.testing.assert_allclose(got.sums[name], s, rtol=1e-3, err_msg=name)
        assert np.median(np.abs(got.sums[name] / s - 1)) < 1e-4, name


def test_statistics_are_off_by_default(f32_llama):
    from llamalite.model import Model
    m = Model.load(f32_llama, n_threads=1)
    with pytest.raises(ValueError, match="activation statistics are off"):
        m._native.act_stats()


def test_chunking_follows_llama_imatrix():
    toks = list(range(10, 35))
    assert chunks_of(toks, 10, None, 1) == [[1] + toks[1:10], [1] + toks[11:20]]
    assert chunks_of(toks, 10, 1, None) == [toks[:10]]
    with pytest.raises(ImatrixInputError, match="fewer than one chunk of 64"):
        chunks_of(toks, 64, None, 1)


def test_reads_llama_cpp_gguf_and_dat_files():
    want = np.load(DATA / "imatrix_llama_cpp_expected.npz")
    for suffix in ("gguf", "dat"):
        im = imatrix_file.load(DATA / f"imatrix_llama_cpp.{suffix}")
        assert im.legacy == (suffix == "dat") and im.chunk_count == 4
        assert im.datasets == ["calibration.txt"]
        w = im.weights()
        assert sorted(w) == sorted(want.files)
        for name in want.files:
            np.testing.assert_allclose(w[name], want[name], rtol=1e-6, err_msg=f"{suffix} {name}")


def test_written_files_read_back(tmp_path):
    rng = np.random.default_rng(0)
    sums = {"blk.0.attn_q.weight": rng.uniform(0, 9, 64), "blk.0.ffn_down.weight": rng.uniform(0, 9, 96)}
    counts = {"blk.0.attn_q.weight": 1024, "blk.0.ffn_down.weight": 1024}
    imatrix_file.save_gguf(tmp_path / "a.gguf", sums, counts, chunk_count=2, chunk_size=512,
                           datasets=["t.txt"])
    imatrix_file.save_dat(tmp_path / "a.dat", sums, counts, chunk_count=2, chunk_size=512,
                          dataset="t.txt")
    for p in ("a.gguf", "a.dat"):
        w = imatrix_file.load(tmp_path / p).weights()
        for n in sums:
            np.testing.assert_allclose(w[n], sums[n] / 1024, rtol=1e-6)
    (tmp_path / "bad").write_bytes(b"\x05\x00\x00\x00junk")
    with pytest.raises(imatrix_file.ImatrixError, match="bad|truncated|not an importance"):
        imatrix_file.load(tmp_path / "bad")


def test_cli_writes_an_imatrix_that_quantize_reads(f32_llama, tmp_path):
    text = tmp_path / "calib.txt"
    text.write_text(TEXT, encoding="utf-8")
    out = tmp_path / "im.gguf"
    r = run_cli("imatrix", str(f32_llama), "--text", str(text), "-o", str(out), "--chunk-size", "64",
                "--chunks", "2", "-t", "2")
    assert r.returncode == 0, r.stderr
    assert "14 weights, 2 chunks" in r.stdout
    im = imatrix_file.load(out)
    assert im.chunk_count == 2 and im.chunk_size == 64 and len(im.sums) == 14
    assert all(int(c[0]) == 128 for c in im.counts.values())
    q = tmp_path / "q.gguf"
    r = run_cli("quantize", str(f32_llama), str(q), "IQ4_XS", "--imatrix", str(out))
    assert r.returncode == 0, r.stderr
    from llamalite.gguf import open_gguf
    with open_gguf(q) as g:
        assert g.get("quantize.imatrix.entries_count") == 14
        assert g.get("quantize.imatrix.chunks_count") == 2
    r = run_cli("imatrix", str(f32_llama), "--text", str(text), "-o", str(out), "--chunk-size", "100000")
    assert r.returncode == 1 and "fewer than one chunk of 100000" in r.stderr
