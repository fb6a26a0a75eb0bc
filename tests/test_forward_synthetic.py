"""The C++ forward pass on tiny synthetic models with float32 weights.

With F32 weights nothing is rounded to 8 bits, so the core and the numpy reference must
agree to float32 accuracy (no chaos from activation rounding; see test_forward.py). The
models are random, written with gguf.GGUFWriter, and exercise what the real files do not:
RoPE linear scaling, Llama 3's rope_freqs factors, a partial rotary dimension, a sliding
window shorter than the text on gemma3 (local and global layers), head_dim != n_embd/n_head.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from llamalite.model import Model
from reference import reference_logits

N_VOCAB, N_EMBD, N_FF = 96, 64, 96
N_TOKENS = 40
# max |logit difference| (logits reach ~30). Measured: f32 cache <= 5e-5; with the f16
# cache the core and the reference may round a K/V value to neighbouring halves: <= 7e-4.
TOL = {"f32": 2e-4, "f16": 3e-3}


def write_model(path: Path, arch: str, *, n_layer: int, n_head: int, n_head_kv: int,
                head_dim: int, n_rot: int | None = None, seed: int = 0,
                rope_scale: float | None = None, rope_freqs: bool = False,
                sliding_window: int | None = None, tied: bool = True) -> Path:
    import gguf
    rng = np.random.default_rng(seed)

    def mat(rows: int, cols: int, scale: float = 1.0) -> np.ndarray:
        return (rng.standard_normal((rows, cols)) * scale / np.sqrt(cols)).astype(np.float32)

    def norm(n: int) -> np.ndarray:
        return (1.0 + 0.1 * rng.standard_normal(n)).astype(np.float32)

    w = gguf.GGUFWriter(str(path), arch)
    w.add_block_count(n_layer)
    w.add_context_length(512)
    w.add_embedding_length(N_EMBD)
    w.add_feed_forward_length(N_FF)
    w.add_head_count(n_head)
    w.add_head_count_kv(n_head_kv)
    w.add_key_length(head_dim)
    w.add_value_length(head_dim)
    w.add_layer_norm_rms_eps(1e-6)
    w.add_rope_freq_base(10000.0 if arch == "llama" else 1e6)
    w.add_vocab_size(N_VOCAB)
    if n_rot is not None:
        w.add_rope_dimension_count(n_rot)
    if rope_scale is not None:
        w.add_rope_scaling_type(gguf.RopeScalingType.LINEAR)
        w.add_rope_scaling_factor(rope_scale)
    if sliding_window is not None:
        w.add_sliding_window(sliding_window)
    w.add_tensor("token_embd.weight", mat(N_VOCAB, N_EMBD, 4.0))
    w.add_tensor("output_norm.weight", norm(N_EMBD))
    if not tied:
        w.add_tensor("output.weight", mat(N_VOCAB, N_EMBD, 4.0))
    if rope_freqs:
        w.add_tensor("rope_freqs.weight", rng.uniform(1.0, 8.0, (n_rot or head_dim) // 2)
                     .astype(np.float32))
    for il in range(n_layer):
        p = f"blk.{il}."
        w.add_tensor(p + "attn_norm.weight", norm(N_EMBD))
        w.add_tensor(p + "attn_q.weight", mat(n_head * head_dim, N_EMBD, 3.0))
        w.add_tensor(p + "attn_k.weight", mat(n_head_kv * head_dim, N_EMBD, 3.0))
        w.add_tensor(p + "attn_v.weight", mat(n_head_kv * head_dim, N_EMBD))
        w.add_tensor(p + "attn_output.weight", mat(N_EMBD, n_head * head_dim))
        w.add_tensor(p + "ffn_norm.weight", norm(N_EMBD))
        w.add_tensor(p + "ffn_gate.weight", mat(N_FF, N_EMBD))
        w.add_tensor(p + "ffn_up.weight", mat(N_FF, N_EMBD))
        w.add_tensor(p + "ffn_down.weight", mat(N_EMBD, N_FF))
        if arch == "gemma3":
            w.add_tensor(p + "attn_q_norm.weight", norm(head_dim))
            w.add_tensor(p + "attn_k_norm.weight", norm(head_dim))
            w.add_tensor(p + "post_attention_norm.weight", norm(N_EMBD))
            w.add_tensor(p + "post_ffw_norm.weight", norm(N_EMBD))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


CONFIGS = {
    "llama-gqa": dict(arch="llama", n_layer=2, n_head=4, n_head_kv=2, head_dim=16),
    "llama-untied-mha": dict(arch="llama", n_layer=2, n_head=4, n_head_kv=4, head_dim=16,
                             tied=False),
    "llama-partial-rope-linear": dict(arch="llama", n_layer=2, n_head=4, n_head_kv=1,
                                      head_dim=16, n_rot=8, rope_scale=4.0),
    "llama-rope-freqs": dict(arch="llama", n_layer=2, n_head=2, n_head_kv=1, head_dim=32,
                             rope_freqs=True),
    "gemma3-swa": dict(arch="gemma3", n_layer=7, n_head=4, n_head_kv=2, head_dim=32,
                       sliding_window=6, rope_scale=2.0),
}


@pytest.fixture(scope="module", params=sorted(CONFIGS))
def synthetic(request, tmp_path_factory):
    cfg = CONFIGS[request.param]
    path = write_model(tmp_path_factory.mktemp("synthetic") / f"{request.param}.gguf", **cfg)
    return request.param, Model.load(path, n_threads=2)


def _tokens() -> np.ndarray:
    return np.random.default_rng(1).integers(0, N_VOCAB, N_TOKENS).astype(np.int32)


def _run(m: Model, tokens: np.ndarray, dtype: str) -> np.ndarray:
    n = len(tokens)
    kv = m.new_kv_cache(8, 8, dtype=dtype)
    return m.forward(kv, tokens, np.arange(n), np.zeros(n, np.int32),
                     np.arange(8, dtype=np.int32)[None], np.arange(n))


@pytest.mark.parametrize("dtype", ["f32", "f16"])
def test_synthetic_matches_reference(synthetic, dtype) -> None:
    name, m = synthetic
    tokens = _tokens()
    got = _run(m, tokens, dtype)
    ref = reference_logits(m.gguf, tokens, kv_f16=dtype == "f16")
    assert np.abs(ref).max() > 1.0                      # not a degenerate model
    np.testing.assert_array_equal(got.argmax(1), ref.argmax(1))
    assert np.abs(got - ref).max() < TOL[dtype], name


def test_synthetic_features_matter(synthetic) -> None:
    """Each configured feature changes the logits, so the match above is not vacuous."""
    name, m = synthetic
    tokens = _tokens()
    ref = reference_logits(m.gguf, tokens)
    h = m.hparams
    if h.rope_freq_scale != 1.0:
        assert np.abs(ref - reference_logits(m.gguf, tokens, rope_freq_scale=1.0)).max() > 0.1
    if h.sliding_window:
        assert [il for il in range(h.n_layer) if not h.is_sliding(il)] == [5]
        assert np.abs(ref - reference_logits(m.gguf, tokens, sliding_window=0)).max() > 0.1
    if h.n_rot != h.head_dim:
        assert h.n_rot == 8


def test_synthetic_single_token_steps(synthetic) -> None:
    """Decode one token per step through an f32 cache == the batched pass, bitwise."""
    _, m = synthetic
    tokens = _tokens()[:12]
    full = _run(m, tokens, "f32")
    kv = m.new_kv_cache(8, 8, dtype="f32")
    table = np.arange(8, dtype=np.int32)[None]
    steps = [m.forward(kv, tokens[i:i + 1], [i], [0], table, [0]) for i in range(len(tokens))]
    np.testing.assert_array_equal(np.concatenate(steps), full)


def test_synthetic_every_isa(synthetic) -> None:
    """Attention (f32 and f16 caches), activations and matmuls under every ISA the CPU has."""
    from llamalite import _core
    _, m = synthetic
    tokens = _tokens()
    refs = {dt: reference_logits(m.gguf, tokens, kv_f16=dt == "f16") for dt in ("f32", "f16")}
    before = _core.active_isa()
    try:
        for isa in _core.supported_isas():
            _core.set_isa(isa)
            for dt, ref in refs.items():
                got = _run(m, tokens, dt)
                np.testing.assert_array_equal(got.argmax(1), ref.argmax(1), err_msg=isa)
                assert np.abs(got - ref).max() < TOL[dt], (isa, dt)
    finally:
        _core.set_isa(before)


@pytest.mark.parametrize("key, value, message", [
    ("llama.rope.scaling.type", "yarn", "RoPE scaling 'yarn' is not supported"),
    ("llama.rope.freq_base", "fast", "must be a finite number"),
    ("llama.attention.head_count", 0, "must be a positive integer"),
])
def test_bad_hyperparameters_are_refused(tmp_path, key, value, message) -> None:
    import gguf
    from llamalite.errors import GGUFError
    path = write_model(tmp_path / "m.gguf", **CONFIGS["llama-gqa"])
    # rewrite the file with one key replaced
    r = gguf.GGUFReader(str(path))
    w = gguf.GGUFWriter(str(tmp_path / "bad.gguf"), "llama")
    for k, f in r.fields.items():
        if k.startswith("GGUF.") or k == "general.architecture" or k == key:
            continue
        w.add_key_value(k, f.contents(), f.types[0])
    if isinstance(value, str):
        w.add_string(key, value)
    else:
        w.add_uint32(key, value)
    for t in r.tensors:
        w.add_tensor(t.name, np.asarray(t.data), raw_shape=list(reversed([int(s) for s in t.shape])))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    with pytest.raises(GGUFError, match=message):
        Model.load(tmp_path / "bad.gguf")
