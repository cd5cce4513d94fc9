"""Attested outputs: which files the lab's own jobs wrote, by the audit log.

A tenant runs no code of its own in the lab: a job runs facelab's benchmark, or a trainer
the lab's policy registers (``[jobs] trainers``), over the tenant's imported model, and
the job runner lists each finished job's outbox (names and SHA-256 digests) in the job's
manifest (``facelab.manifests``, ``LAB/manifests/<tenant>/job-<id>.json``) and records
the manifest's SHA-256 in its ``job.finish`` entry. A file whose bytes have one of the
digests of a manifest that matches its entry is what lab code wrote; any other file
(made by hand, edited after the job, another tenant's, a failed job's, one listed in a
manifest that is missing or does not match the log) is not.

Why the export gate asks for this (issue 20, default deny): the capacity budget bounds
what a tenant can take out through values it chose, but any nonzero budget lets a payload
smaller than it through (out-of-range Slice bounds, which weights were nudged, sign
flips, ranks of all-zero tensors: hundreds to thousands of bits each). Enumerating such
channels never ends; asking where the bytes came from closes them all at once. What is
left that the tenant chose in an attested model is the job's spec (model, trainer, split,
params) and which of its training jobs it exports: :func:`charge_bits` bounds those.

This module reads the log without verifying it; callers decide from it where the log has
been verified (an ``AuditLog`` writer verifies it when it opens), as for every lookup of
``facelab.audit.read``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from facelab.errors import FacelabError

__all__ = ["Attestation", "JobOutputs", "charge_bits", "job_outputs"]


@dataclass(frozen=True)
class Attestation:
    """The training job that wrote a file: its id, its registered trainer
    (``module:function``), the size of its spec (canonical JSON, bytes) and the
    differential privacy it ran under (per subject: ``epsilon`` and ``delta``, from the
    policy's ``[jobs] trainer_privacy`` as ``job.start`` recorded it)."""

    job: str
    trainer: str
    spec_bytes: int
    epsilon: float = 0.0
    delta: float = 0.0


@dataclass(frozen=True)
class JobOutputs:
    """What the tenant's finished jobs wrote, by SHA-256 (hex).

    ``models``: every output of a train job of a registered trainer, to its job (a file
    written by two such jobs maps to the first). ``bench_reports``: every ``report.json``
    of a benchmark job. ``train_jobs``: how many train jobs of registered trainers
    finished ``done`` (a tenant may run several and export the one it likes best).
    """

    models: dict[str, Attestation] = field(default_factory=dict)
    # every job that wrote a file of these bytes (a deterministic model.json is the same
    # in every job of one spec): the export picks among them (``ops._attest``)
    candidates: dict[str, list[Attestation]] = field(default_factory=dict)
    bench_reports: set[str] = field(default_factory=set)
    train_jobs: int = 0


def job_outputs(
    audit_dir: Path, tenant: str, trainers: Iterable[str], *, lab_root: Path | None = None
) -> JobOutputs:
    """The outputs of ``tenant``'s jobs that finished ``done``, from its ``job.start``
    (kind, trainer, spec size) and ``job.finish`` (decision, ``manifest_sha256``) entries
    and each job's manifest under ``lab_root`` (default: the parent of ``audit_dir``).

    ``trainers``: the ``module:function`` targets the lab's policy registers now; a
    train job of any other trainer (one the policy no longer lists) attests nothing. A
    train job recorded without its spec's size (before facelab recorded it) attests
    nothing either: what the tenant chose in it cannot be bounded. A job whose manifest
    is missing, or whose bytes do not hash to the digest its entry recorded, attests
    nothing (default deny).
    """
    from facelab import manifests
    from facelab.audit.read import entries

    root = Path(audit_dir).parent if lab_root is None else Path(lab_root)

    registered = set(trainers)
    started: dict[str, dict] = {}
    models: dict[str, Attestation] = {}
    candidates: dict[str, list[Attestation]] = {}
    reports: set[str] = set()
    n_train = 0
    for e in entries(audit_dir, b'"job.'):
        d = e.get("details")
        if e.get("tenant") != tenant or not isinstance(d, dict):
            continue
        job = e.get("object")
        if e.get("action") == "job.start":
            started[job] = d
            continue
        if e.get("action") != "job.finish" or e.get("decision") != "done" or job not in started:
            continue
        start = started.pop(job)  # one finish per start
        try:
            doc = manifests.read(
                root, tenant, manifests.job_name(str(job)), d.get("manifest_sha256")
            )
        except FacelabError:
            doc = None
        listed = doc.get("outputs") if doc is not None else None
        if not isinstance(listed, dict):
            continue
        outputs = [(str(h), str(name)) for name, h in listed.items()]
        if start.get("kind") == "bench":
            reports.update(h for h, name in outputs if PurePosixPath(name).name == "report.json")
        elif start.get("kind") == "train" and start.get("trainer") in registered:
            size = start.get("spec_bytes")
            if not isinstance(size, int) or isinstance(size, bool) or size < 0:
                continue
            privacy = _privacy(start.get("privacy"))
            if privacy is None:
                continue
            n_train += 1
            att = Attestation(str(job), str(start["trainer"]), size, *privacy)
            for h, _name in outputs:
                models.setdefault(h, att)
                candidates.setdefault(h, []).append(att)
    return JobOutputs(models, candidates=candidates, bench_reports=reports, train_jobs=n_train)


def _privacy(record) -> tuple[float, float] | None:
    """(epsilon, delta) of a ``job.start`` ``privacy`` record, or None unless both are
    finite, epsilon > 0 and 0 < delta < 1."""
    if not isinstance(record, dict):
        return None
    eps, delta = record.get("epsilon"), record.get("delta")
    for v in (eps, delta):
        if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
            return None
    return (float(eps), float(delta)) if eps > 0 and 0 < delta < 1 else None


def charge_bits(att: Attestation, train_jobs: int) -> float:
    """What an attested model can carry of the tenant's choosing, in bits: its job's spec
    (every byte of its canonical JSON: model, trainer, split and params, 8 bits each), and
    which of the tenant's ``train_jobs`` finished training jobs it exports (log2 of their
    number). The trainer's code, the vault's records and its randomness are the lab's.
    An upper bound, as the rebuild's ``capacity_bits`` is for a file the tenant made."""
    return 8.0 * att.spec_bytes + math.log2(max(1, train_jobs))
