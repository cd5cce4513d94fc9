"""The `facelab` command: parses, calls the `lab` API, prints, maps errors to exit codes.

Exit codes (DESIGN.md): 0 success, 2 usage or bad input, 3 refused by a gate,
4 audit log tampered. Every error is one line on stderr, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NoReturn

from facelab import __version__
from facelab.errors import BadInputError, FacelabError, NoteError, ProofError, TamperedError


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}\n")


def _progress_bar(total: int, desc: str) -> tuple[Callable[[int], None] | None, Callable[[], None]]:
    """A tqdm bar on a terminal; nothing when stderr is not one (logs, CI)."""
    if not sys.stderr.isatty():
        return None, lambda: None
    from tqdm import tqdm

    bar = tqdm(total=total, desc=desc, unit="id", file=sys.stderr, leave=False)
    return bar.update, bar.close


def _cmd_synth(args: argparse.Namespace) -> int:
    from facelab.synth import SynthConfig, write_dataset

    cfg = SynthConfig(
        identities=args.identities,
        captures=args.captures,
        seed=args.seed,
        difficulty=args.difficulty,
        size=args.size,
    )
    cfg.validate()
    log = None
    if args.lab is not None:  # open the log first: a wrong passphrase fails before the work
        from facelab.labdir import audit_writer, open_lab, read_passphrase

        log = audit_writer(open_lab(args.lab), read_passphrase())
    update, close = _progress_bar(cfg.identities, "synth")
    try:
        s = write_dataset(cfg, args.out, force=args.force, workers=args.workers, progress=update)
    finally:
        close()
    if log is not None:
        from facelab.audit import Event
        from facelab.labdir import actor_name
        from facelab.synth import dataset_digest

        with log:
            log.record(
                Event(
                    action="dataset.synth",
                    actor=actor_name(),
                    role="operator",
                    object=dataset_digest(s.out),
                    details={
                        "identities": cfg.identities,
                        "captures": cfg.captures,
                        "seed": cfg.seed,
                        "difficulty": cfg.difficulty,
                        "size": cfg.size,
                        "images": s.images,
                        "path": str(s.out),
                    },
                )
            )
    print(
        f"wrote {s.images} images of {s.identities} identities to {s.out} "
        f"in {s.seconds:.2f} s ({s.images_per_second:.0f} images/s)"
    )
    return 0


def _cmd_init(args: argparse.Namespace) -> int:
    from facelab.labdir import actor_name, init_and_record, read_passphrase

    lab = init_and_record(args.lab, read_passphrase(), actor_name())
    print(f"initialised lab {lab.lab_id} in {lab.paths.root} (audit origin {lab.origin})")
    return 0


def _open_lab(path: Path):
    from facelab.labdir import open_lab

    return open_lab(path)


def _cmd_audit_verify(args: argparse.Namespace) -> int:
    from facelab.audit import verify_log
    from facelab.labdir import audit_limits, load_public_key, public_key_from_b64

    lab = _open_lab(args.lab)
    trusted = None
    if args.trusted_key:
        trusted = public_key_from_b64(_read_text(args.trusted_key), args.trusted_key)
    witness = _read_note(args.witness) if args.witness else None
    rep = verify_log(
        lab.paths.audit,
        lab.origin,
        load_public_key(lab),
        trusted_key=trusted,
        witness=witness,
        head_dir=lab.paths.keys,
        max_unwitnessed=audit_limits(lab)["max_unwitnessed"],
        require_witness=bool(audit_limits(lab)["require_witness"]),
    )
    if args.json:
        print(json.dumps(rep.to_json(), indent=2))
    if rep.intact:
        if not args.json:
            print(
                f"audit log intact: {rep.entries} entries, {rep.checkpoints} signed "
                f"checkpoints (latest at size {rep.latest_size}, head {rep.head_size})"
            )
            for w in rep.witnesses:
                print(
                    f"  witness {w['name']}: cosigned size {w['cosigned_size']}"
                    f" ({rep.entries - (w['cosigned_size'] or 0)} entries since)"
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


def _read_text(path: Path) -> str:
    try:
        return Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise BadInputError(f"{path}: unreadable ({getattr(e, 'strerror', None) or e})") from e


def _read_note(path: Path) -> bytes:
    """A note file's bytes: missing or unreadable is exit 2, malformed later exit 4."""
    from facelab.audit import checkpoint as ckpt

    try:
        return ckpt.read_note_file(path)
    except NoteError as e:
        raise NoteError(f"{path}: {e}") from e
    except OSError as e:
        raise BadInputError(f"{path}: unreadable ({e.strerror or e})") from e


def _latest_checkpoint(lab):
    from facelab.audit import checkpoint as ckpt
    from facelab.audit.log import checkpoint_files
    from facelab.labdir import load_public_key

    files = checkpoint_files(lab.paths.audit)
    if not files:
        raise BadInputError(f"{lab.paths.audit}: no checkpoint yet")
    try:
        note = _read_note(files[-1])
        return note.decode(), ckpt.verify(note, load_public_key(lab), lab.origin)
    except NoteError as e:
        raise TamperedError(f"{files[-1]}: {e}") from e


def _cmd_audit_checkpoint(args: argparse.Namespace) -> int:
    note, _ = _latest_checkpoint(_open_lab(args.lab))
    sys.stdout.write(note)
    return 0


def _cmd_audit_prove(args: argparse.Namespace) -> int:
    from facelab.audit import rfc9162
    from facelab.audit.proofs import prove_inclusion

    lab = _open_lab(args.lab)
    note, cp = _latest_checkpoint(lab)
    size = args.size or cp.size
    if size != cp.size:
        raise BadInputError(f"--size {size}: only the latest checkpoint ({cp.size}) is served")
    proof = prove_inclusion(lab.paths.audit, args.entry, size)
    try:
        rfc9162.verify_inclusion(proof.entry, size, proof.leaf_hash, proof.proof, cp.root)
        ok = True
    except ProofError:
        ok = False
    out = {**proof.to_json(), "root": cp.root.hex(), "checkpoint": note, "verified": ok}
    print(json.dumps(out, indent=2))
    return 0 if ok else 4


def _cmd_audit_consistency(args: argparse.Namespace) -> int:
    from facelab.audit import checkpoint as ckpt
    from facelab.audit import rfc9162
    from facelab.audit.proofs import prove_consistency
    from facelab.labdir import load_public_key

    lab = _open_lab(args.lab)
    try:
        old = ckpt.verify(_read_note(args.old), load_public_key(lab), lab.origin)
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

    lab = _open_lab(args.lab)
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

    lab = _open_lab(args.lab)
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


# ---- witnesses and certificates (issue 14) -------------------------------------------
def _cmd_witness_init(args: argparse.Namespace) -> int:
    from facelab.audit import witness

    vk = witness.init(args.dir, args.name)
    print(f"witness {args.name} created in {args.dir}; its verifier key (register it with")
    print("`facelab audit witness-add --lab LAB VKEY`):")
    print(vk)
    return 0


def _cmd_audit_witness_add(args: argparse.Namespace) -> int:
    from facelab.audit import Event
    from facelab.audit import checkpoint as ckpt

    text = args.vkey
    if Path(text).is_file():
        text = _read_text(Path(text)).strip()
    from facelab.labdir import load_public_key, public_key_b64

    try:
        name, alg, wkey = ckpt.parse_vkey(text)
    except NoteError as e:
        raise BadInputError(f"{args.vkey}: {e}") from e
    if alg != ckpt.COSIGNATURE_V1:
        raise BadInputError(f"{args.vkey}: not a cosignature/v1 (witness) key")
    lab, _root, log, actor = _unlocked(args.lab)
    if public_key_b64(wkey) == public_key_b64(load_public_key(lab)):
        log.close()
        raise BadInputError(f"{args.vkey}: a witness key must not be the lab key")
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

    lab = _open_lab(args.lab)
    c = witness.cosign(args.witness_dir, lab)
    print(
        f"witness {c.name}: checked consistency from size {c.old_size} to {c.new_size} "
        f"and cosigned; {c.path}"
    )
    return 0


def _cmd_audit_verify_proof(args: argparse.Namespace) -> int:
    from facelab.audit.proofs import verify_inclusion_document
    from facelab.labdir import public_key_from_b64

    key = public_key_from_b64(_read_text(args.key), args.key)
    try:
        doc = json.loads(_read_text(args.proof))
    except ValueError as e:
        raise BadInputError(f"{args.proof}: not JSON") from e
    try:
        r = verify_inclusion_document(doc, key)
    except (ProofError, NoteError) as e:
        raise TamperedError(f"{args.proof}: {e}") from e
    print(f"{args.proof}: entry {r['entry']} is in {r['origin']} at size {r['tree_size']}")
    return 0


def _cmd_certificate_verify(args: argparse.Namespace) -> int:
    from facelab.labdir import public_key_from_b64
    from facelab.vault import certificate

    keys = [public_key_from_b64(_read_text(k), k) for k in args.key]
    out = certificate.verify_file(args.certificate, keys)
    cert = out["certificate"]
    print(
        f"{args.certificate}: performer {out['performer']} signature verifies; validator "
        f"{out['validator'] or 'NONE YET (pending validation)'}; tenant "
        f"{cert['media_information']['tenant']}, result "
        f"{cert['sanitization_details']['verification_result']}"
    )
    if args.require_validation and out["validator"] is None:
        print(f"facelab: error: {args.certificate}: not validated yet", file=sys.stderr)
        return 4
    return 0


def _cmd_certificate_validate(args: argparse.Namespace) -> int:
    import base64
    from datetime import UTC, datetime

    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from facelab.labdir import public_key_from_b64
    from facelab.vault import certificate

    try:
        raw = base64.b64decode(Path(args.key_file).read_bytes().strip(), validate=True)
        key = Ed25519PrivateKey.from_private_bytes(raw)
    except (OSError, ValueError) as e:
        raise BadInputError(f"{args.key_file}: not a base64 Ed25519 private key") from e
    doc = certificate.read(args.certificate)
    performer = public_key_from_b64(_read_text(args.performer_key), args.performer_key)
    certificate.verify_document(doc, [performer])
    when = datetime.now(UTC).isoformat(timespec="seconds")
    doc = certificate.add_validation(doc, key, args.name, when, args.title)
    certificate.write(doc, Path(args.certificate))
    print(f"{args.certificate}: validated by {args.name} ({when})")
    return 0


def _unlocked(lab_path: Path, tenant: str | None = None):
    """Check the tenant name (if any) before anything else, open the lab, unlock its
    root key once, and open its audit log for recording."""
    from facelab.labdir import actor_name, audit_writer, open_lab, read_passphrase, unlock
    from facelab.vault.store import check_tenant

    if tenant is not None:
        check_tenant(tenant)
    from facelab.vault import ops

    lab = open_lab(lab_path)
    root = unlock(lab, read_passphrase())
    log, actor = audit_writer(lab, root), actor_name()
    try:  # finish what a crash interrupted; stop if the vault disagrees with the log
        for r in ops.reconcile(lab, root, log, actor):
            print(
                f"facelab: reconciled an interrupted {r['action']} of {r['tenant'] or '-'} "
                f"(entry {r['intent']}): {r['outcome']}",
                file=sys.stderr,
            )
    except BaseException:
        log.close()
        raise
    return lab, root, log, actor


def _cmd_ingest(args: argparse.Namespace) -> int:
    from facelab.vault import ops

    lab, root, log, actor = _unlocked(args.lab, args.tenant)
    with log:
        r = ops.ingest(
            lab, root, args.tenant, args.dataset, actor, log, delete_source=args.delete_source
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


def _cmd_destroy(args: argparse.Namespace) -> int:
    from facelab.vault import ops

    lab, root, log, actor = _unlocked(args.lab, args.tenant)
    with log:
        path = ops.destroy(lab, root, args.tenant, actor, log)
    cert = json.loads(path.read_text())["certificate"]
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

    lab, root, log, actor = _unlocked(args.lab)
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


def _cmd_model_keygen(args: argparse.Namespace) -> int:
    from facelab.gates.importing.keys import write_keypair

    priv, pub, policy_line = write_keypair(args.kind, args.out)
    print(f"private key: {priv}\npublic key:  {pub}\npolicy entry: {policy_line}")
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

    lab, _root, log, actor = _unlocked(args.lab, args.tenant)
    with log:
        report = import_model(lab, args.tenant, args.package, actor, log)
    if args.json:
        print(json.dumps(report.to_json(), indent=2))
    else:
        print(report.table())
    if not report.accepted:
        names = ", ".join(c.name for c in report.failed())
        print(f"facelab: import refused: {args.package}: failed {names}", file=sys.stderr)
        return 3
    return 0


def _cmd_export(args: argparse.Namespace) -> int:
    from facelab.gates.exporting.ops import Override, export

    override = None
    if args.override is not None:
        try:
            doc = json.loads(args.override.read_text())
            override = Override(str(doc["reviewer"]), str(doc["reason"]), str(doc["signature"]))
        except (ValueError, KeyError, TypeError) as e:
            raise BadInputError(f"{args.override}: not an override file ({e})") from e
    lab, root, log, actor = _unlocked(args.lab, args.tenant)
    with log:
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

    lab = _open_lab(args.lab)
    path = args.release / "manifest.json"
    try:
        doc = json.loads(path.read_text())
    except ValueError as e:
        raise BadInputError(f"{path}: not JSON ({e})") from e
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


def _cmd_job_run(args: argparse.Namespace) -> int:
    from facelab.jobs import run_job

    try:
        spec = json.loads(args.spec.read_text(encoding="utf-8"))
    except ValueError as e:
        raise BadInputError(f"{args.spec}: not JSON ({e})") from e
    lab, root, log, actor = _unlocked(args.lab, args.tenant)
    with log:
        r = run_job(lab, root, args.tenant, spec, actor, log)
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


def _cmd_retention_run(args: argparse.Namespace) -> int:
    from datetime import date

    from facelab.vault import retention

    lab, root, log, actor = _unlocked(args.lab)
    try:
        today = date.fromisoformat(args.today) if args.today else None
    except ValueError as e:
        raise BadInputError(f"--today {args.today!r}: not a date (YYYY-MM-DD)") from e
    with log:
        due = retention.run(lab, root, actor, log, today=today, dry_run=args.dry_run)
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
    from facelab.vault import retention

    lab = open_lab(args.lab)  # read-only: the audit log is not opened
    rows = retention.register(lab, unlock(lab, read_passphrase()))
    if args.json:
        print(json.dumps(retention.register_document(lab, rows), indent=2))
    else:
        print(retention.register_text(lab, rows), end="")
    return 0


def _cmd_model_list(args: argparse.Namespace) -> int:
    from facelab.gates.importing import list_models
    from facelab.gates.importing.ops import models_dir

    rows = list_models(models_dir(_open_lab(args.lab)))
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


def _scorer(scheduler: str | None, client_out: list | None = None):
    from facelab.bench import score_pairs

    if scheduler is None:
        return score_pairs
    try:
        import distributed
    except ImportError as e:
        raise BadInputError(
            "--scheduler needs the cluster extra: pip install 'facelab[cluster]'"
        ) from e
    from functools import partial

    from facelab.bench._cluster import score_pairs_on_cluster

    try:
        client = distributed.Client(scheduler, timeout=10)
    except OSError as e:
        raise BadInputError(f"--scheduler {scheduler}: cannot connect ({e})") from e
    if client_out is not None:
        client_out.append(client)
    return partial(score_pairs_on_cluster, client)


# -- facelab bench / facelab compare (lab/bench) -------------------------------------
def _read_scores(path: Path):
    """A 1-D array of scores from .npy or text (one number a line; 'nan' = failure)."""
    import numpy as np

    try:
        if path.suffix == ".npy":
            a = np.load(path, allow_pickle=False)
        else:
            a = np.loadtxt(path, dtype=np.float64, ndmin=1)
    except (OSError, ValueError) as e:
        raise BadInputError(f"{path}: not a score file ({e})") from e
    if a.ndim != 1:
        raise BadInputError(f"{path}: scores must be one number a line (a 1-D array)")
    return a


def _cmd_bench(args: argparse.Namespace) -> int:
    from facelab.bench._matcher import Matcher
    from facelab.bench.report import write_comparison, write_report
    from facelab.bench.run import (
        provenance,
        run_benchmark,
        samples_from_dataset,
        score_report,
        summary_table,
    )

    out = args.out or Path("bench-report")
    if args.scores is not None:  # scores computed elsewhere
        gen, imp = (_read_scores(Path(f)) for f in args.scores)
        report = score_report(gen, imp, kind=args.score_kind or "similarity")
        page = write_report(report, out)
        print(summary_table(report))
        print(f"  report: {page}")
        return 0
    models = args.model or []
    if not models:
        raise BadInputError("facelab bench: give --model (or --scores GEN IMP)")
    if args.lab is not None:
        from facelab.bench.lab_run import bench_in_lab

        if not args.tenant:
            raise BadInputError("facelab bench --lab needs --tenant")
        if args.device != "cpu":
            raise BadInputError("facelab bench --lab: jobs run on the CPU (--device cpu)")
        lab, root, log, actor = _unlocked(args.lab, args.tenant)
        with log:
            for ref in models:
                report, page = bench_in_lab(
                    lab, root, args.tenant, str(ref), actor, log, split=args.split
                )
                print(summary_table(report))
                print(f"  report (in the tenant's outbox, a confined job's output): {page}")
        return 0
    if args.dataset is None:
        raise BadInputError("facelab bench: give --lab LAB --tenant T, or --dataset DIR")
    clients: list = []
    scorer = _scorer(args.scheduler, clients)  # an unreachable cluster fails first
    samples = samples_from_dataset(args.dataset)
    reports = []
    for ref in models:
        if ref == "dlib":
            from facelab.bench._dlib import DlibMatcher

            matcher = DlibMatcher()
        else:
            matcher = Matcher(
                Path(ref), args.device, warn=lambda m: print(f"facelab: {m}", file=sys.stderr)
            )
        extract = None
        if clients and ref != "dlib":  # extraction on the cluster too
            from facelab.bench._cluster import extract_on_cluster

            extract = extract_on_cluster(clients[0], Path(ref).resolve(), args.device)
        update, close = _progress_bar(len(samples), "extract")
        try:
            report = run_benchmark(
                samples, matcher, progress=update, scorer=scorer, extract=extract
            )
        finally:
            close()
        report["provenance"].update(provenance(matcher, args.dataset))
        if args.score_kind and args.score_kind != "similarity":
            report["warnings"].append(
                "--score-kind applies to --scores; templates are compared by cosine similarity"
            )
        where = out if len(models) == 1 else out / Path(ref).name
        page = write_report(report, where)
        print(summary_table(report))
        print(f"  report: {page} (and report.json, det.png, scores.png, groups.png)")
        reports.append(report)
    if len(reports) > 1:
        print(f"  comparison: {write_comparison(reports, out)}")
    return 0


def _cmd_compare(args: argparse.Namespace) -> int:
    import json as _json

    from facelab.bench.report import write_comparison

    reports = []
    for r in args.reports:
        f = r / "report.json" if r.is_dir() else r
        try:
            doc = _json.loads(f.read_text(encoding="utf-8"))
            doc["det"], doc["eer"], doc["operating_points"], doc["model"]
        except (OSError, ValueError) as e:
            raise BadInputError(f"{f}: not a report.json ({e})") from e
        except (KeyError, TypeError) as e:
            raise BadInputError(f"{f}: not a facelab benchmark report (no {e})") from e
        reports.append(doc)
    page = write_comparison(reports, args.out or Path("bench-compare"))
    print(f"comparison of {len(reports)} runs: {page}")
    return 0


# -- end of facelab bench / compare ----------------------------------------------------


def _cmd_demo(args: argparse.Namespace) -> int:

    from facelab.demo import run_demo
    from facelab.labdir import PASSPHRASE_ENV, captured_secret

    env_pw = captured_secret(PASSPHRASE_ENV)
    update, close = _progress_bar(200, "demo synth")
    try:
        r = run_demo(args.lab, passphrase=env_pw.encode() if env_pw else None, progress=update)
    finally:
        close()
    d = r.dataset
    print(f"facelab demo: lab in {r.root}")
    if r.passphrase_generated:
        print(
            f"  {PASSPHRASE_ENV} was not set: the demo lab is locked with a one-time "
            "passphrase (set it to choose one)"
        )
    print(
        f"  synthetic dataset: {d.identities} identities, {d.images} images, "
        f"{d.seconds:.2f} s ({d.images_per_second:.0f} images/s)"
    )
    print(
        "  identities per nationality: "
        + ", ".join(f"{k} {v}" for k, v in d.by_nationality.items())
    )
    print("  identities per sex: " + ", ".join(f"{k} {v}" for k, v in d.by_sex.items()))
    print(f"  contact sheet: {r.contact_sheet}")
    print(f"  benchmark report: {r.bench_report}")
    print(f"  register of processors: {r.register}")
    print(f"  demo report (controls, plots): {r.html}")
    a = r.audit
    state = "intact" if a.intact else f"TAMPERED ({a.first()})"
    print(f"  audit log: {a.entries} entries, {a.checkpoints} signed checkpoints, {state}")
    w = max(len(name) for name, _ in r.controls)
    print(f"\n  {'control':<{w}}  outcome")
    for name, outcome in r.controls:
        print(f"  {name:<{w}}  {outcome}")
    return 0 if a.intact else 4


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="facelab", description="A privacy-preserving face-data lab harness.")
    p.add_argument("--version", action="version", version=f"facelab {__version__}")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

    s = sub.add_parser("synth", help="write a seeded synthetic face dataset")
    s.add_argument("--out", type=Path, required=True, help="dataset directory to create")
    s.add_argument("--identities", type=int, required=True, help="number of identities")
    s.add_argument("--captures", type=int, default=2, help="gate captures per identity")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument(
        "--difficulty",
        type=float,
        default=1.0,
        help="scale of the within-identity variation (0-3, default 1)",
    )
    s.add_argument("--size", type=int, default=112, help="image width and height in pixels")
    s.add_argument("--workers", type=int, default=None, help="worker processes (default: CPUs)")
    s.add_argument("--force", action="store_true", help="replace a non-empty --out")
    s.add_argument(
        "--lab",
        type=Path,
        default=None,
        help="record the dataset (digest, arguments) in this lab's audit log",
    )
    s.set_defaults(func=_cmd_synth)

    i = sub.add_parser("init", help="create a lab directory: keys, audit log, policy copy")
    i.add_argument("lab", type=Path)
    i.set_defaults(func=_cmd_init)

    g = sub.add_parser("ingest", help="encrypt a dataset into the vault")
    g.add_argument("--lab", type=Path, required=True)
    g.add_argument("--tenant", required=True)
    g.add_argument("dataset", type=Path)
    g.add_argument(
        "--delete-source",
        action="store_true",
        help="delete the plaintext after reading it back from the vault",
    )
    g.set_defaults(func=_cmd_ingest)

    x = sub.add_parser("destroy", help="crypto-shred a tenant; write a signed certificate")
    x.add_argument("--lab", type=Path, required=True)
    x.add_argument("--tenant", required=True)
    x.set_defaults(func=_cmd_destroy)

    vl = sub.add_parser("vault", help="the encrypted record store")
    vsub = vl.add_subparsers(dest="vault_command", required=True, parser_class=_Parser)
    vls = vsub.add_parser("list", help="tenants, record counts, datasets")
    vls.add_argument("--lab", type=Path, required=True)
    vls.add_argument("--json", action="store_true")
    vls.set_defaults(func=_cmd_vault_list)

    m = sub.add_parser("model", help="model packages: keys, signing, approval, import gate")
    msub = m.add_subparsers(dest="model_command", required=True, parser_class=_Parser)
    mk = msub.add_parser(
        "keygen", help="a key pair for a tenant (signing), an import officer or an export reviewer"
    )
    mk.add_argument("--kind", choices=["tenant", "officer", "reviewer"], required=True)
    mk.add_argument("--out", type=Path, required=True, help="path prefix of the key files")
    mk.set_defaults(func=_cmd_model_keygen)
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

    a = sub.add_parser("audit", help="the tamper-evident audit log")
    asub = a.add_subparsers(dest="audit_command", required=True, parser_class=_Parser)
    v = asub.add_parser("verify", help="verify the whole log and every checkpoint")
    v.add_argument("--lab", type=Path, required=True)
    v.add_argument("--trusted-key", type=Path, help="the lab's public key, kept outside the lab")
    v.add_argument("--witness", type=Path, help="a checkpoint kept by a witness")
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
    wisub = wi.add_subparsers(dest="witness_command", required=True, parser_class=_Parser)
    wii = wisub.add_parser("init", help="create a witness key and state directory")
    wii.add_argument("--dir", type=Path, required=True)
    wii.add_argument("--name", required=True)
    wii.set_defaults(func=_cmd_witness_init)
    ce = sub.add_parser("certificate", help="destruction certificates")
    cesub = ce.add_subparsers(dest="certificate_command", required=True, parser_class=_Parser)
    cev = cesub.add_parser("verify", help="verify a certificate offline with public keys")
    cev.add_argument("certificate", type=Path)
    cev.add_argument(
        "--key", type=Path, action="append", required=True, help="a public key file (repeatable)"
    )
    cev.add_argument("--require-validation", action="store_true", help="exit 4 if unvalidated")
    cev.set_defaults(func=_cmd_certificate_verify)
    cva = cesub.add_parser("validate", help="validator: check and counter-sign a certificate")
    cva.add_argument("certificate", type=Path)
    cva.add_argument("--key-file", type=Path, required=True, help="validator's private key")
    cva.add_argument("--performer-key", type=Path, required=True, help="the lab's public key")
    cva.add_argument("--name", required=True)
    cva.add_argument("--title", default="data protection officer")
    cva.set_defaults(func=_cmd_certificate_validate)

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
    rv.add_argument("--out", type=Path, required=True)
    rv.add_argument("artifacts", type=Path, nargs="+")
    rv.set_defaults(func=_cmd_review)
    rl = sub.add_parser("release", help="released artifacts")
    rlsub = rl.add_subparsers(dest="release_command", required=True, parser_class=_Parser)
    rlv = rlsub.add_parser("verify", help="check a release's signed manifest and files")
    rlv.add_argument("--lab", type=Path, required=True)
    rlv.add_argument("release", type=Path)
    rlv.set_defaults(func=_cmd_release_verify)

    j = sub.add_parser("job", help="tenant jobs in the zero client")
    jsub = j.add_subparsers(dest="job_command", required=True, parser_class=_Parser)
    jr = jsub.add_parser("run", help="run a job spec (JSON) under the policy and sandbox")
    jr.add_argument("--lab", type=Path, required=True)
    jr.add_argument("--tenant", required=True)
    jr.add_argument("spec", type=Path)
    jr.add_argument("--json", action="store_true")
    jr.set_defaults(func=_cmd_job_run)
    rt = sub.add_parser("retention", help="destroy tenants past their retention")
    rtsub = rt.add_subparsers(dest="retention_command", required=True, parser_class=_Parser)
    rr = rtsub.add_parser("run", help="destroy every tenant whose destruction is due")
    rr.add_argument("--lab", type=Path, required=True)
    rr.add_argument("--today", help="the date to judge by (YYYY-MM-DD; default today)")
    rr.add_argument("--dry-run", action="store_true")
    rr.set_defaults(func=_cmd_retention_run)
    rg = sub.add_parser("register", help="the public register of processors")
    rg.add_argument("--lab", type=Path, required=True)
    rg.add_argument("--json", action="store_true")
    rg.set_defaults(func=_cmd_register)

    b = sub.add_parser("bench", help="1:1 verification benchmark (FNMR at fixed FMR, EER)")
    b.add_argument("--lab", type=Path, default=None)
    b.add_argument("--tenant", default=None)
    b.add_argument("--dataset", type=Path, default=None, help="a plain dataset directory")
    b.add_argument(
        "--model",
        action="append",
        help="with --lab: a registered model "
        "(name@version or digest); with --dataset: a model directory, or "
        "'dlib' for dlib's ResNet reference (the reference extra); repeat it to compare "
        "several models on one DET (compare.html)",
    )
    b.add_argument(
        "--scores",
        nargs=2,
        type=Path,
        metavar=("GENUINE", "IMPOSTOR"),
        help="metrics of scores computed elsewhere (.npy or one number a line; nan = a "
        "failed comparison)",
    )
    b.add_argument(
        "--score-kind",
        choices=["similarity", "distance"],
        default=None,
        help="with --scores: similarity (match when score >= t, the default) or distance "
        "(match when score <= t)",
    )
    b.add_argument(
        "--split",
        default="test",
        choices=["train", "verification", "test"],
        help="with --lab: which split of the tenant's records the job reads (default test)",
    )
    b.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    b.add_argument(
        "--scheduler",
        default=None,
        help="tcp://HOST:PORT of a Dask scheduler: score the blocks on the cluster",
    )
    b.add_argument("--out", type=Path, default=None)
    b.set_defaults(func=_cmd_bench)
    cmp_ = sub.add_parser("compare", help="several benchmark reports on one DET")
    cmp_.add_argument("reports", nargs="+", type=Path, help="report.json files or their dirs")
    cmp_.add_argument("--out", type=Path, default=None, help="output dir (bench-compare)")
    cmp_.set_defaults(func=_cmd_compare)

    d = sub.add_parser("demo", help="the lab story end to end on small synthetic data")
    d.add_argument(
        "--lab",
        type=Path,
        default=None,
        help="the demo lab to create (default: a new temporary directory)",
    )
    d.set_defaults(func=_cmd_demo)
    from facelab.commands import accountability, scan  # issue 18: subject, evidence, scan-*

    for group in (accountability, scan):
        group.register(sub)
    return p


def _absolute_paths(args: argparse.Namespace) -> None:
    """Every path argument made absolute once, here, against the working directory the
    user typed it in; nothing below depends on the working directory."""
    for k, v in vars(args).items():
        if isinstance(v, Path):
            setattr(args, k, Path(os.path.abspath(v)))
        elif isinstance(v, list) and v and all(isinstance(x, Path) for x in v):
            setattr(args, k, [Path(os.path.abspath(x)) for x in v])


def main(argv: Sequence[str] | None = None) -> int:
    from facelab.labdir import capture_secrets

    capture_secrets()  # no child of any kind inherits the operator secret
    args = build_parser().parse_args(argv)
    _absolute_paths(args)
    try:
        return int(args.func(args))
    except FacelabError as e:
        print(f"facelab: error: {e}", file=sys.stderr)
        return e.exit_code
    except OSError as e:  # a read-only directory, a full disk, a missing file
        where = e.filename or "facelab"
        print(f"facelab: error: {where}: {e.strerror or e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("facelab: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
