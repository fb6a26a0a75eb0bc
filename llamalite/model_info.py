"""A model's vital statistics from its GGUF header: what `llamalite info` and the API show.

Nothing here reads tensor data; everything comes from the validated metadata and
tensor infos of an open GGUFFile.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from .gguf import GGUFFile, StringArray

# general.file_type (llama_ftype): the quantization a file was made with, by name.
FILE_TYPES: dict[int, str] = {
    0: "F32", 1: "F16", 2: "Q4_0", 3: "Q4_1", 7: "Q8_0", 8: "Q5_0", 9: "Q5_1",
    10: "Q2_K", 11: "Q3_K_S", 12: "Q3_K_M", 13: "Q3_K_L", 14: "Q4_K_S", 15: "Q4_K_M",
    16: "Q5_K_S", 17: "Q5_K_M", 18: "Q6_K", 19: "IQ2_XXS", 20: "IQ2_XS", 21: "Q2_K_S",
    22: "IQ3_XS", 23: "IQ3_XXS", 24: "IQ1_S", 25: "IQ4_NL", 26: "IQ3_S", 27: "IQ3_M",
    28: "IQ2_S", 29: "IQ2_M", 30: "IQ4_XS", 31: "IQ1_M", 32: "BF16", 36: "TQ1_0",
    37: "TQ2_0", 38: "MXFP4_MOE", 39: "NVFP4", 40: "Q1_0",
}

# general.architecture -> the model family and what its graph does (the architectures
# llamalite runs: llamalite.model.SUPPORTED_ARCHS).
ARCH_FAMILIES: dict[str, str] = {
    "llama": "Llama 1-3, SmolLM, TinyLlama, Mistral-style: SwiGLU, RoPE (Llama 3 rope_freqs, "
             "linear scaling); a sliding_window key is ignored, as llama.cpp does; Mixtral-style "
             "experts (expert_count > 0)",
    "qwen2": "Qwen2 / Qwen2.5: SwiGLU, Q/K/V biases, NEOX RoPE",
    "phi3": "Phi-3 / Phi-3.5 / Phi-4-mini: fused QKV and gate-up, NEOX RoPE with LongRoPE "
            "factors (no sliding window, as in llama.cpp)",
    "gemma2": "Gemma 2: GELU, post-norms, attention and final logit soft-capping, "
              "alternating sliding-window layers",
    "gemma3": "Gemma 3: GELU, post-norms, Q/K norms, 5 sliding-window layers per global one",
    "qwen3": "Qwen3 (dense): SwiGLU, per-head Q/K RMS norms, NEOX RoPE",
    "qwen3moe": "Qwen3 MoE: Qwen3's attention, a mixture of SwiGLU experts (softmax top-k "
                "routing, normalised weights)",
}

# tokenizer.ggml.model -> the algorithm it names.
TOKENIZER_KINDS: dict[str, str] = {
    "llama": "SentencePiece", "gpt2": "byte-level BPE", "bert": "WordPiece",
    "t5": "Unigram", "rwkv": "RWKV", "plamo2": "PLaMo-2", "gemma4": "Gemma 4 BPE",
    "no_vocab": "none", "none": "none",
}


@dataclass
class TypeUsage:
    """How much of the model is stored in one ggml type."""
    type: str
    n_tensors: int = 0
    n_params: int = 0
    nbytes: int = 0


@dataclass
class ModelSummary:
    """The summary of one GGUF model (see summarize())."""
    path: str
    file_size: int
    gguf_version: int
    architecture: str
    family: str | None               # what the architecture is (ARCH_FAMILIES); None: not run here
    name: str | None
    file_type: str | None            # general.file_type by name, e.g. "Q4_K_M"
    n_params: int                    # sum of every tensor's element count
    n_tensors: int
    tensor_bytes: int                # bytes of tensor data
    bits_per_weight: float
    hyperparameters: dict[str, Any]  # the <arch>.* keys, without the "<arch>." prefix
    type_mix: list[TypeUsage]        # largest share of bytes first
    tokenizer_model: str | None      # tokenizer.ggml.model ("llama", "gpt2", ...)
    tokenizer_kind: str | None       # what that model name means
    tokenizer_pre: str | None
    vocab_size: int | None
    n_merges: int | None
    special_tokens: dict[str, int] = field(default_factory=dict)  # bos/eos/... ids
    has_chat_template: bool = False
    n_expert: int = 0                # <arch>.expert_count: experts per layer (0: a dense FFN)
    n_expert_used: int = 0           # <arch>.expert_used_count: experts each token runs

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-serialisable data."""
        return _jsonable(asdict(self))


def _jsonable(v: Any) -> Any:
    if isinstance(v, dict):
        return {k: _jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    if isinstance(v, (np.ndarray, StringArray)):
        return v.tolist()
    if isinstance(v, np.generic):
        return v.item()
    return v


def summarize(g: GGUFFile) -> ModelSummary:
    """Parameter count, quant-type mix, hyperparameters and tokenizer facts of an open file."""
    arch = g.architecture
    prefix = f"{arch}."
    hparams = {k[len(prefix):]: v for k, v in g.metadata.items() if arch and k.startswith(prefix)}
    mix: dict[str, TypeUsage] = {}
    for t in g.tensors.values():
        u = mix.setdefault(t.type_name, TypeUsage(t.type_name))
        u.n_tensors += 1
        u.n_params += t.n_elements
        u.nbytes += t.nbytes
    n_params = sum(u.n_params for u in mix.values())
    nbytes = sum(u.nbytes for u in mix.values())
    ft = g.get("general.file_type")
    tokens = g.get("tokenizer.ggml.tokens")
    merges = g.get("tokenizer.ggml.merges")
    tok_model = g.get("tokenizer.ggml.model")
    tok_model = tok_model if isinstance(tok_model, str) else None
    specials = {k[len("tokenizer.ggml."):-len("_token_id")]: int(v)
                for k, v in g.metadata.items()
                if k.startswith("tokenizer.ggml.") and k.endswith("_token_id")
                and isinstance(v, int) and not isinstance(v, bool)}
    template = g.get("tokenizer.chat_template")
    name = g.get("general.name")
    pre = g.get("tokenizer.ggml.pre")

    def count(key: str) -> int:
        v = hparams.get(key)
        return int(v) if isinstance(v, (int, np.integer)) and not isinstance(v, bool) else 0
    return ModelSummary(
        path=str(g.path), file_size=g.file_size, gguf_version=g.version, architecture=arch,
        family=ARCH_FAMILIES.get(arch),
        name=name if isinstance(name, str) else None,
        file_type=(FILE_TYPES.get(ft, f"unknown ({ft})")
                   if isinstance(ft, int) and not isinstance(ft, bool) else None),
        n_params=n_params, n_tensors=len(g.tensors), tensor_bytes=nbytes,
        bits_per_weight=8.0 * nbytes / n_params if n_params else 0.0,
        hyperparameters=hparams,
        type_mix=sorted(mix.values(), key=lambda u: (-u.nbytes, u.type)),
        tokenizer_model=tok_model,
        tokenizer_kind=TOKENIZER_KINDS.get(tok_model, "unknown") if tok_model else None,
        tokenizer_pre=pre if isinstance(pre, str) else None,
        vocab_size=len(tokens) if isinstance(tokens, StringArray) else None,
        n_merges=len(merges) if isinstance(merges, StringArray) else None,
        special_tokens=specials,
        has_chat_template=isinstance(template, str) and bool(template),
        n_expert=count("expert_count"),
        n_expert_used=count("expert_used_count"),
    )


def tensor_table(g: GGUFFile) -> list[dict[str, Any]]:
    """One row per tensor, in file order: name, type, shape (GGUF order), elements, bytes, offset."""
    return [{"name": t.name, "type": t.type_name, "shape": list(t.shape),
             "n_elements": t.n_elements, "nbytes": t.nbytes, "offset": t.offset}
            for t in g.tensors.values()]
