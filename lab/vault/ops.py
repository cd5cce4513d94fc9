"""Vault operations as the lab runs them: each one audited.

``ingest`` validates a dataset, encrypts it in one transaction and records it;
``delete_source`` then removes the plaintext only after reading every image back from
the vault and matching its digest. ``read`` hands records to lab code and records the
access. ``destroy`` crypto-shreds a tenant, scans every file of the lab for any copy of
its wrapped key, and writes a signed destruction certificate.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

from lab import __version__
from lab.audit import AuditLog, Event
from lab.errors import BadInputError
from lab.labdir import Lab, load_signing_key
from lab.synth import dataset_digest
from lab.vault import certificate
from lab.vault.dataset import read_dataset
from lab.vault.keystore import RootKey
from lab.vault.store import IngestResult, Record, Vault, check_tenant


def open_vault(lab: Lab, root: RootKey, **kw) -> Vault:
    return Vault(lab.paths.vault, root, lab.policy.vault, **kw)


def ingest(
    lab: Lab,
    root: RootKey,
    tenant: str,
    dataset: Path | str,
    actor: str,
    log: AuditLog,
    *,
    delete_source: bool = False,
    **vault_kw,
) -> IngestResult:
    check_tenant(tenant)
    dataset = Path(dataset)
    items = read_dataset(dataset, lab.policy.vault.max_image_side)
    digest = dataset_digest(dataset)
    with open_vault(lab, root, **vault_kw) as v:
        res = v.ingest(tenant, items, digest)
        log.record(
            Event(
                "vault.ingest",
                actor,
                tenant=tenant,
                object=digest,
                decision="unchanged" if res.already_present else "ok",
                details={
                    "images": res.images,
                    "subjects": res.subjects,
                    "created_tenant": res.created_tenant,
                    "source": str(dataset),
                },
            )
        )
        if delete_source:
            stored = v.dataset_image_digests(tenant, digest)
            source = sorted(hashlib.sha256(it.png).hexdigest() for it in items)
            if stored != source:
                raise BadInputError(
                    f"{dataset}: the vault's copy does not match the source; the plaintext is kept"
                )
            _delete_source(dataset, [it.row["path"] for it in items])
            log.record(
                Event(
                    "vault.source_deleted",
                    actor,
                    tenant=tenant,
                    object=digest,
                    details={"images": len(items), "source": str(dataset)},
                )
            )
    return res


def _delete_source(root: Path, rel_paths: list[str]) -> None:
    for rel in rel_paths:
        (root / rel).unlink(missing_ok=True)
    for name in ("manifest.csv", "synth.json"):
        (root / name).unlink(missing_ok=True)
    for d in sorted({(root / r).parent for r in rel_paths}, key=lambda p: -len(p.parts)):
        if d != root and d.is_dir() and not any(d.iterdir()):
            d.rmdir()
    if root.is_dir() and not any(root.iterdir()):
        root.rmdir()


def read(
    lab: Lab,
    root: RootKey,
    tenant: str,
    actor: str,
    log: AuditLog,
    split: str | None = None,
    purpose: str = "",
) -> Iterator[Record]:
    """Records of ``tenant`` for lab code, decrypted in memory; the access is recorded."""
    log.record(
        Event(
            "vault.read",
            actor,
            tenant=tenant,
            details={"split": split or "all", "purpose": purpose},
        )
    )

    def failed(rid: str, field: str) -> None:
        log.record(
            Event(
                "vault.open_failed",
                actor,
                tenant=tenant,
                decision="error",
                object=f"record:{rid}",
                details={"field": field},
            )
        )

    with open_vault(lab, root) as v:
        yield from v.records(tenant, split, on_error=failed)


def scan_lab(root_dir: Path, needles: list[bytes]) -> list[str]:
    """Every file under ``root_dir`` (WAL and journals included) that holds a needle."""
    found = []
    for dirpath, _, files in os.walk(root_dir):
        for f in files:
            p = Path(dirpath) / f
            try:
                data = p.read_bytes()
            except OSError:
                continue
            if any(n in data for n in needles):
                found.append(str(p))
    return found


def destroy(
    lab: Lab, root: RootKey, tenant: str, actor: str, log: AuditLog, clock=lambda: datetime.now(UTC)
) -> Path:
    """Crypto-shred ``tenant`` and return the path of the signed certificate."""
    check_tenant(tenant)
    with open_vault(lab, root) as v:
        destroyed = v.shred(tenant)
        left = v.db.execute("SELECT COUNT(*) FROM records WHERE tenant=?", (tenant,)).fetchone()
    wrapped = destroyed.pop("wrapped_kek")
    copies = scan_lab(lab.paths.root, [wrapped])
    ok = not copies and left[0] == 0
    when = clock().astimezone(UTC)
    cert = certificate.build(
        lab_id=lab.lab_id,
        tenant=tenant,
        actor=actor,
        when=when.isoformat(timespec="seconds"),
        vault_path=str(lab.paths.vault),
        destroyed=destroyed,
        tool=f"facelab {__version__}",
        verification={
            "method": "full: every byte of every file in the lab (database, WAL, "
            "journals, logs) scanned for the wrapped KEK; record count",
            "result": "passed" if ok else "FAILED",
            "details": {"files_with_key_copies": copies, "records_left": left[0]},
        },
    )
    doc = certificate.sign(cert, load_signing_key(lab, root))
    path = certificate.write(
        doc,
        lab.paths.root
        / "certificates"
        / f"destroy-{tenant}-{when.strftime('%Y%m%dT%H%M%SZ')}.json",
    )
    log.record(
        Event(
            "vault.destroy",
            actor,
            tenant=tenant,
            object="sha256:" + hashlib.sha256(path.read_bytes()).hexdigest(),
            decision="destroyed" if ok else "failed",
            details={
                "records": destroyed["records"],
                "subjects": destroyed["subjects"],
                "datasets": destroyed["datasets"],
                "certificate": path.name,
            },
        )
    )
    if not ok:
        raise BadInputError(f"{lab.paths.vault}: destroy could not be verified: {copies}")
    return path
