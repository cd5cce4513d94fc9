"""The vault: sealed records, splits and pseudonyms, idempotent ingest, faults, destroy."""

from __future__ import annotations

import csv
import hashlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from facelab.audit import Event
from facelab.errors import BadInputError, PassphraseError, TamperedError, VaultError
from facelab.labdir import audit_writer, load_public_key, open_lab, unlock
from facelab.synth import SynthConfig, write_dataset
from facelab.vault import certificate, keystore, ops
from facelab.vault.dataset import read_dataset

from tests.audit_helpers import PASS, make_lab

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("vault") / "ds"
    write_dataset(SynthConfig(identities=40, captures=2, seed=9), out, workers=1)
    return out


@pytest.fixture
def lab(tmp_path: Path):
    return make_lab(tmp_path / "lab")


def _ingest(lab, ds, tenant="acme", **kw):
    root = unlock(lab, PASS)
    with audit_writer(lab, root) as log:
        return ops.ingest(lab, root, tenant, ds, "tester", log, **kw)


def _records(lab, tenant="acme", split=None):
    root = unlock(lab, PASS)
    with audit_writer(lab, root) as log:
        return list(ops.read(lab, root, tenant, "tester", log, split=split))


def _rows(ds: Path) -> list[dict[str, str]]:
    with open(ds / "manifest.csv", encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


def _secrets_of(ds: Path) -> list[bytes]:
    """What an auditor looks for: image bytes, names, passport numbers."""
    needles = []
    for r in _rows(ds):
        png = (ds / r["path"]).read_bytes()
        needles += [png[100:164], png[-200:-136], r["name"].encode(), r["passport_no"].encode()]
    return needles


def _db(lab) -> sqlite3.Connection:
    return sqlite3.connect(lab.paths.vault)


# ---------------------------------------------------------------- sealing
def test_records_round_trip_with_pseudonyms_only(lab, dataset) -> None:
    res = _ingest(lab, dataset)
    assert (res.images, res.subjects, res.created_tenant) == (120, 40, True)
    recs = _records(lab)
    assert len(recs) == 120
    by_png = {hashlib.sha256(r.png).hexdigest(): r for r in recs}
    for row in _rows(dataset):
        rec = by_png[hashlib.sha256((dataset / row["path"]).read_bytes()).hexdigest()]
        assert rec.kind == row["kind"] and rec.nationality == row["nationality"]
        assert rec.name is None and rec.passport_no is None  # not granted by default
        assert rec.subject != row["subject_id"] and len(rec.subject) == 32
        assert rec.image().shape == (112, 112, 3)


def test_identifiers_only_when_the_policy_grants_them(lab, dataset) -> None:
    text = lab.paths.policy.read_text().replace(
        "identifiers_granted = []", 'identifiers_granted = ["acme"]'
    )
    lab.paths.policy.write_text(text)
    lab = open_lab(lab.paths.root)
    _ingest(lab, dataset)
    names = {r["name"] for r in _rows(dataset)}
    assert {r.name for r in _records(lab)} == names


def test_nothing_readable_is_stored(lab, dataset) -> None:
    _ingest(lab, dataset)
    _records(lab)
    assert ops.scan_lab(lab.paths.root, _secrets_of(dataset)) == []


def test_a_record_copied_to_another_row_or_tenant_does_not_open(lab, dataset) -> None:
    _ingest(lab, dataset, "acme")
    _ingest(lab, dataset, "beta")
    db = _db(lab)
    a1, a2 = db.execute(
        "SELECT record_id, wrapped_dek, image, meta FROM records WHERE "
        "tenant='acme' ORDER BY record_id LIMIT 2"
    ).fetchall()
    b1 = db.execute(
        "SELECT record_id FROM records WHERE tenant='beta' ORDER BY record_id LIMIT 1"
    ).fetchone()
    # row a2 gets a1's sealed image; beta's first record gets acme's sealed fields
    db.execute("UPDATE records SET image=? WHERE tenant='acme' AND record_id=?", (a1[2], a2[0]))
    db.execute(
        "UPDATE records SET wrapped_dek=?, image=?, meta=? WHERE tenant='beta' AND record_id=?",
        (a1[1], a1[2], a1[3], b1[0]),
    )
    db.commit()
    root = unlock(lab, PASS)
    with ops.open_vault(lab, root) as v:
        with pytest.raises(VaultError, match=a2[0]):
            v.open_record("acme", a2[0])
        with pytest.raises(VaultError, match=b1[0]):
            v.open_record("beta", b1[0])
        assert v.open_record("acme", a1[0]).png  # the original still opens
        # a wrapped KEK moved to another tenant does not unwrap either
        wk = keystore.load_tenant_key(lab.paths.keys, "acme")
        assert wk
        with pytest.raises(VaultError):
            root.unwrap_kek("beta", wk)


def test_corrupted_ciphertext_names_the_record_and_the_rest_still_open(lab, dataset) -> None:
    _ingest(lab, dataset)
    db = _db(lab)
    rid, img = db.execute(
        "SELECT record_id, image FROM records ORDER BY record_id LIMIT 1 OFFSET 5"
    ).fetchone()
    bad = bytearray(img)
    bad[40] ^= 0x01
    db.execute("UPDATE records SET image=? WHERE record_id=?", (bytes(bad), rid))
    db.commit()
    root = unlock(lab, PASS)
    with audit_writer(lab, root) as log:
        opened = []
        with pytest.raises(VaultError, match=f"record {rid}: cannot open") as e:
            for r in ops.read(lab, root, "acme", "tester", log):
                opened.append(r.record_id)
        assert "tag" not in str(e.value).lower()  # opaque to the caller
        assert len(opened) == 5
        with ops.open_vault(lab, root) as v:
            others = [
                x
                for (x,) in db.execute("SELECT record_id FROM records WHERE record_id != ?", (rid,))
            ]
            assert all(v.open_record("acme", x).png for x in others)
    failures = [
        json.loads(x)
        for x in (lab.paths.audit / "entries.jsonl").read_text().splitlines()
        if '"vault.open_failed"' in x
    ]
    assert failures and failures[0]["object"] == f"record:{rid}"
    assert failures[0]["details"]["field"] == "image"  # the reason goes to the log


# ---------------------------------------------------------------- splits
def test_splits_partition_subjects_deterministically(tmp_path: Path) -> None:
    ds = tmp_path / "ds"
    write_dataset(SynthConfig(identities=400, captures=1, seed=4), ds)
    lab = make_lab(tmp_path / "lab")
    _ingest(lab, ds)
    recs = _records(lab)
    split_of: dict[str, str] = {}
    for r in recs:
        assert split_of.setdefault(r.subject, r.split) == r.split  # one split per subject
    counts = {s: sum(v == s for v in split_of.values()) for s in ("train", "verification", "test")}
    assert abs(counts["train"] / 400 - 0.70) < 0.07
    assert abs(counts["verification"] / 400 - 0.15) < 0.05
    assert {r.record_id for r in _records(lab, split="test")} == {
        r.record_id for r in recs if r.split == "test"
    }
    assert [(r.record_id, r.split) for r in _records(lab)] == [(r.record_id, r.split) for r in recs]


# ---------------------------------------------------------------- ingest behaviour
def test_ingesting_the_same_dataset_again_changes_nothing(lab, dataset) -> None:
    _ingest(lab, dataset)
    before = _db(lab).execute("SELECT record_id, image FROM records ORDER BY 1").fetchall()
    res = _ingest(lab, dataset)
    assert res.already_present
    assert _db(lab).execute("SELECT record_id, image FROM records ORDER BY 1").fetchall() == before


def test_delete_source_after_a_verified_ingest(lab, tmp_path: Path) -> None:
    ds = tmp_path / "plain"
    write_dataset(SynthConfig(identities=5, captures=1, seed=2), ds, workers=1)
    _ingest(lab, ds, delete_source=True)
    assert not ds.exists()
    assert len(_records(lab)) == 10


def test_delete_source_keeps_the_plaintext_when_the_copy_differs(lab, tmp_path, monkeypatch):
    ds = tmp_path / "plain"
    write_dataset(SynthConfig(identities=3, captures=1, seed=2), ds, workers=1)
    from facelab.vault.store import Vault

    monkeypatch.setattr(Vault, "dataset_image_digests", lambda self, t, d: ["0" * 64])
    with pytest.raises(BadInputError, match="does not match"):
        _ingest(lab, ds, delete_source=True)
    assert (ds / "manifest.csv").exists()


def test_policy_can_restrict_tenants(lab, dataset) -> None:
    lab.paths.policy.write_text(
        lab.paths.policy.read_text().replace("tenants = []", 'tenants = ["acme"]')
    )
    lab = open_lab(lab.paths.root)
    with pytest.raises(BadInputError, match="not listed"):
        _ingest(lab, dataset, "beta")
    _ingest(lab, dataset, "acme")


@pytest.mark.parametrize("name", ["Acme", "../x", "a b", "", "x" * 40, "1st", "a/b"])
def test_unsafe_tenant_names_are_refused(lab, dataset, name) -> None:
    with pytest.raises(BadInputError, match="safe identifier"):
        _ingest(lab, dataset, name)


def _broken(ds: Path, tmp: Path, how: str) -> Path:
    bad = tmp / f"bad-{how}"
    import shutil

    shutil.copytree(ds, bad)
    rows = _rows(bad)
    if how == "column":
        text = (bad / "manifest.csv").read_text().replace("passport_no", "passport", 1)
        (bad / "manifest.csv").write_text(text)
        return bad
    if how == "traversal":
        rows[3]["path"] = "../../etc/passwd"
    elif how == "missing":
        (bad / rows[3]["path"]).unlink()
    elif how == "not-png":
        (bad / rows[3]["path"]).write_bytes(b"GIF89a" + b"\0" * 50)
    elif how == "truncated-png":
        p = bad / rows[3]["path"]
        p.write_bytes(p.read_bytes()[:60])
    elif how == "duplicate":
        rows[4]["capture_id"] = rows[3]["capture_id"]
    elif how == "symlink":
        os.symlink("/etc/hostname", bad / "images" / "evil.png")
        rows[3]["path"] = "images/evil.png"
    elif how == "landmarks":
        rows[3]["lm0_x"] = "nan"
    with open(bad / "manifest.csv", "w", encoding="utf-8", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return bad


@pytest.mark.parametrize(
    "how",
    [
        "column",
        "traversal",
        "missing",
        "not-png",
        "truncated-png",
        "duplicate",
        "symlink",
        "landmarks",
    ],
)
def test_bad_datasets_are_refused_and_nothing_is_stored(lab, dataset, tmp_path, how) -> None:
    bad = _broken(dataset, tmp_path, how)
    _ingest(lab, dataset, "keep")  # something already stored must survive
    with pytest.raises(BadInputError) as e:
        _ingest(lab, bad, "acme")
    assert str(bad) in str(e.value) or "manifest" in str(e.value)
    db = _db(lab)
    assert db.execute("SELECT COUNT(*) FROM records WHERE tenant='acme'").fetchone()[0] == 0
    assert db.execute("SELECT COUNT(*) FROM records WHERE tenant='keep'").fetchone()[0] == 120


def test_oversized_images_are_refused(lab, tmp_path: Path) -> None:
    ds = tmp_path / "big"
    write_dataset(SynthConfig(identities=1, captures=0, size=128), ds, workers=1)
    lab.paths.policy.write_text(
        lab.paths.policy.read_text().replace("max_image_side = 1024", "max_image_side = 100")
    )
    with pytest.raises(BadInputError, match="outside"):
        read_dataset(ds, open_lab(lab.paths.root).policy.vault.max_image_side)


def test_a_full_disk_stores_nothing_and_says_so(lab, dataset) -> None:
    root = unlock(lab, PASS)
    with audit_writer(lab, root) as log:
        ops.ingest(lab, root, "keep", dataset, "tester", log)
        pages = _db(lab).execute("PRAGMA page_count").fetchone()[0]
        with pytest.raises(BadInputError, match="full"):
            ops.ingest(lab, root, "acme", dataset, "tester", log, max_pages=pages + 5)
    db = _db(lab)
    assert db.execute("SELECT COUNT(*) FROM records WHERE tenant='acme'").fetchone()[0] == 0
    assert db.execute("SELECT COUNT(*) FROM tenants WHERE name='acme'").fetchone()[0] == 0
    assert len(_records(lab, "keep")) == 120


def test_wrong_passphrase_is_a_clear_error(lab) -> None:
    with pytest.raises(PassphraseError, match="wrong passphrase"):
        unlock(lab, b"not it")


_INGEST = r"""
import os, random, signal, sys
from facelab.labdir import open_lab, unlock, audit_writer
from facelab.vault import ops
lab = open_lab(sys.argv[1]); root = unlock(lab, b"correct horse battery staple")
if len(sys.argv) > 3:  # die inside the transaction, at a random SQLite instruction
    budget = {"n": random.Random(int(sys.argv[3])).randint(1, 200)}
    real_open = ops.open_vault

    def open_vault(*a, **kw):
        v = real_open(*a, **kw)
        def tick():
            if v.db.in_transaction:
                budget["n"] -= 1
                if budget["n"] <= 0:
                    os.kill(os.getpid(), signal.SIGKILL)
            return 0
        v.db.set_progress_handler(tick, 50)
        return v
    ops.open_vault = open_vault
with audit_writer(lab, root) as log:
    print("start", flush=True)
    ops.ingest(lab, root, "acme", sys.argv[2], "tester", log)
print("done", flush=True)
"""


_KILL_AT = r"""
import os, signal, sys
from facelab.labdir import open_lab, unlock, audit_writer
from facelab.vault import ops
lab = open_lab(sys.argv[1]); root = unlock(lab, b"correct horse battery staple")

def hook(point):  # SIGKILL at the named point, every time: no timing involved
    if point == sys.argv[3]:
        os.kill(os.getpid(), signal.SIGKILL)

with audit_writer(lab, root) as log:
    ops.ingest(lab, root, "acme", sys.argv[2], "tester", log, hook=hook)
print("no crash", flush=True)
"""


@pytest.mark.parametrize(
    ("point", "stored"),
    [("after-intent", False), ("before-commit", False), ("after-commit", True)],
)
def test_sigkill_during_ingest_leaves_all_or_nothing(tmp_path, dataset, point, stored) -> None:
    """Killed at each named point (the hook of ``ops.ingest``): before the transaction,
    inside it with every row written but not committed, and just after the commit."""
    lab = make_lab(tmp_path / "lab")
    p = subprocess.run(
        [sys.executable, "-c", _KILL_AT, str(lab.paths.root), str(dataset), point],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        check=False,
    )
    assert p.returncode == -signal.SIGKILL, p.stdout + p.stderr  # it died where told
    db = _db(lab)
    n = db.execute("SELECT COUNT(*) FROM records").fetchone()[0]
    d = db.execute("SELECT COUNT(*) FROM datasets").fetchone()[0]
    assert (n, d) == ((120, 1) if stored else (0, 0))
    _ingest(lab, dataset)  # the vault still works; a finished ingest is not repeated
    assert db.execute("SELECT COUNT(*) FROM records").fetchone()[0] == 120
    assert len(_records(lab)) == 120


@pytest.mark.parametrize("seed", range(6))
def test_sigkill_inside_the_ingest_transaction_leaves_nothing(tmp_path, seed) -> None:
    ds = tmp_path / "ds"
    write_dataset(SynthConfig(identities=100, captures=3, seed=seed), ds)
    lab = make_lab(tmp_path / "lab")
    p = subprocess.run(
        [sys.executable, "-c", _INGEST, str(lab.paths.root), str(ds), str(seed)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        check=False,
    )
    assert p.returncode == -signal.SIGKILL, p.stderr
    db = _db(lab)
    assert db.execute("SELECT COUNT(*) FROM records").fetchone()[0] == 0
    assert db.execute("SELECT COUNT(*) FROM tenants").fetchone()[0] == 0
    _ingest(lab, ds)  # and the vault still works afterwards
    assert db.execute("SELECT COUNT(*) FROM records").fetchone()[0] == 400


# ---------------------------------------------------------------- destroy
def _raw_scan(root: Path, needles: list[bytes]) -> list[str]:
    """The test's own oracle: every regular file's bytes, read whole (not destroy's scanner)."""
    hits = []
    for dirpath, _, files in os.walk(root):
        for f in files:
            p = Path(dirpath) / f
            if p.is_symlink() or not p.is_file():
                continue
            data = p.read_bytes()
            if any(n in data for n in needles):
                hits.append(str(p))
    return hits


def test_destroy_like_an_auditor(lab, dataset) -> None:
    _ingest(lab, dataset, "acme")
    _ingest(lab, dataset, "keep")
    wrapped = keystore.load_tenant_key(lab.paths.keys, "acme")
    assert wrapped and _raw_scan(lab.paths.root, [wrapped])  # positive control: it is there
    assert _raw_scan(lab.paths.root, _secrets_of(dataset)) == []  # sealed, not readable
    root = unlock(lab, PASS)
    with audit_writer(lab, root) as log:
        cert_path = ops.destroy(lab, root, "acme", "officer", log)
        log.record(Event("test.after", "tester"))
    # every byte of every file of the lab, WAL and journals included
    assert _raw_scan(lab.paths.root, [wrapped]) == []
    assert _raw_scan(lab.paths.root, _secrets_of(dataset)) == []
    with pytest.raises(BadInputError, match="no data"):
        _records(lab, "acme")
    assert len(_records(lab, "keep")) == 120  # the other tenant is untouched
    doc = json.loads(cert_path.read_text())
    out = certificate.verify_document(doc, [load_public_key(lab)])
    cert = out["certificate"]
    assert cert["media_information"]["records"] == 120
    assert cert["media_information"]["subjects"] == 40
    assert cert["sanitization_details"]["method_used"] == "cryptographic erase + deletion"
    assert cert["sanitization_details"]["verification_result"] == "passed"
    assert cert["performer"]["name"] == "officer" and out["performer"] == "officer"
    assert cert["media_information"]["datasets"][0].startswith("sha256:")
    forged = {**doc, "certificate": {**cert, "media_information": {"records": 1}}}
    with pytest.raises(TamperedError):
        certificate.verify_document(forged, [load_public_key(lab)])
    entries = (lab.paths.audit / "entries.jsonl").read_text()
    assert '"vault.destroy"' in entries and '"officer"' in entries


def test_destroy_of_an_unknown_tenant(lab) -> None:
    root = unlock(lab, PASS)
    with audit_writer(lab, root) as log, pytest.raises(BadInputError, match="no data"):
        ops.destroy(lab, root, "ghost", "officer", log)


def test_a_manifest_saved_with_a_byte_order_mark(lab, tmp_path) -> None:
    ds = tmp_path / "bom"
    write_dataset(SynthConfig(identities=3, captures=1, seed=2), ds, workers=1)
    text = (ds / "manifest.csv").read_text(encoding="utf-8")
    (ds / "manifest.csv").write_text("\ufeff" + text, encoding="utf-8")
    assert len(read_dataset(ds)) == 6


@pytest.mark.parametrize("what", ["manifest", "image"])
@pytest.mark.parametrize("special", ["fifo", "dev-zero"])
def test_a_special_file_in_a_dataset_is_refused_not_read(dataset, tmp_path, what, special) -> None:
    """Red team mi01: a FIFO (nobody writes: a read would hang) or a link to /dev/zero
    (a read never ends) where the manifest or an image must be: one BadInputError naming
    the file, at once."""
    import shutil

    ds = tmp_path / "ds"
    shutil.copytree(dataset, ds)
    target = ds / "manifest.csv" if what == "manifest" else sorted((ds / "images").iterdir())[0]
    target.unlink()
    if special == "fifo":
        os.mkfifo(target)
    else:
        target.symlink_to("/dev/zero")
    signal.alarm(30)  # a hang fails the test, not the run
    try:
        with pytest.raises(BadInputError, match=r"not a regular file|links outside") as e:
            read_dataset(ds)
    finally:
        signal.alarm(0)
    assert target.name in str(e.value)
    read_dataset(dataset)  # control: the same dataset with regular files reads


def test_a_png_declaring_a_huge_size_is_refused_before_decoding(dataset, tmp_path) -> None:
    import shutil
    import struct
    import zlib

    ds = tmp_path / "ds"
    shutil.copytree(dataset, ds)
    img = sorted((ds / "images").iterdir())[0]
    ihdr = struct.pack(">IIBBBBB", 100_000, 100_000, 8, 2, 0, 0, 0)
    chunk = b"IHDR" + ihdr
    png = (
        b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + chunk + struct.pack(">I", zlib.crc32(chunk))
    )
    img.write_bytes(png + b"\0" * 64)
    with pytest.raises(BadInputError, match="100000x100000 outside"):
        read_dataset(ds)
