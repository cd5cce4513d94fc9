"""`facelab demo`: the lab story end to end on small synthetic data.

For now (the foundation) it generates a small dataset, summarises it and writes a
contact sheet; later components add their steps here.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from lab.synth import SynthConfig, SynthSummary, contact_sheet, write_dataset


@dataclass(frozen=True)
class DemoResult:
    root: Path
    dataset: SynthSummary
    contact_sheet: Path


def run_demo(
    root: Path | str | None = None,
    *,
    identities: int = 200,
    captures: int = 3,
    seed: int = 2019,
    progress: Callable[[int], None] | None = None,
) -> DemoResult:
    """Run the demo in ``root`` (created if missing; a fresh temporary directory if None)."""
    base = Path(root) if root is not None else Path(tempfile.mkdtemp(prefix="facelab-demo-"))
    base.mkdir(parents=True, exist_ok=True)
    summary = write_dataset(
        SynthConfig(identities=identities, captures=captures, seed=seed),
        base / "dataset",
        force=True,
        progress=progress,
    )
    sheet = contact_sheet(base / "dataset", base / "contact_sheet.png")
    return DemoResult(root=base, dataset=summary, contact_sheet=sheet)
