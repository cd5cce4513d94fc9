"""Issue 14 (red team 14g, case 24's class): a tenant destroyed while the export gate
scans its artifacts gets no release afterwards; the gate decides again under the
tenant's state lock."""

from __future__ import annotations

from pathlib import Path

import pytest
from facelab.errors import BadInputError
from facelab.gates.exporting.ops import export
from facelab.vault import ops as vault_ops

from tests.export_helpers import build_export_lab


@pytest.fixture(scope="module")
def el(tmp_path_factory):
    return build_export_lab(tmp_path_factory.mktemp("races"), identities=24, captures=1)


def _table(tmp: Path) -> Path:
    out = tmp / "art"
    out.mkdir()
    (out / "table.csv").write_text("epoch,loss\n1,0.5\n2,0.25\n")
    return out


def test_a_refused_artifact_moved_elsewhere_in_the_lab_makes_destroy_fail(el, tmp_path) -> None:
    """Red team 14h, case 40: an artifact the gate refused, moved out of the outbox to a
    folder that is no place of the tenant's, holds no identifier and no vault bytes; its
    digest, listed in the refusal's manifest (the entry holds the manifest's salted
    digest), finds it. (Runs first: the test below destroys the tenant.)"""
    import json

    import numpy as np

    box = el.lab.paths.root / "outbox" / el.tenant / "job-x"
    box.mkdir(parents=True)
    rng = np.random.default_rng(3)
    np.save(box / "w.npy", rng.standard_normal((40, 40)).astype(np.float32))
    np.save(box / "w2.npy", rng.standard_normal((40, 40)).astype(np.float32))
    root, log = el.unlocked()
    with log:
        out = export(el.lab, root, el.tenant, [box], "engineer", log)
    keep = el.lab.paths.root / "keep"
    keep.mkdir()
    (box / "w.npy").rename(keep / "w.npy")
    entry = json.loads((el.lab.paths.audit / "entries.jsonl").read_text().splitlines()[-1])
    assert entry["action"].startswith("export.") and entry["details"]["manifest_sha256"]
    assert "source_sha256" not in entry["details"] and "w.npy" not in json.dumps(entry)
    root, log = el.unlocked()
    with log, pytest.raises(BadInputError, match="could not be verified"):
        vault_ops.destroy(el.lab, root, el.tenant, "officer", log)
    cert = json.loads(next((el.lab.paths.root / "certificates").glob("*.json")).read_text())
    found = cert["certificate"]["sanitization_details"]["verification_details"]
    assert [Path(p).name for p in found["files_with_copies"]] == ["w.npy"], out.decision
    (keep / "w.npy").unlink()  # the tenant comes back for the test below
    keep.rmdir()
    root, log = el.unlocked()
    with log:
        vault_ops.ingest(el.lab, root, el.tenant, el.dataset, "operator", log)


def test_a_release_after_a_destroy_in_the_middle_of_the_scan_is_refused(el, tmp_path) -> None:
    root, log = el.unlocked()
    destroyed = []

    def progress(step: str) -> None:
        if step == "decision" and not destroyed:  # the scan is done, the release is next
            vault_ops.destroy(el.lab, root, el.tenant, "officer", log)
            destroyed.append(step)

    with log, pytest.raises(BadInputError, match="destroyed while the gate ran"):
        export(el.lab, root, el.tenant, [_table(tmp_path)], "engineer", log, progress=progress)
    assert destroyed
    released = el.lab.paths.root / "released" / el.tenant
    assert not released.exists() or not any(released.rglob("*"))
