"""Block manager: allocation, prefix sharing by hash chain, reference counts, LRU eviction."""
from __future__ import annotations

import pytest

from llamalite.kv_blocks import BlockManager, OutOfBlocks, block_hash


def run_prompt(bm: BlockManager, tokens: list[int]):
    """Open a sequence for tokens, give it blocks and mark every token computed."""
    seq, n_hit = bm.start_sequence(tokens)
    bm.ensure_capacity(seq, len(tokens))
    bm.commit_full_blocks(seq, tokens, len(tokens))
    return seq, n_hit


def check_invariants(bm: BlockManager) -> None:
    s = bm.stats()
    assert s.used + s.cached + s.free == s.n_blocks


def test_allocation_and_free():
    bm = BlockManager(8, 4)
    seq, hit = run_prompt(bm, list(range(10)))       # 3 blocks: 2 full + 1 partial
    assert hit == 0 and len(seq.table) == 3 and len(set(seq.table)) == 3
    assert len(seq.hashes) == 2
    s = bm.stats()
    assert (s.used, s.cached, s.free) == (3, 0, 5)
    bm.free_sequence(seq)
    s = bm.stats()
    assert (s.used, s.cached, s.free) == (0, 2, 6)    # full blocks stay findable
    check_invariants(bm)


def test_prefix_shared_with_refcounts():
    bm = BlockManager(16, 4)
    a, _ = run_prompt(bm, list(range(12)) + [100, 101])
    b, hit = bm.start_sequence(list(range(12)) + [200])
    assert hit == 12 and b.table == a.table[:3]
    for blk in a.table[:3]:
        assert bm.ref_count(blk) == 2
    assert bm.stats().hit_rate == pytest.approx(12 / (14 + 13))
    bm.free_sequence(a)
    for blk in b.table:
        assert bm.ref_count(blk) == 1
    bm.free_sequence(b)
    check_invariants(bm)


def test_prefix_is_a_chain_not_a_block_match():
    """The same block of tokens after a different prefix is a different block."""
    bm = BlockManager(16, 4)
    run_prompt(bm, [1, 2, 3, 4, 5, 6, 7, 8, 9])
    assert bm.match_prefix([9, 9, 9, 9, 5, 6, 7, 8, 0]) == 0
    assert bm.match_prefix([1, 2, 3, 4, 5, 6, 7, 9, 0]) == 4
    assert bm.match_prefix([1, 2, 3, 4, 5, 6, 7, 8, 0]) == 8
    assert block_hash(b"x", [1, 2]) != block_hash(b"y", [1, 2])


def test_last_token_is_always_computed():
    bm = BlockManager(16, 4)
    run_prompt(bm, list(range(8)))
    _, hit = bm.start_sequence(list(range(8)))     # whole prompt cached: recompute last block
    assert hit == 4
    _, hit = bm.start_sequence(list(range(9)))
    assert hit == 8


def test_lru_eviction_order_and_reuse():
    bm = BlockManager(4, 2)
    a, _ = run_prompt(bm, [1, 2, 3, 4])             # 2 full blocks
    bm.free_sequence(a)                             # both cached; tail released first
    b, _ = run_prompt(bm, [5, 6, 7, 8])
    bm.free_sequence(b)
    assert bm.stats().cached == 4
    c, hit = bm.start_sequence([9, 10, 11])
    assert hit == 0
    bm.ensure_capacity(c, 3)                        # 2 evictions: a's tail, then a's root
    assert bm.stats().evictions == 2
    assert bm.match_prefix([1, 2, 3, 4, 0]) == 0    # a's root evicted...
    assert bm.match_prefix([5, 6, 7, 8, 0]) == 4    # ...b intact
    bm.free_sequence(c)
    check_invariants(bm)


def test_cached_block_reacquired_leaves_lru():
    bm = BlockManager(3, 2)
    a, _ = run_prompt(bm, [1, 2, 3])
    bm.free_sequence(a)
    b, hit = bm.start_sequence([1, 2, 9])
    assert hit == 2 and bm.stats().cached == 0
    bm.ensure_capacity(b, 3)
    c, _ = bm.start_sequence([7])
    bm.ensure_capacity(c, 1)
    with pytest.raises(OutOfBlocks):                # the shared block was not evictable
        bm.ensure_capacity(c, 3)
    assert len(c.table) == 1                        # unchanged on failure
    check_invariants(bm)


def test_duplicate_block_computed_twice_is_kept_private():
    bm = BlockManager(8, 2)
    a, _ = bm.start_sequence([1, 2, 3])
    b, _ = bm.start_sequence([1, 2, 4])
    bm.ensure_capacity(a, 3)
    bm.ensure_capacity(b, 3)
    bm.commit_full_blocks(a, [1, 2, 3], 3)
    bm.commit_full_blocks(b, [1, 2, 4], 3)
    bm.free_sequence(a)
    bm.free_sequence(b)
    s = bm.stats()
    assert (s.cached, s.used) == (1, 0)
    check_invariants(bm)


def test_out_of_blocks_and_release_errors():
    bm = BlockManager(2, 2)
    a, _ = bm.start_sequence([1])
    with pytest.raises(OutOfBlocks):
        bm.ensure_capacity(a, 5)
    with pytest.raises(ValueError):
        BlockManager(0, 16)
    with pytest.raises(ValueError):
        BlockManager(4, 0)


def test_many_sequences_random_churn():
    import random
    rng = random.Random(0)
    bm = BlockManager(64, 4)
    live = []
    prefixes = [[rng.randrange(50) for _ in range(12)] for _ in range(3)]
    for _ in range(300):
        if live and (rng.random() < 0.5 or bm.n_available < 6):
            bm.free_sequence(live.pop(rng.randrange(len(live))))
        else:
            toks = rng.choice(prefixes) + [rng.randrange(50) for _ in range(rng.randrange(1, 9))]
            seq, hit = bm.start_sequence(toks)
            assert hit % 4 == 0 and hit < len(toks)
            bm.ensure_capacity(seq, len(toks))
            bm.commit_full_blocks(seq, toks, len(toks))
            live.append(seq)
        check_invariants(bm)
    for seq in live:
        bm.free_sequence(seq)
    assert bm.stats().used == 0 and bm.stats().hit_rate > 0.3
