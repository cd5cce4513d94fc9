"""The job's own process (``python -m lab.jobs.child``): confine itself, then run.

Reads its configuration (JSON) from stdin, enters a new network namespace, applies the
Landlock rules the runner computed, and only then imports and runs the job: a 1:1
benchmark, or a registered trainer. The last line of stdout is
``FACELAB-RESULT {json}``: ok, the job's summary, or the error that stopped it (a
denied file or socket shows here, and the runner records it in the audit log).
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import os
import sys
import traceback
from pathlib import Path

RESULT = "FACELAB-RESULT "


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
    from lab.bench._matcher import Matcher
    from lab.bench.report import write_report
    from lab.bench.run import Sample, run_benchmark

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


def main() -> int:
    cfg = json.loads(sys.stdin.readline())
    result: dict = {"ok": False}
    try:
        from lab.jobs.sandbox import enter_network_namespace, restrict_filesystem

        confinement = []
        try:
            confinement.append(enter_network_namespace())
        except Exception as e:
            if cfg["strict"]:
                raise
            confinement.append(f"network NOT isolated ({e})")
        try:
            abi = restrict_filesystem(
                [Path(p) for p in cfg["read"]], [Path(p) for p in cfg["write"]]
            )
            confinement.append(f"landlock abi {abi}")
        except Exception as e:
            if cfg["strict"]:
                raise
            confinement.append(f"filesystem NOT confined ({e})")
        result["confinement"] = confinement
        os.chdir(cfg["workspace"])
        from lab.jobs.api import JobContext

        stream = os.fdopen(cfg["fd"], "rb", buffering=1 << 20)
        ctx = JobContext(
            cfg["job_id"],
            cfg["tenant"],
            cfg["spec"],
            Path(cfg["workspace"]),
            Path(cfg["outbox"]),
            Path(cfg["model_dir"]),
            stream,
        )
        if cfg["spec"]["kind"] == "bench":
            summary = _bench(ctx)
        else:
            summary = _trainer(cfg["trainer"], cfg.get("trainer_origin"))(ctx)
        result.update(ok=True, summary=summary if isinstance(summary, dict) else {})
    except BaseException as e:  # the job's failure is data for the runner
        result["error"] = f"{type(e).__name__}: {e}"
        result["trace"] = traceback.format_exc(limit=6)[-2000:]
    sys.stdout.flush()
    print(RESULT + json.dumps(result, default=str), flush=True)
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
