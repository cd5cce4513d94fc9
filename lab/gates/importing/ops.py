"""The import gate as the lab runs it: inspect, register on success, record either way."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from facelab.audit import AuditLog, Event
from facelab.audit.events import escape_text
from facelab.gates.importing.gate import ImportReport, inspect, register
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
    progress: Callable[[str], None] | None = None,
) -> ImportReport:
    """Run the gate on ``package`` and register it when every check passed.

    Every outcome is audited (``model.import``): registered, refused (exit 3), and an
    error (bad input, exit 2, or a failure of the gate itself), and the gate's
    temporary copies are removed on every path.

    Raises
    ------
    BadInputError
        A bad tenant name, a missing package, a file that is no archive (audited first).
    """
    ctx = None
    try:
        check_tenant(tenant)
        report, ctx = inspect(package, tenant, lab.policy.importing, progress=progress)
        if report.accepted:
            register(report, ctx, models_dir(lab))
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
                },
            )
        )
        raise
    finally:
        if ctx is not None:
            ctx.package.cleanup()
    log.record(
        Event(
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
                "failed": {
                    c.name: [escape_text(x) for x in c.problems[:32]] for c in report.failed()
                },
            },
        )
    )
    return report
