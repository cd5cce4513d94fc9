"""`facelab export`, `review` and `release verify`: the export gate."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from facelab.commands._common import Steps, check_out, open_lab_dir, unlocked
from facelab.errors import BadInputError
from facelab.jsonfile import read_json


def _cmd_export(args: argparse.Namespace) -> int:
    from facelab.gates.exporting.ops import Override, export

    override = None
    if args.override is not None:
        try:
            doc = read_json(args.override, what="an override file")
            override = Override(str(doc["reviewer"]), str(doc["reason"]), str(doc["signature"]))
        except (ValueError, KeyError, TypeError) as e:
            raise BadInputError(f"{args.override}: not an override file ({e})") from e
    lab, root, log, actor = unlocked(args.lab, args.tenant)
    with log, Steps("export", total=5) as steps:
        out = export(
            lab,
            root,
            args.tenant,
            args.artifacts,
            actor,
            log,
            from_model=args.from_model,
            override=override,
            reference_models=args.reference_model,
            progress=steps,
        )
    if args.json:
        doc = out.report.to_json()
        doc["decision"] = out.decision
        doc["release"] = str(out.release_dir) if out.release_dir else None
        print(json.dumps(doc, indent=2))
    else:
        print(out.report.text())
        if out.decision == "overridden":
            print(f"  OVERRIDDEN by {override.reviewer}: {override.reason}")
        if out.release_dir:
            print(f"  released to {out.release_dir} (signed manifest.json)")
    if out.decision == "refused":
        print(
            f"facelab: export refused: {len(out.report.blocking())} finding(s); see the report",
            file=sys.stderr,
        )
        return 3
    return 0


def _cmd_review(args: argparse.Namespace) -> int:
    import hashlib

    from facelab.gates.exporting.release import sign_override
    from facelab.gates.importing.keys import load_officer_key

    check_out(args.out, args.force)
    key = load_officer_key(args.key, "a reviewer")
    digests = []
    for p in args.artifacts:
        files = sorted(q for q in p.rglob("*") if q.is_file()) if p.is_dir() else [p]
        digests += [hashlib.sha256(f.read_bytes()).hexdigest() for f in files]
    doc = {
        "reviewer": args.reviewer,
        "reason": args.reason,
        "signature": sign_override(key, args.tenant, digests, args.reason),
    }
    args.out.write_text(json.dumps(doc, indent=2) + "\n")
    print(f"override signed by {args.reviewer} for {len(digests)} file(s): {args.out}")
    return 0


def _cmd_release_verify(args: argparse.Namespace) -> int:
    import hashlib

    from facelab.gates.exporting.release import verify_manifest
    from facelab.labdir import load_public_key

    lab = open_lab_dir(args.lab)
    path = args.release / "manifest.json"
    doc = read_json(path, what="a release manifest")
    m = verify_manifest(doc, load_public_key(lab))

    def ok(a: dict) -> bool:
        f = args.release / a.get("path", a["name"])
        return f.is_file() and hashlib.sha256(f.read_bytes()).hexdigest() == a["sha256"]

    bad = [a.get("path", a["name"]) for a in m["artifacts"] if not ok(a)]
    if bad:
        print(
            f"facelab: release {args.release}: files differ from the manifest: {', '.join(bad)}",
            file=sys.stderr,
        )
        return 4
    print(
        f"release {args.release}: signature valid, {len(m['artifacts'])} file(s) match; "
        f"{m['decision']} for tenant {m['tenant']} at {m['released']}"
    )
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    """Add this module's commands to the `facelab` parser."""
    e = sub.add_parser("export", help="run the export gate on trained artifacts")
    e.add_argument("--lab", type=Path, required=True)
    e.add_argument("--tenant", required=True)
    e.add_argument("artifacts", type=Path, nargs="+", help="files or directories")
    e.add_argument("--json", action="store_true", help="the report as JSON")
    e.add_argument(
        "--from",
        dest="from_model",
        help="the registered model these artifacts descend from (default: found by tensor names)",
    )
    e.add_argument(
        "--reference-model",
        action="append",
        default=None,
        help="registered model to compute vault templates with (repeatable; "
        "default: the policy's export.templates.reference_models)",
    )
    e.add_argument(
        "--override",
        type=Path,
        help="a reviewer's signed override (facelab review) to release despite findings",
    )
    e.set_defaults(func=_cmd_export)
    rv = sub.add_parser("review", help="export reviewer: sign an override for artifacts")
    rv.add_argument("--tenant", required=True)
    rv.add_argument("--reviewer", required=True)
    rv.add_argument("--key", type=Path, required=True, help="Ed25519 private key (PEM)")
    rv.add_argument("--reason", required=True)
    rv.add_argument("--out", type=Path, required=True, help="the override file to write")
    rv.add_argument("--force", action="store_true", help="replace an existing --out")
    rv.add_argument("artifacts", type=Path, nargs="+")
    rv.set_defaults(func=_cmd_review)
    rl = sub.add_parser("release", help="released artifacts")
    rlsub = rl.add_subparsers(dest="release_command", required=True)
    rlv = rlsub.add_parser("verify", help="check a release's signed manifest and files")
    rlv.add_argument("--lab", type=Path, required=True)
    rlv.add_argument("release", type=Path)
    rlv.set_defaults(func=_cmd_release_verify)
