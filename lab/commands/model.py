"""`facelab model ...`: keys, signing, approval and the import gate."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from facelab.commands._common import Steps, open_lab_dir, unlocked


def _cmd_model_keygen(args: argparse.Namespace) -> int:
    import shlex

    from facelab.gates.importing.keys import write_keypair
    from facelab.policy import check_name

    name = args.name or args.out.name
    check_name(name, args.kind)
    priv, pub, _line = write_keypair(args.kind, args.out)
    sub = {"tenant": "add-tenant-key", "officer": "add-officer", "reviewer": "add-reviewer"}
    lab = shlex.quote(str(args.lab)) if args.lab else "LAB"
    cmd = f"facelab policy {sub[args.kind]} --lab {lab} {shlex.quote(name)} {shlex.quote(str(pub))}"
    print(f"private key: {priv} (keep it secret)\npublic key:  {pub}")
    print(f"register it in the lab's policy (recorded in its audit log):\n  {cmd}")
    return 0


def _cmd_model_package(args: argparse.Namespace) -> int:
    from facelab.gates.importing.packaging import make_package

    if args.lab is not None:
        allowed = open_lab_dir(args.lab).policy.importing.allowed_files
    else:
        from enclave_policy import load_policy

        allowed = load_policy().importing.allowed_files
    copied, left = make_package(args.source, args.out, allowed, force=args.force)
    print(f"package {args.out}: {', '.join(copied)}")
    if left:
        print(f"  left out (not files the import gate takes): {', '.join(left)}")
    print("  next: `facelab model sign` (tenant), `facelab model approve` (each officer),")
    print("  then `facelab model import`")
    return 0


def _cmd_model_sign(args: argparse.Namespace) -> int:
    from facelab.gates.importing import sign_package

    out = sign_package(args.package, args.key)
    print(f"signed {args.package}: {out}")
    return 0


def _cmd_model_approve(args: argparse.Namespace) -> int:
    from facelab.gates.importing import approve
    from facelab.gates.importing.keys import load_officer_key

    out = approve(args.package, args.officer, load_officer_key(args.key))
    print(f"approved by {args.officer}: {out}")
    return 0


def _cmd_model_import(args: argparse.Namespace) -> int:
    from facelab.gates.importing.ops import import_model

    lab, _root, log, actor = unlocked(args.lab, args.tenant)
    with log, Steps("model import", total=2) as steps:
        report = import_model(lab, args.tenant, args.package, actor, log, progress=steps)
    if args.json:
        print(json.dumps(report.to_json(), indent=2))
    else:
        print(report.table())
    if not report.accepted:
        names = ", ".join(c.name for c in report.failed())
        from facelab.audit.events import escape_text

        print(
            f"facelab: import refused: {escape_text(str(args.package), 500)}: failed {names}",
            file=sys.stderr,
        )
        return 3
    return 0


def _cmd_model_list(args: argparse.Namespace) -> int:
    from facelab.gates.importing import list_models
    from facelab.gates.importing.ops import models_dir

    rows = list_models(models_dir(open_lab_dir(args.lab)))
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        for r in rows:
            print(
                f"{r['model']:<28} tenant {r['tenant']:<12} {r['digest'][:23]}  "
                f"approved by {', '.join(r['approvers'])}  {r['registered']}"
            )
        print(f"({len(rows)} models)")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    """Add this module's commands to the `facelab` parser."""
    m = sub.add_parser("model", help="model packages: keys, signing, approval, import gate")
    msub = m.add_subparsers(dest="model_command", required=True)
    mk = msub.add_parser(
        "keygen", help="a key pair for a tenant (signing), an import officer or an export reviewer"
    )
    mk.add_argument("--kind", choices=["tenant", "officer", "reviewer"], required=True)
    mk.add_argument("--out", type=Path, required=True, help="path prefix of the key files")
    mk.add_argument(
        "--name", help="the tenant's, officer's or reviewer's name (default: --out's name)"
    )
    mk.add_argument("--lab", type=Path, help="the lab to print the registration command for")
    mk.set_defaults(func=_cmd_model_keygen)
    mp = msub.add_parser(
        "package",
        help="copy what the import gate takes from a model directory (e.g. models/cnn)",
    )
    mp.add_argument("source", type=Path, help="a directory holding model.onnx")
    mp.add_argument("out", type=Path, help="the package directory to create")
    mp.add_argument("--lab", type=Path, help="take this lab's allowed files (default: shipped)")
    mp.add_argument("--force", action="store_true", help="replace an existing OUT")
    mp.set_defaults(func=_cmd_model_package)
    ms = msub.add_parser("sign", help="tenant: sign every file of a package (model-signing)")
    ms.add_argument("package", type=Path)
    ms.add_argument("--key", type=Path, required=True, help="ECDSA P-256 private key (PEM)")
    ms.set_defaults(func=_cmd_model_sign)
    ma = msub.add_parser("approve", help="import officer: counter-sign a signed package")
    ma.add_argument("package", type=Path)
    ma.add_argument("--officer", required=True)
    ma.add_argument("--key", type=Path, required=True, help="Ed25519 private key (PEM)")
    ma.set_defaults(func=_cmd_model_approve)
    mi = msub.add_parser("import", help="run the import gate; register on success")
    mi.add_argument("--lab", type=Path, required=True)
    mi.add_argument("--tenant", required=True)
    mi.add_argument("package", type=Path)
    mi.add_argument("--json", action="store_true")
    mi.set_defaults(func=_cmd_model_import)
    ml = msub.add_parser("list", help="registered models")
    ml.add_argument("--lab", type=Path, required=True)
    ml.add_argument("--json", action="store_true")
    ml.set_defaults(func=_cmd_model_list)
