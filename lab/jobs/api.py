"""What a job sees: its spec, its workspace, its outbox, its model, and the tenant's
records of one split, decrypted by the runner and streamed in over a pipe (never as
files). Subjects are pseudonyms; identifiers never reach a job.

Frame format on the pipe: ``u32 length, JSON header, u32 length, PNG bytes`` per record;
a zero length ends the stream. The header holds record_id, subject, kind, split,
landmarks (5 x 2), nationality, sex, birth_year.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import cv2
import numpy as np


@dataclass(frozen=True)
class JobRecord:
    record_id: str
    subject: str
    kind: str
    split: str
    png: bytes
    landmarks: np.ndarray
    nationality: str
    sex: str
    birth_year: int

    def image(self) -> np.ndarray:
        return cv2.imdecode(np.frombuffer(self.png, np.uint8), cv2.IMREAD_COLOR_RGB)


def write_record(out: BinaryIO, r: Any) -> None:
    head = json.dumps(
        {
            "record_id": r.record_id,
            "subject": r.subject,
            "kind": r.kind,
            "split": r.split,
            "landmarks": np.asarray(r.landmarks).tolist(),
            "nationality": r.nationality,
            "sex": r.sex,
            "birth_year": r.birth_year,
        }
    ).encode()
    out.write(struct.pack("<I", len(head)) + head + struct.pack("<I", len(r.png)) + r.png)


def end_stream(out: BinaryIO) -> None:
    out.write(struct.pack("<I", 0))


def _read_exact(f: BinaryIO, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        chunk = f.read(n - len(buf))
        if not chunk:
            raise EOFError("record stream ended early")
        buf += chunk
    return buf


def read_records(f: BinaryIO) -> Iterator[JobRecord]:
    while True:
        (n,) = struct.unpack("<I", _read_exact(f, 4))
        if n == 0:
            return
        h = json.loads(_read_exact(f, n))
        (m,) = struct.unpack("<I", _read_exact(f, 4))
        png = _read_exact(f, m)
        yield JobRecord(
            h["record_id"],
            h["subject"],
            h["kind"],
            h["split"],
            png,
            np.asarray(h["landmarks"], np.float32),
            h["nationality"],
            h["sex"],
            int(h["birth_year"]),
        )


@dataclass
class JobContext:
    """Handed to the job (a built-in kind or a registered trainer)."""

    job_id: str
    tenant: str
    spec: dict
    workspace: Path
    outbox: Path
    model_dir: Path
    _stream: BinaryIO | None = None
    # the lab's privacy parameters for this trainer ({"epsilon", "delta"} from the
    # policy's [jobs] trainer_privacy), or None: the lab's choice, never the tenant's
    privacy: dict | None = None
    _cache: list[JobRecord] | None = field(default=None, repr=False)

    @property
    def params(self) -> dict:
        return dict(self.spec.get("params", {}))

    def records(self) -> list[JobRecord]:
        """The records of the job's split (read once from the runner, then kept)."""
        if self._cache is None:
            self._cache = list(read_records(self._stream)) if self._stream else []
        return self._cache
