"""Synthetic GGUF models for the quantizer's tests and for recording llama.cpp's output.

The files are written with llamalite.quant.gguf_writer from a seeded generator, so the
same call gives the same bytes on any machine: tests/tools/record_quantize.py quantizes
them with llama.cpp once, and the tests compare llamalite's output with the recorded
sha256 (the input's sha256 is recorded too, to catch a drifting generator).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from llamalite.quant import gguf_writer as gw

F32, F16, BF16 = 0, 1, 30


@dataclass(frozen=True)
class Shape:
    arch: str              # "llama" or "gemma3"
    n_embd: int
    n_head: int
    n_head_kv: int
    head_dim: int
    n_ff: int
    n_layer: int
    n_vocab: int
    tied: bool


# Small enough for tests; shaped to reach the mixes' rules: GQA 4 (attn_v of Q2_K,
# IQ4_*), an untied output, 8 layers (first/last eighth), and on the gemma3 one rows of
# 320 values that K-quant blocks of 256 do not divide (the fallbacks).
TINY = {
    "llama": Shape("llama", 256, 8, 2, 32, 512, 8, 384, tied=False),
    "gemma3": Shape("gemma3", 320, 4, 1, 64, 512, 6, 320, tied=True),
}


def tensor_shapes(s: Shape) -> list[tuple[str, tuple[int, ...]]]:
    """(name, GGUF shape) of every tensor, in the order a converter writes them."""
    E, Q, KV = s.n_embd, s.n_head * s.head_dim, s.n_head_kv * s.head_dim
    out = [("token_embd.weight", (E, s.n_vocab))]
    if not s.tied:
        out.append(("output.weight", (E, s.n_vocab)))
    out.append(("output_norm.weight", (E,)))
    for il in range(s.n_layer):
        p = f"blk.{il}."
        out += [(p + "attn_norm.weight", (E,)), (p + "attn_q.weight", (E, Q)),
                (p + "attn_k.weight", (E, KV)), (p + "attn_v.weight", (E, KV)),
                (p + "attn_output.weight", (Q, E)), (p + "ffn_norm.weight", (E,)),
                (p + "ffn_gate.weight", (E, s.n_ff)), (p + "ffn_up.weight", (E, s.n_ff)),
                (p + "ffn_down.weight", (s.n_ff, E))]
        if s.arch == "gemma3":
            out += [(p + "attn_q_norm.weight", (s.head_dim,)), (p + "attn_k_norm.weight", (s.head_dim,)),
                    (p + "post_attention_norm.weight", (E,)), (p + "post_ffw_norm.weight", (E,))]
    return out


def metadata(s: Shape, name: str = "synthetic") -> list[bytes]:
    """Hyperparameters and a byte-level BPE vocabulary (256 byte tokens + BOS/EOS)."""
    from llamalite.bpe import BYTE_TO_UNICODE
    a = s.arch
    tokens = list(BYTE_TO_UNICODE)[: s.n_vocab - 2]
    tokens += ["<s>", "</s>"] + [f"<unused{i}>" for i in range(s.n_vocab - len(tokens) - 2)]
    types = np.ones(len(tokens), dtype=np.int32)
    types[len(tokens) - (s.n_vocab - 256):] = 3
    kvs = [gw.kv("general.architecture", gw.STRING, a), gw.kv("general.name", gw.STRING, name),
           gw.kv(f"{a}.context_length", gw.UINT32, 2048),
           gw.kv(f"{a}.embedding_length", gw.UINT32, s.n_embd),
           gw.kv(f"{a}.block_count", gw.UINT32, s.n_layer),
           gw.kv(f"{a}.feed_forward_length", gw.UINT32, s.n_ff),
           gw.kv(f"{a}.attention.head_count", gw.UINT32, s.n_head),
           gw.kv(f"{a}.attention.head_count_kv", gw.UINT32, s.n_head_kv),
           gw.kv(f"{a}.attention.key_length", gw.UINT32, s.head_dim),
           gw.kv(f"{a}.attention.value_length", gw.UINT32, s.head_dim),
           gw.kv(f"{a}.attention.layer_norm_rms_epsilon", gw.FLOAT32, 1e-6),
           gw.kv(f"{a}.rope.freq_base", gw.FLOAT32, 10000.0),
           gw.kv(f"{a}.vocab_size", gw.UINT32, s.n_vocab)]
    if a == "gemma3":
        kvs.append(gw.kv(f"{a}.attention.sliding_window", gw.UINT32, 512))
    kvs += [gw.kv("general.file_type", gw.UINT32, 1),
            gw.kv("tokenizer.ggml.model", gw.STRING, "gpt2"),
            gw.kv("tokenizer.ggml.pre", gw.STRING, "default"),
            gw.kv("tokenizer.ggml.tokens", gw.ARRAY, tokens),
            gw.kv("tokenizer.ggml.token_type", gw.ARRAY, types),
            gw.kv("tokenizer.ggml.merges", gw.ARRAY, []),
            gw.kv("tokenizer.ggml.bos_token_id", gw.UINT32, 256),
            gw.kv("tokenizer.ggml.eos_token_id", gw.UINT32, 257),
            gw.kv("tokenizer.ggml.add_bos_token", gw.BOOL, True)]
    return kvs


def _values(rng: np.random.Generator, name: str, shape: tuple[int, ...]) -> np.ndarray:
    n = int(np.prod(shape))
    if len(shape) == 1:                                   # norms: around 1
        return (1.0 + 0.1 * rng.standard_normal(n)).astype(np.float32)
    x = rng.standard_normal(n).astype(np.float32) / np.float32(np.sqrt(shape[0]))
    # a few large columns, as real weights have (what an imatrix and the k-quants care about)
    x.reshape(-1, shape[0])[:, rng.integers(0, shape[0], 4)] *= 8
    return x * (4.0 if "embd" in name or name == "output.weight" else 1.0)


def write_model(path: Path, s: Shape, dtype: int = F16, seed: int = 0) -> Path:
    """A random model of shape `s`: matrices in `dtype`, norms F32."""
    rng = np.random.default_rng(seed)
    names = tensor_shapes(s)
    arrays = []
    for name, shape in names:
        x = _values(rng, name, shape)
        if len(shape) == 1 or dtype == F32:
            arrays.append((name, shape, F32, x.astype("<f4").tobytes()))
        elif dtype == F16:
            arrays.append((name, shape, F16, x.astype("<f2").tobytes()))
        else:   # BF16, rounded to nearest even
            u = x.view(np.uint32).astype(np.uint64)
            b = ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype("<u2")
            arrays.append((name, shape, BF16, b.tobytes()))
    offsets = gw.data_offsets([len(b) for *_, b in arrays], 32)
    infos = [gw.tensor_info(n, sh, t, off) for (n, sh, t, _), off in zip(arrays, offsets)]
    with open(path, "wb") as f:
        f.write(gw.header(metadata(s), infos, 32))
        for *_, b in arrays:
            f.write(b)
            f.write(b"\0" * gw.pad(len(b), 32))
    return path


# --- more architectures, for the type plans only (names, shapes, hyperparameters) ---------
def moe_and_fused_specs(arch: str) -> tuple[list[tuple[str, tuple[int, ...]]], list[bytes]]:
    """qwen3moe (8 experts: 3-D expert tensors, a router) or phi3 (fused attn_qkv, a
    double-width ffn_up): tensor (name, shape) and metadata for an 8-layer model."""
    E, n_head, n_kv, hd, n_layer, n_vocab = 512, 8, 2, 64, 8, 512
    kvs = [gw.kv("general.architecture", gw.STRING, arch),
           gw.kv(f"{arch}.context_length", gw.UINT32, 2048),
           gw.kv(f"{arch}.embedding_length", gw.UINT32, E),
           gw.kv(f"{arch}.block_count", gw.UINT32, n_layer),
           gw.kv(f"{arch}.attention.head_count", gw.UINT32, n_head),
           gw.kv(f"{arch}.attention.head_count_kv", gw.UINT32, n_kv),
           gw.kv(f"{arch}.attention.layer_norm_rms_epsilon", gw.FLOAT32, 1e-6),
           gw.kv(f"{arch}.rope.freq_base", gw.FLOAT32, 10000.0),
           gw.kv(f"{arch}.vocab_size", gw.UINT32, n_vocab),
           gw.kv("general.file_type", gw.UINT32, 1)]
    out = [("token_embd.weight", (E, n_vocab)), ("output.weight", (E, n_vocab)),
           ("output_norm.weight", (E,))]
    if arch == "qwen3moe":
        n_expert, n_ff_exp = 8, 256
        kvs += [gw.kv(f"{arch}.feed_forward_length", gw.UINT32, 1024),
                gw.kv(f"{arch}.attention.key_length", gw.UINT32, hd),
                gw.kv(f"{arch}.attention.value_length", gw.UINT32, hd),
                gw.kv(f"{arch}.expert_count", gw.UINT32, n_expert),
                gw.kv(f"{arch}.expert_used_count", gw.UINT32, 2),
                gw.kv(f"{arch}.expert_feed_forward_length", gw.UINT32, n_ff_exp)]
        for il in range(n_layer):
            p = f"blk.{il}."
            out += [(p + "attn_norm.weight", (E,)), (p + "attn_q.weight", (E, n_head * hd)),
                    (p + "attn_k.weight", (E, n_kv * hd)), (p + "attn_v.weight", (E, n_kv * hd)),
                    (p + "attn_output.weight", (n_head * hd, E)), (p + "attn_q_norm.weight", (hd,)),
                    (p + "attn_k_norm.weight", (hd,)), (p + "ffn_norm.weight", (E,)),
                    (p + "ffn_gate_inp.weight", (E, n_expert)),
                    (p + "ffn_gate_exps.weight", (E, n_ff_exp, n_expert)),
                    (p + "ffn_up_exps.weight", (E, n_ff_exp, n_expert)),
                    (p + "ffn_down_exps.weight", (n_ff_exp, E, n_expert))]
    else:   # phi3
        n_ff = 1024
        kvs += [gw.kv(f"{arch}.feed_forward_length", gw.UINT32, n_ff),
                gw.kv(f"{arch}.rope.dimension_count", gw.UINT32, hd)]
        for il in range(n_layer):
            p = f"blk.{il}."
            out += [(p + "attn_norm.weight", (E,)), (p + "attn_qkv.weight", (E, E + 2 * n_kv * hd)),
                    (p + "attn_output.weight", (E, E)), (p + "ffn_norm.weight", (E,)),
                    (p + "ffn_up.weight", (E, 2 * n_ff)), (p + "ffn_down.weight", (n_ff, E))]
    return out, kvs
