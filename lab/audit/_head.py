"""The log's latest signed checkpoint, kept outside the log directory ("the head").

Two slots, ``LAB/keys/audit_head.a.note`` and ``audit_head.b.note``; the writer
overwrites the older slot after every durable batch (write, truncate, fsync), so a
crash mid-write leaves the other slot whole. The head is what the writer and
``audit verify`` compare the entries with: deleting the checkpoints and the hash store,
editing an entry, cutting or rolling back ``entries.jsonl`` all disagree with it. Both
slots gone while the log has entries is damage in its own right.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from lab.audit import checkpoint as ckpt
from lab.errors import NoteError

SLOTS = ("audit_head.a.note", "audit_head.b.note")


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
        try:
            fd = os.open(p, os.O_RDONLY | os.O_NOFOLLOW)
        except FileNotFoundError:
            continue
        except OSError as e:
            problems.append(f"{p}: unreadable ({e.strerror})")
            present += 1
            continue
        present += 1
        try:
            data = os.read(fd, ckpt.MAX_NOTE_BYTES + 1)
        finally:
            os.close(fd)
        if not data:  # truncated by a writer that died before its write: no head here
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
    """Overwrite slot ``slot`` durably with ``note``."""
    fd = os.open(head_dir / SLOTS[slot], os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW, 0o600)
    try:  # empty, then whole: a crash between leaves an empty slot, read as absent
        os.ftruncate(fd, 0)
        os.pwrite(fd, note, 0)
        os.fsync(fd)
    finally:
        os.close(fd)
