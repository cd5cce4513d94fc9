"""`facelab job run`: a tenant's job in the zero client."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from facelab.commands._common import Steps, unlocked
from facelab.jsonfile import read_json


def _cmd_job_run(args: argparse.Namespace) -> int:
    from facelab.jobs import run_job

    spec = read_json(args.spec, what="a job spec", max_bytes=1 << 20)
    lab, root, log, actor = unlocked(args.lab, args.tenant)
    from facelab.vault import ops

    try:  # a misspelt tenant is named as such, not as a model to import
        ops.check_known_tenant(lab, root, args.tenant)
    except BaseException:
        log.close()
        raise
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


SPEC_HELP = """job spec (a JSON object):
  kind      "bench" (a 1:1 benchmark of a registered model) or "train" (a trainer
            registered in the policy's [jobs] trainers)
  purpose   one of the policy's [purposes] allowed ("verify_1to1", "train")
  model     a model the tenant imported, name@version ("cnn@1.0.0"; facelab model list)
  split     "train", "verification" or "test" (default: train for train, test for bench)
  trainer   with kind "train": a trainer's name ("pca_head")
  params    with kind "train": only the parameters the trainer declares
            ([jobs] trainer_params); a benchmark takes none
  Anything that asks for 1:N search (a gallery, top-k, ...) is refused (exit 3).

examples:
  {"kind": "bench", "purpose": "verify_1to1", "model": "cnn@1.0.0", "split": "test"}
  {"kind": "train", "purpose": "train", "model": "cnn@1.0.0", "trainer": "pca_head",
   "split": "train", "params": {"dim": 32}}

  facelab job run --lab mylab --tenant acme bench.json"""


def register(sub: argparse._SubParsersAction) -> None:
    """Add this module's commands to the `facelab` parser."""
    j = sub.add_parser("job", help="tenant jobs in the zero client")
    jsub = j.add_subparsers(dest="job_command", required=True)
    jr = jsub.add_parser(
        "run",
        help="run a job spec (JSON) under the policy and sandbox",
        description="Run a tenant's job in the zero client: the policy decides first, then "
        "a confined child process reads the tenant's records (streamed from the vault) and "
        "writes to the tenant's outbox.",
        epilog=SPEC_HELP,
    )
    jr.add_argument("--lab", type=Path, required=True)
    jr.add_argument("--tenant", required=True)
    jr.add_argument("spec", type=Path, help="the job spec, a JSON file (below)")
    jr.add_argument("--json", action="store_true")
    jr.set_defaults(func=_cmd_job_run)
