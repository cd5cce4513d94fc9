"""The vault's commands: `ingest`, `destroy`, `vault list`, `retention run`, `register`."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from facelab.commands._common import Steps, unlocked
from facelab.errors import BadInputError


def _cmd_ingest(args: argparse.Namespace) -> int:
    from facelab.vault import ops

    lab, root, log, actor = unlocked(args.lab, args.tenant)
    with log:
        r = ops.ingest(
            lab,
            root,
            args.tenant,
            args.dataset,
            actor,
            log,
            delete_source=args.delete_source,
            new_tenant=args.new_tenant,
        )
    if r.already_present:
        print(
            f"{args.dataset}: already in the vault for tenant {r.tenant} ({r.digest}); "
            "nothing changed"
        )
    else:
        print(
            f"ingested {r.images} images of {r.subjects} subjects for tenant {r.tenant}"
            f"{' (new tenant)' if r.created_tenant else ''}; dataset {r.digest}"
        )
    if args.delete_source:
        print(f"  source verified against the vault and deleted: {args.dataset}")
    return 0


def confirm_destroy(tenant: str, yes: bool, ask=input, terminal: bool | None = None) -> None:
    """On a terminal, the operator types the tenant's name; elsewhere ``--yes`` is needed.
    BadInputError (exit 2, nothing changed) otherwise."""
    if yes:
        return
    if terminal is None:
        terminal = sys.stdin.isatty()
    if not terminal:
        raise BadInputError(
            f"destroy {tenant}: cannot ask for confirmation (not a terminal); pass --yes, "
            "or --dry-run to see what it would empty"
        )
    try:
        answer = ask(f"this erases tenant {tenant}'s key and data for good; type its name: ")
    except EOFError:
        answer = ""
    if answer.strip() != tenant:
        raise BadInputError(f"destroy {tenant}: the name typed does not match; nothing changed")


def _cmd_destroy(args: argparse.Namespace) -> int:
    from facelab.vault import ops

    if args.dry_run:  # read only: no log opened, nothing changed
        from facelab.labdir import open_lab, read_passphrase, unlock
        from facelab.vault.store import check_tenant

        check_tenant(args.tenant)
        lab = open_lab(args.lab)
        root = unlock(lab, read_passphrase())
        from facelab.audit import intents

        # a change interrupted by a crash is finished by the next writing command; a dry
        # run writes nothing, so it compares the other tenants and says so
        pending = {str(i.get("tenant")): i["seq"] for i in intents.open_intents(lab.paths.audit)}
        # a plan of a vault the log disagrees with: 4
        ops.check_vault_against_log(lab, root, skip=frozenset(pending))
        for t, seq in sorted(pending.items()):
            print(
                f"destroy --dry-run: tenant {t} has a change interrupted by a crash (audit "
                f"entry {seq}); the next command that writes (such as destroy without "
                "--dry-run) finishes it"
            )
        if args.tenant in pending:
            print("nothing was changed")
            return 0
        plan = ops.destroy_plan(lab, root, args.tenant)
        print(f"destroy --dry-run: tenant {args.tenant} in {lab.paths.root}; would empty:")
        for p in plan:
            now = f" [now: {p['now']}]" if p["now"] else ""
            print(f"  {p['place']}: {p['path']}{now}\n    -> {p['action']}")
        print("nothing was changed")
        return 0
    confirm_destroy(args.tenant, args.yes)
    done: list[dict] = []
    lab, root, log, actor = unlocked(args.lab, args.tenant, done)
    # a destroy of this tenant interrupted earlier and just finished by reconciliation:
    # the retry's work is done, and that certificate is its record (red team 14g, 01)
    finished = [
        Path(r["certificate"])
        for r in done
        if r["action"] == "vault.destroy" and r["tenant"] == args.tenant and r.get("certificate")
    ]
    with log:
        path = finished[-1] if finished else ops.destroy(lab, root, args.tenant, actor, log)
    from facelab.vault import certificate

    cert = certificate.read(path)["certificate"]
    m = cert["media_information"]
    print(
        f"destroyed tenant {args.tenant}: {m['records']} records of {m['subjects']} "
        f"subjects, key erased, {len(cert['places'])} places handled; verification "
        f"{cert['sanitization_details']['verification_result']}"
    )
    for p in cert["places"]:
        print(f"  {p['place']}: {p['action']}")
    print(f"  certificate: {path} (performer-signed; `facelab certificate validate` adds the")
    print("  validator's signature)")
    return 0


def _cmd_vault_list(args: argparse.Namespace) -> int:
    from facelab.audit import Event
    from facelab.vault import ops

    lab, root, log, actor = unlocked(args.lab)
    with log, ops.open_vault(lab, root) as v:
        rows = v.tenants()
        log.record(Event("vault.list", actor, details={"tenants": len(rows)}))
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        for r in rows:
            print(
                f"{r['tenant']:<20} {r['records']:>8} records {r['subjects']:>7} subjects "
                f"{len(r['datasets'])} datasets  since {r['created']}"
            )
    return 0


def _cmd_retention_run(args: argparse.Namespace) -> int:
    from datetime import date

    from facelab.vault import retention

    lab, root, log, actor = unlocked(args.lab)
    try:
        today = date.fromisoformat(args.today) if args.today is not None else None
    except ValueError as e:
        raise BadInputError(f"--today {args.today!r}: not a date (YYYY-MM-DD)") from e
    with log, Steps("retention") as steps:
        due = retention.run(
            lab, root, actor, log, today=today, dry_run=args.dry_run, progress=steps
        )
    if not due:
        print("retention: no tenant is due for destruction")
    for s in due:
        what = "would destroy" if args.dry_run else "destroyed"
        print(
            f"retention: {what} {s['tenant']} (first ingest {s['created']}, due "
            f"{s['due']}){'' if args.dry_run else ', certificate ' + s['certificate']}"
        )
    return 0


def _cmd_register(args: argparse.Namespace) -> int:
    from facelab.labdir import open_lab, read_passphrase, unlock
    from facelab.vault import ops, retention

    lab = open_lab(args.lab)  # read-only: the audit log is not opened for writing
    root = unlock(lab, read_passphrase())
    # the register is published: a vault that disagrees with the log (a destroyed
    # tenant's files put back) is damage, exit 4, never listed as active
    ops.check_vault_against_log(lab, root)
    rows = retention.register(lab, root)
    if args.json:
        print(json.dumps(retention.register_document(lab, rows), indent=2))
    else:
        print(retention.register_text(lab, rows), end="")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    """Add this module's commands to the `facelab` parser."""
    g = sub.add_parser("ingest", help="encrypt a dataset into the vault")
    g.add_argument("--lab", type=Path, required=True)
    g.add_argument("--tenant", required=True)
    g.add_argument("dataset", type=Path)
    g.add_argument(
        "--delete-source",
        action="store_true",
        help="delete the plaintext after reading it back from the vault",
    )
    g.add_argument(
        "--new-tenant",
        action="store_true",
        help="create the tenant if it is new (a tenant neither in the vault nor declared "
        "in the policy is refused without it: a typo does not create a processor)",
    )
    g.set_defaults(func=_cmd_ingest)
    x = sub.add_parser("destroy", help="crypto-shred a tenant; write a signed certificate")
    x.add_argument("--lab", type=Path, required=True)
    x.add_argument("--tenant", required=True)
    x.add_argument("--yes", action="store_true", help="do not ask for the tenant's name (scripts)")
    x.add_argument(
        "--dry-run", action="store_true", help="list every place it would empty; change nothing"
    )
    x.set_defaults(func=_cmd_destroy)
    vl = sub.add_parser("vault", help="the encrypted record store")
    vsub = vl.add_subparsers(dest="vault_command", required=True)
    vls = vsub.add_parser("list", help="tenants, record counts, datasets")
    vls.add_argument("--lab", type=Path, required=True)
    vls.add_argument("--json", action="store_true")
    vls.set_defaults(func=_cmd_vault_list)
    rt = sub.add_parser("retention", help="destroy tenants past their retention")
    rtsub = rt.add_subparsers(dest="retention_command", required=True)
    rr = rtsub.add_parser("run", help="destroy every tenant whose destruction is due")
    rr.add_argument("--lab", type=Path, required=True)
    rr.add_argument("--today", help="the date to judge by (YYYY-MM-DD; default today)")
    rr.add_argument("--dry-run", action="store_true")
    rr.set_defaults(func=_cmd_retention_run)
    rg = sub.add_parser("register", help="the public register of processors")
    rg.add_argument("--lab", type=Path, required=True)
    rg.add_argument("--json", action="store_true")
    rg.set_defaults(func=_cmd_register)
