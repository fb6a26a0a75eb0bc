"""`llamalite quantize`: byte-identical to llama.cpp's output, loadable, safe on failure.

llama.cpp's outputs for the tiny synthetic models (tests/quant_models.py) were recorded
as sha256 by tests/tools/record_quantize.py (tests/data/quantize_reference.json).
"""
from __future__ import annotations

import errno
import hashlib
import json
import os
import warnings
from pathlib import Path

import numpy as np
import pytest

from llamalite.gguf import open_gguf
from llamalite.quant.imatrix_file import Imatrix
from llamalite.quant.plan import Options, PlanError
from llamalite.quant.quantize import QuantizeError, RequantizeWarning, kv_blocks, quantize
from conftest import run_cli
from quant_models import BF16, F32, TINY, tensor_shapes, write_model

DATA = Path(__file__).parent / "data"


def _ref() -> dict:
    return json.loads((DATA / "quantize_reference.json").read_text())["files"]


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("tiny")
    out = {name: write_model(d / f"{name}.gguf", s) for name, s in TINY.items()}
    return out


@pytest.mark.parametrize("name", sorted(TINY))
def test_every_type_is_byte_identical_to_llama_cpp(tiny, tmp_path, name):
    ref = _ref()[name]
    assert _sha(tiny[name]) == ref["input_sha256"]   # the generator still makes llama.cpp's input
    for mix, want in ref["sha256"].items():
        dst = tmp_path / f"{mix}.gguf"
        quantize(tiny[name], dst, mix, n_threads=2)
        assert _sha(dst) == want, f"{name} {mix}"
        dst.unlink()


def _synthetic_imatrix(name: str) -> Imatrix:
    """The recording's importance matrix (values = in_sum2 / counts with counts 1)."""
    rng = np.random.default_rng(7)
    vals = {n: (rng.gamma(2.0, 1.0, s[0]) ** 2).astype(np.float32)
            for n, s in tensor_shapes(TINY[name]) if n.startswith("blk.") and len(s) == 2}
    return Imatrix(vals, {n: np.ones(1, np.float32) for n in vals}, chunk_count=4,
                   datasets=["synthetic"])


@pytest.mark.parametrize("name", sorted(TINY))
def test_with_an_imatrix_byte_identical_to_llama_cpp(tiny, tmp_path, name):
    im = _synthetic_imatrix(name)
    for mix, want in _ref()[name]["imatrix_sha256"].items():
        dst = tmp_path / f"{mix}.gguf"
        quantize(tiny[name], dst, mix, imatrix=im, imatrix_path="imatrix.gguf", n_threads=2)
        assert _sha(dst) == want, f"{name} {mix} with imatrix"


def test_q2_k_s_needs_an_imatrix(tiny, tmp_path):
    with pytest.raises(QuantizeError, match="Q2_K_S needs an importance matrix"):
        quantize(tiny["llama"], tmp_path / "o.gguf", "Q2_K_S")
    assert not (tmp_path / "o.gguf").exists()


def test_metadata_is_copied_with_the_new_file_type(tiny, tmp_path):
    dst = tmp_path / "q.gguf"
    quantize(tiny["llama"], dst, "Q4_K_M")
    with open_gguf(tiny["llama"]) as a, open_gguf(dst) as b:
        ka, kb = [k for k, _ in kv_blocks(a)], [k for k, _ in kv_blocks(b)]
        assert kb == [k for k in ka if k != "general.file_type"] + \
            ["general.quantization_version", "general.file_type"]
        assert b.get("general.file_type") == 15 and b.get("general.quantization_version") == 2
        assert b.get("tokenizer.ggml.tokens") == a.get("tokenizer.ggml.tokens")
        assert all(t.offset % b.alignment == 0 for t in b.tensors.values())


@pytest.mark.parametrize("name, mix", [("llama", "Q4_K_M"), ("gemma3", "Q3_K_M")])
def test_quantized_file_runs_as_the_numpy_reference_reads_it(tiny, tmp_path, name, mix):
    """The output loads and generates, and its logits (precise mode) are those of the numpy
    reference, which decodes the file with gguf.quants: every tensor is where and what the
    header says. (Against the F16 model the random tiny models are too chaotic to compare.)"""
    from llamalite import LLM
    from reference import reference_logits
    dst = tmp_path / f"{mix}.gguf"
    quantize(tiny[name], dst, mix)
    ids = list(range(1, 24))
    with LLM(dst, n_ctx=128, n_threads=1, precise=True) as llm:
        got = llm.logits(ids)
        out = llm.generate("hello", max_tokens=4, temperature=0)
    assert out.usage.completion_tokens == 4
    ref = reference_logits(dst, ids, act_quant=False).astype(np.float64)
    ref -= ref.max(axis=1, keepdims=True)
    ref -= np.log(np.exp(ref).sum(axis=1, keepdims=True))
    np.testing.assert_allclose(got, ref, atol=1e-3)


def test_bf16_and_f32_inputs_and_requantizing(tiny, tmp_path):
    bf = write_model(tmp_path / "bf16.gguf", TINY["llama"], dtype=BF16)
    f32 = write_model(tmp_path / "f32.gguf", TINY["llama"], dtype=F32)
    quantize(bf, tmp_path / "a.gguf", "Q8_0")
    quantize(f32, tmp_path / "b.gguf", "Q8_0")
    q4 = tmp_path / "q4.gguf"
    quantize(tiny["llama"], q4, "Q4_0")
    with pytest.warns(RequantizeWarning, match="Q4_0.*dequantized and quantized again"):
        quantize(q4, tmp_path / "c.gguf", "Q8_0")
    with open_gguf(tmp_path / "c.gguf") as g:
        assert g.tensors["blk.0.attn_q.weight"].type_name == "Q8_0"


# --- failures leave no output --------------------------------------------------------
def _no_leftovers(folder: Path, keep: set[str]) -> None:
    assert {p.name for p in folder.iterdir()} == keep


def test_interrupt_midway_removes_the_temp_file(tiny, tmp_path):
    def stop(p):
        if p.index == 3:
            raise KeyboardInterrupt
    with pytest.raises(KeyboardInterrupt):
        quantize(tiny["llama"], tmp_path / "o.gguf", "Q4_0", progress=stop)
    _no_leftovers(tmp_path, set())


def test_full_disk_is_a_clear_error(tiny, tmp_path):
    class FullDisk:
        """A file that fails with ENOSPC after 100 kB, as a full disk does."""
        def __init__(self, path, mode):
            self.f = open(path, mode)
            self.n = 0

        def write(self, b):
            self.n += len(memoryview(b).cast("B"))
            if self.n > 100_000:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            return self.f.write(b)

        def __getattr__(self, k):
            return getattr(self.f, k)

        def __enter__(self):
            return self

        def __exit__(self, *a):
            self.f.close()
    with pytest.raises(QuantizeError, match="cannot write .*o.gguf: No space left on device"):
        quantize(tiny["llama"], tmp_path / "o.gguf", "Q4_0", _open=FullDisk)
    _no_leftovers(tmp_path, set())


def test_a_failed_sync_is_a_clear_error(tiny, tmp_path, monkeypatch):
    """The background sync's error (a disk that fails to write back) stops the run: the
    error is named and no file is left, under the final name or the temporary one."""
    import llamalite.quant.quantize as qmod
    calls = []

    def failing_sync(fd):
        calls.append(fd)
        raise OSError(errno.EIO, os.strerror(errno.EIO))
    monkeypatch.setattr(qmod.os, "fdatasync", failing_sync, raising=False)
    monkeypatch.setattr(qmod.os, "fsync", failing_sync)
    with pytest.raises(QuantizeError, match="cannot write .*o.gguf: Input/output error"):
        quantize(tiny["llama"], tmp_path / "o.gguf", "Q4_0")
    assert calls, "the sync ran"
    _no_leftovers(tmp_path, set())


def _raise(exc: BaseException):
    def f(*a, **k):
        raise exc
    return f


def test_path_errors(tiny, tmp_path):
    with pytest.raises(QuantizeError, match="is the input file"):
        quantize(tiny["llama"], tiny["llama"], "Q4_0")
    with pytest.raises(QuantizeError, match="folder .*missing does not exist"):
        quantize(tiny["llama"], tmp_path / "missing" / "o.gguf", "Q4_0")
    # /proc holds no space: refused before anything is written
    with pytest.raises(QuantizeError, match=r"not enough space for /proc/o.gguf: it needs 2.\d MB"):
        quantize(tiny["llama"], Path("/proc") / "o.gguf", "Q4_0")
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        if os.access(ro, os.W_OK):   # root: the mode does not stop it; mkstemp's failure does
            with pytest.raises(QuantizeError, match="cannot write .*o.gguf: Permission denied"):
                quantize(tiny["llama"], ro / "o.gguf", "Q4_0",
                         _mkstemp=_raise(PermissionError(errno.EACCES, "Permission denied")))
        else:
            with pytest.raises(QuantizeError, match="is not writable"):
                quantize(tiny["llama"], ro / "o.gguf", "Q4_0")
    finally:
        ro.chmod(0o700)
    with pytest.raises(PlanError, match="unknown quantization type 'Q4_X'"):
        quantize(tiny["llama"], tmp_path / "o.gguf", "Q4_X")
    with pytest.raises(FileNotFoundError):
        quantize(tmp_path / "nope.gguf", tmp_path / "o.gguf", "Q4_0")
    _no_leftovers(tmp_path, {"ro"})


def test_cli_dry_run_and_errors(tiny, tmp_path):
    r = run_cli("quantize", str(tiny["gemma3"]), str(tmp_path / "o.gguf"), "Q4_K_M", "--dry-run")
    assert r.returncode == 0, r.stderr
    assert "blk.0.attn_q.weight" in r.stdout and "F16 -> Q5_0" in r.stdout and "fallback" in r.stdout
    assert "total" in r.stdout and not (tmp_path / "o.gguf").exists()
    r = run_cli("quantize", str(tiny["llama"]), str(tmp_path / "o.gguf"), "Q2_K_S", "--dry-run")
    assert r.returncode == 0 and "warning: Q2_K_S needs --imatrix to be written" in r.stderr
    r = run_cli("quantize", str(tiny["llama"]), str(tmp_path / "o.gguf"), "Q4_0",
                   "--output-tensor-type", "Q7")
    assert r.returncode == 1 and r.stderr.strip().splitlines() == [
        "error: unknown tensor type 'Q7'; choose one of F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, "
        "Q8_0, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, IQ4_NL, IQ4_XS"]
    r = run_cli("quantize", str(tiny["llama"]), str(tiny["llama"]), "Q4_0")
    assert r.returncode == 1 and "is the input file" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    r = run_cli("quantize", str(tiny["llama"]), str(tmp_path / "o.gguf"), "Q4_K_M", "-t", "2")
    assert r.returncode == 0, r.stderr
    assert "tensor 75/75" in r.stderr and "ETA" in r.stderr
    assert "Q6_K" in r.stdout and "bits/weight" in r.stdout


def test_an_input_type_llamalite_cannot_read_is_a_clear_error(tmp_path):
    """A tensor in a type the core cannot dequantize (IQ2_XXS here) that the mix must convert."""
    from llamalite.quant import gguf_writer as gw
    from quant_models import metadata
    s = TINY["llama"]
    kvs = metadata(s)
    infos, blobs = [], []
    for name, shape in tensor_shapes(s):
        ttype = 16 if name == "blk.0.ffn_up.weight" else (0 if len(shape) == 1 else 1)
        n = int(np.prod(shape))
        blobs.append(bytes(n // 256 * 66 if ttype == 16 else n * (4 if ttype == 0 else 2)))
        infos.append((name, shape, ttype))
    offsets = gw.data_offsets([len(b) for b in blobs], 32)
    src = tmp_path / "iq2.gguf"
    with open(src, "wb") as f:
        f.write(gw.header(kvs, [gw.tensor_info(n, sh, t, o) for (n, sh, t), o in zip(infos, offsets)], 32))
        for b in blobs:
            f.write(b + bytes(gw.pad(len(b), 32)))
    with pytest.raises(QuantizeError, match="blk.0.ffn_up.weight is IQ2_XXS, which llamalite cannot "
                                            "dequantize; quantize from the F16/BF16/F32 original"):
        quantize(src, tmp_path / "o.gguf", "Q4_0")
    _no_leftovers(tmp_path, {"iq2.gguf"})


def test_threads_do_not_change_the_output(tiny, tmp_path):
    quantize(tiny["gemma3"], tmp_path / "a.gguf", "Q4_K_M", n_threads=1)
    quantize(tiny["gemma3"], tmp_path / "b.gguf", "Q4_K_M", n_threads=3)
    assert _sha(tmp_path / "a.gguf") == _sha(tmp_path / "b.gguf")
