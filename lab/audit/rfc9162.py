"""RFC 9162 section 2.1 Merkle trees: hashes, proofs and their verifiers (pure functions).

Format (RFC 9162 2.1.1, SHA-256)::

    leaf_hash(d)      = SHA-256(0x00 || d)
    node_hash(l, r)   = SHA-256(0x01 || l || r)
    MTH({})           = SHA-256("")
    MTH(D[0:1])       = leaf_hash(d0)
    MTH(D[0:n])       = node_hash(MTH(D[0:k]), MTH(D[k:n]))
                        where k is the largest power of two smaller than n

Inclusion proof PATH(m, D[0:n]) (2.1.3.1): empty for n == 1; otherwise, with k as above,
PATH(m, D[0:k]) + [MTH(D[k:n])] if m < k, else PATH(m - k, D[k:n]) + [MTH(D[0:k])].

Consistency proof PROOF(m, D[0:n]) = SUBPROOF(m, D[0:n], true) (2.1.4.1), where
SUBPROOF(m, D, b) is [] if m == n and b, [MTH(D)] if m == n and not b, and otherwise
SUBPROOF(m, D[0:k], b) + [MTH(D[k:n])] if m <= k, else
SUBPROOF(m - k, D[k:n], false) + [MTH(D[0:k])].

Proof generators take ``subtree(lo, hi) -> MTH(D[lo:hi])`` so the same code runs on an
in-memory list and on the log's stored hashes (O(log n) reads). The verifiers follow the
RFC's algorithms (2.1.3.2, 2.1.4.2), know nothing of the writer, compute a root first and
then compare (``root_from_*``, then ``verify_*``, which raises ``RootMismatchError``
carrying both roots, as transparency-dev/merkle does).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence

from facelab.errors import MalformedProofError, RootMismatchError

HASH_SIZE = 32
EMPTY_ROOT = hashlib.sha256(b"").digest()

Subtree = Callable[[int, int], bytes]


def leaf_hash(data: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def split_point(n: int) -> int:
    """The largest power of two smaller than ``n`` (n >= 2)."""
    return 1 << ((n - 1).bit_length() - 1)


def root_from_leaf_hashes(hashes: Sequence[bytes]) -> bytes:
    """MTH of the leaves with these hashes, in O(n) time and O(log n) memory."""
    if not hashes:
        return EMPTY_ROOT
    # A stack of complete subtrees, largest first, merged like a binary counter.
    stack: list[tuple[int, bytes]] = []
    for h in hashes:
        size, node = 1, h
        while stack and stack[-1][0] == size:
            s, left = stack.pop()
            node = node_hash(left, node)
            size += s
        stack.append((size, node))
    _, root = stack.pop()
    while stack:
        _, left = stack.pop()
        root = node_hash(left, root)
    return root


def list_subtree(hashes: Sequence[bytes]) -> Subtree:
    """``subtree(lo, hi)`` over an in-memory list of leaf hashes (the reference source)."""
    return lambda lo, hi: root_from_leaf_hashes(hashes[lo:hi])


def inclusion_proof(index: int, size: int, subtree: Subtree) -> list[bytes]:
    """PATH(index, D[0:size]) (RFC 9162 2.1.3.1)."""
    if not 0 <= index < size:
        raise MalformedProofError(f"leaf index {index} is outside a tree of size {size}")
    proof: list[bytes] = []
    lo, hi, m = 0, size, index
    while hi - lo > 1:
        k = split_point(hi - lo)
        if m < k:
            proof.append(subtree(lo + k, hi))
            hi = lo + k
        else:
            proof.append(subtree(lo, lo + k))
            lo, m = lo + k, m - k
    proof.reverse()  # the recursion appends bottom-up; we descended top-down
    return proof


def consistency_proof(old_size: int, new_size: int, subtree: Subtree) -> list[bytes]:
    """PROOF(old_size, D[0:new_size]) (RFC 9162 2.1.4.1); empty when old is 0 or new."""
    if not 0 <= old_size <= new_size:
        raise MalformedProofError(f"cannot prove size {old_size} consistent with {new_size}")
    if old_size in (0, new_size):
        return []
    proof: list[bytes] = []
    lo, hi, m, whole = 0, new_size, old_size, True
    while m != hi - lo:
        k = split_point(hi - lo)
        if m <= k:
            proof.append(subtree(lo + k, hi))
            hi = lo + k
        else:
            proof.append(subtree(lo, lo + k))
            lo, m, whole = lo + k, m - k, False
    if not whole:
        proof.append(subtree(lo, hi))
    proof.reverse()
    return proof


def _check_hashes(proof: Sequence[bytes]) -> None:
    for i, p in enumerate(proof):
        if not isinstance(p, bytes | bytearray) or len(p) != HASH_SIZE:
            raise MalformedProofError(f"proof element {i} is not a {HASH_SIZE}-byte hash")


def root_from_inclusion_proof(index: int, size: int, leaf: bytes, proof: Sequence[bytes]) -> bytes:
    """The root that ``proof`` implies for leaf hash ``leaf`` at ``index`` (2.1.3.2)."""
    if not 0 <= index < size:
        raise MalformedProofError(f"leaf index {index} is outside a tree of size {size}")
    if len(leaf) != HASH_SIZE:
        raise MalformedProofError(f"leaf hash is not {HASH_SIZE} bytes")
    _check_hashes(proof)
    fn, sn, r = index, size - 1, bytes(leaf)
    for p in proof:
        if sn == 0:
            raise MalformedProofError(f"proof has {len(proof)} elements, too many for the tree")
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                while not fn & 1 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise MalformedProofError(f"proof has {len(proof)} elements, too few for the tree")
    return r


def verify_inclusion(
    index: int, size: int, leaf: bytes, proof: Sequence[bytes], root: bytes
) -> None:
    """Raise unless ``proof`` shows leaf hash ``leaf`` at ``index`` in the tree ``root``."""
    computed = root_from_inclusion_proof(index, size, leaf, proof)
    if computed != root:
        raise RootMismatchError(computed, bytes(root))


def roots_from_consistency_proof(
    old_size: int, new_size: int, old_root: bytes, proof: Sequence[bytes]
) -> tuple[bytes, bytes]:
    """The (old, new) roots that ``proof`` implies (RFC 9162 2.1.4.2).

    Preconditions: 0 < old_size < new_size and a non-empty proof. (Equal sizes and the
    empty old tree are handled by ``verify_consistency``.)
    """
    if not 0 < old_size < new_size:
        raise MalformedProofError(f"sizes {old_size} -> {new_size} need 0 < old < new")
    if not proof:
        raise MalformedProofError("empty consistency proof for different sizes")
    _check_hashes(proof)
    path = list(proof)
    if old_size & (old_size - 1) == 0:  # exact power of two: the old root is a node
        path.insert(0, bytes(old_root))
    fn, sn = old_size - 1, new_size - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            raise MalformedProofError(f"proof has {len(proof)} elements, too many")
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            if not fn & 1:
                while not fn & 1 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise MalformedProofError(f"proof has {len(proof)} elements, too few")
    return fr, sr


def verify_consistency(
    old_size: int, new_size: int, old_root: bytes, new_root: bytes, proof: Sequence[bytes]
) -> None:
    """Raise unless ``proof`` shows the tree ``new_root`` extends the tree ``old_root``."""
    if not 0 <= old_size <= new_size:
        raise MalformedProofError(f"sizes {old_size} -> {new_size} shrink")
    if old_size == new_size:
        if proof:
            raise MalformedProofError("a proof between equal sizes must be empty")
        if old_root != new_root:
            raise RootMismatchError(bytes(new_root), bytes(old_root), "equal-size root")
        return
    if old_size == 0:
        # RFC 9162 2.1.4: every tree extends the empty tree, whose root is MTH({}) =
        # SHA-256(""); the proof is empty and the old root must be exactly that hash.
        if proof:
            raise MalformedProofError("a proof from the empty tree must be empty")
        if len(new_root) != HASH_SIZE:
            raise MalformedProofError(f"new root is not a {HASH_SIZE}-byte hash")
        if bytes(old_root) != EMPTY_ROOT:
            raise RootMismatchError(EMPTY_ROOT, bytes(old_root), "old (empty-tree) root")
        return
    fr, sr = roots_from_consistency_proof(old_size, new_size, old_root, proof)
    if fr != old_root:
        raise RootMismatchError(fr, bytes(old_root), "old root")
    if sr != new_root:
        raise RootMismatchError(sr, bytes(new_root), "new root")
