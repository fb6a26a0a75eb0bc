"""GGUF loading: parse and validate a GGUF v2/v3 file, memory-map its tensor data.

The file is untrusted. Every count, length, offset, dimension and type is checked
against the bytes that are actually there (Python ints: no overflow) before anything
is allocated or read, and every problem raises a `GGUFError` subclass whose message
names the field, the value and the likely cause.

Layout (all little-endian):

    magic "GGUF" | u32 version | u64 n_tensors | u64 n_kv
    n_kv x      (string key, u32 value_type, value)
    n_tensors x (string name, u32 n_dims, u64 ne[n_dims], u32 ggml_type, u64 offset)
    padding to `general.alignment` (default 32)
    tensor data: each tensor at data_offset + offset

A string is a u64 byte count and the bytes; an array is u32 element type, u64
count, then the elements. String arrays (vocabularies of up to 262,144 tokens) are
scanned by the C++ core into one compact `StringArray`.
"""
from __future__ import annotations

import mmap
import os
import struct
from dataclasses import dataclass
from types import MappingProxyType
from pathlib import Path
from typing import Any, Iterator, Mapping, NamedTuple, Optional, Union

import numpy as np

from . import _core
from .errors import GGUFError

__all__ = [
    "GGML_TYPES", "GGUFFile", "GGUFValueType", "StringArray", "TensorInfo", "TypeInfo",
    "open_gguf",
    "GGUFError", "GGUFFormatError", "GGUFTruncatedError", "GGUFValueError",
    "GGUFTensorError", "GGUFTokenizerError",
]

GGUF_MAGIC = b"GGUF"
SUPPORTED_VERSIONS = (2, 3)
DEFAULT_ALIGNMENT = 32
MAX_DIMS = 4
MAX_ARRAY_NESTING = 8          # arrays of arrays deeper than this are refused
# Python objects cost more than their bytes in the file. So that no file makes the
# loader allocate more than its own size (plus a fixed allowance), each key-value,
# tensor info and sub-array of a nested array is charged an upper bound of its
# Python cost before it is read; real models use a few KB of the allowance.
PY_COST_KV = 256
PY_COST_TENSOR = 512
PY_COST_SUBARRAY = 320
PY_OBJECT_ALLOWANCE = 1 << 20
INT64_MAX = (1 << 63) - 1


# --- errors ---------------------------------------------------------------------

class GGUFFormatError(GGUFError):
    """The header is not GGUF, or uses a version or a value type llamalite does not read."""


class GGUFTruncatedError(GGUFError):
    """A count, length or offset points past the end of the file."""


class GGUFValueError(GGUFError):
    """A metadata value is invalid (duplicate key, bad alignment, bad UTF-8, ...)."""


class GGUFTensorError(GGUFError):
    """A tensor info is invalid (type, dimensions, offset, overlap)."""


class GGUFTokenizerError(GGUFError):
    """The tokenizer arrays have the wrong element type or disagree in length."""


# --- types ----------------------------------------------------------------------

class GGUFValueType:
    """Metadata value type ids of the GGUF format."""
    UINT8 = 0
    INT8 = 1
    UINT16 = 2
    INT16 = 3
    UINT32 = 4
    INT32 = 5
    FLOAT32 = 6
    BOOL = 7
    STRING = 8
    ARRAY = 9
    UINT64 = 10
    INT64 = 11
    FLOAT64 = 12


VALUE_TYPE_NAMES = {
    0: "UINT8", 1: "INT8", 2: "UINT16", 3: "INT16", 4: "UINT32", 5: "INT32",
    6: "FLOAT32", 7: "BOOL", 8: "STRING", 9: "ARRAY", 10: "UINT64", 11: "INT64",
    12: "FLOAT64",
}

# Fixed-size value types: numpy little-endian dtype.
_SCALAR_DTYPES: dict[int, np.dtype] = {
    0: np.dtype("<u1"), 1: np.dtype("<i1"), 2: np.dtype("<u2"), 3: np.dtype("<i2"),
    4: np.dtype("<u4"), 5: np.dtype("<i4"), 6: np.dtype("<f4"), 7: np.dtype("bool"),
    10: np.dtype("<u8"), 11: np.dtype("<i8"), 12: np.dtype("<f8"),
}
_SCALAR_STRUCT = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<B",
                  10: "<Q", 11: "<q", 12: "<d"}
_INTEGER_TYPES = (0, 1, 2, 3, 4, 5, 10, 11)


class TypeInfo(NamedTuple):
    """A ggml tensor type: `block_size` elements are stored in `type_size` bytes."""
    name: str
    block_size: int
    type_size: int


GGML_TYPES: dict[int, TypeInfo] = {
    0: TypeInfo("F32", 1, 4),
    1: TypeInfo("F16", 1, 2),
    2: TypeInfo("Q4_0", 32, 18),
    3: TypeInfo("Q4_1", 32, 20),
    6: TypeInfo("Q5_0", 32, 22),
    7: TypeInfo("Q5_1", 32, 24),
    8: TypeInfo("Q8_0", 32, 34),
    9: TypeInfo("Q8_1", 32, 36),  # ggml: fp16 d + fp16 s + 32 int8 (gguf-py still says 40)
    10: TypeInfo("Q2_K", 256, 84),
    11: TypeInfo("Q3_K", 256, 110),
    12: TypeInfo("Q4_K", 256, 144),
    13: TypeInfo("Q5_K", 256, 176),
    14: TypeInfo("Q6_K", 256, 210),
    15: TypeInfo("Q8_K", 256, 292),
    16: TypeInfo("IQ2_XXS", 256, 66),
    17: TypeInfo("IQ2_XS", 256, 74),
    18: TypeInfo("IQ3_XXS", 256, 98),
    19: TypeInfo("IQ1_S", 256, 50),
    20: TypeInfo("IQ4_NL", 32, 18),
    21: TypeInfo("IQ3_S", 256, 110),
    22: TypeInfo("IQ2_S", 256, 82),
    23: TypeInfo("IQ4_XS", 256, 136),
    24: TypeInfo("I8", 1, 1),
    25: TypeInfo("I16", 1, 2),
    26: TypeInfo("I32", 1, 4),
    27: TypeInfo("I64", 1, 8),
    28: TypeInfo("F64", 1, 8),
    29: TypeInfo("IQ1_M", 256, 56),
    30: TypeInfo("BF16", 1, 2),
    34: TypeInfo("TQ1_0", 256, 54),
    35: TypeInfo("TQ2_0", 256, 66),
    39: TypeInfo("MXFP4", 32, 17),
    40: TypeInfo("NVFP4", 64, 36),
    41: TypeInfo("Q1_0", 128, 18),
}

# Ids that ggml once used and removed: a file with them is from a very old or
# experimental converter.
_REMOVED_TYPES = {4: "Q4_2", 5: "Q4_3", 31: "Q4_0_4_4", 32: "Q4_0_4_8", 33: "Q4_0_8_8",
                  36: "IQ4_NL_4_4", 37: "IQ4_NL_4_8", 38: "IQ4_NL_8_8"}

# numpy views that tensor_array() can hand out without converting anything.
_ARRAY_DTYPES = {0: np.dtype("<f4"), 1: np.dtype("<f2"), 30: np.dtype("<u2"),
                 24: np.dtype("i1"), 25: np.dtype("<i2"), 26: np.dtype("<i4"),
                 27: np.dtype("<i8"), 28: np.dtype("<f8")}


@dataclass(frozen=True)
class TensorInfo:
    """One tensor of a GGUF file. `shape` is in GGUF order: shape[0] is the row length (ne0)."""
    name: str
    type: int
    type_name: str
    shape: tuple[int, ...]
    n_elements: int
    offset: int   # absolute byte offset in the file
    nbytes: int


# --- compact string arrays ------------------------------------------------------

class StringArray:
    """An immutable list of strings stored as one bytes blob plus int64 offsets.

    `a[i]` decodes item i as UTF-8 (invalid bytes become U+FFFD); `a.raw(i)` gives the
    exact bytes. 262,144 tokens cost a few MB instead of one Python object each.
    """
    __slots__ = ("_blob", "_offsets")

    def __init__(self, blob: bytes, offsets: np.ndarray) -> None:
        self._blob = blob          # all strings, concatenated
        self._offsets = offsets    # int64 [n + 1]; string i is blob[off[i]:off[i+1]]

    @classmethod
    def from_list(cls, items: "list[str | bytes]") -> "StringArray":
        """Build one from Python strings (tests and synthetic models)."""
        raws = [s.encode("utf-8") if isinstance(s, str) else bytes(s) for s in items]
        offsets = np.zeros(len(raws) + 1, dtype=np.int64)
        np.cumsum([len(r) for r in raws], out=offsets[1:])
        return cls(b"".join(raws), offsets)

    def __len__(self) -> int:
        return len(self._offsets) - 1

    def raw(self, i: int) -> bytes:
        """The exact bytes of item i."""
        n = len(self)
        if i < 0:
            i += n
        if not 0 <= i < n:
            raise IndexError(f"StringArray index {i} out of range (length {n})")
        return self._blob[int(self._offsets[i]):int(self._offsets[i + 1])]

    def __getitem__(self, i: Union[int, slice]) -> Union[str, list[str]]:
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        return self.raw(i).decode("utf-8", errors="replace")

    def __iter__(self) -> Iterator[str]:
        blob, off = self._blob, self._offsets.tolist()
        for a, b in zip(off, off[1:]):
            yield blob[a:b].decode("utf-8", errors="replace")

    def tolist(self) -> list[str]:
        return list(self)

    @property
    def blob(self) -> bytes:
        """All items' bytes, concatenated."""
        return self._blob

    @property
    def offsets(self) -> np.ndarray:
        """int64 [len + 1]: item i is blob[offsets[i]:offsets[i + 1]] (read-only)."""
        view = self._offsets.view()
        view.flags.writeable = False
        return view

    def __eq__(self, other: object) -> bool:
        if isinstance(other, StringArray):
            return self._blob == other._blob and np.array_equal(self._offsets, other._offsets)
        if isinstance(other, (list, tuple)):
            return len(other) == len(self) and all(a == b for a, b in zip(self, other))
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        head = ", ".join(repr(s) for s in self[:3])
        more = ", ..." if len(self) > 3 else ""
        return f"StringArray([{head}{more}], len={len(self)})"


# --- the parser -----------------------------------------------------------------

def _fmt(n: int) -> str:
    return f"{n:,}"


class _Reader:
    """A cursor over the file bytes; every read checks the bytes are there first."""

    def __init__(self, buf: Any, size: int, file_desc: str) -> None:
        self.buf = buf          # mmap or bytes-like, read-only
        self.size = size
        self.pos = 0
        self.file_desc = file_desc
        self.object_budget = size + PY_OBJECT_ALLOWANCE  # bytes of Python objects allowed

    def remaining(self) -> int:
        return self.size - self.pos

    def need(self, n: int, what: str) -> None:
        if n > self.size - self.pos:
            raise GGUFTruncatedError(
                f"{what} needs {_fmt(n)} bytes at offset {_fmt(self.pos)} but the file has "
                f"{_fmt(self.size)} bytes (truncated download or corrupt header?)")

    def scalar(self, vtype: int, what: str) -> Any:
        fmt = _SCALAR_STRUCT[vtype]
        n = struct.calcsize(fmt)
        self.need(n, what)
        (v,) = struct.unpack_from(fmt, self.buf, self.pos)
        self.pos += n
        if vtype == GGUFValueType.BOOL:
            return v != 0
        return v

    def u32(self, what: str) -> int:
        return self.scalar(GGUFValueType.UINT32, what)

    def u64(self, what: str) -> int:
        return self.scalar(GGUFValueType.UINT64, what)

    def raw_string(self, what: str) -> bytes:
        start = self.pos
        n = self.u64(f"length of {what}")
        if n > self.size - self.pos:
            raise GGUFTruncatedError(
                f"{what}: string length {_fmt(n)} at offset {_fmt(start)} is larger than the "
                f"{_fmt(self.size - self.pos)} bytes left in the file (corrupt header or "
                f"truncated download?)")
        b = bytes(self.buf[self.pos:self.pos + n])
        self.pos += n
        return b

    def string(self, what: str) -> str:
        start = self.pos
        b = self.raw_string(what)
        try:
            return b.decode("utf-8")
        except UnicodeDecodeError as e:
            raise GGUFValueError(
                f"{what}: string at offset {_fmt(start)} is not valid UTF-8 ({e.reason} at byte "
                f"{e.start}) (corrupt header?)") from None


def _value_type_name(t: int) -> str:
    return VALUE_TYPE_NAMES.get(t, f"unknown({t})")


def _check_value_type(t: int, what: str) -> None:
    if t not in VALUE_TYPE_NAMES:
        raise GGUFFormatError(
            f"{what}: unknown metadata value type {t} (valid: 0..12; corrupt header or a "
            f"newer GGUF revision than llamalite reads?)")


def _read_value(r: _Reader, vtype: int, what: str, depth: int = 0) -> tuple[Any, tuple]:
    """Read one value of type `vtype`; returns (value, type tuple)."""
    _check_value_type(vtype, what)
    if vtype == GGUFValueType.STRING:
        return r.string(what), (vtype,)
    if vtype != GGUFValueType.ARRAY:
        return r.scalar(vtype, what), (vtype,)
    return _read_array(r, what, depth)


def _read_array(r: _Reader, what: str, depth: int) -> tuple[Any, tuple]:
    if depth >= MAX_ARRAY_NESTING:
        raise GGUFValueError(
            f"{what}: arrays nested more than {MAX_ARRAY_NESTING} deep (corrupt header?)")
    start = r.pos
    etype = r.u32(f"{what}: array element type")
    _check_value_type(etype, f"{what}: array element")
    count = r.u64(f"{what}: array length")
    left = r.remaining()
    if etype in _SCALAR_DTYPES:
        dt = _SCALAR_DTYPES[etype]
        min_bytes = count * dt.itemsize
    elif etype == GGUFValueType.STRING:
        min_bytes = count * 8
    else:
        min_bytes = count * 12
    if min_bytes > left:
        raise GGUFTruncatedError(
            f"{what}: array length {_fmt(count)} of {_value_type_name(etype)} at offset "
            f"{_fmt(start)} needs at least {_fmt(min_bytes)} bytes but only {_fmt(left)} are "
            f"left in the file (corrupt header or truncated download?)")
    if etype in _SCALAR_DTYPES:
        dt = _SCALAR_DTYPES[etype]
        raw = np.frombuffer(r.buf, dtype=np.uint8, count=count * dt.itemsize, offset=r.pos)
        arr = raw.view(dt) if etype != GGUFValueType.BOOL else raw != 0
        arr = arr.astype(dt.newbyteorder("=") if dt.kind != "b" else dt, copy=True)
        arr.flags.writeable = False
        r.pos += count * dt.itemsize
        return arr, (GGUFValueType.ARRAY, etype)
    if etype == GGUFValueType.STRING:
        return _read_string_array(r, count, what), (GGUFValueType.ARRAY, etype)
    # Arrays of arrays: a list of sub-arrays (rare; never a vocabulary).
    cost = count * PY_COST_SUBARRAY
    if cost > r.object_budget:
        raise GGUFValueError(
            f"{what}: nested array of {_fmt(count)} sub-arrays is more than a file of "
            f"{_fmt(r.size)} bytes can plausibly hold (corrupt header?)")
    r.object_budget -= cost
    items, types = [], (GGUFValueType.ARRAY, GGUFValueType.ARRAY)
    for i in range(count):
        v, t = _read_array(r, f"{what}[{i}]", depth + 1)
        if i == 0:
            types = (GGUFValueType.ARRAY,) + t
        items.append(v)
    return items, types


def _read_string_array(r: _Reader, count: int, what: str) -> StringArray:
    res = _core.gguf_scan_strings(r.buf, r.pos, count)
    if not res[0]:
        _, idx, pos, length, cut = res
        if idx == -1:
            raise GGUFTruncatedError(
                f"{what}: the file changed while it was being read (another process writing "
                f"it?); open it again once it is complete")
        if cut:
            raise GGUFTruncatedError(
                f"{what}: string {_fmt(idx)} of {_fmt(count)} starts at offset {_fmt(pos)} but "
                f"the file ends at {_fmt(r.size)} (truncated download?)")
        raise GGUFTruncatedError(
            f"{what}: string {_fmt(idx)} of {_fmt(count)} at offset {_fmt(pos)} has length "
            f"{_fmt(length)}, more than the {_fmt(r.size - pos - 8)} bytes left in the file "
            f"(corrupt header or truncated download?)")
    _, end, blob, offsets = res
    r.pos = end
    return StringArray(blob, offsets)


def _parse_header(r: _Reader) -> tuple[int, int, int]:
    r.need(4, "magic")
    magic = bytes(r.buf[0:4])
    if magic != GGUF_MAGIC:
        hint = "not a GGUF file"
        if magic == b"FUGG" or magic[::-1] == GGUF_MAGIC:
            hint = "byte-swapped magic"
        elif magic in (b"ggjt", b"ggml", b"ggmf", b"tjgg", b"lmgg", b"fmgg"):
            hint = "an old GGML/GGJT file from before GGUF; convert it with llama.cpp"
        elif magic.startswith(b"PK") or magic.startswith(b"\x80"):
            hint = "a PyTorch/zip checkpoint, not GGUF"
        raise GGUFFormatError(f"magic is {magic!r}, expected b'GGUF' ({hint})")
    r.pos = 4
    version = r.u32("version")
    if version not in SUPPORTED_VERSIONS:
        if version == 1:
            hint = "GGUF v1 from 2023 uses 32-bit counts; re-convert the model"
        elif version & 0xFFFF == 0 and (version >> 24) in SUPPORTED_VERSIONS:
            hint = "a big-endian GGUF file; llamalite reads little-endian files only"
        else:
            hint = "corrupt header or a newer GGUF than llamalite reads"
        raise GGUFFormatError(
            f"GGUF version {version} is not supported (llamalite reads versions 2 and 3; {hint})")
    n_tensors = r.u64("n_tensors")
    n_kv = r.u64("n_kv")
    # Each key-value needs >= 8 (key length) + 4 (type) + 1 (value) bytes; each tensor
    # info >= 8 (name length) + 4 (n_dims) + 8 (one dim) + 4 (type) + 8 (offset).
    left = r.remaining()
    if n_kv * 13 > left:
        raise GGUFTruncatedError(
            f"n_kv is {_fmt(n_kv)} but {_fmt(left)} bytes after the header can hold at most "
            f"{_fmt(left // 13)} key-value pairs (corrupt header or truncated download?)")
    if n_tensors * 32 > left:
        raise GGUFTruncatedError(
            f"n_tensors is {_fmt(n_tensors)} but {_fmt(left)} bytes after the header can hold "
            f"at most {_fmt(left // 32)} tensor infos (corrupt header or truncated download?)")
    if n_kv * 13 + n_tensors * 32 > left:
        raise GGUFTruncatedError(
            f"n_kv {_fmt(n_kv)} and n_tensors {_fmt(n_tensors)} need at least "
            f"{_fmt(n_kv * 13 + n_tensors * 32)} bytes but the file has {_fmt(left)} after the "
            f"header (corrupt header or truncated download?)")
    cost = n_kv * PY_COST_KV + n_tensors * PY_COST_TENSOR
    if cost > r.object_budget:
        raise GGUFValueError(
            f"n_kv {_fmt(n_kv)} and n_tensors {_fmt(n_tensors)} are more entries than a file of "
            f"{_fmt(r.size)} bytes can plausibly hold (corrupt header?)")
    r.object_budget -= cost
    return version, n_tensors, n_kv


def _parse_metadata(r: _Reader, n_kv: int) -> tuple[dict, dict]:
    metadata: dict[str, Any] = {}
    types: dict[str, tuple] = {}
    for i in range(n_kv):
        key = r.string(f"metadata key #{i}")
        if key in metadata:
            raise GGUFValueError(
                f"metadata key {key!r} appears twice (key #{i}); a GGUF key must be unique "
                f"(corrupt or hand-edited file?)")
        vtype = r.u32(f"value type of metadata key {key!r}")
        _check_value_type(vtype, f"metadata key {key!r}")
        value, t = _read_value(r, vtype, f"metadata key {key!r}")
        metadata[key] = value
        types[key] = t
    return metadata, types


def _alignment(metadata: Mapping[str, Any], types: Mapping[str, tuple]) -> int:
    if "general.alignment" not in metadata:
        return DEFAULT_ALIGNMENT
    t = types["general.alignment"]
    a = metadata["general.alignment"]
    if len(t) != 1 or t[0] not in _INTEGER_TYPES:
        raise GGUFValueError(
            f"general.alignment has type {'ARRAY' if len(t) > 1 else _value_type_name(t[0])}, "
            f"expected an integer (UINT32) (corrupt or hand-edited file?)")
    if a <= 0 or a & (a - 1):
        raise GGUFValueError(
            f"general.alignment is {a}; it must be a power of two greater than 0 "
            f"(corrupt or hand-edited file?)")
    return int(a)


def _parse_tensor_infos(r: _Reader, n_tensors: int) -> list[tuple]:
    """Raw tensor infos: (name, n_dims, shape, type, rel_offset); checked, not placed yet."""
    out = []
    seen: set[str] = set()
    for i in range(n_tensors):
        name = r.string(f"tensor #{i} name")
        if name in seen:
            raise GGUFTensorError(
                f"tensor name {name!r} appears twice (tensor #{i}); tensor names must be unique "
                f"(corrupt or badly merged file?)")
        seen.add(name)
        what = f"tensor {name!r}"
        n_dims = r.u32(f"{what}: n_dims")
        if n_dims == 0 or n_dims > MAX_DIMS:
            raise GGUFTensorError(
                f"{what}: n_dims is {n_dims}; GGUF tensors have 1 to {MAX_DIMS} dimensions "
                f"(corrupt header?)")
        r.need(8 * n_dims, f"{what}: dimensions")
        shape = struct.unpack_from(f"<{n_dims}q", r.buf, r.pos)
        r.pos += 8 * n_dims
        for d, ne in enumerate(shape):
            if ne <= 0:
                raise GGUFTensorError(
                    f"{what}: dimension {d} is {ne}; every dimension must be at least 1 "
                    f"(corrupt header?)")
        n = 1
        for ne in shape:
            n *= ne
        if n > INT64_MAX:
            raise GGUFTensorError(
                f"{what}: shape {list(shape)} has {_fmt(n)} elements, which overflows 64 bits "
                f"(corrupt header?)")
        ttype = r.u32(f"{what}: type")
        if ttype not in GGML_TYPES:
            if ttype in _REMOVED_TYPES:
                why = f"{_REMOVED_TYPES[ttype]}, removed from ggml; re-convert the model"
            else:
                why = "unknown; corrupt header or a newer ggml type than llamalite knows"
            raise GGUFTensorError(f"{what}: tensor type {ttype} ({why})")
        tinfo = GGML_TYPES[ttype]
        if shape[0] % tinfo.block_size:
            raise GGUFTensorError(
                f"{what}: row length (ne0) {_fmt(shape[0])} is not a multiple of the "
                f"{tinfo.name} block size {tinfo.block_size} (corrupt header or a broken "
                f"quantizer?)")
        rel = r.u64(f"{what}: offset")
        out.append((name, shape, ttype, n, rel))
    return out


def _place_tensors(raw: list[tuple], data_offset: int, alignment: int,
                   file_size: int) -> dict[str, TensorInfo]:
    tensors: dict[str, TensorInfo] = {}
    for name, shape, ttype, n, rel in raw:
        tinfo = GGML_TYPES[ttype]
        what = f"tensor {name!r}"
        if rel % alignment:
            raise GGUFTensorError(
                f"{what}: data offset {_fmt(rel)} is not a multiple of the alignment "
                f"{alignment} (corrupt header or wrong general.alignment?)")
        nbytes = n // tinfo.block_size * tinfo.type_size
        start = data_offset + rel
        end = start + nbytes
        if end > file_size:
            raise GGUFTruncatedError(
                f"{what} ends at byte {_fmt(end)} but the file has {_fmt(file_size)} bytes "
                f"(truncated download?)")
        tensors[name] = TensorInfo(name=name, type=ttype, type_name=tinfo.name,
                                   shape=tuple(shape), n_elements=n, offset=start,
                                   nbytes=nbytes)
    by_start = sorted(tensors.values(), key=lambda t: (t.offset, t.nbytes))
    for a, b in zip(by_start, by_start[1:]):
        if a.offset + a.nbytes > b.offset:
            raise GGUFTensorError(
                f"tensor {b.name!r} at byte {_fmt(b.offset)} overlaps tensor {a.name!r} "
                f"(bytes {_fmt(a.offset)}..{_fmt(a.offset + a.nbytes)}) (corrupt header?)")
    return tensors


# --- tokenizer checks -----------------------------------------------------------

_TOKENIZER_ARRAYS = {
    "tokenizer.ggml.tokens": (GGUFValueType.STRING,),
    "tokenizer.ggml.scores": (GGUFValueType.FLOAT32,),
    "tokenizer.ggml.token_type": (GGUFValueType.INT32, GGUFValueType.UINT32),
    "tokenizer.ggml.merges": (GGUFValueType.STRING,),
}


def _check_tokenizer(metadata: Mapping[str, Any], types: Mapping[str, tuple]) -> None:
    for key, allowed in _TOKENIZER_ARRAYS.items():
        if key not in types:
            continue
        t = types[key]
        if t[0] != GGUFValueType.ARRAY or len(t) != 2 or t[1] not in allowed:
            got = " of ".join(_value_type_name(x) for x in t)
            want = " or ".join(f"ARRAY of {_value_type_name(x)}" for x in allowed)
            raise GGUFTokenizerError(
                f"{key} has type {got}, expected {want} (corrupt or mis-converted file?)")
    if "tokenizer.ggml.tokens" not in metadata:
        for key in ("tokenizer.ggml.scores", "tokenizer.ggml.token_type"):
            if key in metadata:
                raise GGUFTokenizerError(
                    f"{key} is present but tokenizer.ggml.tokens is missing (corrupt file?)")
        return
    n_vocab = len(metadata["tokenizer.ggml.tokens"])
    for key in ("tokenizer.ggml.scores", "tokenizer.ggml.token_type"):
        if key in metadata and len(metadata[key]) != n_vocab:
            raise GGUFTokenizerError(
                f"{key} has {_fmt(len(metadata[key]))} entries but tokenizer.ggml.tokens has "
                f"{_fmt(n_vocab)} (corrupt or mis-converted file?)")
    arch = metadata.get("general.architecture")
    if isinstance(arch, str):
        key = f"{arch}.vocab_size"
        if key in metadata:
            v = metadata[key]
            if len(types[key]) != 1 or types[key][0] not in _INTEGER_TYPES:
                raise GGUFTokenizerError(
                    f"{key} has type {_value_type_name(types[key][0])}, expected an integer "
                    f"(corrupt file?)")
            if v != n_vocab:
                raise GGUFTokenizerError(
                    f"{key} is {_fmt(v)} but tokenizer.ggml.tokens has {_fmt(n_vocab)} entries "
                    f"(corrupt or mis-converted file?)")


# --- the public file object -----------------------------------------------------

class GGUFFile:
    """An open, validated GGUF file; tensor data stays in the memory map.

    Use as a context manager or call close(). Metadata and tensor infos are plain
    Python/numpy copies that outlive close(); `data`, `tensor_bytes()` and
    `tensor_array()` are views into the mapping.
    """

    def __init__(self, *, path: Path, version: int, alignment: int, file_size: int,
                 data_offset: int, metadata: dict, metadata_types: dict,
                 tensors: dict[str, TensorInfo], data: Optional[np.ndarray],
                 mm: Optional[mmap.mmap]) -> None:
        self.path = path
        self.version = version
        self.alignment = alignment
        self.file_size = file_size
        self.data_offset = data_offset
        self.metadata: Mapping[str, Any] = MappingProxyType(metadata)      # read-only
        self.metadata_types: Mapping[str, tuple] = MappingProxyType(metadata_types)
        self.tensors = tensors
        self.data = data     # read-only uint8 view of the whole file
        self._mmap = mm

    @property
    def is_mapped(self) -> bool:
        """Whether data is a read-only mapping of the file (not a copy in memory)."""
        return self._mmap is not None

    @property
    def architecture(self) -> str:
        """general.architecture ('' if the file does not say)."""
        a = self.metadata.get("general.architecture", "")
        return a if isinstance(a, str) else ""

    def get(self, key: str, default: Any = None) -> Any:
        return self.metadata.get(key, default)

    def __contains__(self, key: str) -> bool:
        return key in self.metadata

    def _info(self, name: str) -> TensorInfo:
        try:
            return self.tensors[name]
        except KeyError:
            raise KeyError(f"no tensor named {name!r} in {self.path.name}") from None

    def _buffer(self) -> np.ndarray:
        if self.data is None:
            raise ValueError(f"{self.path.name} is closed")
        return self.data

    def tensor_bytes(self, name: str) -> np.ndarray:
        """The tensor's bytes: a zero-copy read-only uint8 view into the mapping."""
        t = self._info(name)
        return self._buffer()[t.offset:t.offset + t.nbytes]

    def tensor_array(self, name: str) -> np.ndarray:
        """An F32/F16/BF16(as uint16)/I8..I64/F64 tensor as a zero-copy typed view.

        The numpy shape is the GGUF shape reversed (rows last-to-first), so a weight
        with GGUF shape (K, N) is an [N, K] array. Quantized types raise GGUFError:
        use tensor_bytes() and the core's dequantizers for those.
        """
        t = self._info(name)
        dt = _ARRAY_DTYPES.get(t.type)
        if dt is None:
            raise GGUFError(
                f"tensor {name!r} is {t.type_name} (block-quantized); tensor_array() gives "
                f"only plain types; use tensor_bytes() and dequantize")
        return self.tensor_bytes(name).view(dt).reshape(t.shape[::-1])

    def close(self) -> None:
        """Release the mapping (deferred until views handed out earlier are gone)."""
        self.data = None
        mm, self._mmap = self._mmap, None
        if mm is not None:
            try:
                mm.close()
            except BufferError:
                pass  # numpy views still use it; it is unmapped when the last one dies

    def __enter__(self) -> "GGUFFile":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return (f"GGUFFile({str(self.path)!r}, v{self.version}, arch={self.architecture!r}, "
                f"{len(self.metadata)} keys, {len(self.tensors)} tensors)")


def _parse(buf: Any, size: int, path: Path) -> dict:
    """Parse and validate everything but the mapping; returns GGUFFile fields."""
    r = _Reader(buf, size, path.name)
    version, n_tensors, n_kv = _parse_header(r)
    metadata, types = _parse_metadata(r, n_kv)
    alignment = _alignment(metadata, types)
    _check_tokenizer(metadata, types)
    raw = _parse_tensor_infos(r, n_tensors)
    pad = (-r.pos) % alignment
    data_offset = r.pos + pad
    if data_offset > size and n_tensors:
        raise GGUFTruncatedError(
            f"the tensor data section starts at byte {_fmt(data_offset)} but the file has "
            f"{_fmt(size)} bytes (truncated download?)")
    tensors = _place_tensors(raw, data_offset, alignment, size)
    return dict(path=path, version=version, alignment=alignment, file_size=size,
                data_offset=data_offset, metadata=metadata, metadata_types=types,
                tensors=tensors)


def open_gguf(source: Union[str, os.PathLike, bytes, bytearray, memoryview]) -> GGUFFile:
    """Open and validate a GGUF file (a path, or a bytes-like buffer holding a whole file).

    Raises GGUFError (a subclass naming the kind of problem) for any malformed file,
    FileNotFoundError/PermissionError/IsADirectoryError for a path that cannot be opened.
    """
    if isinstance(source, (bytes, bytearray, memoryview)):
        view = memoryview(source).cast("B")
        data = np.frombuffer(view, dtype=np.uint8)
        data.flags.writeable = False
        fields = _parse(data, data.size, Path("<buffer>"))
        return GGUFFile(**fields, data=data, mm=None)
    path = Path(source)
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        if size < 24:
            raise GGUFTruncatedError(
                f"{path.name} has {_fmt(size)} bytes; a GGUF header needs at least 24 "
                f"(empty or truncated file?)")
        mm = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    try:
        data = np.frombuffer(mm, dtype=np.uint8)
        fields = _parse(data, size, path)
    except BaseException:
        data = None
        try:
            mm.close()
        except BufferError:
            pass
        raise
    return GGUFFile(**fields, data=data, mm=mm)
