"""The vault's promises, each attacked for its effect with an oracle of the test's own.

* The AAD binds every sealed value to its tenant, record **and field** (README, "the
  vault"): the stored blobs are opened here with pyca/cryptography directly, under the
  AAD the README documents (positive control), and fail under any other field's AAD;
  values swapped between the fields of one record, or between two records, do not open.
* AES-GCM nonces are never repeated: every nonce of every blob in ``vault.db`` and of
  thousands of seals under one key is distinct (NIST SP 800-38D section 8).
* ``ingest`` applies the policy's ``vault.max_image_side`` (not the reader's default).
* Destruction leaves no byte of the tenant in any file of the lab: ``vault.db``, its
  ``-wal`` and ``-shm``, ``keys/``; a raw scan written here (not destroy's own), with a
  positive control that finds the same needles before.
* Retention destroys a tenant on its ``destroy_by`` date when that is sooner than
  ``retention_days``, and ``--dry-run`` destroys nothing.
"""

from __future__ import annotations

import json
import os
import sqlite3
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from facelab.errors import BadInputError, VaultError
from facelab.labdir import audit_writer, open_lab, unlock
from facelab.synth import SynthConfig, write_dataset
from facelab.vault import _primitives as pr
from facelab.vault import keystore, ops, retention

from tests.audit_helpers import PASS, make_lab

FIELDS = ("dek", "image", "meta")


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("promises") / "ds"
    write_dataset(SynthConfig(identities=6, captures=1, seed=3), out, workers=1)
    return out


@pytest.fixture
def lab(tmp_path: Path):
    return make_lab(tmp_path / "lab")


def _ingest(lab, ds, tenant="acme") -> None:
    root = unlock(lab, PASS)
    with audit_writer(lab, root) as log:
        ops.ingest(lab, root, tenant, ds, "tester", log)


def _rows(lab, tenant="acme") -> list[tuple]:
    db = sqlite3.connect(lab.paths.vault)
    try:
        return db.execute(
            "SELECT record_id, wrapped_dek, image, meta FROM records WHERE tenant=? "
            "ORDER BY record_id",
            (tenant,),
        ).fetchall()
    finally:
        db.close()


def _set(lab, tenant: str, rid: str, **fields: bytes) -> None:
    db = sqlite3.connect(lab.paths.vault)
    try:
        for col, value in fields.items():
            db.execute(
                f"UPDATE records SET {col}=? WHERE tenant=? AND record_id=?", (value, tenant, rid)
            )
        db.commit()
    finally:
        db.close()


def _kek(lab, tenant="acme") -> bytes:
    root = unlock(lab, PASS)
    wrapped = keystore.load_tenant_key(lab.paths.keys, tenant)
    assert wrapped is not None
    return root.unwrap_kek(tenant, wrapped)


def _aad(tenant: str, rid: str, field: str) -> bytes:
    """The AAD as the README and store.py's docstring define it (written out here)."""
    return f"facelab/v1|{tenant}|{rid}|{field}".encode()


def _raw_open(key: bytes, blob: bytes, aad: bytes) -> bytes:
    """AES-256-GCM open with pyca/cryptography directly: nonce || ciphertext || tag."""
    return AESGCM(key).decrypt(bytes(blob[:12]), bytes(blob[12:]), aad)


# ---------------------------------------------------------------- AAD binding
def test_every_stored_value_opens_only_under_its_own_tenant_record_and_field(lab, dataset):
    _ingest(lab, dataset)
    kek = _kek(lab)
    rid, wdek, image, meta = _rows(lab)[0]
    # positive control: the documented AAD opens each field, outside the vault's code
    dek = _raw_open(kek, wdek, _aad("acme", rid, "dek"))
    assert _raw_open(dek, image, _aad("acme", rid, "image")).startswith(b"\x89PNG")
    assert json.loads(_raw_open(dek, meta, _aad("acme", rid, "meta")))["kind"]
    blobs = {"dek": (kek, wdek), "image": (dek, image), "meta": (dek, meta)}
    for field, (key, blob) in blobs.items():
        for other in FIELDS:
            if other != field:
                with pytest.raises(InvalidTag):
                    _raw_open(key, blob, _aad("acme", rid, other))
        with pytest.raises(InvalidTag):
            _raw_open(key, blob, _aad("beta", rid, field))
        with pytest.raises(InvalidTag):
            _raw_open(key, blob, _aad("acme", "0" * 32, field))


@pytest.mark.parametrize(
    "swap",
    [
        {"image": "meta", "meta": "image"},  # the two fields of one record exchanged
        {"image": "meta"},  # the meta blob stored as the image
        {"meta": "image"},  # the image blob stored as the meta
    ],
)
def test_fields_swapped_inside_a_record_do_not_open(lab, dataset, swap) -> None:
    _ingest(lab, dataset)
    rows = _rows(lab)
    rid, _, image, meta = rows[1]
    value = {"image": image, "meta": meta}
    _set(lab, "acme", rid, **{col: value[src] for col, src in swap.items()})
    root = unlock(lab, PASS)
    with ops.open_vault(lab, root) as v:
        with pytest.raises(VaultError, match=rid):
            v.open_record("acme", rid)
        assert v.open_record("acme", rows[0][0]).png  # positive control: a neighbour opens


def test_a_data_key_moved_to_another_record_does_not_open(lab, dataset) -> None:
    _ingest(lab, dataset)
    (r1, d1, i1, m1), (r2, *_) = _rows(lab)[:2]
    # the whole record (its wrapped DEK with its image and meta) moved to another row
    _set(lab, "acme", r2, wrapped_dek=d1, image=i1, meta=m1)
    root = unlock(lab, PASS)
    with ops.open_vault(lab, root) as v:
        with pytest.raises(VaultError, match=r2):
            v.open_record("acme", r2)
        assert v.open_record("acme", r1).png


# ---------------------------------------------------------------- nonces
def test_no_nonce_is_ever_repeated_under_one_key() -> None:
    key = pr.random_key()
    n = 4096
    nonces = {pr.seal(key, b"the same plaintext", b"the same aad")[: pr.NONCE] for _ in range(n)}
    assert len(nonces) == n
    # and the same plaintext never gives the same ciphertext
    assert pr.seal(key, b"x", b"a") != pr.seal(key, b"x", b"a")


def test_every_blob_in_the_vault_has_its_own_nonce(lab, dataset) -> None:
    _ingest(lab, dataset, "acme")
    _ingest(lab, dataset, "beta")  # the same images again, for another tenant
    db = sqlite3.connect(lab.paths.vault)
    blobs = [b for row in db.execute("SELECT wrapped_dek, image, meta FROM records") for b in row]
    db.close()
    wrapped = [keystore.load_tenant_key(lab.paths.keys, t) for t in ("acme", "beta")]
    blobs += [w for w in wrapped if w]
    assert len(blobs) == 2 * 3 * 12 + 2
    nonces = [bytes(b[:12]) for b in blobs]
    assert len(set(nonces)) == len(nonces)


# ---------------------------------------------------------------- ingest limits
def test_ingest_applies_the_policys_image_size_limit(lab, tmp_path) -> None:
    ds = tmp_path / "big"
    write_dataset(SynthConfig(identities=2, captures=1, size=128, seed=1), ds, workers=1)
    text = lab.paths.policy.read_text()
    assert "max_image_side = 1024" in text
    lab.paths.policy.write_text(text.replace("max_image_side = 1024", "max_image_side = 100"))
    small = open_lab(lab.paths.root)
    with pytest.raises(BadInputError, match="outside"):
        _ingest(small, ds)
    db = sqlite3.connect(lab.paths.vault)
    assert db.execute("SELECT COUNT(*) FROM records").fetchone()[0] == 0
    assert db.execute("SELECT COUNT(*) FROM tenants").fetchone()[0] == 0
    db.close()
    assert keystore.load_tenant_key(lab.paths.keys, "acme") is None
    # positive control: the same dataset under a limit it meets is stored
    lab.paths.policy.write_text(text.replace("max_image_side = 1024", "max_image_side = 128"))
    _ingest(open_lab(lab.paths.root), ds)
    assert len(_rows(lab)) == 4


# ---------------------------------------------------------------- destroy, raw bytes
def _scan(root: Path, needles: list[bytes]) -> dict[str, list[int]]:
    """The test's own oracle: each regular file under ``root`` read whole, and which
    needles (by index) occur in it. Not destroy's scanner; no link followed."""
    hits: dict[str, list[int]] = {}
    for dirpath, _dirs, files in os.walk(root, followlinks=False):
        for f in files:
            p = os.path.join(dirpath, f)
            if os.path.islink(p) or not os.path.isfile(p):
                continue
            with open(p, "rb") as fh:
                data = fh.read()
            found = [i for i, n in enumerate(needles) if n in data]
            if found:
                hits[os.path.relpath(p, root)] = found
    return hits


def test_destroy_leaves_no_byte_of_the_tenant_in_any_file(lab, dataset) -> None:
    _ingest(lab, dataset, "acme")
    _ingest(lab, dataset, "keep")
    wrapped = keystore.load_tenant_key(lab.paths.keys, "acme")
    assert wrapped
    rows = _rows(lab, "acme")
    # needles: the wrapped KEK, and 24-byte windows of every sealed blob (the middle of
    # the ciphertext, so nothing shared with a header), and the record ids (stored plain)
    needles = [wrapped]
    for rid, wdek, image, meta in rows:
        needles += [bytes(wdek[16:40]), bytes(image[200:224]), bytes(meta[20:44])]
        needles.append(rid.encode())
    keep_rows = _rows(lab, "keep")
    # make sure something is in the WAL too: a checkpoint-free read of the tenant
    root = unlock(lab, PASS)
    before = _scan(lab.paths.root, needles)
    found = {i for v in before.values() for i in v}
    assert found == set(range(len(needles)))  # positive control: every needle is found
    assert any(k.startswith("vault.db") for k in before)
    assert any(k.startswith("keys") for k in before)
    with audit_writer(lab, root) as log:
        ops.destroy(lab, root, "acme", "officer", log)
    after = _scan(lab.paths.root, needles)
    assert after == {}, after
    # and the WAL and shared-memory files, if SQLite keeps them, hold none either
    for suffix in ("-wal", "-shm"):
        p = Path(str(lab.paths.vault) + suffix)
        if p.exists():
            assert not any(n in p.read_bytes() for n in needles)
    assert _rows(lab, "keep") == keep_rows  # the other tenant's bytes are untouched


# ---------------------------------------------------------------- retention
def _governed(lab, extra: str):
    text = lab.paths.policy.read_text()
    lab.paths.policy.write_text(text + extra)
    return open_lab(lab.paths.root)


def _retention(lab, today: date, dry_run: bool = False) -> list[dict]:
    root = unlock(lab, PASS)
    with audit_writer(lab, root) as log:
        return retention.run(lab, root, "ops", log, today=today, dry_run=dry_run)


def _has_data(lab, tenant: str) -> bool:
    db = sqlite3.connect(lab.paths.vault)
    try:
        n = db.execute("SELECT COUNT(*) FROM records WHERE tenant=?", (tenant,)).fetchone()[0]
    finally:
        db.close()
    return n > 0 and keystore.load_tenant_key(lab.paths.keys, tenant) is not None


def test_retention_destroys_on_destroy_by_when_it_is_sooner(lab, dataset) -> None:
    today = datetime.now(UTC).date()
    by = today + timedelta(days=10)
    lab = _governed(
        lab,
        f'\n[tenants.acme]\nprocessor = "Acme"\npurposes = ["verify_1to1"]\n'
        f"retention_days = 365\ndestroy_by = {by.isoformat()}\n"
        f'\n[tenants.keep]\nprocessor = "Keep"\npurposes = ["verify_1to1"]\n'
        f"retention_days = 365\n",
    )
    _ingest(lab, dataset, "acme")
    _ingest(lab, dataset, "keep")
    due = {s["tenant"]: s["due"] for s in retention.schedule(lab, unlock(lab, PASS))}
    assert due == {"acme": by.isoformat(), "keep": (today + timedelta(days=365)).isoformat()}
    assert _retention(lab, by - timedelta(days=1)) == []
    assert _has_data(lab, "acme")
    done = _retention(lab, by)
    assert [d["tenant"] for d in done] == ["acme"] and done[0]["certificate"]
    assert not _has_data(lab, "acme") and _has_data(lab, "keep")
    assert (lab.paths.root / "certificates" / done[0]["certificate"]).is_file()


def test_retention_dry_run_destroys_nothing_and_says_what_is_due(lab, dataset) -> None:
    today = datetime.now(UTC).date()
    lab = _governed(
        lab,
        '\n[tenants.acme]\nprocessor = "Acme"\npurposes = ["verify_1to1"]\nretention_days = 1\n',
    )
    _ingest(lab, dataset, "acme")
    key_file = lab.paths.keys / "tenants" / "acme.kek"
    key_bytes = key_file.read_bytes()
    vault_rows = _rows(lab)
    certs = set((lab.paths.root / "certificates").glob("*"))
    due = _retention(lab, today + timedelta(days=1), dry_run=True)
    assert [d["tenant"] for d in due] == ["acme"] and due[0]["certificate"] is None
    # the effect: the key file, every record and the certificates are as before
    assert key_file.read_bytes() == key_bytes
    assert _rows(lab) == vault_rows
    assert set((lab.paths.root / "certificates").glob("*")) == certs
    last = json.loads((lab.paths.audit / "entries.jsonl").read_text().splitlines()[-1])
    assert last["action"] == "retention.run" and last["decision"] == "dry-run"
    assert last["details"]["due"] == ["acme"]
    # positive control: the same run without --dry-run destroys
    _retention(lab, today + timedelta(days=1))
    assert not key_file.exists() and _rows(lab) == []


def test_retention_without_the_governance_sections_refuses_and_destroys_nothing(
    lab, dataset
) -> None:
    """No [roles] to [jobs] (a lab made before them): no due date can be computed, so
    nothing is due and nothing is destroyed; the refusal says so."""
    _ingest(lab, dataset, "acme")
    key_file = lab.paths.keys / "tenants" / "acme.kek"
    key_bytes, rows = key_file.read_bytes(), _rows(lab)
    text = lab.paths.policy.read_text()
    cut = text[: text.index("\n[roles]\n")] + text[text.index("\n[audit]\n") :]
    lab.paths.policy.write_text(cut)
    lab = open_lab(lab.paths.root)
    assert lab.policy.governance is None
    with pytest.raises(BadInputError):
        _retention(lab, datetime.now(UTC).date() + timedelta(days=36500))
    assert key_file.read_bytes() == key_bytes and _rows(lab) == rows
