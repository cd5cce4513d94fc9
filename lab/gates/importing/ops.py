"""The import gate as the lab runs it: inspect, register on success, record either way."""

from __future__ import annotations

from pathlib import Path

from lab.audit import AuditLog, Event
from lab.gates.importing.gate import ImportReport, inspect, register
from lab.labdir import Lab
from lab.vault.store import check_tenant


def models_dir(lab: Lab) -> Path:
    return lab.paths.root / "models"


def import_model(
    lab: Lab, tenant: str, package: Path | str, actor: str, log: AuditLog
) -> ImportReport:
    check_tenant(tenant)
    report, ctx = inspect(package, tenant, lab.policy.importing)
    try:
        if report.accepted:
            register(report, ctx, models_dir(lab))
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
                    "package": str(package),
                    "approvers": ctx.approvers,
                    "failed": {c.name: list(c.problems) for c in report.failed()},
                },
            )
        )
    finally:
        ctx.package.cleanup()
    return report
