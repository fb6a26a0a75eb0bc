"""The bytes of a GGUF v3 file, for the files the quantizer and imatrix write.

Layout (little-endian): magic "GGUF", u32 version 3, u64 tensor count, u64 key-value
count, the key-values, the tensor infos (name, u32 n_dims, u64 dims, u32 type, u64
offset into the data section), zero padding to the alignment, then each tensor's data
padded to the alignment.
"""
from __future__ import annotations

import struct
from typing import Any, BinaryIO, Sequence

import numpy as np

UINT32, INT32, FLOAT32, BOOL, STRING, ARRAY = 4, 5, 6, 7, 8, 9


def gguf_string(s: str) -> bytes:
    b = s.encode("utf-8")
    return struct.pack("<Q", len(b)) + b


def kv(key: str, vtype: int, value: Any) -> bytes:
    """One key-value pair: a u32, i32, f32, bool, string, or an array of strings (a list)
    or of int32/float32 (a numpy array)."""
    head = gguf_string(key) + struct.pack("<I", vtype)
    if vtype == STRING:
        return head + gguf_string(value)
    if vtype == ARRAY and isinstance(value, np.ndarray):   # of int32 or float32
        etype = INT32 if value.dtype.kind in "iu" else FLOAT32
        arr = value.astype("<i4" if etype == INT32 else "<f4")
        return head + struct.pack("<IQ", etype, arr.size) + arr.tobytes()
    if vtype == ARRAY:   # of strings
        return head + struct.pack("<IQ", STRING, len(value)) + b"".join(gguf_string(s) for s in value)
    fmt = {UINT32: "<I", INT32: "<i", FLOAT32: "<f", BOOL: "<B"}[vtype]
    return head + struct.pack(fmt, value)


def ggml_dims(shape: Sequence[int]) -> list[int]:
    """The dimensions ggml writes: trailing 1s dropped (ggml_n_dims), at least one."""
    dims = list(shape)
    while len(dims) > 1 and dims[-1] == 1:
        dims.pop()
    return dims


def tensor_info(name: str, shape: Sequence[int], ggml_type: int, offset: int) -> bytes:
    dims = ggml_dims(shape)
    return (gguf_string(name) + struct.pack("<I", len(dims))
            + b"".join(struct.pack("<Q", d) for d in dims) + struct.pack("<IQ", ggml_type, offset))


def pad(n: int, alignment: int) -> int:
    return (-n) % alignment


def header(kvs: Sequence[bytes], infos: Sequence[bytes], alignment: int) -> bytes:
    """Everything before the data section, padded to the alignment."""
    head = (b"GGUF" + struct.pack("<IQQ", 3, len(infos), len(kvs)) + b"".join(kvs)
            + b"".join(infos))
    return head + b"\0" * pad(len(head), alignment)


def data_offsets(sizes: Sequence[int], alignment: int) -> list[int]:
    """Offsets of tensors of these byte sizes in the data section."""
    out, off = [], 0
    for n in sizes:
        out.append(off)
        off += n + pad(n, alignment)
    return out


def write_small(f: BinaryIO, kvs: Sequence[bytes], tensors: Sequence[tuple[str, np.ndarray]],
                alignment: int = 32) -> None:
    """A whole file of F32 tensors held in memory (numpy shape = reversed GGUF shape)."""
    arrays = [np.ascontiguousarray(a, dtype="<f4") for _, a in tensors]
    offsets = data_offsets([a.nbytes for a in arrays], alignment)
    infos = [tensor_info(name, a.shape[::-1], 0, off)
             for (name, _), a, off in zip(tensors, arrays, offsets)]
    f.write(header(kvs, infos, alignment))
    for a in arrays:
        f.write(a.tobytes())
        f.write(b"\0" * pad(a.nbytes, alignment))
