"""Read and validate a dataset directory (DESIGN.md's format) before anything is stored.

Every problem is a ``BadInputError`` naming the file (and manifest row) and the reason:
missing columns, a path that leaves the dataset (absolute, ``..``, a symlink out), a
missing file, bytes that are not a PNG or do not decode, a size outside the policy, bad
landmarks, duplicate capture ids, an empty manifest.
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import cv2
import numpy as np
from facelab.errors import BadInputError
from facelab.jsonfile import read_regular

REQUIRED = (
    "subject_id",
    "capture_id",
    "kind",
    "path",
    "name",
    "passport_no",
    "nationality",
    "sex",
    "birth_year",
    *(f"lm{i}_{a}" for i in range(5) for a in "xy"),
)
_PNG = b"\x89PNG\r\n\x1a\n"
MAX_MANIFEST_BYTES = 256 << 20  # a manifest line is about 300 bytes: 10^6 images fit
MAX_IMAGE_BYTES = 64 << 20  # a stored 1024 x 1024 RGBA PNG is 4 MiB


@dataclass(frozen=True)
class Item:
    """One validated image: its manifest row and the PNG bytes."""

    row: dict[str, str]
    png: bytes


def read_dataset(root: Path | str, max_side: int = 1024) -> list[Item]:
    root = Path(root)
    manifest = root / "manifest.csv"
    if not root.is_dir():
        raise BadInputError(f"{root}: not a directory")
    try:  # a regular file only: a FIFO or a device there is refused, never read
        text = read_regular(manifest, max_bytes=MAX_MANIFEST_BYTES, what="a manifest")
        reader = csv.DictReader(io.StringIO(text.decode("utf-8-sig"), newline=""))
        header = reader.fieldnames or []
        rows = list(reader)
    except FileNotFoundError as e:
        raise BadInputError(f"{manifest}: missing") from e
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise BadInputError(f"{manifest}: unreadable ({e})") from e
    missing = [c for c in REQUIRED if c not in header]
    if missing:
        raise BadInputError(f"{manifest}: missing columns {', '.join(missing)}")
    if not rows:
        raise BadInputError(f"{manifest}: no rows")
    real_root = root.resolve()
    seen: set[str] = set()
    items = []
    for n, row in enumerate(rows, start=2):  # line 1 is the header
        where = f"{manifest}:{n}"
        if None in row or any(v is None for v in row.values()):
            raise BadInputError(f"{where}: wrong number of fields")
        cid = row["capture_id"]
        if not cid or cid in seen:
            raise BadInputError(f"{where}: capture_id {cid!r} is empty or repeated")
        seen.add(cid)
        if row["kind"] not in ("passport", "gate"):
            raise BadInputError(f"{where}: kind {row['kind']!r} is not passport or gate")
        if not row["subject_id"]:
            raise BadInputError(f"{where}: empty subject_id")
        rel = PurePosixPath(row["path"])
        if rel.is_absolute() or ".." in rel.parts or not rel.parts:
            raise BadInputError(f"{where}: path {row['path']!r} leaves the dataset")
        file = root / rel
        try:
            if not file.resolve().is_relative_to(real_root):
                raise BadInputError(f"{file}: links outside the dataset")
            png = read_regular(file, max_bytes=MAX_IMAGE_BYTES, what="an image")
        except FileNotFoundError as e:
            raise BadInputError(f"{file}: missing (manifest line {n})") from e
        except OSError as e:
            raise BadInputError(f"{file}: unreadable ({e.strerror})") from e
        if not png.startswith(_PNG):
            raise BadInputError(f"{file}: not a PNG file")
        if len(png) >= 24 and png[12:16] == b"IHDR":  # the size, before any decoding
            w0, h0 = int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")
            if not (16 <= h0 <= max_side and 16 <= w0 <= max_side):
                raise BadInputError(f"{file}: size {w0}x{h0} outside [16, {max_side}]")
        img = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_UNCHANGED)
        if img is None:
            raise BadInputError(f"{file}: PNG does not decode")
        h, w = img.shape[:2]
        if not (16 <= h <= max_side and 16 <= w <= max_side):
            raise BadInputError(f"{file}: size {w}x{h} outside [16, {max_side}]")
        if not (img.ndim == 2 or (img.ndim == 3 and img.shape[2] in (1, 3, 4))):
            raise BadInputError(f"{file}: not a grayscale, RGB or RGBA image")
        try:
            lms = [float(row[f"lm{i}_{a}"]) for i in range(5) for a in "xy"]
            int(row["birth_year"])
        except ValueError as e:
            raise BadInputError(f"{where}: landmarks or birth_year not numeric ({e})") from e
        if not all(math.isfinite(v) and -w <= v <= 2 * w for v in lms):
            raise BadInputError(f"{where}: landmarks outside the image")
        items.append(Item(row, png))
    return items
