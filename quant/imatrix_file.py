"""Importance-matrix files, in llama.cpp's two formats.

GGUF (what llama-imatrix writes by default): general.type = "imatrix", the string array
imatrix.datasets, u32 imatrix.chunk_count and imatrix.chunk_size, and per weight two F32
tensors: `<weight>.in_sum2` [n_per_row, n_mat] (sum over tokens of x^2 per input column)
and `<weight>.counts` [1, n_mat] (tokens seen), GGUF dimension order. n_mat is 1 except
for the 3-D expert tensors, where it is n_expert and each expert's count is the tokens
routed to it (0, with zero sums, for an expert no token chose). llama-imatrix also
writes `<weight>.in_sum` and `<weight>.stats`, which the quantizer does not use.

Legacy .dat (little-endian): i32 n_entries; per entry i32 name length, the name, i32
ncall, i32 n_values, n_values f32 (mean of x^2 times ncall); then optionally i32
chunk count, i32 length and the dataset name.

What the quantizer uses per weight is what llama-quantize computes: the mean of x^2 per
column (in_sum2 / counts per expert; legacy: values / ncall), 1 where nothing was seen.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Union

import numpy as np

from llamalite.gguf import GGUFError, open_gguf

from . import gguf_writer as gw


class ImatrixError(ValueError):
    """An importance-matrix file that cannot be read."""


@dataclass
class Imatrix:
    sums: dict[str, np.ndarray]        # name -> float32 [n_mat * n_per_row] (sum of x^2)
    counts: dict[str, np.ndarray]      # name -> float32 [n_mat] (tokens; legacy: ncall)
    chunk_count: int = 0
    chunk_size: int = 0
    datasets: list[str] = field(default_factory=list)
    legacy: bool = False

    def weights(self) -> dict[str, np.ndarray]:
        """name -> float32 [n_mat * n_per_row]: the per-column importance the quantizer uses."""
        out = {}
        for name, s in self.sums.items():
            c = self.counts[name].astype(np.float32)
            per = s.reshape(len(c), -1)
            w = np.ones_like(per, dtype=np.float32)
            seen = c > 0
            w[seen] = per[seen] / c[seen, None]
            out[name] = w.reshape(-1).astype(np.float32)
        return out


def load(path: Union[str, Path]) -> Imatrix:
    """Read a GGUF or legacy .dat importance matrix (by its first bytes)."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            magic = f.read(4)
    except OSError as e:
        raise ImatrixError(f"cannot read imatrix file {path}: {e.strerror}") from None
    if magic == b"GGUF":
        return _load_gguf(path)
    return _load_dat(path)


def _load_gguf(path: Path) -> Imatrix:
    try:
        g = open_gguf(path)
    except GGUFError as e:
        raise ImatrixError(f"{path}: {e}") from None
    with g:
        sums, counts = {}, {}
        for name in g.tensors:
            for suffix, into in ((".in_sum2", sums), (".counts", counts)):
                if name.endswith(suffix):
                    t = g.tensors[name]
                    if t.type != 0:
                        raise ImatrixError(f"{path}: tensor {name!r} is {t.type_name}, expected F32")
                    into[name[: -len(suffix)]] = np.array(g.tensor_array(name), dtype=np.float32).reshape(-1)
        if not sums:
            raise ImatrixError(f"{path}: a GGUF file without <weight>.in_sum2 tensors is not an "
                               f"importance matrix")
        for name, s in sums.items():
            c = counts.get(name)
            if c is None or len(c) == 0 or s.size % len(c):
                raise ImatrixError(f"{path}: {name}.in_sum2 has no matching {name}.counts")
        datasets = g.get("imatrix.datasets", [])
        return Imatrix(sums, {n: counts[n] for n in sums},
                       chunk_count=int(g.get("imatrix.chunk_count", 0)),
                       chunk_size=int(g.get("imatrix.chunk_size", 0)),
                       datasets=[str(d) for d in datasets])


def _load_dat(path: Path) -> Imatrix:
    data = path.read_bytes()
    pos = 0

    def take(fmt: str, what: str):
        nonlocal pos
        n = struct.calcsize(fmt)
        if pos + n > len(data):
            raise ImatrixError(f"{path}: truncated legacy imatrix file (reading {what} at byte {pos})")
        v = struct.unpack_from(fmt, data, pos)
        pos += n
        return v[0] if len(v) == 1 else v

    n_entries = take("<i", "the entry count")
    if n_entries < 1 or n_entries > len(data) // 12:
        raise ImatrixError(f"{path}: not an importance matrix (neither GGUF nor a legacy .dat "
                           f"file: entry count {n_entries})")
    sums, counts = {}, {}
    for i in range(n_entries):
        n = take("<i", f"entry {i}'s name length")
        if n <= 0 or pos + n > len(data):
            raise ImatrixError(f"{path}: bad name length {n} for entry {i}")
        name = data[pos:pos + n].decode("utf-8", "replace")
        pos += n
        ncall = take("<i", f"{name}'s ncall")
        nval = take("<i", f"{name}'s value count")
        if nval < 1 or pos + 4 * nval > len(data):
            raise ImatrixError(f"{path}: bad value count {nval} for {name!r}")
        sums[name] = np.frombuffer(data, dtype="<f4", count=nval, offset=pos).astype(np.float32)
        pos += 4 * nval
        counts[name] = np.array([ncall], dtype=np.float32)
    im = Imatrix(sums, counts, legacy=True)
    if pos + 4 <= len(data):
        im.chunk_count = take("<i", "the chunk count")
        if pos + 4 <= len(data):
            n = take("<i", "the dataset name length")
            if 0 < n <= len(data) - pos:
                im.datasets = [data[pos:pos + n].decode("utf-8", "replace")]
    return im


def _per_matrix(sums: np.ndarray, counts) -> tuple[np.ndarray, np.ndarray]:
    """sums as float32 [n_mat, n_per_row] and counts as float [n_mat] (int or array given)."""
    c = np.atleast_1d(np.asarray(counts, dtype=np.float64)).reshape(-1)
    s = np.asarray(sums, dtype=np.float32).reshape(len(c), -1)
    return s, c


def save_gguf(path: Union[str, Path], sums: dict[str, np.ndarray], counts: dict, *,
              chunk_count: int, chunk_size: int, datasets: list[str]) -> None:
    """Write llama-imatrix's GGUF format (names sorted): per weight in_sum2 [n_mat, n_per_row]
    and counts [n_mat, 1] (numpy order), an expert no token chose as zeros and count 0.
    counts[name]: rows seen, an int or one per matrix (expert)."""
    kvs = [gw.kv("general.type", gw.STRING, "imatrix"),
           gw.kv("imatrix.datasets", gw.ARRAY, list(datasets)),
           gw.kv("imatrix.chunk_count", gw.UINT32, int(chunk_count)),
           gw.kv("imatrix.chunk_size", gw.UINT32, int(chunk_size))]
    tensors = []
    for name in sorted(sums):
        s, c = _per_matrix(sums[name], counts[name])
        tensors.append((f"{name}.in_sum2", s))
        tensors.append((f"{name}.counts", c.astype(np.float32).reshape(-1, 1)))
    with open(path, "wb") as f:
        gw.write_small(f, kvs, tensors)


def save_dat(path: Union[str, Path], sums: dict[str, np.ndarray], counts: dict, *,
             chunk_count: int, chunk_size: int, dataset: str) -> None:
    """Write the legacy .dat format as llama-imatrix does: per entry ncall = ceil(largest
    count / chunk) and per matrix mean(x^2) * ncall, 1 * ncall for an expert no token
    chose; an entry whose matrices all saw nothing is left out."""
    names = [n for n in sorted(sums) if _per_matrix(sums[n], counts[n])[1].max() > 0]
    out = [struct.pack("<i", len(names))]
    for name in names:
        b = name.encode()
        s, c = _per_matrix(sums[name], counts[name])
        ncall = max(1, -(-int(c.max()) // max(1, chunk_size)))
        vals = np.full_like(s, np.float32(ncall))
        seen = c > 0
        vals[seen] = (s[seen] / c[seen, None].astype(np.float32)) * np.float32(ncall)
        out += [struct.pack("<i", len(b)), b, struct.pack("<ii", ncall, s.size),
                vals.astype("<f4").tobytes()]
    d = dataset.encode()
    out += [struct.pack("<i", chunk_count), struct.pack("<i", len(d)), d]
    Path(path).write_bytes(b"".join(out))
