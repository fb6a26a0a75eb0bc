"""The model: hyperparameters from the GGUF metadata and the C++ forward pass.

>>> from llamalite.model import Model
>>> m = Model.load(path, n_threads=2)
>>> kv = m.new_kv_cache(n_blocks=64, block_size=16)          # 1,024 positions
>>> ids = np.array([1, 2, 3], np.int32)
>>> logits = m.forward(kv, ids, positions=np.arange(3), seq_ids=np.zeros(3),
...                    block_tables=np.array([[0, 1, 2, 3]]), logit_rows=[2])   # [1, n_vocab]

`Model.load(path, precise=True)` is the accuracy/debugging mode: every matmul keeps its
activations in float32 (no 8-bit rounding) and KV caches default to float32; slower.

One `forward` call is one engine step: any number of tokens from any number of
sequences, each writing its K/V into its own sequence's blocks and attending to its
own sequence only. The GIL is released for the whole step.
"""
from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Union

import numpy as np

from . import _core
from .errors import GGUFError
from .gguf import GGUFFile, open_gguf

SUPPORTED_ARCHS = ("llama", "gemma3", "qwen2", "phi3", "gemma2", "qwen3", "qwen3moe")
# The families whose files may hold a mixture of experts (expert_count > 0).
MOE_ARCHS = ("llama", "qwen3moe")
# RoPE scaling types llama.cpp applies without YaRN's extrapolation ramp.
ROPE_SCALINGS = ("none", "linear", "longrope")
# The core holds every integer hyperparameter in an int32 and every real one in a float.
INT32_MAX = 2**31 - 1
FLOAT32_MAX = 3.4028234663852886e38


@dataclass(frozen=True)
class HParams:
    """What the forward pass needs to know about a model (llama.cpp's defaults fill gaps)."""
    arch: str
    n_vocab: int
    n_ctx_train: int
    n_embd: int
    n_layer: int
    n_head: int
    n_head_kv: int
    head_dim: int          # query/key length per head
    head_dim_v: int        # value length per head
    n_rot: int             # leading dims of each head that RoPE rotates
    n_ff: int
    eps: float             # RMSNorm epsilon
    rope_base: float       # RoPE base of global layers
    rope_base_swa: float   # RoPE base of sliding-window layers
    rope_freq_scale: float # global layers: positions scaled by this (1 / linear scaling factor)
    rope_neox: bool        # pairs (i, i + n_rot/2) instead of (2i, 2i+1)
    sliding_window: int    # 0: every layer is global
    swa_pattern: int       # layer il slides when il % swa_pattern < swa_pattern - 1
    attn_scale: float      # multiplies q.k
    embd_scale: float      # multiplies token embeddings
    final_softcap: float   # 0: no final logit soft-capping
    rope_freq_scale_swa: float = 1.0  # rope_freq_scale of sliding-window layers
    rope_attn_factor: float = 1.0     # multiplies RoPE's cos and sin (LongRoPE attention factor)
    rope_factors: str = ""            # tensor of per-pair frequency divisors, "" for none
    attn_softcap: float = 0.0         # attention scores -> cap * tanh(score / cap); 0: none
    # Mixture of experts (qwen3moe; llama files with expert_count > 0); 0: a dense FFN
    n_expert: int = 0      # experts per layer
    n_expert_used: int = 0 # experts per token (top-k of the softmax router)
    n_ff_exp: int = 0      # rows of one expert's gate and up projections

    def is_sliding(self, il: int) -> bool:
        return self.sliding_window > 0 and il % self.swa_pattern < self.swa_pattern - 1


def _repack_enabled(precise: bool) -> bool:
    """Whether a new model repacks its layer weights into the core's x8 layout.

    On by default; off in precise mode (which dequantizes ggml rows anyway), under the
    aarch64 kernel sets (they have no x8 kernels: the core would unpack every row group
    in every matmul) and with LLAMALITE_REPACK=0 (for A/B measurements: results are the
    same either way up to float summation order, see docs/kernels.md)."""
    if precise or _core.active_isa() in _NO_X8_ISAS:
        return False
    return os.environ.get("LLAMALITE_REPACK", "1") != "0"


# Kernel sets without x8 matmuls (docs/kernels.md).
_NO_X8_ISAS = ("neon", "dotprod", "i8mm")


def _meta(g: GGUFFile, arch: str, key: str, default: Any = None) -> Any:
    v = g.metadata.get(f"{arch}.{key}", default)
    if v is None:
        raise GGUFError(f"{g.path.name}: metadata key '{arch}.{key}' is missing")
    return v


def _positive_int(g: GGUFFile, arch: str, key: str, default: Any = None) -> int:
    v = _meta(g, arch, key, default)
    if isinstance(v, np.ndarray):   # per-layer arrays (e.g. head counts): need them uniform
        if v.size == 0 or not (v == v.flat[0]).all():
            raise GGUFError(f"{g.path.name}: '{arch}.{key}' varies per layer, which llamalite "
                            f"does not support")
        v = v.flat[0]
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or int(v) <= 0:
        raise GGUFError(f"{g.path.name}: '{arch}.{key}' must be a positive integer, got {v!r}")
    if int(v) > INT32_MAX:
        raise GGUFError(f"{g.path.name}: '{arch}.{key}' is {int(v):,}; it must be an integer "
                        f"in [1, {INT32_MAX:,}] (corrupt or hand-edited file?)")
    return int(v)


def _number(g: GGUFFile, arch: str, key: str, default: float) -> float:
    v = _meta(g, arch, key, default)
    if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)) \
            or not math.isfinite(float(v)):
        raise GGUFError(f"{g.path.name}: '{arch}.{key}' must be a finite number, got {v!r}")
    if abs(float(v)) > FLOAT32_MAX:
        raise GGUFError(f"{g.path.name}: '{arch}.{key}' is {float(v):g}; it must be in "
                        f"[-{FLOAT32_MAX:g}, {FLOAT32_MAX:g}] (a float32)")
    return float(v)


def _check_layers(g: GGUFFile, arch: str, n_layer: int) -> None:
    """Every layer below block_count has tensors (blk.N.*), checked from the tensor names
    before the core sizes anything per layer: a block_count of 10,000,000 costs nothing.
    (The core then checks each layer's tensors by name and shape.)"""
    layers = set()
    for name in g.tensors:
        parts = name.split(".", 2)
        if len(parts) == 3 and parts[0] == "blk" and parts[1].isdigit():
            layers.add(int(parts[1]))
    missing = next((il for il in range(n_layer) if il not in layers), None)
    if missing is not None:
        raise GGUFError(
            f"{g.path.name}: '{arch}.block_count' is {n_layer:,} but the file has no tensors "
            f"for layer {missing} (blk.{missing}.*; it has {len(layers):,} layers) "
            f"(corrupt or truncated conversion?)")


def _check_core_ranges(hp: HParams) -> None:
    """ValueError when a field (from hparams_overrides) does not fit the core's types."""
    for name, v in asdict(hp).items():
        if isinstance(v, bool) or isinstance(v, str):
            continue
        if isinstance(v, (int, np.integer)) and not -INT32_MAX - 1 <= v <= INT32_MAX:
            raise ValueError(f"hparams field {name} is {v:,}; it must fit an int32 "
                             f"(at most {INT32_MAX:,})")
        if isinstance(v, (float, np.floating)) and abs(v) > FLOAT32_MAX:
            raise ValueError(f"hparams field {name} is {v:g}; it must fit a float32")


def _rope_factors(g: GGUFFile, arch: str, scaling: str, n_ctx: int) -> str:
    """The tensor of per-pair RoPE frequency divisors llama.cpp uses, or "": Llama 3's
    rope_freqs, else (LongRoPE: llama and phi3) the long factors when the context exceeds
    rope.scaling.original_context_length (default: the training context), the short ones
    otherwise. The context is rounded up to a multiple of 256 first, as llama.cpp does
    with its context size."""
    if arch == "llama" and scaling != "longrope":
        return "rope_freqs.weight" if "rope_freqs.weight" in g.tensors else ""
    if arch == "phi3" or (arch == "llama" and scaling == "longrope"):
        orig = _positive_int(g, arch, "rope.scaling.original_context_length",
                             _positive_int(g, arch, "context_length", 2048))
        n_ctx = -(-n_ctx // 256) * 256
        name = "rope_factors_long.weight" if n_ctx > orig else "rope_factors_short.weight"
        return name if name in g.tensors else ""
    return ""


def _check_tensors(g: GGUFFile, arch: str) -> None:
    """GGUFError for tensors llama.cpp's graph of `arch` would use but llamalite's would
    not (biases, mixture-of-experts): refusing beats computing something else."""
    if g.metadata.get(f"{arch}.expert_count", 0) and arch not in MOE_ARCHS:
        raise GGUFError(f"{g.path.name}: mixture-of-experts '{arch}' files (expert_count "
                        f"{g.metadata[f'{arch}.expert_count']}) are not supported (only "
                        f"{', '.join(MOE_ARCHS)})")
    allowed = {"attn_q.bias", "attn_k.bias", "attn_v.bias"} if arch == "qwen2" else set()
    for name in g.tensors:
        if name.endswith(".bias") and name.split(".", 2)[-1] not in allowed:
            raise GGUFError(f"{g.path.name}: tensor {name!r} is not supported for "
                            f"architecture {arch!r} (llamalite would ignore it)")


def hparams_from_gguf(g: GGUFFile, n_ctx: int | None = None) -> HParams:
    """Read the hyperparameters; raises GGUFError for an unsupported architecture.

    n_ctx: the longest sequence the model will serve (default: the training context);
    it picks LongRoPE's short or long factors as llama.cpp's context size does."""
    arch = g.architecture
    if arch not in SUPPORTED_ARCHS:
        raise GGUFError(f"{g.path.name}: architecture {arch!r} is not supported "
                        f"(supported: {', '.join(SUPPORTED_ARCHS)})")
    emb = g.tensors.get("token_embd.weight")
    if emb is None or len(emb.shape) != 2:
        raise GGUFError(f"{g.path.name}: tensor 'token_embd.weight' is missing or not 2-D")
    _check_tensors(g, arch)
    gemma = arch in ("gemma3", "gemma2")
    n_embd = _positive_int(g, arch, "embedding_length")
    n_head = _positive_int(g, arch, "attention.head_count")
    head_dim = _positive_int(g, arch, "attention.key_length", n_embd // n_head)
    tokens = g.metadata.get("tokenizer.ggml.tokens")
    n_vocab = _positive_int(g, arch, "vocab_size", len(tokens) if tokens is not None else emb.shape[1])
    eps = _number(g, arch, "attention.layer_norm_rms_epsilon", 1e-6 if gemma else 1e-5)
    # llama.cpp: a file without the key scales linearly (by rope.scaling.factor, if any)
    scaling = g.metadata.get(f"{arch}.rope.scaling.type", "linear")
    if scaling not in ROPE_SCALINGS or (scaling == "longrope" and arch not in ("llama", "phi3")):
        raise GGUFError(f"{g.path.name}: RoPE scaling {scaling!r} is not supported for "
                        f"{arch} (supported: none, linear{', longrope' if arch in ('llama', 'phi3') else ''})")
    factor = _number(g, arch, "rope.scaling.factor", 0.0)
    if factor == 0.0:
        factor = _number(g, arch, "rope.scale_linear", 0.0)
    if factor < 0:
        raise GGUFError(f"{g.path.name}: '{arch}.rope.scaling.factor' must be positive, got {factor:g}")
    freq_scale = 1.0 / factor if scaling != "none" and factor > 0 else 1.0
    n_layer = _positive_int(g, arch, "block_count")
    _check_layers(g, arch, n_layer)
    n_ff = _positive_int(g, arch, "feed_forward_length")
    n_expert = n_expert_used = n_ff_exp = 0
    if arch == "qwen3moe" or (arch in MOE_ARCHS and g.metadata.get(f"{arch}.expert_count", 0)):
        n_expert = _positive_int(g, arch, "expert_count")
        n_expert_used = _positive_int(g, arch, "expert_used_count")
        if n_expert_used > n_expert:
            raise GGUFError(f"{g.path.name}: '{arch}.expert_used_count' is {n_expert_used} but "
                            f"there are only {n_expert} experts ('{arch}.expert_count')")
        # llama.cpp: qwen3moe's experts are expert_feed_forward_length rows (else
        # n_ff / n_expert_used); llama's are feed_forward_length rows
        n_ff_exp = (_positive_int(g, arch, "expert_feed_forward_length",
                                  max(1, n_ff // n_expert_used))
                    if arch == "qwen3moe" else n_ff)
    n_ctx_train = _positive_int(g, arch, "context_length", 2048)
    if n_ctx is None:
        n_ctx = n_ctx_train
    rope_base = _number(g, arch, "rope.freq_base", 10000.0)
    attn_scale = 1.0 / math.sqrt(head_dim)
    sliding_window, swa_pattern = 0, 1      # llama, qwen2, phi3: every layer global (llama.cpp
    rope_base_swa, freq_scale_swa = 10000.0, 1.0  # ignores llama's and phi3's sliding_window)
    final_softcap = attn_softcap = 0.0
    if arch == "gemma3":
        sliding_window = _positive_int(g, arch, "attention.sliding_window")
        swa_pattern = 6                     # 5 local layers, then 1 global
        final_softcap = _number(g, arch, "final_logit_softcapping", 0.0)
    elif arch == "gemma2":
        sliding_window = _positive_int(g, arch, "attention.sliding_window", 4096)
        pattern = g.metadata.get(f"{arch}.attention.sliding_window_pattern", 2)
        if isinstance(pattern, bool) or not isinstance(pattern, (int, np.integer)) or pattern <= 0:
            raise GGUFError(f"{g.path.name}: '{arch}.attention.sliding_window_pattern' "
                            f"{pattern!r} is not supported (a positive integer is)")
        swa_pattern = int(pattern)          # 2: even layers local, odd layers global
        rope_base_swa = _number(g, arch, "rope.freq_base_swa", rope_base)
        freq_scale_swa = freq_scale
        final_softcap = _number(g, arch, "final_logit_softcapping", 30.0)
        attn_softcap = _number(g, arch, "attn_logit_softcapping", 50.0)
        if n_layer == 46:                   # llama.cpp: Gemma 2 27B scales by n_embd / n_head
            attn_scale = 1.0 / math.sqrt(n_embd // n_head)
    for key, v in (("final_logit_softcapping", final_softcap), ("attn_logit_softcapping", attn_softcap)):
        if v < 0:
            raise GGUFError(f"{g.path.name}: '{arch}.{key}' must be positive, got {v:g}")
    rope_attn_factor = _number(g, arch, "rope.scaling.attn_factor", 1.0)
    if rope_attn_factor <= 0:
        raise GGUFError(f"{g.path.name}: '{arch}.rope.scaling.attn_factor' must be positive, "
                        f"got {rope_attn_factor:g}")
    return HParams(
        arch=arch,
        n_vocab=n_vocab,
        n_ctx_train=n_ctx_train,
        n_embd=n_embd,
        n_layer=n_layer,
        n_head=n_head,
        n_head_kv=_positive_int(g, arch, "attention.head_count_kv", n_head),
        head_dim=head_dim,
        head_dim_v=_positive_int(g, arch, "attention.value_length", head_dim),
        n_rot=_positive_int(g, arch, "rope.dimension_count", head_dim),
        n_ff=n_ff,
        eps=eps,
        rope_base=rope_base,
        rope_base_swa=rope_base_swa,                # gemma3: fixed 10000 for its local layers
        rope_freq_scale=freq_scale,
        rope_neox=arch != "llama",                  # llama: "normal" adjacent pairs
        sliding_window=sliding_window,
        swa_pattern=swa_pattern,
        attn_scale=attn_scale,
        embd_scale=math.sqrt(n_embd) if gemma else 1.0,
        final_softcap=final_softcap,
        rope_freq_scale_swa=freq_scale_swa,         # gemma3's local layers are never scaled
        rope_attn_factor=rope_attn_factor,
        rope_factors=_rope_factors(g, arch, scaling, n_ctx),
        attn_softcap=attn_softcap,
        n_expert=n_expert,
        n_expert_used=n_expert_used,
        n_ff_exp=n_ff_exp,
    )


class KVCache:
    """The paged K/V pool of one model: `n_blocks` blocks of `block_size` positions, every
    layer. dtype "f16" (default, like llama.cpp: half the memory) or "f32" (exact).
    The engine owns the block tables."""

    def __init__(self, native: Any, model: "Model") -> None:
        self._native = native
        self.model = model
        self.n_blocks: int = native.n_blocks
        self.block_size: int = native.block_size
        self.dtype: str = native.dtype

    @property
    def nbytes(self) -> int:
        return int(self._native.nbytes)

    def copy_block(self, src: int, dst: int) -> None:
        """Copy block src's K/V (all layers) into block dst (copy-on-write)."""
        self._native.copy_block(int(src), int(dst))

    def __repr__(self) -> str:
        return (f"KVCache({self.n_blocks} blocks x {self.block_size} positions, {self.dtype}, "
                f"{self.nbytes / 2**20:.1f} MiB)")


def _i32(name: str, x: Any, ndim: int) -> np.ndarray:
    """x as a C-contiguous int32 array of `ndim` dimensions, or ValueError."""
    a = np.asarray(x)
    if a.size == 0 and a.dtype.kind not in "iu":
        a = a.astype(np.int32)
    if a.dtype.kind not in "iu":
        raise ValueError(f"{name} must hold integers, got dtype {a.dtype}")
    if a.ndim != ndim:
        raise ValueError(f"{name} must be {ndim}-D, got shape {a.shape}")
    if a.size and (a.min() < -2**31 or a.max() >= 2**31):
        raise ValueError(f"{name} has values outside the int32 range")
    return np.ascontiguousarray(a, dtype=np.int32)


class Model:
    """A GGUF model bound to the C++ core (weights stay in the memory map)."""

    arch: str
    hparams: HParams
    gguf: GGUFFile
    n_vocab: int
    n_threads: int
    precise: bool

    def __init__(self, g: GGUFFile, hparams: HParams, native: Any) -> None:
        self.gguf = g
        self.hparams = hparams
        self.arch = hparams.arch
        self.n_vocab = hparams.n_vocab
        self._native = native
        self.n_threads = int(native.n_threads)
        self.precise = bool(native.precise)

    @classmethod
    def load(cls, path: Union[str, os.PathLike, GGUFFile], *, n_threads: int | None = None,
             precise: bool = False, n_ctx: int | None = None,
             hparams_overrides: dict[str, Any] | None = None) -> "Model":
        """Open a GGUF file (or use an open GGUFFile) and bind its weights.

        n_threads defaults to the number of physical cores. precise=True is the
        accuracy/debugging mode: activations stay float32 in every matmul (each weight
        row is dequantized and dotted in float32 instead of rounding the activations to
        8-bit blocks as llama.cpp does) and new KV caches default to float32. It is
        several times slower; see docs/forward.md. n_ctx: the longest sequence the model
        will serve (default: its training context); like llama.cpp's context size it picks
        LongRoPE's short or long RoPE factors. hparams_overrides replaces HParams
        fields (for experiments and tests, e.g. {"sliding_window": 8}).
        Raises GGUFError for a malformed file or an unsupported architecture,
        ValueError for a bad n_threads, precise or override."""
        g = path if isinstance(path, GGUFFile) else open_gguf(Path(path))
        if n_ctx is not None and (isinstance(n_ctx, bool) or not isinstance(n_ctx, int) or n_ctx < 1):
            raise ValueError(f"n_ctx must be a positive integer, got {n_ctx!r}")
        hp = hparams_from_gguf(g, n_ctx)
        if hparams_overrides:
            unknown = set(hparams_overrides) - set(asdict(hp))
            if unknown:
                raise ValueError(f"unknown hparams_overrides {sorted(unknown)}")
            hp = replace(hp, **hparams_overrides)
            _check_core_ranges(hp)
        if n_threads is None:
            n_threads = _core.default_thread_count()
        if isinstance(n_threads, bool) or not isinstance(n_threads, int) or not 1 <= n_threads <= 1024:
            raise ValueError(f"n_threads must be an integer in [1, 1024], got {n_threads!r}")
        if not isinstance(precise, (bool, np.bool_)):
            raise ValueError(f"precise must be True or False, got {precise!r}")
        tensors = {}
        for name, t in g.tensors.items():
            # GGUF order [ne0, ne1, ne2, ...]: the dimensions after ne1 fold into ne2
            # (the experts of a 3-D tensor); the core checks every shape it binds
            ne1 = int(t.shape[1]) if len(t.shape) > 1 else 1
            ne2 = int(np.prod(t.shape[2:])) if len(t.shape) > 2 else 1
            tensors[name] = (int(t.offset), int(t.type), int(t.shape[0]), ne1, ne2)
        try:
            native = _core.Model(g.data, asdict(hp), tensors, n_threads, precise=bool(precise),
                                 repack=_repack_enabled(precise),
                                 release_pages=g.is_mapped)
        except ValueError as e:
            raise GGUFError(f"{g.path.name}: {e}") from None
        return cls(g, hp, native)

    def new_kv_cache(self, n_blocks: int, block_size: int = 16, *,
                     dtype: str | None = None) -> KVCache:
        """A KV pool of n_blocks x block_size positions for every layer.

        dtype "f16" (the default; llama.cpp's default too) or "f32" (exact, twice the
        memory; the default of a precise model).
        Bytes: 2 * n_layer * n_blocks * block_size * n_head_kv * head_dim * (2 or 4)."""
        for name, v in (("n_blocks", n_blocks), ("block_size", block_size)):
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or not 0 < v < 2**31:
                raise ValueError(f"{name} must be a positive integer, got {v!r}")
        if dtype is None:
            dtype = "f32" if self.precise else "f16"
        if dtype not in ("f16", "f32"):
            raise ValueError(f"KV cache dtype must be 'f16' or 'f32', got {dtype!r}")
        return KVCache(_core.KVCache(self._native, int(n_blocks), int(block_size), dtype), self)

    def forward(self, kv: KVCache, tokens: Any, positions: Any, seq_ids: Any,
                block_tables: Any, logit_rows: Any) -> np.ndarray:
        """One step over n tokens of any sequences; float32 logits [len(logit_rows), n_vocab].

        tokens, positions, seq_ids: int [n]; block_tables: int [n_seqs, max_blocks]
        (row seq_ids[i] maps position p to block block_tables[seq, p // block_size]);
        logit_rows: int [r] indices into the n tokens. ValueError for any bad input."""
        if not isinstance(kv, KVCache) or kv.model is not self:
            raise ValueError("kv must be a KVCache made by this model's new_kv_cache()")
        return self._native.forward(
            kv._native, _i32("tokens", tokens, 1), _i32("positions", positions, 1),
            _i32("seq_ids", seq_ids, 1), _i32("block_tables", block_tables, 2),
            _i32("logit_rows", logit_rows, 1))

    def __repr__(self) -> str:
        h = self.hparams
        return (f"Model({self.gguf.path.name!r}, arch={self.arch}, {h.n_layer} layers, "
                f"n_embd={h.n_embd}, n_vocab={h.n_vocab}, n_threads={self.n_threads}"
                f"{', precise' if self.precise else ''})")
