"""The export gate as the lab runs it: index the tenant's vault, scan, then release
with a signed manifest or refuse; a reviewer may override with a signed reason. Every
decision is recorded in the audit log.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from lab.audit import AuditLog, Event
from lab.errors import BadInputError
from lab.gates.exporting import provenance, release, vault_index
from lab.gates.exporting._types import Artifact, ScanContext
from lab.gates.exporting.artifact import Unscannable
from lab.gates.exporting.gate import ExportReport, expand, scan
from lab.labdir import Lab, load_signing_key
from lab.vault.keystore import RootKey
from lab.vault.ops import open_vault
from lab.vault.store import check_tenant


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


def released_dir(lab: Lab, tenant: str) -> Path:
    return lab.paths.root / "released" / tenant


def _reference_matchers(lab: Lab, tenant: str, refs: Sequence[str], notes: list[str]) -> dict:
    from lab.bench._matcher import Matcher
    from lab.bench.lab_run import registered_model

    out = {}
    for ref in refs:
        try:
            entry, path = registered_model(lab, tenant, ref)
            out[f"{entry['model']} (reference)"] = Matcher(path)
        except BadInputError as e:
            notes.append(
                f"reference model {ref}: not available ({e}); templates under it were not checked"
            )
    return out


def baseline_finder(
    lab: Lab, tenant: str, from_model: str | None, policy
) -> Callable[[Artifact], provenance.Baseline | None]:
    """For an ONNX artifact, the registered model it descends from: ``from_model``, or
    the tenant's model that holds at least half of its tensors at the same place and
    shape. Called by the provenance detector on the artifact the gate already parsed;
    each registered model is parsed once per scan."""
    from lab.bench.lab_run import registered_model
    from lab.gates.importing import list_models
    from lab.gates.importing.ops import models_dir

    if from_model:
        entry, path = registered_model(lab, tenant, from_model)
        fixed = provenance.load_baseline(entry["model"], path / "model.onnx", policy)
        return lambda art: fixed
    cache: dict[str, provenance.Baseline | None] = {}

    def find(art: Artifact) -> provenance.Baseline | None:
        best, best_overlap = None, 0.5
        for m in list_models(models_dir(lab)):
            if m["tenant"] != tenant:
                continue
            if m["path"] not in cache:
                try:
                    cache[m["path"]] = provenance.load_baseline(
                        m["model"], models_dir(lab) / m["path"] / "model.onnx", policy
                    )
                except (Unscannable, OSError):
                    cache[m["path"]] = None
            base = cache[m["path"]]
            overlap = base.overlap(art) if base is not None else 0.0
            if overlap >= best_overlap:
                best, best_overlap = base, overlap
        return best

    return find


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
) -> ExportOutcome:
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
    layout(paths)  # a clash of names is a usage error, before any work
    refs = (
        reference_models
        if reference_models is not None
        else policy.templates.get("reference_models", [])
    )
    notes: list[str] = []
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
            baseline_finder(lab, tenant, from_model, policy),
            notes,
        )
        report = scan(
            paths,
            ctx,
            allowed_ops=lab.policy.importing.allowed_ops,
            allowed_domains=lab.policy.importing.allowed_domains,
        )
    digests = [a["sha256"] for a in report.artifacts]
    policy_sha = hashlib.sha256(lab.paths.policy.read_bytes()).hexdigest()
    summary = {
        "artifacts": [f"{a['name']} sha256:{a['sha256']}" for a in report.artifacts],
        "findings": {
            s: sum(f.severity == s for f in report.findings) for s in ("high", "medium", "low")
        },
        "blocking": sorted({f"{f.detector}: {f.artifact}" for f in report.blocking()}),
        "subjects": sorted({s for f in report.blocking() for s in f.subjects})[:200],
        "policy_sha256": policy_sha,
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
        decision = "overridden"
        summary["override"] = {"reviewer": override.reviewer, "reason": override.reason}
    out = None
    if decision != "refused":
        out = _release(
            lab, root, tenant, paths, report, actor, decision, override, policy_sha, clock
        )
        summary["release"] = str(out.relative_to(lab.paths.root))
    action = {"released": "release", "refused": "refuse", "overridden": "override"}[decision]
    log.record(
        Event(
            f"export.{action}",
            actor,
            role="export reviewer" if override else "tenant",
            tenant=tenant,
            object="sha256:" + hashlib.sha256("".join(sorted(digests)).encode()).hexdigest(),
            decision=decision,
            details=summary,
        )
    )
    return ExportOutcome(report, decision, out)


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
    paths: list[Path],
    report: ExportReport,
    actor: str,
    decision: str,
    override: Override | None,
    policy_sha: str,
    clock,
) -> Path:
    files = layout(paths)
    when = clock().astimezone(UTC)
    manifest = {
        "format": release.FORMAT,
        "lab": lab.lab_id,
        "tenant": tenant,
        "released": when.isoformat(timespec="seconds"),
        "actor": actor,
        "policy_sha256": policy_sha,
        "decision": decision,
        "artifacts": [
            {**a, "path": rel} for a, (_, rel) in zip(report.artifacts, files, strict=True)
        ],
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
    rid = (
        when.strftime("%Y%m%dT%H%M%SZ")
        + "-"
        + hashlib.sha256("".join(a["sha256"] for a in report.artifacts).encode()).hexdigest()[:12]
    )
    tmp = Path(tempfile.mkdtemp(prefix=".release-", dir=base))
    try:
        for (f, rel), a in zip(files, report.artifacts, strict=True):
            data = f.read_bytes()
            if hashlib.sha256(data).hexdigest() != a["sha256"]:
                raise BadInputError(f"{f}: changed while it was being scanned; nothing released")
            (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
            (tmp / rel).write_bytes(data)
        (tmp / "manifest.json").write_text(release.dumps(doc))
        target = base / rid
        os.rename(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target
