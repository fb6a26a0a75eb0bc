"""A readable numpy forward pass of the `llama` and `gemma3` architectures.

llama2.c in spirit: one small function per concept, shapes in comments, float32 weights
dequantized by gguf.quants and float64 for the numerically touchy parts (norms, softmax).
Like llama.cpp (and the C++ core), activations entering a quantized matmul are rounded to
8-bit blocks first (act_quant=True, the default); act_quant=False gives pure float math.
It is the oracle for the C++ core, so it follows llama.cpp's graphs exactly:

- llama: x = embd[tok]; per layer: h = x + Wo.attn(rope_norm(Wq.rms(x)), rope_norm(Wk.rms(x)),
  Wv.rms(x)); x = h + Wdown.(silu(Wgate.rms(h)) * Wup.rms(h)); logits = Wout.rms(x).
  RoPE "normal" mode rotates adjacent pairs (x[2i], x[2i+1]).
- gemma3: x = embd[tok] * sqrt(n_embd); q, k get a per-head RMSNorm then NEOX RoPE
  (pairs (x[i], x[i + d/2])); q is scaled by 1/sqrt(key_length); attention and FFN outputs
  pass through their own RMSNorm before the residual add; the FFN is gelu_tanh(gate) * up.
  Layers with il % 6 < 5 use sliding-window attention (key visible when
  q_pos - k_pos < window) with RoPE base 10000; every 6th layer is global with the file's base.

    reference_logits(path_or_gguf, token_ids) -> float32 [n_tokens, n_vocab]   (teacher-forced)
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from .weights import RefWeights, load_weights

SUPPORTED = ("llama", "gemma3")


# ---------------------------------------------------------------------------- hparams
@dataclass
class RefHParams:
    arch: str
    n_vocab: int
    n_embd: int
    n_layer: int
    n_head: int
    n_head_kv: int
    head_dim: int          # key/query length per head
    head_dim_v: int
    n_rot: int             # leading dims of a head that RoPE rotates
    eps: float
    rope_base: float
    rope_base_swa: float
    rope_freq_scale: float # global layers: positions scaled by this (1 / linear factor)
    rope_neox: bool
    sliding_window: int    # 0: no sliding-window layers
    swa_pattern: int       # layer il is sliding when il % swa_pattern < swa_pattern - 1
    attn_scale: float
    final_softcap: float   # 0: none
    act_quant: bool = True # round activations to 8-bit blocks before quantized matmuls
    kv_f16: bool = False   # round cached K and V to float16 (llama.cpp's default cache)


def hparams_of(w: RefWeights) -> RefHParams:
    """Hyperparameters from the metadata, with llama.cpp's defaults for what is missing."""
    if w.arch not in SUPPORTED:
        raise ValueError(f"reference supports {SUPPORTED}, not {w.arch!r}")
    n_embd = int(w.get("embedding_length"))
    n_head = int(w.get("attention.head_count"))
    head_dim = int(w.get("attention.key_length", n_embd // n_head))
    emb_rows = w.raw("token_embd.weight")[2][1]        # GGUF shape [n_embd, n_vocab]
    gemma = w.arch == "gemma3"
    return RefHParams(
        arch=w.arch,
        n_vocab=int(w.get("vocab_size", emb_rows)),
        n_embd=n_embd,
        n_layer=int(w.get("block_count")),
        n_head=n_head,
        n_head_kv=int(w.get("attention.head_count_kv", n_head)),
        head_dim=head_dim,
        head_dim_v=int(w.get("attention.value_length", head_dim)),
        n_rot=int(w.get("rope.dimension_count", head_dim)),
        eps=float(w.get("attention.layer_norm_rms_epsilon", 1e-6 if gemma else 1e-5)),
        rope_base=float(w.get("rope.freq_base", 10000.0)),
        rope_base_swa=10000.0,
        rope_freq_scale=(1.0 / float(w.get("rope.scaling.factor"))
                         if w.get("rope.scaling.type") == "linear" else 1.0),
        rope_neox=gemma,
        sliding_window=int(w.get("attention.sliding_window", 0)) if gemma else 0,
        swa_pattern=6 if gemma else 1,
        attn_scale=1.0 / math.sqrt(head_dim),
        final_softcap=float(w.get("final_logit_softcapping", 0.0)) if gemma else 0.0,
    )


def is_sliding(hp: RefHParams, il: int) -> bool:
    return hp.sliding_window > 0 and il % hp.swa_pattern < hp.swa_pattern - 1


# ---------------------------------------------------------------------------- building blocks
def rmsnorm(x: np.ndarray, weight: np.ndarray, eps: float) -> np.ndarray:
    """x [..., d] -> x / sqrt(mean(x^2) + eps) * weight."""
    x64 = x.astype(np.float64)
    scale = 1.0 / np.sqrt((x64 * x64).mean(axis=-1, keepdims=True) + eps)
    return (x64 * scale * weight).astype(np.float32)


def rope(x: np.ndarray, positions: np.ndarray, n_rot: int, base: float, neox: bool,
         freq_scale: float = 1.0, factors: np.ndarray | None = None) -> np.ndarray:
    """x [n, heads, d], positions [n]: rotate the first n_rot dims of every head.

    pair i (0 <= i < n_rot/2) turns by angle freq_scale * pos * base^(-2i/n_rot) / factors[i];
    "normal" mode pairs dims (2i, 2i+1), NEOX mode pairs (i, i + n_rot/2)."""
    half = n_rot // 2
    inv_freq = freq_scale * base ** (-np.arange(half, dtype=np.float64) * 2.0 / n_rot)  # [half]
    if factors is not None:
        inv_freq = inv_freq / factors.astype(np.float64)
    angle = positions.astype(np.float64)[:, None] * inv_freq[None, :]          # [n, half]
    cos, sin = np.cos(angle)[:, None, :], np.sin(angle)[:, None, :]           # [n, 1, half]
    out = x.astype(np.float64).copy()
    if neox:
        a, b = out[..., :half].copy(), out[..., half:n_rot].copy()
        out[..., :half] = a * cos - b * sin
        out[..., half:n_rot] = a * sin + b * cos
    else:
        a, b = out[..., 0:n_rot:2].copy(), out[..., 1:n_rot:2].copy()
        out[..., 0:n_rot:2] = a * cos - b * sin
        out[..., 1:n_rot:2] = a * sin + b * cos
    return out.astype(np.float32)


def attention(q: np.ndarray, k: np.ndarray, v: np.ndarray, positions: np.ndarray,
              scale: float, window: int) -> np.ndarray:
    """Causal grouped-query attention of one sequence.

    q [n, n_head, d], k [n, n_head_kv, d], v [n, n_head_kv, dv] -> [n, n_head * dv].
    Token t sees token s when pos[s] <= pos[t] (and pos[t] - pos[s] < window if window > 0)."""
    n, n_head, _ = q.shape
    group = n_head // k.shape[1]
    diff = positions[:, None] - positions[None, :]                           # [n, n]
    visible = diff >= 0
    if window > 0:
        visible &= diff < window
    out = np.empty((n, n_head, v.shape[2]), dtype=np.float64)
    for h in range(n_head):
        kh = k[:, h // group, :].astype(np.float64)                          # [n, d]
        vh = v[:, h // group, :].astype(np.float64)                          # [n, dv]
        scores = (q[:, h, :].astype(np.float64) @ kh.T) * scale              # [n, n]
        scores = np.where(visible, scores, -np.inf)
        scores -= scores.max(axis=1, keepdims=True)
        p = np.exp(scores)
        p /= p.sum(axis=1, keepdims=True)
        out[:, h, :] = p @ vh
    return out.reshape(n, -1).astype(np.float32)


def silu(x: np.ndarray) -> np.ndarray:
    return x / (1.0 + np.exp(-x))


def gelu_tanh(x: np.ndarray) -> np.ndarray:
    x64 = x.astype(np.float64)
    return (0.5 * x64 * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (x64 + 0.044715 * x64 ** 3))))


# Weight types whose dot products llama.cpp (and the core) run against 8-bit activations
# in blocks of 256 (Q8_K); the other quantized types use blocks of 32 (Q8_0).
_Q8K_WEIGHTS = {10, 11, 12, 13, 14, 23}      # Q2_K..Q6_K, IQ4_XS
_FLOAT_WEIGHTS = {0, 1, 30}                  # F32, F16, BF16: activations stay float


def fake_quant_8bit(x: np.ndarray, block: int) -> np.ndarray:
    """x [n, k] rounded as the 8-bit activation blocks hold it: per block of `block`
    values d = amax / 127, q = round-half-even(x / d), value = q * d."""
    xb = x.astype(np.float32).reshape(x.shape[0], -1, block)
    d = (np.abs(xb).max(axis=-1, keepdims=True) / np.float32(127)).astype(np.float32)
    inv = np.divide(np.float32(1), d, out=np.zeros_like(d), where=d != 0)
    q = np.rint(xb * inv)
    return (q * d).reshape(x.shape).astype(np.float32)


# Called as ACT_HOOK(weight name, x [n, k]) with the float activations entering every
# layer matmul (the importance-matrix tests sum their squares); None: off.
ACT_HOOK: Callable[[str, np.ndarray], None] | None = None


def linear(w: RefWeights, hp: RefHParams, name: str, x: np.ndarray) -> np.ndarray:
    """x [n, k] . W[m, k]^T -> [n, m] for weight `name`; with hp.act_quant the
    activations are first rounded to 8-bit blocks exactly as llama.cpp does."""
    if ACT_HOOK is not None:
        ACT_HOOK(name, x)
    ttype = w.raw(name)[1]
    if hp.act_quant and ttype not in _FLOAT_WEIGHTS:
        x = fake_quant_8bit(x, 256 if ttype in _Q8K_WEIGHTS else 32)
    return (x.astype(np.float64) @ w.tensor(name).T.astype(np.float64)).astype(np.float32)


# ---------------------------------------------------------------------------- one layer
def attention_block(w: RefWeights, hp: RefHParams, il: int, x: np.ndarray,
                    positions: np.ndarray) -> np.ndarray:
    """Pre-norm attention of layer il: x [n, n_embd] -> attention output [n, n_embd]."""
    p = f"blk.{il}."
    n = x.shape[0]
    h = rmsnorm(x, w.tensor(p + "attn_norm.weight"), hp.eps)
    q = linear(w, hp, p + "attn_q.weight", h).reshape(n, hp.n_head, hp.head_dim)
    k = linear(w, hp, p + "attn_k.weight", h).reshape(n, hp.n_head_kv, hp.head_dim)
    v = linear(w, hp, p + "attn_v.weight", h).reshape(n, hp.n_head_kv, hp.head_dim_v)
    sliding = is_sliding(hp, il)
    if hp.arch == "gemma3":
        q = rmsnorm(q, w.tensor(p + "attn_q_norm.weight"), hp.eps)
        k = rmsnorm(k, w.tensor(p + "attn_k_norm.weight"), hp.eps)
    base = hp.rope_base_swa if sliding else hp.rope_base
    scale = 1.0 if sliding else hp.rope_freq_scale
    factors = w.tensor("rope_freqs.weight") if "rope_freqs.weight" in w.names else None
    q = rope(q, positions, hp.n_rot, base, hp.rope_neox, scale, factors)
    k = rope(k, positions, hp.n_rot, base, hp.rope_neox, scale, factors)
    if hp.kv_f16:
        k, v = k.astype(np.float16).astype(np.float32), v.astype(np.float16).astype(np.float32)
    att = attention(q, k, v, positions, hp.attn_scale, hp.sliding_window if sliding else 0)
    out = linear(w, hp, p + "attn_output.weight", att)                    # [n, n_embd]
    if hp.arch == "gemma3":
        out = rmsnorm(out, w.tensor(p + "post_attention_norm.weight"), hp.eps)
    return out


def ffn_block(w: RefWeights, hp: RefHParams, il: int, x: np.ndarray) -> np.ndarray:
    """Pre-norm gated FFN of layer il: x [n, n_embd] -> [n, n_embd]."""
    p = f"blk.{il}."
    h = rmsnorm(x, w.tensor(p + "ffn_norm.weight"), hp.eps)
    gate = linear(w, hp, p + "ffn_gate.weight", h)                       # [n, n_ff]
    up = linear(w, hp, p + "ffn_up.weight", h)                           # [n, n_ff]
    act = silu(gate) if hp.arch == "llama" else gelu_tanh(gate)
    out = linear(w, hp, p + "ffn_down.weight", (act * up).astype(np.float32))
    if hp.arch == "gemma3":
        out = rmsnorm(out, w.tensor(p + "post_ffw_norm.weight"), hp.eps)
    return out


# ---------------------------------------------------------------------------- the model
def output_logits(w: RefWeights, hp: RefHParams, x: np.ndarray) -> np.ndarray:
    """Final norm and output projection (tied to token_embd when the file has no output)."""
    h = rmsnorm(x, w.tensor("output_norm.weight"), hp.eps)                   # [n, n_embd]
    name = "output.weight" if "output.weight" in w.names else "token_embd.weight"
    ttype = w.raw(name)[1]
    if hp.act_quant and ttype not in _FLOAT_WEIGHTS:
        h = fake_quant_8bit(h, 256 if ttype in _Q8K_WEIGHTS else 32)
    logits = np.empty((x.shape[0], hp.n_vocab), dtype=np.float32)
    chunk = 32768                                                             # bound memory
    for r0 in range(0, hp.n_vocab, chunk):
        ids = np.arange(r0, min(r0 + chunk, hp.n_vocab))
        logits[:, ids] = h @ w.rows(name, ids).T
    if hp.final_softcap > 0:
        logits = (np.tanh(logits / hp.final_softcap) * hp.final_softcap).astype(np.float32)
    return logits


def reference_logits(path_or_gguf: Any, token_ids, **overrides: Any) -> np.ndarray:
    """Teacher-forced logits of one sequence at positions 0..n-1: float32 [n, n_vocab].

    `overrides` replace hyperparameters (e.g. sliding_window=8 to exercise the window
    on a short text)."""
    w = path_or_gguf if isinstance(path_or_gguf, RefWeights) else load_weights(path_or_gguf)
    hp = dataclasses.replace(hparams_of(w), **overrides)
    tokens = np.asarray(token_ids, dtype=np.int64)
    positions = np.arange(len(tokens))
    x = w.rows("token_embd.weight", tokens)                                  # [n, n_embd]
    if hp.arch == "gemma3":
        x = (x * np.float32(math.sqrt(hp.n_embd))).astype(np.float32)
    for il in range(hp.n_layer):
        x = x + attention_block(w, hp, il, x, positions)
        x = x + ffn_block(w, hp, il, x)
    return output_logits(w, hp, x)
