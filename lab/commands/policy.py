"""`facelab policy show|add-officer|add-reviewer|add-tenant-key|add-tenant|set`: change
LAB/policy.toml without an editor, validated, atomically and on the record."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from facelab import labfs
from facelab.commands._common import open_lab_dir, unlocked

EXITS = "exit codes: 0 done; 2 bad input (nothing written); 4 audit log tampered"
ENV = (
    "environment: FACELAB_PASSPHRASE or FACELAB_KEY_FILE (the operator secret, else asked "
    "on a terminal); FACELAB_ACTOR (who acts, recorded; default the OS user)"
)


def _apply(args: argparse.Namespace, what: str, edit) -> int:
    from facelab import policy

    lab, _root, log, actor = unlocked(args.lab)
    with log:
        c = policy.change(lab, log, actor, what, edit)
    print(f"policy: {what}; recorded as policy.change (entry {c.entry})")
    print(f"  {c.old} -> {c.new}")
    return 0


def _cmd_add_officer(args: argparse.Namespace) -> int:
    from facelab import policy

    pub = policy.ed25519_public_b64(args.pubkey, "officer")
    return _apply(args, f"add-officer {args.name}", policy.add_officer(args.name, pub))


def _cmd_add_reviewer(args: argparse.Namespace) -> int:
    from facelab import policy

    pub = policy.ed25519_public_b64(args.pubkey, "reviewer")
    return _apply(args, f"add-reviewer {args.name}", policy.add_reviewer(args.name, pub))


def _cmd_add_tenant_key(args: argparse.Namespace) -> int:
    from facelab import policy

    pem = policy.tenant_public_pem(args.pubkey)
    return _apply(args, f"add-tenant-key {args.tenant}", policy.add_tenant_key(args.tenant, pem))


def _cmd_add_tenant(args: argparse.Namespace) -> int:
    from facelab import policy

    edit = policy.add_tenant(
        args.tenant,
        processor=args.processor,
        purposes=args.purpose or (),
        retention_days=args.retention_days,
        destroy_by=args.destroy_by,
        data_categories=args.data_category or (),
    )
    return _apply(args, f"add-tenant {args.tenant}", edit)


def _cmd_set(args: argparse.Namespace) -> int:
    from facelab import policy

    return _apply(args, f"set {args.key} = {args.value}", policy.set_value(args.key, args.value))


def _cmd_show(args: argparse.Namespace) -> int:
    from facelab import policy

    lab = open_lab_dir(args.lab)
    raw = lab.policy.raw
    current = policy.file_digest(lab.paths.policy)
    recorded = policy.in_force(lab.paths.audit)
    imp, exp = raw.get("import", {}), raw.get("export", {})
    doc = {
        "path": str(lab.paths.policy),
        "digest": current,
        "recorded": recorded,
        "edited_since_last_entry": recorded is not None and recorded != current,
        "roles": raw.get("roles", {}),
        "officers": sorted(imp.get("officers", {})),
        "required_approvals": imp.get("required_approvals"),
        "tenant_keys": sorted(imp.get("tenant_keys", {})),
        "reviewers": sorted(exp.get("reviewers", {})),
        "tenants": {k: v for k, v in raw.get("tenants", {}).items()},
        "vault_tenants": raw.get("vault", {}).get("tenants", []),
        "isolation": raw.get("jobs", {}).get("isolation"),
    }
    if args.all:
        print(labfs.read_text(lab.paths.policy, what="a policy"), end="")
        return 0
    if args.json:
        print(json.dumps(doc, indent=2, default=str))
        return 0
    print(f"policy {doc['path']}")
    print(f"  digest {current}")
    if doc["edited_since_last_entry"]:
        print(
            "  EDITED since the audit log's last entry (by hand); the next command that "
            "writes the log records it as policy.change"
        )
    print(
        f"  import officers: {', '.join(doc['officers']) or '(none)'}"
        f" ({doc['required_approvals']} approvals required)"
    )
    print(f"  tenant signing keys: {', '.join(doc['tenant_keys']) or '(none)'}")
    print(f"  export reviewers: {', '.join(doc['reviewers']) or '(none)'}")
    if doc["tenants"]:
        for name, t in doc["tenants"].items():
            extra = ", ".join(f"{k} {v}" for k, v in t.items()) if isinstance(t, dict) else t
            print(f"  tenant {name}: {extra}")
    else:
        print("  tenants: (none declared; [tenant_defaults] applies)")
    if doc["vault_tenants"]:
        print(f"  ingest creates only: {', '.join(doc['vault_tenants'])}")
    print(f"  job isolation: {doc['isolation']}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    """Add this module's commands to the `facelab` parser."""
    epilog = f"{EXITS}\n{ENV}"
    fmt = argparse.RawDescriptionHelpFormatter
    p = sub.add_parser(
        "policy",
        help="show or change the lab's policy (validated, atomic, recorded)",
        description="Show or change LAB/policy.toml. Every change is validated before the "
        "file is replaced atomically, and recorded in the audit log as policy.change (who, "
        "old and new SHA-256). A hand edit is found and recorded the same way the next "
        "time a command writes the log.",
        epilog=epilog,
        formatter_class=fmt,
    )
    psub = p.add_subparsers(dest="policy_command", required=True)

    def cmd(name: str, help_: str, func, example: str):
        c = psub.add_parser(
            name,
            help=help_,
            description=help_,
            epilog=f"example: {example}\n{epilog}",
            formatter_class=fmt,
        )
        c.add_argument("--lab", type=Path, required=True)
        c.set_defaults(func=func)
        return c

    s = cmd(
        "show",
        "the policy in force: keys, tenants, isolation",
        _cmd_show,
        "facelab policy show --lab mylab",
    )
    s.add_argument("--json", action="store_true")
    s.add_argument("--all", action="store_true", help="print the whole file")
    s.epilog = "example: facelab policy show --lab mylab\nexit codes: 0; 2 not a lab"
    o = cmd(
        "add-officer",
        "register an import officer's Ed25519 public key",
        _cmd_add_officer,
        "facelab policy add-officer --lab mylab kim keys/kim.pub",
    )
    o.add_argument("name")
    o.add_argument("pubkey", type=Path, help="the .pub file of `model keygen --kind officer`")
    r = cmd(
        "add-reviewer",
        "register an export reviewer's Ed25519 public key",
        _cmd_add_reviewer,
        "facelab policy add-reviewer --lab mylab rita keys/rita.pub",
    )
    r.add_argument("name")
    r.add_argument("pubkey", type=Path, help="the .pub file of `model keygen --kind reviewer`")
    k = cmd(
        "add-tenant-key",
        "register a tenant's model-signing key (ECDSA P-256)",
        _cmd_add_tenant_key,
        "facelab policy add-tenant-key --lab mylab acme keys/acme.pub",
    )
    k.add_argument("tenant")
    k.add_argument("pubkey", type=Path, help="the .pub file of `model keygen --kind tenant`")
    t = cmd(
        "add-tenant",
        "declare a processor (public register, purposes, retention)",
        _cmd_add_tenant,
        'facelab policy add-tenant --lab mylab acme --processor "Acme Ltd" --retention-days 180',
    )
    t.add_argument("tenant")
    t.add_argument("--processor", help="the processor's legal name (public register)")
    t.add_argument(
        "--purpose",
        action="append",
        help="a purpose (repeatable; default the policy's tenant_defaults)",
    )
    t.add_argument("--retention-days", type=int)
    t.add_argument("--destroy-by", help="YYYY-MM-DD")
    t.add_argument("--data-category", action="append", help="repeatable")
    st = cmd(
        "set",
        "set one value (a dotted key that the policy has, a value of its type)",
        _cmd_set,
        "facelab policy set --lab mylab jobs.isolation weak",
    )
    st.add_argument("key", help="dotted, e.g. jobs.isolation or audit.checkpoint_every")
    st.add_argument("value", help='a TOML value: 600, true, "weak" or weak, ["a", "b"]')
