"""Red team 14g: a destroy killed past its point of no return is finished, never aborted;
the verification scan finds the tenant's identifiers and small files anywhere in the
lab; two destroys never scan while the other rewrites the vault.

Oracles are the test's own: a raw byte scan of every regular file (not destroy's
scanner), SQLite opened directly, the manifest read with ``csv``, entry lines parsed
here, certificates verified with the lab's public key."""

from __future__ import annotations

import csv
import json
import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from facelab.errors import BadInputError, BusyError
from facelab.labdir import audit_writer, load_public_key, unlock
from facelab.synth import SynthConfig, write_dataset
from facelab.vault import certificate, keystore, ops

from tests.audit_helpers import PASS, lines, make_lab

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def datasets(tmp_path_factory) -> dict[str, Path]:
    out = {}
    for tenant, seed in (("acme", 5), ("beta", 6)):
        d = tmp_path_factory.mktemp("dr") / tenant
        write_dataset(SynthConfig(identities=4, captures=1, seed=seed), d, workers=1)
        out[tenant] = d
    return out


@pytest.fixture
def lab(tmp_path: Path, datasets):
    lab = make_lab(tmp_path / "lab")
    root = unlock(lab, PASS)
    with audit_writer(lab, root) as log:
        for tenant, ds in datasets.items():
            ops.ingest(lab, root, tenant, ds, "tester", log)
    return lab


def _people(ds: Path) -> list[dict]:
    with open(ds / "manifest.csv", newline="") as f:
        return list(csv.DictReader(f))


def raw_scan(root: Path, needles: list[bytes]) -> dict[str, list[bytes]]:
    """File (relative) -> the needles it holds; every regular file, links not followed."""
    hits: dict[str, list[bytes]] = {}
    for dirpath, _dirs, files in os.walk(root):
        for f in files:
            p = Path(dirpath) / f
            if p.is_symlink() or not p.is_file():
                continue
            data = p.read_bytes()
            found = [n for n in needles if n in data]
            if found:
                hits[str(p.relative_to(root))] = found
    return hits


def _secrets_of(lab, ds: Path, tenant: str) -> list[bytes]:
    """What must be nowhere after ``tenant``'s destruction, found before it: its wrapped
    key, windows of every sealed blob, its images' bytes, its passport numbers."""
    out = [keystore.tenant_key_path(lab.paths.keys, tenant).read_bytes()]
    with sqlite3.connect(lab.paths.vault) as db:
        for blobs in db.execute(
            "SELECT wrapped_dek, image, meta FROM records WHERE tenant=?", (tenant,)
        ):
            out += [bytes(b)[16:48] for b in blobs]
    out += [p.read_bytes()[200:264] for p in sorted((ds / "images").rglob("*.png"))]
    out += [r["passport_no"].encode() for r in _people(ds)]
    assert len(out) > 20
    return out


def entries(lab) -> list[dict]:
    return [json.loads(x) for x in lines(lab)]


def _cli(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "FACELAB_PASSPHRASE": PASS.decode(), "PYTHONPATH": str(REPO)}
    return subprocess.run(
        [sys.executable, "-m", "facelab.cli", *args], env=env, capture_output=True, text=True
    )


_CRASH = r"""
import os, signal, sys
from facelab.labdir import open_lab, unlock, audit_writer
from facelab.vault import ops
lab = open_lab(sys.argv[1]); root = unlock(lab, b"correct horse battery staple")
point = sys.argv[2]

def hook(p):
    if p == point:
        os.kill(os.getpid(), signal.SIGKILL)

log = audit_writer(lab, root)
ops.destroy(lab, root, "acme", "officer", log, hook=hook)
print("no crash", flush=True)
"""

# every step from the point of no return on (the first destructive step is the key
# overwrite; its mark is written just before it)
POINTS = [
    "after-point-of-no-return",
    "after-key-overwrite",
    "after-key",
    "after-records-deleted",
    "after-shred",
    "after-place-1",
    "after-places",
    "after-certificate",
]


@pytest.mark.parametrize("retry", [False, True], ids=["reopen", "retry-destroy"])
@pytest.mark.parametrize("point", POINTS)
def test_a_destroy_killed_past_its_point_of_no_return_is_finished(
    lab, datasets, point, retry
) -> None:
    outbox = lab.paths.root / "outbox/acme/j"
    outbox.mkdir(parents=True)
    (outbox / "out.png").write_bytes(
        next((datasets["acme"] / "images").rglob("*.png")).read_bytes()
    )
    (lab.paths.root / "outbox/acme/k").mkdir()
    (lab.paths.root / "outbox/acme/k/ids.csv").write_text("name,passport_no\nA B,123456789\n")
    secrets = _secrets_of(lab, datasets["acme"], "acme")
    beta = _secrets_of(lab, datasets["beta"], "beta")
    p = subprocess.run(
        [sys.executable, "-c", _CRASH, str(lab.paths.root), point],
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
    )
    assert p.returncode == -signal.SIGKILL, p.stderr
    if point == "after-key-overwrite":  # the state of red team 14g, 01
        key = keystore.tenant_key_path(lab.paths.keys, "acme")
        assert key.exists() and key.read_bytes() != secrets[0]
    if retry:  # the operator runs destroy again
        r = _cli("destroy", "--lab", str(lab.paths.root), "--tenant", "acme", "--yes")
    else:  # any command that unlocks the lab
        r = _cli("vault", "list", "--lab", str(lab.paths.root), "--json")
    assert r.returncode == 0, r.stderr
    # effects: no byte of the tenant anywhere, key and places gone
    assert raw_scan(lab.paths.root, secrets) == {}
    assert not keystore.tenant_key_path(lab.paths.keys, "acme").exists()
    assert not (lab.paths.root / "outbox/acme").exists()
    with sqlite3.connect(lab.paths.vault) as db:
        assert db.execute("SELECT COUNT(*) FROM records WHERE tenant='acme'").fetchone()[0] == 0
        assert db.execute("SELECT COUNT(*) FROM records WHERE tenant='beta'").fetchone()[0] == 8
    # one certificate, verifying under the lab key, saying passed
    certs = sorted((lab.paths.root / "certificates").glob("destroy-acme-*.json"))
    assert len(certs) == 1
    doc = certificate.verify_file(certs[0], [load_public_key(lab)])
    assert doc["certificate"]["sanitization_details"]["verification_result"] == "passed"
    # the log: exactly one outcome for the intent, destroyed, naming that certificate
    es = entries(lab)
    intent = [e for e in es if e["action"] == "vault.destroy.intent"]
    outcome = [e for e in es if e["action"] == "vault.destroy"]
    assert len(intent) == 1 and len(outcome) == 1
    assert outcome[0]["details"]["intent"] == intent[0]["seq"]
    assert outcome[0]["decision"] == "destroyed"
    assert outcome[0]["details"]["certificate"] == certs[0].name
    # the lab works afterwards: the other tenant opens, nothing is left open
    r = _cli("vault", "list", "--lab", str(lab.paths.root), "--json")
    assert r.returncode == 0, r.stderr
    assert [t["tenant"] for t in json.loads(r.stdout)] == ["beta"]
    assert set(raw_scan(lab.paths.root, beta[:1])) == {"keys/tenants/beta.kek"}
    assert _cli("audit", "verify", "--lab", str(lab.paths.root)).returncode == 0


def test_a_destroy_killed_before_its_point_of_no_return_is_aborted_and_retried(
    lab, datasets
) -> None:
    """Control: killed after its intent, before the mark, nothing was touched: aborted,
    and a retried destroy then destroys (a second intent, its own outcome)."""
    key = keystore.tenant_key_path(lab.paths.keys, "acme").read_bytes()
    p = subprocess.run(
        [sys.executable, "-c", _CRASH, str(lab.paths.root), "after-intent"],
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
    )
    assert p.returncode == -signal.SIGKILL
    assert keystore.tenant_key_path(lab.paths.keys, "acme").read_bytes() == key
    r = _cli("destroy", "--lab", str(lab.paths.root), "--tenant", "acme", "--yes")
    assert r.returncode == 0, r.stderr
    decisions = [e["decision"] for e in entries(lab) if e["action"] == "vault.destroy"]
    assert decisions == ["aborted", "destroyed"]
    assert not keystore.tenant_key_path(lab.paths.keys, "acme").exists()


# ---------------------------------------------------------------- copies destroy finds


def _destroy(lab, tenant: str) -> Path:
    root = unlock(lab, PASS)
    with audit_writer(lab, root) as log:
        return ops.destroy(lab, root, tenant, "officer", log)


def _subject_report(lab, passport_no: str, out: Path) -> None:
    from facelab.accountability.subject_access import Query, subject_access

    root = unlock(lab, PASS)
    with audit_writer(lab, root) as log:
        subject_access(lab, root, Query(passport_no=passport_no), "officer", log, out)


def _result(lab, tenant: str) -> dict:
    (path,) = sorted((lab.paths.root / "certificates").glob(f"destroy-{tenant}-*.json"))
    cert = certificate.verify_file(path, [load_public_key(lab)])["certificate"]
    return cert["sanitization_details"]


def test_a_subject_access_report_inside_the_lab_makes_the_certificate_say_failed(
    lab, datasets
) -> None:
    """Red team 14g, 02: the report (name and passport number in plaintext) is found by
    the identifiers; it is not a known place (see README), so the result is FAILED."""
    person = _people(datasets["acme"])[0]
    (lab.paths.root / "demo").mkdir()
    _subject_report(lab, person["passport_no"], lab.paths.root / "demo/subject-access")
    pp = person["passport_no"].encode()
    held = raw_scan(lab.paths.root, [pp])
    assert held and all(k.startswith("demo/subject-access/") for k in held)
    with pytest.raises(BadInputError, match="subject-access"):
        _destroy(lab, "acme")
    sd = _result(lab, "acme")
    assert sd["verification_result"] == "FAILED"
    named = sd["verification_details"]["files_with_copies"]
    assert sorted(named) == sorted(str(lab.paths.root / k) for k in held)
    # the identifiers are needles only: neither the certificate nor the log holds them
    assert raw_scan(lab.paths.root, [pp]) == held


def test_a_small_copy_of_a_removed_file_makes_the_certificate_say_failed(lab, datasets) -> None:
    """Red team 14g, 23: a 128-byte file and a 40-byte one with no identifier in it."""
    person = _people(datasets["acme"])[0]
    small = (f"name,passport_no\n{person['name']},{person['passport_no']}\n" * 9).encode()[:128]
    tiny = b"job 7f3a: exported head, sha 9c1e4b2d\n"  # no identifier: found as a whole
    (lab.paths.root / "outbox/acme").mkdir(parents=True)
    (lab.paths.root / "outbox/acme/ids.csv").write_bytes(small)
    (lab.paths.root / "outbox/acme/note.txt").write_bytes(tiny)
    (lab.paths.root / "notes").mkdir()
    (lab.paths.root / "notes/ids-copy.csv").write_bytes(small)
    (lab.paths.root / "notes/note-copy.txt").write_bytes(tiny)
    with pytest.raises(BadInputError):
        _destroy(lab, "acme")
    sd = _result(lab, "acme")
    assert sd["verification_result"] == "FAILED"
    assert sorted(Path(p).name for p in sd["verification_details"]["files_with_copies"]) == [
        "ids-copy.csv",
        "note-copy.txt",
    ]
    assert set(raw_scan(lab.paths.root, [small, tiny])) == {
        "notes/ids-copy.csv",
        "notes/note-copy.txt",
    }


def test_a_plain_copy_of_the_faces_anywhere_in_the_lab_makes_the_certificate_say_failed(
    lab, datasets
) -> None:
    """Red team 14h, case 02: the tenant's face PNGs (no manifest, no identifier) copied
    to a folder that is no place of the tenant's. Runs of each image's compressed pixels,
    read from the vault before the key erase, are needles; beta's faces are not."""
    stash = lab.paths.root / "stash"
    stash.mkdir()
    mine = sorted((datasets["acme"] / "images").rglob("*.png"))[:3]
    for i, p in enumerate(mine):
        (stash / f"{i}.png").write_bytes(p.read_bytes())
    theirs = sorted((datasets["beta"] / "images").rglob("*.png"))[0]
    (stash / "beta.png").write_bytes(theirs.read_bytes())
    with pytest.raises(BadInputError):
        _destroy(lab, "acme")
    sd = _result(lab, "acme")
    assert sd["verification_result"] == "FAILED"
    found = sorted(Path(p).name for p in sd["verification_details"]["files_with_copies"])
    assert found == ["0.png", "1.png", "2.png"]


def test_another_tenants_look_alike_data_is_not_a_false_failed(lab, datasets) -> None:
    """Negative control: beta's subject report, beta's small files of the same shape,
    and a short file both tenants' outboxes hold byte for byte stay, and acme's
    destruction passes; the raw scan agrees that none of acme's identifiers is left."""
    beta = _people(datasets["beta"])[0]
    _subject_report(lab, beta["passport_no"], lab.paths.root / "beta-report")
    same = b'{"state": "refused", "reason": "faces found"}\n'
    for t, person in (("acme", _people(datasets["acme"])[0]), ("beta", beta)):
        (lab.paths.root / f"outbox/{t}").mkdir(parents=True)
        row = f"name,passport_no\n{person['name']},{person['passport_no']}\n".encode()
        (lab.paths.root / f"outbox/{t}/ids.csv").write_bytes(row)
        (lab.paths.root / f"outbox/{t}/status.json").write_bytes(same)
    _destroy(lab, "acme")
    sd = _result(lab, "acme")
    assert sd["verification_result"] == "passed", sd["verification_details"]
    assert sd["verification_details"]["identifier_needles"] >= 4  # the passport numbers at least
    acme_ids = [r["passport_no"].encode() for r in _people(datasets["acme"])]
    acme_ids += [r["name"].encode() for r in _people(datasets["acme"])]
    assert raw_scan(lab.paths.root, acme_ids) == {}
    left = raw_scan(lab.paths.root, [beta["passport_no"].encode(), same])
    assert "outbox/beta/ids.csv" in left and "outbox/beta/status.json" in left
    assert any(k.startswith("beta-report/") for k in left)


# ---------------------------------------------------------------- one destroy at a time

_PAUSE = r"""
import os, sys, time
from facelab.labdir import open_lab, unlock, audit_writer
from facelab.vault import ops
lab = open_lab(sys.argv[1]); root = unlock(lab, b"correct horse battery staple")
go = sys.argv[2]

def hook(p):
    if p == "after-shred":
        print("paused", flush=True)
        while not os.path.exists(go):
            time.sleep(0.02)

with audit_writer(lab, root) as log:
    ops.destroy(lab, root, "acme", "officer", log, hook=hook)
print("done", flush=True)
"""


def test_two_destroys_never_overlap_their_rewrite_and_scan(lab, datasets, tmp_path) -> None:
    """Red team 14g (probing): a destroy scanning vault.db while another rewrote it saw
    the other's old pages. A destroy paused between its rewrite and its scan holds the
    lab-wide destroy lock: a second destroy of another tenant waits, then gives up with
    BusyError having changed nothing (its key and records intact, no intent); once the
    first is done it succeeds, and both certificates pass."""
    go = tmp_path / "go"
    p = subprocess.Popen(
        [sys.executable, "-c", _PAUSE, str(lab.paths.root), str(go)],
        env={**os.environ, "PYTHONPATH": str(REPO)},
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert p.stdout is not None and p.stdout.readline().strip() == "paused"
        key = keystore.tenant_key_path(lab.paths.keys, "beta").read_bytes()
        root = unlock(lab, PASS)
        with audit_writer(lab, root) as log:
            log.lock_wait = 0.5
            with pytest.raises(BusyError):
                ops.destroy(lab, root, "beta", "officer", log)
        assert keystore.tenant_key_path(lab.paths.keys, "beta").read_bytes() == key
        assert not [
            e for e in entries(lab) if e.get("tenant") == "beta" and "destroy" in e["action"]
        ]
    finally:
        go.touch()
        out, _ = p.communicate(timeout=120)
    assert p.returncode == 0 and "done" in out
    _destroy(lab, "beta")
    assert _result(lab, "acme")["verification_result"] == "passed"
    assert _result(lab, "beta")["verification_result"] == "passed"


def test_the_one_pass_matcher_agrees_with_in_for_every_needle() -> None:
    """The scan's trie matcher against ``in`` (the definition): needles that are
    prefixes of each other, regex metacharacters, NUL and newline bytes, every needle
    planted at the start, the end and across the middle, each with one byte changed."""
    import random

    rng = random.Random(14)
    needles = [bytes(rng.randrange(256) for _ in range(rng.randrange(1, 70))) for _ in range(300)]
    needles += [b"585645682", b"5856456", b"58564568299", b".*+?[](){}|\\^$", b"\n\0\n"]
    needles += [n[: len(n) // 2] for n in needles[:20] if len(n) > 1]
    hit = ops._matcher(needles)
    filler = bytes(rng.randrange(256) for _ in range(4096))
    for n in needles:
        for buf in (n + filler, filler + n, filler[:2000] + n + filler[2000:]):
            assert hit(buf)
        broken = bytearray(n)
        broken[len(n) // 2] ^= 0x01
        buf = filler[:100] + bytes(broken) + filler[100:]
        assert hit(buf) == any(m in buf for m in needles)
    for _ in range(200):
        buf = bytes(rng.randrange(256) for _ in range(512))
        assert hit(buf) == any(m in buf for m in needles)
    assert ops._matcher([])(filler) is False and ops._matcher([b""])(filler) is False


def _tree_bytes(root: Path) -> dict[str, bytes]:
    """Every regular file's bytes but SQLite's (closing the vault checkpoints its
    write-ahead log into vault.db: same rows, other bytes), and the vault's rows."""
    out = {}
    for dirpath, _dirs, files in os.walk(root):
        for f in files:
            p = Path(dirpath) / f
            if not f.startswith("vault.db") and not p.is_symlink() and p.is_file():
                out[str(p.relative_to(root))] = p.read_bytes()
    with sqlite3.connect(root / "vault.db") as db:
        rows = db.execute("SELECT * FROM records ORDER BY rowid").fetchall()
    out["vault rows"] = repr(rows).encode()
    return out


@pytest.mark.parametrize("tenant", ["acme", "beta"])
def test_a_dry_run_after_a_crash_past_the_point_of_no_return_says_so_and_changes_nothing(
    lab, tenant
) -> None:
    p = subprocess.run(
        [sys.executable, "-c", _CRASH, str(lab.paths.root), "after-records-deleted"],
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
    )
    assert p.returncode == -signal.SIGKILL, p.stderr
    before = _tree_bytes(lab.paths.root)
    r = _cli("destroy", "--lab", str(lab.paths.root), "--tenant", tenant, "--dry-run")
    assert r.returncode == 0, r.stderr
    assert "tenant acme has a change interrupted by a crash" in r.stdout
    assert "nothing was changed" in r.stdout
    assert _tree_bytes(lab.paths.root) == before  # not finished by a read-only command
    # the next writing command finishes it
    r = _cli("destroy", "--lab", str(lab.paths.root), "--tenant", "acme", "--yes")
    assert r.returncode == 0, r.stderr
    assert [e["decision"] for e in entries(lab) if e["action"] == "vault.destroy"] == ["destroyed"]
