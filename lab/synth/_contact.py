"""A contact sheet: passport photo beside the gate captures, one identity per row."""

from __future__ import annotations

import csv
from pathlib import Path

import cv2
import numpy as np


def contact_sheet(dataset: Path | str, out: Path | str, rows: int = 6, scale: int = 2) -> Path:
    """Write a PNG of the first ``rows`` identities of ``dataset`` and return its path."""
    dataset, out = Path(dataset), Path(out)
    by_subject: dict[str, list[dict[str, str]]] = {}
    with open(dataset / "manifest.csv", encoding="utf-8", newline="") as f:
        for r in csv.DictReader(f):
            by_subject.setdefault(r["subject_id"], []).append(r)
    chosen = list(by_subject.values())[:rows]
    width = max(len(v) for v in chosen)
    lines = []
    for caps in chosen:
        caps = sorted(caps, key=lambda r: (r["kind"] != "passport", r["capture_id"]))
        tiles = [cv2.imread(str(dataset / r["path"]), cv2.IMREAD_COLOR) for r in caps]
        h, w = tiles[0].shape[:2]
        tiles += [np.full((h, w, 3), 255, np.uint8)] * (width - len(tiles))
        # a white gutter after the passport photo separates enrolment from probes
        gutter = np.full((h, 4, 3), 255, np.uint8)
        lines.append(np.concatenate([tiles[0], gutter, *tiles[1:]], axis=1))
    sheet = np.concatenate(lines, axis=0)
    sheet = cv2.resize(sheet, None, fx=scale, fy=scale, interpolation=cv2.INTER_NEAREST)
    cv2.imwrite(str(out), sheet)
    return out
