"""What the core runs on: instruction sets, CPU features, default thread count."""
from __future__ import annotations

from typing import Any

from . import _core


def system_info() -> dict[str, Any]:
    """The active kernel ISA, the ISAs this CPU supports, its features and thread default.

    `LLAMALITE_ISA=generic|avx2|avx512|amx|neon|dotprod|i8mm` (read once at import) forces the ISA;
    `amx` is avx512 plus AMX-INT8 tiles for batched matmuls, with the same results.
    """
    return {
        "active_isa": _core.active_isa(),
        "supported_isas": list(_core.supported_isas()),
        "cpu_features": _core.cpu_features().split(),
        "default_threads": _core.default_thread_count(),
        "version": _core.__version__,
    }
