"""A small synthetic lab for the export-gate tests and the red-team benchmark: one tenant
ingested from a synthetic dataset, the shipped CNN imported (signed and approved) as
the reference model, and a reviewer key in the policy."""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

from facelab.audit import AuditLog
from facelab.gates.importing.keys import load_officer_key, write_keypair
from facelab.gates.importing.ops import import_model
from facelab.labdir import Lab, audit_writer, init_and_record, open_lab, public_key_b64, unlock
from facelab.synth import SynthConfig, write_dataset
from facelab.vault import ops as vault_ops

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
    keys: object = None  # tests.import_helpers.Keys: the tenant's and officers' keys

    def unlocked(self):
        root = unlock(self.lab, PASSPHRASE)
        return root, audit_writer(self.lab, root)


def build_export_lab(
    work: Path,
    identities: int = 60,
    captures: int = 3,
    seed: int = 11,
    tenant: str = "acme",
    workers: int = 1,
    reviewed_kinds: tuple[str, ...] = (),
    attestation: bool = True,
) -> ExportLab:
    """``attestation=False`` sets ``models_require_attestation = false``: for tests of the
    rebuild, the capacity bound and the detectors on hand-built models (under the default a
    model no training job wrote is refused before they matter; tests/test_export_attested.py)."""
    work.mkdir(parents=True, exist_ok=True)
    dataset = work / "dataset"
    write_dataset(
        SynthConfig(identities=identities, captures=captures, seed=seed), dataset, workers=workers
    )
    lab = init_and_record(work / "lab", PASSPHRASE, "operator")
    keys = make_keys(work / "keys")
    configure(lab.paths.root, keys, tenant)
    rpriv, _, _ = write_keypair("reviewer", work / "keys" / "rev")
    pub = public_key_b64(load_officer_key(rpriv).public_key())
    text = lab.paths.policy.read_text().replace(
        "reviewers = {}", f'reviewers = {{ rev = "{pub}" }}'
    )
    # the detectors are tested on their own: kinds a reviewer must check are released by
    # the gate alone here unless a test asks for the default (tests/test_export_reviewed.py)
    reviewed = 'reviewed_kinds = ["metrics_table", "text", "weights"]'
    assert reviewed in text
    text = text.replace(reviewed, f"reviewed_kinds = {json.dumps(list(reviewed_kinds))}")
    attest = "models_require_attestation = true"
    assert attest in text
    text = text.replace(attest, f"models_require_attestation = {str(attestation).lower()}")
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
    return ExportLab(lab, dataset, tenant, rpriv, REPO / "models" / "cnn", keys)


def subject_splits(el: ExportLab) -> dict[str, str]:
    """dataset subject_id -> the vault's split of that person (via the passport number)."""
    import csv

    from facelab.vault.ops import open_vault

    root = unlock(el.lab, PASSPHRASE)
    with open_vault(el.lab, root) as v:
        by_passport = {r.passport_no: r.split for r in v.records(el.tenant, reveal=True)}
    with open(el.dataset / "manifest.csv", encoding="utf-8") as f:
        return {r["subject_id"]: by_passport[r["passport_no"]] for r in csv.DictReader(f)}


class Scanner:
    """Scan many artifact sets against one index of the lab's vault (as ``export`` does
    for one set), so that a corpus does not rebuild the index per case."""

    def __init__(self, el: ExportLab, attest: bool = False):
        """``attest``: check models against the tenant's training jobs' outputs as
        ``export`` does (a model no job wrote gets an ``attestation`` finding when the
        lab's policy requires it); off, the scan is the rebuild and detectors alone."""
        from facelab.gates.exporting import vault_index
        from facelab.gates.exporting.ops import _reference_matchers
        from facelab.vault.ops import open_vault

        self.el = el
        self.attest = attest
        self.root = unlock(el.lab, PASSPHRASE)
        self.vault = open_vault(el.lab, self.root)
        pol = el.lab.policy.exporting
        self.index = vault_index.build(
            self.vault.records(el.tenant, reveal=True),
            fields=tuple(pol.identifiers["fields"]),
            reader=lambda: self.vault.records(el.tenant),
        )
        self.notes: list[str] = []
        self.matchers = _reference_matchers(
            el.lab, el.tenant, pol.templates["reference_models"], self.notes
        )

    def scan(self, paths):
        """The gate's whole check (contract, confined rebuild, behavioural tests,
        detectors) of ``paths``, without the release."""
        import shutil

        from facelab.gates.exporting import contract
        from facelab.gates.exporting._types import ScanContext
        from facelab.gates.exporting.ops import _registered_onnx, check, lab_job_outputs, layout

        lab = self.el.lab
        ctx = ScanContext(
            lab.policy.exporting,
            self.el.tenant,
            self.index,
            dict(self.matchers),
            None,
            list(self.notes),
        )
        scratch = contract.scratch_dir()
        jobs = lab_job_outputs(lab, self.el.tenant) if self.attest else None
        try:
            report, _ = check(
                layout([Path(p) for p in paths]),
                ctx,
                lab.policy.importing,
                _registered_onnx(lab, self.el.tenant, None),
                scratch,
                seed=0,
                bench_reports=jobs.bench_reports if jobs else None,
                jobs=jobs,
            )
            # the bytes a release would hold (the gate's rebuild), for oracles
            self.last_rebuilt = {
                a["path"]: Path(a["file"]).read_bytes() for a in report.artifacts if a["file"]
            }
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        # own-model templates live for one scan
        for k in [k for k in self.index.templates if "(its own outputs)" in k]:
            del self.index.templates[k]
        return report

    def close(self) -> None:
        self.vault.close()


def bench_outbox(el: ExportLab) -> Path:
    """Run the 1:1 benchmark inside the lab; its report directory (a clean export)."""
    from facelab.bench.lab_run import bench_in_lab

    root = unlock(el.lab, PASSPHRASE)
    with audit_writer(el.lab, root) as log:
        _, page = bench_in_lab(el.lab, root, el.tenant, "cnn@1.0.0", "engineer", log, split="test")
    return page.parent
