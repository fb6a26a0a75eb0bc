"""open_gguf against the independent oracle gguf.GGUFReader on both real models.

Every metadata key, value type and value, and every tensor info (name, type,
shape, element count, byte size, absolute offset) and the alignment / data offset
must agree. GGUFReader is slow (~16 s on the Gemma file), so its result is
cached once per pytest run.
"""
from __future__ import annotations

import numpy as np
import pytest

import llamalite
from llamalite.gguf import GGML_TYPES, GGUFValueType, StringArray

_ORACLE_CACHE: dict = {}


def _oracle(path):
    """(metadata {key: (types, value)}, tensors [..], alignment, data_offset) from GGUFReader."""
    key = str(path)
    if key not in _ORACLE_CACHE:
        import gguf
        reader = gguf.GGUFReader(str(path), "r")
        meta = {}
        for name, field in reader.fields.items():
            if name.startswith("GGUF."):
                continue  # the reader's own pseudo-fields (version, counts)
            types = tuple(int(t) for t in field.types)
            if types[0] == GGUFValueType.ARRAY and types[-1] == GGUFValueType.STRING:
                value = [bytes(field.parts[i].tobytes()) for i in field.data]
            elif types[0] == GGUFValueType.ARRAY:
                value = (np.concatenate([field.parts[i] for i in field.data])
                         if len(field.data) else np.zeros(0))
            elif types[0] == GGUFValueType.STRING:
                value = bytes(field.parts[-1].tobytes())
            else:
                value = field.parts[-1][0].item()
            meta[name] = (types, value)
        tensors = [(t.name, int(t.tensor_type), tuple(int(d) for d in t.shape),
                    int(t.n_elements), int(t.n_bytes), int(t.data_offset))
                   for t in reader.tensors]
        version = int(reader.fields["GGUF.version"].parts[-1][0])
        _ORACLE_CACHE[key] = (meta, tensors, int(reader.alignment), int(reader.data_offset),
                              version)
    return _ORACLE_CACHE[key]


@pytest.fixture(scope="module")
def pair(real_model_path):
    with llamalite.open_gguf(real_model_path) as g:
        yield g, _oracle(real_model_path)


def test_header_matches_oracle(pair):
    g, (meta, tensors, alignment, data_offset, version) = pair
    assert g.version == version
    assert g.alignment == alignment
    assert g.data_offset == data_offset
    assert g.file_size == g.path.stat().st_size


def test_metadata_keys_types_and_values_match_oracle(pair):
    g, (meta, *_rest) = pair
    assert list(g.metadata) == list(meta)  # same keys, in file order
    for key, (types, expected) in meta.items():
        value = g.metadata[key]
        assert g.metadata_types[key] == types, key
        if types[0] == GGUFValueType.ARRAY and types[-1] == GGUFValueType.STRING:
            assert isinstance(value, StringArray), key
            assert len(value) == len(expected), key
            assert [value.raw(i) for i in range(len(value))] == expected, key
        elif types[0] == GGUFValueType.ARRAY:
            assert isinstance(value, np.ndarray), key
            assert value.dtype == expected.dtype, key
            np.testing.assert_array_equal(value, expected, err_msg=key)
        elif types[0] == GGUFValueType.STRING:
            assert value == expected.decode("utf-8"), key
        else:
            assert type(value) is type(expected) and value == expected, key


def test_tensor_infos_match_oracle(pair):
    g, (_meta, tensors, *_rest) = pair
    ours = [(t.name, t.type, t.shape, t.n_elements, t.nbytes, t.offset)
            for t in g.tensors.values()]
    assert ours == tensors
    for t in g.tensors.values():
        assert t.type_name == GGML_TYPES[t.type].name


def test_tensor_views_are_zero_copy_and_read_only(pair):
    g, _ = pair
    for t in g.tensors.values():
        b = g.tensor_bytes(t.name)
        assert b.nbytes == t.nbytes and not b.flags.writeable
        assert np.shares_memory(b, g.data)
        if t.type_name in ("F32", "F16"):
            a = g.tensor_array(t.name)
            assert a.shape == t.shape[::-1]
            assert np.shares_memory(a, g.data)
