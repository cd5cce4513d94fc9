"""The capacity budget of a tenant across its exports (issue 20, L14): each release
records in its audit entry the bits its rebuilt files can carry beyond what the tenant
imported, and an export that would take the tenant's total over
``export.contract.tenant_capacity_bits`` is refused with the reason, nothing written.

The leak it closes: two exported models that each change a tensor a little, whose
difference is the payload. Each is charged its own change from the imported model, so
their sum bounds what the pair carries. The oracles are the audit log's lines and the
released directory, read in the test.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest
from facelab.gates.exporting import export
from facelab.gates.exporting.ops import tenant_bits
from facelab.labdir import audit_writer, open_lab, unlock
from onnx import numpy_helper

from tests.export_helpers import PASSPHRASE, build_export_lab

REPO = Path(__file__).resolve().parents[1]
BUDGET = 3000


@pytest.fixture(scope="module")
def el(tmp_path_factory: pytest.TempPathFactory):
    # the capacity bound of hand-built fine-tunes (a model no training job wrote is refused by
    # default, and charged in full when a reviewer releases it: test_export_attested.py)
    el = build_export_lab(
        tmp_path_factory.mktemp("budget"), identities=40, captures=2, attestation=False
    )
    p = el.lab.paths.policy
    text = p.read_text()
    assert "tenant_capacity_bits = 2097152" in text
    p.write_text(text.replace("tenant_capacity_bits = 2097152", f"tenant_capacity_bits = {BUDGET}"))
    return dataclasses.replace(el, lab=open_lab(el.lab.paths.root))


def _export(el, paths):
    root = unlock(el.lab, PASSPHRASE)
    with audit_writer(el.lab, root) as log:
        return export(el.lab, root, "acme", paths, "eng", log)


def _outbox(el, name: str) -> Path:
    d = el.lab.paths.root / "outbox" / "acme" / name
    shutil.rmtree(d, ignore_errors=True)
    d.mkdir(parents=True)
    return d


def _bias_changed(el, name: str, seed: int) -> Path:
    """The imported CNN with every value of its last bias moved a little (a fine-tune of
    one layer; the difference between two of them can be a payload)."""
    m = onnx.load(REPO / "models" / "cnn" / "model.onnx")
    t = next(t for t in m.graph.initializer if t.name == "embed.bias")
    a = numpy_helper.to_array(t)
    noise = np.random.default_rng(seed).normal(0, 1e-3, a.shape) * np.abs(a).mean()
    t.CopyFrom(numpy_helper.from_array((a + noise).astype(np.float32), "embed.bias"))
    d = _outbox(el, name)
    onnx.save(m, d / "model.onnx")
    shutil.copyfile(REPO / "models" / "cnn" / "model.json", d / "model.json")
    return d


def _releases(el) -> list[Path]:
    d = el.lab.paths.root / "released" / "acme"
    return sorted(d.iterdir()) if d.exists() else []


def _last_entry(el) -> dict:
    lines = (el.lab.paths.root / "audit" / "entries.jsonl").read_text().splitlines()
    return json.loads(lines[-1])


@pytest.mark.slow  # minutes-class end to end: `make test-slow`
def test_a_tenants_exports_together_stay_within_its_budget(el) -> None:
    # the first fine-tune leaves, and its entry records what it was charged
    first = _export(el, [_bias_changed(el, "ft-1", 1)])
    assert first.decision == "released", first.report.text()
    entry = _last_entry(el)
    assert entry["action"] == "export.release"
    charged = entry["details"]["capacity_bits"]
    assert 128 * 8 < charged <= BUDGET  # 128 changed values, sign and exponents counted
    assert tenant_bits(el.lab.paths.audit, "acme") == pytest.approx(charged)
    # the second is as small, but the two together are over the budget: refused, with
    # the reason, nothing written, and nothing charged
    before = _releases(el)
    second = _export(el, [_bias_changed(el, "ft-2", 2)])
    assert second.decision == "refused" and second.release_dir is None
    [hit] = [f for f in second.report.blocking() if f.detector == "capacity"]
    assert "tenant_capacity_bits" in hit.evidence and f"{BUDGET}" in hit.evidence
    assert _releases(el) == before
    entry = _last_entry(el)
    assert entry["action"] == "export.refuse" and entry["details"]["blocking"] == {"capacity": 1}
    assert tenant_bits(el.lab.paths.audit, "acme") == pytest.approx(charged)
    # positive control: the model as imported carries nothing the tenant chose and
    # still leaves with the budget nearly spent
    d = _outbox(el, "as-imported")
    for f in ("model.onnx", "model.json"):
        shutil.copyfile(REPO / "models" / "cnn" / f, d / f)
    third = _export(el, [d])
    assert third.decision == "released", third.report.text()
    assert _last_entry(el)["details"]["capacity_bits"] == 0
