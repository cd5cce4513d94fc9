"""A small synthetic lab for the export-gate tests and the red-team benchmark: one tenant
ingested from a synthetic dataset, the shipped CNN imported (signed and approved) as
the reference model, and a reviewer key in the policy."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from lab.audit import AuditLog
from lab.gates.importing.keys import load_officer_key, write_keypair
from lab.gates.importing.ops import import_model
from lab.labdir import Lab, audit_writer, init_and_record, open_lab, public_key_b64, unlock
from lab.synth import SynthConfig, write_dataset
from lab.vault import ops as vault_ops
from tests.import_helpers import configure, make_keys, sign_and_approve

PASSPHRASE = b"export gate tests"
REPO = Path(__file__).resolve().parents[1]


@dataclass
class ExportLab:
    lab: Lab
    dataset: Path  # the plaintext the tenant ingested (kept, to build leaky artifacts)
    tenant: str
    reviewer_key: Path
    cnn: Path  # the CNN package directory as shipped

    def unlocked(self):
        root = unlock(self.lab, PASSPHRASE)
        return root, audit_writer(self.lab, root)


def build_export_lab(work: Path, identities: int = 60, captures: int = 3, seed: int = 11,
                     tenant: str = "acme") -> ExportLab:
    work.mkdir(parents=True, exist_ok=True)
    dataset = work / "dataset"
    write_dataset(SynthConfig(identities=identities, captures=captures, seed=seed), dataset,
                  workers=1)
    lab = init_and_record(work / "lab", PASSPHRASE, "operator")
    keys = make_keys(work / "keys")
    configure(lab.paths.root, keys, tenant)
    rpriv, _, _ = write_keypair("reviewer", work / "keys" / "rev")
    pub = public_key_b64(load_officer_key(rpriv).public_key())
    text = lab.paths.policy.read_text().replace(
        "reviewers = {}", f'reviewers = {{ rev = "{pub}" }}')
    lab.paths.policy.write_text(text)
    lab = open_lab(lab.paths.root)
    root = unlock(lab, PASSPHRASE)
    pkg = work / "cnn-package"
    pkg.mkdir()
    for f in ("model.onnx", "model.json", "MODEL_CARD.md"):
        shutil.copyfile(REPO / "models" / "cnn" / f, pkg / f)
    sign_and_approve(pkg, keys)
    log: AuditLog
    with audit_writer(lab, root) as log:
        vault_ops.ingest(lab, root, tenant, dataset, "operator", log)
        report = import_model(lab, tenant, pkg, "operator", log)
        assert report.accepted, report.table()
    return ExportLab(lab, dataset, tenant, rpriv, REPO / "models" / "cnn")
