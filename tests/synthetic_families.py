"""Small random-weight GGUF models of every supported architecture family.

Each builder writes, deterministically from a seed, a file llama.cpp loads as it would
a real conversion of that family: the family's metadata keys, a small SentencePiece
vocabulary (<unk> <s> </s>, the 256 byte tokens, a few pieces), a few layers with
grouped-query attention and weights in a mix of quantization types (the 32-value
types through gguf.quants, the K-quants as valid random blocks). Nothing here is
tuned to an implementation: llama.cpp (tests/tools/record_arch_logits.py) and the
numpy reference are the judges.

    FAMILIES["qwen2"](path, seed=0) -> path          # writes the file
    build("qwen2", dir) -> path                     # dir/qwen2-s0.gguf (once per dir)
    SPECS["phi3"].n_ctx                             # the context the peer logits used

Adding a family: a function `(path, seed=0, **edits) -> path` in FAMILIES (passing edits to
_Writer) and a FamilySpec in SPECS. Edits make broken variants for negative tests:
`drop={"blk.0.attn_k.bias"}` leaves tensors out, `extra={"blk.0.attn_k.bias": array}` adds
tensors, `meta={"qwen2.rope.scaling.type": "yarn"}` sets (or replaces) metadata keys.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
from gguf import GGML_QUANT_SIZES, GGMLQuantizationType as T

N_VOCAB = 300
N_EMBD = 256           # a multiple of 256: every tensor can take a K-quant
N_FF = 512
N_EXPERT, N_EXPERT_USED = 4, 2    # mixture-of-experts families: experts per layer, per token
N_FF_EXP = 128                    # qwen3moe's rows per expert

# Byte offsets of the fp16 scale fields in one block of a K-quant (random blocks).
_FP16_FIELDS = {T.Q2_K: [80, 82], T.Q3_K: [108], T.Q4_K: [0, 2], T.Q5_K: [0, 2], T.Q6_K: [208],
                T.IQ4_XS: [0], T.IQ4_NL: [0]}
_GGUF_QUANTIZABLE = {T.F32, T.F16, T.BF16, T.Q4_0, T.Q4_1, T.Q5_0, T.Q5_1, T.Q8_0}


@dataclass(frozen=True)
class FamilySpec:
    """What a test needs to know about a family's synthetic model."""
    arch: str              # general.architecture of the file
    n_ctx: int             # context size the peer logits were recorded with
    note: str              # what the family exercises


# ----------------------------------------------------------------------------- pieces
def _matrix(qtype: T, rows: int, cols: int, gain: float, rng: np.random.Generator) -> np.ndarray:
    """Weights [rows, cols] of qtype whose values have rms about gain / sqrt(cols):
    float32/float16 arrays as they are, quantized types as uint8 [rows, row_bytes]."""
    if qtype == T.F32:
        return (rng.standard_normal((rows, cols)) * gain / np.sqrt(cols)).astype(np.float32)
    if qtype == T.F16:
        return (rng.standard_normal((rows, cols)) * gain / np.sqrt(cols)).astype(np.float16)
    if qtype in _GGUF_QUANTIZABLE:
        from gguf.quants import quantize
        w = (rng.standard_normal((rows, cols)) * gain / np.sqrt(cols)).astype(np.float32)
        return np.ascontiguousarray(quantize(w, qtype)).view(np.uint8).reshape(rows, -1)
    from gguf.quants import dequantize
    block, size = GGML_QUANT_SIZES[qtype]
    nb = rows * cols // block
    raw = rng.integers(0, 256, size=(nb, size), dtype=np.uint8)
    for off in _FP16_FIELDS[qtype]:
        s = rng.uniform(0.002, 0.05, size=nb) * rng.choice([-1.0, 1.0], size=nb)
        raw[:, off:off + 2] = s.astype(np.float16).view(np.uint8).reshape(nb, 2)
    rms = float(np.sqrt((dequantize(raw.reshape(rows, -1), qtype).astype(np.float64) ** 2).mean()))
    c = gain / np.sqrt(cols) / rms          # every value is linear in the fp16 scales
    for off in _FP16_FIELDS[qtype]:
        f = raw[:, off:off + 2].copy().view(np.float16).astype(np.float32) * c
        raw[:, off:off + 2] = f.astype(np.float16).view(np.uint8).reshape(nb, 2)
    return raw.reshape(rows, -1)


class _Writer:
    """gguf.GGUFWriter plus the random tensors of one model."""

    def __init__(self, path: Path, arch: str, seed: int, *, drop=(), meta=None, extra=None) -> None:
        import gguf
        self.gguf = gguf
        self.rng = np.random.default_rng(seed)
        self.w = gguf.GGUFWriter(str(path), arch)
        self.path = path
        self.drop = set(drop)
        self.meta = dict(meta or {})
        self.extra = dict(extra or {})

    def mat(self, name: str, qtype: T, rows: int, cols: int, gain: float = 1.0) -> None:
        a = _matrix(qtype, rows, cols, gain, self.rng)    # drawn even if dropped: same rest
        if name in self.drop:
            return
        if a.dtype == np.uint8:
            self.w.add_tensor(name, a, raw_dtype=qtype)
        else:
            self.w.add_tensor(name, a)

    def experts(self, name: str, qtype: T, rows: int, cols: int, gain: float = 1.0) -> None:
        """A 3-D expert tensor: N_EXPERT matrices [rows, cols] (GGUF shape [cols, rows, X])."""
        a = np.stack([_matrix(qtype, rows, cols, gain, self.rng) for _ in range(N_EXPERT)])
        if name not in self.drop:
            self.w.add_tensor(name, a, raw_dtype=qtype if a.dtype == np.uint8 else None)

    def vec(self, name: str, n: int, mean: float = 1.0, spread: float = 0.1) -> None:
        self.add(name, (mean + spread * self.rng.standard_normal(n)).astype(np.float32))

    def add(self, name: str, a: np.ndarray) -> None:
        if name not in self.drop:
            self.w.add_tensor(name, a)

    def header(self, *, n_layer: int, n_head: int, n_head_kv: int, head_dim: int | None,
               ctx: int = 4096, eps: float = 1e-5, rope_base: float = 10000.0) -> None:
        w = self.w
        w.add_name(f"synthetic-{w.arch}")
        w.add_block_count(n_layer)
        w.add_context_length(ctx)
        w.add_embedding_length(N_EMBD)
        w.add_feed_forward_length(N_FF)
        w.add_head_count(n_head)
        w.add_head_count_kv(n_head_kv)
        if head_dim is not None:
            w.add_key_length(head_dim)
            w.add_value_length(head_dim)
        w.add_layer_norm_rms_eps(eps)
        w.add_rope_freq_base(rope_base)
        w.add_file_type(7)                       # nominal (MOSTLY_Q8_0); the mix is per tensor
        self.tokenizer()

    def tokenizer(self) -> None:
        """A SentencePiece vocabulary of N_VOCAB tokens: specials, bytes, pieces, and a last
        <|endoftext|> control token (llama.cpp looks it up in files named like Phi-3)."""
        pieces = ["<unk>", "<s>", "</s>"] + [f"<0x{b:02X}>" for b in range(256)]
        words = ["\u2581" + "".join(chr(ord("a") + (i * 7 + j) % 26) for j in range(1 + i % 4))
                 for i in range(N_VOCAB - len(pieces) - 1)]
        tokens = pieces + words + ["<|endoftext|>"]
        types = [2, 3, 3] + [6] * 256 + [1] * len(words) + [3]   # unknown, control, byte, normal
        scores = [0.0, 0.0, 0.0] + [0.0] * 256 + [-float(i) for i in range(len(words))] + [0.0]
        w = self.w
        w.add_tokenizer_model("llama")
        w.add_tokenizer_pre("default")
        w.add_token_list(tokens)
        w.add_token_scores(scores)
        w.add_token_types(types)
        w.add_bos_token_id(1)
        w.add_eos_token_id(2)
        w.add_unk_token_id(0)
        w.add_add_bos_token(True)

    def finish(self) -> Path:
        w = self.w
        V = self.gguf.GGUFValueType
        for key, v in self.meta.items():
            vtype = (V.STRING if isinstance(v, str) else V.BOOL if isinstance(v, bool)
                     else V.UINT32 if isinstance(v, int) else V.FLOAT32)
            w.add_key_value(key, v, vtype)
        for name, a in self.extra.items():
            w.add_tensor(name, a)
        w.write_header_to_file()
        w.write_kv_data_to_file()
        w.write_tensors_to_file()
        w.close()
        return self.path


def _dense_layers(b: _Writer, n_layer: int, n_head: int, n_head_kv: int, hd: int,
                  types: dict[str, T], *, bias: bool = False, post_norms: bool = False) -> None:
    """attn_norm, attn_q/k/v/output, ffn_norm, ffn_gate/up/down (+ q/k/v biases,
    + post-attention / post-FFN norms) of every layer."""
    for il in range(n_layer):
        p = f"blk.{il}."
        b.vec(p + "attn_norm.weight", N_EMBD)
        b.mat(p + "attn_q.weight", types["attn_q"], n_head * hd, N_EMBD, 3.0)
        b.mat(p + "attn_k.weight", types["attn_k"], n_head_kv * hd, N_EMBD, 3.0)
        b.mat(p + "attn_v.weight", types["attn_v"], n_head_kv * hd, N_EMBD)
        if bias:
            b.vec(p + "attn_q.bias", n_head * hd, 0.0, 0.5)
            b.vec(p + "attn_k.bias", n_head_kv * hd, 0.0, 0.5)
            b.vec(p + "attn_v.bias", n_head_kv * hd, 0.0, 0.5)
        b.mat(p + "attn_output.weight", types["attn_output"], N_EMBD, n_head * hd)
        if post_norms:
            b.vec(p + "post_attention_norm.weight", N_EMBD)
        b.vec(p + "ffn_norm.weight", N_EMBD)
        b.mat(p + "ffn_gate.weight", types["ffn_gate"], N_FF, N_EMBD)
        b.mat(p + "ffn_up.weight", types["ffn_up"], N_FF, N_EMBD)
        b.mat(p + "ffn_down.weight", types["ffn_down"], N_EMBD, N_FF)
        if post_norms:
            b.vec(p + "post_ffw_norm.weight", N_EMBD)


# ----------------------------------------------------------------------------- families
def build_llama3(path: Path, seed: int = 0, **edits) -> Path:
    """Llama 3: rope_freqs.weight frequency divisors, GQA 8:2, rope base 500000, tied output."""
    b = _Writer(path, "llama", seed, **edits)
    n_layer, n_head, n_kv, hd = 2, 8, 2, 32
    b.header(n_layer=n_layer, n_head=n_head, n_head_kv=n_kv, head_dim=None, rope_base=500000.0)
    b.w.add_rope_dimension_count(hd)
    b.w.add_vocab_size(N_VOCAB)
    b.mat("token_embd.weight", T.Q6_K, N_VOCAB, N_EMBD, 0.5 * np.sqrt(N_EMBD))
    b.vec("output_norm.weight", N_EMBD)
    # Llama 3's factors: 1 for high frequencies, up to `factor` for low ones
    b.add("rope_freqs.weight",
                   np.concatenate([np.ones(hd // 4), np.linspace(1.0, 8.0, hd // 4)]).astype(np.float32))
    _dense_layers(b, n_layer, n_head, n_kv, hd, dict(
        attn_q=T.Q4_K, attn_k=T.Q8_0, attn_v=T.Q4_0, attn_output=T.F16,
        ffn_gate=T.Q4_K, ffn_up=T.Q6_K, ffn_down=T.Q8_0))
    return b.finish()


def build_mistral(path: Path, seed: int = 0, **edits) -> Path:
    """A Mistral-style `llama` file: attention.sliding_window set (llama.cpp ignores it for
    arch llama), linear RoPE scaling 2x, separate output matrix, MHA-free GQA 4:1."""
    b = _Writer(path, "llama", seed, **edits)
    n_layer, n_head, n_kv, hd = 2, 4, 1, 64
    b.header(n_layer=n_layer, n_head=n_head, n_head_kv=n_kv, head_dim=None)
    b.w.add_sliding_window(4)
    b.w.add_rope_scaling_type(b.gguf.RopeScalingType.LINEAR)
    b.w.add_rope_scaling_factor(2.0)
    b.mat("token_embd.weight", T.Q4_0, N_VOCAB, N_EMBD, 0.5 * np.sqrt(N_EMBD))
    b.vec("output_norm.weight", N_EMBD)
    b.mat("output.weight", T.Q8_0, N_VOCAB, N_EMBD, 4.0)
    _dense_layers(b, n_layer, n_head, n_kv, hd, dict(
        attn_q=T.Q8_0, attn_k=T.Q4_K, attn_v=T.Q6_K, attn_output=T.Q4_0,
        ffn_gate=T.F16, ffn_up=T.Q4_0, ffn_down=T.Q4_K))
    return b.finish()


def build_qwen2(path: Path, seed: int = 0, **edits) -> Path:
    """Qwen2: Q/K/V biases, NEOX RoPE (base 1e6), eps 1e-6, separate output, GQA 4:2."""
    b = _Writer(path, "qwen2", seed, **edits)
    n_layer, n_head, n_kv, hd = 2, 4, 2, 64
    b.header(n_layer=n_layer, n_head=n_head, n_head_kv=n_kv, head_dim=None, eps=1e-6,
             rope_base=1000000.0)
    b.mat("token_embd.weight", T.Q8_0, N_VOCAB, N_EMBD, 0.5 * np.sqrt(N_EMBD))
    b.vec("output_norm.weight", N_EMBD)
    b.mat("output.weight", T.Q6_K, N_VOCAB, N_EMBD, 4.0)
    _dense_layers(b, n_layer, n_head, n_kv, hd, dict(
        attn_q=T.Q4_0, attn_k=T.Q6_K, attn_v=T.Q8_0, attn_output=T.Q4_K,
        ffn_gate=T.Q8_0, ffn_up=T.F16, ffn_down=T.Q6_K), bias=True)
    return b.finish()


PHI3_ORIG_CTX = 256    # llama.cpp rounds its context up to a multiple of 256


def build_phi3(path: Path, seed: int = 0, **edits) -> Path:
    """Phi-3: fused attn_qkv, fused ffn_up (gate rows then up rows), NEOX RoPE, LongRoPE
    (rope_factors_short / _long chosen by context vs original_context_length, with the
    attention factor scaling cos and sin), sliding_window set (llama.cpp disables it)."""
    b = _Writer(path, "phi3", seed, **edits)
    n_layer, n_head, n_kv, hd = 2, 4, 2, 64
    b.header(n_layer=n_layer, n_head=n_head, n_head_kv=n_kv, head_dim=None, ctx=4 * PHI3_ORIG_CTX)
    b.w.add_rope_dimension_count(hd)
    b.w.add_sliding_window(8)
    b.w.add_rope_scaling_type(b.gguf.RopeScalingType.LONGROPE)
    b.w.add_rope_scaling_orig_ctx_len(PHI3_ORIG_CTX)
    b.w.add_rope_scaling_attn_factors(1.19)
    b.mat("token_embd.weight", T.Q4_K, N_VOCAB, N_EMBD, 0.5 * np.sqrt(N_EMBD))
    b.vec("output_norm.weight", N_EMBD)
    b.mat("output.weight", T.Q8_0, N_VOCAB, N_EMBD, 4.0)
    b.add("rope_factors_short.weight", np.linspace(1.0, 1.5, hd // 2).astype(np.float32))
    b.add("rope_factors_long.weight", np.linspace(1.0, 12.0, hd // 2).astype(np.float32))
    for il in range(n_layer):
        p = f"blk.{il}."
        b.vec(p + "attn_norm.weight", N_EMBD)
        b.mat(p + "attn_qkv.weight", T.Q8_0 if il % 2 else T.Q4_0, (n_head + 2 * n_kv) * hd, N_EMBD, 3.0)
        b.mat(p + "attn_output.weight", T.Q6_K, N_EMBD, n_head * hd)
        b.vec(p + "ffn_norm.weight", N_EMBD)
        b.mat(p + "ffn_up.weight", T.Q4_K if il % 2 else T.F16, 2 * N_FF, N_EMBD)
        b.mat(p + "ffn_down.weight", T.Q8_0, N_EMBD, N_FF)
    return b.finish()


GEMMA2_WINDOW = 4


def build_gemma2(path: Path, seed: int = 0, **edits) -> Path:
    """Gemma 2: embeddings scaled by sqrt(n_embd), attention logit soft-capping (50) and
    final logit soft-capping (30), sliding-window layers alternating with global ones
    (window 4, shorter than the test text), post-attention and post-FFN norms, GELU,
    key_length 64 != n_embd / n_head (the attention scale uses key_length), tied output."""
    b = _Writer(path, "gemma2", seed, **edits)
    n_layer, n_head, n_kv, hd = 3, 8, 4, 64
    b.header(n_layer=n_layer, n_head=n_head, n_head_kv=n_kv, head_dim=hd, ctx=8192, eps=1e-6)
    b.w.add_sliding_window(GEMMA2_WINDOW)
    b.w.add_attn_logit_softcapping(50.0)
    b.w.add_final_logit_softcapping(30.0)
    b.mat("token_embd.weight", T.Q8_0, N_VOCAB, N_EMBD, 1.0)
    b.vec("output_norm.weight", N_EMBD)
    _dense_layers(b, n_layer, n_head, n_kv, hd, dict(
        attn_q=T.Q6_K, attn_k=T.Q4_0, attn_v=T.Q4_K, attn_output=T.Q8_0,
        ffn_gate=T.Q4_0, ffn_up=T.Q8_0, ffn_down=T.F16), post_norms=True)
    return b.finish()


def _qk_norms(b: _Writer, n_layer: int, hd: int) -> None:
    for il in range(n_layer):
        b.vec(f"blk.{il}.attn_q_norm.weight", hd)
        b.vec(f"blk.{il}.attn_k_norm.weight", hd)


def _attention_layers(b: _Writer, n_layer: int, n_head: int, n_head_kv: int, hd: int,
                      types: list[dict[str, T]]) -> None:
    """attn_norm, attn_q/k/v/output, attn_q_norm/attn_k_norm of every layer (layer il
    takes types[il % len(types)])."""
    for il in range(n_layer):
        p, t = f"blk.{il}.", types[il % len(types)]
        b.vec(p + "attn_norm.weight", N_EMBD)
        b.mat(p + "attn_q.weight", t["attn_q"], n_head * hd, N_EMBD, 3.0)
        b.mat(p + "attn_k.weight", t["attn_k"], n_head_kv * hd, N_EMBD, 3.0)
        b.mat(p + "attn_v.weight", t["attn_v"], n_head_kv * hd, N_EMBD)
        b.mat(p + "attn_output.weight", t["attn_output"], N_EMBD, n_head * hd)


def _moe_layers(b: _Writer, n_layer: int, n_ff_exp: int, types: list[dict[str, T]]) -> None:
    """ffn_norm, the F32 router ffn_gate_inp (llama.cpp's quantizer keeps it F32) and the
    3-D experts ffn_{gate,up,down}_exps of every layer."""
    for il in range(n_layer):
        p, t = f"blk.{il}.", types[il % len(types)]
        b.vec(p + "ffn_norm.weight", N_EMBD)
        b.mat(p + "ffn_gate_inp.weight", T.F32, N_EXPERT, N_EMBD, 4.0)
        b.experts(p + "ffn_gate_exps.weight", t["ffn_gate"], n_ff_exp, N_EMBD)
        b.experts(p + "ffn_up_exps.weight", t["ffn_up"], n_ff_exp, N_EMBD)
        b.experts(p + "ffn_down_exps.weight", t["ffn_down"], N_EMBD, n_ff_exp)


# Per-layer types of the MoE families: every expert type with an x8 layout (Q4_0, Q8_0,
# Q4_K, Q6_K) and one without (F16).
_MOE_TYPES = [
    dict(attn_q=T.Q4_K, attn_k=T.Q8_0, attn_v=T.Q6_K, attn_output=T.Q4_0,
         ffn_gate=T.Q4_K, ffn_up=T.Q6_K, ffn_down=T.Q8_0),
    dict(attn_q=T.Q8_0, attn_k=T.Q6_K, attn_v=T.Q4_0, attn_output=T.Q4_K,
         ffn_gate=T.Q4_0, ffn_up=T.Q8_0, ffn_down=T.F16),
]


def build_qwen3(path: Path, seed: int = 0, **edits) -> Path:
    """Qwen3 (dense): per-head Q/K RMS norms before NEOX RoPE (base 1e6), eps 1e-6, GQA 4:2,
    tied Q8_0 embeddings."""
    b = _Writer(path, "qwen3", seed, **edits)
    n_layer, n_head, n_kv, hd = 2, 4, 2, 64
    b.header(n_layer=n_layer, n_head=n_head, n_head_kv=n_kv, head_dim=hd, eps=1e-6,
             rope_base=1000000.0)
    # tied: the embedding gain sets the logit range too (~25 here)
    b.mat("token_embd.weight", T.Q8_0, N_VOCAB, N_EMBD, 2.0)
    b.vec("output_norm.weight", N_EMBD)
    _dense_layers(b, n_layer, n_head, n_kv, hd, dict(
        attn_q=T.Q4_0, attn_k=T.Q6_K, attn_v=T.Q8_0, attn_output=T.Q4_K,
        ffn_gate=T.Q4_K, ffn_up=T.F16, ffn_down=T.Q6_K))
    _qk_norms(b, n_layer, hd)
    return b.finish()


def build_qwen3moe(path: Path, seed: int = 0, **edits) -> Path:
    """Qwen3 MoE: Qwen3's attention; 4 experts per layer, top 2, expert_feed_forward_length
    128; separate Q6_K output."""
    b = _Writer(path, "qwen3moe", seed, **edits)
    n_layer, n_head, n_kv, hd = 2, 4, 2, 64
    b.header(n_layer=n_layer, n_head=n_head, n_head_kv=n_kv, head_dim=hd, eps=1e-6,
             rope_base=1000000.0)
    b.w.add_expert_count(N_EXPERT)
    b.w.add_expert_used_count(N_EXPERT_USED)
    b.w.add_expert_feed_forward_length(N_FF_EXP)
    b.mat("token_embd.weight", T.Q4_K, N_VOCAB, N_EMBD, 0.5 * np.sqrt(N_EMBD))
    b.vec("output_norm.weight", N_EMBD)
    b.mat("output.weight", T.Q6_K, N_VOCAB, N_EMBD, 4.0)
    _attention_layers(b, n_layer, n_head, n_kv, hd, _MOE_TYPES)
    _qk_norms(b, n_layer, hd)
    _moe_layers(b, n_layer, N_FF_EXP, _MOE_TYPES)
    return b.finish()


def build_mixtral(path: Path, seed: int = 0, **edits) -> Path:
    """A Mixtral-style `llama` file: 4 experts per layer of feed_forward_length rows, top 2,
    "normal" RoPE, separate Q8_0 output."""
    b = _Writer(path, "llama", seed, **edits)
    n_layer, n_head, n_kv, hd = 2, 4, 2, 64
    b.header(n_layer=n_layer, n_head=n_head, n_head_kv=n_kv, head_dim=None)
    b.w.add_expert_count(N_EXPERT)
    b.w.add_expert_used_count(N_EXPERT_USED)
    b.mat("token_embd.weight", T.Q8_0, N_VOCAB, N_EMBD, 0.5 * np.sqrt(N_EMBD))
    b.vec("output_norm.weight", N_EMBD)
    b.mat("output.weight", T.Q8_0, N_VOCAB, N_EMBD, 4.0)
    types = _MOE_TYPES[::-1]
    _attention_layers(b, n_layer, n_head, n_kv, hd, types)
    _moe_layers(b, n_layer, N_FF, types)
    return b.finish()


FAMILIES: dict[str, Callable[..., Path]] = {
    "llama3": build_llama3,
    "mistral": build_mistral,
    "qwen2": build_qwen2,
    "phi3": build_phi3,
    "phi3_short": build_phi3,     # the same file, run with a context that picks the short factors
    "gemma2": build_gemma2,
    "qwen3": build_qwen3,
    "qwen3moe": build_qwen3moe,
    "mixtral": build_mixtral,
}

SPECS: dict[str, FamilySpec] = {
    "llama3": FamilySpec("llama", 64, "rope_freqs factors, GQA, tied output"),
    "mistral": FamilySpec("llama", 64, "sliding_window metadata ignored, linear RoPE x2"),
    "qwen2": FamilySpec("qwen2", 64, "Q/K/V biases, NEOX RoPE, separate output"),
    "phi3": FamilySpec("phi3", 2 * PHI3_ORIG_CTX, "fused QKV and gate-up, LongRoPE long factors"),
    "phi3_short": FamilySpec("phi3", PHI3_ORIG_CTX, "LongRoPE short factors (n_ctx <= original)"),
    "gemma2": FamilySpec("gemma2", 64, "soft-capping, alternating sliding window"),
    "qwen3": FamilySpec("qwen3", 64, "per-head Q/K norms, NEOX RoPE, tied output"),
    "qwen3moe": FamilySpec("qwen3moe", 64, "mixture of experts (4, top 2), Q/K norms"),
    "mixtral": FamilySpec("llama", 64, "llama with a mixture of experts (4, top 2)"),
}

# The token sequence every recording and test uses: prefill PREFILL_TOKENS, then one
# decode step per token of DECODE_TOKENS.
PREFILL_TOKENS = [1, 260, 17, 275, 3, 298, 120, 266, 41, 271]
DECODE_TOKENS = [262, 5, 288, 200]


def build(name: str, directory: Path, seed: int = 0) -> Path:
    """The family's model in `directory` (built once; rebuilt if missing)."""
    path = Path(directory) / f"{name}-s{seed}.gguf"
    if not path.exists():
        tmp = path.with_suffix(".tmp")
        FAMILIES[name](tmp, seed)
        tmp.replace(path)
    return path


def file_sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()
