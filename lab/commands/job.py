"""`facelab job run`: a tenant's job in the zero client."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from facelab.commands._common import Steps, unlocked
from facelab.errors import BadInputError


def _cmd_job_run(args: argparse.Namespace) -> int:
    from facelab.jobs import run_job

    try:
        spec = json.loads(args.spec.read_text(encoding="utf-8"))
    except ValueError as e:
        raise BadInputError(f"{args.spec}: not JSON ({e})") from e
    lab, root, log, actor = unlocked(args.lab, args.tenant)
    with log, Steps("job run", total=3) as steps:
        r = run_job(lab, root, args.tenant, spec, actor, log, progress=steps)
    doc = {
        "job": r.job_id,
        "status": r.status,
        "summary": r.summary,
        "error": r.error,
        "confinement": list(r.confinement),
        "outbox": str(r.outbox),
        "outputs": r.outputs,
    }
    if args.json:
        print(json.dumps(doc, indent=2))
    else:
        print(f"job {r.job_id}: {r.status} ({', '.join(r.confinement) or 'no confinement'})")
        for k, v in r.summary.items():
            print(f"  {k}: {v}")
        for f in r.outputs:  # names the runner checked: [A-Za-z0-9._-] only
            print(f"  output: {r.outbox / f}")
    if r.status != "done":
        print(f"facelab: job {r.job_id} {r.status}: {r.error}", file=sys.stderr)
        return 5
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    """Add this module's commands to the `facelab` parser."""
    j = sub.add_parser("job", help="tenant jobs in the zero client")
    jsub = j.add_subparsers(dest="job_command", required=True)
    jr = jsub.add_parser("run", help="run a job spec (JSON) under the policy and sandbox")
    jr.add_argument("--lab", type=Path, required=True)
    jr.add_argument("--tenant", required=True)
    jr.add_argument("spec", type=Path)
    jr.add_argument("--json", action="store_true")
    jr.set_defaults(func=_cmd_job_run)
