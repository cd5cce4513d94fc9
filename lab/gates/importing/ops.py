"""The import gate as the lab runs it: inspect, register on success, record either way."""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Callable
from pathlib import Path

from facelab.audit import AuditLog, Event, intents
from facelab.audit.events import escape_text
from facelab.gates.importing.gate import (
    ImportReport,
    check_name,
    inspect,
    list_models,
    register,
)
from facelab.labdir import Lab
from facelab.vault.store import check_tenant


def models_dir(lab: Lab) -> Path:
    return lab.paths.root / "models"


def import_model(
    lab: Lab,
    tenant: str,
    package: Path | str,
    actor: str,
    log: AuditLog,
    hook=lambda point: None,
    progress: Callable[[str], None] | None = None,
) -> ImportReport:
    """Run the gate on ``package`` and register it when every check passed.

    Every outcome is audited (``model.import``): registered, refused (exit 3), and an
    error (bad input, exit 2, or a failure of the gate itself), and the gate's
    temporary copies are removed on every path. Registering is a state change: an
    intent (``model.import.intent``) is recorded before it and the outcome after; a crash
    in between is finished by :func:`reconcile_intent` when the lab is next opened.
    ``hook(point)`` is called at "after-intent" and "after-commit" (crash tests).

    Raises
    ------
    BadInputError
        A bad tenant name, a missing package, a file that is no archive (audited first).
    """
    with contextlib.ExitStack() as state:  # the tenant's state lock, intent to outcome
        return _import_model(lab, tenant, package, actor, log, hook, progress, state)


def _import_model(lab, tenant, package, actor, log, hook, progress, state) -> ImportReport:
    ctx = None
    seq = None
    try:
        check_tenant(tenant)
        report, ctx = inspect(package, tenant, lab.policy.importing, progress=progress)
        report = check_name(report, ctx, models_dir(lab))
        if report.accepted:
            state.enter_context(intents.held(lab.paths.audit, tenant, log.lock_wait))
            seq = intents.begin(
                log,
                Event(
                    "model.import",
                    actor,
                    role="tenant",
                    tenant=tenant,
                    object=report.digest,
                    details={"model": report.model},
                ),
            )
            hook("after-intent")
            register(report, ctx, models_dir(lab))
            hook("after-commit")
    except Exception as e:
        log.record(
            Event(
                "model.import",
                actor,
                role="tenant",
                tenant=tenant if isinstance(tenant, str) else "",
                object=str(package),
                decision="error",
                details={
                    "package": escape_text(str(package)),
                    "error": escape_text(f"{type(e).__name__}: {e}"),
                    **({"intent": seq} if seq is not None else {}),
                },
            )
        )
        raise
    finally:
        if ctx is not None:
            ctx.package.cleanup()
    outcome = Event(
        "model.import",
        actor,
        role="tenant",
        tenant=tenant,
        object=report.digest,
        decision="registered" if report.accepted else "refused",
        details={
            "model": report.model,
            "package": escape_text(str(package)),
            "approvers": ctx.approvers,
            "failed": {c.name: [escape_text(x) for x in c.problems[:32]] for c in report.failed()},
        },
    )
    if seq is None:
        log.record(outcome)
    else:
        intents.finish(log, seq, outcome)
    return report


def reconcile_intent(lab: Lab, log: AuditLog, actor: str, intent: dict) -> str:
    """Finish a ``model.import`` intent that has no outcome.

    The registration was committed when ``models/registry.json`` lists the intent's
    digest for its tenant (the index is replaced atomically, last): the outcome is
    ``registered``. Otherwise the half-copied temporary directories are removed and the
    outcome is ``aborted`` (a content-addressed copy already renamed into place stays: it
    is read-only and unlisted, and a later import of the same package reuses it).
    Returns the outcome.
    """
    tenant, digest = intent["tenant"], intent.get("object", "")
    listed = any(
        e.get("digest") == digest and e.get("tenant") == tenant
        for e in list_models(models_dir(lab))
    )
    if not listed:
        for d in models_dir(lab).glob(f".import-{tenant}.*"):
            shutil.rmtree(d, ignore_errors=True)
    outcome = "registered" if listed else "aborted"
    intents.finish(
        log,
        intent["seq"],
        Event(
            "model.import",
            actor,
            role="system",
            tenant=tenant,
            object=digest,
            decision=outcome,
            details={**intent.get("details", {}), "reconciled": True},
        ),
    )
    return outcome
