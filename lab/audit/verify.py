"""Verify a whole audit log from its files, independently of the writer.

``verify_log`` recomputes every leaf hash and the whole stored-hash tree from
entries.jsonl, checks each entry's form and sequence number, checks every checkpoint's
signature against the trusted key and its root against the recomputed tree, and compares
the derived files (index.bin, hashes.bin). It reports every damage found, each with its
kind and the first entry it concerns:

    signing-key-replaced   the lab's public key differs from the one the log was started
                           with (entry 0 records it), or checkpoints verify only under it
    lab-replaced           the directory held another lab (origin) when this machine last
                           saw it (``pins``; reported by ``facelab audit verify``)
    unrecorded-destruction a lab-signed destruction certificate that no ``vault.destroy``
                           entry records: the log rolled back past a destruction
                           (reported by ``facelab audit verify``)
    forged-checkpoint      a checkpoint whose signature does not verify, or malformed
    truncated              the log is shorter than a signed checkpoint
    rolled-back            the log has fewer entries than the signed head this machine
                           saw last (``pins``; red team 14d, c01)
    witness-rolled-back    a witness's cosignature below the size this machine saw it
                           cosign, or deleted (``pins``; red team 14f, 03 and 04)
    deleted-entry          a gap in the sequence numbers
    reordered-entries      a sequence number lower than its position
    edited-entry           an entry whose hash differs from the stored hash or from what
                           the signed checkpoints commit to
    corrupt-entry          a line that is not a canonical audit entry
    torn-tail / garbage-tail  bytes after the last complete entry
    hash-store-mismatch    derived files that disagree with the entries
    head-missing           the log has entries but no signed head (``LAB/keys/audit_head.*``)
    unsigned-tail          entries that no signed checkpoint covers (a forged append, a
                           head slot rolled back, or a writer killed between its fsync
                           and its signature; only a writer, which holds the MAC key,
                           can tell the authentic ones, see ``events``)
    split-view             two signed checkpoints at one size with different roots
    unwitnessed            a witness is registered but no valid cosigned checkpoint
                           covers all but ``max_unwitnessed`` entries
    forged-cosignature     a witness's cosigned checkpoint that does not verify

Trust: without an outside reference, someone who holds the lab key and rewrites
everything consistently cannot be caught locally. ``trusted_key`` (a key kept outside
the lab) and ``witness`` (a checkpoint a witness kept, see ``facelab audit checkpoint``)
close that gap.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from facelab import labfs
from facelab.audit import checkpoint as ckpt
from facelab.audit import rfc9162
from facelab.audit._store import (
    leaves_for_stored,
    new_hashes,
    stored_count,
    stored_index,
)
from facelab.audit.events import parse_entry
from facelab.audit.log import ENTRIES, HASHES, INDEX, checkpoint_files
from facelab.audit.witness import note_file_name
from facelab.errors import BadInputError, NoteError


@dataclass(frozen=True)
class Damage:
    kind: str
    entry: int | None
    message: str


@dataclass
class VerifyReport:
    entries: int = 0
    checkpoints: int = 0
    latest_size: int = 0
    head_size: int = 0
    unsigned_tail: int = 0
    witnesses: list[dict] = field(default_factory=list)
    damage: list[Damage] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    scan: _Scan | None = field(default=None, repr=False, compare=False)

    @property
    def intact(self) -> bool:
        return not self.damage

    def first(self) -> Damage | None:
        return self.damage[0] if self.damage else None

    def to_json(self) -> dict:
        return {
            "intact": self.intact,
            "entries": self.entries,
            "checkpoints": self.checkpoints,
            "latest_checkpoint_size": self.latest_size,
            "head_size": self.head_size,
            "unsigned_tail": self.unsigned_tail,
            "witnesses": self.witnesses,
            "damage": [d.__dict__ for d in self.damage],
            "warnings": self.warnings,
        }


@dataclass
class _Scan:
    """What the verifier computed from the entries, for the writer to start from."""

    lines: list[bytes]
    ends: list[int]
    tree: _Tree
    head: object  # facelab.audit._head.Head | None


class _Tree:
    """The stored-hash array recomputed in memory; subtree() as in the on-disk store."""

    def __init__(self, leaves: list[bytes]):
        self.hashes: list[bytes] = []
        frontier: list[tuple[int, bytes]] = []
        for n, leaf in enumerate(leaves):
            self.hashes.extend(new_hashes(n, leaf, frontier))

    def subtree(self, lo: int, hi: int) -> bytes:
        size = hi - lo
        if size <= 0:
            return rfc9162.EMPTY_ROOT
        if size & (size - 1) == 0 and lo % size == 0:
            return self.hashes[stored_index(size.bit_length() - 1, lo // size)]
        k = rfc9162.split_point(size)
        return rfc9162.node_hash(self.subtree(lo, lo + k), self.subtree(lo + k, hi))

    def root(self, size: int) -> bytes:
        return self.subtree(0, size)


def _genesis_key(first_line: bytes | None) -> str | None:
    if first_line is None:
        return None
    try:
        obj = json.loads(first_line)
        return obj["details"]["public_key"] if obj.get("action") == "lab.init" else None
    except (ValueError, KeyError, TypeError, AttributeError, RecursionError):
        return None


def verify_log(
    audit_dir: Path | str,
    origin: str,
    lab_key: Ed25519PublicKey,
    *,
    trusted_key: Ed25519PublicKey | None = None,
    witness: str | bytes | None = None,
    head_dir: Path | str | None = None,
    max_unwitnessed: int | None = None,
    check_witnesses: bool = True,
    require_witness: bool = False,
    pinned_head: bytes | None = None,
    pinned_from: str = "",
    pinned_witnesses: dict[str, int] | None = None,
) -> VerifyReport:
    """Verify everything under ``audit_dir``; see the module docstring for the checks.

    ``head_dir`` holds the signed head (default ``audit_dir/../keys``). Witnesses are
    the ones the log itself registered (``audit.witness_add`` entries); when there is
    one, a cosigned checkpoint in ``audit_dir/witness/`` must cover all but
    ``max_unwitnessed`` entries (default 1024). ``check_witnesses=False`` skips that
    requirement (the writer: appending never waits for a witness).

    ``pinned_head`` is the largest signed head this machine has seen (``pins``, from the
    file ``pinned_from``): a log with fewer entries is ``rolled-back``, one whose tree at
    its size has another root is ``edited-entry``, and a note that does not verify under
    the lab key is ``forged-checkpoint``. (A damaged head slot over entries that are
    all there is the writer's to recover: the entries carry the lab's MAC.)
    ``pinned_witnesses`` (witness name -> the largest size this machine saw it cosign):
    a cosignature deleted or rolled back below it is ``witness-rolled-back``.
    """
    from facelab.audit import _head
    from facelab.labdir import public_key_b64, public_key_from_b64

    d = Path(audit_dir)
    hd = Path(head_dir) if head_dir is not None else d.parent / "keys"
    rep = VerifyReport()
    damage = rep.damage
    try:
        data = labfs.read_bytes(d / ENTRIES, labfs.LOG_MAX_BYTES, what="an audit log to verify")
    except FileNotFoundError as e:
        raise BadInputError(f"{d / ENTRIES}: no audit log here") from e
    registered: dict[str, str] = {}

    # 1. entries: form and sequence
    parts = data.split(b"\n")
    tail = parts.pop()  # bytes after the last newline ("" when the file ends cleanly)
    leaves: list[bytes] = []
    seqs: list[int | None] = []
    seq_damage = None
    for i, line in enumerate(parts):
        leaves.append(rfc9162.leaf_hash(line))
        try:
            obj = parse_entry(line)
            seqs.append(obj["seq"])
            if obj["action"] == "audit.witness_add" and isinstance(obj["details"], dict):
                registered[str(obj["details"].get("name"))] = str(obj["details"].get("vkey"))
        except ValueError as e:
            seqs.append(None)
            last = i == len(parts) - 1
            kind = "garbage-tail" if last and not tail else "corrupt-entry"
            damage.append(Damage(kind, i, f"line {i + 1} of {ENTRIES}: {e}"))
            seq_damage = i if seq_damage is None else seq_damage
    first_off = next((i for i, s in enumerate(seqs) if s is not None and s != i), None)
    if first_off is not None:
        seq = seqs[first_off]
        assert seq is not None
        later = set(seqs[first_off + 1 :])
        if first_off in later or seq < first_off:
            damage.append(
                Damage(
                    "reordered-entries",
                    first_off,
                    f"position {first_off} holds seq {seq}: entries were moved or duplicated",
                )
            )
        else:
            damage.append(
                Damage(
                    "deleted-entry",
                    first_off,
                    f"entry {first_off} is missing: "
                    f"position {first_off} holds seq {seq} "
                    f"({seq - first_off} entries gone)",
                )
            )
        seq_damage = first_off if seq_damage is None else min(seq_damage, first_off)
    if tail:
        kind = "torn-tail" if tail.startswith(b'{"') else "garbage-tail"
        damage.append(
            Damage(
                kind,
                len(parts),
                f"{len(tail)} bytes after entry {len(parts) - 1} are not a complete entry",
            )
        )
    n = rep.entries = len(leaves)

    # 2. derived files: the stored leaf hashes localise an edited entry
    tree = _Tree(leaves)
    need = stored_count(n) * 32  # never more is read: a 1 TiB sparse file is not loaded
    stored, stored_size = labfs.read_prefix(d / HASHES, need)
    if stored_size > need:
        damage.append(
            Damage(
                "hash-store-mismatch",
                None,
                f"{HASHES} is {stored_size} bytes, longer than the {need} its {n} entries "
                "need (facelab audit repair rebuilds it)",
            )
        )
    covered = min(leaves_for_stored(len(stored) // 32), n)  # a crash leaves it short
    first_edit = None
    for i in range(covered):
        j = stored_index(0, i) * 32
        if stored[j : j + 32] != leaves[i]:
            first_edit = i
            break
    if first_edit is None and stored[: stored_count(covered) * 32] != b"".join(
        tree.hashes[: stored_count(covered)]
    ):
        damage.append(
            Damage(
                "hash-store-mismatch",
                None,
                f"{HASHES} disagrees with the entries' subtree hashes",
            )
        )
    if covered < n:
        rep.warnings.append(
            f"{HASHES} covers {covered} of {n} entries (crash?); the writer rebuilds it on open"
        )
    raw_index, index_size = labfs.read_prefix(d / INDEX, n * 8)
    offsets = list(struct.unpack(f">{len(raw_index) // 8}Q", raw_index[: len(raw_index) // 8 * 8]))
    if index_size > n * 8:
        damage.append(
            Damage("hash-store-mismatch", None, f"{INDEX} is longer than its {n} entries need")
        )
    ends, pos = [], 0
    for line in parts:
        pos += len(line) + 1
        ends.append(pos)
    if offsets != ends[: len(offsets)]:
        damage.append(
            Damage("hash-store-mismatch", None, f"{INDEX} disagrees with the entries' positions")
        )

    # 3. keys: the lab's key must be the one entry 0 recorded
    genesis = _genesis_key(parts[0] if parts else None)
    key = trusted_key
    if genesis is not None:
        if genesis != public_key_b64(lab_key):
            damage.append(
                Damage(
                    "signing-key-replaced",
                    0,
                    "the lab's public key is not the one recorded in entry 0 (lab.init)",
                )
            )
        if key is None:
            key = public_key_from_b64(genesis, f"{ENTRIES} entry 0")
    elif n:
        rep.warnings.append("entry 0 is not lab.init with the lab key: trusting keys/")
    if key is None:
        key = lab_key
    if trusted_key is None and witness is None:
        rep.warnings.append(
            "trust on first use: the lab key checked is the one the log presents; a "
            "rewrite of the whole log under another key is caught only from outside "
            "(--trusted-key, --witness, `facelab audit witness`, or the next writer)"
        )

    # 4. checkpoints: signature, size, root
    edited_below: int | None = None
    for path in checkpoint_files(d):
        note = b""
        try:
            note = ckpt.read_note_file(path)
            cp = ckpt.verify(note, key, origin)
        except NoteError as e:
            other = None
            if key is not lab_key:
                try:
                    other = ckpt.verify(note, lab_key, origin)
                except NoteError:
                    other = None
            kind = "signing-key-replaced" if other is not None else "forged-checkpoint"
            damage.append(Damage(kind, None, f"{path.name}: {e}"))
            continue
        rep.checkpoints += 1
        if path.stem != f"{cp.size:012d}":
            damage.append(
                Damage(
                    "forged-checkpoint", None, f"{path.name} holds a checkpoint of size {cp.size}"
                )
            )
        rep.latest_size = max(rep.latest_size, cp.size)
        if cp.size > n:
            damage.append(
                Damage(
                    "truncated",
                    n,
                    f"the log has {n} entries but {path.name} was signed at size {cp.size}",
                )
            )
        elif tree.root(cp.size) != cp.root:
            edited_below = cp.size if edited_below is None else min(edited_below, cp.size)
    if edited_below is not None and (seq_damage is None or seq_damage >= edited_below):
        if first_edit is not None and first_edit < edited_below:
            damage.append(
                Damage(
                    "edited-entry",
                    first_edit,
                    f"entry {first_edit} differs "
                    "from its stored hash and from the signed checkpoints",
                )
            )
        else:
            damage.append(
                Damage(
                    "edited-entry",
                    None,
                    "an entry below size "
                    f"{edited_below} differs from what the checkpoint signed "
                    "(hash store rewritten too)",
                )
            )
    elif first_edit is not None and (seq_damage is None or seq_damage > first_edit):
        if first_edit < rep.latest_size:
            # the entry agrees with what the checkpoints signed: the derived store is wrong
            damage.append(
                Damage(
                    "hash-store-mismatch",
                    first_edit,
                    f"{HASHES} holds a wrong "
                    f"leaf hash for entry {first_edit}; the entries match the "
                    "signed checkpoints (facelab audit repair rebuilds it)",
                )
            )
        else:
            damage.append(
                Damage(
                    "edited-entry",
                    first_edit,
                    f"entry {first_edit}, after "
                    "the last signed checkpoint, differs from its stored hash",
                )
            )

    # 4b. the signed head kept outside the log directory, and split views
    signed: dict[int, tuple[bytes, str]] = {}

    def _signed(size: int, root: bytes, source: str) -> None:
        if size in signed and signed[size][0] != root:
            damage.append(
                Damage(
                    "split-view",
                    None,
                    f"{source} and {signed[size][1]} sign size {size} with different roots",
                )
            )
        signed.setdefault(size, (root, source))

    for path in checkpoint_files(d):
        try:
            cp = ckpt.verify(ckpt.read_note_file(path), key, origin)
        except (NoteError, OSError):
            continue
        _signed(cp.size, cp.root, path.name)
    hs = _head.read(hd, key, origin)
    rep.warnings.extend(f"head slot {p}" for p in hs.problems if "split view" not in p)
    for p in hs.problems:
        if "split view" in p:
            damage.append(Damage("split-view", None, p))
    head = hs.head
    if head is None:
        if n:
            damage.append(
                Damage(
                    "head-missing",
                    None,
                    f"the log has {n} entries but no signed head in {hd} (deleted?)",
                )
            )
    else:
        hcp = head.checkpoint
        rep.head_size = hcp.size
        _signed(hcp.size, hcp.root, _head.SLOTS[head.slot])
        if hcp.size > n:
            damage.append(
                Damage(
                    "truncated",
                    n,
                    f"the log has {n} entries but its signed head is at size {hcp.size} "
                    "(cut or rolled back)",
                )
            )
        elif tree.root(hcp.size) != hcp.root:
            damage.append(
                Damage(
                    "edited-entry",
                    first_edit if first_edit is not None and first_edit < hcp.size else None,
                    f"the entries below size {hcp.size} differ from what the signed head "
                    "commits to",
                )
            )
        if n and not checkpoint_files(d):
            damage.append(
                Damage(
                    "checkpoint-missing",
                    None,
                    f"the head is at size {hcp.size} but "
                    f"{d / 'checkpoints'} holds no checkpoint (deleted)",
                )
            )
    rep.latest_size = max(rep.latest_size, rep.head_size)

    # 5. an outside witness's checkpoint; 5b. the largest signed head this machine has
    # seen (pins): anchors outside the lab, checked alike
    def _anchor(note: bytes, what: str, short_kind: str, short: str, edited: str) -> None:
        try:
            acp = ckpt.verify(note, key, origin)
        except NoteError as e:
            damage.append(Damage("forged-checkpoint", None, f"{what}: {e}"))
            return
        if acp.size > n:
            damage.append(Damage(short_kind, n, short.format(size=acp.size)))
        elif tree.root(acp.size) != acp.root:
            damage.append(Damage("edited-entry", None, edited.format(size=acp.size)))

    if witness is not None:
        _anchor(
            witness,
            "witness checkpoint",
            "truncated",
            "a witness holds size {size}",
            "the log is not consistent with the witness's checkpoint at size {size}",
        )
    if pinned_head is not None:
        where = pinned_from or "this machine's pin file"
        _anchor(
            pinned_head,
            f"the head pinned in {where}",
            "rolled-back",
            f"this machine saw a signed head at size {{size}} ({where}); the log has {n} "
            "entries: cut or rolled back (a backup restored?)",
            f"the entries below size {{size}} differ from the signed head this machine saw "
            f"({where}): rewritten",
        )

    # 6. witnesses the log registered, and their cosigned checkpoints
    allowed = 1024 if max_unwitnessed is None else max_unwitnessed
    best = 0
    for name, vk in sorted(registered.items()):
        state = {"name": name, "cosigned_size": None, "time": None, "valid": False}
        rep.witnesses.append(state)
        try:
            wname, _, wkey = ckpt.parse_vkey(vk)
            if wname != name:
                raise NoteError("vkey names another witness")
        except NoteError as e:
            damage.append(Damage("forged-cosignature", None, f"witness {name}: {e}"))
            continue
        path = d / "witness" / note_file_name(name)
        try:
            note = ckpt.read_note_file(path)
        except FileNotFoundError:
            continue
        except (OSError, NoteError) as e:
            damage.append(Damage("forged-cosignature", None, f"{path.name}: {e}"))
            continue
        try:
            wcp = ckpt.verify(note, key, origin)
            state["time"] = ckpt.verify_cosignature(note, name, wkey)
        except NoteError as e:
            damage.append(Damage("forged-cosignature", None, f"{path.name}: {e}"))
            continue
        state["cosigned_size"] = wcp.size
        _signed(wcp.size, wcp.root, f"witness {name}")
        if wcp.size > n:
            damage.append(
                Damage("truncated", n, f"witness {name} cosigned size {wcp.size}; the log has {n}")
            )
        elif tree.root(wcp.size) != wcp.root:
            damage.append(
                Damage(
                    "edited-entry",
                    None,
                    f"the log is not the one witness {name} cosigned at size {wcp.size}",
                )
            )
        else:
            state["valid"] = True
            best = max(best, wcp.size)
    for state in rep.witnesses:  # a cosignature this machine saw cannot un-happen
        seen = (pinned_witnesses or {}).get(state["name"])
        have = state["cosigned_size"]
        if isinstance(seen, int) and (have is None or have < seen):
            damage.append(
                Damage(
                    "witness-rolled-back",
                    None,
                    f"witness {state['name']} cosigned size {seen} as this machine saw it "
                    f"({pinned_from or 'its pin file'}); its cosignature in the lab is "
                    f"{'gone' if have is None else f'at size {have}'}: deleted or rolled back",
                )
            )
    if registered and check_witnesses and n - best > allowed:
        damage.append(
            Damage(
                "unwitnessed",
                best,
                f"no witness cosigned beyond size {best}: {n - best} entries unwitnessed, "
                f"the policy allows {allowed} (run `facelab audit witness`)",
            )
        )
    if not registered and require_witness and check_witnesses:
        damage.append(
            Damage(
                "unwitnessed",
                None,
                "the policy requires a witness (audit.require_witness) and the log "
                "registers none (facelab audit witness-add)",
            )
        )
    elif not registered:
        rep.warnings.append(
            "no witness registered: a rollback of the whole lab (log and head together) "
            "cannot be detected (facelab audit witness-add)"
        )

    rep.unsigned_tail = max(0, n - rep.head_size) if head is not None else n
    if head is not None and rep.unsigned_tail:
        damage.append(
            Damage(
                "unsigned-tail",
                rep.head_size,
                f"{rep.unsigned_tail} entries after the signed head: no checkpoint covers "
                "them (a writer killed before signing, a head slot rolled back, or a forged "
                "append; the next writer adopts the entries that carry the lab's MAC and "
                "refuses the rest)",
            )
        )
    ends, pos = [], 0
    for line in parts:
        pos += len(line) + 1
        ends.append(pos)
    rep.scan = _Scan(parts, ends, tree, head)
    damage.sort(key=lambda x: (_RANK.get(x.kind, 2), x.entry is None, x.entry or 0))
    return rep


# The first damage reported is the most telling: keys and signatures, then the entries
# in log order, then tails, then derived files (usually a consequence of the rest).
_RANK = {
    "signing-key-replaced": 0,
    "lab-replaced": 0,
    "unrecorded-destruction": 1,
    "forged-checkpoint": 1,
    "forged-cosignature": 1,
    "split-view": 1,
    "unsigned-tail": 3,
    "unwitnessed": 3,
    "torn-tail": 3,
    "garbage-tail": 3,
    "hash-store-mismatch": 4,
}
