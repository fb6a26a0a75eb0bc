"""The forward pass's attention kernel (`_core.attention`) against a numpy softmax reference.

The cache is paged (random block tables), GQA groups 1, 3 and 4, head dims 64 and 256
(and an odd one for the SIMD tails), with and without a sliding window, float16 and
float32 storage, under every instruction set the machine has. Batch invariance: a
query's output is bitwise the same alone (decode) as inside a prefill tile of any
length and offset, beside other sequences, and however the heads are split.
"""
from __future__ import annotations

import numpy as np
import pytest

from llamalite import _core

ISAS = _core.supported_isas()


def make_cache(rng, n_blocks, block_size, n_kv, d, dv, dtype):
    k = rng.standard_normal((n_blocks, block_size, n_kv, d)).astype(dtype)
    v = rng.standard_normal((n_blocks, block_size, n_kv, dv)).astype(dtype)
    return k, v


def reference(k, v, q, positions, seq_ids, tables, scale, window):
    """float64 softmax(q k^T * scale) v over each token's own positions, head by head."""
    n, n_head, _ = q.shape
    bs, n_kv = k.shape[1], k.shape[2]
    group = n_head // n_kv
    out = np.zeros((n, n_head, v.shape[3]))
    for t in range(n):
        pos, table = int(positions[t]), tables[seq_ids[t]]
        p = np.arange(max(0, pos - window + 1) if window > 0 else 0, pos + 1)
        blocks, slots = table[p // bs], p % bs
        for h in range(n_head):
            keys = k[blocks, slots, h // group].astype(np.float64)       # [len(p), d]
            vals = v[blocks, slots, h // group].astype(np.float64)
            s = keys @ q[t, h].astype(np.float64) * scale
            w = np.exp(s - s.max())
            out[t, h] = (w / w.sum()) @ vals
    return out


def random_tables(rng, n_seqs, blocks_per_seq, n_blocks):
    ids = rng.permutation(n_blocks)[: n_seqs * blocks_per_seq]
    return ids.reshape(n_seqs, blocks_per_seq).astype(np.int32)


CASES = [  # n_head, n_head_kv, head_dim, head_dim_v, window
    (4, 4, 64, 64, 0),       # group 1
    (9, 3, 64, 64, 0),       # SmolLM2: group 3
    (4, 1, 256, 256, 0),     # Gemma 3 270M: group 4, global layer
    (4, 1, 256, 256, 37),    # Gemma 3 270M: sliding layer
    (6, 2, 64, 64, 20),      # group 3 with a window
    (2, 1, 20, 12, 0),       # dims that are not a multiple of any vector width
]


@pytest.mark.parametrize("isa", ISAS, indirect=True)
@pytest.mark.parametrize("dtype", [np.float16, np.float32])
@pytest.mark.parametrize("case", CASES, ids=lambda c: "h{}kv{}d{}dv{}w{}".format(*c))
def test_attention_vs_numpy(case, dtype, isa):
    n_head, n_kv, d, dv, window = case
    rng = np.random.default_rng(hash(case) % 2**32)
    bs, n_blocks = 16, 40
    k, v = make_cache(rng, n_blocks, bs, n_kv, d, dv, dtype)
    tables = random_tables(rng, 2, 12, n_blocks)
    # seq 0: a prefill chunk at positions 50..89 (not aligned to a chunk); seq 1: one decode token
    positions = np.concatenate([np.arange(50, 90), [150]]).astype(np.int32)
    seq_ids = np.array([0] * 40 + [1], np.int32)
    q = rng.standard_normal((len(positions), n_head, d)).astype(np.float32)
    scale = 1.0 / np.sqrt(d)
    got = _core.attention(k, v, q, positions, seq_ids, tables, scale, window)
    want = reference(k, v, q, positions, seq_ids, tables, scale, window)
    assert got.shape == want.shape and got.dtype == np.float32
    err = np.abs(got - want).max()
    assert err < 2e-5, f"{isa} {dtype.__name__}: max |diff| {err:.3g}"


@pytest.mark.parametrize("isa", ISAS, indirect=True)
@pytest.mark.parametrize("dtype", [np.float16, np.float32])
@pytest.mark.parametrize("case", [(9, 3, 64, 64, 0), (4, 1, 256, 256, 21)],
                         ids=["smollm2", "gemma3-sliding"])
def test_attention_is_batch_invariant(case, dtype, isa):
    n_head, n_kv, d, dv, window = case
    rng = np.random.default_rng(7)
    bs, n_blocks = 8, 64
    k, v = make_cache(rng, n_blocks, bs, n_kv, d, dv, dtype)
    tables = random_tables(rng, 2, 16, n_blocks)
    n = 45
    q = rng.standard_normal((n, n_head, d)).astype(np.float32)
    pos = np.arange(3, 3 + n, dtype=np.int32)
    zeros = np.zeros(n, np.int32)
    scale = 0.125

    def run(idx, tile=8, min_tasks=1, seqs=None):
        idx = np.asarray(idx)
        s = zeros[idx] if seqs is None else seqs
        return _core.attention(k, v, q[idx], pos[idx], s, tables, scale, window, tile, min_tasks)

    full = run(np.arange(n))
    for t in (0, 5, 16, 44):                                 # alone, as a decode step
        assert np.array_equal(run([t])[0], full[t]), f"token {t} alone differs"
        assert np.array_equal(run([t], min_tasks=64)[0], full[t]), f"token {t}, heads split"
    for lo, hi in ((1, 4), (7, 30), (13, 45)):               # prefill chunks at other offsets
        assert np.array_equal(run(np.arange(lo, hi)), full[lo:hi])
    for tile in (1, 3, 16):
        assert np.array_equal(run(np.arange(n), tile=tile), full), f"tile of {tile} tokens"
    # beside another sequence's tokens (interleaved) in one call
    other = rng.integers(0, n, 10)
    idx = np.concatenate([np.arange(20, 30), other])
    seqs = np.array([0] * 10 + [1] * 10, np.int32)
    mixed = run(idx, seqs=seqs)
    assert np.array_equal(mixed[:10], full[20:30])


def test_attention_rejects_bad_input():
    k = np.zeros((4, 8, 1, 16), np.float16)
    q = np.zeros((1, 2, 16), np.float32)
    ok = dict(positions=np.array([3], np.int32), seq_ids=np.array([0], np.int32),
              block_tables=np.array([[0, 1]], np.int32), scale=1.0)
    _core.attention(k, k, q, **ok)
    with pytest.raises(ValueError, match="same dtype"):
        _core.attention(k, k.astype(np.float32), q, **ok)
    with pytest.raises(ValueError, match="block id"):
        _core.attention(k, k, q, **{**ok, "block_tables": np.array([[9, 1]], np.int32)})
    with pytest.raises(ValueError, match="outside"):
        _core.attention(k, k, q, **{**ok, "positions": np.array([16], np.int32)})
    k2 = np.zeros((4, 8, 2, 16), np.float16)
    with pytest.raises(ValueError, match="multiple"):
        _core.attention(k2, k2, np.zeros((1, 3, 16), np.float32), **ok)
    with pytest.raises(ValueError, match="float16 or float32"):
        _core.attention(k.astype(np.float64), k.astype(np.float64), q, **ok)
