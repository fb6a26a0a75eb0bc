"""Random-weight GGUF files of the qwen3, qwen3moe and Mixtral-style llama families.

Each builder writes a small model with realistic metadata (a tiny byte-level BPE
vocabulary, so llama.cpp loads the file too) and weights in several quantized types,
varied by layer. They are deterministic (fixed seeds): tests/tools/record_moe_logits.py
stores llama.cpp's logits for exactly these files in tests/data/moe_logits.npz.

    FAMILIES[name](path) -> path       name in "qwen3", "qwen3moe", "llama-moe"
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
from gguf import GGMLQuantizationType as T

VOCAB = 264              # 256 byte tokens, 5 merges, 3 special tokens (x8-friendly)
N_EMBD = 256             # a multiple of 256: rows of every K-quant
N_HEAD, N_HEAD_KV, HEAD_DIM = 4, 2, 64
N_EXPERT, N_EXPERT_USED, N_FF_EXP = 4, 2, 128


def _byte_tokens() -> list[str]:
    """GPT-2's printable stand-ins for the 256 bytes, in byte order."""
    keep = list(range(33, 127)) + list(range(161, 173)) + list(range(174, 256))
    mapping, extra = {}, 0
    for b in range(256):
        if b in keep:
            mapping[b] = chr(b)
        else:
            mapping[b] = chr(256 + extra)
            extra += 1
    return [mapping[b] for b in range(256)]


def _add_vocab(w) -> None:
    """A Qwen-style byte-level BPE vocabulary of VOCAB tokens."""
    merges = ["Ġ t", "h e", "Ġ a", "i n", "Ġt he"]
    tokens = _byte_tokens() + [m.replace(" ", "") for m in merges]
    tokens += ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    assert len(tokens) == VOCAB
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("qwen2")
    w.add_token_list(tokens)
    w.add_token_types([1] * (VOCAB - 3) + [3] * 3)
    w.add_token_merges(merges)
    w.add_eos_token_id(VOCAB - 1)
    w.add_bos_token_id(VOCAB - 3)
    w.add_add_bos_token(False)


def _matrix(qtype: T, rows: int, cols: int, gain: float, rng: np.random.Generator) -> np.ndarray:
    """Weights [rows, cols] of rms about gain / sqrt(cols): float32 / float16 values, or
    uint8 blocks of a quantized type."""
    if qtype in (T.F32, T.F16):
        v = rng.standard_normal((rows, cols)) * gain / np.sqrt(cols)
        return v.astype(np.float32 if qtype == T.F32 else np.float16)
    from test_forward_precise import quantized_matrix
    return quantized_matrix(qtype, rows, cols, gain, rng)


class _Writer:
    """gguf.GGUFWriter plus helpers that draw the weights from one generator."""

    def __init__(self, path: Path, arch: str, seed: int) -> None:
        import gguf
        self.w = gguf.GGUFWriter(str(path), arch)
        self.rng = np.random.default_rng(seed)
        self.path = path

    def mat(self, name: str, qtype: T, rows: int, cols: int, gain: float = 1.0) -> None:
        a = _matrix(qtype, rows, cols, gain, self.rng)
        self.w.add_tensor(name, a, raw_dtype=None if a.dtype != np.uint8 else qtype)

    def experts(self, name: str, qtype: T, rows: int, cols: int, gain: float = 1.0) -> None:
        """A 3-D expert tensor: N_EXPERT matrices [rows, cols] (GGUF shape [cols, rows, X])."""
        mats = [_matrix(qtype, rows, cols, gain, self.rng) for _ in range(N_EXPERT)]
        a = np.stack(mats)                                  # [X, rows, cols or row bytes]
        self.w.add_tensor(name, a, raw_dtype=qtype if a.dtype == np.uint8 else None)

    def norm(self, name: str, n: int) -> None:
        self.w.add_tensor(name, (1.0 + 0.1 * self.rng.standard_normal(n)).astype(np.float32))

    def finish(self) -> Path:
        self.w.write_header_to_file()
        self.w.write_kv_data_to_file()
        self.w.write_tensors_to_file()
        self.w.close()
        return self.path


def _header(x: _Writer, n_layer: int, n_ff: int, rope_base: float) -> None:
    w = x.w
    w.add_name("synthetic")
    w.add_block_count(n_layer)
    w.add_context_length(512)
    w.add_embedding_length(N_EMBD)
    w.add_feed_forward_length(n_ff)
    w.add_head_count(N_HEAD)
    w.add_head_count_kv(N_HEAD_KV)
    w.add_key_length(HEAD_DIM)
    w.add_value_length(HEAD_DIM)
    w.add_rope_dimension_count(HEAD_DIM)
    w.add_layer_norm_rms_eps(1e-6)
    w.add_rope_freq_base(rope_base)
    _add_vocab(w)


def _attention(x: _Writer, p: str, types: dict, qk_norm: bool) -> None:
    x.norm(p + "attn_norm.weight", N_EMBD)
    x.mat(p + "attn_q.weight", types["q"], N_HEAD * HEAD_DIM, N_EMBD, 3.0)
    x.mat(p + "attn_k.weight", types["k"], N_HEAD_KV * HEAD_DIM, N_EMBD, 3.0)
    x.mat(p + "attn_v.weight", types["v"], N_HEAD_KV * HEAD_DIM, N_EMBD)
    x.mat(p + "attn_output.weight", types["o"], N_EMBD, N_HEAD * HEAD_DIM)
    if qk_norm:
        x.norm(p + "attn_q_norm.weight", HEAD_DIM)
        x.norm(p + "attn_k_norm.weight", HEAD_DIM)


def _moe(x: _Writer, p: str, types: dict) -> None:
    x.norm(p + "ffn_norm.weight", N_EMBD)
    x.mat(p + "ffn_gate_inp.weight", T.F32, N_EXPERT, N_EMBD, 4.0)   # llama.cpp keeps it F32
    x.experts(p + "ffn_gate_exps.weight", types["gate"], N_FF_EXP, N_EMBD)
    x.experts(p + "ffn_up_exps.weight", types["up"], N_FF_EXP, N_EMBD)
    x.experts(p + "ffn_down_exps.weight", types["down"], N_EMBD, N_FF_EXP)


# Per-layer weight types (layer il uses LAYER_TYPES[il % 2]): every expert tensor type
# with an x8 layout (Q4_0, Q8_0, Q4_K, Q6_K) and one without (F16).
LAYER_TYPES = [
    dict(q=T.Q4_K, k=T.Q8_0, v=T.Q6_K, o=T.Q4_0, gate=T.Q4_K, up=T.Q6_K, down=T.Q8_0),
    dict(q=T.Q8_0, k=T.Q6_K, v=T.Q4_0, o=T.Q4_K, gate=T.Q4_0, up=T.Q8_0, down=T.F16),
]


def write_qwen3(path: Path, seed: int = 11) -> Path:
    """Dense qwen3: 2 layers, n_ff 512, tied Q8_0 embeddings."""
    x = _Writer(path, "qwen3", seed)
    _header(x, 2, 512, 1e6)
    x.mat("token_embd.weight", T.Q8_0, VOCAB, N_EMBD, 0.5 * np.sqrt(N_EMBD))
    x.norm("output_norm.weight", N_EMBD)
    for il in range(2):
        p, types = f"blk.{il}.", LAYER_TYPES[il % 2]
        _attention(x, p, types, True)
        x.norm(p + "ffn_norm.weight", N_EMBD)
        x.mat(p + "ffn_gate.weight", types["gate"], 512, N_EMBD)
        x.mat(p + "ffn_up.weight", types["up"], 512, N_EMBD)
        x.mat(p + "ffn_down.weight", T.Q6_K, N_EMBD, 512)
    return x.finish()


def write_qwen3moe(path: Path, seed: int = 12) -> Path:
    """qwen3moe: 2 layers of 4 experts (top 2, n_ff_exp 128), separate Q6_K output."""
    x = _Writer(path, "qwen3moe", seed)
    _header(x, 2, 384, 1e6)
    x.w.add_expert_count(N_EXPERT)
    x.w.add_expert_used_count(N_EXPERT_USED)
    x.w.add_expert_feed_forward_length(N_FF_EXP)
    x.mat("token_embd.weight", T.Q4_K, VOCAB, N_EMBD, 0.5 * np.sqrt(N_EMBD))
    x.norm("output_norm.weight", N_EMBD)
    x.mat("output.weight", T.Q6_K, VOCAB, N_EMBD, 4.0)
    for il in range(2):
        p, types = f"blk.{il}.", LAYER_TYPES[il % 2]
        _attention(x, p, types, True)
        _moe(x, p, types)
    return x.finish()


def write_llama_moe(path: Path, seed: int = 13) -> Path:
    """Mixtral-style llama: 2 layers of 4 experts (top 2; experts of feed_forward_length rows)."""
    x = _Writer(path, "llama", seed)
    _header(x, 2, N_FF_EXP, 1e4)
    x.w.add_expert_count(N_EXPERT)
    x.w.add_expert_used_count(N_EXPERT_USED)
    x.mat("token_embd.weight", T.Q8_0, VOCAB, N_EMBD, 0.5 * np.sqrt(N_EMBD))
    x.norm("output_norm.weight", N_EMBD)
    x.mat("output.weight", T.Q8_0, VOCAB, N_EMBD, 4.0)
    for il in range(2):
        p, types = f"blk.{il}.", LAYER_TYPES[(il + 1) % 2]
        _attention(x, p, types, False)
        _moe(x, p, types)
    return x.finish()


FAMILIES: dict[str, Callable[[Path], Path]] = {
    "qwen3": write_qwen3,
    "qwen3moe": write_qwen3moe,
    "llama-moe": write_llama_moe,
}
