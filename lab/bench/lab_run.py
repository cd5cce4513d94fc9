"""`facelab bench --lab LAB --tenant T --model M`: the benchmark inside the lab, as a
job of the zero client (``facelab.jobs``): the policy decides, the runner confines it, the
report lands in the tenant's outbox, from which only the export gate lets anything
leave. Also the look-up of registered models that jobs and the export gate share.
"""

from __future__ import annotations

from pathlib import Path

from facelab.audit import AuditLog
from facelab.errors import BadInputError
from facelab.gates.importing import list_models
from facelab.gates.importing.ops import models_dir
from facelab.labdir import Lab
from facelab.vault.keystore import RootKey


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
    entry = hits[-1]
    _check_registration(lab, tenant, entry)
    return entry, models_dir(lab) / entry["path"]


def _check_registration(lab: Lab, tenant: str, entry: dict) -> None:
    """``TamperedError`` unless the signed log records the import gate registering this
    digest for this tenant, and the directory still holds exactly that: ``registry.json``
    and the files are not signed, so a row added by hand or a flipped byte let a job run
    a model the gate never admitted (red team 2, a12)."""
    from facelab.audit.read import entries
    from facelab.errors import TamperedError
    from facelab.vault.ops import model_dir_intact

    on_log = any(
        e.get("action") == "model.import"
        and e.get("decision") == "registered"
        and e.get("tenant") == tenant
        and e.get("object") == entry.get("digest")
        for e in entries(lab.paths.audit, b'"model.import"')
    )
    where = models_dir(lab) / "registry.json"
    if not on_log:
        raise TamperedError(
            f"{where}: {entry.get('model')!r} of tenant {tenant!r} was never registered by "
            "the import gate (no model.import entry on the audit log)"
        )
    if not model_dir_intact(models_dir(lab) / str(entry.get("path", "")), entry):
        raise TamperedError(
            f"{models_dir(lab) / str(entry.get('path', ''))}: not what the import gate "
            "registered (a file changed, added or linked)"
        )


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
    """The 1:1 benchmark of a registered model on the tenant's records, run as a job:
    the purpose policy decides, the zero client confines it, the audit log records it
    (``job.refuse`` or ``job.start``/``job.finish``). The operator's process never
    runs the tenant's model nor holds its decrypted records outside the runner.

    Returns
    -------
    (report, page)
        The report as the job wrote it (``report.json`` in the job's outbox) and the
        path of its HTML page.

    Raises
    ------
    JobRefused
        The policy refuses the benchmark (purpose not granted, isolation missing).
    JobFailed
        The job ran and failed (its reason in the message).
    """
    import json

    from facelab.errors import JobFailed
    from facelab.jobs import run_job

    del device, progress  # the job runs on the CPU inside the confinement
    spec = {"kind": "bench", "purpose": "verify_1to1", "model": model_ref}
    if split is not None:
        spec["split"] = split
    r = run_job(lab, root, tenant, spec, actor, log)
    if r.status != "done":
        raise JobFailed(f"benchmark job {r.job_id} {r.status}: {r.error}")
    report = json.loads((r.outbox / "report.json").read_text(encoding="utf-8"))
    return report, r.outbox / "report.html"
