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
