"""The C++ forward pass against the numpy reference and llama.cpp's recorded logits.

Text: tests/data/forward_text.txt (226 SmolLM2 tokens, 225 Gemma 3 tokens), tokenized
by llama.cpp and recorded with its logits by tests/tools/record_forward_reference.py.
The expensive full passes (C++ and numpy) run once per pytest run and model.
These tests check the fast path (8-bit activations, near-tie exceptions below); the tight
check (same top-1 at every position, max |diff| < 5e-4) is precise mode against the float
reference, in test_forward_precise.py.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from llamalite.errors import GGUFError
from llamalite.model import Model
from reference import load_weights, reference_logits

DATA = Path(__file__).parent / "data" / "forward_reference.npz"
NAMES = ("smollm2", "gemma3")
BLOCK = 16

# Why top-1 cannot match at literally every position, and the bounds below.
# Like llama.cpp, the core rounds every activation row to 8-bit blocks before a quantized
# matmul, and the reference does the same. That rounding makes these small models chaotic
# under float noise: a 1e-7 change flips a few of ~10^5 roundings per token, and the flips
# that land in outlier blocks move logits by up to ~1. Measured: the reference computed
# with float32 instead of float64 matmuls moves by max 1.37 / mean 0.16 and changes top-1
# at 8 of 226 positions (SmolLM2; Gemma 3: max 2.12 / mean 0.19, 11 of 225), i.e. as much
# as the C++ core differs from it (SmolLM2 6 positions, Gemma 3 14, all near ties).
# So top-1 must agree wherever the top-2 logits are not a near tie (NEAR_TIE), and the
# bounds are on max and mean |logit difference| over all positions and the whole vocab.
REF_MAX = {"smollm2": 1.5, "gemma3": 2.5}
REF_MEAN = {"smollm2": 0.25, "gemma3": 0.3}
# llama.cpp is no steadier: the recorded data holds how far llama.cpp's own logits move
# when the same text is evaluated one token at a time instead of in one batch
# (SmolLM2: top-1 216/226, max 1.18, mean 0.13; Gemma 3: 217/225, 0.89, 0.19 over the
# top-32 logits). The core must stay within 1.5x of that yardstick.
SELF_SLACK = 1.5
NEAR_TIE = 0.35


def near_tie_exceptions(got: np.ndarray, want_top1: np.ndarray, want_margin: np.ndarray,
                        max_differ: int | None = None):
    """Positions whose top-1 differs; asserts each is a near tie in the expected logits."""
    differ = np.nonzero(got.argmax(1) != want_top1)[0]
    max_differ = len(want_top1) // 10 if max_differ is None else max_differ
    assert (want_margin[differ] < NEAR_TIE).all(), \
        f"top-1 differs at {differ.tolist()} with margins {want_margin[differ]}"
    assert differ.size <= max_differ, f"too many top-1 differences: {differ.tolist()}"
    return differ


@pytest.fixture(scope="session")
def recorded() -> dict[str, np.ndarray]:
    with np.load(DATA) as d:
        return {k: d[k] for k in d.files}


def _tables(n_seqs: int, n_blocks_each: int) -> np.ndarray:
    """Disjoint block tables: sequence s owns blocks [s * n, (s + 1) * n)."""
    return np.arange(n_seqs * n_blocks_each, dtype=np.int32).reshape(n_seqs, n_blocks_each)


def run_one(model: Model, tokens: np.ndarray, start: int = 0, kv=None, rows=None,
            dtype: str = "f16") -> np.ndarray:
    """Teacher-forced logits of one sequence placed at positions start.. (block table row 0)."""
    n = len(tokens)
    kv = kv if kv is not None else model.new_kv_cache(32, BLOCK, dtype=dtype)
    rows = np.arange(n) if rows is None else rows
    return model.forward(kv, tokens, np.arange(start, start + n), np.zeros(n, np.int32),
                         _tables(1, 32), rows)


class Case:
    """A real model with its full passes, computed once per pytest run."""

    def __init__(self, name: str, path: Path, recorded: dict[str, np.ndarray]) -> None:
        self.name = name
        self.path = path
        self.tokens = recorded[f"{name}_tokens"]
        self.model = Model.load(path, n_threads=2)
        self._cpp: np.ndarray | None = None
        self._ref: np.ndarray | None = None

    @property
    def cpp(self) -> np.ndarray:     # [n, n_vocab]
        if self._cpp is None:
            self._cpp = run_one(self.model, self.tokens)
        return self._cpp

    @property
    def ref(self) -> np.ndarray:     # [n, n_vocab]
        if self._ref is None:
            self._ref = reference_logits(self.model.gguf, self.tokens, kv_f16=True)
        return self._ref


_CASES: dict[str, Case] = {}


@pytest.fixture(scope="session", params=NAMES)
def case(request, smollm2_path, gemma3_path, recorded) -> Case:
    name = request.param
    if name not in _CASES:
        _CASES[name] = Case(name, smollm2_path if name == "smollm2" else gemma3_path, recorded)
    return _CASES[name]


# --- correctness against independent results ------------------------------------------
def test_matches_numpy_reference(case: Case) -> None:
    assert len(case.tokens) >= 200
    cpp, ref = case.cpp, case.ref
    assert cpp.shape == ref.shape == (len(case.tokens), case.model.n_vocab)
    assert np.isfinite(cpp).all()
    top2 = np.sort(ref, axis=1)[:, -2:]
    near_tie_exceptions(cpp, ref.argmax(1), top2[:, 1] - top2[:, 0])
    diff = np.abs(cpp - ref)
    assert diff.max() < REF_MAX[case.name] and diff.mean() < REF_MEAN[case.name]


def test_f32_kv_cache_matches_numpy_reference(case: Case) -> None:
    """The exact float32 cache against the reference without float16 K/V rounding."""
    n = 128
    cpp = run_one(case.model, case.tokens[:n], dtype="f32")
    ref = reference_logits(case.model.gguf, case.tokens[:n], kv_f16=False)
    top2 = np.sort(ref, axis=1)[:, -2:]
    near_tie_exceptions(cpp, ref.argmax(1), top2[:, 1] - top2[:, 0])
    diff = np.abs(cpp - ref)
    assert diff.max() < REF_MAX[case.name] and diff.mean() < REF_MEAN[case.name]
    assert not np.array_equal(cpp, case.cpp[:n])          # the f16 cache really rounds


def test_matches_llama_cpp(case: Case, recorded) -> None:
    cpp, n = case.cpp, len(case.tokens)
    top_ids, top_vals = recorded[f"{case.name}_top_ids"], recorded[f"{case.name}_top_vals"]
    np.testing.assert_array_equal(case.tokens, recorded[f"{case.name}_tokens"])
    diff = np.abs(np.take_along_axis(cpp, top_ids, axis=1) - top_vals)
    assert diff.max() < SELF_SLACK * recorded[f"{case.name}_self_max"]
    assert diff.mean() < SELF_SLACK * recorded[f"{case.name}_self_mean"]
    self_differ = n - int(recorded[f"{case.name}_self_top1"])
    near_tie_exceptions(cpp, recorded[f"{case.name}_argmax"], top_vals[:, 0] - top_vals[:, 1],
                        max_differ=2 * self_differ + 2)
    # the whole distribution: log-sum-exp per position
    c64 = cpp.astype(np.float64)
    mx = c64.max(1)
    lse = mx + np.log(np.exp(c64 - mx[:, None]).sum(1))
    assert np.abs(lse - recorded[f"{case.name}_lse"]).max() < SELF_SLACK * recorded[f"{case.name}_self_max"]


def test_repacked_weights_match_ggml_rows(case: Case, recorded, monkeypatch) -> None:
    """Layer weights of the 32-value types are repacked at load (the x8 layout); the
    ggml-row kernels give the same logits up to float summation order. Its effect
    (8-bit activation roundings flipping downstream) stays within llama.cpp's own
    batched-vs-sequential drift, and top-1 differs only at near ties."""
    assert case.model._native.n_x8 > 0
    monkeypatch.setenv("LLAMALITE_REPACK", "0")
    plain = Model.load(case.path, n_threads=2)
    assert plain._native.n_x8 == 0
    n = 128
    a, b = case.cpp[:n], run_one(plain, case.tokens[:n])
    top_ids = recorded[f"{case.name}_top_ids"][:n]   # where llama.cpp's drift was measured
    diff = np.abs(np.take_along_axis(a, top_ids, axis=1) - np.take_along_axis(b, top_ids, axis=1))
    assert diff.max() < SELF_SLACK * recorded[f"{case.name}_self_max"]
    assert diff.mean() < SELF_SLACK * recorded[f"{case.name}_self_mean"]
    top2 = np.sort(b, axis=1)[:, -2:]
    near_tie_exceptions(a, b.argmax(1), top2[:, 1] - top2[:, 0])


# --- the KV cache and batching ----------------------------------------------------------
def test_incremental_decode_matches_full_pass(case: Case) -> None:
    """Prefill, then one token per step through the KV cache == the teacher-forced pass."""
    n, n_prefill = 64, 56
    tokens = case.tokens[:n]
    kv = case.model.new_kv_cache(32, BLOCK)
    got = [run_one(case.model, tokens[:n_prefill], kv=kv, rows=np.array([n_prefill - 1]))]
    for p in range(n_prefill, n):
        got.append(run_one(case.model, tokens[p:p + 1], start=p, kv=kv, rows=np.array([0])))
    np.testing.assert_array_equal(np.concatenate(got), case.cpp[n_prefill - 1:n])


def test_two_sequences_batched_equal_each_alone(case: Case) -> None:
    """Tokens of two sequences interleaved in one step give bitwise the logits of each alone."""
    m = case.model
    a, b = case.tokens[:40], case.tokens[100:130]
    alone_a, alone_b = run_one(m, a), run_one(m, b)
    np.testing.assert_array_equal(alone_a, case.cpp[:40])       # causal: a prefix of the text
    kv = m.new_kv_cache(64, BLOCK)
    order = np.argsort(np.concatenate([np.arange(40) * 3, np.arange(30) * 4 + 1]), kind="stable")
    tokens = np.concatenate([a, b])[order]
    positions = np.concatenate([np.arange(40), np.arange(30)])[order]
    seq_ids = np.concatenate([np.zeros(40, np.int32), np.ones(30, np.int32)])[order]
    tables = np.stack([np.arange(0, 8), np.arange(20, 28)]).astype(np.int32)  # disjoint blocks
    logits = m.forward(kv, tokens, positions, seq_ids, tables, np.arange(70))
    np.testing.assert_array_equal(logits[np.argsort(order)[:40]], alone_a)
    np.testing.assert_array_equal(logits[np.argsort(order)[40:]], alone_b)


def test_decode_step_with_prefill_chunk_of_another_sequence(case: Case) -> None:
    """A decode token of sequence 0 beside a prefill chunk of sequence 1 in the same step."""
    m = case.model
    kv = m.new_kv_cache(64, BLOCK)
    tables = np.stack([np.arange(0, 8), np.arange(8, 16)]).astype(np.int32)
    t = case.tokens
    m.forward(kv, t[:20], np.arange(20), np.zeros(20, np.int32), tables, [])    # seq 0 prefill
    step = m.forward(kv, np.concatenate([t[20:21], t[:12]]),
                     np.concatenate([[20], np.arange(12)]),
                     np.array([0] + [1] * 12, np.int32), tables, [0, 12])
    np.testing.assert_array_equal(step[0], case.cpp[20])
    np.testing.assert_array_equal(step[1], case.cpp[11])


def test_shared_prefix_blocks_and_copy_block(case: Case) -> None:
    """Sequence 1 reuses sequence 0's two full prefix blocks (prefix caching) and only
    computes its own continuation; a copied block serves as well as the original."""
    m, t = case.model, case.tokens
    kv = m.new_kv_cache(16, BLOCK)
    tables = np.array([[0, 1, 2, 3], [0, 1, 5, 6]], np.int32)     # blocks 0, 1 shared
    m.forward(kv, t[:32], np.arange(32), np.zeros(32, np.int32), tables, [])
    got = m.forward(kv, t[32:40], np.arange(32, 40), np.ones(8, np.int32), tables, np.arange(8))
    np.testing.assert_array_equal(got, case.cpp[32:40])
    kv.copy_block(1, 9)
    tables = np.array([[0, 9, 10, 11]], np.int32)
    got = m.forward(kv, t[32:34], [32, 33], [0, 0], tables, [0, 1])
    np.testing.assert_array_equal(got, case.cpp[32:34])


def test_logit_rows_select_rows(case: Case) -> None:
    rows = np.array([5, 0, 5, 31])
    got = run_one(case.model, case.tokens[:32], rows=rows)
    np.testing.assert_array_equal(got, case.cpp[rows])
    assert run_one(case.model, case.tokens[:4], rows=np.array([], np.int32)).shape == \
        (0, case.model.n_vocab)


def test_thread_count_does_not_change_logits(case: Case) -> None:
    one = Model.load(case.path, n_threads=1)
    assert one.n_threads == 1
    np.testing.assert_array_equal(run_one(one, case.tokens[:24]), case.cpp[:24])


def test_gemma3_sliding_window_matches_reference(gemma3_path, recorded) -> None:
    """Shrink the window to 8 so the 5-of-6 local layers really slide on a short text.

    A window this small takes the model far out of distribution, where the 8-bit rounding
    chaos (see above) is larger, so the check is relative: the core must sit several times
    closer to the reference with the same window than to the reference with window 7 or 9
    (an off-by-one in the mask), measured over positions 8.. where the window bites."""
    tokens = recorded["gemma3_tokens"][:40]
    m = Model.load(gemma3_path, n_threads=2, hparams_overrides={"sliding_window": 8})
    assert [m.hparams.is_sliding(il) for il in range(6)] == [True] * 5 + [False]
    got = run_one(m, tokens)[8:]
    dist = {w: np.abs(got - reference_logits(m.gguf, tokens, sliding_window=w,
                                             kv_f16=True)[8:]).mean()
            for w in (7, 8, 9)}
    assert dist[8] < REF_MEAN["gemma3"] * 1.5
    assert dist[8] * 2.5 < min(dist[7], dist[9]), dist


# --- the interface ----------------------------------------------------------------------
def test_hparams(smollm2_path, gemma3_path) -> None:
    s = Model.load(smollm2_path, n_threads=1)
    h = s.hparams
    assert (s.arch, h.n_vocab, h.n_embd, h.n_layer, h.n_head, h.n_head_kv, h.head_dim) == \
        ("llama", 49152, 576, 30, 9, 3, 64)
    assert (h.rope_base, h.rope_neox, h.sliding_window, h.embd_scale) == (100000.0, False, 0, 1.0)
    g = Model.load(gemma3_path, n_threads=1).hparams
    assert (g.arch, g.n_vocab, g.n_embd, g.n_layer, g.n_head, g.n_head_kv, g.head_dim) == \
        ("gemma3", 262144, 640, 18, 4, 1, 256)
    assert (g.rope_base, g.rope_base_swa, g.rope_neox, g.sliding_window) == (1e6, 1e4, True, 512)
    assert g.attn_scale == pytest.approx(1 / 16) and g.embd_scale == pytest.approx(640 ** 0.5)
    assert [il for il in range(18) if not g.is_sliding(il)] == [5, 11, 17]


def test_reference_weights_agree_with_loader(smollm2_path) -> None:
    w = load_weights(smollm2_path)
    assert w.arch == "llama" and "blk.29.ffn_down.weight" in w.names


@pytest.fixture(scope="module")
def small(smollm2_path):
    m = Model.load(smollm2_path, n_threads=1)
    return m, m.new_kv_cache(4, BLOCK)


@pytest.mark.parametrize("kwargs, message", [
    (dict(tokens=[49152]), "token id 49152"),
    (dict(tokens=[-1]), "token id -1"),
    (dict(seq_ids=[1]), "seq_id 1"),
    (dict(positions=[64]), "position 64"),
    (dict(positions=[-1]), "position -1"),
    (dict(block_tables=[[4, 1]]), "not a block id"),
    (dict(positions=[20], block_tables=[[0, -1]]), "not a block id"),
    (dict(logit_rows=[1]), "logit row 1"),
    (dict(positions=[0, 1]), "same length"),
    (dict(tokens=[1.5]), "integers"),
    (dict(block_tables=[0, 1]), "2-D"),
    (dict(tokens=[2 ** 40]), "int32"),
    (dict(tokens=[], positions=[], seq_ids=[], logit_rows=[]), "at least one token"),
])
def test_bad_inputs_raise_value_error(small, kwargs, message) -> None:
    m, kv = small
    args = dict(tokens=[1], positions=[0], seq_ids=[0], block_tables=[[0, 1, 2, 3]], logit_rows=[0])
    args.update(kwargs)
    with pytest.raises(ValueError, match=message):
        m.forward(kv, **args)


def test_kv_cache_of_another_model_is_refused(small, gemma3_path) -> None:
    m, _ = small
    other = Model.load(gemma3_path, n_threads=1)
    with pytest.raises(ValueError, match="KVCache"):
        m.forward(other.new_kv_cache(2), [1], [0], [0], [[0]], [0])
    with pytest.raises(ValueError, match="n_blocks"):
        m.new_kv_cache(0)
    with pytest.raises(ValueError, match="dtype"):
        m.new_kv_cache(2, dtype="q8")
    assert m.new_kv_cache(2, 16).dtype == "f16"
    kv32 = m.new_kv_cache(2, 16, dtype="f32")
    h = m.hparams
    assert kv32.nbytes == 2 * h.n_layer * 2 * 16 * h.n_head_kv * h.head_dim * 4


def test_unsupported_architecture_is_refused(tmp_path) -> None:
    import gguf
    path = tmp_path / "gpt2.gguf"
    w = gguf.GGUFWriter(str(path), "gpt2")
    w.add_block_count(1)
    w.add_embedding_length(32)
    w.add_tensor("token_embd.weight", np.zeros((8, 32), np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    import re
    from llamalite.model import SUPPORTED_ARCHS
    want = re.escape(f"'gpt2' is not supported (supported: {', '.join(SUPPORTED_ARCHS)})")
    with pytest.raises(GGUFError, match=want):
        Model.load(path)


@pytest.mark.parametrize("kind", ["silu", "gelu"])
def test_gated_activation_kernels_every_isa(kind) -> None:
    """The SIMD exp behind silu/gelu against float64 numpy, under every ISA the CPU has."""
    from llamalite import _core
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.standard_normal(997) * 4, [0.0, -0.0, 1e-30, 50, -50, 120, -120]])
    x = x.astype(np.float32)
    up = rng.standard_normal(x.size).astype(np.float32)
    x64 = x.astype(np.float64)
    if kind == "silu":
        act = x64 / (1 + np.exp(-x64))
    else:
        act = 0.5 * x64 * (1 + np.tanh(np.sqrt(2 / np.pi) * (x64 + 0.044715 * x64 ** 3)))
    want = act * up
    before = _core.active_isa()
    try:
        for isa in _core.supported_isas():
            _core.set_isa(isa)
            for n in (x.size, 13, 1):                       # vector bodies and tails
                got = _core.gated_activation(kind, x[:n], up[:n])
                err = np.abs(got - want[:n])
                assert (err <= 2e-6 * np.abs(want[:n]) + 1e-7 * np.abs(x64[:n] * up[:n])).all(), isa
    finally:
        _core.set_isa(before)
