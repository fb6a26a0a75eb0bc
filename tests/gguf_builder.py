"""Raw GGUF bytes for hostile-file tests: every field under the test's control.

gguf.GGUFWriter refuses to write most broken files, so the hostile tests build
their files here, field by field, following the GGUF spec (little-endian):
magic, u32 version, u64 n_tensors, u64 n_kv, key-values, tensor infos, padding,
tensor data.
"""
from __future__ import annotations

import struct
from typing import Any, Optional, Sequence

# GGUF metadata value types
U8, I8, U16, I16, U32, I32, F32, BOOL, STR, ARR, U64, I64, F64 = range(13)
_FMT = {U8: "<B", I8: "<b", U16: "<H", I16: "<h", U32: "<I", I32: "<i", F32: "<f",
        BOOL: "<B", U64: "<Q", I64: "<q", F64: "<d"}


def gstr(s: str | bytes, length: Optional[int] = None) -> bytes:
    """A GGUF string; `length` overrides the declared byte count."""
    b = s.encode("utf-8") if isinstance(s, str) else s
    return struct.pack("<Q", len(b) if length is None else length) + b


def value(vtype: int, v: Any) -> bytes:
    """The bytes of a value of type vtype (no type tag). Arrays: v = (elem_type, items)."""
    if vtype == STR:
        return gstr(v)
    if vtype == ARR:
        etype, items = v
        return struct.pack("<IQ", etype, len(items)) + b"".join(value(etype, x) for x in items)
    return struct.pack(_FMT[vtype], v)


def kv(key: str | bytes, vtype: int, v: Any) -> bytes:
    """One metadata key-value pair."""
    return gstr(key) + struct.pack("<I", vtype) + value(vtype, v)


def tensor_info(name: str, shape: Sequence[int], ggml_type: int, offset: int) -> bytes:
    """One tensor info; dimensions are written as signed int64 so tests can go negative."""
    return (gstr(name) + struct.pack("<I", len(shape))
            + b"".join(struct.pack("<q" if d < 0 else "<Q", d) for d in shape)
            + struct.pack("<IQ", ggml_type, offset))


def gguf_bytes(kvs: Sequence[bytes] = (), tensors: Sequence[bytes] = (), data: bytes = b"",
               *, version: int = 3, magic: bytes = b"GGUF", alignment: int = 32,
               n_kv: Optional[int] = None, n_tensors: Optional[int] = None) -> bytes:
    """A whole file: header, kvs, tensor infos, padding to `alignment`, data."""
    head = (magic + struct.pack("<I", version)
            + struct.pack("<QQ", len(tensors) if n_tensors is None else n_tensors,
                          len(kvs) if n_kv is None else n_kv)
            + b"".join(kvs) + b"".join(tensors))
    pad = (-len(head)) % alignment if alignment > 0 else 0
    return head + b"\0" * pad + data


def arch_kv(arch: str = "llama") -> bytes:
    return kv("general.architecture", STR, arch)


def f32_tensor_file(shape: Sequence[int] = (4, 2), **kw: Any) -> bytes:
    """A valid file with one F32 tensor 'w' of the given GGUF shape."""
    n = 1
    for d in shape:
        n *= d
    return gguf_bytes([arch_kv()], [tensor_info("w", shape, 0, 0)], b"\0" * (4 * n), **kw)
