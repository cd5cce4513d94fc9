"""CLI of issue 18's scan-only modes: ``facelab scan-model PACKAGE [--json]`` and
``facelab scan-export FILE... --dataset DS [--json]``, for engineers without a lab.

Exit codes as modelscan's: 0 nothing found, 1 issues found, 2 usage or a scan that
could not run.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def _cmd_scan_model(args: argparse.Namespace) -> int:
    from facelab.accountability.scan_only import scan_model

    r = scan_model(args.package, policy_path=args.policy)
    print(json.dumps(r.to_json(), indent=2) if args.json else r.text())
    return 0 if r.clean else 1


def _cmd_scan_export(args: argparse.Namespace) -> int:
    from facelab.accountability.scan_only import scan_export

    report = scan_export(
        args.artifacts, args.dataset, from_models=args.from_model or (), policy_path=args.policy
    )
    if args.json:
        doc = report.to_json()
        doc["decision"] = "issues found" if report.refused else "clean"
        print(json.dumps(doc, indent=2))
    else:
        text = report.text().replace("export gate:", "scan-export:", 1)
        text = text.replace("decision: REFUSED", "result: ISSUES FOUND (the gate would refuse)")
        print(text.replace("decision: RELEASED", "result: CLEAN (the gate would release)"))
    return 1 if report.refused else 0


def register(sub) -> None:
    """Add ``scan-model`` and ``scan-export`` to the ``facelab`` parser."""
    sm = sub.add_parser(
        "scan-model", help="the import gate's static checks on a package, no lab, no signatures"
    )
    sm.add_argument("package", type=Path, help="a package directory or .tar/.tar.gz")
    sm.add_argument("--policy", type=Path, default=None, help="policy (default: facelab's)")
    sm.add_argument("--json", action="store_true")
    sm.set_defaults(func=_cmd_scan_model)
    se = sub.add_parser(
        "scan-export", help="the export gate on files against a plaintext synthetic dataset"
    )
    se.add_argument("artifacts", type=Path, nargs="+", metavar="FILE")
    se.add_argument(
        "--dataset", type=Path, required=True, help="a synthetic dataset (DESIGN.md's format)"
    )
    se.add_argument(
        "--from",
        dest="from_model",
        type=Path,
        action="append",
        help="a model package the artifacts descend from (repeatable; the shipped "
        "baselines always count)",
    )
    se.add_argument("--policy", type=Path, default=None, help="policy (default: facelab's)")
    se.add_argument("--json", action="store_true")
    se.set_defaults(func=_cmd_scan_export)
