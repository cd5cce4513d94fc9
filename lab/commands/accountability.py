"""CLI of issue 18 (answerable to outsiders): ``facelab evidence``, ``facelab evidence
verify``, ``facelab evidence verify-release``, ``facelab evidence verify-checkpoint`` and
``facelab subject``. Parses, calls ``facelab.accountability``, prints; exit codes as in
DESIGN.md (0 ok, 2 usage or bad input, 4 a signature, digest or proof that fails).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from facelab.commands._common import unlocked


def _key(path: Path):
    from facelab.accountability.offline import read_bytes
    from facelab.errors import BadInputError
    from facelab.labdir import public_key_from_b64

    try:
        text = read_bytes(path, 4096).decode("ascii")
    except UnicodeDecodeError as e:
        raise BadInputError(f"{path}: not a base64 Ed25519 public key") from e
    return public_key_from_b64(text, path)


def _cmd_evidence(args: argparse.Namespace) -> int:
    from facelab.accountability import evidence
    from facelab.errors import BadInputError
    from facelab.labdir import (
        actor_name,
        audit_writer,
        load_public_key,
        open_lab,
        read_passphrase,
        unlock,
    )

    if args.lab is None or args.out is None:
        raise BadInputError("evidence: --lab LAB and --out PACK are required")
    from facelab.vault import ops

    lab = open_lab(args.lab)
    root = unlock(lab, read_passphrase())
    ops.check_vault_against_log(lab, root)  # a pack of a vault the log disagrees with: 4
    out = evidence.write_pack(lab, root, args.out, actor_name(), lambda: audit_writer(lab, root))
    rep = evidence.verify_pack(out, load_public_key(lab))
    print(f"evidence pack written: {out} ({rep.files} files, {rep.entries} audit entries)")
    for c in rep.controls:
        print(f"  {c['control']}: {c['outcome']}")
    if not rep.ok:
        for p in rep.problems:
            print(f"facelab: evidence: {p}", file=sys.stderr)
        return 4
    return 0


def _cmd_evidence_verify(args: argparse.Namespace) -> int:
    from facelab.accountability.evidence import verify_pack

    rep = verify_pack(args.pack, _key(args.key))
    if args.json:
        print(json.dumps(rep.to_json(), indent=2))
    if not rep.ok:
        print(f"facelab: evidence pack {args.pack} FAILS: {rep.problems[0]}", file=sys.stderr)
        if not args.json:
            for p in rep.problems[1:]:
                print(f"  also: {p}", file=sys.stderr)
        return 4
    if not args.json:
        print(
            f"evidence pack {args.pack} verifies under the key given: lab {rep.lab}, "
            f"{rep.files} files, {rep.entries} audit entries, {rep.certificates} "
            f"certificate(s), {rep.releases} release(s), {rep.imports} import decision(s), "
            f"{rep.proofs} inclusion proof(s)"
        )
        for c in rep.controls:
            print(f"  {c['control']}: {c['outcome']}")
    return 0


def _cmd_verify_release(args: argparse.Namespace) -> int:
    from facelab.accountability.offline import verify_release_dir

    r = verify_release_dir(args.release, _key(args.key))
    print(
        f"release {args.release}: signature valid under the key given, {len(r.files)} "
        f"file(s) match, nothing unlisted; {r.decision} for tenant {r.tenant} at {r.released}"
    )
    return 0


def _cmd_verify_checkpoint(args: argparse.Namespace) -> int:
    from facelab.accountability.offline import read_bytes, verify_checkpoint

    cp = verify_checkpoint(read_bytes(args.note, 1 << 16), _key(args.key), args.origin)
    print(f"{args.note}: checkpoint of {cp.origin} at size {cp.size}, root {cp.root.hex()}")
    return 0


def _cmd_subject(args: argparse.Namespace) -> int:
    from facelab.accountability.subject_access import Query, subject_access
    from facelab.errors import BadInputError
    from facelab.labdir import actor_name, open_lab

    q = Query(passport_no=args.passport_no, name=args.name)
    lab = open_lab(args.lab)
    actor = actor_name()
    gov = lab.policy.governance
    operators = gov.roles.get("operators", ()) if gov is not None else ()
    if q.name is not None and operators and actor not in operators:
        raise BadInputError(
            f"subject --name: {actor!r} is not an operator in [roles] operators "
            "(a name is asked about by an operator only)"
        )
    _lab, root, log, _actor = unlocked(args.lab)  # reconciled; the vault checked
    with log:
        doc, js, page = subject_access(lab, root, q, actor, log, args.out)
    n = sum(sum(r["records"].values()) for r in doc["holdings"])
    print(
        f"subject access report: {len(doc['holdings'])} processor(s) hold {n} record(s) "
        f"of this person; {len(doc['destructions'])} destruction(s) on the record"
    )
    print(f"  {page}\n  {js}")
    print("  recorded as subject.access (a keyed digest of the question, no identifier)")
    return 0


def register(sub) -> None:
    """Add ``evidence`` (and its subcommands) and ``subject`` to the ``facelab`` parser."""
    parser_class = type(sub._name_parser_map.get("init", argparse.ArgumentParser()))
    ev = sub.add_parser(
        "evidence",
        help="write an evidence pack a regulator verifies offline (verify: check one)",
    )
    ev.add_argument("--lab", type=Path, default=None, help="the lab")
    ev.add_argument("--out", type=Path, default=None, help="the pack directory to create")
    ev.set_defaults(func=_cmd_evidence)
    evs = ev.add_subparsers(dest="evidence_command", required=False, parser_class=parser_class)
    evv = evs.add_parser("verify", help="check a pack with the lab's public key only")
    evv.add_argument("pack", type=Path)
    evv.add_argument("--key", type=Path, required=True, help="the lab's public key (base64)")
    evv.add_argument("--json", action="store_true")
    evv.set_defaults(func=_cmd_evidence_verify)
    evr = evs.add_parser(
        "verify-release", help="check a release directory with the lab's public key only"
    )
    evr.add_argument("release", type=Path)
    evr.add_argument("--key", type=Path, required=True)
    evr.set_defaults(func=_cmd_verify_release)
    evc = evs.add_parser(
        "verify-checkpoint", help="check a signed checkpoint with the lab's public key only"
    )
    evc.add_argument("note", type=Path)
    evc.add_argument("--key", type=Path, required=True)
    evc.add_argument("--origin", default=None, help="the log's origin line (optional)")
    evc.set_defaults(func=_cmd_verify_checkpoint)

    sj = sub.add_parser(
        "subject", help="subject access report: what the lab holds about one person"
    )
    sj.add_argument("--lab", type=Path, required=True)
    who = sj.add_mutually_exclusive_group(required=True)
    who.add_argument("--passport-no", default=None, help="the person's passport number")
    who.add_argument("--name", default=None, help="the person's name (operators only)")
    sj.add_argument(
        "--out",
        type=Path,
        default=None,
        help="directory for report.html and report.json (default ./subject-access-<id>)",
    )
    sj.set_defaults(func=_cmd_subject)
