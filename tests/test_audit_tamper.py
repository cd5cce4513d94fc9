"""Issue 14: an operator with write access to the lab's files (and no passphrase) cannot
quietly undo the record. Each attack asserts the effect on disk: what `audit verify`
says (exit 4), and that the next writer refuses to sign (no new checkpoint, no new head,
the files it would have written unchanged)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from facelab.audit import Event, _head, rfc9162
from facelab.audit.log import checkpoint_files
from facelab.errors import TamperedError
from facelab.labdir import audit_writer, load_public_key, open_lab, public_key_b64

from tests.audit_helpers import PASS, lines, make_lab, verify, write_lines

REPO = Path(__file__).resolve().parents[1]


def cli(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO), "FACELAB_PASSPHRASE": PASS.decode()}
    return subprocess.run(
        [sys.executable, "-m", "facelab.cli", *args], capture_output=True, text=True, env=env
    )


def one_line_exit_4(p: subprocess.CompletedProcess) -> str:
    assert p.returncode == 4, (p.returncode, p.stderr)
    assert "Traceback" not in p.stderr
    assert len(p.stderr.strip().splitlines()) == 1, p.stderr
    return p.stderr


def signed_state(lab) -> dict[str, bytes]:
    """Every file a writer signs into: the head slots and the checkpoints."""
    out = {p.name: p.read_bytes() for p in lab.paths.keys.glob("audit_head.*")}
    out.update({p.name: p.read_bytes() for p in checkpoint_files(lab.paths.audit)})
    return out


def assert_writer_refuses(lab) -> None:
    before, entries = signed_state(lab), (lab.paths.audit / "entries.jsonl").read_bytes()
    with pytest.raises(TamperedError):
        audit_writer(lab, PASS)
    assert signed_state(lab) == before  # nothing signed
    assert (lab.paths.audit / "entries.jsonl").read_bytes() == entries  # nothing appended


@pytest.fixture
def lab(tmp_path: Path):
    return make_lab(tmp_path / "lab", entries=30, checkpoint_every=8)


def test_positive_control_an_untouched_log_verifies_and_opens(lab) -> None:
    assert verify(lab).intact
    assert cli("audit", "verify", "--lab", str(lab.paths.root)).returncode == 0
    with audit_writer(lab, PASS) as log:
        log.record(Event("test.more", "tester"))
    assert verify(lab).intact


def test_1_delete_checkpoints_and_hash_store_then_edit_an_entry(lab) -> None:
    for p in checkpoint_files(lab.paths.audit):
        p.unlink()
    for name in ("hashes.bin", "index.bin"):
        (lab.paths.audit / name).unlink()
    ls = lines(lab)
    ls[5] = ls[5].replace(b'"actor":"tester"', b'"actor":"nobody"')
    write_lines(lab, ls)
    err = one_line_exit_4(cli("audit", "verify", "--lab", str(lab.paths.root)))
    assert "TAMPERED" in err
    assert_writer_refuses(lab)


def test_2_a_well_formed_forged_entry_appended_is_tampering_and_never_signed(lab) -> None:
    ls = lines(lab)
    forged = json.loads(ls[-1])
    forged.update(seq=len(ls), actor="mallory", action="vault.destroy", tenant="acme")
    line = json.dumps(forged, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    write_lines(lab, [*ls, line])
    rep = verify(lab)
    assert rep.first().kind == "unsigned-tail" and rep.first().entry == len(ls)
    one_line_exit_4(cli("audit", "verify", "--lab", str(lab.paths.root)))
    # the copied MAC does not fit the edited entry: no writer signs over it ...
    assert_writer_refuses(lab)
    heads = signed_state(lab)
    # ... until an officer's repair cuts it, on the record
    with audit_writer(lab, PASS, repair_actor="officer") as log:
        assert [r.kind for r in log.recoveries] == ["unsigned-tail"]
    after = lines(lab)
    assert line not in after  # not signed over: cut
    rec = json.loads(after[-1])
    assert rec["action"] == "audit.recovered" and rec["decision"] == "unsigned-tail"
    assert rec["actor"] == "officer"
    assert rec["object"] == "sha256:" + hashlib.sha256(line + b"\n").hexdigest()
    kept = list((lab.paths.audit / "cut").iterdir())
    assert [p.read_bytes() for p in kept] == [line + b"\n"]  # the evidence is kept
    assert verify(lab).intact
    for name, data in heads.items():  # no signed checkpoint ever covered the forgery
        if name.endswith(".note") and name[0].isdigit():
            assert (lab.paths.audit / "checkpoints" / name).read_bytes() == data


def test_2b_a_long_forged_tail_waits_for_repair(lab) -> None:
    ls = lines(lab)
    extra = []
    for k in range(300):
        e = json.loads(ls[-1])
        e.update(seq=len(ls) + k, actor="mallory")
        extra.append(json.dumps(e, sort_keys=True, separators=(",", ":")).encode())
    write_lines(lab, ls + extra)
    assert_writer_refuses(lab)
    with audit_writer(lab, PASS, repair_actor="officer") as log:
        assert log.recoveries[0].entries_cut == 300
    assert verify(lab).intact


def test_2c_a_forged_entry_without_a_mac_is_refused_too(lab) -> None:
    ls = lines(lab)
    forged = json.loads(ls[-1])
    forged.pop("mac")
    forged.update(seq=len(ls), actor="mallory")
    write_lines(lab, [*ls, json.dumps(forged, sort_keys=True, separators=(",", ":")).encode()])
    assert_writer_refuses(lab)


def _slot_size(slot: bytes) -> int:
    note = _head.decode(slot)
    return int(note.split(b"\n")[1]) if note else -1


def _newest_slot(lab) -> Path:
    hs = _head.read(lab.paths.keys, load_public_key(lab), lab.origin)
    assert hs.head is not None
    return lab.paths.keys / _head.SLOTS[hs.head.slot]


def _assert_nothing_signed_was_lost(lab, before: list[bytes]) -> None:
    after = lines(lab)
    assert after[: len(before)] == before, "a signed entry was cut or changed"
    assert not (lab.paths.audit / "cut").exists()
    rep = verify(lab)
    assert rep.intact, rep.damage
    adopted = [json.loads(x) for x in after[len(before) :]]
    assert adopted[0]["action"] == "audit.recovered"
    assert adopted[0]["decision"] == "adopted-tail"


@pytest.mark.parametrize("how", ["garble", "older-copied-over", "emptied"])
def test_14_a_damaged_newest_head_slot_never_makes_a_writer_cut_signed_entries(lab, how) -> None:
    """Red team F1/F3 (a13, a15): the newer head slot garbled, replaced by the older one,
    or emptied: the last signed batch looks unsigned. The writer adopts it (it carries the
    lab's MAC) instead of cutting it and re-signing that size with another root."""
    with audit_writer(lab, PASS) as log:  # one more batch, so the slots differ
        log.record(Event("test.last", "tester"))
    before = lines(lab)
    newest = _newest_slot(lab)
    other = lab.paths.keys / next(s for s in _head.SLOTS if s != newest.name)
    older = _slot_size(other.read_bytes())
    for p in checkpoint_files(lab.paths.audit):  # the newer filed checkpoints deleted
        if int(p.stem) > older:
            p.unlink()
    if how == "garble":
        newest.write_bytes(os.urandom(_head.SLOT_BYTES))
    elif how == "older-copied-over":
        newest.write_bytes(other.read_bytes())
    else:
        newest.write_bytes(b"")
    with audit_writer(lab, PASS) as log:
        assert [r.kind for r in log.recoveries] == ["adopted-tail"]
        assert log.recoveries[0].entries_adopted >= 1
    _assert_nothing_signed_was_lost(lab, before)


def test_14_an_old_head_replayed_into_both_slots_never_erases_history(tmp_path: Path) -> None:
    """Red team F2 (a14, a16): a head slot saved long ago is put back in both slots and
    the newer checkpoints deleted; every later signed entry looks like an unsigned tail."""
    lab = make_lab(tmp_path / "lab", entries=2, checkpoint_every=1000)
    saved = {p.name: p.read_bytes() for p in lab.paths.keys.glob("audit_head.*")}

    old = max(saved.values(), key=_slot_size)
    old_size = _slot_size(old)
    with audit_writer(lab, PASS) as log:
        for k in range(20):
            log.record(Event("test.later", "tester", tenant="acme", details={"k": k}))
    before = lines(lab)
    for name in saved:
        (lab.paths.keys / name).write_bytes(old)
    for p in checkpoint_files(lab.paths.audit):
        if int(p.stem) > old_size:
            p.unlink()
    with audit_writer(lab, PASS) as log:
        assert log.recoveries[0].kind == "adopted-tail"
    _assert_nothing_signed_was_lost(lab, before)
    assert sum(b'"tenant":"acme"' in x for x in lines(lab)) == 20


def test_14_authentic_entries_beyond_the_crash_window_wait_for_repair(tmp_path: Path) -> None:
    """A head rolled back further than any crash explains is not adopted silently."""
    lab = make_lab(tmp_path / "lab", entries=2, checkpoint_every=1000)
    saved = {p.name: p.read_bytes() for p in lab.paths.keys.glob("audit_head.*")}
    with audit_writer(lab, PASS) as log:
        log.record_many([Event("test.later", "tester", details={"k": k}) for k in range(300)])
    before = lines(lab)
    for name, data in saved.items():
        (lab.paths.keys / name).write_bytes(data)
    old_size = max(_slot_size(b) for b in saved.values())
    for p in checkpoint_files(lab.paths.audit):
        if int(p.stem) > old_size:
            p.unlink()
    with pytest.raises(TamperedError, match="more than a crash leaves"):
        audit_writer(lab, PASS)
    assert_writer_refuses(lab)
    with audit_writer(lab, PASS, repair_actor="officer") as log:
        assert log.recoveries[0].kind == "adopted-tail"
        assert log.recoveries[0].entries_adopted >= 300
    _assert_nothing_signed_was_lost(lab, before)


def test_14_entry_macs_bind_the_entry_and_its_lab() -> None:
    from facelab.audit.events import entry_authentic, entry_bytes

    key, other = b"k" * 32, b"o" * 32
    line = entry_bytes(Event("test.x", "alice"), 3, "t", "p", mac_key=key, origin="lab/1")
    assert entry_authentic(line, key, "lab/1")
    assert not entry_authentic(line, other, "lab/1")  # another lab's key
    assert not entry_authentic(line, key, "lab/2")  # another lab's origin
    assert not entry_authentic(line.replace(b'"alice"', b'"mallo"'), key, "lab/1")
    assert not entry_authentic(entry_bytes(Event("test.x", "alice"), 3, "t", "p"), key, "lab/1")


BAD_SIZES = [
    "\u00b2".encode(),  # superscript two
    "\u0664\u0662".encode(),  # Arabic-Indic digits
    b"9" * 5000,
]


@pytest.mark.parametrize("size", BAD_SIZES, ids=["superscript", "arabic-indic", "5000-digits"])
def test_3_a_malformed_checkpoint_is_exit_4_everywhere_never_a_traceback(
    lab, tmp_path: Path, size: bytes
) -> None:
    last = checkpoint_files(lab.paths.audit)[-1]
    parts = last.read_bytes().split(b"\n")
    parts[1] = size
    bad = b"\n".join(parts)
    last.write_bytes(bad)
    root = str(lab.paths.root)
    one_line_exit_4(cli("audit", "verify", "--lab", root))
    one_line_exit_4(cli("audit", "checkpoint", "--lab", root))
    one_line_exit_4(cli("audit", "prove", "--lab", root, "--entry", "1"))
    one_line_exit_4(cli("vault", "list", "--lab", root))
    # repair quarantines what does not verify, on the record; then all is well
    p = cli("audit", "repair", "--lab", root)
    assert p.returncode == 0, p.stderr
    assert any(json.loads(x)["action"] == "audit.quarantined" for x in lines(lab)), (
        "the quarantine is on the record"
    )
    assert cli("audit", "verify", "--lab", root).returncode == 0
    # the same bytes given as --witness or --old
    f = tmp_path / "bad.note"
    f.write_bytes(bad)
    one_line_exit_4(cli("audit", "verify", "--lab", root, "--witness", str(f)))
    one_line_exit_4(cli("audit", "consistency", "--lab", root, "--old", str(f)))


def test_6_rollback_to_an_older_prefix_is_detected_without_a_witness(lab, tmp_path) -> None:
    old = tmp_path / "old-audit"
    shutil.copytree(lab.paths.audit, old)
    with audit_writer(lab, PASS) as log:
        for i in range(10):
            log.record(Event("test.later", "tester", details={"i": i}))
    shutil.rmtree(lab.paths.audit)
    shutil.copytree(old, lab.paths.audit)  # entries, checkpoints and hash store rolled back
    rep = verify(lab)
    assert rep.first().kind == "truncated"
    one_line_exit_4(cli("audit", "verify", "--lab", str(lab.paths.root)))
    assert_writer_refuses(lab)  # no second checkpoint at a signed size with another root


def _pinned_elsewhere(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setenv("FACELAB_KNOWN_LABS", str(tmp_path / "another-machine.json"))


@pytest.mark.parametrize("how", ["snapshot-restored", "newest-slot-zeroed"])
def test_14d_a_log_and_head_rolled_back_together_are_caught_by_this_machines_pin(
    lab, tmp_path, monkeypatch, how
) -> None:
    """Red team 14d, c01, and its class: the log, its checkpoints and the head slots in
    ``LAB/keys`` rolled back together to an older consistent state (a snapshot of both
    put back; or the newer head slot zeroed, the log cut to the older slot's size and the
    newer checkpoints deleted). Everything in the lab agrees with itself; the signed head
    this machine saw last (the pin file, outside the lab) does not."""
    saved = tmp_path / "saved"
    for d in ("audit", "keys"):
        shutil.copytree(lab.paths.root / d, saved / d)
    with audit_writer(lab, PASS) as log:
        for i in range(3):
            log.record(Event("test.later", "tester", details={"i": i}))
    signed = len(lines(lab))
    if how == "snapshot-restored":
        for d in ("audit", "keys"):
            shutil.rmtree(lab.paths.root / d)
            shutil.copytree(saved / d, lab.paths.root / d)
    else:
        newest = _newest_slot(lab)
        other = lab.paths.keys / next(s for s in _head.SLOTS if s != newest.name)
        older = _slot_size(other.read_bytes())
        newest.write_bytes(b"\0" * _head.SLOT_BYTES)
        keep = b"".join(x + b"\n" for x in lines(lab)[:older])
        (lab.paths.audit / "entries.jsonl").write_bytes(keep)
        for f in ("hashes.bin", "index.bin"):
            (lab.paths.audit / f).unlink()
        for p in checkpoint_files(lab.paths.audit):
            if int(p.stem) > older:
                p.unlink()
    assert len(lines(lab)) < signed
    rep = verify(lab, pinned_head=_pinned(lab))
    assert rep.first().kind == "rolled-back", rep.damage
    line = one_line_exit_4(cli("audit", "verify", "--lab", str(lab.paths.root)))
    assert "rolled-back" in line
    assert_writer_refuses(lab)  # never a second root at a size this machine saw signed
    # the control: a machine that never saw the lab cannot tell (no anchor, no witness)
    _pinned_elsewhere(monkeypatch, tmp_path)
    if how == "snapshot-restored":
        assert cli("audit", "verify", "--lab", str(lab.paths.root)).returncode == 0


def _pinned(lab) -> bytes:
    from facelab.audit import pins

    note, _ = pins.pinned_head(lab.origin)
    assert note is not None
    return note


def test_14d_the_pin_follows_every_writer_and_verify(lab) -> None:
    """The head pinned on this machine is the one the last command signed, and an intact
    log verifies against it (no false alarm after ordinary growth)."""
    with audit_writer(lab, PASS) as log:
        log.record(Event("test.later", "tester"))
    hs = _head.read(lab.paths.keys, load_public_key(lab), lab.origin)
    assert hs.head is not None and _pinned(lab) == hs.head.note
    assert verify(lab, pinned_head=_pinned(lab)).intact
    assert cli("audit", "verify", "--lab", str(lab.paths.root)).returncode == 0


@pytest.mark.parametrize("garbage", [b"{not json", b"[]", b'{"x": 1, "x": 2}', b'{"o": 3}'])
def test_14d_a_corrupt_pin_file_stops_verify_and_writers_never_trust_on_first_use(
    lab, tmp_path, monkeypatch, garbage
) -> None:
    """Red team 14d, c26: corrupting this machine's pin file must not turn the checks it
    anchors (key pin, pinned head) into trust on first use. ``audit verify`` and every
    writer stop with exit 2 naming the file, and the file is left as it was."""
    pinfile = tmp_path / "pins.json"
    pinfile.write_bytes(garbage)
    monkeypatch.setenv("FACELAB_KNOWN_LABS", str(pinfile))
    entries = (lab.paths.audit / "entries.jsonl").read_bytes()
    p = cli("audit", "verify", "--lab", str(lab.paths.root))
    assert p.returncode == 2 and str(pinfile) in p.stderr and "Traceback" not in p.stderr
    assert len(p.stderr.strip().splitlines()) == 1, p.stderr
    p = cli("vault", "list", "--lab", str(lab.paths.root))  # a writer: records on open
    assert p.returncode == 2 and str(pinfile) in p.stderr
    assert (lab.paths.audit / "entries.jsonl").read_bytes() == entries
    assert pinfile.read_bytes() == garbage  # never rewritten
    # an explicit choice still verifies without it
    assert cli("audit", "verify", "--lab", str(lab.paths.root), "--no-pin").returncode == 0


@pytest.mark.parametrize("attack", ["swap", "flip-hashes", "flip-index", "replace-public-key"])
def test_7_the_writer_never_signs_a_log_that_verify_calls_damaged(lab, attack) -> None:
    a = lab.paths.audit
    if attack == "swap":
        ls = lines(lab)
        ls[10], ls[11] = ls[11], ls[10]
        write_lines(lab, ls)
    elif attack == "flip-hashes":
        data = bytearray((a / "hashes.bin").read_bytes())
        data[7 * 32 + 5] ^= 1
        (a / "hashes.bin").write_bytes(bytes(data))
    elif attack == "flip-index":
        data = bytearray((a / "index.bin").read_bytes())
        data[8 * 5 + 7] ^= 1
        (a / "index.bin").write_bytes(bytes(data))
    else:
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
        from facelab.labdir import public_key_b64

        other = Ed25519PrivateKey.generate().public_key()
        lab.paths.public_key.write_text(public_key_b64(other) + "\n")
    assert not verify(lab).intact
    assert_writer_refuses(lab)


def test_deleting_the_head_outside_the_log_is_damage(lab) -> None:
    for p in lab.paths.keys.glob("audit_head.*"):
        p.unlink()
    assert verify(lab).first().kind == "head-missing"
    assert_writer_refuses(lab)


def test_no_second_checkpoint_at_a_signed_size_with_another_root(lab) -> None:
    """Plant a validly signed note at the next size with another root (what a writer
    fooled into signing a split view would leave): the writer refuses to add its own."""
    from facelab.audit import checkpoint as ck
    from facelab.labdir import load_signing_key, open_lab

    key = load_signing_key(open_lab(lab.paths.root), PASS)
    n = len(lines(lab))
    other = ck.sign(ck.Checkpoint(lab.origin, n + 1, b"\x07" * 32), key)
    (lab.paths.audit / "checkpoints" / f"{n + 1:012d}.note").write_text(other)
    with pytest.raises(TamperedError), audit_writer(lab, PASS) as log:
        log.record(Event("test.next", "tester"))
    notes = [p for p in checkpoint_files(lab.paths.audit) if int(p.stem) == n + 1]
    assert [p.read_text() for p in notes] == [other]


# ---------------------------------------------------------------- witnesses
def test_witness_cosigns_consistent_growth_and_refuses_a_rollback(tmp_path: Path) -> None:
    lab = make_lab(tmp_path / "lab", entries=5)
    root, wdir = str(lab.paths.root), str(tmp_path / "witness")
    p = cli("witness", "init", "--dir", wdir, "--name", "w1.example")
    assert p.returncode == 0, p.stderr
    vkey = p.stdout.strip().splitlines()[-1]
    assert cli("audit", "witness-add", "--lab", root, vkey).returncode == 0
    assert cli("audit", "witness", "--lab", root, "--witness-dir", wdir).returncode == 0
    rep = verify(lab)
    assert rep.intact and rep.witnesses[0]["valid"]
    snapshot = tmp_path / "snapshot"
    shutil.copytree(lab.paths.root, snapshot)  # the whole lab, head included
    with audit_writer(lab, PASS) as log:
        for i in range(4):
            log.record(Event("test.grow", "tester", details={"i": i}))
    assert cli("audit", "witness", "--lab", root, "--witness-dir", wdir).returncode == 0
    # roll the whole lab back (log, checkpoints and head together): only the witness knows
    shutil.rmtree(lab.paths.root)
    shutil.copytree(snapshot, lab.paths.root)
    assert verify(lab).intact  # locally self-consistent
    err = one_line_exit_4(cli("audit", "witness", "--lab", root, "--witness-dir", wdir))
    assert "rolled back" in err


def test_verify_requires_a_cosigned_checkpoint_within_the_allowed_tail(tmp_path: Path) -> None:
    lab = make_lab(tmp_path / "lab", entries=3)
    root, wdir = str(lab.paths.root), str(tmp_path / "w")
    vkey = cli("witness", "init", "--dir", wdir, "--name", "w2").stdout.strip().splitlines()[-1]
    assert cli("audit", "witness-add", "--lab", root, vkey).returncode == 0
    text = lab.paths.policy.read_text()
    assert "max_unwitnessed = 1024" in text
    text = text.replace("max_unwitnessed = 1024", "max_unwitnessed = 5")
    lab.paths.policy.write_text(text)
    with audit_writer(lab, PASS) as log:
        for i in range(8):
            log.record(Event("test.grow", "tester", details={"i": i}))
    err = one_line_exit_4(cli("audit", "verify", "--lab", root))
    assert "unwitnessed" in err
    assert cli("audit", "witness", "--lab", root, "--witness-dir", wdir).returncode == 0
    p = cli("audit", "verify", "--lab", root)
    assert p.returncode == 0 and "witness w2: cosigned size" in p.stdout
    # a cosignature that does not verify (a byte of it changed) is damage
    wnote = lab.paths.audit / "witness" / "w2.note"
    b = bytearray(wnote.read_bytes())
    b[-10] = ord("A") if b[-10] != ord("A") else ord("B")
    wnote.write_bytes(bytes(b))
    one_line_exit_4(cli("audit", "verify", "--lab", root))


def test_a_witness_key_is_never_the_lab_key(tmp_path: Path) -> None:
    from facelab.audit import checkpoint as ck
    from facelab.labdir import load_public_key

    lab = make_lab(tmp_path / "lab")
    vk = ck.vkey("sneaky", load_public_key(lab))
    p = cli("audit", "witness-add", "--lab", str(lab.paths.root), vk)
    assert p.returncode == 2 and "lab key" in p.stderr


def test_the_head_root_is_an_rfc9162_root_of_the_entries(lab) -> None:
    """Independent oracle: recompute the root from the entry lines with the pure hashes."""
    from facelab.audit import checkpoint as ck
    from facelab.labdir import load_public_key

    ls = lines(lab)
    root = rfc9162.root_from_leaf_hashes([rfc9162.leaf_hash(x) for x in ls])
    heads = [
        ck.verify(_head.decode(p.read_bytes()), load_public_key(lab))
        for p in lab.paths.keys.glob("audit_head.*")
    ]
    newest = max(heads, key=lambda c: c.size)
    assert (newest.size, newest.root) == (len(ls), root)


def test_the_policy_can_require_a_witness(tmp_path: Path) -> None:
    lab = make_lab(tmp_path / "lab", entries=2)
    root = str(lab.paths.root)
    assert cli("audit", "verify", "--lab", root).returncode == 0  # control: not required
    text = lab.paths.policy.read_text()
    assert "require_witness = false" in text
    text = text.replace("require_witness = false", "require_witness = true")
    lab.paths.policy.write_text(text)
    assert "requires a witness" in one_line_exit_4(cli("audit", "verify", "--lab", root))


def test_every_single_byte_change_of_an_old_or_witness_note_is_exit_4(
    lab, tmp_path: Path, capsys
) -> None:
    """The mutation table at the command line, in process: `consistency --old` with each
    byte of a real checkpoint flipped (and `verify --witness` with every seventh); never
    exit 0 or 1."""
    from facelab.cli import main

    note = checkpoint_files(lab.paths.audit)[-1].read_bytes()
    f = tmp_path / "m.note"
    f.write_bytes(note)
    root = str(lab.paths.root)
    assert main(["audit", "consistency", "--lab", root, "--old", str(f)]) == 0  # control
    assert main(["audit", "verify", "--lab", root, "--witness", str(f)]) == 0
    for i in range(len(note)):
        f.write_bytes(note[:i] + bytes([note[i] ^ 0x01]) + note[i + 1 :])
        assert main(["audit", "consistency", "--lab", root, "--old", str(f)]) == 4, i
        if i % 7 == 0:  # the same parser; a full verify per byte would be slow
            assert main(["audit", "verify", "--lab", root, "--witness", str(f)]) == 4, i
    err = capsys.readouterr().err
    assert "Traceback" not in err


def test_an_inclusion_proof_verifies_offline_with_the_public_key_only(lab, tmp_path) -> None:
    from facelab.labdir import load_public_key, public_key_b64

    root = str(lab.paths.root)
    p = cli("audit", "prove", "--lab", root, "--entry", "7")
    assert p.returncode == 0
    proof = tmp_path / "proof.json"
    proof.write_text(p.stdout)
    pub = tmp_path / "lab.pub"
    pub.write_text(public_key_b64(load_public_key(lab)))
    assert cli("audit", "verify-proof", str(proof), "--key", str(pub)).returncode == 0
    doc = json.loads(p.stdout)
    bad_entry = {**doc, "entry_json": doc["entry_json"].replace("tester", "mallory")}
    flipped = [doc["proof"][0][:-1] + ("0" if doc["proof"][0][-1] != "0" else "1")]
    bad_proof = {**doc, "proof": flipped + doc["proof"][1:]}
    bad_index = {**doc, "entry": 8}
    other_root = {**doc, "root": "00" * 32}  # a false claim beside a valid proof
    extra = {**doc, "issued_by": "the lab"}
    verified = {**doc, "verified": "yes"}
    for bad in (bad_entry, bad_proof, bad_index, {"nonsense": 1}, other_root, extra, verified):
        proof.write_text(json.dumps(bad))
        one_line_exit_4(cli("audit", "verify-proof", str(proof), "--key", str(pub)))
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    pub.write_text(public_key_b64(Ed25519PrivateKey.generate().public_key()))
    proof.write_text(p.stdout)
    one_line_exit_4(cli("audit", "verify-proof", str(proof), "--key", str(pub)))


def test_a_hand_edit_does_not_relax_verify_before_it_is_recorded(tmp_path: Path) -> None:
    """Red team a12: the policy in force when the log was last written (its text kept
    under its digest in policy-history) binds `audit verify`; relaxing the file by hand
    does not relax verification until a writer records the change."""
    lab = make_lab(tmp_path / "lab", entries=2)
    root = str(lab.paths.root)
    strict = lab.paths.policy.read_text().replace(
        "require_witness = false", "require_witness = true"
    )
    lab.paths.policy.write_text(strict)
    with audit_writer(open_lab(lab.paths.root), PASS):  # a writer records the change
        pass
    assert "requires a witness" in one_line_exit_4(cli("audit", "verify", "--lab", root))
    relaxed = strict.replace("require_witness = true", "require_witness = false")
    lab.paths.policy.write_text(relaxed)  # by hand, unrecorded
    assert "requires a witness" in one_line_exit_4(cli("audit", "verify", "--lab", root))


@pytest.mark.parametrize("spoil", ["deleted", "fifo", "dev-zero", "edited", "directory"])
def test_a_hand_edit_with_its_recorded_text_spoiled_is_tampering(tmp_path: Path, spoil) -> None:
    """Red team 14g (held-out): the text the log was last written under, kept in
    policy-history, spoiled (deleted, a FIFO, a link to /dev/zero, edited, a directory)
    while policy.toml is relaxed by hand: verify reports the kept text, exit 4, and never
    falls back on the relaxed file."""
    import hashlib

    lab = make_lab(tmp_path / "lab", entries=2)
    root = str(lab.paths.root)
    strict = lab.paths.policy.read_text().replace(
        "require_witness = false", "require_witness = true"
    )
    lab.paths.policy.write_text(strict)
    with audit_writer(open_lab(lab.paths.root), PASS):  # a writer records the change
        pass
    kept = lab.paths.root / "policy-history" / f"{hashlib.sha256(strict.encode()).hexdigest()}.toml"
    assert kept.read_text() == strict
    lab.paths.policy.write_text(strict.replace("require_witness = true", "require_witness = false"))
    kept.unlink()
    if spoil == "fifo":
        os.mkfifo(kept)
    elif spoil == "dev-zero":
        kept.symlink_to("/dev/zero")
    elif spoil == "edited":
        kept.write_text(strict.replace("require_witness = true", "require_witness = false"))
    elif spoil == "directory":
        kept.mkdir()
    line = one_line_exit_4(cli("audit", "verify", "--lab", root))
    assert "policy-history" in line


@pytest.mark.parametrize("spoil", ["fifo", "dev-zero", "edited", "directory"])
def test_a_kept_policy_text_spoiled_is_tampering_without_any_hand_edit(
    tmp_path: Path, spoil
) -> None:
    """Red team 14g (held-out case 03): the kept texts are what evidence packs show for
    each policy digest of the log; verify checks every one is a regular file hashing to
    its name."""
    lab = make_lab(tmp_path / "lab", entries=2)
    [kept] = sorted((lab.paths.root / "policy-history").glob("*.toml"))
    text = kept.read_text()
    assert cli("audit", "verify", "--lab", str(lab.paths.root)).returncode == 0
    kept.unlink()
    if spoil == "fifo":
        os.mkfifo(kept)
    elif spoil == "dev-zero":
        kept.symlink_to("/dev/zero")
    elif spoil == "edited":
        kept.write_text(text + "\n")
    else:
        kept.mkdir()
    line = one_line_exit_4(cli("audit", "verify", "--lab", str(lab.paths.root)))
    assert "policy-text-damaged" in line or "policy-history" in line


def test_a_hand_edit_with_its_recorded_text_intact_verifies_under_the_recorded_limits(
    tmp_path: Path,
) -> None:
    """The positive control of the test above: nothing spoiled, a stricter hand edit is
    checked under the (looser) recorded limits and the lab verifies."""
    lab = make_lab(tmp_path / "lab", entries=2)
    text = lab.paths.policy.read_text()
    lab.paths.policy.write_text(text.replace("require_witness = false", "require_witness = true"))
    p = cli("audit", "verify", "--lab", str(lab.paths.root))
    assert p.returncode == 4  # the stricter of the two applies: no witness, refused
    lab.paths.policy.write_text(text + "\n# a comment added by hand\n")
    assert cli("audit", "verify", "--lab", str(lab.paths.root)).returncode == 0


def test_a_log_re_signed_under_another_key_fails_plain_verify_once_pinned(
    tmp_path: Path, monkeypatch
) -> None:
    """Red team a10: without the passphrase, the whole log re-signed under a key of the
    attacker's own (entry 0, lab_signing.pub, every checkpoint and the head). Plain
    `audit verify` on a machine that pinned the lab's key (at init, or at an earlier
    verify) says signing-key-replaced (exit 4); with no pin it passes but says that it
    trusted the key on first use."""

    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from facelab.audit import checkpoint as ckpt
    from facelab.labdir import public_key_b64

    monkeypatch.setenv("FACELAB_KNOWN_LABS", str(tmp_path / "pins.json"))
    lab = make_lab(tmp_path / "lab", entries=5, checkpoint_every=4)
    first = cli("audit", "verify", "--lab", str(lab.paths.root))
    assert first.returncode == 0 and "pinned this lab's key on first use" in first.stdout
    again = cli("audit", "verify", "--lab", str(lab.paths.root))
    assert again.returncode == 0 and "lab key: the one pinned" in again.stdout
    assert "trust on first use" not in again.stdout

    # the forgery: a new key; entry 0 names it; every checkpoint and both head slots
    # re-signed over the unchanged entries (so the roots are right)
    evil = Ed25519PrivateKey.generate()
    evil_b64 = public_key_b64(evil.public_key())
    old_b64 = public_key_b64(load_public_key(lab))
    ls = lines(lab)
    ls = [x.replace(old_b64.encode(), evil_b64.encode()) for x in ls]
    write_lines(lab, ls)
    (lab.paths.audit / "hashes.bin").unlink()
    (lab.paths.audit / "index.bin").unlink()
    meta = lab.paths.meta.read_text().replace(old_b64, evil_b64)
    lab.paths.meta.write_text(meta)
    lab.paths.public_key.write_text(lab.paths.public_key.read_text().replace(old_b64, evil_b64))
    leaves = [rfc9162.leaf_hash(x) for x in ls]
    for p in checkpoint_files(lab.paths.audit):
        size = int(p.stem)
        cp = ckpt.Checkpoint(lab.origin, size, rfc9162.root_from_leaf_hashes(leaves[:size]))
        p.write_bytes(ckpt.sign(cp, evil).encode())
    for name in _head.SLOTS:
        cp = ckpt.Checkpoint(lab.origin, len(ls), rfc9162.root_from_leaf_hashes(leaves))
        (lab.paths.keys / name).write_bytes(_head.encode(ckpt.sign(cp, evil).encode()))

    unpinned = cli("audit", "verify", "--lab", str(lab.paths.root), "--no-pin")
    assert unpinned.returncode == 0, unpinned.stderr  # nothing local can tell ...
    assert "trust on first use" in unpinned.stdout  # ... and it says so
    err = one_line_exit_4(cli("audit", "verify", "--lab", str(lab.paths.root)))
    assert "signing-key-replaced" in err and "pinned" in err


@pytest.mark.parametrize("name", ["lock", "entries.jsonl", "hashes.bin"])
def test_a_log_file_replaced_by_a_link_is_never_followed(lab, tmp_path, name) -> None:
    """Red team 2, a02: `audit/lock` as a symlink made the next command create the file
    it points to, outside the lab. The log's files are opened without following links."""
    target = tmp_path / "outside" / name
    target.parent.mkdir()
    p = lab.paths.audit / name
    keep = p.read_bytes() if p.exists() else b""
    if name != "lock":
        target.write_bytes(keep)
    p.unlink()
    p.symlink_to(target)
    with pytest.raises(TamperedError, match="a link"):
        audit_writer(lab, PASS)
    assert target.exists() == (name != "lock")  # nothing created through the link
    if name != "lock":
        assert target.read_bytes() == keep  # nothing written through it


def test_a_foreign_key_in_lab_json_is_tampering(lab) -> None:
    """Red team 2, a01: lab.json (what an evidence pack and an outsider read first)
    naming another public key passed `audit verify`."""
    meta = json.loads(lab.paths.meta.read_text())
    assert cli("audit", "verify", "--lab", str(lab.paths.root)).returncode == 0  # control
    meta["public_key"] = public_key_b64(Ed25519PrivateKey.generate().public_key())
    lab.paths.meta.write_text(json.dumps(meta))
    err = one_line_exit_4(cli("audit", "verify", "--lab", str(lab.paths.root)))
    assert "lab.json names another public key" in err


def test_14_the_crash_window_is_max_unsigned_tail_entries_inclusive() -> None:
    """At most ``max_unsigned_tail`` authentic entries after the head are adopted without
    a repair actor; one more is a rolled-back head."""
    from types import SimpleNamespace

    from facelab.audit.log import AuditLog

    log = SimpleNamespace(max_unsigned_tail=5)
    assert AuditLog._tail_error(log, 10, 5, 5) is None
    assert "more than a crash leaves" in AuditLog._tail_error(log, 10, 6, 6)
    assert "forged append" in AuditLog._tail_error(log, 10, 5, 4)  # control: other reason


def test_14_an_authentic_entry_at_another_position_is_not_adopted() -> None:
    """A replayed entry (valid MAC, a seq already used) ends the authentic tail: the
    entries it counts must sit at their own positions first_seq, first_seq + 1, ..."""
    from types import SimpleNamespace

    from facelab.audit.events import entry_bytes
    from facelab.audit.log import AuditLog

    key, origin = b"k" * 32, "lab/1"
    log = SimpleNamespace(_mac_key=key, origin=origin, _known_sessions=None)

    def e(seq: int) -> bytes:
        ev = Event("test.x", "alice", details={"seq": seq})
        return entry_bytes(ev, seq, "2026-01-01T00:00:00Z", "p", mac_key=key, origin=origin)

    assert AuditLog._authentic(log, [e(5), e(6), e(7)], 5) == 3  # control: in order
    assert AuditLog._authentic(log, [e(5), e(6), e(6), e(7)], 5) == 2  # replayed 6
    assert AuditLog._authentic(log, [e(5), e(7)], 5) == 1  # a gap


def test_max_unwitnessed_allows_exactly_that_many_entries_past_the_witness(tmp_path) -> None:
    lab = make_lab(tmp_path / "lab", entries=3)
    root, wdir = str(lab.paths.root), str(tmp_path / "w")
    vkey = cli("witness", "init", "--dir", wdir, "--name", "w3").stdout.strip().splitlines()[-1]
    assert cli("audit", "witness-add", "--lab", root, vkey).returncode == 0
    assert cli("audit", "witness", "--lab", root, "--witness-dir", wdir).returncode == 0
    with audit_writer(lab, PASS) as log:
        for i in range(3):
            log.record(Event("test.grow", "tester", details={"i": i}))
    cosigned = verify(lab).witnesses[0]["cosigned_size"]
    gap = len(lines(lab)) - cosigned
    assert gap >= 3  # the entries written after the cosignature

    def unwitnessed(allowed: int) -> list:
        return [d for d in verify(lab, max_unwitnessed=allowed).damage if d.kind == "unwitnessed"]

    assert unwitnessed(gap) == []  # exactly the allowed tail: intact
    assert len(unwitnessed(gap - 1)) == 1  # one entry more than allowed: damage


def test_a_whole_lab_replaced_at_its_path_under_a_new_identity_is_detected(
    tmp_path: Path, monkeypatch
) -> None:
    """Red team b01/b02: with write access to the files, replace the whole lab directory by
    another lab (its own key, origin and log, all consistent). The key pin is per origin
    and the impostor has a new origin, so only a pin of the directory tells: this machine
    knew another lab there (`lab-replaced`, exit 4). A lab made there by facelab itself
    (init) re-pins; `--no-pin` does not look."""
    monkeypatch.setenv("FACELAB_KNOWN_LABS", str(tmp_path / "pins.json"))
    place = tmp_path / "lab"
    real = make_lab(place, entries=3)
    assert cli("audit", "verify", "--lab", str(place)).returncode == 0
    impostor = make_lab(tmp_path / "elsewhere", entries=3)  # pinned at its own path
    assert impostor.origin != real.origin
    shutil.rmtree(place)
    shutil.move(str(impostor.paths.root), str(place))
    err = one_line_exit_4(cli("audit", "verify", "--lab", str(place)))
    assert "lab-replaced" in err and real.origin in err and impostor.origin in err
    # the impostor's own verification passes without the directory pin
    assert cli("audit", "verify", "--lab", str(place), "--no-pin").returncode == 0
    # a lab that facelab itself made at that place is the new owner (control)
    shutil.rmtree(place)
    fresh = make_lab(place, entries=1)
    ok = cli("audit", "verify", "--lab", str(place))
    assert ok.returncode == 0, ok.stderr
    pins = json.loads((tmp_path / "pins.json").read_text())
    assert pins[str(place.resolve())]["origin"] == fresh.origin


def test_a_lab_directory_replaced_by_a_link_to_another_known_lab_is_detected(
    tmp_path: Path, monkeypatch
) -> None:
    """Red team 14h, case 05: lab A's directory replaced by a symbolic link to lab B (a
    lab this machine pinned at its own path). The link resolves to B's path, whose pin
    matches B; the name given, pinned to A, does not. A link to a lab under its own name
    (the control) is the same lab and verifies."""
    monkeypatch.setenv("FACELAB_KNOWN_LABS", str(tmp_path / "pins.json"))
    a, b = tmp_path / "a", tmp_path / "b"
    real = make_lab(a, entries=2)
    other = make_lab(b, entries=2)
    assert cli("audit", "verify", "--lab", str(a)).returncode == 0
    assert cli("audit", "verify", "--lab", str(b)).returncode == 0
    shutil.rmtree(a)
    a.symlink_to(b)
    err = one_line_exit_4(cli("audit", "verify", "--lab", str(a)))
    assert "lab-replaced" in err and real.origin in err and other.origin in err
    link = tmp_path / "b-by-another-name"  # control: a new name for the same lab
    link.symlink_to(b)
    assert cli("audit", "verify", "--lab", str(link)).returncode == 0
    assert cli("audit", "verify", "--lab", str(link)).returncode == 0  # pinned under it now


@pytest.mark.parametrize("how", ["deleted", "rolled-back"])
def test_14f_a_witness_cosignature_deleted_or_rolled_back_is_caught_by_the_pin(
    tmp_path: Path, how
) -> None:
    """Red team 14f, cases 03 and 04: within ``max_unwitnessed`` a missing or older
    cosignature looked like a witness that lags. This machine pinned the size it saw
    the witness cosign: less than that is witness-rolled-back (exit 4), and the next
    writer refuses."""
    lab = make_lab(tmp_path / "lab", entries=3, checkpoint_every=1000)
    root, wdir = str(lab.paths.root), str(tmp_path / "w")
    p = cli("witness", "init", "--dir", wdir, "--name", "w1.example")
    assert p.returncode == 0, p.stderr
    assert (
        cli("audit", "witness-add", "--lab", root, p.stdout.strip().splitlines()[-1]).returncode
        == 0
    )
    assert cli("audit", "witness", "--lab", root, "--witness-dir", wdir).returncode == 0
    note = lab.paths.audit / "witness" / "w1.example.note"
    older = note.read_bytes()
    with audit_writer(lab, PASS) as log:
        log.record(Event("test.grow", "tester"))
    assert cli("audit", "witness", "--lab", root, "--witness-dir", wdir).returncode == 0
    assert cli("audit", "verify", "--lab", root).returncode == 0  # control
    if how == "deleted":
        note.unlink()
    else:
        note.write_bytes(older)
    assert "witness-rolled-back" in one_line_exit_4(cli("audit", "verify", "--lab", root))
    assert_writer_refuses(lab)


def test_14i_entries_a_copy_of_the_lab_wrote_elsewhere_are_never_adopted(
    tmp_path: Path, monkeypatch
) -> None:
    """Red team 14i, case 12: a copy of the lab (a backup) used by a passphrase holder on
    another machine (its own pin file) records genuine, lab-MACed entries; appended to
    the original's ``entries.jsonl`` they looked like this machine's crash tail and the
    next writer adopted them. Each writer's entries are now MACed under its own session,
    registered in this machine's pin file before it writes: the grafted entries are a
    forged append (exit 4) until ``audit repair`` cuts them on the record. Positive
    control: a tail this machine's own writer left (a crash before its signature) is
    still adopted."""
    monkeypatch.setenv("FACELAB_KNOWN_LABS", str(tmp_path / "here.json"))
    lab = make_lab(tmp_path / "lab", entries=3)
    fork = tmp_path / "fork"
    shutil.copytree(lab.paths.root, fork, symlinks=True)
    n = len(lines(lab))
    env_elsewhere = {**os.environ, "FACELAB_KNOWN_LABS": str(tmp_path / "elsewhere.json")}
    p = subprocess.run(
        [sys.executable, "-m", "facelab.cli", "policy", "set", "--lab", str(fork),
         "export.refuse_at", "high"],
        capture_output=True, text=True,
        env={**env_elsewhere, "PYTHONPATH": str(REPO), "FACELAB_PASSPHRASE": PASS.decode()},
    )  # fmt: skip
    assert p.returncode == 0, p.stderr
    grafted = (fork / "audit" / "entries.jsonl").read_bytes().splitlines(keepends=True)[n:]
    assert grafted and b"policy.change" in b"".join(grafted)
    with open(lab.paths.audit / "entries.jsonl", "ab") as f:
        f.write(b"".join(grafted))
    assert "forged append" in one_line_exit_4(cli("vault", "list", "--lab", str(lab.paths.root)))
    assert cli("audit", "verify", "--lab", str(lab.paths.root)).returncode == 4
    # repair cuts them, on the record; the policy change never enters this lab's history
    p = cli("audit", "repair", "--lab", str(lab.paths.root))
    assert p.returncode == 0, p.stderr
    after = [json.loads(x) for x in lines(lab)]
    assert not any(e["action"] == "policy.change" for e in after)
    assert any(e["action"] == "audit.recovered" for e in after)
    assert cli("audit", "verify", "--lab", str(lab.paths.root)).returncode == 0
    # positive control: this machine's writer, its head rolled back to before its last
    # batch (what a crash between fsync and signature leaves), is adopted quietly
    before = _head.read(lab.paths.keys, load_public_key(lab), lab.origin).head
    with audit_writer(lab, PASS) as log:
        log.record(Event("test.mine", "tester"))
    for slot in (0, 1):
        _head.write(lab.paths.keys, before.note, slot)
    assert cli("vault", "list", "--lab", str(lab.paths.root)).returncode == 0
    got = [json.loads(x) for x in lines(lab)]
    rec = [e for e in got if e["action"] == "audit.recovered"][-1]
    assert rec["decision"] == "adopted-tail"
