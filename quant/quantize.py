"""Write a quantized copy of a GGUF model, tensor by tensor (`llamalite quantize`).

The input stays memory-mapped; each tensor goes to the core (_core.quantize_rows) in
slabs of stored rows, which its worker threads convert to float32 a row at a time
(F16, BF16, or dequantized from a quantized input) and quantize; each slab is appended
to the output and the mapping's pages it came from are released: memory stays near one
slab whatever the size of the model or of its largest tensor. The metadata is copied
key by key as it is in the input, except general.quantization_version (2) and
general.file_type (the mix's LLAMA_FTYPE value), which go last as llama-quantize writes
them; with an imatrix, llama-quantize's quantize.imatrix.* keys follow. Tensors are
written in llama.cpp's order, so for the same input, type and options the output is the
file llama-quantize writes.

The output is written to a temporary file beside it, synced to disk (in the background
as the tensors are written, then once more at the end) and renamed when complete: an
error, a full disk, Ctrl-C or a power cut leaves no partial file under the final name.
"""
from __future__ import annotations

import mmap
import os
import shutil
import tempfile
import threading
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import numpy as np

from llamalite import _core
from llamalite.gguf import GGUFFile, _parse_header, _read_value, _Reader, open_gguf

from . import gguf_writer as gw
from .imatrix_file import Imatrix
from .plan import (F32, FileType, ModelFacts, Options, Plan, PlanError, Step,
                   TensorSpec, WRITABLE_TYPES, facts_from_metadata, file_type, is_quantized,
                   make_plan, type_name)

QUANTIZATION_VERSION = 2
# Values per slab: bounds the output buffer and the input pages mapped at once.
SLAB_VALUES = 4 << 20


class QuantizeError(RuntimeError):
    """The quantization cannot be done (bad paths, full disk, bad imatrix...)."""


class RequantizeWarning(UserWarning):
    """The input holds quantized tensors: they are dequantized and quantized again."""


@dataclass
class Progress:
    """What a progress callback receives after each tensor."""
    index: int            # 1-based
    n_tensors: int
    name: str
    bytes_done: int       # input bytes converted so far
    bytes_total: int
    elapsed_s: float


# --- reading ------------------------------------------------------------------------
def kv_blocks(g: GGUFFile) -> list[tuple[str, bytes]]:
    """Each metadata key with its raw bytes (key, type, value) as the input holds them."""
    buf = g.data
    r = _Reader(buf, g.file_size, g.path.name)
    _, _, n_kv = _parse_header(r)
    out = []
    for _ in range(n_kv):
        start = r.pos
        key = r.string("metadata key")
        vtype = r.u32("value type")
        _read_value(r, vtype, key)
        out.append((key, bytes(buf[start:r.pos])))
    return out


def tensor_specs(g: GGUFFile) -> list[TensorSpec]:
    return [TensorSpec(t.name, tuple(int(d) for d in t.shape), t.type) for t in g.tensors.values()]


def _stored_rows(g: GGUFFile, name: str) -> np.ndarray:
    """A tensor's rows as they are stored: uint8 [rows, row bytes], a view into the mapping."""
    t = g.tensors[name]
    return g.tensor_bytes(name).reshape(t.n_elements // t.shape[0], -1)


def _rows_f32(g: GGUFFile, name: str, r0: int, r1: int) -> np.ndarray:
    """Rows [r0, r1) of a tensor as float32 [r1 - r0, ne0] (through the core's
    dequantize_row for every type but F32)."""
    t = g.tensors[name]
    ne0 = t.shape[0]
    chunk = _stored_rows(g, name)[r0:r1]
    if t.type == F32:
        return chunk.view("<f4").reshape(r1 - r0, ne0)
    flat = _core.dequantize(t.type, np.ascontiguousarray(chunk).reshape(-1), (r1 - r0) * ne0)
    return flat.reshape(r1 - r0, ne0)


# --- planning -------------------------------------------------------------------------
def plan_for(g: GGUFFile, ftype: str | FileType, opts: Options = Options()) -> Plan:
    """The per-tensor plan for an open file (see plan.make_plan)."""
    facts = facts_from_metadata(g.metadata)
    if facts.n_layer <= 0:
        raise PlanError(f"{g.path.name}: no {facts.arch}.block_count in the metadata; is this a "
                        f"model file?")
    return make_plan(tensor_specs(g), facts, ftype, opts)


def imatrix_requirement(plan: Plan) -> list[str]:
    """Tensors llama.cpp refuses to quantize without an imatrix (Q2_K in a Q2_K_S file)."""
    if plan.file_type.name != "Q2_K_S":
        return []
    return [s.name for s in plan.steps if s.type_out == 10 and s.type_out != s.type_in
            and s.name not in ("token_embd.weight", "output.weight", "per_layer_token_embd.weight")]


# --- writing --------------------------------------------------------------------------
def _metadata(g: GGUFFile, ft: FileType, imatrix_path: Optional[Path],
              imatrix: Optional[Imatrix]) -> list[bytes]:
    replaced = {"general.quantization_version", "general.file_type"}
    extra = [gw.kv("general.quantization_version", gw.UINT32, QUANTIZATION_VERSION),
             gw.kv("general.file_type", gw.UINT32, ft.ftype)]
    if imatrix is not None and imatrix_path is not None:
        extra.append(gw.kv("quantize.imatrix.file", gw.STRING, str(imatrix_path)[:127]))
        if imatrix.datasets:
            extra.append(gw.kv("quantize.imatrix.dataset", gw.STRING, imatrix.datasets[0][:127]))
        extra.append(gw.kv("quantize.imatrix.entries_count", gw.UINT32, len(imatrix.sums)))
        if imatrix.chunk_count > 0:
            extra.append(gw.kv("quantize.imatrix.chunks_count", gw.UINT32, imatrix.chunk_count))
        replaced |= {"quantize.imatrix.file", "quantize.imatrix.dataset",
                     "quantize.imatrix.entries_count", "quantize.imatrix.chunks_count"}
    return [b for key, b in kv_blocks(g) if key not in replaced] + extra


def _write_tensor(f, g: GGUFFile, step: Step, imatrix: Optional[np.ndarray], n_threads: int) -> None:
    t = g.tensors[step.name]
    raw = g.tensor_bytes(step.name)
    if step.type_in == step.type_out:
        for i in range(0, t.nbytes, 64 << 20):
            f.write(raw[i:i + (64 << 20)])
            _release(g, t.offset + i, t.offset + min(t.nbytes, i + (64 << 20)))
        return
    ne0 = t.shape[0]
    stored = _stored_rows(g, step.name)
    n_rows, row_bytes = stored.shape
    rows_per_mat = t.shape[1] if len(t.shape) > 1 else 1          # experts: one imatrix slice each
    slab = max(1, min(n_rows, SLAB_VALUES // ne0))
    r = 0
    while r < n_rows:
        mat = r // rows_per_mat
        r1 = min(n_rows, r + slab, (mat + 1) * rows_per_mat)
        if step.type_out == F32:
            out = np.ascontiguousarray(_rows_f32(g, step.name, r, r1), dtype=np.float32).view(np.uint8)
        else:
            # The core converts the stored rows (F16, BF16, quantized) on its worker
            # threads, a row at a time: no float32 copy of the slab.
            w = imatrix[mat * ne0:(mat + 1) * ne0] if imatrix is not None else None
            out = _core.quantize_rows(step.type_out, stored[r:r1], w, n_threads, src_type=step.type_in)
        f.write(memoryview(out).cast("B"))
        _release(g, t.offset + r * row_bytes, t.offset + r1 * row_bytes)
        r = r1


class _Syncer:
    """Writes the output back to disk while the next tensors are quantized.

    A thread runs fdatasync on the file whenever kick() is called (after each tensor),
    so the final fsync before the rename waits only for the last tensors instead of the
    whole file. close() stops the thread; `error` is the error a sync met, if any."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.error: Optional[OSError] = None
        self._wake = threading.Event()
        self._stop = False
        self._thread = threading.Thread(target=self._run, name="llamalite-quantize-sync", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        sync = getattr(os, "fdatasync", os.fsync)
        while True:
            self._wake.wait()
            self._wake.clear()
            if self._stop:
                return
            try:
                sync(self.fd)
            except OSError as e:
                self.error = e
                return

    def kick(self) -> None:
        self._wake.set()

    def close(self) -> None:
        self._stop = True
        self._wake.set()
        self._thread.join()


def _release(g: GGUFFile, start: int, end: int) -> None:
    """Drop the mapping's pages of bytes [start, end) of the file, which have been read:
    resident memory stays near one slab, not one tensor (Gemma 3's embedding table is
    320 MiB) or the whole input. Only a hint: a page read again (the one a slab shares
    with the next) is mapped again from the page cache."""
    mm = getattr(g, "_mmap", None)
    if mm is None or not hasattr(mm, "madvise") or not hasattr(mmap, "MADV_DONTNEED"):
        return
    page = mmap.PAGESIZE
    lo, hi = start // page * page, min(len(mm), -(-end // page) * page)
    if hi > lo:
        mm.madvise(mmap.MADV_DONTNEED, lo, hi - lo)


def _imatrix_for(step: Step, weights: dict[str, np.ndarray]) -> Optional[np.ndarray]:
    if not is_quantized(step.type_out) or step.type_out == step.type_in:
        return None
    w = weights.get(step.name)
    if w is None:
        return None
    n_mat = step.n_elements // (step.shape[0] * (step.shape[1] if len(step.shape) > 1 else 1))
    if w.size != step.shape[0] * n_mat:
        if step.name in ("token_embd.weight", "per_layer_token_embd.weight"):
            return None
        raise QuantizeError(f"the imatrix has {w.size} values for {step.name}, which has "
                            f"{step.shape[0] * n_mat} input columns (an imatrix of another model?)")
    if not np.all(np.isfinite(w)):
        raise QuantizeError(f"the imatrix has non-finite values for {step.name}")
    return np.ascontiguousarray(w, dtype=np.float32)


def _check_paths(src: Path, dst: Path) -> None:
    if dst.exists() and dst.is_dir():
        raise QuantizeError(f"output {dst} is a folder; give a file name")
    try:
        same = dst.exists() and os.path.samefile(src, dst)
    except OSError:
        same = False
    if same or src.resolve() == dst.resolve():
        raise QuantizeError(f"output {dst} is the input file; write to another name")
    folder = dst.parent if str(dst.parent) else Path(".")
    if not folder.is_dir():
        raise QuantizeError(f"cannot write {dst}: folder {folder} does not exist")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise QuantizeError(f"cannot write {dst}: folder {folder} is not writable")


def quantize(src: str | os.PathLike, dst: str | os.PathLike, ftype: str, *,
             opts: Options = Options(), imatrix: Optional[Imatrix] = None,
             imatrix_path: Optional[str | os.PathLike] = None, n_threads: int = 1,
             progress: Optional[Callable[[Progress], None]] = None,
             _open: Callable = open, _mkstemp: Callable = tempfile.mkstemp) -> Plan:
    """Quantize `src` into `dst` with llama-quantize's type or mix `ftype`; returns the plan.

    Raises PlanError (unknown type, impossible shape), QuantizeError (paths, disk, imatrix),
    GGUFError (unreadable input); the output exists only when it is complete.
    _open and _mkstemp stand in for open and tempfile.mkstemp (the tests inject failures)."""
    src, dst = Path(src), Path(dst)
    ft = file_type(ftype)
    _check_paths(src, dst)
    if imatrix is not None:
        opts = Options(**{**opts.__dict__, "has_imatrix": True})
    with open_gguf(src) as g:
        plan = plan_for(g, ft, opts)
        if imatrix is None and imatrix_requirement(plan):
            raise QuantizeError(f"{ft.name} needs an importance matrix (--imatrix) for "
                                f"{imatrix_requirement(plan)[0]} and the other Q2_K tensors")
        unreadable = [s for s in plan.steps if s.type_in != s.type_out and s.type_in not in WRITABLE_TYPES]
        if unreadable:
            s0 = unreadable[0]
            raise QuantizeError(f"tensor {s0.name} is {type_name(s0.type_in)}, which llamalite "
                                f"cannot dequantize; quantize from the F16/BF16/F32 original")
        requant = sorted({type_name(s.type_in) for s in plan.steps
                          if s.type_in != s.type_out and is_quantized(s.type_in)})
        if requant:
            warnings.warn(f"{src.name} holds {', '.join(requant)} tensors: they are dequantized "
                          f"and quantized again, which loses more accuracy than quantizing the "
                          f"F16/BF16/F32 original", RequantizeWarning, stacklevel=2)
        weights = imatrix.weights() if imatrix is not None else {}
        missing = [n for n in imatrix_requirement(plan) if imatrix is not None and n not in weights]
        if missing:
            raise QuantizeError(f"the imatrix has no entry for {missing[0]}, which {ft.name} "
                                f"cannot quantize without one (an imatrix of another model?)")
        kvs = _metadata(g, ft, Path(imatrix_path) if imatrix_path else None, imatrix)
        offsets = gw.data_offsets([s.bytes_out for s in plan.steps], g.alignment)
        infos = [gw.tensor_info(s.name, s.shape, s.type_out, off)
                 for s, off in zip(plan.steps, offsets)]
        head = gw.header(kvs, infos, g.alignment)
        total = len(head) + (offsets[-1] + plan.steps[-1].bytes_out if plan.steps else 0)
        free = shutil.disk_usage(dst.parent if str(dst.parent) else ".").free
        if free < total:
            raise QuantizeError(f"not enough space for {dst}: it needs {total / 1e6:.1f} MB, "
                                f"{free / 1e6:.1f} MB are free")
        try:
            fd, tmp_name = _mkstemp(prefix=f".{dst.name}.", suffix=".part",
                                            dir=dst.parent if str(dst.parent) else ".")
        except OSError as e:
            raise QuantizeError(f"cannot write {dst}: {e.strerror or e}") from None
        os.close(fd)
        tmp = Path(tmp_name)
        try:
            with _open(tmp, "wb") as f:
                f.write(head)
                syncer = _Syncer(f.fileno())
                try:
                    t0, done, bytes_in = time.perf_counter(), 0, plan.bytes_in
                    for i, step in enumerate(plan.steps):
                        _write_tensor(f, g, step, _imatrix_for(step, weights), n_threads)
                        f.write(b"\0" * gw.pad(step.bytes_out, g.alignment))
                        f.flush()
                        syncer.kick()
                        done += step.bytes_in
                        if progress is not None:
                            progress(Progress(i + 1, len(plan.steps), step.name, done, bytes_in,
                                              time.perf_counter() - t0))
                finally:
                    syncer.close()
                if syncer.error is not None:
                    raise syncer.error
                os.fsync(f.fileno())
            if tmp.stat().st_size != total:
                raise QuantizeError(f"wrote {tmp.stat().st_size} bytes, expected {total} "
                                    f"(a bug; the output was not kept)")
            os.chmod(tmp, 0o644)
            os.replace(tmp, dst)
        except OSError as e:
            tmp.unlink(missing_ok=True)
            raise QuantizeError(f"cannot write {dst}: {e.strerror or e}") from None
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
    return plan


def summary(plan: Plan) -> list[tuple[str, int, int, int, int]]:
    """(type name, tensors, bytes in, bytes out, elements) per output type, largest first."""
    rows: dict[str, list[int]] = {}
    for s in plan.steps:
        r = rows.setdefault(type_name(s.type_out), [0, 0, 0, 0])
        r[0] += 1
        r[1] += s.bytes_in
        r[2] += s.bytes_out
        r[3] += s.n_elements
    return sorted(((k, *v) for k, v in rows.items()), key=lambda r: -r[3])


def bits_per_weight(nbytes: int, n_elements: int) -> float:
    return 8.0 * nbytes / n_elements if n_elements else 0.0


__all__ = ["quantize", "plan_for", "summary", "bits_per_weight", "QuantizeError", "PlanError",
           "RequantizeWarning", "Progress", "Options", "ModelFacts", "TensorSpec", "kv_blocks"]
