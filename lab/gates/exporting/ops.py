"""The export gate as the lab runs it: index the tenant's vault, scan, then release
with a signed manifest or refuse; a reviewer may override with a signed reason. Every
decision is recorded in the audit log.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from facelab import labfs, manifests
from facelab.audit import AuditLog, Event, intents
from facelab.audit._files_schema import DETECTORS, exception_class
from facelab.errors import BadInputError
from facelab.gates.exporting import attestation, contract, release, vault_index
from facelab.gates.exporting._types import Finding, ScanContext
from facelab.gates.exporting.gate import ExportReport, expand, file_sha256, scan
from facelab.labdir import Lab, load_signing_key
from facelab.vault.keystore import RootKey
from facelab.vault.ops import open_vault
from facelab.vault.store import check_tenant


@dataclass(frozen=True)
class Override:
    reviewer: str
    reason: str
    signature: str  # base64 Ed25519 over release.override_statement


@dataclass(frozen=True)
class ExportOutcome:
    report: ExportReport
    decision: str  # released | refused | overridden
    release_dir: Path | None


SHIPPED = Path(__file__).resolve().parents[3] / "models"


def released_dir(lab: Lab, tenant: str) -> Path:
    return lab.paths.root / "released" / tenant


def bench_job_reports(audit_dir: Path, tenant: str) -> set[str]:
    """SHA-256 (hex) of every ``report.json`` that a benchmark job (``job.start`` kind
    ``bench``) of ``tenant`` left in its outbox, from the ``outputs`` lines of its
    ``job.finish`` entry (decision ``done``). A benchmark job runs facelab's own protocol
    and report code (the tenant's model only answers with templates)."""
    return attestation.job_outputs(audit_dir, tenant, ()).bench_reports


def lab_job_outputs(lab: Lab, tenant: str) -> attestation.JobOutputs:
    """The outputs of ``tenant``'s finished jobs (:func:`attestation.job_outputs`), with
    the trainers the lab's policy registers now."""
    gov = lab.policy.governance
    return attestation.job_outputs(
        lab.paths.audit, tenant, gov.trainers.values() if gov is not None else ()
    )


def release_id(when: datetime, report: ExportReport) -> str:
    """``<UTC time>-<12 hex of the released files' digests>``: the release's directory."""
    released = [a for a in report.artifacts if a["file"]]
    return (
        when.strftime("%Y%m%dT%H%M%SZ")
        + "-"
        + hashlib.sha256("".join(a["sha256"] for a in released).encode()).hexdigest()[:12]
    )


def reconcile_intent(lab: Lab, log: AuditLog, actor: str, intent: dict) -> str:
    """Finish an ``export.release`` / ``export.override`` intent that has no outcome.

    The release was committed when its directory holds a manifest that verifies under
    the lab's key (the rename is the commit): the outcome is recorded as the intent's
    decision. Otherwise the half-written temporary directories of the tenant are removed
    and the outcome is ``aborted``. Returns the outcome.
    """
    from facelab.labdir import load_public_key

    tenant = intent["tenant"]
    rel = str(intent.get("details", {}).get("release", ""))
    target = lab.paths.root / rel
    outcome = "aborted"
    if rel.startswith(f"released/{tenant}/") and (target / "manifest.json").is_file():
        try:
            release.verify_manifest(
                json.loads(labfs.read_text(target / "manifest.json")), load_public_key(lab)
            )
            overridden = intent["action"].startswith("export.override")
            outcome = "overridden" if overridden else "released"
        except Exception:
            outcome = "aborted"
    if outcome == "aborted":
        base = released_dir(lab, tenant)
        for d in base.glob(".release-*") if base.is_dir() else ():
            shutil.rmtree(d, ignore_errors=True)
    action = intent["action"].removesuffix(intents.INTENT)
    intents.finish(
        log,
        intent["seq"],
        Event(
            action,
            actor,
            role="system",
            tenant=tenant,
            object=intent.get("object", ""),
            decision=outcome,
            details={
                "release": rel,
                "reconciled": True,
                # what the release was charged (tenant_bits sums it)
                "capacity_bits": intent.get("details", {}).get("capacity_bits", 0)
                if outcome != "aborted"
                else 0,
            },
        ),
    )
    return outcome


def _reference_matchers(lab: Lab, tenant: str, refs: Sequence[str], notes: list[str]) -> dict:
    """The shipped reference matchers (``[export.behaviour] shipped_matchers``: facelab's
    own baselines under ``models/``, always present) and the tenant's registered models
    named in ``refs`` (those that exist). A shipped matcher that cannot load is an
    error: "not checked" is never a pass."""
    from facelab.bench._matcher import Matcher
    from facelab.bench.lab_run import registered_model

    out = {}
    seen: set[str] = set()  # a registered copy of a shipped model is not run twice
    policy = lab.policy.exporting
    for name in policy.behaviour.get("shipped_matchers", []):
        d = SHIPPED / name
        try:
            out[f"{name} (shipped reference)"] = Matcher(d)
            seen.add(labfs.sha256(d / "model.onnx", what="a model"))
        except (BadInputError, OSError) as e:
            raise BadInputError(
                f"{d}: the shipped reference matcher cannot load ({e}); the export gate "
                "does not run without it"
            ) from e
    for ref in refs:
        try:
            entry, path = registered_model(lab, tenant, ref)
            if labfs.sha256(path / "model.onnx", what="a model") in seen:
                continue
            out[f"{entry['model']} (registered reference)"] = Matcher(path)
        except BadInputError:
            notes.append(f"reference model {ref}: not registered; the shipped ones were used")
    return out


def _registered_onnx(lab: Lab, tenant: str, from_model: str | None) -> dict[str, Path]:
    """name@version -> model.onnx of each model the tenant imported (only ``from_model``
    when it is given)."""
    from facelab.bench.lab_run import registered_model
    from facelab.gates.importing import list_models
    from facelab.gates.importing.ops import models_dir

    if from_model:
        entry, path = registered_model(lab, tenant, from_model)
        return {entry["model"]: path / "model.onnx"}
    return {
        m["model"]: models_dir(lab) / m["path"] / "model.onnx"
        for m in list_models(models_dir(lab))
        if m["tenant"] == tenant
    }


def export(
    lab: Lab,
    root: RootKey,
    tenant: str,
    paths: Sequence[Path | str],
    actor: str,
    log: AuditLog,
    *,
    from_model: str | None = None,
    override: Override | None = None,
    reference_models: Sequence[str] | None = None,
    clock=lambda: datetime.now(UTC),
    hook=lambda point: None,
    progress: Callable[[str], None] | None = None,
) -> ExportOutcome:
    """Scan ``paths`` (files or directories in the tenant's outbox) and release the
    gate's rebuild of them, or refuse.

    A release is a state change recorded as an intent (``export.release.intent``, or
    ``export.override.intent``) before the release directory is committed (one rename)
    and its outcome after; a crash in between is finished by :func:`reconcile_intent` when
    the lab is next opened. ``hook(point)`` is called at "after-intent" and
    "after-commit" (crash tests). A refusal changes no state and is one entry.

    Raises
    ------
    BadInputError
        A bad tenant, a path outside the tenant's outbox, clashing names, a forged
        override, or an artifact changed after it was scanned.

    ``progress`` is called with each step's name as it begins.
    """
    step = progress or (lambda _: None)
    check_tenant(tenant)
    policy = lab.policy.exporting
    if policy is None:
        raise BadInputError(
            f"{lab.paths.policy}: no [export] section; the export gate "
            "cannot run (copy it from enclave_policy/default.toml)"
        )
    paths = [Path(p) for p in paths]
    lab_root = lab.paths.root.resolve()
    own = (lab_root / "outbox" / tenant).resolve()
    for p in paths:
        if not p.exists() and not p.is_symlink():
            raise BadInputError(f"{p}: no such artifact")
        rp = p.resolve()
        if lab_root in rp.parents and own != rp and own not in rp.parents:
            raise BadInputError(
                f"{p}: inside the lab but not in tenant {tenant}'s outbox; "
                "the gate exports only a tenant's own results"
            )
    files = layout(paths)  # a clash of names is a usage error, before any work
    refs = (
        reference_models
        if reference_models is not None
        else policy.templates.get("reference_models", [])
    )
    notes: list[str] = []
    scratch = contract.scratch_dir()
    try:
        with open_vault(lab, root) as v:
            if tenant not in {t["tenant"] for t in v.tenants()}:
                raise BadInputError(f"tenant {tenant!r} has no data in this vault")
            log.record(
                Event(
                    "vault.read",
                    actor,
                    tenant=tenant,
                    details={
                        "split": "all",
                        "purpose": "export gate index",
                        "identifiers": "keyed hashes only",
                    },
                )
            )
            step("indexing the tenant's vault records (keyed hashes)")
            index = vault_index.build(
                v.records(tenant, reveal=True),
                fields=tuple(policy.identifiers["fields"]),
                reader=lambda: v.records(tenant),
            )
            ctx = ScanContext(
                policy,
                tenant,
                index,
                _reference_matchers(lab, tenant, refs, notes),
                None,
                notes,
            )
            jobs = lab_job_outputs(lab, tenant)
            report, items = check(
                files,
                ctx,
                lab.policy.importing,
                _registered_onnx(lab, tenant, from_model),
                scratch,
                progress=step,
                bench_reports=jobs.bench_reports,
                jobs=jobs,
            )
        step("decision")
        # the tenant's state lock, from the budget's reading to the release's outcome: two
        # exports of one tenant cannot both spend what is left of its budget
        with intents.held(lab.paths.audit, tenant, log.lock_wait):
            # again under the lock: a destroy that finished while the gate ran must not
            # be followed by a release of what the tenant's data made
            with open_vault(lab, root) as v:
                if not v.has_tenant(tenant):
                    raise BadInputError(
                        f"tenant {tenant!r} was destroyed while the gate ran; nothing is released"
                    )
            bits = export_bits(items)
            spent = tenant_bits(lab.paths.audit, tenant)
            over = budget_finding(spent, bits, int(policy.contract["tenant_capacity_bits"]))
            if over is not None:
                report = replace(report, findings=(*report.findings, over))
            eps_spent, released_jobs = tenant_epsilon(lab.paths.audit, tenant)
            eps = export_epsilon(items, released_jobs)
            over = epsilon_finding(eps_spent, eps, float(policy.contract["tenant_epsilon"]))
            if over is not None:
                report = replace(report, findings=(*report.findings, over))
            digests = [a["source_sha256"] for a in report.artifacts]
            policy_sha = hashlib.sha256(labfs.read_bytes(lab.paths.policy)).hexdigest()
            attested = {
                it.release_rel: it.attested["job"]
                for it in items
                if it.attested is not None and it.out is not None
            }
            # the names of what the tenant handed in, the digests of its bytes (refused
            # ones too: destroy looks for a copy of any of them, vault.ops.recorded_digests)
            # and which detector blocked which file go in the export's manifest, in a
            # place destroy empties; the entry holds its salted digest (facelab.manifests)
            mname = "export-" + clock().astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
            mname += "-" + os.urandom(4).hex()
            msha = manifests.write(
                lab.paths.root,
                tenant,
                mname,
                "export",
                {
                    "artifacts": [dict(a) for a in report.artifacts],
                    "blocking": sorted({f"{f.detector}: {f.artifact}" for f in report.blocking()}),
                    "attested": attested,
                },
            )
            blocking: dict[str, int] = {}
            for f in report.blocking():
                k = f.detector if f.detector in DETECTORS else "other"
                blocking[k] = blocking.get(k, 0) + 1
            summary = {
                "manifest": mname,
                "manifest_sha256": msha,
                "artifacts": len(report.artifacts),
                # what the gate released is published: its digests may stay on the record
                "released_sha256": sorted({a["sha256"] for a in report.artifacts if a["sha256"]})[
                    :256
                ],
                "findings": {
                    s: sum(f.severity == s for f in report.findings)
                    for s in ("high", "medium", "low")
                },
                "blocking": blocking,
                "subjects matched": len({s for f in report.blocking() for s in f.subjects}),
                "policy_sha256": policy_sha,
                "capacity_bits": round(bits, 1),
                "tenant_capacity_bits_before": round(spent, 1),
                # differential privacy spent by this release (the epsilons of training
                # jobs none of the tenant's earlier releases took out) and before it
                "privacy_epsilon": eps,
                "tenant_epsilon_before": eps_spent,
                # the training jobs whose models this export takes out
                "attested": sorted(set(attested.values())),
            }
            decision = "refused" if report.refused else "released"
            if report.refused and override is not None:
                release.check_override(
                    policy.reviewers,
                    override.reviewer,
                    override.signature,
                    tenant,
                    digests,
                    override.reason,
                )
                unbuilt = [it.rel for it in items if it.out is None and not it.discarded]
                if unbuilt:
                    raise BadInputError(
                        f"override: {unbuilt[0]} has no rebuilt form (the contract refused it: "
                        "nothing but a rebuilt file leaves, even with an override)"
                    )
                decision = "overridden"
                summary["override"] = {"reviewer": override.reviewer, "reason": override.reason}
            action = {"released": "release", "refused": "refuse", "overridden": "override"}[
                decision
            ]

            def event(details: dict) -> Event:
                return Event(
                    f"export.{action}",
                    actor,
                    role="export reviewer" if override else "tenant",
                    tenant=tenant,
                    # the salted manifest's digest: a digest of the files' digests would
                    # be inverted by guessing a small file's bytes
                    object=f"sha256:{msha}",
                    decision=decision,
                    details=details,
                )

            out = None
            if decision != "refused":
                when = clock().astimezone(UTC)
                rid = release_id(when, report)
                rel = f"released/{tenant}/{rid}"
                seq = intents.begin(
                    log,
                    event(
                        {
                            "release": rel,
                            "capacity_bits": round(bits, 1),
                            "manifest": mname,
                            "manifest_sha256": msha,
                        }
                    ),
                )
                hook("after-intent")
                try:
                    out = _release(
                        lab, root, tenant, report, actor, decision, override, policy_sha, when
                    )
                except Exception as e:  # nothing was committed (_release removes its copy)
                    failed = event({"release": rel, "error": exception_class(type(e).__name__)})
                    intents.finish(log, seq, replace(failed, decision="aborted"))
                    raise
                hook("after-commit")
                intents.finish(log, seq, event({**summary, "release": rel}))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    if out is None:
        log.record(event(summary))
    return ExportOutcome(report, decision, out)


def check(
    files: list[tuple[Path, str]],
    ctx: ScanContext,
    importing,
    baselines: dict[str, Path],
    scratch: Path,
    *,
    seed: int | None = None,
    progress: Callable[[str], None] | None = None,
    bench_reports: set[str] | None = None,
    jobs: attestation.JobOutputs | None = None,
) -> tuple[ExportReport, list[contract.Item]]:
    """The gate's whole check of one export: contract, confined rebuild, behavioural
    tests, then the detectors on the rebuilt files. ``files`` are (file, release path).

    ``bench_reports``: SHA-256 of every report.json a benchmark job of the tenant wrote
    (:func:`bench_job_reports`); a report.json that is not one of them is refused. None
    (a scan without a lab) skips that check.

    ``jobs``: the outputs of the tenant's jobs (:func:`lab_job_outputs`). A model (ONNX,
    model.json) that a training job wrote is attested (``Item.attested``: charged its
    job's spec, not its values); one that no training job wrote is refused when the
    policy's ``models_require_attestation`` holds. None (a scan without a lab) attests
    nothing and refuses nothing for it; the rebuild, behavioural tests and detectors run
    on every model either way."""
    import time

    step = progress or (lambda _: None)
    step(f"rebuilding {len(files)} file(s) in the confinement")
    policy = ctx.policy
    t0 = time.perf_counter()
    items = contract.classify(files, tuple(policy.contract["kinds"]))
    bdir = scratch / "baselines"
    bdir.mkdir()
    local = {}
    for k, (name, p) in enumerate(sorted(baselines.items())):
        q = bdir / f"{k}.onnx"
        shutil.copyfile(p, q)
        if (p.parent / "model.json").is_file():  # its numbers are kept as they are
            shutil.copyfile(p.parent / "model.json", q.with_suffix(".json"))
        local[name] = q
    contract.rebuild(
        items,
        policy,
        importing,
        scratch,
        local,
        int.from_bytes(os.urandom(8), "big") if seed is None else seed,
    )
    t_rebuild = time.perf_counter() - t0
    findings: list[Finding] = []
    if jobs is not None:
        findings.extend(_attest(items, jobs, ctx.tenant, policy))
    reviewed = set(policy.contract.get("reviewed_kinds", ()))
    for it in items:
        if it.reason:
            findings.append(Finding("contract", "high", it.rel, "whole file", it.reason))
        elif (
            it.kind == "bench_report"
            and not it.discarded
            and bench_reports is not None
            and file_sha256(it.src) not in bench_reports
        ):
            findings.append(
                Finding(
                    "contract",
                    "high",
                    it.rel,
                    "whole file",
                    "a benchmark report leaves only as a facelab benchmark job of this tenant "
                    "wrote it (no bench job's job.finish lists this report.json's digest): a "
                    "report written or edited by other code is a channel (free numbers in its "
                    "DET and histogram)",
                )
            )
        elif it.kind in reviewed:
            findings.append(
                Finding(
                    "contract",
                    "high",
                    it.rel,
                    "whole file",
                    f"kind {it.kind} leaves only after a reviewer's output check "
                    "(export.contract.reviewed_kinds): free text, tables and bare tensors "
                    "are channels no detector closes; a reviewer may release the gate's "
                    "rebuild with a signed override",
                )
            )
    built = [it for it in items if it.out is not None]
    # the detectors' view of the rebuilt files
    views: list[tuple[Path, str]] = []
    for it in built:
        if it.kind == "bench_report":
            parent = str(Path(it.release_rel).parent)
            for f in sorted(it.out.iterdir()):
                if f.name == "report.html":
                    # the gate's own rendering of report.json, which is scanned itself:
                    # its markup beside values only makes false identifier contexts
                    continue
                views.append((f, f.name if parent == "." else f"{parent}/{f.name}"))
        elif it.kind == "weights":
            scan_view = Path(str(it.out) + ".scan.npz")
            views.append((scan_view, f"{it.release_rel} (tensors)"))
        else:
            views.append((it.out, it.release_rel))
    ctx.baseline = _baselines_for(built, baselines, policy)
    t1 = time.perf_counter()
    step("behaviour tests (models run on vault photos, confined)")
    behaviour_findings(built, ctx, baselines, scratch, findings)
    t_behaviour = time.perf_counter() - t1
    step("detectors (identifiers, faces, templates, payloads, memorisation)")
    report = scan(
        [p for p, _ in views],
        ctx,
        names={p: n for p, n in views},
        pre_findings=findings,
    )
    listed = []
    for it in built:
        if it.kind == "bench_report":
            given, named = Path(it.rel).parent, Path(it.release_rel).parent
            for f in sorted(it.out.iterdir()):
                rel_in = f.name if str(given) == "." else f"{given.as_posix()}/{f.name}"
                rel = f.name if str(named) == "." else f"{named.as_posix()}/{f.name}"
                src = next((x for x in items if x.rel == rel_in), None)
                listed.append(_listing(f, rel, it, src.src if src else None))
        else:
            listed.append(_listing(it.out, it.release_rel, it, it.src))
    for it in items:
        if it.out is None and not it.discarded:
            listed.append(
                {
                    "name": Path(it.rel).name,
                    "path": it.rel,
                    "kind": it.kind or "none",
                    "bytes": 0,
                    "sha256": "",
                    "source_sha256": file_sha256(it.src),
                    "file": "",
                }
            )
    for it in items:
        if it.discarded and not any(a["path"] == it.rel for a in listed):
            listed.append(
                {
                    "name": Path(it.rel).name,
                    "path": it.rel,
                    "kind": "replaced",
                    "bytes": 0,
                    "sha256": "",
                    "source_sha256": file_sha256(it.src),
                    "file": "",
                }
            )
    seconds = dict(report.seconds)
    seconds["rebuild"] = round(t_rebuild, 3)
    seconds["behaviour"] = round(t_behaviour, 3)
    labels: dict[str, str] = {}
    relabelled = tuple(
        replace(f, subjects=tuple(labels.setdefault(s, f"S{len(labels) + 1}") for s in f.subjects))
        for f in report.findings
    )
    rebuilt_notes = [f"{it.release_rel}: {_facts_text(it)}" for it in built if _facts_text(it)]
    attested = any(it.attested is not None for it in built)
    rebuilt_notes.append(
        f"capacity: the rebuilt files can carry at most {export_bits(items):.0f} bits beyond "
        "what the tenant imported (charged to its export.contract.tenant_capacity_bits)"
        if not attested
        else f"capacity: {export_bits(items):.0f} bits charged to the tenant's "
        "export.contract.tenant_capacity_bits (the bounds of files the tenant made, and "
        "for each attested model what the tenant chose in its training job)"
    )
    return (
        ExportReport(
            report.tenant,
            tuple(listed),
            relabelled,
            tuple(rebuilt_notes) + report.notes,
            report.refuse_at,
            seconds,
        ),
        items,
    )


MODEL_KINDS = ("onnx_model", "model_json")


def _attest(
    items: list[contract.Item], jobs: attestation.JobOutputs, tenant: str, policy
) -> list[Finding]:
    """Mark each model item a training job of ``tenant`` wrote (by its source bytes'
    SHA-256) as attested, with what it is charged; the refusal of every other model when
    the policy requires attestation. Run after the rebuild: the confined reader's facts
    never say what is attested."""
    required = bool(policy.contract.get("models_require_attestation", True))
    out = []
    models = [it for it in items if it.kind in MODEL_KINDS and not it.discarded]
    digests = {id(it): file_sha256(it.src) for it in models}
    # a file several jobs wrote (the same model.json for one spec) goes to a job this
    # export takes anyway: each job is charged its epsilon, and a deterministic file must
    # not bring in a second job (session 12: it charged 16 instead of 8)
    needed = {
        jobs.candidates[h][0].job for h in digests.values() if len(jobs.candidates.get(h, [])) == 1
    }
    for it in items:
        it.facts.pop("attested", None)
        if it.kind not in MODEL_KINDS or it.discarded:
            continue
        h = digests[id(it)]
        choice = [a for a in jobs.candidates.get(h, []) if a.job in needed]
        att = choice[0] if choice else jobs.models.get(h)
        if att is not None:
            it.attested = {
                "job": att.job,
                "trainer": att.trainer,
                "spec_bytes": att.spec_bytes,
                "train_jobs": jobs.train_jobs,
                "charged_bits": round(attestation.charge_bits(att, jobs.train_jobs), 1),
                "epsilon": att.epsilon,
                "delta": att.delta,
            }
            it.facts["attested"] = dict(it.attested)
        elif required:
            out.append(
                Finding(
                    "attestation",
                    "high",
                    it.rel,
                    "whole file",
                    f"{it.rel}: not the output of a training job of tenant {tenant} recorded "
                    "in the audit log (by the SHA-256 of its bytes): a model leaves only as "
                    "a registered trainer wrote it (export.contract.models_require_attestation)"
                    "; a reviewer may release the gate's rebuild with a signed override, "
                    "charged in full",
                )
            )
    return out


def export_bits(items: list[contract.Item]) -> float:
    """The capacity bound of one export: the sum of its rebuilt files' bounds (the rebuild's
    ``capacity_bits``; a benchmark report a benchmark job wrote, and a file that is not
    released, count 0), where an attested model counts its training job's charge instead
    (once per job, for its ONNX and model.json together)."""
    total = 0.0
    jobs: dict[str, float] = {}
    for it in items:
        if it.out is None or it.discarded or it.kind == "bench_report":
            continue
        if it.attested is not None:
            jobs[it.attested["job"]] = float(it.attested["charged_bits"])
            continue
        v = it.facts.get("capacity_bits", 0.0)
        total += float(v) if isinstance(v, int | float) and not isinstance(v, bool) else 0.0
    return total + sum(jobs.values())


def tenant_bits(audit_dir: Path, tenant: str) -> float:
    """Bits the tenant's earlier releases were charged: the ``capacity_bits`` of every
    ``export.release`` and ``export.override`` outcome of ``tenant`` that released
    (reconciled ones carry their intent's). Releases recorded before the budget existed
    carry none and count 0."""
    from facelab.audit.read import entries

    total = 0.0
    for e in entries(audit_dir, b'"export.'):
        if (
            e.get("tenant") != tenant
            or e.get("action") not in ("export.release", "export.override")
            or e.get("decision") not in ("released", "overridden")
            or not isinstance(e.get("details"), dict)
        ):
            continue
        v = e["details"].get("capacity_bits", 0)
        if isinstance(v, int | float) and not isinstance(v, bool) and v > 0:
            total += float(v)
    return total


def export_epsilon(items: list[contract.Item], released_jobs: set[str]) -> float:
    """The privacy loss one export adds (per subject, basic composition): the epsilon of
    each training job whose attested output it releases, once per job, and 0 for a job
    an earlier release of the tenant already took out (the same output again tells
    nothing new)."""
    jobs: dict[str, float] = {}
    for it in items:
        if it.out is None or it.discarded or it.attested is None:
            continue
        if it.attested["job"] not in released_jobs:
            jobs[it.attested["job"]] = float(it.attested.get("epsilon", 0.0))
    return sum(jobs.values())


def tenant_epsilon(audit_dir: Path, tenant: str) -> tuple[float, set[str]]:
    """The privacy loss the tenant's earlier releases spent (the sum of their recorded
    ``privacy_epsilon``) and the training jobs whose outputs they took out (their
    ``attested`` maps), from every releasing ``export.release``/``export.override``."""
    from facelab.audit.read import entries

    total, jobs = 0.0, set()
    for e in entries(audit_dir, b'"export.'):
        d = e.get("details")
        if (
            e.get("tenant") != tenant
            or e.get("action") not in ("export.release", "export.override")
            or e.get("decision") not in ("released", "overridden")
            or not isinstance(d, dict)
        ):
            continue
        v = d.get("privacy_epsilon", 0)
        if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) and v > 0:
            total += float(v)
        att = d.get("attested")
        if isinstance(att, list):
            jobs.update(str(j) for j in att)
        elif isinstance(att, dict):  # entries written before the manifests
            jobs.update(str(j) for j in att.values())
    return total, jobs


def epsilon_finding(spent: float, eps: float, budget: float) -> Finding | None:
    """The refusal when the tenant's earlier releases (``spent``) and this export
    (``eps``) together spend more differential privacy than ``budget``; None when they
    fit (or when this export spends none)."""
    if eps <= 0 or spent + eps <= budget:
        return None
    return Finding(
        "privacy",
        "high",
        "whole export",
        "all files",
        f"the training jobs this export takes out ran at epsilon {eps:g} in all; with the "
        f"{spent:g} of the tenant's earlier releases that is over its privacy budget of "
        f"{budget:g} (export.contract.tenant_epsilon): every released training output "
        "tells a little about each subject, and those amounts add up",
    )


def budget_finding(spent: float, bits: float, budget: int) -> Finding | None:
    """The refusal when a tenant's earlier releases (``spent`` bits) and this export
    (``bits``) together exceed ``budget``; None when they fit."""
    if spent + bits <= budget:
        return None
    return Finding(
        "capacity",
        "high",
        "whole export",
        "all files",
        f"this export can carry up to {bits:.0f} bits beyond the imported models; with the "
        f"{spent:.0f} bits of the tenant's earlier releases that is over its budget of "
        f"{budget} bits (export.contract.tenant_capacity_bits): what a tenant can take out "
        "through values it chose is bounded across all its exports",
    )


def _baselines_for(built: list[contract.Item], baselines: dict[str, Path], policy):
    """For the provenance detector: the imported model each rebuilt ONNX descends from
    (by the rebuild's facts), parsed once."""
    from facelab.gates.exporting import provenance

    parent = {it.release_rel: it.facts.get("descends_from") for it in built}
    cache: dict[str, provenance.Baseline] = {}

    def find(art):
        name = parent.get(art.name)
        if not name or name not in baselines:
            return None
        if name not in cache:
            cache[name] = provenance.load_baseline(name, baselines[name], policy)
        return cache[name]

    return find


def _facts_text(it: contract.Item) -> str:
    text = _rebuild_text(it)
    if it.attested is not None:
        a = it.attested
        text = (text + "; " if text else "") + (
            f"attested: written by training job {a['job']} ({a['trainer']}); charged "
            f"{a['charged_bits']:.0f} bits for what the tenant chose (the job's spec, "
            f"{a['spec_bytes']} bytes, and which of its {a['train_jobs']} training jobs), "
            "not the values' bound"
        )
    return text


def _rebuild_text(it: contract.Item) -> str:
    f = it.facts
    if it.kind in ("onnx_model", "weights") and "tensors" in f:
        parts = [
            f"rebuilt ({f.get('format', 'onnx')}"
            + (f", descends from {f['descends_from']}" if f.get("descends_from") else "")
            + ")",
            f"{f['tensors'] - f['n_rebuilt']} of {f['tensors']} tensors unchanged since "
            f"import, {f['n_rebuilt']} re-quantised to {f['mantissa_bits']} mantissa bits "
            f"with dither",
            f"{f['values_changed']} values changed; the file can carry at most "
            f"{f['capacity_bits']:.0f} bits ({f['capacity_bits'] / 8192:.1f} KiB; an upper "
            "bound on the changed values, exponents included"
            + (f", and on {f['new_nodes']} new or changed node(s)" if f.get("new_nodes") else "")
            + ")",
        ]
        dropped = {k: v for k, v in f.get("dropped", {}).items() if v}
        if dropped:
            parts.append("dropped " + ", ".join(f"{v} {k}" for k, v in dropped.items()))
        return "; ".join(parts)
    if it.kind == "model_json" and (f.get("dropped_keys") or f.get("renamed")):
        parts = ["rebuilt"]
        if f.get("renamed"):
            spec = f.get("spec", {})
            parts.append(
                f"named {spec.get('name')} {spec.get('version')} (an imported model's name "
                "and version: given names are free text)"
            )
        if f.get("dropped_keys"):
            parts.append(f"keys dropped: {', '.join(f['dropped_keys'])}")
        return "; ".join(parts)
    if it.kind == "bench_report":
        return "rebuilt from report.json's values; html and plots drawn again by facelab"
    return ""


def _listing(f: Path, rel: str, it: contract.Item, src: Path | None) -> dict:
    data = f.read_bytes()
    return {
        "name": Path(rel).name,
        "path": rel,
        "kind": it.kind,
        "bytes": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
        "source_sha256": file_sha256(src) if src is not None else "",
        "file": str(f),
    }


def behaviour_findings(
    built: list[contract.Item],
    ctx: ScanContext,
    baselines: dict[str, Path],
    scratch: Path,
    findings: list[Finding],
) -> None:
    """Run every rebuilt ONNX model on the vault's photos (confined); refuse what cannot
    run or identifies; give the detectors the model's own outputs."""
    from facelab.gates.exporting import behaviour
    from facelab.gates.exporting.vault_index import SubjectTemplates, impostor_threshold

    pol = {**ctx.policy.behaviour, **ctx.policy.contract}
    specs = {
        str(Path(it.rel).parent): it.facts.get("spec")
        for it in built
        if it.kind == "model_json" and it.facts.get("spec")
    }
    models = []
    for it in built:
        if it.kind != "onnx_model":
            continue
        spec = specs.get(str(Path(it.rel).parent))
        shapes = it.facts.get("input_shapes") or [[]]
        if spec is None:
            spec = behaviour.spec_from_shape(shapes[0])
        if spec is None:
            findings.append(
                Finding(
                    behaviour.NAME,
                    "high",
                    it.release_rel,
                    "graph input",
                    f"input of shape {shapes[0]} is not an image the gate can feed; a "
                    "model the gate cannot run is refused",
                )
            )
            continue
        original = it.src if it.facts.get("n_rebuilt") else None
        models.append((it.release_rel, it.out, original, spec))
    if not models:
        return
    rows, runs = behaviour.run_models(models, ctx.index, pol, scratch)
    tensors = _export_tensors(built)
    for run in runs:
        if run.error:
            findings.append(
                Finding(
                    behaviour.NAME,
                    "high",
                    run.name,
                    "model run",
                    f"the gate cannot run this model ({run.error}); refused",
                )
            )
            continue
        reasons, notes = behaviour.identification(run, rows, ctx.index, tensors, pol)
        ctx.notes.extend(notes)
        for r in reasons:
            findings.append(Finding(behaviour.NAME, "high", run.name, "model outputs", r))
        reason, note = behaviour.accuracy_cost(run, rows, ctx.index, pol)
        if note:
            ctx.notes.append(note)
        if reason:
            findings.append(Finding(behaviour.NAME, "high", run.name, "model outputs", reason))
        y = run.outputs[0]
        yn = y / np.maximum(np.linalg.norm(y, axis=1, keepdims=True), 1e-12)
        mname = f"{run.name} (its own outputs)"
        ctx.index.templates[mname] = SubjectTemplates(
            rows.astype(np.int64),
            yn.astype(np.float32),
            impostor_threshold(
                yn, ctx.index.subjects[rows], ctx.policy.templates["fmr"] / max(1, len(rows))
            ),
        )
        ctx.matchers[mname] = _Precomputed(y.shape[1])
        ctx.own_models[run.name] = mname


class _Precomputed:
    """A matcher whose templates the behavioural run already computed (confined)."""

    def __init__(self, dim: int):
        self.dim = dim

    def extract(self, images, landmarks):
        raise RuntimeError("templates of this model come only from its confined run")


def _export_tensors(built: list[contract.Item]) -> list[tuple[str, np.ndarray]]:
    """Every float tensor of the rebuilt export (candidate galleries)."""
    import onnx
    from onnx import numpy_helper

    out = []
    for it in built:
        try:
            if it.kind == "onnx_model":
                m = onnx.load_from_string(it.out.read_bytes())
                for t in m.graph.initializer:
                    a = numpy_helper.to_array(t)
                    if a.dtype.kind == "f" and a.ndim >= 1:
                        out.append((f"{it.release_rel}: {t.name}", a))
            elif it.kind == "weights":
                z = np.load(str(it.out) + ".scan.npz", allow_pickle=False)
                for k in z.files:
                    if z[k].dtype.kind in "fiu":
                        out.append((f"{it.release_rel}: {k}", z[k]))
        except Exception:  # a rebuilt file the gate cannot read back is refused elsewhere
            continue
    return out


def layout(paths: Sequence[Path]) -> list[tuple[Path, str]]:
    """(file, its path in the release): a file given keeps its name, a directory given
    keeps its name and inner paths. Two files at one place is an error, found before
    any scanning."""
    out, seen = [], set()
    for p in map(Path, paths):
        if p.is_dir() and not p.is_symlink():
            pairs = [(f, f"{p.name}/{f.relative_to(p).as_posix()}") for f in expand([p])]
        else:
            pairs = [(p, p.name)]
        for f, rel in pairs:
            if rel in seen or rel == "manifest.json":
                raise BadInputError(f"{f}: a second artifact named {rel!r}; rename one")
            seen.add(rel)
            out.append((f, rel))
    return out


def _release(
    lab: Lab,
    root: RootKey,
    tenant: str,
    report: ExportReport,
    actor: str,
    decision: str,
    override: Override | None,
    policy_sha: str,
    when: datetime,
) -> Path:
    """Write the rebuilt files (never the tenant's) and the signed manifest into a
    temporary directory, then commit it with one rename to ``released/<tenant>/<id>``."""
    released = [a for a in report.artifacts if a["file"]]
    manifest = {
        "format": release.FORMAT,
        "lab": lab.lab_id,
        "tenant": tenant,
        "released": when.isoformat(timespec="seconds"),
        "actor": actor,
        "policy_sha256": policy_sha,
        "decision": decision,
        "artifacts": [{k: v for k, v in a.items() if k != "file"} for a in released],
        "findings": [f.to_json() for f in report.findings],
        "notes": list(report.notes),
        "reviewer": None
        if override is None
        else {
            "name": override.reviewer,
            "reason": override.reason,
            "signature": override.signature,
        },
    }
    doc = release.sign_manifest(manifest, load_signing_key(lab, root))
    base = released_dir(lab, tenant)
    base.mkdir(parents=True, exist_ok=True)
    rid = release_id(when, report)
    tmp = Path(tempfile.mkdtemp(prefix=".release-", dir=base))
    try:
        for a in released:
            data = Path(a["file"]).read_bytes()
            if hashlib.sha256(data).hexdigest() != a["sha256"]:
                raise BadInputError(f"{a['path']}: changed after it was scanned; nothing released")
            (tmp / a["path"]).parent.mkdir(parents=True, exist_ok=True)
            (tmp / a["path"]).write_bytes(data)
        (tmp / "manifest.json").write_text(release.dumps(doc))
        target = base / rid
        os.rename(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target
