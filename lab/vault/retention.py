"""Retention and the public register of processors.

A tenant's destruction is due ``retention_days`` after its first ingest, or on its
``destroy_by`` date, whichever is sooner (``enclave_policy.TenantPolicy.due``).
``run`` destroys every tenant past due through the vault's own destroy (certificate and
audit entry each). ``register`` lists every processor, active or destroyed, with its
purposes, data categories, retention and dates: the transparency the documented lab's
ministry failed to publish for two years.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, date, datetime
from pathlib import Path

from facelab.audit import AuditLog, Event, intents
from facelab.errors import BadInputError, FacelabError
from facelab.labdir import Lab
from facelab.vault import certificate, ops
from facelab.vault.keystore import RootKey


def _governance(lab: Lab):
    gov = lab.policy.governance
    if gov is None:
        raise BadInputError(
            f"{lab.paths.policy}: no [tenants]/[tenant_defaults] sections; "
            "retention cannot be computed"
        )
    return gov


def schedule(lab: Lab, root: RootKey) -> list[dict]:
    """Every tenant in the vault with its first ingest and destruction due date."""
    gov = _governance(lab)
    with ops.open_vault(lab, root) as v:
        tenants = v.tenants()
    out = []
    for t in tenants:
        created = datetime.fromisoformat(t["created"]).date()
        tp = gov.tenant(t["tenant"])
        out.append(
            {
                "tenant": t["tenant"],
                "created": created.isoformat(),
                "due": tp.due(created).isoformat(),
                "retention_days": tp.retention_days,
                "records": t["records"],
                "subjects": t["subjects"],
            }
        )
    return out


def run(
    lab: Lab,
    root: RootKey,
    actor: str,
    log: AuditLog,
    *,
    today: date | None = None,
    dry_run: bool = False,
    progress: Callable[[str], None] | None = None,
) -> list[dict]:
    """Destroy every tenant whose due date is today or past; return what was due.
    ``progress`` is called with each tenant's destruction as it begins."""
    today = today or datetime.now(UTC).date()
    due = [s for s in schedule(lab, root) if date.fromisoformat(s["due"]) <= today]
    details = {"today": today.isoformat(), "due": [s["tenant"] for s in due][:256]}
    if dry_run:
        for s in due:
            s["certificate"] = None
        log.record(Event("retention.run", actor, decision="dry-run", details=details))
        return due
    # the lab's state lock, intent to outcome
    with intents.held(lab.paths.audit, "", log.lock_wait):
        seq = intents.begin(log, Event("retention.run", actor, details=details))
        for s in due:  # each destroy has its own intent, outcome and tenant lock
            if progress:
                progress(f"destroying {s['tenant']} (due {s['due']})")
            cert = ops.destroy(lab, root, s["tenant"], actor, log)
            s["certificate"] = cert.name
        intents.finish(log, seq, Event("retention.run", actor, decision="ok", details=details))
    return due


def register(lab: Lab, root: RootKey) -> list[dict]:
    """The public register: one row per processor (listed, active or destroyed)."""
    gov = _governance(lab)
    active = {s["tenant"]: s for s in schedule(lab, root)}
    destroyed: dict[str, str] = {}
    missing_cert: set[str] = set()
    for cert in sorted((lab.paths.root / "certificates").glob("destroy-*.json")):
        try:
            c = certificate.read(cert)["certificate"]  # bounded, strict, never recursing
            destroyed[c["media_information"]["tenant"]] = c["performer"]["date"][:10]
        except (FacelabError, OSError, ValueError, KeyError, TypeError):
            continue
    # the signed log, not the certificates directory, says who was destroyed: a deleted
    # certificate must not make a processor vanish from the register (red team 2, a09)
    from facelab.audit.read import entries as log_entries

    for e in log_entries(lab.paths.audit, b'"vault.destroy"'):
        if e.get("action") == "vault.destroy" and e.get("decision") in ("destroyed", "failed"):
            t = str(e.get("tenant", ""))
            cert = str((e.get("details") or {}).get("certificate", ""))
            if t and t not in destroyed:
                destroyed[t] = str(e.get("time", ""))[:10]
            if cert and not (lab.paths.root / "certificates" / cert).is_file():
                missing_cert.add(t)
    names = sorted(set(active) | set(destroyed) | set(gov.tenants))

    held: dict[str, list[str]] = {}  # what the vault holds, whatever was declared
    with ops.open_vault(lab, root) as v:
        for name in active:
            held[name] = certificate.data_categories(v.inventory(name)["columns"])
    from facelab.accountability.register import accountability  # issue 18
    from facelab.audit.show import filter_entries

    record = accountability(filter_entries(lab.paths.audit), lab.paths.root / "certificates")
    rows = []
    for name in names:
        tp = gov.tenant(name)
        a = active.get(name)
        rows.append(
            {
                "processor": tp.processor,
                "tenant": name,
                "purposes": list(tp.purposes),
                "data_categories": list(tp.data_categories),
                # declared or not: the register states what is held (newcomer report M4)
                "data_categories_held": held.get(name, []),
                "retention": f"{tp.retention_days} days after first ingest"
                + (f", at the latest {tp.destroy_by.isoformat()}" if tp.destroy_by else ""),
                "status": "active"
                if a
                else (
                    "destroyed (certificate missing from the lab)"
                    if name in missing_cert
                    else "destroyed"
                )
                if name in destroyed
                else "listed",
                "since": a["created"] if a else None,
                "destruction_due": a["due"] if a else None,
                "destroyed": destroyed.get(name) if not a else None,
                "subjects": a["subjects"] if a else 0,
                **record.get(name, _no_record()),
            }
        )
    return rows


def _no_record() -> dict:
    return {
        "models_imported": [],
        "imports_refused": 0,
        "artifacts_released": [],
        "exports_refused": 0,
        "destruction": {"status": "not destroyed"},
    }


def register_markdown(
    rows: list[dict], lab_id: str, allowed: tuple[str, ...] = (), forbidden: tuple[str, ...] = ()
) -> str:
    head = [
        "# Register of processors",
        "",
        f"Lab `{lab_id}`. Purposes the policy allows: {', '.join(allowed) or '-'}; "
        f"forbidden to every processor: {', '.join(forbidden) or '-'}.",
        "",
        "| processor | tenant | purposes | data categories | retention | status | since "
        "| destruction due | destroyed | models imported | artifacts released "
        "| destruction |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    from facelab.accountability.register import markdown_cells

    for r in rows:
        models, released, destruction = markdown_cells({**_no_record(), **r})
        head.append(
            f"| {r['processor']} | {r['tenant']} | {', '.join(r['purposes'])} | "
            f"{_categories_cell(r)} | {r['retention']} | {r['status']} | "
            f"{r['since'] or ''} | {r['destruction_due'] or ''} | "
            f"{r['destroyed'] or ''} | {models} | {released} | {destruction} |"
        )
    return "\n".join(head) + "\n"


def _categories_cell(r: dict) -> str:
    """Declared categories (the processor's words), then what the vault holds (from the
    datasets' columns, ``certificate.data_categories``), so neither hides the other."""
    cell = f"declared: {', '.join(r['data_categories']) or '-'}"
    held = r.get("data_categories_held", [])
    return cell + (f"; held: {', '.join(held)}" if held else "")


def register_document(lab: Lab, rows: list[dict]) -> dict:
    """The register as JSON-ready data."""
    gov = _governance(lab)
    return {
        "lab": lab.lab_id,
        "allowed_purposes": gov.allowed_purposes,
        "forbidden_purposes": gov.forbidden_purposes,
        "processors": rows,
    }


def register_text(lab: Lab, rows: list[dict]) -> str:
    """The register as Markdown."""
    gov = _governance(lab)
    return register_markdown(rows, lab.lab_id, gov.allowed_purposes, gov.forbidden_purposes)


def write_register(lab: Lab, rows: list[dict], out: Path) -> tuple[Path, Path]:
    out.mkdir(parents=True, exist_ok=True)
    md, js = out / "register.md", out / "register.json"
    md.write_text(register_text(lab, rows))
    js.write_text(json.dumps(register_document(lab, rows), indent=2) + "\n")
    return md, js
