"""The log's latest signed checkpoint, kept outside the log directory ("the head").

Two slots, ``LAB/keys/audit_head.a.note`` and ``audit_head.b.note``; the writer
overwrites the older slot in place after every durable batch, so a crash mid-write leaves
the other slot whole. A slot is ``4-byte big-endian length || signed note || zero
padding`` to a fixed ``SLOT_BYTES``: overwriting it never changes the file's size, so one
``fdatasync`` makes it durable without a metadata commit (group commit stays fast).

The head is what the writer and ``audit verify`` compare the entries with: deleting the
checkpoints and the hash store, editing an entry, cutting or rolling back
``entries.jsonl`` all disagree with it. Both slots gone while the log has entries is
damage in its own right.
"""

from __future__ import annotations

import errno
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from facelab import labfs
from facelab.audit import checkpoint as ckpt
from facelab.errors import BadInputError, NoteError

SLOTS = ("audit_head.a.note", "audit_head.b.note")
SLOT_BYTES = 4096


def encode(note: bytes) -> bytes:
    body = len(note).to_bytes(4, "big") + note
    return body + b"\0" * max(0, SLOT_BYTES - len(body))


def decode(data: bytes) -> bytes:
    """The note in a slot's bytes (b"" for an empty or torn slot)."""
    if len(data) < 4:
        return b""
    n = int.from_bytes(data[:4], "big")
    if n > ckpt.MAX_NOTE_BYTES or 4 + n > len(data):
        return b""
    return data[4 : 4 + n]


@dataclass(frozen=True)
class Head:
    checkpoint: ckpt.Checkpoint
    note: bytes
    slot: int  # index into SLOTS of the slot holding it


@dataclass(frozen=True)
class HeadState:
    head: Head | None
    present: int  # slots that exist
    problems: tuple[str, ...]  # slots that exist but do not verify


def read(head_dir: Path, key: Ed25519PublicKey, origin: str) -> HeadState:
    """The newest valid slot; problems name slots that exist but do not verify."""
    best: Head | None = None
    present, problems = 0, []
    for i, name in enumerate(SLOTS):
        p = head_dir / name
        try:  # never through a link, never blocking on a FIFO (red team 14g, c06)
            raw, _ = labfs.read_prefix(p, ckpt.MAX_NOTE_BYTES + 8)
        except BadInputError as e:
            problems.append(str(e))
            present += 1
            continue
        present += 1  # a missing slot reads as empty: not counted below
        data = decode(raw)
        if not raw.strip(b"\0"):  # created, never written: no head here
            present -= 1
            continue
        try:
            cp = ckpt.verify(data, key, origin)
        except NoteError as e:
            problems.append(f"{p}: {e}")
            continue
        if best is None or cp.size > best.checkpoint.size:
            best = Head(cp, data, i)
        elif cp.size == best.checkpoint.size and cp.root != best.checkpoint.root:
            problems.append(f"{p}: a second root at signed size {cp.size} (split view)")
    return HeadState(best, present, tuple(problems))


def write(head_dir: Path, note: bytes, slot: int) -> None:
    """Overwrite slot ``slot`` durably with ``note`` (same size: fdatasync suffices)."""
    path = head_dir / SLOTS[slot]
    flags = os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
    try:  # a FIFO in the slot's place: never block on it, never write into it
        fd = os.open(path, flags, 0o600)
    except OSError as e:
        why = "a FIFO or socket" if e.errno == errno.ENXIO else e.strerror or e
        raise BadInputError(f"{path}: not writable as a head slot ({why})") from e
    try:
        labfs.check_fd(fd, path)
        data = encode(note)
        grew = os.fstat(fd).st_size != len(data)
        os.pwrite(fd, data, 0)
        if grew:
            os.ftruncate(fd, len(data))
            os.fsync(fd)
        else:
            os.fdatasync(fd)
    finally:
        os.close(fd)
