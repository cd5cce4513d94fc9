"""Issue 14: destruction covers every place, survives backups, and is on the record even
when the process dies at any step; the vault and the log never silently disagree.

Oracles are the test's own: a raw byte scan of every regular file (not destroy's
scanner), SQLite opened directly, the entry lines parsed here."""

from __future__ import annotations

import base64
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat
from facelab.errors import BadInputError, TamperedError, VaultError
from facelab.labdir import audit_writer, load_public_key, public_key_b64, unlock
from facelab.synth import SynthConfig, dataset_digest, write_dataset
from facelab.vault import certificate, keystore, ops
from facelab.vault.store import Vault

from tests.audit_helpers import PASS, lines, make_lab

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("vd") / "ds"
    write_dataset(SynthConfig(identities=4, captures=1, seed=5), out, workers=1)
    return out


@pytest.fixture
def lab(tmp_path: Path):
    return make_lab(tmp_path / "lab")


def _ingest(lab, ds, tenant):
    root = unlock(lab, PASS)
    with audit_writer(lab, root) as log:
        return ops.ingest(lab, root, tenant, ds, "tester", log)


def _destroy(lab, tenant, **kw):
    root = unlock(lab, PASS)
    with audit_writer(lab, root) as log:
        return ops.destroy(lab, root, tenant, "officer", log, **kw)


def _pngs(ds: Path) -> list[bytes]:
    return [p.read_bytes() for p in sorted((ds / "images").rglob("*.png"))]


def _needles(ds: Path) -> list[bytes]:
    return [png[200:264] for png in _pngs(ds)]


def raw_scan(root: Path, needles: list[bytes]) -> list[str]:
    """Every regular file holding a needle; links and special files are not read."""
    hits = []
    for dirpath, _dirs, files in os.walk(root):
        for f in files:
            p = Path(dirpath) / f
            if p.is_symlink() or not p.is_file():
                continue
            data = p.read_bytes()
            if any(n in data for n in needles):
                hits.append(str(p.relative_to(root)))
    return hits


def entries(lab) -> list[dict]:
    return [json.loads(x) for x in lines(lab)]


# ---------------------------------------------------------------- every place
def test_destroy_empties_every_place_without_following_links_or_opening_fifos(lab, dataset) -> None:
    _ingest(lab, dataset, "acme")
    _ingest(lab, dataset, "keep")
    face = _pngs(dataset)[0]
    r = lab.paths.root
    # acme's data in every place a tenant's data can be
    (r / "jobs/acme/j1").mkdir(parents=True)
    (r / "jobs/acme/j1/decrypted_view.png").write_bytes(face)
    (r / "outbox/acme/j1").mkdir(parents=True)
    (r / "outbox/acme/j1/refused_artifact.png").write_bytes(face)  # the gate refused it
    (r / "released/acme/rel1").mkdir(parents=True)
    (r / "released/acme/rel1/report.json").write_text('{"eer": 0.1}')
    # another tenant's job left a FIFO and a link to /dev/zero; acme's workspace links out
    (r / "outbox/keep/j2").mkdir(parents=True)
    os.mkfifo(r / "outbox/keep/j2/pipe")
    os.symlink("/dev/zero", r / "outbox/keep/j2/zero")
    (r / "outbox/keep/j2/theirs.bin").write_bytes(b"keep's own output")
    os.symlink(r / "outbox/keep/j2/theirs.bin", r / "jobs/acme/j1/link-out")
    assert raw_scan(r, [face[200:264]])  # positive control: the scan sees the copies
    signal.alarm(60)  # a hang on the FIFO or /dev/zero fails the test instead of the run
    try:
        cert_path = _destroy(lab, "acme")
    finally:
        signal.alarm(0)
    for place in ("jobs/acme", "outbox/acme", "released/acme"):
        assert not os.path.lexists(r / place), place
    assert (r / "outbox/keep/j2/theirs.bin").read_bytes() == b"keep's own output"  # not followed
    assert os.path.islink(r / "outbox/keep/j2/zero")
    assert raw_scan(r, [face[200:264]]) == []  # no acme face anywhere (keep's are sealed)
    assert raw_scan(r, _needles(dataset)) == []
    doc = json.loads(cert_path.read_text())
    cert = certificate.verify_document(doc, [load_public_key(lab)])["certificate"]
    places = {p["place"]: p for p in cert["places"]}
    assert set(places) >= {
        "tenant key (key store)",
        "vault records",
        "job workspaces",
        "outbox, including artifacts the export gate refused",
        "released artifacts",
        "caches",
        "audit log",
    }
    assert places["job workspaces"]["files"] == 2  # the view and the link (unlinked only)
    assert places["vault records"]["records_deleted"] == 8
    assert cert["sanitization_details"]["verification_result"] == "passed"
    details = cert["sanitization_details"]["verification_details"]
    assert details["links_or_special_files_skipped"] >= 2


def test_a_copy_elsewhere_makes_the_certificate_say_failed(lab, dataset) -> None:
    _ingest(lab, dataset, "acme")
    face = _pngs(dataset)[1]
    (lab.paths.root / "outbox/acme/j").mkdir(parents=True)
    (lab.paths.root / "outbox/acme/j/a.png").write_bytes(face)
    (lab.paths.root / "stray").mkdir()
    (lab.paths.root / "stray/copy.png").write_bytes(face)  # outside every known place
    with pytest.raises(Exception, match="could not be verified"):
        _destroy(lab, "acme")
    cert = json.loads(next((lab.paths.root / "certificates").glob("*.json")).read_text())
    sd = cert["certificate"]["sanitization_details"]
    assert sd["verification_result"] == "FAILED"
    assert any("stray/copy.png" in f for f in sd["verification_details"]["files_with_copies"])
    assert entries(lab)[-1]["decision"] == "failed"


def test_a_model_derived_from_a_registered_one_does_not_fail_the_destruction(lab, dataset) -> None:
    """Newcomer report H1: a job's derived model in the outbox carries the imported
    model's bytes, which the model registry keeps by right; destroy must not call the
    registry a copy of the tenant's data. A copy of what is the tenant's own (the new
    head) is still found: the control."""
    _ingest(lab, dataset, "acme")
    rng = np.random.default_rng(0)
    base = rng.integers(0, 256, size=300_000, dtype=np.uint8).tobytes()  # imported weights
    head = rng.integers(0, 256, size=40_000, dtype=np.uint8).tobytes()  # trained here
    reg = lab.paths.root / "models" / "f03cbbd63e589dac"
    reg.mkdir(parents=True)
    (reg / "model.onnx").write_bytes(base)
    entry = {"model": "cnn@1.0.0", "tenant": "acme", "path": reg.name}
    entry["digest"] = dataset_digest(reg)
    (reg.parent / "registry.json").write_text(json.dumps([entry]))
    assert ops.registered_model_dirs(lab) == [reg]
    job = lab.paths.root / "outbox/acme/job-1"
    job.mkdir(parents=True)
    (job / "derived.onnx").write_bytes(base + head)
    (job / "head.npy").write_bytes(head)
    cert = json.loads(_destroy(lab, "acme").read_text())["certificate"]
    assert cert["sanitization_details"]["verification_result"] == "passed"
    assert (reg / "model.onnx").read_bytes() == base  # the registry is not the tenant's
    assert not job.exists()

    # control: the tenant's own bytes copied into a registered model's directory are
    # found (the directory no longer holds what was registered, so it shares nothing)
    _ingest(lab, dataset, "bob")
    job = lab.paths.root / "outbox/bob/job-2"
    job.mkdir(parents=True)
    (job / "head.npy").write_bytes(head[::-1])
    (reg / "stolen.bin").write_bytes(head[::-1])
    assert ops.registered_model_dirs(lab) == []
    with pytest.raises(Exception, match="could not be verified"):
        _destroy(lab, "bob")


def test_key_files_swapped_between_tenants_are_tampering_and_nothing_is_erased(
    lab, dataset
) -> None:
    """Red team 2, a10: acme's and bob's wrapped keys swapped on disk. destroy acme
    erased bob's key and left acme's (as bob.kek). Each wrap names its tenant, so the
    swap is found before anything changes (exit 4), by destroy and by any command."""
    from facelab.errors import TamperedError

    _ingest(lab, dataset, "acme")
    _ingest(lab, dataset, "bob")
    a, b = (keystore.tenant_key_path(lab.paths.keys, t) for t in ("acme", "bob"))
    ka, kb = a.read_bytes(), b.read_bytes()
    a.write_bytes(kb)
    b.write_bytes(ka)
    with pytest.raises(TamperedError, match="does not open as tenant"):
        _destroy(lab, "acme")
    assert a.read_bytes() == kb and b.read_bytes() == ka  # nothing erased
    with pytest.raises(TamperedError, match="does not open as tenant"):
        _reopen(lab)  # every command that unlocks the lab checks the key store too


def _remove_deep(top: Path) -> None:
    """Remove a chain d/d/d/... of any depth with short paths only: move the grandchild
    up, remove the child, rename; then whatever is left is shallow."""
    for base in [top, *(p for p in top.glob("*") if p.is_dir())]:
        d = base / "d"
        while d.is_dir() and not d.is_symlink():
            if (d / "d").is_dir():
                os.rename(d / "d", base / "x")
                for e in d.iterdir():
                    e.unlink()
                d.rmdir()
                os.rename(base / "x", d)
            else:
                shutil.rmtree(d)
    if top.exists():
        shutil.rmtree(top)


def test_a_deep_tree_and_a_giant_sparse_file_neither_crash_nor_stall_destroy(lab, dataset) -> None:
    """Red team 2, r01 and r02: a 3,000-level directory tree in the tenant's outbox was a
    RecursionError traceback before anything was destroyed; a 4 TiB sparse file in the
    lab kept the scan reading zeros for hours. Both are walked and read by their data."""
    import time

    _ingest(lab, dataset, "acme")
    d = lab.paths.root / "outbox" / "acme"
    d.mkdir(parents=True)
    fd = os.open(d, os.O_RDONLY)
    try:  # deeper than Python's recursion limit, built with openat (no long paths)
        for _ in range(3000):
            os.mkdir("d", dir_fd=fd)
            nfd = os.open("d", os.O_RDONLY, dir_fd=fd)
            os.close(fd)
            fd = nfd
    finally:
        os.close(fd)
    with open(lab.paths.root / "sparse.bin", "wb") as f:
        f.truncate(4 << 40)
    t0 = time.monotonic()
    try:
        path = _destroy(lab, "acme")
        result = json.loads(path.read_text())["certificate"]["sanitization_details"]
    except Exception as e:  # a tree too deep for paths is reported, never a traceback
        assert "could not be verified" in str(e)
        result = None
    finally:  # whatever is left: pytest's own cleanup (shutil.rmtree) recurses
        _remove_deep(lab.paths.root / "outbox")
    assert time.monotonic() - t0 < 120
    assert keystore.load_tenant_key(lab.paths.keys, "acme") is None  # the erase happened
    if result is not None:
        assert result["verification_result"] == "passed"


def test_destroy_never_reaches_through_a_linked_parent_of_a_place(lab, dataset, tmp_path) -> None:
    """Red team 2, a07: `LAB/jobs` replaced by a link to a directory outside the lab that
    holds `acme/payroll.txt`; destroy must not delete through it (it did, and certified
    success). The place is reported as left and the certificate says FAILED."""
    _ingest(lab, dataset, "acme")
    outside = tmp_path / "home"
    (outside / "acme").mkdir(parents=True)
    (outside / "acme" / "payroll.txt").write_text("not the lab's to delete\n")
    jobs = lab.paths.root / "jobs"
    if jobs.exists():
        shutil.rmtree(jobs)
    jobs.symlink_to(outside, target_is_directory=True)
    with pytest.raises(Exception, match="could not be verified"):
        _destroy(lab, "acme")
    assert (outside / "acme" / "payroll.txt").read_text() == "not the lab's to delete\n"
    cert = json.loads(next((lab.paths.root / "certificates").glob("*.json")).read_text())
    cert = cert["certificate"]
    assert cert["sanitization_details"]["verification_result"] == "FAILED"
    place = next(p for p in cert["places"] if p["place"] == "job workspaces")
    assert place["action"].startswith("NOT removed") and "link" in place["action"]


def _can_bind_mount(tmp: Path) -> str:
    """Why a bind mount in a private mount namespace cannot be made here, or ""."""
    a, b = tmp / "mnt-a", tmp / "mnt-b"
    a.mkdir()
    b.mkdir()
    if not shutil.which("unshare"):
        return "no unshare(1)"
    p = subprocess.run(
        ["unshare", "-m", "sh", "-c", f"mount --bind {a} {b}"], capture_output=True, text=True
    )
    return "" if p.returncode == 0 else f"no mount namespace here ({p.stderr.strip()[:80]})"


def test_destroy_never_crosses_a_mount_point_inside_a_place(lab, dataset, tmp_path) -> None:
    """Red team 14i, case 24: a directory outside the lab bind-mounted at
    `LAB/jobs/acme/dbg` (same file system, so `st_dev` does not change). Destroy, run in
    a private mount namespace where that mount exists, must leave the outside file, keep
    the mount, remove the rest of the place, and certify FAILED. Positive control: the
    same tree without the mount is removed whole."""
    why = _can_bind_mount(tmp_path)
    if why:
        pytest.skip(why)
    _ingest(lab, dataset, "acme")
    outside = tmp_path / "victim"
    outside.mkdir()
    (outside / "precious.txt").write_text("not the lab's to delete\n")
    place = lab.paths.root / "jobs" / "acme"
    (place / "dbg").mkdir(parents=True)
    (place / "left-by-a-job.txt").write_text("the tenant's\n")
    script = (
        f"mount --bind {outside} {place / 'dbg'} && "
        f"{sys.executable} -m facelab.cli destroy --lab {lab.paths.root} --tenant acme --yes"
        f"; echo rc=$?; ls {place / 'dbg'}"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO), "FACELAB_PASSPHRASE": PASS.decode()}
    p = subprocess.run(
        ["unshare", "-m", "sh", "-c", script], capture_output=True, text=True, env=env
    )
    assert "rc=2" in p.stdout and "Traceback" not in p.stderr, (p.stdout, p.stderr)
    assert "precious.txt" in p.stdout  # still there, seen through the mount
    assert (outside / "precious.txt").read_text() == "not the lab's to delete\n"
    assert not (place / "left-by-a-job.txt").exists()  # the rest of the place is gone
    cert = json.loads(next((lab.paths.root / "certificates").glob("*.json")).read_text())
    cert = cert["certificate"]
    assert cert["sanitization_details"]["verification_result"] == "FAILED"
    row = next(p for p in cert["places"] if p["place"] == "job workspaces")
    assert row["action"].startswith("NOT fully removed") and "mount" in row["action"]
    # positive control: without the mount the same shape of tree goes whole
    (place / "dbg").mkdir(exist_ok=True)
    (place / "dbg" / "x.txt").write_text("tenant\n")
    r = ops._remove_tree(place)
    assert r["action"].startswith("removed") and not place.exists()


def test_destroy_never_empties_a_place_that_is_itself_a_mount_point(lab, dataset, tmp_path) -> None:
    """Mutations v01/v05 (session 12 review): a directory outside the lab bind-mounted as
    `LAB/outbox/acme` itself: its files stay, the certificate says FAILED. (A mount
    point whose own path has a space, octal in mountinfo, mutation v03, is not tested.)"""
    why = _can_bind_mount(tmp_path)
    if why:
        pytest.skip(why)
    _ingest(lab, dataset, "acme")
    outside = tmp_path / "out side"
    outside.mkdir()
    (outside / "precious.txt").write_text("not the lab's to delete\n")
    place = lab.paths.root / "outbox" / "acme"
    place.mkdir(parents=True, exist_ok=True)
    script = (
        f"mount --bind '{outside}' '{place}' && "
        f"{sys.executable} -m facelab.cli destroy --lab {lab.paths.root} --tenant acme --yes"
        "; echo rc=$?"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO), "FACELAB_PASSPHRASE": PASS.decode()}
    p = subprocess.run(
        ["unshare", "-m", "sh", "-c", script], capture_output=True, text=True, env=env
    )
    assert "rc=2" in p.stdout and "Traceback" not in p.stderr, (p.stdout, p.stderr)
    assert (outside / "precious.txt").read_text() == "not the lab's to delete\n"
    cert = json.loads(next((lab.paths.root / "certificates").glob("*.json")).read_text())
    assert cert["certificate"]["sanitization_details"]["verification_result"] == "FAILED"


def test_destroy_never_removes_a_place_reached_through_a_mount_point_above_it(
    lab, dataset, tmp_path
) -> None:
    """Red team 14j, case 26: a directory outside the lab bind-mounted on `LAB/outbox`
    (so `outbox/acme` is outside); destroy deleted the outside files and certified
    passed. Now the place is not removed and the certificate says FAILED."""
    why = _can_bind_mount(tmp_path)
    if why:
        pytest.skip(why)
    _ingest(lab, dataset, "acme")
    outside = tmp_path / "elsewhere"
    (outside / "acme").mkdir(parents=True)
    (outside / "acme" / "precious.txt").write_text("not the lab's to delete\n")
    target = lab.paths.root / "outbox"
    target.mkdir(exist_ok=True)
    script = (
        f"mount --bind {outside} {target} && "
        f"{sys.executable} -m facelab.cli destroy --lab {lab.paths.root} --tenant acme --yes"
        "; echo rc=$?"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO), "FACELAB_PASSPHRASE": PASS.decode()}
    p = subprocess.run(
        ["unshare", "-m", "sh", "-c", script], capture_output=True, text=True, env=env
    )
    assert "rc=2" in p.stdout and "Traceback" not in p.stderr, (p.stdout, p.stderr)
    assert (outside / "acme" / "precious.txt").read_text() == "not the lab's to delete\n"
    cert = json.loads(next((lab.paths.root / "certificates").glob("*.json")).read_text())
    assert cert["certificate"]["sanitization_details"]["verification_result"] == "FAILED"
    assert any("mount point" in x.get("action", "") for x in cert["certificate"]["places"])


@pytest.mark.parametrize("where", ["xattr", "path"])
def test_key_material_in_names_or_xattrs_makes_the_certificate_say_failed(
    lab, dataset, where
) -> None:
    """Red team e07: the wrapped key kept in the lab's metadata, not in a file's bytes
    (a user xattr on policy.toml; the name of an empty file, '/' bytes making folders)."""
    _ingest(lab, dataset, "acme")
    wrapped = keystore.tenant_key_path(lab.paths.keys, "acme").read_bytes()
    if where == "xattr":
        try:
            os.setxattr(lab.paths.policy, "user.note", wrapped)
        except OSError as e:
            pytest.skip(f"no user extended attributes on this filesystem ({e.strerror})")
    else:
        parts = [x for x in wrapped.replace(b"\0", b"").split(b"/") if x]
        d = lab.paths.root / "stash"
        for part in parts[:-1]:
            d = d / os.fsdecode(part[:200])
        d.mkdir(parents=True)
        (d / os.fsdecode(parts[-1][:200])).write_bytes(b"")
    with pytest.raises(Exception, match="could not be verified"):
        _destroy(lab, "acme")
    cert = json.loads(next((lab.paths.root / "certificates").glob("*.json")).read_text())
    sd = cert["certificate"]["sanitization_details"]
    assert sd["verification_result"] == "FAILED"
    assert any(
        ("extended attribute" if where == "xattr" else "its path") in f
        for f in sd["verification_details"]["files_with_copies"]
    )


# ---------------------------------------------------------------- crypto-erase and backups
def test_a_copy_of_vault_db_taken_before_destroy_does_not_open_after_it(
    lab, dataset, tmp_path
) -> None:
    _ingest(lab, dataset, "acme")
    root = unlock(lab, PASS)
    backup = tmp_path / "backup.db"
    with sqlite3.connect(lab.paths.vault) as db:  # a consistent copy, WAL included
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    shutil.copyfile(lab.paths.vault, backup)
    with Vault(backup, root, lab.policy.vault, keys_dir=lab.paths.keys) as v:
        assert len(list(v.records("acme"))) == 8  # positive control: the backup opens now
    wrapped = keystore.load_tenant_key(lab.paths.keys, "acme")
    assert wrapped is not None and wrapped not in lab.paths.vault.read_bytes()  # kept apart
    _destroy(lab, "acme")
    assert not keystore.tenant_key_path(lab.paths.keys, "acme").exists()
    assert raw_scan(lab.paths.root, [wrapped]) == []
    with (
        Vault(backup, root, lab.policy.vault, keys_dir=lab.paths.keys) as v,
        pytest.raises(VaultError),
    ):
        list(v.records("acme"))  # the same passphrase, the same backup: nothing opens


def test_data_categories_come_from_the_manifest_columns(lab, dataset) -> None:
    _ingest(lab, dataset, "acme")
    cert = json.loads(_destroy(lab, "acme").read_text())["certificate"]
    cats = cert["media_information"]["data_categories"]
    header = (dataset / "manifest.csv").read_text().splitlines()[0].split(",")
    assert "birth_date" in header and "birth dates" in cats
    assert "face images" in cats and "passport numbers" in cats and "facial landmarks" in cats
    assert cert["media_information"]["manifest_columns"] == sorted(header)
    assert cert["media_information"]["classification"].startswith("confidential")
    assert cert["performer"]["name"] == "officer" and cert["performer"]["date"]


# ---------------------------------------------------------------- certificate, offline
def _cli(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO), "FACELAB_PASSPHRASE": PASS.decode()}
    return subprocess.run(
        [sys.executable, "-m", "facelab.cli", *args], capture_output=True, text=True, env=env
    )


def test_certificate_verify_and_validate_offline_with_public_keys(lab, dataset, tmp_path) -> None:
    _ingest(lab, dataset, "acme")
    cert = _destroy(lab, "acme")
    pub = tmp_path / "lab.pub"
    pub.write_text(public_key_b64(load_public_key(lab)) + "\n")
    p = _cli("certificate", "verify", str(cert), "--key", str(pub))
    assert p.returncode == 0 and "pending validation" in p.stdout
    assert (
        _cli(
            "certificate", "verify", str(cert), "--key", str(pub), "--require-validation"
        ).returncode
        == 4
    )
    # a validator with a key of their own counter-signs
    vkey = Ed25519PrivateKey.generate()
    vfile = tmp_path / "validator.key"
    vfile.write_bytes(
        base64.b64encode(vkey.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption()))
    )
    vpub = tmp_path / "validator.pub"
    vpub.write_text(public_key_b64(vkey.public_key()))
    p = _cli(
        "certificate", "validate", str(cert), "--key-file", str(vfile),
        "--performer-key", str(pub), "--name", "Dana Officer",
    )  # fmt: skip
    assert p.returncode == 0, p.stderr
    p = _cli("certificate", "verify", str(cert), "--key", str(pub), "--key", str(vpub))
    assert p.returncode == 0 and "Dana Officer" in p.stdout
    # the validator's key alone does not vouch for the performer
    assert _cli("certificate", "verify", str(cert), "--key", str(vpub)).returncode == 4
    # any edit of the certificate breaks both signatures
    doc = json.loads(cert.read_text())
    doc["certificate"]["media_information"]["records"] = 0
    cert.write_text(json.dumps(doc))
    p = _cli("certificate", "verify", str(cert), "--key", str(pub), "--key", str(vpub))
    assert p.returncode == 4 and "Traceback" not in p.stderr


def test_a_certificate_with_a_key_twice_does_not_verify(lab, dataset, tmp_path) -> None:
    """Red team 14d, c07: a second top-level ``certificate`` before the signed one is read
    by first-wins parsers (the forged records count) while Python's last-wins parser
    checked the signed one. A signed document with a duplicate key, at any depth, is
    not a certificate."""
    _ingest(lab, dataset, "acme")
    cert = _destroy(lab, "acme")
    pub = tmp_path / "lab.pub"
    pub.write_text(public_key_b64(load_public_key(lab)) + "\n")
    assert _cli("certificate", "verify", str(cert), "--key", str(pub)).returncode == 0  # control
    text = cert.read_text()
    doc = json.loads(text)
    forged = json.dumps({**doc["certificate"], "media_information": {"records": 0}})
    for bad in (
        text.replace("{", '{"certificate": ' + forged + ", ", 1),  # top level, first wins
        text.replace('"media_information": {', '"media_information": {"records": 0, ', 1),
    ):
        assert bad != text
        cert.write_text(bad)
        p = _cli("certificate", "verify", str(cert), "--key", str(pub))
        assert p.returncode not in (0, 1) and "Traceback" not in p.stderr, p.stdout
        assert "duplicate key" in p.stderr
    cert.write_text(text)
    assert _cli("certificate", "verify", str(cert), "--key", str(pub)).returncode == 0


def test_the_validator_cannot_be_the_performer(lab, dataset) -> None:
    from facelab.errors import BadInputError
    from facelab.labdir import load_signing_key

    _ingest(lab, dataset, "acme")
    doc = json.loads(_destroy(lab, "acme").read_text())
    with pytest.raises(BadInputError, match="distinct"):
        certificate.add_validation(doc, load_signing_key(lab, PASS), "same", "2026-01-01")


# ---------------------------------------------------------------- the vault and the log
def test_a_deleted_vault_db_is_damage_and_never_recreated(lab, dataset) -> None:
    _ingest(lab, dataset, "acme")
    for suffix in ("", "-wal", "-shm"):
        Path(str(lab.paths.vault) + suffix).unlink(missing_ok=True)
    p = _cli("vault", "list", "--lab", str(lab.paths.root))
    assert p.returncode == 4 and "Traceback" not in p.stderr
    assert not lab.paths.vault.exists()


def test_an_emptied_vault_db_or_a_missing_tenant_is_damage(lab, dataset) -> None:
    _ingest(lab, dataset, "acme")
    assert _cli("vault", "list", "--lab", str(lab.paths.root)).returncode == 0  # control
    with sqlite3.connect(lab.paths.vault) as db:
        db.execute("DELETE FROM records WHERE tenant='acme'")
        db.execute("DELETE FROM datasets WHERE tenant='acme'")
        db.execute("DELETE FROM tenants WHERE name='acme'")
    p = _cli("vault", "list", "--lab", str(lab.paths.root))
    assert p.returncode == 4 and "disagrees with the audit log" in p.stderr
    for suffix in ("", "-wal", "-shm"):
        Path(str(lab.paths.vault) + suffix).unlink(missing_ok=True)
    lab.paths.vault.write_bytes(b"")
    assert _cli("vault", "list", "--lab", str(lab.paths.root)).returncode == 4


@pytest.mark.parametrize("rows", [1, "all"])
def test_records_deleted_under_a_dataset_that_remains_are_damage(lab, dataset, rows) -> None:
    """Red team 14d, c08: rows deleted from ``records`` with sqlite3, the dataset's own
    row kept. The vault no longer holds what the log says was ingested: exit 4, and no
    command writes over it."""
    _ingest(lab, dataset, "acme")
    assert _cli("vault", "list", "--lab", str(lab.paths.root)).returncode == 0  # control
    with sqlite3.connect(lab.paths.vault) as db:
        if rows == "all":
            db.execute("DELETE FROM records WHERE tenant='acme'")
        else:
            db.execute("DELETE FROM records WHERE rowid = (SELECT MIN(rowid) FROM records)")
    entries_before = (lab.paths.audit / "entries.jsonl").read_bytes()
    p = _cli("vault", "list", "--lab", str(lab.paths.root))
    assert p.returncode == 4 and "disagrees with the audit log" in p.stderr
    assert "the log recorded" in p.stderr and "Traceback" not in p.stderr
    assert (lab.paths.audit / "entries.jsonl").read_bytes() == entries_before


# ---------------------------------------------------------------- crashes, deterministic
_CRASH = r"""
import os, signal, sys
from facelab.labdir import open_lab, unlock, audit_writer
from facelab.vault import ops
lab = open_lab(sys.argv[1]); root = unlock(lab, b"correct horse battery staple")
what, point, arg = sys.argv[2], sys.argv[3], sys.argv[4]

def hook(p):
    if p == point:
        os.kill(os.getpid(), signal.SIGKILL)

log = audit_writer(lab, root)
if what == "ingest":
    ops.ingest(lab, root, "acme", arg, "tester", log, hook=hook)
else:
    ops.destroy(lab, root, arg, "officer", log, hook=hook)
print("no crash", flush=True)
"""


def _crash(lab, what: str, point: str, arg: str) -> None:
    p = subprocess.run(
        [sys.executable, "-c", _CRASH, str(lab.paths.root), what, point, arg],
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
    )
    assert p.returncode == -signal.SIGKILL, p.stderr


def _reopen(lab) -> list[dict]:
    root = unlock(lab, PASS)
    with audit_writer(lab, root) as log:
        return ops.reconcile(lab, root, log, "tester")


@pytest.mark.parametrize(
    ("point", "committed"),
    [("after-intent", False), ("before-commit", False), ("after-commit", True)],
)
def test_ingest_killed_at_each_point_is_on_the_record_after_reopening(
    lab, dataset, point, committed
) -> None:
    _crash(lab, "ingest", point, str(dataset))
    done = _reopen(lab)
    assert [d["outcome"] for d in done] == ["ok" if committed else "aborted"]
    with sqlite3.connect(lab.paths.vault) as db:
        n = db.execute("SELECT COUNT(*) FROM records WHERE tenant='acme'").fetchone()[0]
    assert n == (8 if committed else 0)
    # a new tenant's key that protects nothing is not left behind (red team c02)
    assert (keystore.load_tenant_key(lab.paths.keys, "acme") is not None) == committed
    es = entries(lab)
    intent = next(e for e in es if e["action"] == "vault.ingest.intent")
    outcome = [e for e in es if e["action"] == "vault.ingest"]
    assert len(outcome) == 1 and outcome[0]["details"]["intent"] == intent["seq"]
    assert outcome[0]["decision"] == ("ok" if committed else "aborted")
    assert _reopen(lab) == []  # nothing left open; a rerun ingests or reports unchanged


_PAUSE = r"""
import sys, time
from facelab.labdir import open_lab, unlock, audit_writer
from facelab.vault import ops
lab = open_lab(sys.argv[1]); root = unlock(lab, b"correct horse battery staple")
what, point, arg, go = sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5]

def hook(p):
    if p == point:
        print("paused", flush=True)
        import os
        while not os.path.exists(go):
            time.sleep(0.02)

with audit_writer(lab, root) as log:
    if what == "ingest":
        ops.ingest(lab, root, "acme", arg, "tester", log, hook=hook, new_tenant=True)
    else:
        ops.destroy(lab, root, arg, "officer", log, hook=hook)
print("done", flush=True)
"""


@pytest.mark.parametrize(
    ("what", "point"),
    [
        ("ingest", "after-intent"),
        ("ingest", "after-commit"),
        ("destroy", "after-key"),
        ("destroy", "after-certificate"),
    ],
)
def test_a_live_change_in_another_process_is_never_reconciled(
    lab, dataset, tmp_path, what, point
) -> None:
    """Red team c07: a command that opens the lab while another process is between its
    intent and its outcome leaves that intent alone (no 'aborted' for a change that then
    succeeds, no second outcome) and does not call the half-done change tampering."""
    arg = str(dataset)
    if what == "destroy":
        _ingest(lab, dataset, "acme")
        arg = "acme"
    go = tmp_path / "go"
    p = subprocess.Popen(
        [sys.executable, "-c", _PAUSE, str(lab.paths.root), what, point, arg, str(go)],
        env={**os.environ, "PYTHONPATH": str(REPO)},
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert p.stdout is not None and p.stdout.readline().strip() == "paused"
        assert _reopen(lab) == []  # live: not reconciled, and no TamperedError
    finally:
        go.touch()
        out, _ = p.communicate(timeout=120)
    assert p.returncode == 0 and "done" in out
    es = entries(lab)
    action = f"vault.{what}"
    intent = [e for e in es if e["action"] == action + ".intent"][-1]
    outcomes = [e for e in es if e.get("details", {}).get("intent") == intent["seq"]]
    assert [e["decision"] for e in outcomes] == ["ok" if what == "ingest" else "destroyed"]
    assert not outcomes[0]["details"].get("reconciled")
    assert _reopen(lab) == []


@pytest.mark.parametrize(
    "point",
    [
        "after-intent",
        "after-key",
        "after-shred",
        "after-places",
        "after-certificate",
        "after-side-file",
    ],
)
def test_destroy_killed_at_each_point_is_finished_or_aborted_on_the_record(
    lab, dataset, point
) -> None:
    _ingest(lab, dataset, "acme")
    (lab.paths.root / "outbox/acme/j").mkdir(parents=True)
    (lab.paths.root / "outbox/acme/j/out.png").write_bytes(_pngs(dataset)[0])
    _crash(lab, "destroy", point, "acme")
    done = _reopen(lab)
    committed = point != "after-intent"
    assert [d["outcome"] for d in done] == ["destroyed" if committed else "aborted"]
    outcome = [e for e in entries(lab) if e["action"] == "vault.destroy"]
    assert len(outcome) == 1
    if committed:
        assert outcome[0]["decision"] == "destroyed"
        certs = list((lab.paths.root / "certificates").glob("destroy-acme-*.json"))
        # one destruction, one certificate, and the outcome names it (red team c05: a kill
        # after the certificate made the reconciler sign a second one)
        assert len(certs) == 1
        assert outcome[0]["details"]["certificate"] == certs[0].name
        assert outcome[0]["details"].get("certificate_adopted", False) == (
            point in ("after-certificate", "after-side-file")
        )
        # the side file (plain digests of the tenant's files) is gone whatever the kill
        # point (red team 14j, cases 08-10: left for good after a kill past the outcome)
        assert list((lab.paths.keys / "destroying").glob("*")) == []
        assert not keystore.tenant_key_path(lab.paths.keys, "acme").exists()
        assert not (lab.paths.root / "outbox/acme").exists()
        assert raw_scan(lab.paths.root, _needles(dataset)) == []
        with sqlite3.connect(lab.paths.vault) as db:
            assert db.execute("SELECT COUNT(*) FROM records").fetchone()[0] == 0
    else:
        assert outcome[0]["decision"] == "aborted"
        root = unlock(lab, PASS)
        with ops.open_vault(lab, root) as v:
            assert len(list(v.records("acme"))) == 8  # untouched, and still consistent
    assert _reopen(lab) == []  # nothing left open


def test_a_failed_destruction_killed_after_its_certificate_still_fails_on_reopening(
    lab, dataset
) -> None:
    """A copy outside every known place makes the certificate say FAILED; the destroy is
    killed right after writing it. The reconciler adopts that certificate (no second
    one) and, like the destroy it finishes, refuses: a FAILED destruction never passes
    as done. Control: the same kill without the copy reopens as destroyed (above)."""
    _ingest(lab, dataset, "acme")
    face = _pngs(dataset)[1]
    (lab.paths.root / "outbox/acme/j").mkdir(parents=True)
    (lab.paths.root / "outbox/acme/j/a.png").write_bytes(face)  # the tenant's: a needle
    (lab.paths.root / "stray").mkdir()
    (lab.paths.root / "stray/copy.png").write_bytes(face)  # outside every known place
    _crash(lab, "destroy", "after-certificate", "acme")
    with pytest.raises(BadInputError):
        _reopen(lab)
    certs = list((lab.paths.root / "certificates").glob("destroy-acme-*.json"))
    assert len(certs) == 1
    sd = json.loads(certs[0].read_text())["certificate"]["sanitization_details"]
    assert sd["verification_result"] == "FAILED"
    outcome = [e for e in entries(lab) if e["action"] == "vault.destroy"]
    assert [e["decision"] for e in outcome] == ["failed"]
    assert outcome[0]["details"]["certificate_adopted"] is True
    # the destroy's working list of the tenant's bytes (under keys/) is gone too
    assert [p for p in lab.paths.keys.rglob("acme.json")] == []
    assert _reopen(lab) == []  # on the record once: nothing left open


def test_a_resurrected_tenant_is_damage_not_an_active_processor(
    lab, dataset, capsys, monkeypatch
) -> None:
    """Red team e10: a destroyed tenant's vault.db and key file put back. The published
    register exits 4 like every other command; control: before, it lists the tenant."""
    from facelab.cli import main

    monkeypatch.setenv("FACELAB_PASSPHRASE", PASS.decode())
    _ingest(lab, dataset, "acme")
    assert main(["register", "--lab", str(lab.paths.root)]) == 0
    assert "acme" in capsys.readouterr().out
    key = keystore.tenant_key_path(lab.paths.keys, "acme")
    saved = {p: p.read_bytes() for p in (lab.paths.vault, key)}
    _destroy(lab, "acme")
    for p, data in saved.items():
        p.write_bytes(data)
    assert main(["register", "--lab", str(lab.paths.root)]) == 4
    assert "disagrees" in capsys.readouterr().err


def _performer_doc(key: Ed25519PrivateKey) -> dict:
    cert = {"format": "facelab-destruction/1", "tenant": "acme", "result": "passed"}
    return certificate.sign_performer(cert, key, "performer", "2026-01-01")


def test_a_validator_signature_made_with_the_performers_own_key_does_not_verify():
    # two roles, one key: add_validation refuses it, and a document edited by hand to
    # carry such a signature (valid over the validator's message) must not verify either
    perf, other = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    doc = _performer_doc(perf)
    # positive control: a second key's validation verifies and names the validator
    good = certificate.add_validation(doc, other, "val", "2026-01-02")
    keys = [perf.public_key(), other.public_key()]
    assert certificate.verify_document(good, keys)["validator"] == "val"
    forged_sig = dict(good["signatures"][1])
    forged_sig["public_key"] = public_key_b64(perf.public_key())
    forged_sig["signature"] = base64.b64encode(
        perf.sign(certificate._validator_message(doc))
    ).decode()
    forged = {**doc, "signatures": [doc["signatures"][0], forged_sig]}
    with pytest.raises(certificate.TamperedError, match="second role with its own key"):
        certificate.verify_document(forged, keys)


def test_a_validation_does_not_survive_replacing_the_performers_signature():
    # the validator vouches for this performer's signature, not just the certificate
    perf, perf2, val = (Ed25519PrivateKey.generate() for _ in range(3))
    keys = [perf.public_key(), perf2.public_key(), val.public_key()]
    validated = certificate.add_validation(_performer_doc(perf), val, "val", "2026-01-02")
    assert certificate.verify_document(validated, keys)["validator"] == "val"  # control
    resigned = certificate.sign_performer(validated["certificate"], perf2, "p2", "2026-01-03")
    swapped = {**validated, "signatures": [resigned["signatures"][0], validated["signatures"][1]]}
    # the re-signed performer part alone verifies: only the binding can catch the swap
    assert certificate.verify_document(resigned, keys)["performer"] == "p2"
    with pytest.raises(certificate.TamperedError, match="does not verify"):
        certificate.verify_document(swapped, keys)


@pytest.fixture(scope="module")
def dataset_b(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("vdb") / "ds"
    write_dataset(SynthConfig(identities=4, captures=1, seed=6), out, workers=1)
    return out


def test_a_killed_second_ingest_of_a_known_tenant_keeps_its_key_and_earlier_data(
    lab, dataset, dataset_b
) -> None:
    # only the first ingest of a NEW tenant may erase the key on reconcile; for a known
    # tenant the key protects the records already stored
    _ingest(lab, dataset, "acme")
    assert dataset_digest(dataset) != dataset_digest(dataset_b)  # a second dataset
    kek = keystore.load_tenant_key(lab.paths.keys, "acme")
    assert kek is not None
    _crash(lab, "ingest", "after-intent", str(dataset_b))
    done = _reopen(lab)
    assert [(d["tenant"], d["outcome"]) for d in done] == [("acme", "aborted")]
    assert keystore.load_tenant_key(lab.paths.keys, "acme") == kek
    root = unlock(lab, PASS)
    with audit_writer(lab, root) as log:
        recs = list(ops.read(lab, root, "acme", "tester", log))
    assert len(recs) == 8  # dataset A's records (4 identities x 1 capture x 2 files) open
    assert not [e for e in entries(lab) if e["action"] == "vault.open_failed"]


def test_a_tenant_place_left_behind_makes_the_certificate_say_failed(
    lab, dataset, monkeypatch
) -> None:
    # a workspace that could not be removed (holding no copy the scan could find) is
    # still a place left: destroy must not certify "passed"
    _ingest(lab, dataset, "acme")
    stuck = lab.paths.root / "jobs/acme"
    (stuck / "j1").mkdir(parents=True)
    real = ops._remove_tree

    def remove_but_the_stuck_one(path: Path) -> dict:
        if Path(path) == stuck:
            return {"action": "NOT fully removed (simulated)", "files": 0, "bytes": 0}
        return real(path)

    monkeypatch.setattr(ops, "_remove_tree", remove_but_the_stuck_one)
    with pytest.raises(Exception, match="could not be verified") as ei:
        _destroy(lab, "acme")
    assert stuck.is_dir()  # the probe did leave the place behind
    assert keystore.load_tenant_key(lab.paths.keys, "acme") is None  # the erase happened
    certs = sorted((lab.paths.root / "certificates").glob("destroy-acme-*.json"))
    assert len(certs) == 1, ei.value
    cert = certificate.verify_document(json.loads(certs[0].read_text()), [load_public_key(lab)])[
        "certificate"
    ]
    san = cert["sanitization_details"]
    assert san["verification_result"] == "FAILED"
    details = san["verification_details"]
    assert details["files_with_copies"] == [] and details["records_left"] == 0
    assert str(stuck) in details["places_left"]


def test_a_failed_destroy_still_ends_the_tenant_in_the_logs_expected_state(lab, dataset) -> None:
    # destroy recorded as "failed" has erased the key and the records: the next check
    # must not call the emptied vault tampering (that would block every later command)
    _ingest(lab, dataset, "acme")
    face = _pngs(dataset)[1]
    (lab.paths.root / "outbox/acme/j").mkdir(parents=True)
    (lab.paths.root / "outbox/acme/j/a.png").write_bytes(face)  # sampled when removed
    (lab.paths.root / "stray").mkdir()
    (lab.paths.root / "stray/copy.png").write_bytes(face)  # found by the scan
    with pytest.raises(Exception, match="could not be verified"):
        _destroy(lab, "acme")
    assert entries(lab)[-1]["action"] == "vault.destroy"
    assert entries(lab)[-1]["decision"] == "failed"
    assert _reopen(lab) == []  # no TamperedError: the vault agrees with the log
    assert "acme" not in ops.recorded_state(lab.paths.audit)


def test_records_whose_tenant_key_is_missing_are_reported_as_tampering(lab, dataset) -> None:
    _ingest(lab, dataset, "acme")
    root = unlock(lab, PASS)
    ops.check_vault_against_log(lab, root)  # control: the intact lab passes
    keystore.tenant_key_path(lab.paths.keys, "acme").unlink()  # removed outside destroy
    with pytest.raises(TamperedError, match="records in the vault but no key in the key store"):
        ops.check_vault_against_log(lab, root)


def _verify(lab) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "facelab.cli", "audit", "verify", "--lab", str(lab.paths.root)],
        capture_output=True,
        text=True,
        env={**os.environ, "FACELAB_KNOWN_LABS": str(lab.paths.root.parent / "pins.json")},
    )


def test_a_log_rolled_back_past_a_destruction_is_caught_by_its_certificate(lab, dataset) -> None:
    """Red team au07: back up the log and its signed head, destroy, restore both (no
    passphrase needed). The log and head agree, but the lab-signed certificate of the
    destruction is still in certificates/: verify says unrecorded-destruction (exit 4)."""
    _ingest(lab, dataset, "acme")
    r = lab.paths.root
    shutil.copytree(r / "audit", r.parent / "audit.bak")
    heads = {p.name: p.read_bytes() for p in (r / "keys").glob("audit_head.*")}
    _destroy(lab, "acme")
    assert _verify(lab).returncode == 0  # control: the honest log verifies
    shutil.rmtree(r / "audit")
    shutil.copytree(r.parent / "audit.bak", r / "audit")
    for name, data in heads.items():
        (r / "keys" / name).write_bytes(data)
    got = _verify(lab)
    assert got.returncode == 4, got.stdout
    assert "unrecorded-destruction" in got.stderr + got.stdout


def test_destroy_refuses_a_linked_certificates_directory_before_erasing(
    lab, dataset, tmp_path
) -> None:
    """Red team de05: certificates/ replaced by a link to a directory elsewhere. Destroy
    refuses (tampering) before anything is erased, and nothing is written there."""
    _ingest(lab, dataset, "acme")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    certs = lab.paths.root / "certificates"
    shutil.rmtree(certs, ignore_errors=True)
    certs.symlink_to(elsewhere)
    with pytest.raises(TamperedError, match="link where the certificates directory must be"):
        _destroy(lab, "acme")
    assert list(elsewhere.iterdir()) == []
    assert keystore.load_tenant_key(lab.paths.keys, "acme") is not None  # nothing erased
    with pytest.raises(TamperedError):
        certificate.write({"x": 1}, certs / "c.json")  # the writer refuses on its own


def test_every_unlocking_command_refuses_a_vault_restored_after_destroy(lab, dataset) -> None:
    """Red team va02: vault.db and the tenant's key file restored from a backup after the
    destruction. The log says destroyed: subject access, the destroy plan and an evidence
    pack refuse (exit 4) like vault list, never report the restored records."""
    import csv

    _ingest(lab, dataset, "acme")
    r = lab.paths.root
    bak = r.parent / "bak"
    bak.mkdir()
    with sqlite3.connect(lab.paths.vault) as db:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    shutil.copy2(lab.paths.vault, bak / "vault.db")
    key = keystore.tenant_key_path(lab.paths.keys, "acme")
    shutil.copy2(key, bak / key.name)
    _destroy(lab, "acme")
    shutil.copy2(bak / "vault.db", lab.paths.vault)
    shutil.copy2(bak / key.name, key)
    with open(dataset / "manifest.csv") as f:
        passport = next(csv.DictReader(f))["passport_no"]
    env = {**os.environ, "FACELAB_PASSPHRASE": PASS.decode(), "FACELAB_ACTOR": "ops"}
    for args in (
        ["vault", "list", "--lab", str(r)],
        ["subject", "--lab", str(r), "--passport-no", passport, "--out", str(r.parent / "sar")],
        ["destroy", "--lab", str(r), "--tenant", "acme", "--dry-run"],
        ["evidence", "--lab", str(r), "--out", str(r.parent / "pack")],
    ):
        p = subprocess.run(
            [sys.executable, "-m", "facelab.cli", *args], capture_output=True, text=True, env=env
        )
        assert p.returncode == 4, (args, p.stdout, p.stderr)
        assert "Traceback" not in p.stderr
    assert not (r.parent / "sar").exists()


@pytest.mark.parametrize("target", ["outside", "lab key"])
def test_a_hard_linked_tenant_file_is_never_written_through_and_fails_the_destruction(
    lab, dataset, tmp_path, target
) -> None:
    """Red team 14h, cases 41 and 28: a tenant file with another hard link keeps its
    bytes under that name when destroy unlinks it, and which name is the tenant's cannot
    be told: a link *to* the lab's sealed signing key planted in the outbox must not be
    written through. Destroy unlinks and never overwrites it; the certificate says
    FAILED and names it; the other name's bytes are untouched."""
    _ingest(lab, dataset, "acme")
    box = lab.paths.root / "outbox" / "acme" / "job-1"
    box.mkdir(parents=True)
    if target == "outside":
        other = tmp_path / "kept-outside.csv"
        other.write_bytes(b"Jane Q Public, passport X1234567\n" * 40)
    else:
        other = lab.paths.keys / "lab_signing.sealed"
    before = other.read_bytes()
    os.link(other, box / "linked.bin")
    (box / "plain.txt").write_bytes(b"no other link\n" * 10)
    with pytest.raises(BadInputError, match="could not be verified"):
        _destroy(lab, "acme")
    assert other.read_bytes() == before  # never written through the link
    assert not box.exists()
    doc = json.loads(next((lab.paths.root / "certificates").glob("*.json")).read_text())
    sd = doc["certificate"]["sanitization_details"]
    assert sd["verification_result"] == "FAILED"
    named = sd["verification_details"]["files_with_copies"]
    assert any("linked.bin" in f and "hard link" in f for f in named), named
    assert not any("plain.txt" in f for f in named)
    certificate.verify_document(doc, [load_public_key(lab)])  # raises if it does not


def test_destroy_removes_the_scratch_copy_a_killed_export_left_in_tmpdir(lab, dataset) -> None:
    """Red team 14j, case 01: an export killed with SIGKILL left its copy of the tenant's
    artifacts (a face) in `$TMPDIR/facelab-export-*/`; destroy certified passed with the
    face still there. Destroy now removes scratch directories whose owner is gone and
    lists the place; one whose owner still runs (this process) is left alone."""
    import tempfile

    _ingest(lab, dataset, "acme")
    face = _pngs(dataset)[0]
    dead = Path(tempfile.gettempdir()) / "facelab-export-4194303.1-test14j"
    (dead / "in").mkdir(parents=True, exist_ok=True)
    (dead / "in" / "face.png").write_bytes(face)
    live = Path(tempfile.mkdtemp(prefix=f"facelab-export-{os.getpid()}.", dir=None))
    try:
        _destroy(lab, "acme")
        assert not dead.exists()
        assert live.exists()  # not this destroy's to remove
        cert = json.loads(next((lab.paths.root / "certificates").glob("*.json")).read_text())
        row = next(p for p in cert["certificate"]["places"] if "scratch" in p["place"])
        assert row["action"].startswith("removed") and "0 " not in row["action"][:10]
    finally:
        shutil.rmtree(dead, ignore_errors=True)
        shutil.rmtree(live, ignore_errors=True)


def test_the_log_never_holds_the_ingested_folders_name(lab, dataset, tmp_path) -> None:
    """Red team 14j, case 04: a dataset folder named after a subject (a passport number)
    went into `vault.ingest` as `source`, for good: the log names the dataset by its
    digest only."""
    named = tmp_path / "delivery-X7Q4K9Z2M-Jane-Roe"
    shutil.copytree(dataset, named)
    _ingest(lab, named, "acme")
    log = (lab.paths.audit / "entries.jsonl").read_bytes()
    assert b"X7Q4K9Z2M" not in log and b"delivery-" not in log
    assert b'"vault.ingest"' in log  # control: the ingest is on the record
