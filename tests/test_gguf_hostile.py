"""Hostile GGUF files: each malformation raises the right GGUFError with a useful message.

Every case is opened both from a file (the mmap path) and from a bytes buffer, and
the parse is traced to show it never allocates more than the file's size (plus a
small constant for the interpreter's own objects).
"""
from __future__ import annotations

import re
import struct
import tracemalloc

import numpy as np
import pytest

import llamalite
from llamalite.gguf import (GGUFError, GGUFFormatError, GGUFTensorError, GGUFTokenizerError,
                            GGUFTruncatedError, GGUFValueError)
from gguf_builder import (ARR, BOOL, F32, F64, I32, STR, U8, U32, U64, arch_kv,
                          f32_tensor_file, gguf_bytes, gstr, kv, tensor_info)

SLACK = 64 * 1024  # bytes of Python bookkeeping (exception, message, frames) allowed


def expect_error(tmp_path, data: bytes, cls: type, *fragments: str) -> str:
    """Open `data` as a file and as a buffer; both must raise `cls` naming every fragment."""
    p = tmp_path / "hostile.gguf"
    p.write_bytes(data)
    tracemalloc.start()
    try:
        with pytest.raises(cls) as info:
            llamalite.open_gguf(p)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak <= len(data) + SLACK, f"open_gguf allocated {peak} bytes for a {len(data)}-byte file"
    msg = str(info.value)
    for frag in fragments:
        assert frag in msg, f"{frag!r} not in message {msg!r}"
    with pytest.raises(cls):
        llamalite.open_gguf(data)
    return msg


# --- header -----------------------------------------------------------------------

def test_bad_magic(tmp_path):
    data = f32_tensor_file(magic=b"GGML")
    expect_error(tmp_path, data, GGUFFormatError, "magic", "b'GGML'", "not a GGUF file")


def test_old_ggjt_magic_says_convert(tmp_path):
    expect_error(tmp_path, f32_tensor_file(magic=b"ggjt"), GGUFFormatError, "ggjt", "convert")


@pytest.mark.parametrize("version,hint", [(1, "v1"), (4, "version 4"), (0, "version 0"),
                                          (3 << 24, "big-endian")])
def test_unsupported_version(tmp_path, version, hint):
    expect_error(tmp_path, f32_tensor_file(version=version), GGUFFormatError,
                 f"version {version}", hint)


def test_version_2_is_read(tmp_path):
    p = tmp_path / "v2.gguf"
    p.write_bytes(f32_tensor_file(version=2))
    with llamalite.open_gguf(p) as g:
        assert g.version == 2 and list(g.tensors) == ["w"]


def test_empty_and_tiny_files(tmp_path):
    expect_error(tmp_path, b"", GGUFTruncatedError, "0 bytes")
    expect_error(tmp_path, b"GGUF\x03\0\0\0", GGUFTruncatedError, "8 bytes")


def test_n_kv_larger_than_file_can_hold(tmp_path):
    data = f32_tensor_file(n_kv=1 << 40)
    expect_error(tmp_path, data, GGUFTruncatedError, "n_kv is 1,099,511,627,776")


def test_n_tensors_larger_than_file_can_hold(tmp_path):
    data = f32_tensor_file(n_tensors=(1 << 64) - 1)
    expect_error(tmp_path, data, GGUFTruncatedError, "n_tensors is 18,446,744,073,709,551,615")


def test_n_kv_plausible_but_entries_missing(tmp_path):
    data = gguf_bytes([arch_kv()], n_kv=3, alignment=1) + b"\xff" * 64  # room for 3 by count, not by content
    expect_error(tmp_path, data, GGUFTruncatedError, "metadata key #1")


# --- metadata ---------------------------------------------------------------------

def test_array_length_larger_than_file(tmp_path):
    bad = gstr("x.arr") + struct.pack("<IIQ", ARR, U32, 1 << 50)
    data = gguf_bytes([arch_kv(), bad])
    expect_error(tmp_path, data, GGUFTruncatedError, "'x.arr'", "array length 1,125,899,906,842,624")


def test_string_array_length_larger_than_file(tmp_path):
    bad = gstr("tokenizer.ggml.tokens") + struct.pack("<IIQ", ARR, STR, 1 << 40)
    expect_error(tmp_path, gguf_bytes([arch_kv(), bad]), GGUFTruncatedError,
                 "'tokenizer.ggml.tokens'", "array length 1,099,511,627,776")


def test_string_inside_array_longer_than_file(tmp_path):
    bad = (gstr("tokenizer.ggml.tokens") + struct.pack("<IIQ", ARR, STR, 3)
           + gstr("a") + gstr("b", length=10**12) + gstr("c"))
    expect_error(tmp_path, gguf_bytes([arch_kv(), bad]), GGUFTruncatedError,
                 "string 1 of 3", "length 1,000,000,000,000")


def test_key_string_length_larger_than_file(tmp_path):
    bad = gstr("general.name", length=(1 << 64) - 1)
    expect_error(tmp_path, gguf_bytes([arch_kv(), bad]), GGUFTruncatedError,
                 "metadata key #1", "string length 18,446,744,073,709,551,615")


def test_value_string_length_larger_than_file(tmp_path):
    bad = gstr("general.name") + struct.pack("<I", STR) + gstr("hello", length=1 << 33)
    expect_error(tmp_path, gguf_bytes([arch_kv(), bad]), GGUFTruncatedError,
                 "'general.name'", "8,589,934,592")


def test_unknown_value_type(tmp_path):
    bad = gstr("x.weird") + struct.pack("<I", 13) + b"\0" * 8
    expect_error(tmp_path, gguf_bytes([arch_kv(), bad]), GGUFFormatError,
                 "'x.weird'", "unknown metadata value type 13")


def test_unknown_array_element_type(tmp_path):
    bad = gstr("x.arr") + struct.pack("<IIQ", ARR, 99, 1) + b"\0" * 8
    expect_error(tmp_path, gguf_bytes([arch_kv(), bad]), GGUFFormatError,
                 "'x.arr'", "unknown metadata value type 99")


def test_duplicate_key(tmp_path):
    data = gguf_bytes([arch_kv(), kv("x.a", U32, 1), kv("x.a", U32, 2)])
    expect_error(tmp_path, data, GGUFValueError, "'x.a' appears twice")


def test_invalid_utf8_key(tmp_path):
    data = gguf_bytes([arch_kv(), kv(b"x.\xff\xfe", U32, 1)])
    expect_error(tmp_path, data, GGUFValueError, "metadata key #1", "UTF-8")


def test_arrays_nested_too_deep(tmp_path):
    inner = (U32, [1])
    for _ in range(20):
        inner = (ARR, [inner])
    data = gguf_bytes([arch_kv(), kv("x.deep", ARR, inner)])
    expect_error(tmp_path, data, GGUFValueError, "'x.deep'", "nested more than")


# --- alignment --------------------------------------------------------------------

@pytest.mark.parametrize("alignment", [0, 48, 3])
def test_bad_alignment(tmp_path, alignment):
    data = gguf_bytes([arch_kv(), kv("general.alignment", U32, alignment)],
                      [tensor_info("w", [8], 0, 0)], b"\0" * 32)
    expect_error(tmp_path, data, GGUFValueError, f"general.alignment is {alignment}",
                 "power of two")


def test_alignment_of_wrong_type(tmp_path):
    data = gguf_bytes([arch_kv(), kv("general.alignment", STR, "32")])
    expect_error(tmp_path, data, GGUFValueError, "general.alignment has type STRING")


def test_custom_alignment_is_honoured(tmp_path):
    data = gguf_bytes([arch_kv(), kv("general.alignment", U32, 64)],
                      [tensor_info("a", [4], 0, 0), tensor_info("b", [4], 0, 64)],
                      b"\x01" * 128, alignment=64)
    p = tmp_path / "a64.gguf"
    p.write_bytes(data)
    with llamalite.open_gguf(p) as g:
        assert g.alignment == 64 and g.data_offset % 64 == 0
        assert g.tensors["b"].offset == g.data_offset + 64


# --- tensor infos -----------------------------------------------------------------

def test_unknown_tensor_type(tmp_path):
    data = gguf_bytes([arch_kv()], [tensor_info("w", [32], 200, 0)], b"\0" * 64)
    expect_error(tmp_path, data, GGUFTensorError, "'w'", "tensor type 200", "unknown")


def test_removed_tensor_type(tmp_path):
    data = gguf_bytes([arch_kv()], [tensor_info("w", [32], 4, 0)], b"\0" * 64)
    expect_error(tmp_path, data, GGUFTensorError, "tensor type 4", "Q4_2", "removed")


def test_duplicate_tensor_name(tmp_path):
    data = gguf_bytes([arch_kv()], [tensor_info("w", [8], 0, 0), tensor_info("w", [8], 0, 32)],
                      b"\0" * 64)
    expect_error(tmp_path, data, GGUFTensorError, "'w' appears twice")


@pytest.mark.parametrize("n_dims", [0, 5])
def test_bad_n_dims(tmp_path, n_dims):
    shape = [1] * n_dims
    data = gguf_bytes([arch_kv()], [tensor_info("w", shape, 0, 0)], b"\0" * 32)
    expect_error(tmp_path, data, GGUFTensorError, "'w'", f"n_dims is {n_dims}")


def test_huge_n_dims_does_not_allocate(tmp_path):
    bad = gstr("w") + struct.pack("<I", 0xFFFFFFFF) + b"\0" * 64
    expect_error(tmp_path, gguf_bytes([arch_kv()], [bad]), GGUFTensorError,
                 "n_dims is 4294967295")


@pytest.mark.parametrize("dim", [0, -1, -(1 << 63)])
def test_zero_or_negative_dimension(tmp_path, dim):
    data = gguf_bytes([arch_kv()], [tensor_info("w", [8, dim], 0, 0)], b"\0" * 32)
    expect_error(tmp_path, data, GGUFTensorError, "'w'", f"dimension 1 is {dim}")


def test_element_count_overflows_64_bits(tmp_path):
    data = gguf_bytes([arch_kv()], [tensor_info("w", [1 << 32, 1 << 32], 0, 0)], b"\0" * 32)
    expect_error(tmp_path, data, GGUFTensorError, "'w'", "overflows 64 bits",
                 "18,446,744,073,709,551,616")


def test_element_count_fits_but_bytes_past_end(tmp_path):
    data = gguf_bytes([arch_kv()], [tensor_info("w", [1 << 31, 1 << 31], 0, 0)], b"\0" * 32)
    expect_error(tmp_path, data, GGUFTruncatedError, "tensor 'w' ends at byte", "truncated")


def test_row_length_not_multiple_of_block_size(tmp_path):
    data = gguf_bytes([arch_kv()], [tensor_info("blk.0.ffn_up.weight", [48, 2], 12, 0)],
                      b"\0" * 512)
    expect_error(tmp_path, data, GGUFTensorError, "'blk.0.ffn_up.weight'",
                 "row length (ne0) 48", "Q4_K block size 256")


def test_unaligned_tensor_offset(tmp_path):
    data = gguf_bytes([arch_kv()], [tensor_info("w", [4], 0, 4)], b"\0" * 64)
    expect_error(tmp_path, data, GGUFTensorError, "'w'", "data offset 4",
                 "not a multiple of the alignment 32")


def test_overlapping_tensors(tmp_path):
    data = gguf_bytes([arch_kv()], [tensor_info("a", [16], 0, 0), tensor_info("b", [16], 0, 32)],
                      b"\0" * 128)
    expect_error(tmp_path, data, GGUFTensorError, "'b'", "overlaps tensor 'a'")


def test_tensor_past_end_of_file(tmp_path):
    data = gguf_bytes([arch_kv()], [tensor_info("blk.3.ffn_up.weight", [256, 4], 0, 0)],
                      b"\0" * 1000)
    msg = expect_error(tmp_path, data, GGUFTruncatedError, "'blk.3.ffn_up.weight' ends at byte",
                       f"the file has {len(data):,} bytes", "truncated download")
    assert msg.startswith("tensor 'blk.3.ffn_up.weight'")


def test_tensor_offset_far_past_end(tmp_path):
    data = gguf_bytes([arch_kv()], [tensor_info("w", [8], 0, (1 << 64) - 32)], b"\0" * 32)
    expect_error(tmp_path, data, GGUFTruncatedError, "'w' ends at byte")


def test_truncated_inside_tensor_infos(tmp_path):
    head = gguf_bytes([arch_kv()], [tensor_info("w", [8], 0, 0)], alignment=1)
    expect_error(tmp_path, head[:-5], GGUFTruncatedError, "tensor 'w': offset needs 8 bytes")


def test_truncated_before_data_section(tmp_path):
    full = f32_tensor_file()
    expect_error(tmp_path, full[:len(full) - 32 - 10], GGUFTruncatedError,
                 "tensor data section starts at byte 128", "truncated")


# --- tokenizer arrays -------------------------------------------------------------

def _vocab_kvs(n=3, scores=None, types=None, tokens_type=STR):
    toks = [f"t{i}" for i in range(n)] if tokens_type == STR else list(range(n))
    out = [arch_kv("llama"), kv("tokenizer.ggml.model", STR, "llama"),
           kv("tokenizer.ggml.tokens", ARR, (tokens_type, toks))]
    if scores is not None:
        out.append(kv("tokenizer.ggml.scores", ARR, scores))
    if types is not None:
        out.append(kv("tokenizer.ggml.token_type", ARR, types))
    return out


def test_tokens_of_wrong_element_type(tmp_path):
    data = gguf_bytes(_vocab_kvs(tokens_type=U32))
    expect_error(tmp_path, data, GGUFTokenizerError, "tokenizer.ggml.tokens has type ARRAY of UINT32",
                 "expected ARRAY of STRING")


def test_tokens_not_an_array(tmp_path):
    data = gguf_bytes([arch_kv(), kv("tokenizer.ggml.tokens", STR, "abc")])
    expect_error(tmp_path, data, GGUFTokenizerError, "tokenizer.ggml.tokens has type STRING")


def test_scores_of_wrong_element_type(tmp_path):
    data = gguf_bytes(_vocab_kvs(scores=(F64, [0.0, 1.0, 2.0])))
    expect_error(tmp_path, data, GGUFTokenizerError, "tokenizer.ggml.scores", "FLOAT64",
                 "expected ARRAY of FLOAT32")


def test_token_type_of_wrong_element_type(tmp_path):
    data = gguf_bytes(_vocab_kvs(types=(F32, [1.0, 1.0, 1.0])))
    expect_error(tmp_path, data, GGUFTokenizerError, "tokenizer.ggml.token_type", "FLOAT32")


def test_merges_of_wrong_element_type(tmp_path):
    data = gguf_bytes(_vocab_kvs() + [kv("tokenizer.ggml.merges", ARR, (U8, [1, 2]))])
    expect_error(tmp_path, data, GGUFTokenizerError, "tokenizer.ggml.merges", "UINT8")


def test_scores_length_disagrees_with_tokens(tmp_path):
    data = gguf_bytes(_vocab_kvs(n=3, scores=(F32, [0.0, 1.0])))
    expect_error(tmp_path, data, GGUFTokenizerError, "tokenizer.ggml.scores has 2 entries",
                 "tokenizer.ggml.tokens has 3")


def test_token_type_length_disagrees_with_tokens(tmp_path):
    data = gguf_bytes(_vocab_kvs(n=3, types=(I32, [1, 1, 1, 1])))
    expect_error(tmp_path, data, GGUFTokenizerError, "tokenizer.ggml.token_type has 4 entries")


def test_vocab_size_disagrees_with_tokens(tmp_path):
    data = gguf_bytes(_vocab_kvs(n=3) + [kv("llama.vocab_size", U32, 5)])
    expect_error(tmp_path, data, GGUFTokenizerError, "llama.vocab_size is 5",
                 "tokenizer.ggml.tokens has 3 entries")


def test_consistent_vocab_is_accepted(tmp_path):
    data = gguf_bytes(_vocab_kvs(n=3, scores=(F32, [0.0, -1.0, -2.0]), types=(I32, [1, 2, 3]))
                      + [kv("llama.vocab_size", U32, 3), kv("x.flag", BOOL, 1),
                         kv("x.big", U64, 1 << 63)])
    with llamalite.open_gguf(data) as g:
        assert g.metadata["tokenizer.ggml.tokens"].tolist() == ["t0", "t1", "t2"]
        assert g.metadata["tokenizer.ggml.scores"].tolist() == [0.0, -1.0, -2.0]
        assert g.metadata["x.flag"] is True and g.metadata["x.big"] == 1 << 63


# --- memory: nothing allocates more than the file's size (plus a fixed allowance) ----

def _open_peak(data: bytes) -> int:
    tracemalloc.start()
    try:
        with llamalite.open_gguf(data):
            return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_too_many_entries_for_the_file_size(tmp_path):
    data = gguf_bytes([arch_kv()] + [kv(f"k{i}", U8, 0) for i in range(20000)], alignment=1)
    expect_error(tmp_path, data, GGUFValueError, "n_kv 20,001",
                 "more entries than a file of")


def test_too_many_nested_sub_arrays_for_the_file_size(tmp_path):
    data = gguf_bytes([arch_kv(), kv("x.nest", ARR, (ARR, [(U8, [])] * 10000))], alignment=1)
    expect_error(tmp_path, data, GGUFValueError, "'x.nest'", "nested array of 10,000")


@pytest.mark.parametrize("case", ["kvs", "empty_strings", "nested"])
def test_dense_valid_files_stay_within_memory_bound(case):
    """Files packed with the smallest possible entries still open within size + 1 MiB."""
    if case == "kvs":
        data = gguf_bytes([arch_kv()] + [kv(f"k{i}", U32, i) for i in range(3000)], alignment=1)
    elif case == "empty_strings":
        data = gguf_bytes([arch_kv(), kv("x.s", ARR, (STR, [""] * 200_000))], alignment=1)
    else:
        data = gguf_bytes([arch_kv(), kv("x.n", ARR, (ARR, [(U8, [])] * 3000))], alignment=1)
    assert _open_peak(data) <= len(data) + (1 << 20) + SLACK


def test_core_string_scanner_checks_bounds():
    """The C++ scanner on its own: every way out of the buffer is refused, not read."""
    from llamalite import _core
    two = struct.pack("<Q", 1) + b"a" + struct.pack("<Q", 2) + b"bc"
    ok, end, blob, offsets = _core.gguf_scan_strings(two, 0, 2)
    assert ok and end == len(two) and blob == b"abc" and offsets.tolist() == [0, 1, 3]
    assert _core.gguf_scan_strings(two, 0, 3)[0] is False          # count beyond the data
    assert _core.gguf_scan_strings(two, len(two) + 1, 0)[0] is False  # start past the end
    assert _core.gguf_scan_strings(two, 0, 1 << 62)[0] is False
    res = _core.gguf_scan_strings(struct.pack("<Q", (1 << 64) - 1) + b"x" * 8, 0, 1)
    assert res == (False, 0, 0, (1 << 64) - 1, False)              # length overflows
    res = _core.gguf_scan_strings(two[:-1], 0, 2)
    assert res == (False, 1, 9, 2, False)
    ok, end, blob, offsets = _core.gguf_scan_strings(b"", 0, 0)
    assert ok and blob == b"" and offsets.tolist() == [0]
    import numpy as np
    with pytest.raises(ValueError, match="contiguous"):
        _core.gguf_scan_strings(np.zeros(16, np.uint8)[::2], 0, 0)


# --- hyperparameters: checked in Python before the core sees them ---------------------

def _tiny_llama(path, n_layer_tensors: int = 2, ints: dict | None = None,
                floats: dict | None = None, uint64: bool = False):
    """A complete 2-layer F32 llama model (n_embd 8, 2 heads), with metadata keys
    (without the 'llama.' prefix) replaced by `ints` (written as UINT32, or UINT64)
    and `floats` (FLOAT64)."""
    import gguf
    import numpy as np
    ints = {"block_count": 2, "context_length": 64, "embedding_length": 8,
            "feed_forward_length": 16, "attention.head_count": 2,
            "attention.head_count_kv": 1, "vocab_size": 16, **(ints or {})}
    floats = {"attention.layer_norm_rms_epsilon": 1e-5, **(floats or {})}
    w = gguf.GGUFWriter(str(path), "llama")
    for k, v in ints.items():
        (w.add_uint64 if uint64 or v >= 2**32 else w.add_uint32)(f"llama.{k}", v)
    for k, v in floats.items():
        w.add_float64(f"llama.{k}", v)
    rng = np.random.default_rng(0)

    def t(name, rows, cols=None):
        shape = (rows,) if cols is None else (rows, cols)
        w.add_tensor(name, rng.standard_normal(shape).astype(np.float32))

    t("token_embd.weight", 16, 8)
    t("output_norm.weight", 8)
    for il in range(n_layer_tensors):
        p = f"blk.{il}."
        t(p + "attn_norm.weight", 8)
        t(p + "attn_q.weight", 8, 8)
        t(p + "attn_k.weight", 4, 8)
        t(p + "attn_v.weight", 4, 8)
        t(p + "attn_output.weight", 8, 8)
        t(p + "ffn_norm.weight", 8)
        t(p + "ffn_gate.weight", 16, 8)
        t(p + "ffn_up.weight", 16, 8)
        t(p + "ffn_down.weight", 8, 16)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


class _NoCore:
    """Stands in for the C++ core: the load must fail before it is reached."""

    @staticmethod
    def default_thread_count() -> int:
        return 1

    class Model:
        def __init__(self, *args, **kwargs):
            raise AssertionError("the core was called with unchecked hyperparameters")


def test_tiny_llama_loads(tmp_path):
    from llamalite.model import Model
    m = Model.load(_tiny_llama(tmp_path / "ok.gguf"), n_threads=1)
    assert m.hparams.n_layer == 2 and m.hparams.head_dim == 4


@pytest.mark.parametrize("block_count", [3, 2 * 10**6, 10**7])
def test_block_count_beyond_the_tensors_is_refused_before_the_core(tmp_path, monkeypatch,
                                                                   block_count):
    """The core sizes its per-layer tables by block_count (10**7 layers: 5.4 GB) before
    it binds a tensor; the count is checked against the tensors present first."""
    import llamalite.model as model
    path = _tiny_llama(tmp_path / "m.gguf", ints={"block_count": block_count})
    monkeypatch.setattr(model, "_core", _NoCore)
    with pytest.raises(GGUFError) as info:
        model.Model.load(path, n_threads=1)
    msg = str(info.value)
    assert f"'llama.block_count' is {block_count:,}" in msg and "no tensors for layer 2" in msg


def test_missing_middle_layer_is_named(tmp_path, monkeypatch):
    import gguf
    import llamalite.model as model
    src = _tiny_llama(tmp_path / "m.gguf", n_layer_tensors=3, ints={"block_count": 3})
    r = gguf.GGUFReader(str(src))
    w = gguf.GGUFWriter(str(tmp_path / "gap.gguf"), "llama")
    for k, f in r.fields.items():
        if not k.startswith("GGUF.") and k != "general.architecture":
            w.add_key_value(k, f.contents(), f.types[0])
    for t in r.tensors:
        if not t.name.startswith("blk.1."):
            w.add_tensor(t.name, np.asarray(t.data))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    monkeypatch.setattr(model, "_core", _NoCore)
    with pytest.raises(GGUFError, match=r"no tensors for layer 1 \(blk\.1\.\*"):
        model.Model.load(tmp_path / "gap.gguf", n_threads=1)


INT_HPARAMS = ["block_count", "context_length", "embedding_length", "feed_forward_length",
               "attention.head_count", "attention.head_count_kv", "attention.key_length",
               "attention.value_length", "rope.dimension_count", "vocab_size"]


@pytest.mark.parametrize("value", [2**31, 2**32, 2**63])
@pytest.mark.parametrize("key", INT_HPARAMS)
def test_integer_hyperparameter_beyond_int32_names_key_and_range(tmp_path, monkeypatch,
                                                                 key, value):
    import llamalite.model as model
    path = _tiny_llama(tmp_path / "m.gguf", ints={key: value}, uint64=value >= 2**32)
    monkeypatch.setattr(model, "_core", _NoCore)
    with pytest.raises(GGUFError) as info:
        model.Model.load(path, n_threads=1)
    msg = str(info.value)
    assert f"'llama.{key}' is {value:,}" in msg and "[1, 2,147,483,647]" in msg


def test_hyperparameter_beyond_int32_through_the_real_loader(tmp_path):
    """Not pybind11's RuntimeError ('Unable to cast Python instance ...'): a GGUFError."""
    from llamalite.model import Model
    path = _tiny_llama(tmp_path / "m.gguf", ints={"feed_forward_length": 2**31})
    with pytest.raises(GGUFError, match=r"'llama\.feed_forward_length' is 2,147,483,648"):
        Model.load(path, n_threads=1)


@pytest.mark.parametrize("key", ["rope.freq_base", "attention.layer_norm_rms_epsilon",
                                 "rope.scaling.factor"])
def test_real_hyperparameter_beyond_float32_names_key(tmp_path, monkeypatch, key):
    import llamalite.model as model
    path = _tiny_llama(tmp_path / "m.gguf", floats={key: 1e300})
    monkeypatch.setattr(model, "_core", _NoCore)
    with pytest.raises(GGUFError, match=rf"'llama\.{re.escape(key)}' is 1e\+300; it must be in"):
        model.Model.load(path, n_threads=1)


def test_override_beyond_int32_is_a_value_error(tmp_path, monkeypatch):
    import llamalite.model as model
    path = _tiny_llama(tmp_path / "m.gguf")
    monkeypatch.setattr(model, "_core", _NoCore)
    with pytest.raises(ValueError, match="sliding_window is 4,294,967,296; it must fit an int32"):
        model.Model.load(path, n_threads=1, hparams_overrides={"sliding_window": 2**32})


# --- special token ids outside the vocabulary: the default is used, and said ------------

def _spm_vocab_file(**ids: int) -> bytes:
    kvs = [arch_kv(), kv("tokenizer.ggml.model", STR, "llama"),
           kv("tokenizer.ggml.tokens", ARR, (STR, ["<unk>", "<s>", "</s>", "a"])),
           kv("tokenizer.ggml.scores", ARR, (F32, [0.0, 0.0, 0.0, -1.0])),
           kv("tokenizer.ggml.token_type", ARR, (I32, [2, 3, 3, 1]))]
    kvs += [kv(f"tokenizer.ggml.{name}_token_id", I32 if v < 0 else U32, v)
            for name, v in ids.items()]
    return gguf_bytes(kvs)


@pytest.mark.parametrize("name,value,instead", [
    ("bos", 10**9, "using id 1 ('<s>') instead"),
    ("eos", 4, "using id 2 ('</s>') instead"),
    ("eot", 2**32 - 1, "using no token instead"),
    ("padding", -1, "using no token instead"),
])
def test_out_of_range_special_id_warns_at_load(name, value, instead):
    from llamalite.errors import TokenizerWarning
    from llamalite.tokenizer import Tokenizer
    with llamalite.open_gguf(_spm_vocab_file(**{name: value})) as g:
        with pytest.warns(TokenizerWarning) as record:
            tok = Tokenizer.from_metadata(g.metadata)
    msg = str(record[0].message)
    assert len(record) == 1
    assert f"tokenizer.ggml.{name}_token_id is {value:,}, outside the vocabulary of 4" in msg
    assert instead in msg
    assert (tok.bos_id, tok.eos_id) == (1, 2)   # llama.cpp's defaults for SentencePiece


def test_in_range_special_ids_load_silently():
    from llamalite.tokenizer import Tokenizer
    with llamalite.open_gguf(_spm_vocab_file(bos=3, eos=0)) as g:
        tok = Tokenizer.from_metadata(g.metadata)     # a warning here fails the test
    assert (tok.bos_id, tok.eos_id) == (3, 0)
