"""The synthetic model of tests/native/test_kernels_arm.cpp: a small llama model whose
layers use the real models' weight types (Q4_1 and Q8_0 as in SmolLM2; Q4_K, Q6_K,
Q5_0 and Q8_0 as in Gemma 3's Q4_K_M; Q5_K and Q4_0 besides), and the logits of one forward step of the x86 build's
generic kernels on it.

    python tests/tools/make_arm_forward.py            # tests/data/arm_forward (x86, llamalite installed)
    python tests/tools/make_arm_forward.py --model F  # only write the model to F (numpy + gguf)

tests/data/arm_forward holds desc.txt (the hyperparameters and the tensors' offsets,
types and shapes as llamalite.Model hands them to the core, and the model file's
sha256), logits.txt (the token count, the tokens, then n_tokens x n_vocab logits).
The model itself (1.2 MB) is not stored: tests/native/run-aarch64.sh writes it with
--model (a fixed seed; the sha256 in desc.txt checks it is the same file).
"""
from __future__ import annotations

import os
import sys
from dataclasses import asdict
from pathlib import Path

os.environ["LLAMALITE_ISA"] = "generic"   # the reference: the scalar kernels

import hashlib  # noqa: E402

import numpy as np  # noqa: E402

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
from kernel_data import make_weights  # noqa: E402

import gguf  # noqa: E402
from gguf import GGMLQuantizationType as T  # noqa: E402


OUT = HERE.parent / "data" / "arm_forward"
N_EMBD, N_FF, N_VOCAB, N_HEAD, N_HEAD_KV, HEAD_DIM = 256, 512, 96, 4, 2, 64
N_TOKENS = 5
# per layer: (attention q/k/v/o type, ffn gate/up type, ffn down type)
LAYERS = [(T.Q4_1, T.Q4_1, T.Q8_0), (T.Q4_K, T.Q4_K, T.Q6_K), (T.Q5_K, T.Q5_0, T.Q4_0)]


def write_model(path: Path) -> None:
    rng = np.random.default_rng(7)
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_block_count(len(LAYERS))
    w.add_context_length(256)
    w.add_embedding_length(N_EMBD)
    w.add_feed_forward_length(N_FF)
    w.add_head_count(N_HEAD)
    w.add_head_count_kv(N_HEAD_KV)
    w.add_key_length(HEAD_DIM)
    w.add_value_length(HEAD_DIM)
    w.add_layer_norm_rms_eps(1e-6)
    w.add_rope_freq_base(10000.0)
    w.add_vocab_size(N_VOCAB)

    def quant(name: str, qtype: T, rows: int, cols: int) -> None:
        w.add_tensor(name, make_weights(qtype, rows, cols, rng), raw_dtype=qtype)

    def norm(n: int) -> np.ndarray:
        return (1.0 + 0.1 * rng.standard_normal(n)).astype(np.float32)

    quant("token_embd.weight", T.Q8_0, N_VOCAB, N_EMBD)   # tied output
    w.add_tensor("output_norm.weight", norm(N_EMBD))
    for il, (ta, tf, td) in enumerate(LAYERS):
        p = f"blk.{il}."
        w.add_tensor(p + "attn_norm.weight", norm(N_EMBD))
        quant(p + "attn_q.weight", ta, N_HEAD * HEAD_DIM, N_EMBD)
        quant(p + "attn_k.weight", ta, N_HEAD_KV * HEAD_DIM, N_EMBD)
        quant(p + "attn_v.weight", ta, N_HEAD_KV * HEAD_DIM, N_EMBD)
        quant(p + "attn_output.weight", ta, N_EMBD, N_HEAD * HEAD_DIM)
        w.add_tensor(p + "ffn_norm.weight", norm(N_EMBD))
        quant(p + "ffn_gate.weight", tf, N_FF, N_EMBD)
        quant(p + "ffn_up.weight", tf, N_FF, N_EMBD)
        quant(p + "ffn_down.weight", td, N_EMBD, N_FF)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "--model":
        write_model(Path(sys.argv[2]))
        return
    from llamalite.gguf import open_gguf
    from llamalite.model import Model
    import tempfile
    OUT.mkdir(parents=True, exist_ok=True)
    path = Path(tempfile.mkdtemp()) / "model.gguf"
    write_model(path)
    g = open_gguf(path)
    m = Model.load(g, n_threads=2)
    lines = [f"{k} {int(v) if isinstance(v, bool) else v!r}".replace("'", "") for k, v in asdict(m.hparams).items()]
    for name, t in g.tensors.items():
        rows = int(np.prod(t.shape[1:])) if len(t.shape) > 1 else 1
        lines.append(f"tensor {name} {int(t.offset)} {int(t.type)} {int(t.shape[0])} {rows}")
    lines.append(f"sha256 {hashlib.sha256(path.read_bytes()).hexdigest()}")
    (OUT / "desc.txt").write_text("\n".join(lines) + "\n")
    tokens = np.random.default_rng(1).integers(0, N_VOCAB, N_TOKENS).astype(np.int32)
    kv = m.new_kv_cache(1, 64, dtype="f32")
    logits = m.forward(kv, tokens, np.arange(N_TOKENS), np.zeros(N_TOKENS, np.int32),
                       np.zeros((1, 1), np.int32), np.arange(N_TOKENS))
    out = [str(N_TOKENS), " ".join(str(int(t)) for t in tokens)]
    out += [" ".join(f"{v:.9g}" for v in row) for row in np.asarray(logits, np.float32)]
    (OUT / "logits.txt").write_text("\n".join(out) + "\n")
    print(f"wrote {OUT}: {path.stat().st_size} bytes of model, logits {np.asarray(logits).shape}")


if __name__ == "__main__":
    main()
