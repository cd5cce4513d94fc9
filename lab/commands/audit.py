"""`facelab audit ...` and `facelab witness init`: the tamper-evident log and its witnesses."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from facelab.commands._common import open_lab_dir, read_note, read_text, unlocked
from facelab.errors import BadInputError, NoteError, ProofError, TamperedError
from facelab.jsonfile import read_json


def _cmd_audit_verify(args: argparse.Namespace) -> int:
    from facelab.audit import pins, verify_log
    from facelab.labdir import (
        load_public_key,
        public_key_b64,
        public_key_from_b64,
        recorded_audit_limits,
    )

    lab = open_lab_dir(args.lab)
    limits = recorded_audit_limits(lab)
    trusted = None
    if args.trusted_key:
        trusted = public_key_from_b64(read_text(args.trusted_key), args.trusted_key)
    witness = read_note(args.witness) if args.witness else None
    pin = None
    if trusted is None and not args.no_pin:  # the key this machine pinned is the anchor
        pin = pins.check_or_pin(lab.origin, public_key_b64(load_public_key(lab)))
        if pin.state in ("matches", "differs"):
            trusted = public_key_from_b64(pin.public_key, pin.path)
    pinned, pinned_from = (None, "") if args.no_pin else pins.pinned_head(lab.origin)
    seen_witnesses = {} if args.no_pin else pins.pinned_witnesses(lab.origin)
    rep = verify_log(
        lab.paths.audit,
        lab.origin,
        load_public_key(lab),
        trusted_key=trusted,
        witness=witness,
        head_dir=lab.paths.keys,
        max_unwitnessed=limits["max_unwitnessed"],
        require_witness=bool(limits["require_witness"]),
        pinned_head=pinned,
        pinned_from=pinned_from,
        pinned_witnesses=seen_witnesses,
    )
    from facelab.audit.verify import Damage
    from facelab.jsonfile import read_json

    meta_key = read_json(lab.paths.meta, what="lab metadata").get("public_key")
    if meta_key is not None and meta_key != public_key_b64(load_public_key(lab)):
        rep.damage.insert(  # lab.json is what evidence packs and outsiders read first
            0,
            Damage(
                "signing-key-replaced",
                None,
                f"{lab.paths.meta} names another public key than keys/lab_signing.pub",
            ),
        )
    if pin is not None and pin.state == "differs":
        rep.damage.insert(
            0,
            Damage(
                "signing-key-replaced",
                0,
                f"the lab presents another key than the one this machine pinned for "
                f"{lab.origin} on {pin.pinned} ({pin.path}): re-signed under another key?",
            ),
        )
    from facelab.labdir import policy_history_problems

    for why in policy_history_problems(lab):  # the texts evidence packs show
        rep.damage.append(Damage("policy-text-damaged", None, why))
    from facelab.audit.read import entries as log_entries
    from facelab.vault import certificate

    destroys = list(log_entries(lab.paths.audit, b'"vault.destroy'))
    for why in certificate.unrecorded(
        lab.paths.root / "certificates", destroys, [load_public_key(lab)]
    ):  # a lab-signed certificate the log lacks: the log was rolled back past it
        rep.damage.append(Damage("unrecorded-destruction", None, f"certificates/{why}"))
    if not args.no_pin:  # the directory held another lab before: replaced wholesale?
        place = pins.check_or_pin_place(lab.paths.root, lab.origin)
        if place.state == "differs":
            rep.damage.insert(
                0,
                Damage(
                    "lab-replaced",
                    0,
                    f"{lab.paths.root} held lab {place.origin} when this machine last saw "
                    f"it ({place.pinned}, {place.path}); it now holds {lab.origin}: the "
                    "whole lab replaced under a new identity? (`facelab init` there re-pins)",
                ),
            )
    if pin is not None and pin.state == "pinned-now":
        rep.warnings.append(f"pinned this lab's key on first use in {pin.path}")
    elif pin is not None and pin.state == "unavailable":
        rep.warnings.append(f"no key pin used ({pin.path}: {pin.problem})")
    if args.json:
        doc = rep.to_json()
        if pin is not None:
            doc["pin"] = {"state": pin.state, "path": pin.path, "pinned": pin.pinned}
        print(json.dumps(doc, indent=2))
    if rep.intact and not args.no_pin and rep.scan is not None and rep.scan.head is not None:
        head = rep.scan.head  # verified: this machine now knows the log reached it
        if why := pins.advance_head(lab.origin, head.note, head.checkpoint.size):
            rep.warnings.append(f"the signed head was not pinned ({why})")
        cosigned = {w["name"]: w["cosigned_size"] for w in rep.witnesses if w["valid"]}
        if cosigned and (why := pins.advance_witnesses(lab.origin, cosigned)):
            rep.warnings.append(f"the witnesses' sizes were not pinned ({why})")
    if rep.intact:
        if not args.json:
            print(
                f"audit log intact: {rep.entries} entries, {rep.checkpoints} signed "
                f"checkpoints (latest at size {rep.latest_size}, head {rep.head_size})"
            )
            if pin is not None and pin.state == "matches":
                print(f"  lab key: the one pinned on {pin.pinned} ({pin.path})")
            for w in rep.witnesses:
                if w["cosigned_size"] is None:
                    print(
                        f"  witness {w['name']}: not cosigned yet "
                        "(run `facelab audit witness --lab LAB --witness-dir WDIR`)"
                    )
                    continue
                print(
                    f"  witness {w['name']}: cosigned size {w['cosigned_size']}"
                    f" ({rep.entries - w['cosigned_size']} entries since)"
                )
            for w in rep.warnings:
                print(f"  warning: {w}")
        return 0
    first = rep.first()
    assert first is not None
    where = f" at entry {first.entry}" if first.entry is not None else ""
    print(f"facelab: audit log TAMPERED: {first.kind}{where}: {first.message}", file=sys.stderr)
    if not args.json:
        for d in rep.damage[1:]:
            where = f" at entry {d.entry}" if d.entry is not None else ""
            print(f"  also: {d.kind}{where}: {d.message}")
    return 4


def _latest_checkpoint(lab):
    from facelab.audit import checkpoint as ckpt
    from facelab.audit.log import checkpoint_files
    from facelab.labdir import load_public_key

    files = checkpoint_files(lab.paths.audit)
    if not files:
        raise BadInputError(f"{lab.paths.audit}: no checkpoint yet")
    try:
        note = read_note(files[-1])
        cp = ckpt.verify(note, load_public_key(lab), lab.origin)  # strict UTF-8 first
        return note.decode(), cp
    except NoteError as e:
        raise TamperedError(f"{files[-1]}: {e}") from e


def _cmd_audit_checkpoint(args: argparse.Namespace) -> int:
    note, _ = _latest_checkpoint(open_lab_dir(args.lab))
    sys.stdout.write(note)
    return 0


def _cmd_audit_prove(args: argparse.Namespace) -> int:
    from facelab.audit import rfc9162
    from facelab.audit.proofs import prove_inclusion

    lab = open_lab_dir(args.lab)
    note, cp = _latest_checkpoint(lab)
    size = cp.size if args.size is None else args.size
    if size != cp.size:
        raise BadInputError(f"--size {size}: only the latest checkpoint ({cp.size}) is served")
    proof = prove_inclusion(lab.paths.audit, args.entry, size)
    # the leaf is the entry's own bytes hashed, never the hash store's copy: an entry
    # edited in place (store untouched) must not come back "verified"
    leaf = rfc9162.leaf_hash(proof.entry_line)
    try:
        rfc9162.verify_inclusion(proof.entry, size, leaf, proof.proof, cp.root)
        ok = True
    except ProofError:
        ok = False
    out = {
        **proof.to_json(),
        "leaf_hash": leaf.hex(),
        "root": cp.root.hex(),
        "checkpoint": note,
        "verified": ok,
    }
    print(json.dumps(out, indent=2))
    if not ok:
        why = (
            "its bytes do not hash to the leaf the log stores (edited)"
            if leaf != proof.leaf_hash
            else "its proof does not lead to the signed checkpoint's root"
        )
        print(
            f"facelab: audit log TAMPERED: entry {proof.entry}: {why}; run facelab audit verify",
            file=sys.stderr,
        )
    return 0 if ok else 4


def _cmd_audit_consistency(args: argparse.Namespace) -> int:
    from facelab.audit import checkpoint as ckpt
    from facelab.audit import rfc9162
    from facelab.audit.proofs import prove_consistency
    from facelab.labdir import load_public_key

    lab = open_lab_dir(args.lab)
    try:
        old = ckpt.verify(read_note(args.old), load_public_key(lab), lab.origin)
    except NoteError as e:
        raise TamperedError(f"{args.old}: {e}") from e
    note, new = _latest_checkpoint(lab)
    if old.size > new.size:
        print(
            f"facelab: audit log TAMPERED: truncated: {args.old} has size {old.size}, "
            f"the log's latest checkpoint {new.size}",
            file=sys.stderr,
        )
        return 4
    proof = prove_consistency(lab.paths.audit, old.size, new.size)
    ok, reason = True, ""
    try:
        rfc9162.verify_consistency(old.size, new.size, old.root, new.root, proof)
    except ProofError as e:
        ok, reason = False, str(e)
    print(
        json.dumps(
            {
                "old_size": old.size,
                "old_root": old.root.hex(),
                "new_size": new.size,
                "new_root": new.root.hex(),
                "proof": [p.hex() for p in proof],
                "consistent": ok,
                "checkpoint": note,
            },
            indent=2,
        )
    )
    if not ok:
        print(
            f"facelab: audit log TAMPERED: not consistent with {args.old}: {reason}",
            file=sys.stderr,
        )
        return 4
    return 0


def _cmd_audit_show(args: argparse.Namespace) -> int:
    from facelab.audit.show import filter_entries, format_table

    lab = open_lab_dir(args.lab)
    rows = filter_entries(
        lab.paths.audit, tenant=args.tenant, action=args.action, since=args.since, until=args.until
    )
    if args.json:
        print(json.dumps(rows, indent=2, ensure_ascii=False))
    else:
        print(format_table(rows))
    return 0


def _cmd_audit_repair(args: argparse.Namespace) -> int:
    from facelab.labdir import actor_name, audit_writer, read_passphrase

    lab = open_lab_dir(args.lab)
    actor = actor_name()
    with audit_writer(lab, read_passphrase(), repair_actor=actor) as log:
        log.rebuild()
        for r in log.recoveries:
            print(
                f"cut {r.bytes_cut} bytes ({r.kind}) after entry {r.after_entry}, "
                f"sha256 {r.sha256}; recorded as audit.recovered"
            )
        if not log.recoveries:
            print("nothing to cut; derived files rebuilt")
    return 0


def _cmd_witness_init(args: argparse.Namespace) -> int:
    from facelab.audit import witness

    vk = witness.init(args.dir, args.name)
    print(f"witness {args.name} created in {args.dir}; its verifier key (register it with")
    print("`facelab audit witness-add --lab LAB VKEY`):")
    print(vk)
    return 0


def _registered_vkeys(lab) -> set[str]:
    """The vkeys of the witnesses the log registered (``audit.witness_add`` entries)."""
    from facelab.audit.read import entries

    return {
        str(e["details"].get("vkey"))
        for e in entries(lab.paths.audit, b'"audit.witness_add"')
        if e.get("action") == "audit.witness_add" and isinstance(e.get("details"), dict)
    }


def _cmd_audit_witness_add(args: argparse.Namespace) -> int:
    from facelab.audit import Event
    from facelab.audit import checkpoint as ckpt

    text = args.vkey
    if Path(text).is_file():
        text = read_text(Path(text)).strip()
    from facelab.labdir import load_public_key, public_key_b64

    try:
        name, alg, wkey = ckpt.parse_vkey(text)
    except NoteError as e:
        raise BadInputError(f"{args.vkey}: {e}") from e
    if alg != ckpt.COSIGNATURE_V1:
        raise BadInputError(f"{args.vkey}: not a cosignature/v1 (witness) key")
    from facelab.audit.witness import check_name

    check_name(name, f"{args.vkey}: witness name")
    lab, _root, log, actor = unlocked(args.lab)
    if public_key_b64(wkey) == public_key_b64(load_public_key(lab)):
        log.close()
        raise BadInputError(f"{args.vkey}: a witness key must not be the lab key")
    if text in _registered_vkeys(lab):  # idempotent: a rerun adds no second entry
        log.close()
        print(f"witness {name} is already registered")
        return 0
    with log:
        log.record(
            Event(
                "audit.witness_add",
                actor,
                object=f"vkey:{text.split('+')[1]}",
                details={"name": name, "vkey": text},
            )
        )
    print(f"registered witness {name}; `facelab audit verify` now requires its cosignature")
    return 0


def _cmd_audit_witness(args: argparse.Namespace) -> int:
    from facelab.audit import witness

    lab = open_lab_dir(args.lab)
    c = witness.cosign(args.witness_dir, lab)
    from facelab.audit import pins

    # this machine saw the witness cosign this size: a later deletion or rollback of the
    # cosignature in the lab is witness-rolled-back
    if why := pins.advance_witnesses(lab.origin, {c.name: c.new_size}):
        print(f"facelab: warning: the cosigned size was not pinned ({why})", file=sys.stderr)
    print(
        f"witness {c.name}: checked consistency from size {c.old_size} to {c.new_size} "
        f"and cosigned; {c.path}"
    )
    return 0


def _cmd_audit_verify_proof(args: argparse.Namespace) -> int:
    from facelab.audit.proofs import verify_inclusion_document
    from facelab.labdir import public_key_from_b64

    key = public_key_from_b64(read_text(args.key), args.key)
    try:
        doc = read_json(args.proof, what="a proof")
    except ValueError as e:
        raise BadInputError(f"{args.proof}: not JSON") from e
    try:
        r = verify_inclusion_document(doc, key)
    except (ProofError, NoteError) as e:
        raise TamperedError(f"{args.proof}: {e}") from e
    print(f"{args.proof}: entry {r['entry']} is in {r['origin']} at size {r['tree_size']}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    """Add this module's commands to the `facelab` parser."""
    a = sub.add_parser("audit", help="the tamper-evident audit log")
    asub = a.add_subparsers(dest="audit_command", required=True)
    v = asub.add_parser("verify", help="verify the whole log and every checkpoint")
    v.add_argument("--lab", type=Path, required=True)
    v.add_argument("--trusted-key", type=Path, help="the lab's public key, kept outside the lab")
    v.add_argument("--witness", type=Path, help="a checkpoint kept by a witness")
    v.add_argument(
        "--no-pin",
        action="store_true",
        help="neither check nor record this machine's pin of the lab key "
        "($FACELAB_KNOWN_LABS or ~/.config/facelab/known_labs.json)",
    )
    v.add_argument("--json", action="store_true")
    v.set_defaults(func=_cmd_audit_verify)
    c = asub.add_parser("checkpoint", help="print the latest signed checkpoint")
    c.add_argument("--lab", type=Path, required=True)
    c.set_defaults(func=_cmd_audit_checkpoint)
    pr = asub.add_parser("prove", help="inclusion proof of one entry (JSON)")
    pr.add_argument("--lab", type=Path, required=True)
    pr.add_argument("--entry", type=int, required=True)
    pr.add_argument(
        "--size", type=int, default=None, help="tree size (default: the latest checkpoint)"
    )
    pr.set_defaults(func=_cmd_audit_prove)
    co = asub.add_parser("consistency", help="prove the log extends an older checkpoint")
    co.add_argument("--lab", type=Path, required=True)
    co.add_argument("--old", type=Path, required=True, help="an older checkpoint file")
    co.set_defaults(func=_cmd_audit_consistency)
    sh = asub.add_parser("show", help="list entries, filtered")
    sh.add_argument("--lab", type=Path, required=True)
    sh.add_argument("--tenant")
    sh.add_argument("--action", help="exact action, or a prefix ending in '*'")
    sh.add_argument("--since", help="ISO 8601 time, inclusive")
    sh.add_argument("--until", help="ISO 8601 time, exclusive")
    sh.add_argument("--json", action="store_true")
    sh.set_defaults(func=_cmd_audit_show)
    rp = asub.add_parser("repair", help="cut a torn or garbage tail, on the record")
    rp.add_argument("--lab", type=Path, required=True)
    rp.set_defaults(func=_cmd_audit_repair)
    aw = asub.add_parser("witness", help="a witness checks consistency and cosigns")
    aw.add_argument("--lab", type=Path, required=True)
    aw.add_argument("--witness-dir", type=Path, required=True, help="the witness's directory")
    aw.set_defaults(func=_cmd_audit_witness)
    avp = asub.add_parser("verify-proof", help="check a `prove` output offline (public key)")
    avp.add_argument("proof", type=Path, help="the JSON that `facelab audit prove` printed")
    avp.add_argument("--key", type=Path, required=True, help="the lab's public key file")
    avp.set_defaults(func=_cmd_audit_verify_proof)
    awa = asub.add_parser("witness-add", help="register a witness key (on the record)")
    awa.add_argument("--lab", type=Path, required=True)
    awa.add_argument("vkey", help="the witness's verifier key, or a file holding it")
    awa.set_defaults(func=_cmd_audit_witness_add)
    wi = sub.add_parser("witness", help="a witness of the lab's audit log (its own key)")
    wisub = wi.add_subparsers(dest="witness_command", required=True)
    wii = wisub.add_parser("init", help="create a witness key and state directory")
    wii.add_argument("--dir", type=Path, required=True)
    wii.add_argument("--name", required=True)
    wii.set_defaults(func=_cmd_witness_init)
