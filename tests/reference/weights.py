"""Weights and hyperparameters for the numpy reference, read with an independent path.

Tensors come out of the file as raw ggml blocks and are dequantized with
`gguf.quants.dequantize` (the oracle for every block format), so the reference shares
no code with the C++ core. A `GGUFFile` from llamalite's loader is accepted as well as a
path (its offsets are only used to slice bytes; the dequantization is still gguf's).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
from gguf import GGMLQuantizationType, quants


@dataclass
class RefWeights:
    arch: str
    metadata: dict[str, Any]        # key -> python value (scalars, strings)
    raw: Callable[[str], tuple[np.ndarray, int, list[int]]]   # name -> (uint8 bytes, type id, shape)
    names: set[str]

    def get(self, key: str, default: Any = None) -> Any:
        """Metadata value of `<arch>.<key>`, or `default` when the file lacks it."""
        return self.metadata.get(f"{self.arch}.{key}", default)

    def tensor(self, name: str) -> np.ndarray:
        """Dequantized float32 tensor, numpy shape = reversed GGUF shape ([rows, row_len])."""
        data, ttype, shape = self.raw(name)
        n_rows = int(np.prod(shape[1:])) if len(shape) > 1 else 1
        blocks = data.reshape(n_rows, -1)
        out = quants.dequantize(blocks, GGMLQuantizationType(ttype)).astype(np.float32)
        return out.reshape(list(reversed(shape)))

    def rows(self, name: str, row_ids: np.ndarray) -> np.ndarray:
        """Dequantize only the selected rows of a 2-D tensor: [len(row_ids), row_len]."""
        data, ttype, shape = self.raw(name)
        blocks = data.reshape(shape[1], -1)[np.asarray(row_ids)]
        return quants.dequantize(blocks, GGMLQuantizationType(ttype)).astype(np.float32)


def _from_loader(g: Any) -> RefWeights:
    meta = {k: (v.tolist() if isinstance(v, np.ndarray) and v.size < 64 else v)
            for k, v in g.metadata.items() if not k.startswith("tokenizer.ggml.")}

    def raw(name: str):
        t = g.tensors[name]
        return np.asarray(g.tensor_bytes(name)), int(t.type), [int(s) for s in t.shape]
    return RefWeights(str(meta["general.architecture"]), meta, raw, set(g.tensors))


def _from_reader(path: Path) -> RefWeights:
    from gguf import GGUFReader
    r = GGUFReader(str(path))
    meta: dict[str, Any] = {}
    for k, f in r.fields.items():
        if k.startswith("tokenizer.ggml.") or k.startswith("GGUF."):
            continue
        meta[k] = f.contents()
    by_name = {t.name: t for t in r.tensors}

    def raw(name: str):
        t = by_name[name]
        flat = np.asarray(t.data).view(np.uint8).reshape(-1)
        return flat, int(t.tensor_type), [int(s) for s in t.shape]
    return RefWeights(str(meta["general.architecture"]), meta, raw, set(by_name))


def load_weights(path_or_gguf: Any) -> RefWeights:
    """A RefWeights from a path (llamalite's loader if present, else gguf.GGUFReader)
    or from an already opened llamalite GGUFFile."""
    if hasattr(path_or_gguf, "tensors") and hasattr(path_or_gguf, "metadata"):
        return _from_loader(path_or_gguf)
    path = Path(path_or_gguf)
    try:
        from llamalite.gguf import open_gguf
    except ImportError:
        return _from_reader(path)
    return _from_loader(open_gguf(path))
