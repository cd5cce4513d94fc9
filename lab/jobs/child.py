"""The job inside the confinement: ``facelab.confine`` calls :func:`run` after it has built
the sandbox and applied Landlock.

It reads the tenant's records of one split from the stream the runner hands over and
runs the job: a 1:1 benchmark of the registered model (a fixed protocol: no parameter
of the spec changes it), or a registered trainer. What it returns is the job's
summary; the runner treats it as data (``facelab.jobs.summary``).
"""

from __future__ import annotations

import importlib
import importlib.util
import os
from pathlib import Path


def _trainer(target: str, origin: str | None):
    module, func = target.split(":")
    try:
        mod = importlib.import_module(module)
    except ModuleNotFoundError:
        if not origin:
            raise
        spec = importlib.util.spec_from_file_location(module, origin)
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
    return getattr(mod, func)


def _bench(ctx) -> dict:
    from facelab.bench._matcher import Matcher
    from facelab.bench.report import write_report
    from facelab.bench.run import Sample, run_benchmark

    samples = [
        Sample(r.subject, r.kind, r.image(), r.landmarks, r.nationality, r.sex, r.birth_year)
        for r in ctx.records()
    ]
    if len({s.subject for s in samples}) < 2:
        raise ValueError(
            f"split {ctx.spec.get('split')!r} holds fewer than 2 subjects: no impostor pairs"
        )
    report = run_benchmark(samples, Matcher(ctx.model_dir))
    report["lab"] = {"tenant": ctx.tenant, "split": ctx.spec.get("split"), "job": ctx.job_id}
    write_report(report, ctx.outbox)
    op = next(p for p in report["operating_points"] if p["fmr_target"] == 1e-3)
    return {
        "eer": report["eer"]["value"],
        "fnmr_at_fmr_1e-3": op["fnmr"],
        "genuine_pairs": report["protocol"]["genuine_pairs"],
        "impostor_pairs": report["protocol"]["impostor_pairs"],
    }


def run(
    job_id: str,
    tenant: str,
    spec: dict,
    workspace: str,
    outbox: str,
    model_dir: str,
    fd: int,
    trainer: str | None = None,
    trainer_origin: str | None = None,
    privacy: dict | None = None,
):
    """Run one job; return its summary (any JSON value: the runner checks it)."""
    from facelab.jobs.api import JobContext

    stream = os.fdopen(fd, "rb", buffering=1 << 20)
    ctx = JobContext(
        job_id, tenant, spec, Path(workspace), Path(outbox), Path(model_dir), stream, privacy
    )
    if spec["kind"] == "bench":
        return _bench(ctx)
    return _trainer(trainer, trainer_origin)(ctx)
