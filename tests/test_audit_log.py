"""The audit log on real files: durability, recovery, concurrency, tamper detection."""

from __future__ import annotations

import base64
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat
from facelab.audit import Event, _head, checkpoint, rfc9162
from facelab.audit.log import checkpoint_files
from facelab.audit.proofs import prove_consistency, prove_inclusion
from facelab.errors import TamperedError
from facelab.labdir import audit_writer, load_public_key, public_key_b64, unlock

from tests.audit_helpers import PASS, lines, make_lab, seqs, verify, write_lines

REPO = Path(__file__).resolve().parents[1]


def _install_key(lab, key: Ed25519PrivateKey) -> None:
    """What an operator with the passphrase could do: seal another lab key in place."""
    raw = key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
    lab.paths.signing_key.write_bytes(unlock(lab, PASS).seal_signing_key(lab.lab_id, raw))


def kinds(rep) -> list[tuple[str, int | None]]:
    return [(d.kind, d.entry) for d in rep.damage]


# ---------------------------------------------------------------- normal operation
def test_a_fresh_lab_has_a_verified_genesis_entry(tmp_path: Path) -> None:
    lab = make_lab(tmp_path / "lab")
    rep = verify(lab)
    assert rep.intact and rep.entries == 1 and rep.checkpoints == 1
    entry = json.loads(lines(lab)[0])
    assert entry["action"] == "lab.init" and entry["seq"] == 0
    assert entry["details"]["public_key"] == public_key_b64(load_public_key(lab))
    assert entry["policy"].startswith("sha256:")


def test_checkpoints_every_n_entries_and_on_close(tmp_path: Path) -> None:
    lab = make_lab(tmp_path / "lab", entries=25, checkpoint_every=10)
    sizes = [int(p.stem) for p in checkpoint_files(lab.paths.audit)]
    assert sizes == [1, 10, 20, 26]  # genesis close, every 10, final close
    for p in checkpoint_files(lab.paths.audit):
        cp = checkpoint.verify(p.read_text(), load_public_key(lab), lab.origin)
        assert cp.size == int(p.stem)
    assert verify(lab).intact


def test_inclusion_and_consistency_proofs_from_the_store(tmp_path: Path, monkeypatch) -> None:
    lab = make_lab(tmp_path / "lab", entries=299, checkpoint_every=50)
    cps = [
        checkpoint.verify(p.read_text(), load_public_key(lab), lab.origin)
        for p in checkpoint_files(lab.paths.audit)
    ]
    latest = cps[-1]
    assert latest.size == 300
    reads = {"n": 0}
    from facelab.audit import _store

    real = _store.HashFile.read

    def counting(self, index):
        reads["n"] += 1
        return real(self, index)

    monkeypatch.setattr(_store.HashFile, "read", counting)
    for k in range(0, 300, 7):
        reads["n"] = 0
        p = prove_inclusion(lab.paths.audit, k, latest.size)
        assert reads["n"] <= 9 * 9  # O(log^2 n) hash reads at worst, never the whole log
        assert rfc9162.leaf_hash(p.entry_line) == p.leaf_hash
        rfc9162.verify_inclusion(k, latest.size, p.leaf_hash, p.proof, latest.root)
    for old in cps[:-1]:
        proof = prove_consistency(lab.paths.audit, old.size, latest.size)
        rfc9162.verify_consistency(old.size, latest.size, old.root, latest.root, proof)


def test_reopen_continues_the_same_tree(tmp_path: Path) -> None:
    lab = make_lab(tmp_path / "lab", entries=5)
    with audit_writer(lab, PASS) as log:
        assert log.size == 6
        r = log.record(Event("test.again", "tester"))
        assert r.seq == 6
    assert verify(lab).intact and seqs(lab) == list(range(7))


def test_group_commit_batches_appends_into_fewer_syncs(tmp_path: Path, monkeypatch) -> None:
    lab = make_lab(tmp_path / "lab")
    log = audit_writer(lab, PASS)
    syncs = {"n": 0}
    real = os.fsync

    def slow_fsync(fd):
        syncs["n"] += fd == log._entries_fd  # one entries sync (and one head sync) a batch
        time.sleep(0.002)  # a disk that takes time to sync, so that callers pile up
        return real(fd)

    monkeypatch.setattr(os, "fsync", slow_fsync)
    receipts = []

    def worker(t: int) -> None:
        for i in range(50):
            receipts.append(log.record(Event("test.thread", f"t{t}", details={"i": i})))

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    monkeypatch.setattr(os, "fsync", real)
    log.close()
    assert sorted(r.seq for r in receipts) == list(range(1, 401))
    assert syncs["n"] < 400 / 2, syncs  # many appends shared one sync
    assert verify(lab).intact


def test_record_many_is_one_batch(tmp_path: Path) -> None:
    lab = make_lab(tmp_path / "lab")
    with audit_writer(lab, PASS) as log:
        rs = log.record_many([Event("test.batch", "tester", details={"i": i}) for i in range(20)])
    assert [r.seq for r in rs] == list(range(1, 21))
    assert verify(lab).intact


def test_bad_events_are_refused_before_writing(tmp_path: Path) -> None:
    lab = make_lab(tmp_path / "lab")
    with audit_writer(lab, PASS):
        for bad in (
            {"action": "NoDot", "actor": "a"},
            {"action": "x.y", "actor": ""},
            {"action": "x.y", "actor": "a", "details": {"f": float("nan")}},
        ):
            with pytest.raises(ValueError):
                Event(**bad)  # the constructor checks the schema; nothing reaches the log
    assert seqs(lab) == [0]


# ---------------------------------------------------------------- processes and crashes
_WRITER = r"""
import os, random, signal, sys
import facelab.audit.log as logmod
from facelab.labdir import open_lab, audit_writer
from facelab.audit import Event
lab = open_lab(sys.argv[1]); tag = sys.argv[2]; n = int(sys.argv[3])
mode = sys.argv[4] if len(sys.argv) > 4 else "run"
rng = random.Random(int(sys.argv[5]) if len(sys.argv) > 5 else 0)
crash_after = rng.randint(3, 40)  # batches before the injected crash
batches = {"n": 0}
real_write, real_pwrite = os.write, os.pwrite

def die():
    os.kill(os.getpid(), signal.SIGKILL)

def torn_write(fd, data):  # the kernel wrote only part of the batch, then the kill
    if batches["n"] >= crash_after and len(data) > 1:
        real_write(fd, data[: rng.randint(1, len(data) - 1)])
        die()
    return real_write(fd, data)

def lagging_pwrite(fd, data, off):  # entries are durable, derived files are not
    if batches["n"] >= crash_after and fd == target["fd"]:
        if mode.endswith("half"):
            real_pwrite(fd, data[: len(data) // 2], off)
        die()
    return real_pwrite(fd, data, off)

log = audit_writer(lab, b"correct horse battery staple")
target = {"fd": log._index_fd if "index" in mode else log._hashes_fd}
if mode == "tear":
    logmod.os.write = torn_write
elif mode.startswith("lag"):
    logmod.os.pwrite = lagging_pwrite
for i in range(n):
    k = 1 + (i * 7) % 5
    rs = log.record_many([Event("test.proc", tag, details={"i": i, "j": j}) for j in range(k)])
    batches["n"] += 1
    print("ack", " ".join(str(r.seq) + ":" + r.leaf_hash.hex() for r in rs), flush=True)
log.close()
print("closed", flush=True)
"""


def _writer(lab_root: Path, tag: str, n: int, mode: str = "run", seed: int = 0) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.Popen(
        [sys.executable, "-c", _WRITER, str(lab_root), tag, str(n), mode, str(seed)],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )


def test_two_processes_appending_at_once_lose_nothing(tmp_path: Path) -> None:
    lab = make_lab(tmp_path / "lab", checkpoint_every=16)
    procs = [_writer(lab.paths.root, tag, 60) for tag in ("A", "B")]
    acked: dict[int, str] = {}
    for p in procs:
        out, _ = p.communicate(timeout=120)
        assert p.returncode == 0
        for line in out.splitlines():
            if line.startswith("ack"):
                for item in line.split()[1:]:
                    seq, h = item.split(":")
                    assert int(seq) not in acked
                    acked[int(seq)] = h
    ls = lines(lab)
    assert seqs(lab) == list(range(len(ls)))
    assert len(acked) == len(ls) - 1  # everything but genesis was acknowledged once
    for seq, h in acked.items():
        assert rfc9162.leaf_hash(ls[seq]).hex() == h
    for tag in ("A", "B"):  # each writer's own order is kept
        mine = [json.loads(x)["details"] for x in ls if json.loads(x)["actor"] == tag]
        assert mine == sorted(mine, key=lambda d: (d["i"], d["j"]))
    assert verify(lab).intact


def _acks(text: str, acked: dict[int, str]) -> None:
    for line in text.splitlines():
        if line.startswith("ack"):
            for item in line.split()[1:]:
                seq, h = item.split(":")
                acked[int(seq)] = h


def _check_after_crash(lab, acked: dict[int, str]) -> list:
    with audit_writer(lab, PASS) as log:  # reopening recovers, on the record
        recoveries = list(log.recoveries)
    ls = lines(lab)
    for seq, h in acked.items():
        assert rfc9162.leaf_hash(ls[seq]).hex() == h, f"acknowledged entry {seq} lost"
    rep = verify(lab)
    assert rep.intact, rep.damage
    return recoveries


@pytest.mark.parametrize("round_", range(8))
def test_sigkill_at_random_times_loses_no_acknowledged_entry(tmp_path: Path, round_) -> None:
    rng = random.Random(round_)
    lab = make_lab(tmp_path / "lab", checkpoint_every=8)
    p = _writer(lab.paths.root, "K", 10_000)
    deadline = time.monotonic() + rng.uniform(0.4, 1.6)
    acked: dict[int, str] = {}
    assert p.stdout is not None
    while time.monotonic() < deadline:
        _acks(p.stdout.readline(), acked)
    p.send_signal(signal.SIGKILL)
    p.wait()
    _acks(p.stdout.read(), acked)  # acks printed before the kill landed
    assert acked, "the writer acknowledged nothing before the kill"
    _check_after_crash(lab, acked)


@pytest.mark.parametrize(
    "mode", ["tear", "lag-index", "lag-index-half", "lag-hashes", "lag-hashes-half"]
)
@pytest.mark.parametrize("seed", range(4))
def test_sigkill_inside_an_append_recovers(tmp_path: Path, mode: str, seed: int) -> None:
    """Kill the writer at injected points inside an append: mid-write of the entries (a
    torn line at a random byte), or after the entries are durable but before the index
    or the hash store is (fully) written."""
    lab = make_lab(tmp_path / "lab", checkpoint_every=8)
    p = _writer(lab.paths.root, "K", 1000, mode, seed)
    out, _ = p.communicate(timeout=60)
    assert p.returncode == -signal.SIGKILL
    acked: dict[int, str] = {}
    _acks(out, acked)
    recoveries = _check_after_crash(lab, acked)
    # a torn line (cut), or whole entries written but never signed (never acknowledged,
    # but the writer's own: they carry its MAC, so the next writer adopts them)
    assert all(r.kind in ("torn-tail", "adopted-tail") for r in recoveries)
    if recoveries:  # (a tear exactly at a line boundary leaves nothing to cut)
        assert json.loads(lines(lab)[-1])["action"] == "audit.recovered"
    if mode == "tear" and seed < 2:
        assert recoveries, "the injected tear left no torn line"


# ---------------------------------------------------------------- tails
def test_torn_tail_is_reported_then_recovered_on_the_record(tmp_path: Path) -> None:
    lab = make_lab(tmp_path / "lab", entries=3)
    with open(lab.paths.audit / "entries.jsonl", "ab") as f:
        f.write(b'{"action":"test.torn","act')
    rep = verify(lab)
    assert kinds(rep) == [("torn-tail", 4)]
    with audit_writer(lab, PASS) as log:
        assert [r.kind for r in log.recoveries] == ["torn-tail"]
    last = json.loads(lines(lab)[-1])
    assert last["action"] == "audit.recovered" and last["decision"] == "torn-tail"
    assert last["details"]["bytes_cut"] == 26
    assert verify(lab).intact


def test_garbage_tail_is_refused_until_repaired_on_the_record(tmp_path: Path) -> None:
    lab = make_lab(tmp_path / "lab", entries=3)
    garbage = random.Random(1).randbytes(100)
    with open(lab.paths.audit / "entries.jsonl", "ab") as f:
        f.write(garbage)
    rep = verify(lab)
    assert rep.first() is not None and rep.first().kind == "garbage-tail"
    with pytest.raises(TamperedError, match="garbage"):
        audit_writer(lab, PASS)
    with audit_writer(lab, PASS, repair_actor="officer") as log:
        assert [r.kind for r in log.recoveries] == ["garbage-tail"]
    last = json.loads(lines(lab)[-1])
    assert last["action"] == "audit.recovered" and last["actor"] == "officer"
    assert verify(lab).intact


# ---------------------------------------------------------------- tampering on the files
@pytest.fixture
def signed_lab(tmp_path: Path):
    return make_lab(tmp_path / "lab", entries=40, checkpoint_every=10)


def test_edited_entry(signed_lab) -> None:
    ls = lines(signed_lab)
    ls[17] = ls[17].replace(b'"i":16', b'"i":61')
    write_lines(signed_lab, ls)
    assert verify(signed_lab).first().kind == "edited-entry"
    assert verify(signed_lab).first().entry == 17


def test_edited_entry_with_the_hash_store_rebuilt(signed_lab) -> None:
    ls = lines(signed_lab)
    ls[3] = ls[3].replace(b'"tester"', b'"mallory"')
    write_lines(signed_lab, ls)
    for f in ("hashes.bin", "index.bin"):
        (signed_lab.paths.audit / f).unlink()
    # the writer rebuilds the derived files from the edited entries, then must refuse
    with (
        pytest.raises(TamperedError, match="refusing to sign"),
        audit_writer(signed_lab, PASS) as log,
    ):
        log.record(Event("test.after", "mallory"))
    sizes = [int(p.stem) for p in checkpoint_files(signed_lab.paths.audit)]
    assert max(sizes) == 41  # no checkpoint was signed over the rewritten history
    assert verify(signed_lab).first().kind == "edited-entry"


def test_a_damaged_hash_store_is_not_called_an_edited_entry(signed_lab) -> None:
    hashes = signed_lab.paths.audit / "hashes.bin"
    data = bytearray(hashes.read_bytes())
    data[4 * 32 + 3] ^= 0xFF  # corrupt the stored leaf hash of entry 3 (position 4)
    hashes.write_bytes(bytes(data))
    rep = verify(signed_lab)
    assert rep.first().kind == "hash-store-mismatch"
    with pytest.raises(TamperedError, match="hash-store-mismatch"):
        audit_writer(signed_lab, PASS)  # verify before signing: no silent rebuild
    with audit_writer(signed_lab, PASS, repair_actor="officer") as log:
        log.rebuild()
    assert verify(signed_lab).intact


def test_an_edit_after_the_last_checkpoint(tmp_path: Path) -> None:
    lab = make_lab(tmp_path / "lab", entries=12, checkpoint_every=5)
    # the writer closed (checkpoint at 13); append two more without closing: an unsigned tail
    log = audit_writer(lab, PASS)
    log.record_many([Event("test.tail", "tester", details={"k": k}) for k in range(2)])
    ls = lines(lab)
    ls[-1] = ls[-1].replace(b'"k":1', b'"k":7')
    write_lines(lab, ls)
    rep = verify(lab)
    assert rep.first().kind == "edited-entry" and rep.first().entry == 14


def test_deleted_entry(signed_lab) -> None:
    ls = lines(signed_lab)
    del ls[12]
    write_lines(signed_lab, ls)
    rep = verify(signed_lab)
    assert rep.first().kind == "deleted-entry" and rep.first().entry == 12


def test_reordered_entries(signed_lab) -> None:
    ls = lines(signed_lab)
    ls[20], ls[25] = ls[25], ls[20]
    write_lines(signed_lab, ls)
    rep = verify(signed_lab)
    assert rep.first().kind == "reordered-entries" and rep.first().entry == 20


def test_tail_truncated_below_a_signed_checkpoint(signed_lab) -> None:
    ls = lines(signed_lab)
    write_lines(signed_lab, ls[:33])
    rep = verify(signed_lab)
    assert ("truncated", 33) in kinds(rep)
    assert rep.first().kind == "truncated"


def test_forged_checkpoint(signed_lab) -> None:
    files = checkpoint_files(signed_lab.paths.audit)
    note = files[-1].read_text().split("\n")
    note[1] = "4000"  # claim a bigger tree under the old signature
    files[-1].write_text("\n".join(note))
    rep = verify(signed_lab)
    assert rep.first().kind == "forged-checkpoint"


def test_checkpoint_signed_by_another_key(signed_lab) -> None:
    evil = Ed25519PrivateKey.generate()
    cp = checkpoint.Checkpoint(signed_lab.origin, 41, b"\x00" * 32)
    (signed_lab.paths.audit / "checkpoints" / f"{41:012d}.note").write_text(
        checkpoint.sign(cp, evil)
    )
    assert verify(signed_lab).first().kind == "forged-checkpoint"


def test_replaced_signing_key(signed_lab) -> None:
    evil = Ed25519PrivateKey.generate()
    paths = signed_lab.paths
    _install_key(signed_lab, evil)
    paths.public_key.write_text(public_key_b64(evil.public_key()) + "\n")
    for f in checkpoint_files(paths.audit):  # re-sign every checkpoint with the new key
        cp, _ = checkpoint.parse(f.read_text())
        f.write_text(checkpoint.sign(cp, evil))
    rep = verify(signed_lab)
    assert rep.first().kind == "signing-key-replaced" and rep.first().entry == 0


def test_trusted_key_from_outside_catches_a_full_rewrite(signed_lab, tmp_path, monkeypatch) -> None:
    """Rewrite entry 0 too: only a key or checkpoint kept outside the lab can tell: the
    head this machine pinned, or on another machine a trusted key."""
    original = load_public_key(signed_lab)
    evil = Ed25519PrivateKey.generate()
    ls = lines(signed_lab)
    g = json.loads(ls[0])
    g["details"]["public_key"] = public_key_b64(evil.public_key())
    ls[0] = json.dumps(g, sort_keys=True, separators=(",", ":")).encode()
    write_lines(signed_lab, ls)
    signed_lab.paths.public_key.write_text(public_key_b64(evil.public_key()) + "\n")
    for f in ("hashes.bin", "index.bin"):
        (signed_lab.paths.audit / f).unlink()
    for f in checkpoint_files(signed_lab.paths.audit):
        f.unlink()
    _install_key(signed_lab, evil)
    # the head outside the log directory must be forged too (it needs the passphrase)
    for f in signed_lab.paths.keys.glob("audit_head.*"):
        f.unlink()
    root = rfc9162.root_from_leaf_hashes([rfc9162.leaf_hash(x) for x in ls])
    forged = checkpoint.sign(checkpoint.Checkpoint(signed_lab.origin, len(ls), root), evil)
    (signed_lab.paths.keys / "audit_head.a.note").write_bytes(_head.encode(forged.encode()))
    (signed_lab.paths.audit / "checkpoints" / f"{len(ls):012d}.note").write_text(forged)
    ls_before = lines(signed_lab)
    with pytest.raises(TamperedError, match=r"forged-checkpoint.*pinned"):
        audit_writer(signed_lab, PASS)  # this machine pinned a head under the real key
    assert lines(signed_lab) == ls_before  # nothing signed over the forgery
    monkeypatch.setenv("FACELAB_KNOWN_LABS", str(tmp_path / "another-machine.json"))
    with audit_writer(signed_lab, PASS):
        pass  # a machine that never saw the lab re-signs a checkpoint over the forgery
    assert verify(signed_lab).intact  # self-consistent: undetectable from the lab alone
    rep = verify(signed_lab, trusted_key=original)
    assert rep.first().kind in {"forged-checkpoint", "signing-key-replaced"}


def test_cli_names_the_kind_and_the_entry(signed_lab) -> None:
    ls = lines(signed_lab)
    del ls[7]
    write_lines(signed_lab, ls)
    p = subprocess.run(
        [
            sys.executable,
            "-m",
            "facelab.cli",
            "audit",
            "verify",
            "--lab",
            str(signed_lab.paths.root),
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        check=False,
    )
    assert p.returncode == 4
    assert "deleted-entry at entry 7" in p.stderr
    assert "Traceback" not in p.stderr


def test_b64_of_key_round_trips() -> None:
    k = Ed25519PrivateKey.generate().public_key()
    assert len(base64.b64decode(public_key_b64(k))) == 32


def test_two_head_slots_with_different_roots_at_one_size_are_a_split_view(tmp_path) -> None:
    # both slots verify; at the same signed size they must carry the same root (RFC 9162
    # s. 2.1: one tree per size), so a second root is reported, whichever slot comes first
    key = Ed25519PrivateKey.generate()
    origin = "facelab.test/log"

    def slot(i: int, size: int, root: bytes) -> None:
        note = checkpoint.sign(checkpoint.Checkpoint(origin, size, root), key).encode()
        _head.write(tmp_path, note, i)

    slot(0, 5, b"\x01" * 32)
    slot(1, 5, b"\x01" * 32)
    same = _head.read(tmp_path, key.public_key(), origin)
    assert same.present == 2 and same.problems == ()  # control: equal roots agree
    assert same.head is not None and same.head.checkpoint.size == 5
    slot(1, 5, b"\x02" * 32)
    split = _head.read(tmp_path, key.public_key(), origin)
    assert split.present == 2
    assert any("split view" in p and _head.SLOTS[1] in p for p in split.problems)
    slot(1, 6, b"\x02" * 32)  # a larger size is a newer head, not a split view
    newer = _head.read(tmp_path, key.public_key(), origin)
    assert newer.problems == () and newer.head.slot == 1


def test_a_head_slot_with_a_garbage_length_is_a_problem_not_an_empty_slot(tmp_path) -> None:
    # only an all-zero slot is "created, never written"; any other bytes that do not
    # hold a note are damage and are named
    key = Ed25519PrivateKey.generate()
    origin = "facelab.test/log"
    note = checkpoint.sign(checkpoint.Checkpoint(origin, 3, b"\x07" * 32), key).encode()
    _head.write(tmp_path, note, 0)
    (tmp_path / _head.SLOTS[1]).write_bytes(b"\0" * _head.SLOT_BYTES)
    empty = _head.read(tmp_path, key.public_key(), origin)
    assert (empty.present, empty.problems) == (1, ())  # control: zeros are no head
    junk = b"\xff\xff\xff\xff" + bytes(range(1, 200)) * 20
    (tmp_path / _head.SLOTS[1]).write_bytes(junk[: _head.SLOT_BYTES])
    assert _head.decode(junk) == b""  # the length prefix is impossible
    st = _head.read(tmp_path, key.public_key(), origin)
    assert st.present == 2 and st.head is not None and st.head.slot == 0
    assert len(st.problems) == 1 and _head.SLOTS[1] in st.problems[0]
