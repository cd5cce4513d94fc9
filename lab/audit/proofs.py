"""Proofs served from the log's stored hashes in O(log n) reads, never the whole log."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from facelab import labfs
from facelab.audit import rfc9162
from facelab.audit._store import HashFile, leaves_for_stored
from facelab.audit.log import ENTRIES, HASHES, INDEX
from facelab.errors import BadInputError


@dataclass(frozen=True)
class InclusionProof:
    entry: int
    tree_size: int
    leaf_hash: bytes
    proof: list[bytes]
    entry_line: bytes

    def to_json(self) -> dict:
        return {
            "entry": self.entry,
            "tree_size": self.tree_size,
            "leaf_hash": self.leaf_hash.hex(),
            "proof": [p.hex() for p in self.proof],
            "entry_json": self.entry_line.decode("utf-8"),
        }


def stored_size(audit_dir: Path) -> int:
    """How many leaves hashes.bin covers."""
    return leaves_for_stored((audit_dir / HASHES).stat().st_size // 32)


def prove_inclusion(audit_dir: Path | str, entry: int, tree_size: int) -> InclusionProof:
    """Inclusion proof of ``entry`` in the tree of ``tree_size`` leaves (RFC 9162 2.1.3)."""
    d = Path(audit_dir)
    if not 0 <= entry < tree_size:
        raise BadInputError(f"--entry {entry} is outside the tree of size {tree_size}")
    if tree_size > stored_size(d):
        raise BadInputError(f"{d / HASHES}: covers fewer than {tree_size} entries")
    hf = HashFile(d / HASHES)
    try:
        proof = rfc9162.inclusion_proof(entry, tree_size, hf.subtree)
        leaf = hf.subtree(entry, entry + 1)
    finally:
        hf.close()
    with labfs.open_file(d / INDEX) as f:
        f.seek(max(0, entry - 1) * 8)
        raw = f.read(16 if entry else 8)
    ends = [int.from_bytes(raw[i : i + 8], "big") for i in range(0, len(raw), 8)]
    start, stop = (0, ends[0]) if entry == 0 else (ends[0], ends[1])
    with labfs.open_file(d / ENTRIES) as f:
        f.seek(start)
        line = f.read(stop - start).rstrip(b"\n")
    return InclusionProof(entry, tree_size, leaf, proof, line)


def prove_consistency(audit_dir: Path | str, old_size: int, new_size: int) -> list[bytes]:
    d = Path(audit_dir)
    if new_size > stored_size(d):
        raise BadInputError(f"{d / HASHES}: covers fewer than {new_size} entries")
    hf = HashFile(d / HASHES)
    try:
        return rfc9162.consistency_proof(old_size, new_size, hf.subtree)
    finally:
        hf.close()


def verify_inclusion_document(doc: object, key) -> dict:
    """Check the JSON of ``facelab audit prove`` with the lab's public key only.

    The checkpoint note must verify under ``key`` (C2SP signed note), the entry's bytes
    must hash to the leaf hash (RFC 9162 leaf), and the proof must lead from that leaf
    to the checkpoint's root at the checkpoint's size (RFC 9162 2.1.3.2). A field the
    prover does not write, or a ``root`` other than the checkpoint's, is refused: a
    document that verifies holds no false claim. Returns
    ``{"entry", "tree_size", "origin"}``; raises ``NoteError`` or ``ProofError`` (exit 4).
    """
    from facelab.audit import checkpoint as ckpt
    from facelab.errors import MalformedProofError

    try:
        assert isinstance(doc, dict)
        extra = set(doc) - _PROOF_FIELDS
        if extra:
            raise ValueError(f"fields no inclusion proof has: {sorted(extra)[:5]}")
        if "verified" in doc and not isinstance(doc["verified"], bool):
            raise TypeError("verified must be true or false")
        note = str(doc["checkpoint"]).encode()
        entry, size = doc["entry"], doc["tree_size"]
        line = str(doc["entry_json"]).encode("utf-8")
        leaf = bytes.fromhex(doc["leaf_hash"])
        path = [bytes.fromhex(h) for h in doc["proof"]]
        if not all(isinstance(x, int) and not isinstance(x, bool) for x in (entry, size)):
            raise TypeError("entry and tree_size must be integers")
    except (AssertionError, KeyError, TypeError, ValueError) as e:
        raise MalformedProofError(f"not an inclusion proof document ({e})") from e
    cp = ckpt.verify(note, key)
    if cp.size != size:
        raise MalformedProofError(f"proof is for size {size}, its checkpoint for {cp.size}")
    if rfc9162.leaf_hash(line) != leaf:
        raise MalformedProofError("entry_json does not hash to leaf_hash")
    if "root" in doc and doc["root"] != cp.root.hex():
        # every claim in the document must be true, not only the ones the check needs
        raise MalformedProofError("the document's root is not its checkpoint's root")
    rfc9162.verify_inclusion(entry, size, leaf, path, cp.root)
    return {"entry": entry, "tree_size": size, "origin": cp.origin}


# what ``facelab audit prove`` writes; "root" (the checkpoint's, hex) and "verified" (the
# prover's own check) are redundant and must agree; nothing else may be in a proof
_PROOF_FIELDS = {
    "entry",
    "tree_size",
    "leaf_hash",
    "proof",
    "entry_json",
    "checkpoint",
    "root",
    "verified",
}
