"""Issue 14 (red team 14g, case 24): what ingest decided before it held the tenant's
state lock is decided again under it, so a destroy that finished in between is never
undone by an ingest that did not ask for a new tenant."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from facelab.errors import BadInputError
from facelab.labdir import audit_writer, unlock
from facelab.synth import SynthConfig, write_dataset
from facelab.vault import ops

from tests.audit_helpers import PASS, make_lab


@pytest.fixture(scope="module")
def datasets(tmp_path_factory) -> tuple[Path, Path]:
    top = tmp_path_factory.mktemp("races")
    a, b = top / "a", top / "b"
    write_dataset(SynthConfig(identities=3, captures=1, seed=5), a, workers=1)
    write_dataset(SynthConfig(identities=3, captures=1, seed=6), b, workers=1)
    return a, b


def _tenants(lab) -> set[str]:
    """The vault's tenants read with sqlite3 directly (rows of records), not the Vault."""
    with sqlite3.connect(lab.paths.vault) as db:
        return {r[0] for r in db.execute("SELECT DISTINCT tenant FROM records")}


def test_an_ingest_that_checked_before_a_destroy_finished_does_not_recreate_the_tenant(
    tmp_path: Path, datasets, monkeypatch
) -> None:
    lab = make_lab(tmp_path / "lab")
    root = unlock(lab, PASS)
    with audit_writer(lab, root) as log:
        ops.ingest(lab, root, "acme", datasets[0], "tester", log)
        ops.destroy(lab, root, "acme", "officer", log)
    # the early check ran while acme still existed (the race): it passes
    monkeypatch.setattr(ops, "check_known_tenant", lambda *a, **k: None)
    with audit_writer(lab, root) as log, pytest.raises(BadInputError, match="is new"):
        ops.ingest(lab, root, "acme", datasets[1], "tester", log, new_tenant=False)
    assert "acme" not in _tenants(lab)
    assert not (lab.paths.keys / "tenants" / "acme.kek").exists()


def test_the_same_ingest_of_a_tenant_that_exists_goes_ahead(
    tmp_path: Path, datasets, monkeypatch
) -> None:
    lab = make_lab(tmp_path / "lab")
    root = unlock(lab, PASS)
    with audit_writer(lab, root) as log:
        ops.ingest(lab, root, "acme", datasets[0], "tester", log)
    monkeypatch.setattr(ops, "check_known_tenant", lambda *a, **k: None)
    with audit_writer(lab, root) as log:
        res = ops.ingest(lab, root, "acme", datasets[1], "tester", log, new_tenant=False)
    assert res.images > 0 and not res.created_tenant
    assert _tenants(lab) == {"acme"}
