"""`facelab demo`: the lab story end to end on small synthetic data.

Today's steps: create a lab (keys, policy, audit log), generate a synthetic dataset and
record it, write a contact sheet, and verify the audit log. Later components add their
steps here (ingest, import, benchmark, export, destroy).

Files: ``LAB`` is a real lab (``facelab audit verify --lab LAB`` works on it);
``LAB/demo/dataset`` is the synthetic plaintext and ``LAB/demo/contact_sheet.png`` the
faces for a person to look at.
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
    audit: VerifyReport


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
    base = Path(root) if root is not None else Path(tempfile.mkdtemp(prefix="facelab-demo-"))
    generated = passphrase is None
    pw = passphrase if passphrase is not None else secrets.token_urlsafe(16).encode()
    lab = init_and_record(base, pw, actor)
    work = base / "demo"
    work.mkdir()
    cfg = SynthConfig(identities=identities, captures=captures, seed=seed)
    summary = write_dataset(cfg, work / "dataset", progress=progress)
    sheet = contact_sheet(work / "dataset", work / "contact_sheet.png")
    with audit_writer(lab, pw) as log:
        log.record(Event(
            action="dataset.synth", actor=actor, role="operator",
            object=dataset_digest(work / "dataset"),
            details={"identities": cfg.identities, "captures": cfg.captures,
                     "seed": cfg.seed, "difficulty": cfg.difficulty,
                     "images": summary.images, "path": str(work / "dataset")},
        ))
    report = verify_log(lab.paths.audit, lab.origin, load_public_key(lab))
    return DemoResult(base, generated, summary, sheet, report)
