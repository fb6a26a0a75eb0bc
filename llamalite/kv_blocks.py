"""Paged KV block manager: one pool of fixed-size blocks, per-sequence block tables,
and automatic prefix caching.

A *full* block's KV content is a pure function of every token up to its end (the forward
writes K/V before attending), so each full block is named by a hash chain
``hash(parent_hash, block_tokens)`` and shared between sequences with reference counts.
When the last user of a hashed block lets go it stays *cached*: still findable by its
hash, but evictable (least recently released first) whenever a fresh block is needed.
Partial blocks are private to their sequence and go straight back to the free list.

No model is needed here: the manager only hands out block ids.
"""
from __future__ import annotations

import hashlib
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

_ROOT_HASH = b"llamalite-kv-root"


class OutOfBlocks(RuntimeError):
    """The pool has no free or evictable block left (the engine then preempts or waits)."""


def block_hash(parent: bytes, block_tokens: Sequence[int]) -> bytes:
    """The name of a full block: a digest of its parent's name and its own tokens."""
    data = np.asarray(block_tokens, dtype=np.int64).tobytes()
    return hashlib.blake2b(parent + data, digest_size=16).digest()


@dataclass
class SeqBlocks:
    """The blocks of one sequence.

    table:  block ids in position order; token at position p lives in
            table[p // block_size], slot p % block_size.
    hashes: the chain hashes of the leading full blocks that are registered.
    """
    table: list[int] = field(default_factory=list)
    hashes: list[bytes] = field(default_factory=list)


@dataclass
class BlockStats:
    """A snapshot of the pool for /metrics and tests."""
    n_blocks: int
    used: int          # referenced by at least one sequence
    cached: int        # unreferenced but still findable by hash (evictable)
    free: int          # never filled or already evicted
    prefix_query_tokens: int
    prefix_hit_tokens: int
    evictions: int

    @property
    def hit_rate(self) -> float:
        """Fraction of prompt tokens that were found in the prefix cache."""
        if self.prefix_query_tokens == 0:
            return 0.0
        return self.prefix_hit_tokens / self.prefix_query_tokens


class BlockManager:
    """Reference-counted KV blocks with hash-chained prefix caching and LRU eviction.

    Not thread-safe: the engine's step thread is its only user.
    """

    def __init__(self, n_blocks: int, block_size: int = 16) -> None:
        if n_blocks <= 0:
            raise ValueError(f"n_blocks must be positive, got {n_blocks}")
        if block_size <= 0:
            raise ValueError(f"block_size must be positive, got {block_size}")
        self.n_blocks = n_blocks
        self.block_size = block_size
        self._ref = [0] * n_blocks                       # [n_blocks] users per block
        self._hash_of: list[bytes | None] = [None] * n_blocks
        self._by_hash: dict[bytes, int] = {}             # hash -> block id
        self._free: list[int] = list(range(n_blocks - 1, -1, -1))  # pop() gives 0 first
        self._lru: OrderedDict[int, None] = OrderedDict()  # unreferenced hashed blocks
        self._query_tokens = 0
        self._hit_tokens = 0
        self._evictions = 0

    # --- capacity -----------------------------------------------------------------------

    @property
    def n_available(self) -> int:
        """Blocks a new allocation can take: free ones plus evictable cached ones."""
        return len(self._free) + len(self._lru)

    def blocks_for(self, n_tokens: int) -> int:
        """How many blocks hold n_tokens positions."""
        return -(-n_tokens // self.block_size)

    # --- single blocks ------------------------------------------------------------------

    def _allocate(self) -> int:
        if self._free:
            block = self._free.pop()
        elif self._lru:
            block, _ = self._lru.popitem(last=False)     # least recently released
            old = self._hash_of[block]
            if old is not None:
                del self._by_hash[old]
                self._hash_of[block] = None
            self._evictions += 1
        else:
            raise OutOfBlocks(f"all {self.n_blocks} KV blocks are in use")
        self._ref[block] = 1
        return block

    def _acquire(self, block: int) -> None:
        if self._ref[block] == 0:
            self._lru.pop(block, None)
        self._ref[block] += 1

    def _release(self, block: int) -> None:
        if self._ref[block] <= 0:
            raise RuntimeError(f"KV block {block} released more often than acquired")
        self._ref[block] -= 1
        if self._ref[block] == 0:
            if self._hash_of[block] is not None:
                self._lru[block] = None                  # most recently released: evicted last
            else:
                self._free.append(block)

    # --- sequences ----------------------------------------------------------------------

    def match_prefix(self, tokens: Sequence[int]) -> int:
        """How many leading tokens of `tokens` are in cached full blocks (no side effects)."""
        parent = _ROOT_HASH
        n = 0
        bs = self.block_size
        while n + bs <= len(tokens):
            h = block_hash(parent, tokens[n:n + bs])
            if h not in self._by_hash:
                break
            parent = h
            n += bs
        return n

    def start_sequence(self, tokens: Sequence[int]) -> tuple[SeqBlocks, int]:
        """Open a sequence for a prompt; share the cached full blocks of its prefix.

        Returns the sequence's blocks and how many prompt tokens are already computed.
        At least one prompt token is always left to compute (its logits start decoding).
        """
        seq = SeqBlocks()
        bs = self.block_size
        limit = ((len(tokens) - 1) // bs) * bs if tokens else 0
        parent = _ROOT_HASH
        n = 0
        while n + bs <= limit:
            h = block_hash(parent, tokens[n:n + bs])
            block = self._by_hash.get(h)
            if block is None:
                break
            self._acquire(block)
            seq.table.append(block)
            seq.hashes.append(h)
            parent = h
            n += bs
        self._query_tokens += len(tokens)
        self._hit_tokens += n
        return seq, n

    def ensure_capacity(self, seq: SeqBlocks, n_tokens: int) -> None:
        """Grow the sequence's table to hold positions [0, n_tokens). Raises OutOfBlocks
        (leaving the table unchanged) when the pool cannot supply enough blocks."""
        need = self.blocks_for(n_tokens) - len(seq.table)
        if need <= 0:
            return
        if need > self.n_available:
            raise OutOfBlocks(f"need {need} more KV blocks, {self.n_available} available")
        for _ in range(need):
            seq.table.append(self._allocate())

    def commit_full_blocks(self, seq: SeqBlocks, tokens: Sequence[int], n_computed: int) -> None:
        """Name every block that is now full of computed tokens so later prompts can share it.

        tokens: the sequence's tokens (at least n_computed of them).
        If an identical block is already registered (two prompts computed it at once),
        the sequence keeps its own copy and the registered one stays the shared one.
        """
        bs = self.block_size
        while (len(seq.hashes) + 1) * bs <= n_computed:
            i = len(seq.hashes)
            parent = seq.hashes[-1] if seq.hashes else _ROOT_HASH
            h = block_hash(parent, tokens[i * bs:(i + 1) * bs])
            block = seq.table[i]
            if h not in self._by_hash and self._hash_of[block] is None:
                self._by_hash[h] = block
                self._hash_of[block] = h
            seq.hashes.append(h)

    def free_sequence(self, seq: SeqBlocks) -> None:
        """Release every block of a finished or cancelled sequence.

        Tail blocks are released first so the LRU evicts them before the shared prefix roots.
        """
        for block in reversed(seq.table):
            self._release(block)
        seq.table.clear()
        seq.hashes.clear()

    # --- counters -----------------------------------------------------------------------

    def stats(self) -> BlockStats:
        """Current counts; used + cached + free == n_blocks always."""
        return BlockStats(
            n_blocks=self.n_blocks,
            used=self.n_blocks - len(self._free) - len(self._lru),
            cached=len(self._lru),
            free=len(self._free),
            prefix_query_tokens=self._query_tokens,
            prefix_hit_tokens=self._hit_tokens,
            evictions=self._evictions,
        )

    def ref_count(self, block: int) -> int:
        """Users of one block (for tests)."""
        return self._ref[block]
