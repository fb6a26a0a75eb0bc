# Type stubs for llamalite._core (the C++ core). Each area keeps its own section.
from typing import Any

import numpy as np
import numpy.typing as npt

__version__: str

# --- model ---
def gated_activation(kind: str, x: npt.ArrayLike, up: npt.ArrayLike) -> npt.NDArray[np.float32]:
    """act(x) * up with the active ISA's kernel; kind 'silu' or 'gelu' (tanh form)."""

class Model:
    """Weights of a GGUF file bound in place (see llamalite.model.Model)."""
    def __init__(self, buffer: Any, hparams: dict[str, Any],
                 tensors: dict[str, tuple[int, int, int, int]], n_threads: int) -> None: ...
    @property
    def n_threads(self) -> int: ...
    @property
    def n_vocab(self) -> int: ...
    def forward(self, kv: KVCache, tokens: npt.NDArray[np.int32], positions: npt.NDArray[np.int32],
                seq_ids: npt.NDArray[np.int32], block_tables: npt.NDArray[np.int32],
                logit_rows: npt.NDArray[np.int32]) -> npt.NDArray[np.float32]: ...

class KVCache:
    """Paged K/V pool (f16 or f32): [n_layer, n_blocks, block_size, n_head_kv, head_dim]."""
    def __init__(self, model: Model, n_blocks: int, block_size: int, dtype: str = "f16") -> None: ...
    @property
    def dtype(self) -> str: ...
    @property
    def n_blocks(self) -> int: ...
    @property
    def block_size(self) -> int: ...
    @property
    def nbytes(self) -> int: ...
    def copy_block(self, src: int, dst: int) -> None: ...
