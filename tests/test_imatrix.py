"""Importance matrices: collected by the core's forward pass, read and written in
llama.cpp's GGUF and legacy .dat formats.

The collected sums are checked against the numpy reference forward pass
(tests/reference, its ACT_HOOK sees the float activations entering every matmul, per
expert for the 3-D expert tensors) on a tiny F32 model and, in precise mode, on the
synthetic qwen3moe and Mixtral models, where the two agree to float32 accuracy.
imatrix_llama_cpp.{gguf,dat} in tests/data were written field by field from llama.cpp's
layouts by tests/tools/record_quantize.py; imatrix_llama_cpp_{qwen2,qwen3moe}.* are
llama-imatrix's own outputs on synthetic models (tests/tools/record_imatrix.py), with the
peer's quantizations using them.
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

import reference.forward as ref_forward
from conftest import run_cli
from llamalite.quant import imatrix_file
from llamalite.quant.imatrix import ImatrixInputError, chunks_of, collect
from llamalite.tokenizer import Tokenizer
from quant_models import F32, TINY, write_model
import synthetic_families as sf

DATA = Path(__file__).parent / "data"
SHAPE = dataclasses.replace(TINY["llama"], n_layer=2)
TEXT = (DATA / "english.txt").read_text(encoding="utf-8")[:600]


@pytest.fixture(scope="module")
def f32_llama(tmp_path_factory) -> Path:
    # two layers: deeper, the random model's chaos amplifies the last-bit differences of the
    # core's SIMD activations past a useful tolerance
    return write_model(tmp_path_factory.mktemp("im") / "llama-f32.gguf", SHAPE, dtype=F32)


def _numpy_sums(path: Path, chunks: list[list[int]], n_expert: int = 0,
                **overrides) -> tuple[dict, dict]:
    """name -> sum of x^2 [n_mat, K] and rows seen [n_mat] from the reference forward
    (n_mat = n_expert for the 3-D expert tensors, 1 otherwise)."""
    sums: dict[str, np.ndarray] = {}
    counts: dict[str, np.ndarray] = {}

    def hook(name: str, x: np.ndarray, expert) -> None:
        if name.startswith("blk."):
            n_mat, e = (1, 0) if expert is None else (n_expert, expert)
            if name not in sums:
                sums[name] = np.zeros((n_mat, x.shape[1]))
                counts[name] = np.zeros(n_mat, dtype=np.int64)
            x64 = x.astype(np.float64)
            sums[name][e] += (x64 * x64).sum(axis=0)
            counts[name][e] += x.shape[0]
    ref_forward.ACT_HOOK = hook
    try:
        for c in chunks:
            ref_forward.reference_logits(path, c, **overrides)
    finally:
        ref_forward.ACT_HOOK = None
    return sums, counts


def test_collected_sums_match_numpy(f32_llama):
    got = collect(f32_llama, TEXT, chunk_size=48, n_chunks=2, n_threads=2)
    tok = Tokenizer.from_gguf(f32_llama)
    chunks = chunks_of(tok.tokenize(TEXT), 48, 2, tok.bos_id)
    assert got.n_chunks == 2 and all(c[0] == tok.bos_id for c in chunks)
    want_sums, want_counts = _numpy_sums(f32_llama, chunks, act_quant=False, kv_f16=True)
    assert sorted(got.sums) == sorted(want_sums) and len(want_sums) == 7 * SHAPE.n_layer
    for name, s in want_sums.items():
        assert got.counts[name].tolist() == want_counts[name].tolist() == [96]
        assert got.sums[name].shape == s.shape == (1, s.size)
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


# ---------------------------------------------------------------- fused tensors
def test_fused_tensors_collect_once_under_their_names(tmp_path):
    """Phi-3's attn_qkv (q | k | v rows) and ffn_up (gate | up rows) run as row views of
    one tensor; their statistics are the fused tensor's: every token once, all K columns,
    under the file's name, as the numpy reference (one matmul per fused tensor) sees them."""
    path = sf.build("phi3", tmp_path)
    got = collect(path, TEXT, chunk_size=32, n_chunks=2, n_threads=2, precise=True)
    want_sums, want_counts = _numpy_sums(path, _chunks(path, 32, 2), act_quant=False)
    assert sorted(got.sums) == sorted(want_sums)
    assert {"blk.0.attn_qkv.weight", "blk.1.ffn_up.weight"} <= set(got.sums)
    assert not any(".attn_q." in n or ".ffn_gate." in n for n in got.sums)
    assert got.sums["blk.1.attn_qkv.weight"].shape == got.sums["blk.1.ffn_up.weight"].shape == (1, sf.N_EMBD)
    for name, s in want_sums.items():
        assert got.counts[name].tolist() == want_counts[name].tolist() == [64], name
        assert got.sums[name].shape == s.shape, name
        # float32 activations and cache on both sides: summation order only
        np.testing.assert_allclose(got.sums[name], s, rtol=1e-4, err_msg=name)


# ---------------------------------------------------------------- mixture of experts
MOE_FAMILIES = ("qwen3moe", "mixtral")


@pytest.fixture(scope="module")
def moe_models(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("moe")
    return {name: sf.build(name, d) for name in MOE_FAMILIES}


def _chunks(path: Path, chunk_size: int, n_chunks: int) -> list[list[int]]:
    tok = Tokenizer.from_gguf(path)
    return chunks_of(tok.tokenize(TEXT, add_special=True), chunk_size, n_chunks,
                     tok.bos_id if tok.add_bos else None)


@pytest.mark.parametrize("family", MOE_FAMILIES)
def test_expert_sums_match_numpy(moe_models, family):
    path = moe_models[family]
    got = collect(path, TEXT, chunk_size=32, n_chunks=2, n_threads=2, precise=True)
    want_sums, want_counts = _numpy_sums(path, _chunks(path, 32, 2), sf.N_EXPERT, act_quant=False)
    assert sorted(got.sums) == sorted(want_sums)
    experts = [n for n in want_sums if n.endswith("_exps.weight")]
    assert len(experts) == 3 * 2 and "blk.1.ffn_gate_inp.weight" in got.sums
    for name, s in want_sums.items():
        assert got.counts[name].tolist() == want_counts[name].tolist(), name
        assert got.sums[name].shape == s.shape, name
        # float32 activations and cache on both sides: float summation order only (measured
        # max relative difference 1.8e-5; with 8-bit activations a rounding flip in one row
        # moves a sum by up to 1e-2)
        np.testing.assert_allclose(got.sums[name], s, rtol=1e-4, err_msg=name)
    for name in experts:   # every (token, slot) row lands on one expert
        assert want_counts[name].shape == (sf.N_EXPERT,)
        assert want_counts[name].sum() == 64 * sf.N_EXPERT_USED, name


def test_experts_no_token_chose_behave_as_in_llama_imatrix(moe_models, tmp_path):
    # one chunk of 16 tokens leaves expert 0 of layer 0 and expert 3 of layer 1 unused
    path = moe_models["qwen3moe"]
    got = collect(path, TEXT, chunk_size=16, n_chunks=1, n_threads=2, precise=True)
    _, want_counts = _numpy_sums(path, _chunks(path, 16, 1), sf.N_EXPERT, act_quant=False)
    unused = {"blk.0": 0, "blk.1": 3}
    for name, c in want_counts.items():
        assert got.counts[name].tolist() == c.tolist(), name
        if name.endswith("_exps.weight"):
            e = unused[name[:5]]
            assert c[e] == 0 and (c > 0).sum() == sf.N_EXPERT - 1, name
            assert not got.sums[name][e].any() and got.sums[name][c > 0].all(), name
    gguf, dat = tmp_path / "im.gguf", tmp_path / "im.dat"
    imatrix_file.save_gguf(gguf, got.sums, got.counts, chunk_count=1, chunk_size=16, datasets=["t"])
    imatrix_file.save_dat(dat, got.sums, got.counts, chunk_count=1, chunk_size=16, dataset="t")
    from llamalite.gguf import open_gguf
    name = "blk.1.ffn_down_exps.weight"
    with open_gguf(gguf) as g:   # llama-imatrix's layout: in_sum2 [K, n_expert], counts [1, n_expert]
        assert g.tensors[name + ".in_sum2"].shape == (sf.N_FF_EXP, sf.N_EXPERT)
        assert g.tensors[name + ".counts"].shape == (1, sf.N_EXPERT)
        assert g.tensors["blk.1.attn_q.weight.counts"].shape == (1,)   # trailing 1s dropped, as ggml does
    im = imatrix_file.load(gguf)    # GGUF keeps the zeros and count 0
    np.testing.assert_array_equal(im.counts[name], got.counts[name].astype(np.float32))
    assert not im.sums[name].reshape(sf.N_EXPERT, -1)[3].any()
    legacy = imatrix_file.load(dat)  # .dat: one ncall per entry, 1 * ncall for the unused one
    assert legacy.counts[name].tolist() == [1.0]
    for loaded in (im, legacy):      # the quantizer's weights: mean x^2, 1 where nothing was seen
        w = loaded.weights()[name].reshape(sf.N_EXPERT, -1)
        assert (w[3] == 1.0).all()
        c = got.counts[name]
        np.testing.assert_allclose(w[:3], (got.sums[name][:3] / c[:3, None]), rtol=1e-6)
    # an entry no matrix of which saw a token is left out of the .dat (llama-imatrix skips it)
    sums = {"a.weight": np.ones((2, 4)), "b.weight": np.zeros((2, 4))}
    imatrix_file.save_dat(dat, sums, {"a.weight": np.array([3, 0]), "b.weight": np.array([0, 0])},
                          chunk_count=1, chunk_size=16, dataset="t")
    assert sorted(imatrix_file.load(dat).sums) == ["a.weight"]


# --------------------------------------------------- llama.cpp's own llama-imatrix runs
# tests/tools/record_imatrix.py ran llama-imatrix on the synthetic qwen2 and qwen3moe
# models over forward_text.txt (4 chunks of 32 tokens) and had the peer quantize them with
# that matrix; imatrix_llama_cpp_runs.json holds the settings and hashes.
RUNS = json.loads((DATA / "imatrix_llama_cpp_runs.json").read_text())


@pytest.fixture(scope="module")
def recorded(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("recorded")
    out = {name: sf.build(name, d) for name in sorted(RUNS)}
    for name, path in out.items():   # the generator still makes the model llama.cpp ran
        assert sf.file_sha256(path) == RUNS[name]["model_sha256"], \
            f"{name}: synthetic model changed; rerun tests/tools/record_imatrix.py"
    return out


def _matmul_shapes(path: Path) -> dict[str, tuple[int, int]]:
    """Layer matmul weight -> (input columns, matrices): what llama-imatrix collects."""
    from llamalite.gguf import open_gguf
    with open_gguf(path) as g:
        return {n: (t.shape[0], t.shape[2] if len(t.shape) == 3 else 1)
                for n, t in g.tensors.items()
                if n.startswith("blk.") and len(t.shape) >= 2}


@pytest.mark.parametrize("family", sorted(RUNS))
def test_reads_llama_imatrix_files(recorded, family):
    run = RUNS[family]
    shapes = _matmul_shapes(recorded[family])
    n_tokens = run["chunk_size"] * run["chunks"]
    im = imatrix_file.load(DATA / run["files"]["gguf"])
    assert not im.legacy and sorted(im.sums) == sorted(shapes)   # .in_sum / .stats ignored
    assert (im.chunk_count, im.chunk_size, im.datasets) == (4, 32, ["forward_text.txt"])
    for name, (k, n_mat) in shapes.items():
        assert im.sums[name].shape == (k * n_mat,) and im.counts[name].shape == (n_mat,), name
        assert (im.sums[name] > 0).all(), name
        if n_mat == 1:
            assert im.counts[name].tolist() == [n_tokens], name
        else:    # every token goes to n_expert_used experts
            assert im.counts[name].sum() == n_tokens * sf.N_EXPERT_USED, name
    dat = imatrix_file.load(DATA / run["files"]["dat"])
    assert dat.legacy and sorted(dat.sums) == sorted(shapes)
    assert (dat.chunk_count, dat.datasets) == (4, ["forward_text.txt"])
    w_gguf, w_dat = im.weights(), dat.weights()
    for name in shapes:   # one ncall per entry: ceil(largest count / chunk size)
        assert dat.counts[name].tolist() == [-(-int(im.counts[name].max()) // 32)], name
        np.testing.assert_allclose(w_dat[name], w_gguf[name], rtol=1e-5, err_msg=name)


# Agreement of llamalite's sums with llama-imatrix's, per matrix (expert): measured relative
# L2 difference <= 1.1e-2 (median over columns of the relative difference <= 1.6e-2, both on
# the 9-token expert 3 of qwen3moe's layer 1 ffn_down_exps; dense weights <= 7e-3). The
# inputs of layer 0's attention are the normed embeddings, the same on both sides (measured
# 1e-6); past that, llama.cpp's CPU backend rounds attention to float16 and both round the
# matmul activations to 8 bits, so a value near a rounding boundary lands on different sides
# and the difference grows through the layers.
L2_TOL, MEDIAN_TOL = 2.5e-2, 3e-2
FIRST_INPUTS = {"blk.0.attn_q.weight", "blk.0.attn_k.weight", "blk.0.attn_v.weight"}


@pytest.mark.parametrize("family", sorted(RUNS))
def test_collected_sums_agree_with_llama_imatrix(recorded, family, tmp_path):
    run = RUNS[family]
    text = (DATA / run["text"]).read_text(encoding="utf-8")
    got = collect(recorded[family], text, chunk_size=run["chunk_size"], n_chunks=run["chunks"],
                  n_threads=2)
    im = imatrix_file.load(DATA / run["files"]["gguf"])
    assert got.n_chunks == im.chunk_count and sorted(got.sums) == sorted(im.sums)
    for name, want in im.sums.items():
        assert got.counts[name].tolist() == im.counts[name].tolist(), name
        g, w = got.sums[name], want.astype(np.float64).reshape(got.sums[name].shape)
        for e in range(len(g)):
            l2 = np.linalg.norm(g[e] - w[e]) / np.linalg.norm(w[e])
            assert l2 < (1e-5 if name in FIRST_INPUTS else L2_TOL), (name, e, l2)
            assert np.median(np.abs(g[e] / w[e] - 1)) < MEDIAN_TOL, (name, e)
    # the files llamalite writes from them have llama-imatrix's layout
    ours = tmp_path / "ours.gguf"
    imatrix_file.save_gguf(ours, got.sums, got.counts, chunk_count=got.n_chunks,
                           chunk_size=got.chunk_size, datasets=[run["text"]])
    from llamalite.gguf import open_gguf
    with open_gguf(ours) as a, open_gguf(DATA / run["files"]["gguf"]) as b:
        for key in ("general.type", "imatrix.datasets", "imatrix.chunk_count", "imatrix.chunk_size"):
            assert a.get(key) == b.get(key), key
        want_shapes = {n: t.shape for n, t in b.tensors.items() if n.endswith((".in_sum2", ".counts"))}
        assert {n: t.shape for n, t in a.tensors.items()} == want_shapes
    imatrix_file.save_dat(tmp_path / "ours.dat", got.sums, got.counts, chunk_count=got.n_chunks,
                          chunk_size=got.chunk_size, dataset=run["text"])
    a, b = (_dat_layout(p.read_bytes()) for p in (tmp_path / "ours.dat", DATA / run["files"]["dat"]))
    assert a == b



def _dat_layout(data: bytes) -> list:
    """The legacy file without its values: names, ncall, value counts, chunk count, dataset."""
    import struct
    n, pos, out = struct.unpack_from("<i", data)[0], 4, []
    for _ in range(n):
        ln = struct.unpack_from("<i", data, pos)[0]
        name = data[pos + 4:pos + 4 + ln].decode()
        ncall, nval = struct.unpack_from("<ii", data, pos + 4 + ln)
        out.append((name, ncall, nval))
        pos += 12 + ln + 4 * nval
    chunks, ln = struct.unpack_from("<ii", data, pos)
    return out + [chunks, data[pos + 8:pos + 8 + ln].decode(), len(data) == pos + 8 + ln]


@pytest.mark.parametrize("family", sorted(RUNS))
def test_quantizing_with_llama_imatrix_file_matches_llama_cpp(recorded, family, tmp_path):
    import hashlib
    import warnings
    from llamalite.quant.quantize import quantize
    run = RUNS[family]
    im = imatrix_file.load(DATA / run["files"]["gguf"])
    for mix, want in run["quantized_sha256"].items():
        dst = tmp_path / f"{mix}.gguf"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")   # the synthetic models are quantized already
            quantize(recorded[family], dst, mix, imatrix=im, imatrix_path=run["files"]["gguf"],
                     n_threads=2)
        assert hashlib.sha256(dst.read_bytes()).hexdigest() == want, f"{family} {mix}"
        dst.unlink()
