"""Scan-only modes for engineers without a lab: the gates' checks, no lab, no keys, no
release, nothing written but a scratch directory that is removed.

* :func:`scan_model` runs the import gate's static checks (the confined unpacking and
  parsing: files and pickles, ``model.json``, the whole ONNX ModelProto and
  ``onnx.checker``) on a package; signatures and approvals are not required and are
  reported as skipped; the model is never run (no smoke test).
* :func:`scan_export` runs the export gate (contract, confined rebuild, behavioural
  tests, detectors) on files against a **plaintext** synthetic dataset in DESIGN.md's
  format standing in for the vault: its records are the subjects looked for, its
  images the faces, its names, passport numbers and birth dates the identifiers. The
  "imported models" an ONNX export must descend from are the shipped baselines and
  the packages given with ``from_models``.

Outcomes follow modelscan's exit codes: 0 nothing found, 1 issues found, 2 usage or a
scan that could not run (``ScanError``; e.g. the confinement cannot be built here).
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from facelab.errors import BadInputError

from enclave_policy import DEFAULT_POLICY, load_policy

SCAN_TENANT = "scan"
SKIPPED = ("signature", "approvals")


class ScanError(BadInputError):
    """The scan could not run (not a finding about the input): exit 2."""


@dataclass(frozen=True)
class ModelScan:
    package: str
    model: str
    digest: str
    checks: list[dict]  # name, passed, problems, info; skipped checks have passed None

    @property
    def clean(self) -> bool:
        return all(c["passed"] is not False for c in self.checks)

    def to_json(self) -> dict:
        return {
            "package": self.package,
            "model": self.model,
            "digest": self.digest,
            "clean": self.clean,
            "checks": self.checks,
        }

    def text(self) -> str:
        from facelab.audit.events import escape_text as e  # package strings: no raw ESC

        lines = [f"scan-model: {e(self.package, 500)} ({e(self.model) or '?'})"]
        for c in self.checks:
            state = {True: "pass", False: "FAIL", None: "skip"}[c["passed"]]
            first = c["problems"][0] if c["problems"] else c["info"]
            lines.append(f"  {c['name']:<12} {state:<5} {e(first, 600)}")
            lines += [f"  {'':<12} {'':<5} {e(p, 600)}" for p in c["problems"][1:]]
        lines.append(f"  result: {'CLEAN' if self.clean else 'ISSUES FOUND'}")
        return "\n".join(lines)


def _policy(policy_path: Path | None):
    return load_policy(policy_path if policy_path is not None else DEFAULT_POLICY)


def scan_model(package: Path | str, *, policy_path: Path | None = None) -> ModelScan:
    """The import gate's static checks on ``package`` (a directory or a .tar/.tar.gz)."""
    from facelab.gates.importing.gate import inspect

    policy = _policy(policy_path)
    report, ctx = inspect(package, SCAN_TENANT, policy.importing, dynamic=False)
    try:
        checks = []
        for c in report.checks:
            if c.name in SKIPPED:
                checks.append(
                    {
                        "name": c.name,
                        "passed": None,
                        "problems": [],
                        "info": "skipped: scan-only mode requires no signatures",
                    }
                )
                continue
            if any("confinement cannot be built here" in p for p in c.problems):
                raise ScanError(f"{package}: cannot scan: {c.problems[0]}")
            checks.append(
                {
                    "name": c.name,
                    "passed": bool(c.passed),
                    "problems": list(c.problems),
                    "info": c.info,
                }
            )
    finally:
        ctx.package.cleanup()
    return ModelScan(str(package), report.model, report.digest, checks)


def dataset_records(dataset: Path | str, splits: dict[str, float], key: bytes):
    """A plaintext dataset's rows as vault ``Record``s, identifiers revealed: subjects as
    HMAC-SHA-256 pseudonyms under ``key`` (one scan's), splits by the same keyed hash
    and the policy's ratios, as the vault assigns them."""
    from facelab.vault.dataset import read_dataset
    from facelab.vault.store import Record, _split_of

    out = []
    for it in read_dataset(dataset):
        r = it.row
        subject = hmac.new(key, b"subject|" + r["subject_id"].encode(), hashlib.sha256)
        sid = subject.hexdigest()[:32]
        u = int.from_bytes(hmac.new(key, sid.encode(), hashlib.sha256).digest()[:8], "big")
        lms = np.array([[float(r[f"lm{i}_x"]), float(r[f"lm{i}_y"])] for i in range(5)], np.float32)
        out.append(
            Record(
                hashlib.sha256(r["capture_id"].encode()).hexdigest()[:32],
                sid,
                r["kind"],
                _split_of(u / 2**64, splits),
                it.png,
                lms,
                r["nationality"],
                r["sex"],
                int(r["birth_year"]),
                r.get("birth_date") or None,
                r["name"],
                r["passport_no"],
            )
        )
    return out


def scan_export(
    files: Sequence[Path | str],
    dataset: Path | str,
    *,
    from_models: Sequence[Path | str] = (),
    policy_path: Path | None = None,
    seed: int | None = None,
):
    """The export gate's whole check of ``files`` against ``dataset``; returns the
    ``ExportReport`` (``report.refused`` is "issues found"). Nothing is released."""
    from facelab.bench._matcher import Matcher
    from facelab.gates.exporting import contract, vault_index
    from facelab.gates.exporting._types import ScanContext
    from facelab.gates.exporting.ops import SHIPPED, check, layout

    policy = _policy(policy_path)
    if policy.exporting is None:
        raise ScanError(f"{policy.source}: no [export] section")
    paths = [Path(p) for p in files]
    for p in paths:
        if not p.exists() and not p.is_symlink():
            raise BadInputError(f"{p}: no such artifact")
    laid = layout(paths)
    key = os.urandom(32)
    records = dataset_records(dataset, policy.vault.splits, key)
    matchers, baselines = {}, {}
    for name in policy.exporting.behaviour.get("shipped_matchers", []):
        d = SHIPPED / name
        if not (d / "model.onnx").is_file():
            raise ScanError(f"{d}: the shipped reference matcher is missing")
        matchers[f"{name} (shipped reference)"] = Matcher(d)
        baselines[f"{name} (shipped)"] = d / "model.onnx"
    for m in from_models:
        d = Path(m)
        if not (d / "model.onnx").is_file():
            raise BadInputError(f"{d}: no model.onnx (--from takes a model package directory)")
        baselines[d.name] = d / "model.onnx"
    notes: list[str] = [f"scan-only: {len(records)} records of {dataset} stand in for the vault"]
    index = vault_index.build(
        records, fields=tuple(policy.exporting.identifiers["fields"]), reader=lambda: iter(records)
    )
    # a scan answers "does the gate find personal data here": kinds that leave only
    # after a reviewer's output check are named in a note, not counted as an issue
    exporting = policy.exporting
    reviewed = list(exporting.contract.get("reviewed_kinds", []))
    if reviewed:
        exporting = dataclasses.replace(
            exporting, contract={**exporting.contract, "reviewed_kinds": []}
        )
        notes.append(
            "scan-only: in a lab, kinds " + ", ".join(reviewed) + " leave only after a "
            "reviewer's output check (export.contract.reviewed_kinds), whatever this scan finds"
        )
    ctx = ScanContext(exporting, SCAN_TENANT, index, matchers, None, notes)
    scratch = contract.scratch_dir()
    try:
        report, _ = check(laid, ctx, policy.importing, baselines, scratch, seed=seed)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return report
