"""A readable numpy forward pass of the `llama`, `gemma3`, `qwen2`, `phi3`, `gemma2`, `qwen3`
and `qwen3moe` architectures.

llama2.c in spirit: one small function per concept, shapes in comments, float32 weights
dequantized by gguf.quants and float64 for the numerically touchy parts (norms, softmax).
Like llama.cpp (and the C++ core), activations entering a quantized matmul are rounded to
8-bit blocks first (act_quant=True, the default); act_quant=False gives pure float math.
llama_cpp_rounding=True adds llama.cpp's other float16 roundings (Q8_0 block scales,
activations of F16 weights, q and the softmax weights in attention, GELU's table): with
act_quant and kv_f16 it gives llama.cpp's own logits (tests/test_arch_families.py).
It is the oracle for the C++ core, so it follows llama.cpp's graphs exactly:

- llama: x = embd[tok]; per layer: h = x + Wo.attn(rope_norm(Wq.rms(x)), rope_norm(Wk.rms(x)),
  Wv.rms(x)); x = h + Wdown.(silu(Wgate.rms(h)) * Wup.rms(h)); logits = Wout.rms(x).
  RoPE "normal" mode rotates adjacent pairs (x[2i], x[2i+1]).
- gemma3: x = embd[tok] * sqrt(n_embd); q, k get a per-head RMSNorm then NEOX RoPE
  (pairs (x[i], x[i + d/2])); q is scaled by 1/sqrt(key_length); attention and FFN outputs
  pass through their own RMSNorm before the residual add; the FFN is gelu_tanh(gate) * up.
  Layers with il % 6 < 5 use sliding-window attention (key visible when
  q_pos - k_pos < window) with RoPE base 10000; every 6th layer is global with the file's base.
- qwen2: llama with Q/K/V biases and NEOX RoPE.
- phi3: llama with one fused Wqkv (rows q | k | v), one fused Wup (rows gate | up), NEOX RoPE
  whose frequencies are divided by LongRoPE's short or long factors (long when the context
  exceeds rope.scaling.original_context_length) and whose cos/sin are scaled by
  rope.scaling.attn_factor; no sliding window (llama.cpp disables it).
- gemma2: gemma3 without the q/k norms: embeddings * sqrt(n_embd), NEOX RoPE, scores scaled
  by 1/sqrt(key_length) then soft-capped cap * tanh(s / cap) (attn_logit_softcapping, 50),
  even layers sliding-window, post-attention/post-FFN norms, GELU, final logits soft-capped
  (final_logit_softcapping, 30).
- llama's attention.sliding_window (Mistral-style files) is ignored, as llama.cpp does.
- qwen3: llama's layer with a per-head RMSNorm of q and k before NEOX RoPE.
- qwen3moe (and llama files with expert_count > 0): the FFN is a mixture of experts:
  p = softmax(Wrouter.h) over the experts, the expert_used_count largest p (best first),
  their weights p / max(sum of those p, 2^-14), and
  out = sum_j w_j * Wdown_j.(silu(Wgate_j.h) * Wup_j.h) over the chosen experts, in order;
  each expert is one matrix of the 3-D tensors ffn_{gate,up,down}_exps.

    reference_logits(path_or_gguf, token_ids) -> float32 [n_tokens, n_vocab]   (teacher-forced)
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from .weights import RefWeights, load_weights

SUPPORTED = ("llama", "gemma3", "qwen2", "phi3", "gemma2", "qwen3", "qwen3moe")


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
    n_expert: int = 0      # experts per layer (0: a dense FFN)
    n_expert_used: int = 0 # experts per token
    rope_freq_scale_swa: float = 1.0
    rope_attn_factor: float = 1.0   # multiplies cos and sin (LongRoPE)
    rope_factors: str = ""          # tensor name of per-pair frequency divisors
    attn_softcap: float = 0.0       # 0: none
    embd_scale: float = 1.0
    act_quant: bool = True # round activations to 8-bit blocks before quantized matmuls
    kv_f16: bool = False   # round cached K and V to float16 (llama.cpp's default cache)
    # llama.cpp's other float16 roundings on the CPU (see _h16's users): the scale of each
    # 8-bit activation block of 32, the activations of F16 weights, q before q.k and the
    # softmax weights before p.v (its non-flash attention), GELU through its float16 table.
    # Off: the float math the core does. On (with act_quant, kv_f16): llama.cpp's logits.
    llama_cpp_rounding: bool = False


def hparams_of(w: RefWeights, n_ctx: int | None = None) -> RefHParams:
    """Hyperparameters from the metadata, with llama.cpp's defaults for what is missing.
    n_ctx (default: the training context) picks LongRoPE's short or long factors."""
    if w.arch not in SUPPORTED:
        raise ValueError(f"reference supports {SUPPORTED}, not {w.arch!r}")
    n_embd = int(w.get("embedding_length"))
    n_head = int(w.get("attention.head_count"))
    n_layer = int(w.get("block_count"))
    head_dim = int(w.get("attention.key_length", n_embd // n_head))
    emb_rows = w.raw("token_embd.weight")[2][1]        # GGUF shape [n_embd, n_vocab]
    gemma = w.arch in ("gemma3", "gemma2")
    scaling = w.get("rope.scaling.type", "linear")
    factor = float(w.get("rope.scaling.factor", 0.0))
    freq_scale = 1.0 / factor if scaling != "none" and factor > 0 else 1.0
    n_ctx_train = int(w.get("context_length", 2048))
    n_ctx = n_ctx_train if n_ctx is None else n_ctx
    factors = ""
    if w.arch == "llama" and "rope_freqs.weight" in w.names:
        factors = "rope_freqs.weight"
    elif w.arch == "phi3":
        orig = int(w.get("rope.scaling.original_context_length", n_ctx_train))
        padded = -(-n_ctx // 256) * 256                  # llama.cpp's context: a multiple of 256
        factors = "rope_factors_long.weight" if padded > orig else "rope_factors_short.weight"
        factors = factors if factors in w.names else ""
    rope_base = float(w.get("rope.freq_base", 10000.0))
    n_expert = int(w.get("expert_count", 0)) if w.arch in ("llama", "qwen3moe") else 0
    hp = RefHParams(
        arch=w.arch,
        n_vocab=int(w.get("vocab_size", emb_rows)),
        n_embd=n_embd,
        n_layer=n_layer,
        n_head=n_head,
        n_head_kv=int(w.get("attention.head_count_kv", n_head)),
        head_dim=head_dim,
        head_dim_v=int(w.get("attention.value_length", head_dim)),
        n_rot=int(w.get("rope.dimension_count", head_dim)),
        eps=float(w.get("attention.layer_norm_rms_epsilon", 1e-6 if gemma else 1e-5)),
        rope_base=rope_base,
        rope_base_swa=10000.0,
        rope_freq_scale=freq_scale,
        rope_neox=w.arch != "llama",
        sliding_window=0,
        swa_pattern=1,
        attn_scale=1.0 / math.sqrt(head_dim),
        final_softcap=0.0,
        rope_attn_factor=float(w.get("rope.scaling.attn_factor", 1.0)),
        rope_factors=factors,
        embd_scale=math.sqrt(n_embd) if gemma else 1.0,
        n_expert=n_expert,
        n_expert_used=int(w.get("expert_used_count", 0)) if n_expert else 0,
    )
    if w.arch == "gemma3":
        hp.sliding_window = int(w.get("attention.sliding_window", 0))
        hp.swa_pattern = 6
        hp.final_softcap = float(w.get("final_logit_softcapping", 0.0))
    elif w.arch == "gemma2":
        hp.sliding_window = int(w.get("attention.sliding_window", 4096))
        hp.swa_pattern = int(w.get("attention.sliding_window_pattern", 2))
        hp.rope_base_swa = float(w.get("rope.freq_base_swa", rope_base))
        hp.rope_freq_scale_swa = freq_scale
        hp.final_softcap = float(w.get("final_logit_softcapping", 30.0))
        hp.attn_softcap = float(w.get("attn_logit_softcapping", 50.0))
        if n_layer == 46:
            hp.attn_scale = 1.0 / math.sqrt(n_embd // n_head)
    return hp


def is_sliding(hp: RefHParams, il: int) -> bool:
    return hp.sliding_window > 0 and il % hp.swa_pattern < hp.swa_pattern - 1


# ---------------------------------------------------------------------------- building blocks
def rmsnorm(x: np.ndarray, weight: np.ndarray, eps: float) -> np.ndarray:
    """x [..., d] -> x / sqrt(mean(x^2) + eps) * weight."""
    x64 = x.astype(np.float64)
    scale = 1.0 / np.sqrt((x64 * x64).mean(axis=-1, keepdims=True) + eps)
    return (x64 * scale * weight).astype(np.float32)


def rope(x: np.ndarray, positions: np.ndarray, n_rot: int, base: float, neox: bool,
         freq_scale: float = 1.0, factors: np.ndarray | None = None,
         attn_factor: float = 1.0) -> np.ndarray:
    """x [n, heads, d], positions [n]: rotate the first n_rot dims of every head.

    pair i (0 <= i < n_rot/2) turns by angle freq_scale * pos * base^(-2i/n_rot) / factors[i];
    "normal" mode pairs dims (2i, 2i+1), NEOX mode pairs (i, i + n_rot/2). cos and sin are
    multiplied by attn_factor (LongRoPE's attention scaling; 1 elsewhere)."""
    half = n_rot // 2
    inv_freq = freq_scale * base ** (-np.arange(half, dtype=np.float64) * 2.0 / n_rot)  # [half]
    if factors is not None:
        inv_freq = inv_freq / factors.astype(np.float64)
    angle = positions.astype(np.float64)[:, None] * inv_freq[None, :]          # [n, half]
    cos = attn_factor * np.cos(angle)[:, None, :]                             # [n, 1, half]
    sin = attn_factor * np.sin(angle)[:, None, :]
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


def _h16(x: np.ndarray) -> np.ndarray:
    """x rounded to float16 and back (float32)."""
    return np.asarray(x, dtype=np.float32).astype(np.float16).astype(np.float32)


def attention(q: np.ndarray, k: np.ndarray, v: np.ndarray, positions: np.ndarray,
              scale: float, window: int, softcap: float = 0.0,
              f16_operands: bool = False) -> np.ndarray:
    """Causal grouped-query attention of one sequence.

    q [n, n_head, d], k [n, n_head_kv, d], v [n, n_head_kv, dv] -> [n, n_head * dv].
    Token t sees token s when pos[s] <= pos[t] (and pos[t] - pos[s] < window if window > 0).
    softcap > 0: scores s become softcap * tanh(s / softcap) before the softmax.
    f16_operands: q and the softmax weights are rounded to float16 before their products
    (llama.cpp's non-flash attention multiplies them with the float16 cache that way)."""
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
        qh = _h16(q[:, h, :]) if f16_operands else q[:, h, :]
        scores = (qh.astype(np.float64) @ kh.T) * scale                      # [n, n]
        if softcap > 0:
            scores = softcap * np.tanh(scores / softcap)
        scores = np.where(visible, scores, -np.inf)
        scores -= scores.max(axis=1, keepdims=True)
        p = np.exp(scores)
        p /= p.sum(axis=1, keepdims=True)
        if f16_operands:
            p = _h16(p).astype(np.float64)
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


def fake_quant_8bit(x: np.ndarray, block: int, f16_scale: bool = False) -> np.ndarray:
    """x [n, k] rounded as the 8-bit activation blocks hold it: per block of `block`
    values d = amax / 127, q = round-half-even(x / d), value = q * d (f16_scale: d as
    the float16 llama.cpp's Q8_0 blocks store)."""
    xb = x.astype(np.float32).reshape(x.shape[0], -1, block)
    d = (np.abs(xb).max(axis=-1, keepdims=True) / np.float32(127)).astype(np.float32)
    inv = np.divide(np.float32(1), d, out=np.zeros_like(d), where=d != 0)
    q = np.rint(xb * inv)
    if f16_scale:
        d = _h16(d)
    return (q * d).reshape(x.shape).astype(np.float32)


# Called as ACT_HOOK(weight name, x [n, k], expert) with the float activations entering
# every layer matmul (the importance-matrix tests sum their squares); expert: which
# matrix of a 3-D expert tensor, None for a 2-D weight. None: off.
ACT_HOOK: Callable[[str, np.ndarray, int | None], None] | None = None


def linear(w: RefWeights, hp: RefHParams, name: str, x: np.ndarray,
           matrix: np.ndarray | None = None, expert: int | None = None) -> np.ndarray:
    """x [n, k] . W[m, k]^T -> [n, m] for weight `name` (or `matrix`, expert `expert` of
    the 3-D tensor `name`); with hp.act_quant the activations are first rounded to 8-bit
    blocks exactly as llama.cpp does."""
    if ACT_HOOK is not None:
        ACT_HOOK(name, x, expert)
    x = round_activations(hp, w.raw(name)[1], x)
    W = w.tensor(name) if matrix is None else matrix
    return (x.astype(np.float64) @ W.T.astype(np.float64)).astype(np.float32)


def round_activations(hp: RefHParams, ttype: int, x: np.ndarray) -> np.ndarray:
    """x as a matmul with a weight of type ttype sees it (act_quant: 8-bit blocks; with
    llama_cpp_rounding also float16 block scales, and float16 values for F16 weights)."""
    if hp.act_quant and ttype not in _FLOAT_WEIGHTS:
        q8k = ttype in _Q8K_WEIGHTS      # Q8_K keeps a float32 scale, Q8_0 a float16 one
        return fake_quant_8bit(x, 256 if q8k else 32, hp.llama_cpp_rounding and not q8k)
    if hp.act_quant and hp.llama_cpp_rounding and ttype == 1:
        return _h16(x)
    return x


# ---------------------------------------------------------------------------- one layer
def attention_block(w: RefWeights, hp: RefHParams, il: int, x: np.ndarray,
                    positions: np.ndarray) -> np.ndarray:
    """Pre-norm attention of layer il: x [n, n_embd] -> attention output [n, n_embd]."""
    p = f"blk.{il}."
    n = x.shape[0]
    h = rmsnorm(x, w.tensor(p + "attn_norm.weight"), hp.eps)
    nq, nk = hp.n_head * hp.head_dim, hp.n_head_kv * hp.head_dim
    if p + "attn_qkv.weight" in w.names:                                   # phi3: q | k | v rows
        qkv = linear(w, hp, p + "attn_qkv.weight", h)
        q, k, v = qkv[:, :nq], qkv[:, nq:nq + nk], qkv[:, nq + nk:]
    else:
        q = linear(w, hp, p + "attn_q.weight", h)
        k = linear(w, hp, p + "attn_k.weight", h)
        v = linear(w, hp, p + "attn_v.weight", h)
    if hp.arch == "qwen2" and p + "attn_q.bias" in w.names:
        q = q + w.tensor(p + "attn_q.bias")
        k = k + w.tensor(p + "attn_k.bias")
        v = v + w.tensor(p + "attn_v.bias")
    q = q.reshape(n, hp.n_head, hp.head_dim)
    k = k.reshape(n, hp.n_head_kv, hp.head_dim)
    v = v.reshape(n, hp.n_head_kv, hp.head_dim_v)
    sliding = is_sliding(hp, il)
    if hp.arch in ("gemma3", "qwen3", "qwen3moe"):
        q = rmsnorm(q, w.tensor(p + "attn_q_norm.weight"), hp.eps)
        k = rmsnorm(k, w.tensor(p + "attn_k_norm.weight"), hp.eps)
    base = hp.rope_base_swa if sliding else hp.rope_base
    scale = hp.rope_freq_scale_swa if sliding else hp.rope_freq_scale
    factors = w.tensor(hp.rope_factors) if hp.rope_factors else None
    q = rope(q, positions, hp.n_rot, base, hp.rope_neox, scale, factors, hp.rope_attn_factor)
    k = rope(k, positions, hp.n_rot, base, hp.rope_neox, scale, factors, hp.rope_attn_factor)
    if hp.kv_f16:
        k, v = k.astype(np.float16).astype(np.float32), v.astype(np.float16).astype(np.float32)
    att = attention(q, k, v, positions, hp.attn_scale, hp.sliding_window if sliding else 0,
                    hp.attn_softcap, hp.llama_cpp_rounding)
    out = linear(w, hp, p + "attn_output.weight", att)                    # [n, n_embd]
    if hp.arch in ("gemma3", "gemma2"):
        out = rmsnorm(out, w.tensor(p + "post_attention_norm.weight"), hp.eps)
    return out


def route(w: RefWeights, hp: RefHParams, il: int, h: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The router of layer il: h [n, n_embd] -> chosen experts [n, k] (best first) and their
    normalised weights [n, k]."""
    logits = linear(w, hp, f"blk.{il}.ffn_gate_inp.weight", h).astype(np.float64)  # [n, X]
    p = np.exp(logits - logits.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    chosen = np.argsort(-p, axis=1, kind="stable")[:, :hp.n_expert_used]          # [n, k]
    top = np.take_along_axis(p, chosen, axis=1)
    return chosen, top / np.maximum(top.sum(axis=1, keepdims=True), 2.0 ** -14)


def moe_block(w: RefWeights, hp: RefHParams, il: int, h: np.ndarray) -> np.ndarray:
    """Mixture of SwiGLU experts of layer il: h [n, n_embd] (normed) -> [n, n_embd]."""
    p = f"blk.{il}."
    chosen, weights = route(w, hp, il, h)
    gate_all, up_all = w.tensor(p + "ffn_gate_exps.weight"), w.tensor(p + "ffn_up_exps.weight")
    down_all = w.tensor(p + "ffn_down_exps.weight")        # [X, n_embd, n_ff_exp]
    out = np.zeros(h.shape, dtype=np.float64)
    for t in range(h.shape[0]):
        ht = h[t:t + 1]
        for j, e in enumerate(chosen[t]):
            gate = linear(w, hp, p + "ffn_gate_exps.weight", ht, gate_all[e], int(e))
            up = linear(w, hp, p + "ffn_up_exps.weight", ht, up_all[e], int(e))
            y = linear(w, hp, p + "ffn_down_exps.weight", (silu(gate) * up).astype(np.float32),
                       down_all[e], int(e))
            out[t] += weights[t, j] * y[0].astype(np.float64)
    return out.astype(np.float32)


def ffn_block(w: RefWeights, hp: RefHParams, il: int, x: np.ndarray) -> np.ndarray:
    """Pre-norm gated FFN of layer il: x [n, n_embd] -> [n, n_embd]."""
    p = f"blk.{il}."
    h = rmsnorm(x, w.tensor(p + "ffn_norm.weight"), hp.eps)
    if hp.n_expert:
        return moe_block(w, hp, il, h)
    if hp.arch == "phi3":                                                # rows gate | up
        gu = linear(w, hp, p + "ffn_up.weight", h)                       # [n, 2 * n_ff]
        gate, up = gu[:, :gu.shape[1] // 2], gu[:, gu.shape[1] // 2:]
    else:
        gate = linear(w, hp, p + "ffn_gate.weight", h)                   # [n, n_ff]
        up = linear(w, hp, p + "ffn_up.weight", h)                       # [n, n_ff]
    if hp.arch in ("gemma3", "gemma2"):
        act = (_h16(gelu_tanh(_h16(gate))) if hp.llama_cpp_rounding else gelu_tanh(gate))
    else:
        act = silu(gate)
    out = linear(w, hp, p + "ffn_down.weight", (act * up).astype(np.float32))
    if hp.arch in ("gemma3", "gemma2"):
        out = rmsnorm(out, w.tensor(p + "post_ffw_norm.weight"), hp.eps)
    return out


# ---------------------------------------------------------------------------- the model
def output_logits(w: RefWeights, hp: RefHParams, x: np.ndarray) -> np.ndarray:
    """Final norm and output projection (tied to token_embd when the file has no output)."""
    h = rmsnorm(x, w.tensor("output_norm.weight"), hp.eps)                   # [n, n_embd]
    name = "output.weight" if "output.weight" in w.names else "token_embd.weight"
    h = round_activations(hp, w.raw(name)[1], h)
    logits = np.empty((x.shape[0], hp.n_vocab), dtype=np.float32)
    chunk = 32768                                                             # bound memory
    for r0 in range(0, hp.n_vocab, chunk):
        ids = np.arange(r0, min(r0 + chunk, hp.n_vocab))
        logits[:, ids] = h @ w.rows(name, ids).T
    if hp.final_softcap > 0:
        logits = (np.tanh(logits / hp.final_softcap) * hp.final_softcap).astype(np.float32)
    return logits


def reference_logits(path_or_gguf: Any, token_ids, n_ctx: int | None = None,
                     **overrides: Any) -> np.ndarray:
    """Teacher-forced logits of one sequence at positions 0..n-1: float32 [n, n_vocab].

    n_ctx: the context size (LongRoPE's factor choice; default the training context).
    `overrides` replace hyperparameters (e.g. sliding_window=8 to exercise the window
    on a short text)."""
    w = path_or_gguf if isinstance(path_or_gguf, RefWeights) else load_weights(path_or_gguf)
    hp = dataclasses.replace(hparams_of(w, n_ctx), **overrides)
    tokens = np.asarray(token_ids, dtype=np.int64)
    positions = np.arange(len(tokens))
    x = w.rows("token_embd.weight", tokens)                                  # [n, n_embd]
    if hp.embd_scale != 1.0:
        x = (x * np.float32(hp.embd_scale)).astype(np.float32)
    for il in range(hp.n_layer):
        x = x + attention_block(w, hp, il, x, positions)
        x = x + ffn_block(w, hp, il, x)
    return output_logits(w, hp, x)
