"""On-disk layout of the audit log and its derived hash store.

Files under ``LAB/audit/``::

    entries.jsonl      the entries, one canonical JSON line each (the source of truth)
    index.bin          8-byte big-endian end offset of every entry in entries.jsonl
    hashes.bin         32-byte stored hashes: every leaf hash and every complete subtree
    checkpoints/       <tree size, 12 digits>.note, one signed checkpoint per file
    lock               taken with flock(2) by every writer, for one order across processes

Stored-hash layout (hashes.bin). When leaf ``j`` (0-based) is appended we store its leaf
hash, then the hash of every complete subtree it closes, lowest level first: level ``l``
subtree ``k`` (leaves ``[k*2^l, (k+1)*2^l)``) closes with leaf ``j = (k+1)*2^l - 1``.
Before leaf ``j`` there are ``stored_count(j) = 2j - popcount(j)`` hashes, so::

    index(l, k) = stored_count((k + 1) * 2^l - 1) + l

Any MTH(D[lo:hi]) that a proof needs is a fold of O(log n) stored hashes: proofs never
read the entries. index.bin and hashes.bin are derived: recovery rebuilds them from the
entries, and ``facelab audit verify`` recomputes and compares them.
"""

from __future__ import annotations

import os
import struct
from pathlib import Path

from facelab import labfs
from facelab.audit.rfc9162 import EMPTY_ROOT, HASH_SIZE, node_hash, split_point


def stored_count(n: int) -> int:
    """Hashes stored for a log of ``n`` leaves."""
    return 2 * n - n.bit_count()


def stored_index(level: int, k: int) -> int:
    """Position in hashes.bin of the level-``level`` subtree number ``k``."""
    return stored_count(((k + 1) << level) - 1) + level


def leaves_for_stored(count: int) -> int:
    """The largest n with stored_count(n) <= count (for sizing a partial hashes.bin)."""
    n = count // 2
    while stored_count(n + 1) <= count:
        n += 1
    while n and stored_count(n) > count:
        n -= 1
    return n


def new_hashes(n: int, leaf: bytes, frontier: list[tuple[int, bytes]]) -> list[bytes]:
    """Stored hashes written when leaf ``n`` arrives; updates ``frontier`` in place.

    ``frontier`` holds the complete subtrees on the right edge as (level, hash), lowest
    level last; it is what appending needs and nothing more (O(log n)).
    """
    out = [leaf]
    level, h = 0, leaf
    while frontier and frontier[-1][0] == level:
        _, left = frontier.pop()
        h = node_hash(left, h)
        level += 1
        out.append(h)
    frontier.append((level, h))
    return out


def frontier_of(n: int, read_hash) -> list[tuple[int, bytes]]:
    """The right-edge complete subtrees of a tree of ``n`` leaves, read from storage."""
    frontier: list[tuple[int, bytes]] = []
    start = 0
    for level in range(n.bit_length() - 1, -1, -1):
        if n >> level & 1:
            frontier.append((level, read_hash(stored_index(level, start >> level))))
            start += 1 << level
    return frontier


def root_of(frontier: list[tuple[int, bytes]]) -> bytes:
    if not frontier:
        return EMPTY_ROOT
    h = frontier[-1][1]
    for _, left in reversed(frontier[:-1]):
        h = node_hash(left, h)
    return h


class HashFile:
    """Random access to hashes.bin; ``subtree(lo, hi)`` is MTH(D[lo:hi])."""

    def __init__(self, path: Path):
        self.path = path
        self._fd = labfs.open_regular(path)

    def close(self) -> None:
        os.close(self._fd)

    def read(self, index: int) -> bytes:
        b = os.pread(self._fd, HASH_SIZE, index * HASH_SIZE)
        if len(b) != HASH_SIZE:
            raise ValueError(f"{self.path}: no stored hash at {index}")
        return b

    def subtree(self, lo: int, hi: int) -> bytes:
        size = hi - lo
        if size <= 0:
            return EMPTY_ROOT
        if size & (size - 1) == 0 and lo % size == 0:
            return self.read(stored_index(size.bit_length() - 1, lo // size))
        k = split_point(size)
        return node_hash(self.subtree(lo, lo + k), self.subtree(lo + k, hi))


def read_offsets(path: Path) -> list[int]:
    try:
        data = labfs.read_bytes(path, labfs.LOG_MAX_BYTES, what="an index of the log")
    except FileNotFoundError:
        data = b""
    usable = len(data) - len(data) % 8
    return list(struct.unpack(f">{usable // 8}Q", data[:usable]))


def pack_offsets(offsets: list[int]) -> bytes:
    return struct.pack(f">{len(offsets)}Q", *offsets)
