"""Opening a vault record: every field comes back as the manifest gave it, and the
identifier grant holds: a record's name, passport number and birth date leave the vault
only for a tenant the policy lists in ``vault.identifiers_granted`` (or for the export
gate's ``reveal``), whichever way the record is opened."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
from facelab.errors import BadInputError
from facelab.labdir import audit_writer, open_lab, unlock
from facelab.vault import ops

from tests.audit_helpers import PASS, make_lab


def _manifest(ds: Path) -> list[dict[str, str]]:
    with open(ds / "manifest.csv", encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def granted_lab(tmp_path_factory, small_dataset: Path):
    """A lab whose policy grants identifiers to acme only; acme and beta hold the same
    dataset. Read only by the tests below."""
    lab = make_lab(tmp_path_factory.mktemp("grants") / "lab")
    text = lab.paths.policy.read_text()
    assert "identifiers_granted = []" in text
    lab.paths.policy.write_text(
        text.replace("identifiers_granted = []", 'identifiers_granted = ["acme"]')
    )
    lab = open_lab(lab.paths.root)
    root = unlock(lab, PASS)
    with audit_writer(lab, root) as log:
        for tenant in ("acme", "beta"):
            ops.ingest(lab, root, tenant, small_dataset, "tester", log)
    return lab, root


def _by_image(ds: Path) -> dict[bytes, dict[str, str]]:
    return {(ds / r["path"]).read_bytes(): r for r in _manifest(ds)}


def test_a_record_opens_with_every_field_of_its_manifest_row(granted_lab, small_dataset):
    """The oracle is the manifest itself: each decrypted record, found by its image
    bytes, carries its row's kind, nationality, sex, birth year and all five landmarks."""
    lab, root = granted_lab
    rows = _by_image(small_dataset)
    with ops.open_vault(lab, root) as v:
        recs = list(v.records("acme"))
    assert len(recs) == len(rows)
    for r in recs:
        row = rows[r.png]
        assert (r.kind, r.nationality, r.sex) == (row["kind"], row["nationality"], row["sex"])
        assert r.birth_year == int(row["birth_year"])
        want = [float(row[f"lm{i}_{a}"]) for i in range(5) for a in "xy"]
        assert r.landmarks.shape == (5, 2)
        assert r.landmarks.ravel().tolist() == pytest.approx(want, abs=1e-4)
        assert (r.name, r.passport_no, r.birth_date) == (
            row["name"],
            row["passport_no"],
            row["birth_date"],
        )


def _ids(lab, root, tenant: str) -> list[str]:
    with ops.open_vault(lab, root) as v:
        return [r.record_id for r in v.records(tenant)]


def test_open_record_gives_identifiers_to_a_granted_tenant_only(granted_lab, small_dataset):
    lab, root = granted_lab
    names = {r["name"] for r in _manifest(small_dataset)}
    passports = {r["passport_no"] for r in _manifest(small_dataset)}
    with ops.open_vault(lab, root) as v:
        acme = [v.open_record("acme", rid) for rid in _ids(lab, root, "acme")]
        beta = [v.open_record("beta", rid) for rid in _ids(lab, root, "beta")]
    assert {r.name for r in acme} == names  # granted: the manifest's names
    assert {r.passport_no for r in acme} == passports
    assert all(r.birth_date for r in acme)
    # not granted: the same records open (images, pseudonyms) with no identifier at all
    assert len(beta) == len(acme) and all(r.png for r in beta)
    assert all(r.name is None and r.passport_no is None for r in beta)
    assert all(r.birth_date is None for r in beta)


def test_records_give_identifiers_to_a_granted_tenant_or_on_reveal_only(granted_lab):
    lab, root = granted_lab
    with ops.open_vault(lab, root) as v:
        acme = list(v.records("acme"))
        beta = list(v.records("beta"))
        beta_revealed = list(v.records("beta", reveal=True))
    assert all(r.name and r.passport_no for r in acme)
    assert all(r.name is None and r.passport_no is None for r in beta)
    # the export gate's reveal: the names it must look for, whatever the grant
    assert sorted(r.name for r in beta_revealed) == sorted(r.name for r in acme)


def test_a_record_id_the_tenant_does_not_hold_is_bad_input(granted_lab):
    """Another tenant's record id, or none at all: refused as bad input (exit 2 at the
    command line), never opened under the asking tenant."""
    lab, root = granted_lab
    acme_id = _ids(lab, root, "acme")[0]
    with ops.open_vault(lab, root) as v:
        assert v.open_record("acme", acme_id).png  # control: its owner opens it
        for tenant, rid in (("beta", acme_id), ("acme", "no-such-record")):
            if rid in _ids(lab, root, tenant):
                continue  # pseudonymous ids are per tenant; skip a coincidence
            with pytest.raises(BadInputError):
                v.open_record(tenant, rid)
