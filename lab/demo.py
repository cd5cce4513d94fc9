"""`facelab demo`: the lab story end to end on small synthetic data.

Today's steps: create a lab (keys, policy, vault, audit log); generate synthetic
datasets for two tenants, write a contact sheet, ingest both into the vault and delete
the plaintext after a verified ingest; read one tenant's records back by split;
destroy the other tenant with a signed certificate; verify the audit log. Later
components add their steps here (import, benchmark, export, purpose limits).

Files: ``LAB`` is a real lab (``facelab audit verify --lab LAB`` works on it);
``LAB/demo/contact_sheet.png`` shows faces for a person to look at;
``LAB/certificates/`` holds the destruction certificate.
"""

from __future__ import annotations

import secrets
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from lab.audit import Event, VerifyReport, verify_log
from lab.labdir import audit_writer, init_and_record, load_public_key
from lab.synth import SynthConfig, SynthSummary, contact_sheet, dataset_digest, write_dataset


@dataclass(frozen=True)
class DemoResult:
    root: Path
    passphrase_generated: bool
    dataset: SynthSummary
    contact_sheet: Path
    ingested: dict[str, int]
    splits: dict[str, int]
    certificate: Path
    audit: VerifyReport
    controls: list[tuple[str, str]]


def run_demo(
    root: Path | str | None = None,
    *,
    passphrase: bytes | None = None,
    actor: str = "demo-operator",
    identities: int = 200,
    captures: int = 3,
    seed: int = 2019,
    progress: Callable[[int], None] | None = None,
) -> DemoResult:
    """Run the demo with the lab at ``root`` (a new temporary directory if None)."""
    from lab.labdir import unlock
    from lab.vault import ops

    base = Path(root) if root is not None else Path(tempfile.mkdtemp(prefix="facelab-demo-"))
    generated = passphrase is None
    pw = passphrase if passphrase is not None else secrets.token_urlsafe(16).encode()
    lab = init_and_record(base, pw, actor)
    work = base / "demo"
    work.mkdir()
    root_key = unlock(lab, pw)
    tenants = {"acme": SynthConfig(identities=identities, captures=captures, seed=seed),
               "borealis": SynthConfig(identities=max(1, identities // 2),
                                       captures=captures, seed=seed + 1)}
    ingested: dict[str, int] = {}
    summary = None
    sheet = work / "contact_sheet.png"
    with audit_writer(lab, root_key) as log:
        for tenant, cfg in tenants.items():
            plain = work / f"plaintext-{tenant}"
            s = write_dataset(cfg, plain, progress=progress if tenant == "acme" else None)
            log.record(Event(
                action="dataset.synth", actor=actor, role="operator", tenant=tenant,
                object=dataset_digest(plain),
                details={"identities": cfg.identities, "captures": cfg.captures,
                         "seed": cfg.seed, "difficulty": cfg.difficulty, "images": s.images}))
            if tenant == "acme":
                summary = s
                contact_sheet(plain, sheet)
            res = ops.ingest(lab, root_key, tenant, plain, actor, log, delete_source=True)
            ingested[tenant] = res.images
        splits: dict[str, int] = {}
        for rec in ops.read(lab, root_key, "acme", actor, log, purpose="demo: count splits"):
            splits[rec.split] = splits.get(rec.split, 0) + 1
        cert = ops.destroy(lab, root_key, "borealis", actor, log)
    report = verify_log(lab.paths.audit, lab.origin, load_public_key(lab))
    assert summary is not None
    controls = [
        ("lab created: keys sealed under the operator secret", "ok"),
        ("synthetic identities generated (no real person)", f"{summary.identities} + "
         f"{tenants['borealis'].identities} identities"),
        ("datasets encrypted, per-tenant keys, plaintext deleted",
         ", ".join(f"{t} {n} images" for t, n in ingested.items())),
        ("records read back by split, pseudonymous ids only",
         ", ".join(f"{k} {v}" for k, v in sorted(splits.items()))),
        ("tenant borealis crypto-shredded, certificate signed", cert.name),
        ("audit log verified", "intact" if report.intact else "TAMPERED"),
    ]
    return DemoResult(base, generated, summary, sheet, ingested, splits, cert, report,
                      controls)
