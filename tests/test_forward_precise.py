"""Precise mode (`Model.load(..., precise=True)`) against the numpy reference in pure float.

The fast path rounds activations to 8-bit blocks before every quantized matmul, which
makes the real models chaotic under float noise (see test_forward.py), so there the core
and the reference may disagree at near-ties. Precise mode keeps activations float32 and
dots them with dequantized weight rows; compared with the reference run with
act_quant=False (float64 matmuls, nothing rounded to 8 bits) and the float32 KV cache on
both sides, the only differences left are float32 rounding. So the whole model math
(embedding scale, norms, RoPE modes and bases, GQA, sliding windows, gated activations,
post-norms, soft-capping, tied output) is checked tightly on the real files: the same
top-1 at every position and a small max |logit difference|.

Measured on the >= 200-token text of test_forward.py (AVX-512 machine, 2 threads):
SmolLM2 max 5.4e-5 / mean 5.3e-6, Gemma 3 max 3.9e-5 / mean 2.9e-6 (logits reach ~30),
top-1 identical at 226 / 226 and 225 / 225 positions. The bounds leave 10x room for
other SIMD accumulation orders.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from gguf import GGML_QUANT_SIZES
from gguf import GGMLQuantizationType as T
from gguf.quants import dequantize, quantize
from kernel_data import _FP16_FIELDS, random_blocks

from llamalite import _core
from llamalite.model import Model
from reference import reference_logits

DATA = Path(__file__).parent / "data" / "forward_reference.npz"
NAMES = ("smollm2", "gemma3")
BLOCK = 16
MAX_DIFF = 5e-4      # max |logit difference| over all positions and the whole vocab
MEAN_DIFF = 5e-5     # mean |logit difference|


def _run(model: Model, tokens: np.ndarray, n_blocks: int, block: int = BLOCK,
         rows: np.ndarray | None = None, kv=None, start: int = 0) -> np.ndarray:
    """Teacher-forced logits of one sequence (block table row 0 = blocks 0..n_blocks-1)."""
    n = len(tokens)
    kv = kv if kv is not None else model.new_kv_cache(n_blocks, block)
    rows = np.arange(n) if rows is None else rows
    return model.forward(kv, tokens, np.arange(start, start + n), np.zeros(n, np.int32),
                         np.arange(n_blocks, dtype=np.int32)[None], rows)


class PreciseCase:
    """A real model in precise mode with its full passes, computed once per pytest run."""

    def __init__(self, name: str, path: Path, tokens: np.ndarray) -> None:
        self.name = name
        self.tokens = tokens
        self.model = Model.load(path, n_threads=2, precise=True)
        self.n_blocks = -(-len(tokens) // BLOCK)
        self.cpp = _run(self.model, tokens, self.n_blocks)                       # [n, n_vocab]
        self.ref = reference_logits(self.model.gguf, tokens, act_quant=False, kv_f16=False)


_CASES: dict[str, PreciseCase] = {}


@pytest.fixture(scope="session", params=NAMES)
def case(request, smollm2_path, gemma3_path) -> PreciseCase:
    name = request.param
    if name not in _CASES:
        with np.load(DATA) as d:
            tokens = d[f"{name}_tokens"]
        _CASES[name] = PreciseCase(name, smollm2_path if name == "smollm2" else gemma3_path,
                                   tokens)
    return _CASES[name]


def test_precise_matches_float_reference(case: PreciseCase) -> None:
    """Same top-1 at every position, max |logit difference| < MAX_DIFF."""
    cpp, ref = case.cpp, case.ref
    n = len(case.tokens)
    assert n >= 200
    assert cpp.shape == ref.shape == (n, case.model.n_vocab)
    assert case.model.precise and case.model.new_kv_cache(1).dtype == "f32"
    differ = np.nonzero(cpp.argmax(1) != ref.argmax(1))[0]
    top2 = np.sort(ref[differ], axis=1)[:, -2:]
    assert differ.size == 0, \
        f"top-1 differs at {differ.tolist()} (reference margins {top2[:, 1] - top2[:, 0]})"
    diff = np.abs(cpp.astype(np.float64) - ref)
    where = np.unravel_index(diff.argmax(), diff.shape)
    assert diff.max() < MAX_DIFF, f"max |diff| {diff.max():.3g} at (position, token) {where}"
    assert diff.mean() < MEAN_DIFF, f"mean |diff| {diff.mean():.3g}"
    assert np.abs(ref).max() > 10                       # real logits, not a degenerate pass


def test_precise_differs_from_fast_path(case: PreciseCase, smollm2_path, gemma3_path) -> None:
    """The flag reaches the core: the fast path (8-bit activations) gives other logits,
    and sits much farther from the float reference."""
    n = 24
    fast = Model.load(smollm2_path if case.name == "smollm2" else gemma3_path, n_threads=2)
    assert not fast.precise and fast.new_kv_cache(1).dtype == "f16"
    got = _run(fast, case.tokens[:n], 2, rows=None, kv=fast.new_kv_cache(2, BLOCK, dtype="f32"))
    far = np.abs(got - case.ref[:n]).max()
    near = np.abs(case.cpp[:n] - case.ref[:n]).max()
    assert far > 100 * near, (far, near)


def test_precise_decode_steps_equal_the_full_pass(case: PreciseCase) -> None:
    """Batch invariance of the exact matmul path: prefill, then single-token steps (M = 1)
    give bitwise the rows of the 200+-token pass."""
    m, t = case.model, case.tokens
    n_prefill, n = 30, 33
    kv = m.new_kv_cache(case.n_blocks, BLOCK)
    got = [_run(m, t[:n_prefill], case.n_blocks, kv=kv, rows=np.array([n_prefill - 1]))]
    for p in range(n_prefill, n):
        got.append(_run(m, t[p:p + 1], case.n_blocks, kv=kv, rows=np.array([0]), start=p))
    np.testing.assert_array_equal(np.concatenate(got), case.cpp[n_prefill - 1:n])


def test_precise_flag_is_validated(smollm2_path) -> None:
    with pytest.raises(ValueError, match="precise"):
        Model.load(smollm2_path, n_threads=1, precise="yes")


def test_llm_passes_precise_through(case: PreciseCase, smollm2_path, gemma3_path) -> None:
    """llamalite.LLM(..., precise=True): a precise model, an f32 cache, and its scores are
    the log-softmax of the precise logits."""
    import llamalite
    llm = llamalite.LLM(smollm2_path if case.name == "smollm2" else gemma3_path, n_ctx=64,
                        n_threads=2, precise=True)
    assert llm.model.precise and llm.engine.kv.dtype == "f32"
    ids = [int(t) for t in case.tokens[:12]]
    x = case.cpp[:12].astype(np.float64)
    want = x - x.max(1, keepdims=True)
    want -= np.log(np.exp(want).sum(1, keepdims=True))
    np.testing.assert_allclose(llm.logits(ids), want, atol=1e-4)


# --- a synthetic model with every quantized weight type, under every ISA ---------------------
E = FF = 256            # multiples of 256 so the K-quants fit
VOCAB, N_TOK = 128, 40

# Every quantized type the core multiplies appears once, and Q/K/V (gate/up) mix the
# 32-block and 256-block activation families, which precise mode serves with one float X.
SYNTH_TYPES = {
    "llama": dict(token_embd=T.Q4_0, output=T.Q6_K, attn_q=T.Q4_K, attn_k=T.Q8_0,
                  attn_v=T.Q5_1, attn_output=T.Q3_K, ffn_gate=T.Q2_K, ffn_up=T.IQ4_XS,
                  ffn_down=T.Q5_K),
    "gemma3": dict(token_embd=T.Q8_0, attn_q=T.IQ4_NL, attn_k=T.Q4_1, attn_v=T.Q6_K,
                   attn_output=T.Q5_0, ffn_gate=T.Q4_K, ffn_up=T.Q4_0, ffn_down=T.Q8_0),
}
SYNTH_TOL = 3e-4        # max |logit difference|; measured <= 6e-5 (llama), 1.4e-5 (gemma3)


def quantized_matrix(qtype: T, rows: int, cols: int, gain: float,
                     rng: np.random.Generator) -> np.ndarray:
    """uint8 [rows, row_bytes] of qtype whose values have rms about gain / sqrt(cols)."""
    if qtype in (T.Q4_0, T.Q4_1, T.Q5_0, T.Q5_1, T.Q8_0):
        w = rng.standard_normal((rows, cols)).astype(np.float32) * gain / np.sqrt(cols)
        return np.ascontiguousarray(quantize(w, qtype)).view(np.uint8).reshape(rows, -1)
    raw = random_blocks(qtype, rows, cols, rng)         # valid blocks, arbitrary size
    rms = float(np.sqrt((dequantize(raw, qtype).astype(np.float64) ** 2).mean()))
    c = gain / np.sqrt(cols) / rms                      # every value is linear in the fp16 scales
    blocks = raw.reshape(-1, GGML_QUANT_SIZES[qtype][1])  # [n_blocks, type_size]
    for off in _FP16_FIELDS[qtype]:
        f = blocks[:, off:off + 2].copy().view(np.float16).astype(np.float32) * c
        blocks[:, off:off + 2] = f.astype(np.float16).view(np.uint8).reshape(-1, 2)
    return blocks.reshape(rows, -1)


def write_quantized_model(path: Path, arch: str) -> Path:
    import gguf
    rng = np.random.default_rng(7)
    types = SYNTH_TYPES[arch]
    gemma = arch == "gemma3"
    n_layer, n_head, n_head_kv, hd = (6, 4, 2, 64) if gemma else (2, 4, 1, 64)
    w = gguf.GGUFWriter(str(path), arch)
    for add, v in ((w.add_block_count, n_layer), (w.add_context_length, 512),
                   (w.add_embedding_length, E), (w.add_feed_forward_length, FF),
                   (w.add_head_count, n_head), (w.add_head_count_kv, n_head_kv),
                   (w.add_key_length, hd), (w.add_value_length, hd),
                   (w.add_layer_norm_rms_eps, 1e-6), (w.add_vocab_size, VOCAB),
                   (w.add_rope_freq_base, 1e6 if gemma else 1e4)):
        add(v)
    if gemma:
        w.add_sliding_window(8)
        w.add_final_logit_softcapping(30.0)

    def mat(name: str, kind: str, rows: int, cols: int, gain: float = 1.0) -> None:
        q = quantized_matrix(types[kind], rows, cols, gain, rng)
        w.add_tensor(name, q, raw_dtype=types[kind])

    def norm(name: str, n: int) -> None:
        w.add_tensor(name, (1.0 + 0.1 * rng.standard_normal(n)).astype(np.float32))

    mat("token_embd.weight", "token_embd", VOCAB, E, 0.5 * np.sqrt(E))
    norm("output_norm.weight", E)
    if "output" in types:
        mat("output.weight", "output", VOCAB, E, 4.0)
    for il in range(n_layer):
        p = f"blk.{il}."
        norm(p + "attn_norm.weight", E)
        mat(p + "attn_q.weight", "attn_q", n_head * hd, E, 3.0)
        mat(p + "attn_k.weight", "attn_k", n_head_kv * hd, E, 3.0)
        mat(p + "attn_v.weight", "attn_v", n_head_kv * hd, E)
        mat(p + "attn_output.weight", "attn_output", E, n_head * hd)
        norm(p + "ffn_norm.weight", E)
        mat(p + "ffn_gate.weight", "ffn_gate", FF, E)
        mat(p + "ffn_up.weight", "ffn_up", FF, E)
        mat(p + "ffn_down.weight", "ffn_down", E, FF)
        if gemma:
            norm(p + "attn_q_norm.weight", hd)
            norm(p + "attn_k_norm.weight", hd)
            norm(p + "post_attention_norm.weight", E)
            norm(p + "post_ffw_norm.weight", E)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


@pytest.mark.parametrize("arch", sorted(SYNTH_TYPES))
def test_precise_synthetic_every_isa(arch, tmp_path) -> None:
    m = Model.load(write_quantized_model(tmp_path / f"{arch}.gguf", arch), n_threads=2,
                   precise=True)
    assert {int(m.gguf.tensors[f"blk.0.{k}.weight"].type) for k in SYNTH_TYPES[arch]
            if k.startswith(("attn", "ffn"))} == \
        {int(t) for k, t in SYNTH_TYPES[arch].items() if k.startswith(("attn", "ffn"))}
    tokens = np.random.default_rng(1).integers(0, VOCAB, N_TOK).astype(np.int32)
    ref = reference_logits(m.gguf, tokens, act_quant=False, kv_f16=False)
    assert np.abs(ref).max() > 3.0                      # not a degenerate model
    fast = reference_logits(m.gguf, tokens, kv_f16=False)
    assert np.abs(fast - ref).max() > 100 * SYNTH_TOL   # 8-bit rounding would show
    before = _core.active_isa()
    try:
        for isa in _core.supported_isas():
            _core.set_isa(isa)
            got = _run(m, tokens, 8, block=8)
            np.testing.assert_array_equal(got.argmax(1), ref.argmax(1), err_msg=isa)
            assert np.abs(got - ref).max() < SYNTH_TOL, (isa, np.abs(got - ref).max())
    finally:
        _core.set_isa(before)
