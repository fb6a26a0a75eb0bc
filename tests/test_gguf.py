"""open_gguf on synthetic files written by gguf.GGUFWriter (every value type, nested
arrays, plain and quantized tensors), checked against gguf.GGUFReader and the
values written."""
from __future__ import annotations

import gc

import gguf
import numpy as np
import pytest

import llamalite
from llamalite.gguf import GGML_TYPES, GGUFValueType, StringArray

VT = gguf.GGUFValueType


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    """A small GGUF with every metadata value type and a few tensors; returns (path, expected)."""
    path = tmp_path_factory.mktemp("gguf") / "synthetic.gguf"
    rng = np.random.default_rng(0)
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_uint8("t.u8", 200)
    w.add_int8("t.i8", -100)
    w.add_uint16("t.u16", 60000)
    w.add_int16("t.i16", -30000)
    w.add_uint32("t.u32", 4_000_000_000)
    w.add_int32("t.i32", -2_000_000_000)
    w.add_float32("t.f32", 0.1)
    w.add_uint64("t.u64", (1 << 64) - 1)
    w.add_int64("t.i64", -(1 << 63))
    w.add_float64("t.f64", 0.1)
    w.add_bool("t.true", True)
    w.add_bool("t.false", False)
    w.add_string("t.str", "héllo ✓ 🦙")
    w.add_key_value("t.empty", "", VT.STRING)
    w.add_array("t.arr_i32", [1, -2, 3])
    w.add_array("t.arr_f32", [0.5, -1.25])
    w.add_array("t.arr_bool", [True, False, True])
    w.add_array("t.arr_str", ["a", "", "✓🦙", "d e"])
    w.add_array("t.nested", [[1, 2], [3, 4, 5]])
    w.add_key_value("t.arr_u8", [7, 8, 9], VT.ARRAY, sub_type=VT.UINT8)
    w.add_key_value("t.arr_f64", [1.5, 2.5], VT.ARRAY, sub_type=VT.FLOAT64)
    w.add_key_value("t.arr_u64", [1 << 63, 5], VT.ARRAY, sub_type=VT.UINT64)
    w.add_tokenizer_model("llama")
    w.add_token_list(["<unk>", "▁a", "b"])
    w.add_token_scores([0.0, -1.0, -2.0])
    w.add_token_types([2, 1, 1])
    tensors = {
        "f32": rng.standard_normal((3, 8)).astype(np.float32),
        "f16": rng.standard_normal((2, 4, 8)).astype(np.float16),
        "i32": np.arange(5, dtype=np.int32),
    }
    for name, a in tensors.items():
        w.add_tensor(name, a)
    q = gguf.quants.quantize(rng.standard_normal((4, 64)).astype(np.float32),
                             gguf.GGMLQuantizationType.Q8_0)
    w.add_tensor("q8", q, raw_dtype=gguf.GGMLQuantizationType.Q8_0)
    bf = gguf.quants.quantize(rng.standard_normal((2, 16)).astype(np.float32),
                              gguf.GGMLQuantizationType.BF16)
    w.add_tensor("bf16", bf, raw_dtype=gguf.GGMLQuantizationType.BF16)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    tensors["q8"] = q
    tensors["bf16"] = bf
    return path, tensors


def test_every_value_type(synthetic):
    path, _ = synthetic
    with llamalite.open_gguf(path) as g:
        m, t = g.metadata, g.metadata_types
        assert g.version == 3 and g.architecture == "llama" and g.get("missing", 5) == 5
        assert (m["t.u8"], m["t.i8"], m["t.u16"], m["t.i16"]) == (200, -100, 60000, -30000)
        assert (m["t.u32"], m["t.i32"]) == (4_000_000_000, -2_000_000_000)
        assert m["t.f32"] == float(np.float32(0.1)) and m["t.f64"] == 0.1
        assert m["t.u64"] == (1 << 64) - 1 and m["t.i64"] == -(1 << 63)
        assert m["t.true"] is True and m["t.false"] is False
        assert m["t.str"] == "héllo ✓ 🦙" and m["t.empty"] == ""
        assert t["t.u8"] == (GGUFValueType.UINT8,) and t["t.f64"] == (GGUFValueType.FLOAT64,)
        assert m["t.arr_i32"].dtype == np.int32 and m["t.arr_i32"].tolist() == [1, -2, 3]
        assert m["t.arr_f32"].dtype == np.float32 and m["t.arr_f32"].tolist() == [0.5, -1.25]
        assert m["t.arr_bool"].dtype == np.bool_ and m["t.arr_bool"].tolist() == [True, False, True]
        assert m["t.arr_u8"].dtype == np.uint8 and m["t.arr_f64"].dtype == np.float64
        assert m["t.arr_u64"].tolist() == [1 << 63, 5]
        assert t["t.arr_i32"] == (GGUFValueType.ARRAY, GGUFValueType.INT32)
        s = m["t.arr_str"]
        assert isinstance(s, StringArray) and t["t.arr_str"] == (GGUFValueType.ARRAY,
                                                                 GGUFValueType.STRING)
        assert len(s) == 4 and s[2] == "✓🦙" and s[-1] == "d e" and s.raw(2) == "✓🦙".encode()
        assert s.tolist() == ["a", "", "✓🦙", "d e"] and list(s) == s.tolist() and s == s.tolist()
        assert s[1:3] == ["", "✓🦙"]
        with pytest.raises(IndexError):
            s[4]
        nested = m["t.nested"]
        assert [a.tolist() for a in nested] == [[1, 2], [3, 4, 5]]
        assert t["t.nested"][:2] == (GGUFValueType.ARRAY, GGUFValueType.ARRAY)
        assert not m["t.arr_i32"].flags.writeable  # metadata is immutable
        with pytest.raises(TypeError):
            m["t.u8"] = 1  # type: ignore[index]


def test_metadata_and_types_match_gguf_reader(synthetic):
    path, _ = synthetic
    reader = gguf.GGUFReader(str(path))
    with llamalite.open_gguf(path) as g:
        for key, field in reader.fields.items():
            if key.startswith("GGUF."):
                continue
            assert g.metadata_types[key] == tuple(int(x) for x in field.types), key
            ours = g.metadata[key]
            if key == "t.nested":
                ours = [x for a in ours for x in a.tolist()]
            elif isinstance(ours, (np.ndarray, StringArray)):
                ours = ours.tolist()
            expected = field.contents()
            if isinstance(expected, float) or (isinstance(expected, list) and expected
                                               and isinstance(expected[0], float)):
                np.testing.assert_array_equal(np.asarray(ours), np.asarray(expected), err_msg=key)
            else:
                assert ours == expected, key


def test_tensors_match_what_was_written(synthetic):
    path, written = synthetic
    reader = gguf.GGUFReader(str(path))
    with llamalite.open_gguf(path) as g:
        assert list(g.tensors) == [t.name for t in reader.tensors]
        for rt in reader.tensors:
            t = g.tensors[rt.name]
            assert (t.type, t.shape, t.n_elements, t.nbytes, t.offset) == (
                int(rt.tensor_type), tuple(int(d) for d in rt.shape), int(rt.n_elements),
                int(rt.n_bytes), int(rt.data_offset))
            assert t.offset % g.alignment == 0
            assert g.tensor_bytes(t.name).tobytes() == written[t.name].tobytes()
        np.testing.assert_array_equal(g.tensor_array("f32"), written["f32"])
        np.testing.assert_array_equal(g.tensor_array("f16"), written["f16"])
        np.testing.assert_array_equal(g.tensor_array("i32"), written["i32"])
        assert g.tensors["f16"].shape == (8, 4, 2)  # GGUF order: ne0 first
        bf = g.tensor_array("bf16")
        assert bf.dtype == np.uint16 and bf.shape == (2, 16)
        assert g.tensors["q8"].type_name == "Q8_0"
        with pytest.raises(llamalite.GGUFError, match="Q8_0"):
            g.tensor_array("q8")
        with pytest.raises(KeyError, match="nope"):
            g.tensor_bytes("nope")


def test_buffer_and_path_agree(synthetic):
    path, _ = synthetic
    data = path.read_bytes()
    with llamalite.open_gguf(path) as a, llamalite.open_gguf(bytearray(data)) as b:
        assert a.tensors == b.tensors and list(a.metadata) == list(b.metadata)
        assert a.data_offset == b.data_offset and a.file_size == b.file_size == len(data)
        assert a.tensor_bytes("f32").tobytes() == b.tensor_bytes("f32").tobytes()


def test_close_releases_the_map_and_keeps_metadata(synthetic):
    path, _ = synthetic
    g = llamalite.open_gguf(path)
    view = g.tensor_array("f32")
    g.close()                   # a live view defers the unmapping, never breaks it
    assert view.sum() == view.sum()
    del view
    gc.collect()
    assert g.metadata["t.u8"] == 200 and "f32" in g.tensors
    with pytest.raises(ValueError, match="closed"):
        g.tensor_bytes("f32")
    g.close()                   # idempotent


def test_data_is_read_only(synthetic):
    path, _ = synthetic
    with llamalite.open_gguf(path) as g:
        assert g.data.dtype == np.uint8 and g.data.size == g.file_size
        with pytest.raises(ValueError):
            g.data[0] = 1


def test_ggml_type_table_matches_gguf():
    for t, (block, size) in gguf.GGML_QUANT_SIZES.items():
        assert int(t) in GGML_TYPES, t.name
        info = GGML_TYPES[int(t)]
        assert (info.name, info.block_size, info.type_size) == (t.name, block, size)


def test_missing_file_is_not_a_gguf_error(tmp_path):
    with pytest.raises(FileNotFoundError):
        llamalite.open_gguf(tmp_path / "nope.gguf")


def test_real_models_open_with_expected_shape(smollm2_path, gemma3_path):
    with llamalite.open_gguf(smollm2_path) as g:
        assert g.architecture == "llama" and len(g.tensors) == 272
        assert len(g.metadata["tokenizer.ggml.tokens"]) == 49152
        assert g.metadata["tokenizer.ggml.tokens"][1] == "<|im_start|>"
    with llamalite.open_gguf(gemma3_path) as g:
        assert g.architecture == "gemma3" and len(g.tensors) == 236
        toks = g.metadata["tokenizer.ggml.tokens"]
        assert len(toks) == 262144 and toks[2] == "<bos>"
        assert g.metadata["tokenizer.ggml.scores"].shape == (262144,)
