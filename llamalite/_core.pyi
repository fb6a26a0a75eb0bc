"""Type stub of llamalite._core, the C++ core (csrc/bindings.cpp). One entry per binding."""
from __future__ import annotations

from typing import Union

import numpy as np
import numpy.typing as npt

__version__: str

# --- gguf ---

def gguf_scan_strings(
    buffer: Union[bytes, bytearray, memoryview, npt.NDArray[np.uint8]], pos: int, count: int
) -> Union[tuple[bool, int, bytes, npt.NDArray[np.int64]], tuple[bool, int, int, int, bool]]:
    """Scan `count` GGUF strings at byte `pos`, bounds-checked.

    (True, end_pos, blob, offsets int64[count + 1]) where string i is
    blob[offsets[i]:offsets[i + 1]], or (False, bad_index, bad_pos, bad_length,
    length_cut) describing the first string that does not fit.
    """

# --- sampling ---

def top_k_indices(logits: npt.NDArray[np.float32], k: int) -> npt.NDArray[np.int32]:
    """Ids of the k largest logits (float32 [n_vocab]), best first, ties to the lower id.

    NaN counts as -inf. Returns int32 [min(k, n_vocab)].
    """

def top_p_indices(logits: npt.NDArray[np.float32], p: float) -> npt.NDArray[np.int32]:
    """The top-p set over all logits: the fewest ids, best first, whose softmax mass reaches p.

    Grouped coarsely best first (logit buckets 0.01 wide), not fully sorted.
    """
