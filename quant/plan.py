"""Which type each tensor gets: llama-quantize's file types and per-tensor rules.

A file type ("Q4_K_M") names a default tensor type (Q4_K) and a mix: some tensors get
more bits by their role and layer, as llama.cpp's llama_tensor_get_type chooses them
(src/llama-quant.cpp): attn_v, ffn_down, attn_output, output and token_embd by layer
position, grouped-query attention and expert count; 1-D tensors and norms stay as they
are; a row length that the chosen type's block does not divide falls back to a type
that fits (Q4_K -> Q5_0, Q6_K -> Q8_0, ..., F16 as the last resort).

The tensors are visited in llama.cpp's order (non-layer tensors by name, then layer by
layer, names sorted within a layer), which is also the order of the output file: the
running counters of the mixes (attn_v seen so far, ...) depend on it.

    plan = make_plan(tensors, hparams, "Q4_K_M")   # tensors: [TensorSpec]
    for step in plan.steps: step.name, step.type_in, step.type_out
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Optional, Sequence

from llamalite.gguf import GGML_TYPES

# --- ggml types ----------------------------------------------------------------
TYPE_ID = {info.name: tid for tid, info in GGML_TYPES.items()}
F32, F16, BF16 = TYPE_ID["F32"], TYPE_ID["F16"], TYPE_ID["BF16"]
Q4_0, Q4_1, Q5_0, Q5_1, Q8_0 = (TYPE_ID[n] for n in ("Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0"))
Q2_K, Q3_K, Q4_K, Q5_K, Q6_K = (TYPE_ID[n] for n in ("Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K"))
IQ4_NL, IQ4_XS = TYPE_ID["IQ4_NL"], TYPE_ID["IQ4_XS"]

# The tensor types the quantizer writes (each has a quantizer in the core or is F32).
WRITABLE_TYPES = (F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K, Q3_K, Q4_K, Q5_K,
                  Q6_K, IQ4_NL, IQ4_XS)
_PLAIN_TYPES = {F32, F16, BF16, TYPE_ID["I8"], TYPE_ID["I16"], TYPE_ID["I32"],
                TYPE_ID["I64"], TYPE_ID["F64"]}


def type_name(tid: int) -> str:
    return GGML_TYPES[tid].name


def is_quantized(tid: int) -> bool:
    """ggml_is_quantized: a block type (not a plain float or integer type)."""
    return tid not in _PLAIN_TYPES


def block_size(tid: int) -> int:
    return GGML_TYPES[tid].block_size


def tensor_bytes(tid: int, shape: Sequence[int]) -> int:
    info = GGML_TYPES[tid]
    n = 1
    for d in shape:
        n *= d
    return n // info.block_size * info.type_size


# --- file types (llama.h's LLAMA_FTYPE values, llama-quantize's names) ------------
@dataclass(frozen=True)
class FileType:
    name: str
    ftype: int          # general.file_type written to the output
    default_type: int   # the tensor type of the mix's ordinary tensors


_FTYPES = [
    FileType("F32", 0, F32), FileType("F16", 1, F16), FileType("BF16", 32, BF16),
    FileType("Q4_0", 2, Q4_0), FileType("Q4_1", 3, Q4_1), FileType("Q5_0", 8, Q5_0),
    FileType("Q5_1", 9, Q5_1), FileType("Q8_0", 7, Q8_0),
    FileType("Q2_K", 10, Q2_K), FileType("Q2_K_S", 21, Q2_K),
    FileType("Q3_K_S", 11, Q3_K), FileType("Q3_K_M", 12, Q3_K), FileType("Q3_K_L", 13, Q3_K),
    FileType("Q4_K_S", 14, Q4_K), FileType("Q4_K_M", 15, Q4_K),
    FileType("Q5_K_S", 16, Q5_K), FileType("Q5_K_M", 17, Q5_K),
    FileType("Q6_K", 18, Q6_K), FileType("IQ4_NL", 25, IQ4_NL), FileType("IQ4_XS", 30, IQ4_XS),
]
FILE_TYPES: dict[str, FileType] = {f.name: f for f in _FTYPES}
# llama-quantize's aliases: a bare k-quant name means its _M mix
ALIASES = {"Q3_K": "Q3_K_M", "Q4_K": "Q4_K_M", "Q5_K": "Q5_K_M"}
FT = {f.name: f.ftype for f in _FTYPES}


class PlanError(ValueError):
    """A request the quantizer cannot carry out (unknown type, impossible shape...)."""


def file_type(name: str) -> FileType:
    """The FileType for a llama-quantize type name (case-insensitive; Q4_K = Q4_K_M)."""
    key = name.strip().upper()
    key = ALIASES.get(key, key)
    if key not in FILE_TYPES:
        names = sorted(FILE_TYPES) + sorted(ALIASES)
        raise PlanError(f"unknown quantization type {name!r}; choose one of {', '.join(names)}")
    return FILE_TYPES[key]


def tensor_type(name: str) -> int:
    """A single tensor type by name (for --output-tensor-type, --token-embedding-type)."""
    key = name.strip().upper()
    tid = TYPE_ID.get(key)
    if tid is None or tid not in WRITABLE_TYPES:
        raise PlanError(f"unknown tensor type {name!r}; choose one of "
                        f"{', '.join(type_name(t) for t in WRITABLE_TYPES)}")
    return tid


# --- the model facts the rules read -------------------------------------------------
@dataclass(frozen=True)
class TensorSpec:
    name: str
    shape: tuple[int, ...]   # GGUF order: shape[0] is the row length
    type: int


@dataclass(frozen=True)
class ModelFacts:
    arch: str
    n_layer: int
    n_head: int
    n_head_kv: int
    n_expert: int = 0

    @property
    def n_gqa(self) -> int:
        return self.n_head // self.n_head_kv if self.n_head_kv else 0

    @property
    def is_70b(self) -> bool:   # llama.cpp's LLM_TYPE_70B (8 query heads per K/V head)
        return self.arch == "llama" and self.n_layer == 80 and self.n_head != self.n_head_kv


def facts_from_metadata(metadata) -> ModelFacts:
    arch = str(metadata.get("general.architecture", ""))

    def first(key: str, default: int = 0) -> int:
        v = metadata.get(f"{arch}.{key}", default)
        if hasattr(v, "__len__"):   # per-layer arrays: llama.cpp reads layer 0
            v = v[0] if len(v) else default
        return int(v)
    n_head = first("attention.head_count")
    return ModelFacts(arch=arch, n_layer=first("block_count"), n_head=n_head,
                      n_head_kv=first("attention.head_count_kv", n_head),
                      n_expert=first("expert_count"))


@dataclass(frozen=True)
class Options:
    output_tensor_type: Optional[int] = None
    token_embedding_type: Optional[int] = None
    leave_output_tensor: bool = False
    pure: bool = False          # the default type for every quantizable tensor, no mix
    has_imatrix: bool = False


# --- tensor categories ------------------------------------------------------------
OUTPUT, TOKEN_EMBD, ATTN_QKV, ATTN_KV_B, ATTN_V, ATTN_K, ATTN_Q, ATTN_OUTPUT = range(8)
FFN_UP, FFN_GATE, FFN_DOWN, OTHER = range(8, 12)


def category(name: str) -> int:
    if name == "output.weight":
        return OUTPUT
    if name in ("token_embd.weight", "per_layer_token_embd.weight"):
        return TOKEN_EMBD
    for part, cat in (("attn_qkv.weight", ATTN_QKV), ("attn_kv_b.weight", ATTN_KV_B),
                      ("attn_v.weight", ATTN_V), ("attn_k.weight", ATTN_K),
                      ("attn_q.weight", ATTN_Q), ("attn_output.weight", ATTN_OUTPUT),
                      ("ffn_up", FFN_UP), ("ffn_gate", FFN_GATE), ("ffn_down", FFN_DOWN)):
        if part in name:
            return cat
    return OTHER


def _is_attn_v_like(cat: int) -> bool:
    return cat in (ATTN_V, ATTN_QKV, ATTN_KV_B)


# Substrings of tensors that are never quantized (small, or not matmul weights).
_KEEP_PARTS = ("_norm.weight", "ffn_gate_inp.weight", "ffn_gate_tid2eid.weight", "altup",
               "laurel", "per_layer_model_proj", "ssm_conv1d", "shortconv.conv.weight",
               "indexer.k_proj.weight", "indexer.q_proj.weight", "attn_rel_b.weight",
               ".position_embd", "sam.pos_embd", "sam.neck.", "sam.net_", ".rel_pos",
               ".patch_embd", ".patch_merger", "a.rvq.codebook", "mm.a.code_embd")
_KEEP_NAMES = {"position_embd.weight", "token_types.weight"}
_RWKV_SMALL = ("first", "w0", "w1", "w2", "v0", "v1", "v2", "a0", "a1", "a2", "g1", "g2",
               "decay_w1", "decay_w2", "lerp_fused")


def n_dims(shape: Sequence[int]) -> int:
    """ggml_n_dims: trailing dimensions of 1 do not count."""
    n = len(shape)
    while n > 1 and shape[n - 1] == 1:
        n -= 1
    return n


def allows_quantization(t: TensorSpec, opts: Options) -> bool:
    if n_dims(t.shape) < 2 or not t.name.endswith("weight"):
        return False
    if t.name == "output.weight" and opts.leave_output_tensor:
        return False
    if t.name in _KEEP_NAMES or any(p in t.name for p in _KEEP_PARTS):
        return False
    return not any(f"time_mix_{s}.weight" in t.name for s in _RWKV_SMALL)


_LAYER = re.compile(r"blk\.\s*([+-]?\d+)")


def layer_of(name: str) -> int:
    """The layer index that llama.cpp's sscanf("blk.%d.") reads, -1 for none."""
    m = _LAYER.match(name)
    return int(m.group(1)) if m else -1


def llama_order(names: Sequence[str]) -> list[str]:
    """llama.cpp's tensor order: by layer (non-layer tensors first), then by name (bytes)."""
    return sorted(names, key=lambda n: (layer_of(n), n.encode()))


# --- the rules --------------------------------------------------------------------------
def _use_more_bits(i_layer: int, n_layers: int) -> bool:
    return (i_layer < n_layers // 8 or i_layer >= 7 * n_layers // 8
            or (i_layer - n_layers // 8) % 3 == 2)


class _Counters:
    def __init__(self, tensors: Sequence[TensorSpec], facts: ModelFacts) -> None:
        self.n_attention_wv = sum(_is_attn_v_like(category(t.name)) for t in tensors)
        self.tied = not any(category(t.name) == OUTPUT for t in tensors)
        self.n_layer = facts.n_layer
        self.i_attention_wv = self.i_ffn_down = self.i_ffn_gate = self.i_ffn_up = 0


def _layer_info(c: _Counters, facts: ModelFacts, counter: int, name: str) -> tuple[int, int]:
    if max(1, facts.n_expert) > 1:   # experts need not be consecutive: the name says
        i_layer = layer_of(name)
        if i_layer < 0 or i_layer >= c.n_layer:
            raise PlanError(f"cannot tell the layer of tensor {name!r} (0..{c.n_layer - 1})")
        return i_layer, c.n_layer
    return counter, c.n_layer


def _mix_type(c: _Counters, facts: ModelFacts, opts: Options, t: TensorSpec, new: int,
              ft: str, cat: int) -> int:
    """llama.cpp's per-category choice for mix `ft` (the types this quantizer writes)."""
    gqa, n_expert = facts.n_gqa, facts.n_expert
    if cat == OUTPUT or (c.tied and cat == TOKEN_EMBD):
        if opts.output_tensor_type is not None:
            return opts.output_tensor_type
        if t.shape[0] % block_size(new) != 0:
            return Q8_0
        return new if new == Q8_0 else Q6_K
    if cat == TOKEN_EMBD:
        if opts.token_embedding_type is not None:
            return opts.token_embedding_type
        return new
    if _is_attn_v_like(cat):
        if ft == "Q2_K":
            new = Q4_K if gqa >= 4 else Q3_K
        elif ft == "Q2_K_S" and gqa >= 4:
            new = Q4_K
        elif ft == "Q3_K_M":
            new = Q5_K if c.i_attention_wv < 2 else Q4_K
        elif ft == "Q3_K_L":
            new = Q5_K
        elif ft in ("IQ4_NL", "IQ4_XS") and gqa >= 4:
            new = Q5_K
        elif ft in ("Q4_K_M", "Q5_K_M") and _use_more_bits(c.i_attention_wv, c.n_attention_wv):
            new = Q6_K
        elif ft == "Q4_K_S" and c.i_attention_wv < 4:
            new = Q5_K
        if facts.is_70b and new in (Q3_K, Q4_K):
            new = Q5_K
        if n_expert == 8:
            new = Q8_0
        c.i_attention_wv += 1
        return new
    if cat == ATTN_K:
        return Q8_0 if n_expert == 8 else new
    if cat == FFN_DOWN:
        i_layer, n_layer = _layer_info(c, facts, c.i_ffn_down, t.name)
        falcon = facts.arch == "falcon"
        if ft == "Q2_K":
            new = Q3_K
        elif ft == "Q2_K_S":
            if i_layer < n_layer // 8:
                new = Q4_K
        elif ft == "Q3_K_M":
            new = (Q5_K if i_layer < n_layer // 16
                   else Q4_K if not falcon or _use_more_bits(i_layer, n_layer) else Q3_K)
        elif ft == "Q3_K_L":
            new = Q4_K if falcon else Q5_K
        elif ft == "Q4_K_M":
            if falcon:
                new = (Q6_K if i_layer < n_layer // 16
                       else Q5_K if _use_more_bits(i_layer, n_layer) else Q4_K)
            elif _use_more_bits(i_layer, n_layer):
                new = Q6_K
        elif i_layer < n_layer // 8 and ft in ("IQ4_NL", "IQ4_XS") and not opts.has_imatrix:
            new = Q5_K
        elif ft == "Q5_K_M" and _use_more_bits(i_layer, n_layer):
            new = Q6_K
        elif ft == "Q4_K_S" and not falcon and i_layer < n_layer // 8:
            new = Q5_K
        elif ft in ("Q4_0", "Q5_0") and opts.has_imatrix and i_layer < n_layer // 8:
            new = Q4_1 if ft == "Q4_0" else Q5_1
        c.i_ffn_down += 1
        return new
    if cat == ATTN_OUTPUT:
        if facts.arch != "falcon":
            if n_expert == 8:
                if ft in ("Q2_K", "Q3_K_S", "Q3_K_M", "IQ4_NL", "Q4_K_S", "Q4_K_M", "IQ4_XS"):
                    new = Q5_K
            else:
                new = {"Q2_K": Q3_K, "Q3_K_M": Q4_K, "Q3_K_L": Q5_K}.get(ft, new)
        elif ft == "Q3_K_L":
            new = Q4_K
        return new
    if cat == ATTN_QKV:
        if ft in ("Q3_K_M", "Q3_K_L"):
            return Q4_K
        return {"Q4_K_M": Q5_K, "Q5_K_M": Q6_K}.get(ft, new)
    if cat == FFN_GATE:
        _layer_info(c, facts, c.i_ffn_gate, t.name)
        c.i_ffn_gate += 1
    elif cat == FFN_UP:
        _layer_info(c, facts, c.i_ffn_up, t.name)
        c.i_ffn_up += 1
    return new


# Where a row length does not fit the block of the chosen type.
_FALLBACK = {IQ4_XS: IQ4_NL, Q2_K: Q4_0, Q3_K: Q4_0, Q4_K: Q5_0, Q5_K: Q5_1, Q6_K: Q8_0}


def _fallback(t: TensorSpec, new: int) -> tuple[int, bool]:
    ncols = t.shape[0]
    if ncols % block_size(new) == 0:
        return new, False
    if new in _FALLBACK:
        new = _FALLBACK[new]
    elif block_size(new) > 32:
        raise PlanError(f"no fallback type is defined for {type_name(new)}")
    if ncols % block_size(new) != 0:
        new = F16
    return new, True


# --- the plan -------------------------------------------------------------------------------
@dataclass(frozen=True)
class Step:
    name: str
    shape: tuple[int, ...]
    type_in: int
    type_out: int
    fallback: bool = False     # the mix's type did not fit the row length

    @property
    def bytes_in(self) -> int:
        return tensor_bytes(self.type_in, self.shape)

    @property
    def bytes_out(self) -> int:
        return tensor_bytes(self.type_out, self.shape)

    @property
    def n_elements(self) -> int:
        n = 1
        for d in self.shape:
            n *= d
        return n


@dataclass
class Plan:
    file_type: FileType
    steps: list[Step] = field(default_factory=list)

    @property
    def bytes_in(self) -> int:
        return sum(s.bytes_in for s in self.steps)

    @property
    def bytes_out(self) -> int:
        return sum(s.bytes_out for s in self.steps)

    @property
    def n_elements(self) -> int:
        return sum(s.n_elements for s in self.steps)

    def types(self) -> dict[str, str]:
        return {s.name: type_name(s.type_out) for s in self.steps}


def _choose(c: _Counters, facts: ModelFacts, opts: Options, t: TensorSpec,
            ft: FileType) -> tuple[int, bool]:
    if not allows_quantization(t, opts):
        return t.type, False
    cat = category(t.name)
    if opts.token_embedding_type is not None and cat == TOKEN_EMBD:
        return opts.token_embedding_type, False
    if opts.output_tensor_type is not None and cat == OUTPUT:
        return opts.output_tensor_type, False
    new = ft.default_type
    if not is_quantized(new):
        return new, False
    if not opts.pure:
        new = _mix_type(c, facts, opts, t, new, ft.name, cat)
    return _fallback(t, new)


def make_plan(tensors: Sequence[TensorSpec], facts: ModelFacts, ftype: FileType | str,
              opts: Options = Options()) -> Plan:
    """The output type of every tensor, in the output file's order."""
    ft = file_type(ftype) if isinstance(ftype, str) else ftype
    by_name = {t.name: t for t in tensors}
    ordered = [by_name[n] for n in llama_order(list(by_name))]
    counters = _Counters(ordered, facts)
    plan = Plan(ft)
    for t in ordered:
        out, fell_back = _choose(counters, facts, opts, t, ft)
        if out not in WRITABLE_TYPES and out != t.type:
            raise PlanError(f"tensor {t.name!r} would need type {type_name(out)}, which "
                            f"llamalite cannot write")
        if t.shape[0] % block_size(out) != 0:
            raise PlanError(f"tensor {t.name!r} has rows of {t.shape[0]} values, which "
                            f"{type_name(out)} blocks of {block_size(out)} cannot hold; "
                            f"choose another type")
        plan.steps.append(Step(t.name, tuple(t.shape), t.type, out, fell_back))
    return plan
