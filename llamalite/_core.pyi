"""Type stub of llamalite._core, the C++ core (csrc/bindings.cpp). One entry per binding.

tests/test_core_stub.py checks that this file names exactly the module's bindings.
"""
from __future__ import annotations

from typing import Any, Optional, Union

import numpy as np
import numpy.typing as npt

__version__: str

_Buffer = Union[bytes, bytearray, memoryview, npt.NDArray[np.uint8], Any]
_I32 = npt.ArrayLike   # converted to a 1-D or 2-D int32 array

# --- gguf ---

def gguf_scan_strings(
    buffer: _Buffer, pos: int, count: int
) -> Union[tuple[bool, int, bytes, npt.NDArray[np.int64]], tuple[bool, int, int, int, bool]]:
    """Scan `count` GGUF strings at byte `pos`, bounds-checked.

    (True, end_pos, blob, offsets int64[count + 1]) where string i is
    blob[offsets[i]:offsets[i + 1]], or (False, bad_index, bad_pos, bad_length,
    length_cut) describing the first string that does not fit.
    """

# --- kernels: block formats, matmul, instruction sets, thread count ---

def type_traits(type: int) -> dict[str, Any]:
    """Traits of a GGML type id: name, block_size, type_size, can_matmul (ValueError if unknown)."""

def row_bytes(type: int, n: int) -> int:
    """Bytes of a row of n values of the type."""

def dequantize(type: int, raw: npt.NDArray[np.uint8], n: int) -> npt.NDArray[np.float32]:
    """Dequantize n values of the given type from raw bytes into float32 [n]."""

def matmul(type: int, W: npt.NDArray[np.uint8], X: npt.ArrayLike,
           n_threads: Optional[int] = None, precise: bool = False,
           x8: bool = False) -> npt.NDArray[np.float32]:
    """Y [M, N] = X [M, K] . W [N, K]^T with W quantized (uint8 [N, row_bytes]); GIL released.

    precise=True: X stays float32 and W rows are dequantized (no 8-bit activation rounding).
    x8=True: W is in the x8 layout (pack_x8), as a loaded model keeps its weights."""

def pack_x8(type: int, W: npt.NDArray[np.uint8], K: int) -> npt.NDArray[np.uint8]:
    """W [N, row_bytes] ggml rows -> the x8 layout, same shape (32-value types, Q4_K, Q6_K; N % 8 == 0)."""

def unpack_x8(type: int, P: npt.NDArray[np.uint8], K: int) -> npt.NDArray[np.uint8]:
    """The x8 layout back to ggml rows (pack_x8's inverse)."""

def matmul_shared(types: list[int], Ws: list[npt.NDArray[np.uint8]], X: npt.ArrayLike,
                  n_threads: Optional[int] = None, precise: bool = False) -> list[npt.NDArray[np.float32]]:
    """[X . W_i^T for each W_i], X quantized once for all (their types must share an activation
    type; with precise=True any types)."""

def quantize_activations(weight_type: int, X: npt.ArrayLike) -> npt.NDArray[np.uint8]:
    """X [M, K] quantized for weight_type's kernels: uint8 [M, row_bytes]."""

def quantize_rows(type: int, src: npt.NDArray[np.float32], imatrix: Optional[npt.ArrayLike] = None,
                  n_threads: int = 1) -> npt.NDArray[np.uint8]:
    """float32 [rows, n_per_row] -> uint8 [rows, row_bytes] of the type, bit-identical to llama.cpp's
    ggml_quantize_chunk (imatrix: n_per_row importance weights or None). ValueError for a type it cannot
    make, a row length that is not a multiple of the block size, a wrong imatrix length or non-float32 src."""

def quantize_types() -> list[int]:
    """The GGUF type ids quantize_rows can produce."""

def set_isa(name: str) -> None:
    """Force the kernel set: one of supported_isas() (generic, avx2, avx512, amx; neon, dotprod, i8mm on aarch64); RuntimeError if the CPU lacks it."""

def active_isa() -> str:
    """The instruction set the kernels use now."""

def best_isa() -> str:
    """The best instruction set this CPU supports."""

def supported_isas() -> list[str]:
    """Every instruction set this CPU can run, e.g. ['generic', 'avx2', 'avx512']."""

def cpu_features() -> str:
    """The CPU features found by cpuid/xgetbv, as text."""

def default_thread_count() -> int:
    """The default number of worker threads (the physical cores)."""

# --- model: forward pass over a paged KV cache ---

def gated_activation(kind: str, x: npt.ArrayLike, up: npt.ArrayLike) -> npt.NDArray[np.float32]:
    """act(x) * up with the active ISA's kernel; kind 'silu' or 'gelu' (tanh form)."""

def attention(k: npt.NDArray, v: npt.NDArray, q: npt.ArrayLike, positions: npt.ArrayLike,
              seq_ids: npt.ArrayLike, block_tables: npt.ArrayLike, scale: float,
              window: int = 0, tile_tokens: int = 8, min_tasks: int = 1) -> npt.NDArray[np.float32]:
    """The forward pass's attention over a paged cache (tests).

    k, v [n_blocks, block_size, n_head_kv, dim], both float16 or both float32; q float32
    [n_tokens, n_head, head_dim]; each token attends to its sequence's positions
    <= its own (and > pos - window when window > 0). Returns [n_tokens, n_head, head_dim_v].
    tile_tokens / min_tasks choose how the work is split, never the result."""

class Model:
    """The weights of a GGUF file (pointers into its memory map) and the thread pool."""

    def __init__(self, buffer: _Buffer, hparams: dict[str, Any],
                 tensors: dict[str, tuple[int, int, int, int, int]], n_threads: int,
                 precise: bool = False, repack: bool = True, release_pages: bool = False) -> None:
        """Bind the weights of a file parsed by llamalite.gguf; tensors: {name: (offset, type, ne0, ne1, ne2)}
        (GGUF order; ne2 > 1: a 3-D expert tensor, ne2 = product of the dimensions after ne1).

        precise=True: every matmul keeps float32 activations (slower).
        repack: matmul weights of the 32-value types go into the x8 layout (faster kernels).
        release_pages: buffer is a file mapping whose pages of repacked tensors may be dropped."""
    @property
    def n_threads(self) -> int: ...
    @property
    def precise(self) -> bool: ...
    @property
    def n_x8(self) -> int: ...
    @property
    def x8_bytes(self) -> int: ...
    @property
    def n_vocab(self) -> int: ...
    def forward(self, kv: KVCache, tokens: _I32, positions: _I32, seq_ids: _I32,
                block_tables: _I32, logit_rows: _I32) -> npt.NDArray[np.float32]:
        """One engine step (GIL released): float32 logits [len(logit_rows), n_vocab].

        tokens, positions, seq_ids: int32 [n]; block_tables: int32 [n_seqs, max_blocks];
        logit_rows: int32 [r], indices into the n tokens.
        """
    def set_act_stats(self, on: bool) -> None:
        """Start (from zero) or stop collecting, for every layer matmul weight, the sum of the
        squared float activations per input column and the rows seen (llamalite imatrix)."""
    def act_stats(self) -> dict[str, tuple[npt.NDArray[np.float64], int]]:
        """{tensor name: (sum of x^2 per input column [K], rows seen)} since set_act_stats(True)."""

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
    def copy_block(self, src: int, dst: int) -> None:
        """Copy every layer's K/V of block src into block dst."""

# --- sampling ---

def top_k_indices(logits: npt.NDArray[np.float32], k: int) -> npt.NDArray[np.int32]:
    """Ids of the k largest logits (float32 [n_vocab]), best first, ties to the lower id.

    NaN counts as -inf. Returns int32 [min(k, n_vocab)].
    """

def top_p_indices(logits: npt.NDArray[np.float32], p: float) -> npt.NDArray[np.int32]:
    """The top-p set over all logits: the fewest ids, best first, whose softmax mass reaches p.

    Grouped coarsely best first (logit buckets 0.01 wide), not fully sorted.
    """
