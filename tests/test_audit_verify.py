"""The tamper detector (``facelab.audit.verify_log``) as a damage table: one signed lab
(41 entries, checkpoints at 1, 10, 20, 30, 40 and 41, the head at 41), copied for each
row, one tamper applied to its files, and the whole report compared with what the
tamper must produce: each damage's kind and the entry it names, in the documented
order. The expected rows come from the tamper itself (which line was cut, which file
grew), not from the verifier's messages; leaf hashes are recomputed here from RFC 9162
(SHA-256 of 0x00 || line) to find the hash store's slots."""

from __future__ import annotations

import base64
import hashlib
import json
import shutil
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from facelab.audit import Event, checkpoint, witness
from facelab.errors import BadInputError
from facelab.labdir import audit_writer, load_public_key, open_lab

from tests.audit_helpers import PASS, lines, make_lab, verify, write_lines

N = 41  # lab.init and 40 events
SIZES = [1, 10, 20, 30, 40, 41]  # checkpoints signed (every 10, and on each close)


@pytest.fixture(scope="module")
def pristine(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("verify") / "lab"
    make_lab(root, entries=40, checkpoint_every=10)
    return root


@pytest.fixture
def lab(pristine, tmp_path, monkeypatch):
    # each copy is the same lab (same id): a writer's pins must not reach the next copy
    monkeypatch.setenv("FACELAB_KNOWN_LABS", str(tmp_path / "known_labs.json"))
    shutil.copytree(pristine, tmp_path / "lab", symlinks=True)
    return open_lab(tmp_path / "lab")


def kinds(rep) -> list[tuple[str, int | None]]:
    return [(d.kind, d.entry) for d in rep.damage]


def _leaf(line: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + line).digest()


def _note(lab, size: int) -> bytes:
    return (lab.paths.audit / "checkpoints" / f"{size:012d}.note").read_bytes()


# ---------------------------------------------------------------- the control


def test_the_untouched_lab_is_intact_and_reports_what_it_checked(lab) -> None:
    rep = verify(lab)
    assert kinds(rep) == []
    assert (rep.entries, rep.checkpoints, rep.latest_size, rep.head_size) == (N, 6, N, N)
    assert rep.unsigned_tail == 0 and rep.witnesses == []

    # with no anchor from outside, the verdict is trust on first use, and says so; a
    # witness's checkpoint or a key from outside is such an anchor
    def tofu(r) -> int:
        return sum("trust on first use" in w for w in r.warnings)

    assert tofu(rep) == 1
    assert tofu(verify(lab, witness=_note(lab, N))) == 0
    assert tofu(verify(lab, trusted_key=load_public_key(lab))) == 0
    assert [p.name for p in sorted((lab.paths.audit / "checkpoints").iterdir())] == [
        f"{s:012d}.note" for s in SIZES
    ]


def test_a_missing_log_is_refused_not_reported_intact(tmp_path) -> None:
    from facelab.audit import verify_log

    key = Ed25519PrivateKey.generate().public_key()
    with pytest.raises(BadInputError):
        verify_log(tmp_path, "o", key)


def test_a_log_too_large_for_memory_is_refused(lab, monkeypatch) -> None:
    import facelab.labfs as labfs

    real = labfs.os.read

    def no_memory_for_a_log(fd, n):  # the log is read in 16 MiB pieces, notes in less
        if n >= 1 << 24:
            raise MemoryError
        return real(fd, n)

    monkeypatch.setattr(labfs.os, "read", no_memory_for_a_log)
    with pytest.raises(BadInputError, match="too large"):
        verify(lab)


# ---------------------------------------------------------------- entries


def test_a_line_that_is_not_an_entry_is_corrupt_in_the_middle_and_garbage_at_the_end(
    lab,
) -> None:
    ls = lines(lab)
    write_lines(lab, [*ls[:5], b"not an entry", *ls[6:]])
    # the line itself; the head's root, named at the stored leaf that differs (the
    # checkpoints' roots are not reported again: the corrupt line explains them); the
    # index, whose positions moved with the line's length
    assert kinds(verify(lab)) == [
        ("corrupt-entry", 5),
        ("edited-entry", 5),
        ("hash-store-mismatch", None),
    ]
    write_lines(lab, [*ls[:40], b"not an entry"])
    assert kinds(verify(lab)) == [
        ("edited-entry", 40),
        ("garbage-tail", 40),
        ("hash-store-mismatch", None),
    ]


def test_a_corrupt_last_line_before_a_torn_tail_is_corrupt_not_garbage(lab) -> None:
    ls = lines(lab)
    (lab.paths.audit / "entries.jsonl").write_bytes(
        b"".join(x + b"\n" for x in [*ls[:40], b"not an entry"]) + b'{"torn'
    )
    got = kinds(verify(lab))
    assert ("corrupt-entry", 40) in got and ("torn-tail", 41) in got
    assert ("garbage-tail", 40) not in got


@pytest.mark.parametrize(
    ("tamper", "expected"),
    [
        # entry 12 cut: position 12 holds seq 13 and 12 is nowhere later
        (lambda ls: ls[:12] + ls[13:], ("deleted-entry", 12)),
        # entry 19 written again at 20 in place of 20 (a lower seq, 20 gone)
        (lambda ls: [*ls[:20], ls[19], *ls[21:]], ("reordered-entries", 20)),
        # entry 19 duplicated (20 comes later)
        (lambda ls: [*ls[:20], ls[19], *ls[20:]], ("reordered-entries", 20)),
        # 20 and 25 swapped (20 comes later)
        (lambda ls: [*ls[:20], ls[25], *ls[21:25], ls[20], *ls[26:]], ("reordered-entries", 20)),
    ],
)
def test_a_sequence_gap_is_deleted_and_a_move_is_reordered(lab, tamper, expected) -> None:
    write_lines(lab, tamper(lines(lab)))
    rep = verify(lab)
    seq_kinds = [k for k in kinds(rep) if k[0] in ("deleted-entry", "reordered-entries")]
    assert seq_kinds == [expected]
    assert rep.first() is not None and (rep.first().kind, rep.first().entry) == expected


def test_an_edit_below_a_checkpoint_names_the_entry_once(lab) -> None:
    ls = lines(lab)
    ls[17] = ls[17].replace(b'"i":16', b'"i":61')  # same length: positions unchanged
    write_lines(lab, ls)
    assert kinds(verify(lab)) == [("edited-entry", 17), ("edited-entry", 17)]  # checkpoints, head


def test_an_edit_with_its_leaf_rewritten_in_the_store_still_breaks_the_checkpoints(lab) -> None:
    ls = lines(lab)
    before = ls[17]
    ls[17] = before.replace(b'"i":16', b'"i":61')
    write_lines(lab, ls)
    hashes = lab.paths.audit / "hashes.bin"
    h = hashes.read_bytes()
    at = h.index(_leaf(before))
    hashes.write_bytes(h[:at] + _leaf(ls[17]) + h[at + 32 :])
    # no stored leaf differs: the entry cannot be named, the signed roots still differ
    assert kinds(verify(lab)) == [
        ("edited-entry", None),  # below checkpoint 20
        ("edited-entry", None),  # below the head
        ("hash-store-mismatch", None),  # the store's inner nodes
    ]


def test_entries_past_the_signed_head_are_an_unsigned_tail_and_an_edit_there_is_named(
    lab,
) -> None:
    keys = lab.paths.keys
    heads = {p: p.read_bytes() for p in keys.glob("audit_head.*")}
    with audit_writer(lab, PASS) as log:
        log.record_many([Event("test.tail", "tester", details={"k": k}) for k in range(2)])
    for p, b in heads.items():  # the head slots rolled back to size 41
        p.write_bytes(b)
    for p in (lab.paths.audit / "checkpoints").glob("*.note"):
        if int(p.stem) > N:
            p.unlink()
    rep = verify(lab)
    assert kinds(rep) == [("unsigned-tail", N)] and rep.unsigned_tail == 2
    ls = lines(lab)
    ls[N] = ls[N].replace(b'"k":0', b'"k":7')  # the first entry no signature covers
    write_lines(lab, ls)
    assert kinds(verify(lab)) == [("edited-entry", N), ("unsigned-tail", N)]
    # and an edit below the head hidden in the store (its leaf rewritten): the head and
    # the checkpoints cannot name an entry (the first stored leaf that differs, N, is
    # not below the head)
    before = ls[5]
    ls[5] = before.replace(b'"i":4', b'"i":9')
    write_lines(lab, ls)
    hashes = lab.paths.audit / "hashes.bin"
    h = hashes.read_bytes()
    at = h.index(_leaf(before))
    hashes.write_bytes(h[:at] + _leaf(ls[5]) + h[at + 32 :])
    assert kinds(verify(lab)) == [("edited-entry", None)] * 2 + [("unsigned-tail", N)]


def test_a_wrong_leaf_in_the_hash_store_over_signed_entries_is_the_stores_fault(lab) -> None:
    hashes = lab.paths.audit / "hashes.bin"
    data = bytearray(hashes.read_bytes())
    at = bytes(data).index(_leaf(lines(lab)[3]))
    data[at] ^= 0xFF
    hashes.write_bytes(bytes(data))
    assert kinds(verify(lab)) == [("hash-store-mismatch", 3)]


# ---------------------------------------------------------------- derived files


def test_derived_files_that_disagree_with_the_entries(lab) -> None:
    audit = lab.paths.audit
    hashes, index = audit / "hashes.bin", audit / "index.bin"
    h, x = hashes.read_bytes(), index.read_bytes()
    leaves = {_leaf(line) for line in lines(lab)}
    # an inner node of the tree (no leaf hash) changed: the subtree hashes disagree
    at = next(i for i in range(0, len(h), 32) if h[i : i + 32] not in leaves)
    hashes.write_bytes(h[:at] + bytes(32) + h[at + 32 :])
    assert kinds(verify(lab)) == [("hash-store-mismatch", None)]
    hashes.write_bytes(h + bytes(32))  # longer than its entries need
    assert kinds(verify(lab)) == [("hash-store-mismatch", None)]
    for cut in range(0, len(h), 32):  # short (a crash), at any hash: rebuilt on open
        hashes.write_bytes(h[:cut])
        rep = verify(lab)
        assert kinds(rep) == [] and any("hashes.bin covers" in w for w in rep.warnings), cut
    hashes.write_bytes(h)
    index.write_bytes(x + bytes(8))  # longer
    assert kinds(verify(lab)) == [("hash-store-mismatch", None)]
    index.write_bytes(x[:8] + (int.from_bytes(x[8:16], "big") + 1).to_bytes(8, "big") + x[16:])
    assert kinds(verify(lab)) == [("hash-store-mismatch", None)]
    index.write_bytes(x[: len(x) // 2])  # short: a prefix that agrees
    assert kinds(verify(lab)) == []


# ---------------------------------------------------------------- checkpoints and the head


def test_a_checkpoint_filed_under_another_size_is_forged(lab) -> None:
    cps = lab.paths.audit / "checkpoints"
    (cps / f"{10:012d}.note").rename(cps / f"{11:012d}.note")
    assert kinds(verify(lab)) == [("forged-checkpoint", None)]


def test_every_checkpoint_deleted_is_reported(lab) -> None:
    shutil.rmtree(lab.paths.audit / "checkpoints")
    (lab.paths.audit / "checkpoints").mkdir()
    rep = verify(lab)
    assert kinds(rep) == [("checkpoint-missing", None)] and rep.checkpoints == 0


def test_the_head_deleted_is_reported(lab) -> None:
    for p in lab.paths.keys.glob("audit_head.*"):
        p.unlink()
    rep = verify(lab)
    assert kinds(rep) == [("head-missing", None)]
    assert rep.unsigned_tail == N and rep.head_size == 0


def test_a_log_cut_below_its_checkpoints_and_head_is_truncated(lab) -> None:
    write_lines(lab, lines(lab)[:35])
    rep = verify(lab)
    # checkpoints 40 and 41 and the head at 41; the derived files are longer than 35 need
    assert kinds(rep) == [("truncated", 35)] * 3 + [("hash-store-mismatch", None)] * 2
    assert rep.latest_size == N


def test_checkpoints_under_another_key_are_key_replaced_when_the_lab_key_signs_them(
    lab,
) -> None:
    outside = Ed25519PrivateKey.generate().public_key()
    # every checkpoint verifies only under the lab's key; the head does not verify at all
    rep = verify(lab, trusted_key=outside)
    assert kinds(rep) == [("signing-key-replaced", None)] * len(SIZES) + [("head-missing", None)]
    assert kinds(verify(lab, trusted_key=load_public_key(lab))) == []


def test_a_lab_key_other_than_entry_0s_is_replaced(lab) -> None:
    other = Ed25519PrivateKey.generate().public_key()
    from facelab.audit import verify_log

    rep = verify_log(lab.paths.audit, lab.origin, other)
    assert ("signing-key-replaced", 0) in kinds(rep)
    # the checkpoints still verify under entry 0's key: no other damage
    assert [k for k in kinds(rep) if k != ("signing-key-replaced", 0)] == []


# ---------------------------------------------------------------- anchors from outside


def test_an_outside_checkpoint_the_log_is_consistent_with_passes(lab) -> None:
    for size in SIZES:
        assert kinds(verify(lab, witness=_note(lab, size))) == []
        assert kinds(verify(lab, pinned_head=_note(lab, size))) == []


def test_an_outside_checkpoint_beyond_the_log_is_truncated_or_rolled_back(lab) -> None:
    note41 = _note(lab, 41)
    write_lines(lab, lines(lab)[:38])
    for p in lab.paths.audit.glob("checkpoints/*"):
        if int(p.stem) > 38:
            p.unlink()
    store = [("hash-store-mismatch", None)] * 2  # the derived files are longer
    assert kinds(verify(lab)) == [("truncated", 38), *store]  # the head at 41
    assert kinds(verify(lab, witness=note41)) == [("truncated", 38)] * 2 + store
    assert kinds(verify(lab, pinned_head=note41)) == [
        ("truncated", 38),
        ("rolled-back", 38),
        *store,
    ]


def test_an_outside_checkpoint_of_another_history_is_edited_or_forged(lab) -> None:
    key = Ed25519PrivateKey.generate()
    other = checkpoint.sign(checkpoint.Checkpoint(lab.origin, 20, b"\x01" * 32), key)
    assert kinds(verify(lab, witness=other)) == [("forged-checkpoint", None)]
    assert kinds(verify(lab, pinned_head=other)) == [("forged-checkpoint", None)]
    ls = lines(lab)
    ls[5] = ls[5].replace(b'"i":4', b'"i":9')
    note20 = _note(lab, 20)
    write_lines(lab, ls)
    edited = [("edited-entry", 5)] * 2  # below the checkpoints, below the head
    assert kinds(verify(lab)) == edited
    assert kinds(verify(lab, witness=note20)) == [*edited, ("edited-entry", None)]
    assert kinds(verify(lab, pinned_head=note20)) == [*edited, ("edited-entry", None)]


# ---------------------------------------------------------------- witnesses the log registers


def _register(lab, tmp_path: Path, name: str = "w1.example") -> Path:
    wdir = tmp_path / f"witness-{name}"
    witness.init(wdir, name)
    vkey = json.loads((wdir / "witness.json").read_text())["vkey"]
    with audit_writer(lab, PASS) as log:
        log.record(Event("audit.witness_add", "tester", details={"name": name, "vkey": vkey}))
    return wdir


def test_a_registered_witness_that_cosigned_the_head_leaves_the_log_intact(lab, tmp_path) -> None:
    wdir = _register(lab, tmp_path)
    assert verify(lab).witnesses[0]["cosigned_size"] is None  # registered, not yet cosigned
    witness.cosign(wdir, lab)
    rep = verify(lab)
    assert kinds(rep) == []
    assert rep.witnesses == [
        {
            "name": "w1.example",
            "cosigned_size": N + 1,
            "time": rep.witnesses[0]["time"],
            "valid": True,
        }
    ]
    assert isinstance(rep.witnesses[0]["time"], int) and rep.witnesses[0]["time"] > 0
    # a key from outside and a witness: nothing left to warn about (no trust on first
    # use, no unwitnessed rollback, derived files complete)
    assert verify(lab, trusted_key=load_public_key(lab)).warnings == []


def test_entries_past_the_witness_are_allowed_up_to_max_unwitnessed(lab, tmp_path) -> None:
    _register(lab, tmp_path)  # never cosigned: all N + 1 entries unwitnessed
    assert kinds(verify(lab)) == []  # the default allows 1024
    assert kinds(verify(lab, max_unwitnessed=N + 1)) == []
    assert kinds(verify(lab, max_unwitnessed=N)) == [("unwitnessed", 0)]
    assert kinds(verify(lab, max_unwitnessed=0, check_witnesses=False)) == []


def test_a_required_witness_that_is_not_registered_is_damage(lab, tmp_path) -> None:
    assert kinds(verify(lab, require_witness=True)) == [("unwitnessed", None)]
    assert kinds(verify(lab, require_witness=True, check_witnesses=False)) == []
    assert kinds(verify(lab)) == []
    witness.cosign(_register(lab, tmp_path), lab)
    assert kinds(verify(lab, require_witness=True)) == []


def test_a_forged_or_unreadable_cosignature_is_forged(lab, tmp_path) -> None:
    witness.cosign(_register(lab, tmp_path), lab)
    note = lab.paths.audit / "witness" / "w1.example.note"
    good = note.read_bytes()
    text, sigs = good.split(b"\n\n")
    wline = sigs.splitlines()[-1]
    blob = bytearray(base64.b64decode(wline.split(b" ")[2]))
    blob[-1] ^= 1
    forged = wline.split(b" ")[0] + b" w1.example " + base64.b64encode(bytes(blob))
    note.write_bytes(good.replace(wline, forged))
    rep = verify(lab)
    assert kinds(rep) == [("forged-cosignature", None)] and rep.witnesses[0]["valid"] is False
    note.unlink()
    note.mkdir()  # not a regular file
    assert kinds(verify(lab)) == [("forged-cosignature", None)]
    note.rmdir()
    note.write_bytes(good.replace(text, text.replace(lab.origin.encode(), b"x", 1)))
    assert kinds(verify(lab)) == [("forged-cosignature", None)]  # the log's signature fails


def test_a_registration_whose_key_names_another_witness_is_forged(lab, tmp_path) -> None:
    other = witness.init(tmp_path / "w2", "w2.example")
    with audit_writer(lab, PASS) as log:
        log.record(
            Event("audit.witness_add", "tester", details={"name": "w1.example", "vkey": other})
        )
    assert kinds(verify(lab)) == [("forged-cosignature", None)]


def test_a_cosignature_over_another_history_is_edited(lab, tmp_path) -> None:
    witness.cosign(_register(lab, tmp_path), lab)
    ls = lines(lab)
    ls[5] = ls[5].replace(b'"i":4', b'"i":9')
    write_lines(lab, ls)
    got = kinds(verify(lab))
    assert got == [("edited-entry", 5)] * 2 + [("edited-entry", None)]
    assert verify(lab).witnesses[0]["valid"] is False


def test_a_cosignature_this_machine_saw_cannot_go_back_or_away(lab, tmp_path) -> None:
    witness.cosign(_register(lab, tmp_path), lab)
    size = N + 1
    assert kinds(verify(lab, pinned_witnesses={"w1.example": size})) == []
    assert kinds(verify(lab, pinned_witnesses={"w1.example": size + 1})) == [
        ("witness-rolled-back", None)
    ]
    (lab.paths.audit / "witness" / "w1.example.note").unlink()
    assert kinds(verify(lab)) == []  # without the pin a missing cosignature is allowed
    pins = "/etc/facelab/known_labs.json"
    rep = verify(lab, pinned_witnesses={"w1.example": 1}, pinned_from=pins)
    assert kinds(rep) == [("witness-rolled-back", None)]
    # the damage says where the pin came from and that the cosignature is gone
    assert pins in rep.damage[0].message and "gone" in rep.damage[0].message


def test_a_log_that_does_not_start_with_lab_init_is_checked_under_keys_with_a_warning(
    lab,
) -> None:
    before = verify(lab).warnings
    assert not any("entry 0" in w for w in before)
    write_lines(lab, lines(lab)[1:])  # lab.init (which records the key) cut away
    rep = verify(lab)
    assert ("deleted-entry", 0) in kinds(rep)
    # the checkpoints still verify under keys/: no key damage, only the warning
    assert not any(k == "signing-key-replaced" for k, _ in kinds(rep))
    assert [w for w in rep.warnings if w not in before and "covers" not in w] == [
        "entry 0 is not lab.init with the lab key: trusting keys/"
    ]


def test_an_edit_just_below_a_sequence_damage_is_still_an_edit(lab) -> None:
    """Entry 9 edited (checkpoint 10 breaks) and entry 10 corrupt: the sequence damage
    at 10 does not explain the edit below it, which is named, not blamed on the store."""
    ls = lines(lab)
    ls[9] = ls[9].replace(b'"i":8', b'"i":80')
    write_lines(lab, [*ls[:10], b"not an entry", *ls[11:]])
    assert kinds(verify(lab)) == [
        ("edited-entry", 9),  # below checkpoint 10
        ("edited-entry", 9),  # below the head
        ("corrupt-entry", 10),
        ("hash-store-mismatch", None),  # the index: line 10's length changed
    ]


def test_an_edit_hidden_in_the_store_is_not_blamed_on_a_later_entry(lab) -> None:
    """Entry 5 edited with its leaf rewritten in the store, entry 10 edited plainly:
    checkpoint 10 breaks because of entry 5, so the checkpoints name no entry (not 10)."""
    ls = lines(lab)
    before = ls[5]
    ls[5] = before.replace(b'"i":4', b'"i":9')
    ls[10] = ls[10].replace(b'"i":9', b'"i":7')
    write_lines(lab, ls)
    hashes = lab.paths.audit / "hashes.bin"
    h = hashes.read_bytes()
    at = h.index(_leaf(before))
    hashes.write_bytes(h[:at] + _leaf(ls[5]) + h[at + 32 :])
    assert ("edited-entry", None) in kinds(verify(lab))


def test_a_damaged_head_slot_beside_a_good_one_is_a_warning(lab) -> None:
    slots = sorted(lab.paths.keys.glob("audit_head.*"))
    assert len(slots) == 2
    rep0 = verify(lab)
    for slot in slots:  # garble the slot that does not hold the head at N
        saved = slot.read_bytes()
        slot.write_bytes(b"\xff" * len(saved))
        rep = verify(lab)
        if rep.head_size == N:
            break
        slot.write_bytes(saved)
    assert rep.head_size == N and kinds(rep) == []
    assert len(rep.warnings) == len(rep0.warnings) + 1
    assert any(w.startswith("head slot") for w in rep.warnings)


def test_a_rollback_names_the_pin_file_it_was_caught_by(lab) -> None:
    note = _note(lab, N)
    write_lines(lab, lines(lab)[:38])
    rep = verify(lab, pinned_head=note, pinned_from="/etc/facelab/known_labs.json")
    rolled = [d for d in rep.damage if d.kind == "rolled-back"]
    assert len(rolled) == 1 and "/etc/facelab/known_labs.json" in rolled[0].message


def test_by_default_1024_entries_may_wait_for_a_witness(lab, tmp_path) -> None:
    _register(lab, tmp_path)  # never cosigned
    n = verify(lab).entries
    with audit_writer(lab, PASS) as log:  # up to 1024 entries (the close adds none)
        log.record_many([Event("test.bulk", "tester", details={"i": i}) for i in range(1024 - n)])
    rep = verify(lab)
    assert rep.entries == 1024 and kinds(rep) == []
    with audit_writer(lab, PASS) as log:
        log.record(Event("test.bulk", "tester", details={"i": -1}))
    assert kinds(verify(lab)) == [("unwitnessed", 0)]


def test_derived_files_missing_are_rebuilt_not_damage(lab) -> None:
    for name in ("hashes.bin", "index.bin"):
        (lab.paths.audit / name).unlink()
    rep = verify(lab)
    assert kinds(rep) == [] and any("hashes.bin covers 0" in w for w in rep.warnings)


@pytest.mark.parametrize("name", ["hashes.bin", "index.bin"])
def test_a_derived_file_that_is_a_link_a_directory_or_a_fifo_is_refused(lab, name) -> None:
    import os

    path = lab.paths.audit / name
    path.unlink()
    path.symlink_to(lab.paths.audit / "entries.jsonl")  # not followed
    with pytest.raises(BadInputError):
        verify(lab)
    path.unlink()
    path.mkdir()
    with pytest.raises(BadInputError):
        verify(lab)
    path.rmdir()
    os.mkfifo(path)  # opened without blocking, then refused
    with pytest.raises(BadInputError):
        verify(lab)


def test_signatures_are_reported_before_the_entries_they_implicate(lab) -> None:
    ls = lines(lab)
    ls[17] = ls[17].replace(b'"i":16', b'"i":61')
    write_lines(lab, ls)
    cps = lab.paths.audit / "checkpoints"
    (cps / f"{10:012d}.note").rename(cps / f"{11:012d}.note")
    assert kinds(verify(lab)) == [
        ("forged-checkpoint", None),
        ("edited-entry", 17),
        ("edited-entry", 17),
    ]


def test_an_anchor_at_size_zero_is_the_empty_tree(lab) -> None:
    """RFC 9162: the root of the empty tree is SHA-256 of the empty string; every log is
    consistent with it, and with no other root at size 0."""
    from facelab.labdir import load_signing_key

    key = load_signing_key(lab, PASS)
    empty = checkpoint.sign(checkpoint.Checkpoint(lab.origin, 0, hashlib.sha256(b"").digest()), key)
    assert kinds(verify(lab, witness=empty)) == []
    other = checkpoint.sign(checkpoint.Checkpoint(lab.origin, 0, b"\x01" * 32), key)
    assert kinds(verify(lab, witness=other)) == [("edited-entry", None)]
