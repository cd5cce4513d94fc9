"""`facelab bench --lab LAB --tenant T --model M`: the benchmark inside the lab.

Records come from the vault's read API (decrypted in memory, pseudonymous subject ids,
the access recorded); the model must have passed the import gate for that tenant. The
report is written to the tenant's outbox, from which only the export gate lets anything
leave, and the run is recorded in the audit log.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from pathlib import Path

from lab.audit import AuditLog, Event
from lab.bench._matcher import Matcher
from lab.bench.report import write_report
from lab.bench.run import Sample, run_benchmark
from lab.errors import BadInputError
from lab.gates.importing import list_models
from lab.gates.importing.ops import models_dir
from lab.labdir import Lab
from lab.vault import ops
from lab.vault.keystore import RootKey


def registered_model(lab: Lab, tenant: str, ref: str) -> tuple[dict, Path]:
    """A model the import gate registered for ``tenant``: by name@version or digest."""
    bare = ref.removeprefix("sha256:")

    def matches(m: dict) -> bool:
        by_prefix = len(bare) >= 8 and m["path"].startswith(bare)
        return m["model"] == ref or m["digest"] == ref or by_prefix

    hits = [m for m in list_models(models_dir(lab)) if m["tenant"] == tenant and matches(m)]
    if not hits:
        raise BadInputError(
            f"model {ref!r} is not registered for tenant {tenant!r} (facelab model import)"
        )
    return hits[-1], models_dir(lab) / hits[-1]["path"]


def outbox(lab: Lab, tenant: str) -> Path:
    return lab.paths.root / "outbox" / tenant


def bench_in_lab(
    lab: Lab,
    root: RootKey,
    tenant: str,
    model_ref: str,
    actor: str,
    log: AuditLog,
    *,
    split: str | None = "test",
    device: str = "cpu",
    progress=None,
) -> tuple[dict, Path]:
    entry, path = registered_model(lab, tenant, model_ref)
    samples = [
        Sample(r.subject, r.kind, r.image(), r.landmarks, r.nationality, r.sex, r.birth_year)
        for r in ops.read(
            lab, root, tenant, actor, log, split=split, purpose=f"bench {entry['model']}"
        )
    ]
    report = run_benchmark(samples, Matcher(path, device), progress=progress)
    report["lab"] = {"tenant": tenant, "split": split or "all", "model_digest": entry["digest"]}
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    out = outbox(lab, tenant) / f"bench-{entry['model'].replace('@', '-')}-{stamp}"
    page = write_report(report, out)
    digest = hashlib.sha256((out / "report.json").read_bytes()).hexdigest()
    op = next(p for p in report["operating_points"] if p["fmr_target"] == 1e-3)
    log.record(
        Event(
            "bench.run",
            actor,
            role="tenant",
            tenant=tenant,
            object=f"sha256:{digest}",
            details={
                "model": entry["model"],
                "split": split or "all",
                "genuine_pairs": report["protocol"]["genuine_pairs"],
                "impostor_pairs": report["protocol"]["impostor_pairs"],
                "eer": report["eer"]["value"],
                "fnmr_at_fmr_1e-3": op["fnmr"],
                "report": str(out.relative_to(lab.paths.root)),
            },
        )
    )
    return report, page
