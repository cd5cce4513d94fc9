"""RFC 9162 hashing and proofs: published vectors, a naive reference tree, mutation
tables (after transparency-dev/merkle's verifier tests) and hypothesis properties."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from facelab.audit import rfc9162 as m
from facelab.audit._store import leaves_for_stored, new_hashes, stored_count, stored_index
from facelab.errors import MalformedProofError, ProofError, RootMismatchError
from hypothesis import given, settings
from hypothesis import strategies as st

V = json.loads((Path(__file__).parent / "vectors" / "audit" / "rfc6962.json").read_text())
LEAVES = [bytes.fromhex(x) for x in V["leaves_hex"]]
HASHES = [m.leaf_hash(x) for x in LEAVES]


# ---------------------------------------------------------------- naive reference tree
def naive_mth(data: list[bytes]) -> bytes:
    """MTH exactly as RFC 9162 2.1.1 writes it, recursively, from the leaf data."""
    if not data:
        return hashlib.sha256(b"").digest()
    if len(data) == 1:
        return hashlib.sha256(b"\x00" + data[0]).digest()
    k = 1
    while k * 2 < len(data):
        k *= 2
    return hashlib.sha256(b"\x01" + naive_mth(data[:k]) + naive_mth(data[k:])).digest()


def naive_path(i: int, data: list[bytes]) -> list[bytes]:
    if len(data) <= 1:
        return []
    k = 1
    while k * 2 < len(data):
        k *= 2
    if i < k:
        return [*naive_path(i, data[:k]), naive_mth(data[k:])]
    return [*naive_path(i - k, data[k:]), naive_mth(data[:k])]


def naive_subproof(mm: int, data: list[bytes], b: bool) -> list[bytes]:
    n = len(data)
    if mm == n:
        return [] if b else [naive_mth(data)]
    k = 1
    while k * 2 < n:
        k *= 2
    if mm <= k:
        return [*naive_subproof(mm, data[:k], b), naive_mth(data[k:])]
    return [*naive_subproof(mm - k, data[k:], False), naive_mth(data[:k])]


def data_of(n: int) -> list[bytes]:
    return [f"leaf-{i}".encode() for i in range(n)]


# ---------------------------------------------------------------- published vectors
def test_empty_root() -> None:
    assert m.EMPTY_ROOT.hex() == V["empty_root"]
    assert m.root_from_leaf_hashes([]).hex() == V["empty_root"]


@pytest.mark.parametrize("n", range(1, 9))
def test_roots_of_the_8_leaf_tree(n: int) -> None:
    assert m.root_from_leaf_hashes(HASHES[:n]).hex() == V["roots"][n - 1]


@pytest.mark.parametrize("case", V["inclusion"], ids=lambda c: f"{c['index']}of{c['size']}")
def test_inclusion_vectors_both_directions(case: dict) -> None:
    i, n = case["index"], case["size"]
    want = [bytes.fromhex(h) for h in case["proof"]]
    assert m.inclusion_proof(i, n, m.list_subtree(HASHES)) == want
    root = bytes.fromhex(V["roots"][n - 1])
    m.verify_inclusion(i, n, HASHES[i], want, root)


@pytest.mark.parametrize("case", V["consistency"], ids=lambda c: f"{c['old']}to{c['new']}")
def test_consistency_vectors_both_directions(case: dict) -> None:
    a, b = case["old"], case["new"]
    want = [bytes.fromhex(h) for h in case["proof"]]
    assert m.consistency_proof(a, b, m.list_subtree(HASHES)) == want
    m.verify_consistency(
        a, b, bytes.fromhex(V["roots"][a - 1]), bytes.fromhex(V["roots"][b - 1]), want
    )


# ---------------------------------------------------------------- against the naive tree
@pytest.mark.parametrize("n", [*range(1, 34), 64, 65, 100])
def test_every_proof_matches_the_naive_tree(n: int) -> None:
    data = data_of(n)
    hashes = [m.leaf_hash(d) for d in data]
    sub = m.list_subtree(hashes)
    root = naive_mth(data)
    assert m.root_from_leaf_hashes(hashes) == root
    for i in range(n):
        proof = m.inclusion_proof(i, n, sub)
        assert proof == naive_path(i, data)
        m.verify_inclusion(i, n, hashes[i], proof, root)
    for old in range(1, n + 1):
        proof = m.consistency_proof(old, n, sub)
        assert proof == naive_subproof(old, data, True)
        m.verify_consistency(old, n, naive_mth(data[:old]), root, proof)


# ---------------------------------------------------------------- mutation tables
def _flip(b: bytes, bit: int) -> bytes:
    x = bytearray(b)
    x[bit // 8] ^= 1 << (bit % 8)
    return bytes(x)


def inclusion_mutations(i: int, n: int, leaf: bytes, proof: list[bytes], root: bytes):
    """Every probe that must fail, after transparency-dev/merkle's verifier tests.

    Like theirs, no size +-1 probe: RFC 9162 proofs do not bind the size tightly
    (leaf 0's path in a tree of 3 also verifies for a tree of 4, same root bytes).
    """
    yield "index-1", (i - 1, n, leaf, proof, root)
    yield "index+1", (i + 1, n, leaf, proof, root)
    yield "size*2", (i, n * 2, leaf, proof, root)
    yield "size/2", (i, n // 2, leaf, proof, root)
    yield "wrong-leaf", (i, n, m.leaf_hash(b"WrongLeaf"), proof, root)
    yield "wrong-root", (i, n, leaf, proof, hashlib.sha256(b"WrongRoot").digest())
    yield "leaf-as-root", (i, n, root, proof, leaf) if root != leaf else None
    yield "empty-root", (i, n, leaf, proof, m.EMPTY_ROOT)
    if proof:
        yield "truncated", (i, n, leaf, proof[:-1], root)
        yield "first-dropped", (i, n, leaf, proof[1:], root)
    yield "extra-after", (i, n, leaf, [*proof, m.EMPTY_ROOT], root)
    yield "extra-before", (i, n, leaf, [m.EMPTY_ROOT, *proof], root)
    yield "bytes-after-element", (i, n, leaf, [p + b"\x00" for p in proof] or [b"\x00"], root)
    for j, p in enumerate(proof):
        for bit in (0, 7, 128, 255):
            bad = list(proof)
            bad[j] = _flip(p, bit)
            yield f"flip-{j}-{bit}", (i, n, leaf, bad, root)
        for k in range(j + 1, len(proof)):
            if proof[j] != proof[k]:
                swapped = list(proof)
                swapped[j], swapped[k] = swapped[k], swapped[j]
                yield f"swap-{j}-{k}", (i, n, leaf, swapped, root)


def consistency_mutations(a: int, b: int, ra: bytes, rb: bytes, proof: list[bytes]):
    yield "old-1", (a - 1, b, ra, rb, proof)
    yield "old+1", (a + 1, b, ra, rb, proof)
    yield "new*2", (a, b * 2, ra, rb, proof)
    yield "new/2", (a, b // 2, ra, rb, proof)
    yield "old*2", (a * 2, b, ra, rb, proof)
    yield "old/2", (a // 2, b, ra, rb, proof)
    yield "roots-swapped", (a, b, rb, ra, proof)
    yield "wrong-old-root", (a, b, hashlib.sha256(b"x").digest(), rb, proof)
    yield "wrong-new-root", (a, b, ra, hashlib.sha256(b"y").digest(), proof)
    yield "empty-proof", (a, b, ra, rb, [])
    if len(proof) > 1:
        yield "truncated", (a, b, ra, rb, proof[:-1])
        yield "first-dropped", (a, b, ra, rb, proof[1:])
    yield "extra-after", (a, b, ra, rb, [*proof, m.EMPTY_ROOT])
    yield "extra-before", (a, b, ra, rb, [m.EMPTY_ROOT, *proof])
    yield "bytes-before-element", (a, b, ra, rb, [b"\x00" + p for p in proof])
    for j, p in enumerate(proof):
        for bit in (0, 9, 200, 255):
            bad = list(proof)
            bad[j] = _flip(p, bit)
            yield f"flip-{j}-{bit}", (a, b, ra, rb, bad)


@pytest.mark.parametrize("n", [1, 2, 3, 5, 7, 8, 13, 31, 32, 33])
def test_every_inclusion_mutation_fails(n: int) -> None:
    data = data_of(n)
    hashes = [m.leaf_hash(d) for d in data]
    root = m.root_from_leaf_hashes(hashes)
    sub = m.list_subtree(hashes)
    for i in range(n):
        proof = m.inclusion_proof(i, n, sub)
        for name, args in inclusion_mutations(i, n, hashes[i], proof, root):
            if args is None:
                continue
            j, size = args[0], args[1]
            # a mutated index may land on an identical leaf in a valid tree; none does here
            with pytest.raises(ProofError):
                m.verify_inclusion(*args)
                pytest.fail(f"n={n} i={i} {name} (index {j}, size {size}) verified")


@pytest.mark.parametrize("n", [2, 3, 4, 5, 7, 8, 9, 16, 17, 31])
def test_every_consistency_mutation_fails(n: int) -> None:
    data = data_of(n)
    hashes = [m.leaf_hash(d) for d in data]
    sub = m.list_subtree(hashes)
    rb = m.root_from_leaf_hashes(hashes)
    for a in range(1, n):
        ra = m.root_from_leaf_hashes(hashes[:a])
        proof = m.consistency_proof(a, n, sub)
        for name, args in consistency_mutations(a, n, ra, rb, proof):
            with pytest.raises(ProofError):
                m.verify_consistency(*args)
                pytest.fail(f"n={n} old={a} {name} verified")


def test_root_mismatch_carries_both_roots() -> None:
    proof = m.inclusion_proof(5, 8, m.list_subtree(HASHES))
    wrong = hashlib.sha256(b"nope").digest()
    with pytest.raises(RootMismatchError) as e:
        m.verify_inclusion(5, 8, HASHES[5], proof, wrong)
    assert e.value.expected == wrong
    assert e.value.computed.hex() == V["roots"][7]


def test_preconditions_are_checked_first() -> None:
    with pytest.raises(MalformedProofError):
        m.inclusion_proof(3, 3, m.list_subtree(HASHES))
    with pytest.raises(MalformedProofError):
        m.root_from_inclusion_proof(0, 1, b"short", [])
    with pytest.raises(MalformedProofError):
        m.verify_consistency(5, 3, HASHES[0], HASHES[1], [])
    with pytest.raises(MalformedProofError):
        m.verify_consistency(0, 3, m.EMPTY_ROOT, HASHES[1], [HASHES[0]])


# ---------------------------------------------------------------- properties
leaf_lists = st.lists(st.binary(max_size=12), min_size=1, max_size=70)


@settings(max_examples=150, deadline=None)
@given(leaf_lists)
def test_every_prefix_tree_is_consistent_with_the_full_tree(data: list[bytes]) -> None:
    hashes = [m.leaf_hash(d) for d in data]
    sub = m.list_subtree(hashes)
    n = len(data)
    root = m.root_from_leaf_hashes(hashes)
    for old in range(0, n + 1):
        m.verify_consistency(
            old, n, m.root_from_leaf_hashes(hashes[:old]), root, m.consistency_proof(old, n, sub)
        )


@settings(max_examples=150, deadline=None)
@given(leaf_lists, st.data())
def test_any_changed_leaf_breaks_its_proof(data: list[bytes], draw) -> None:
    hashes = [m.leaf_hash(d) for d in data]
    n = len(data)
    i = draw.draw(st.integers(0, n - 1))
    new = draw.draw(st.binary(max_size=12).filter(lambda x: x != data[i]))
    root = m.root_from_leaf_hashes(hashes)
    proof = m.inclusion_proof(i, n, m.list_subtree(hashes))
    with pytest.raises(ProofError):
        m.verify_inclusion(i, n, m.leaf_hash(new), proof, root)
    changed = list(hashes)
    changed[i] = m.leaf_hash(new)
    assert m.root_from_leaf_hashes(changed) != root


# ---------------------------------------------------------------- the stored-hash layout
@settings(max_examples=60, deadline=None)
@given(st.integers(1, 300))
def test_stored_hash_layout_matches_a_naive_store(n: int) -> None:
    frontier: list = []
    stored: list[bytes] = []
    hashes = [m.leaf_hash(d) for d in data_of(n)]
    for j, h in enumerate(hashes):
        stored.extend(new_hashes(j, h, frontier))
    assert len(stored) == stored_count(n)
    assert leaves_for_stored(len(stored)) == n
    for level in range(n.bit_length()):
        for k in range(n >> level):
            lo, hi = k << level, (k + 1) << level
            assert stored[stored_index(level, k)] == m.root_from_leaf_hashes(hashes[lo:hi])


def test_a_consistency_proof_from_size_zero_needs_the_empty_tree_root() -> None:
    """RFC 9162 2.1.4: the empty tree's root is SHA-256 of nothing; from size 0 the
    proof is empty and any other old root (or one that is not 32 bytes) is refused."""
    root = m.root_from_leaf_hashes(HASHES[:3])
    m.verify_consistency(0, 3, hashlib.sha256(b"").digest(), root, [])  # positive control
    for bad in (HASHES[0], b"", b"\0" * 31, hashlib.sha256(b"").digest() + b"\0"):
        with pytest.raises(ProofError):
            m.verify_consistency(0, 3, bad, root, [])
    with pytest.raises(MalformedProofError):
        m.verify_consistency(0, 3, hashlib.sha256(b"").digest(), b"short", [])
