"""The append-only audit log: durable appends, group commit, signed checkpoints, proofs.

Every component records through ``AuditLog.record(event)``; a new command must record
what it accesses and decides (see README, "Audit"). ``record`` returns only after the
entry is on disk (fsync). Concurrent ``record`` calls from threads of one process are
batched into one write and one fsync (group commit: the first caller leads and writes
everyone's entries); processes are ordered by flock(2) on ``LAB/audit/lock``, so two
processes appending at once produce one consistent order and lose nothing.

A checkpoint is signed every ``policy.audit.checkpoint_every`` entries and on close.
Before signing, the log proves the new tree consistent with the latest signed
checkpoint (RFC 9162 consistency proof, checked by the independent verifier); if it is
not, nothing is signed and ``TamperedError`` is raised.

On open, bytes after the last complete entry are reported: a torn final line (a crash
mid-write; such an entry was never acknowledged) is cut and an ``audit.recovered``
entry records what was cut; anything else (a complete line that is not a valid next
entry, non-JSON bytes) is refused until ``repair()`` cuts it, also on the record.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from lab.audit import checkpoint as ckpt
from lab.audit import rfc9162
from lab.audit._store import (
    HashFile,
    frontier_of,
    leaves_for_stored,
    new_hashes,
    pack_offsets,
    root_of,
    stored_count,
)
from lab.audit.events import Event, entry_bytes, parse_entry
from lab.errors import BadInputError, NoteError, TamperedError

ENTRIES = "entries.jsonl"
INDEX = "index.bin"
HASHES = "hashes.bin"
CHECKPOINTS = "checkpoints"
LOCK = "lock"


@dataclass(frozen=True)
class Receipt:
    """Proof of recording: the entry's position and leaf hash."""

    seq: int
    leaf_hash: bytes


@dataclass(frozen=True)
class Recovery:
    """What opening the log had to cut from the end of entries.jsonl."""

    after_entry: int
    bytes_cut: int
    sha256: str
    kind: str  # "torn-tail" or "garbage-tail"


def _utc(dt: datetime) -> str:
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def checkpoint_files(audit_dir: Path) -> list[Path]:
    d = audit_dir / CHECKPOINTS
    return sorted(d.glob("*.note")) if d.is_dir() else []


class _Ticket:
    __slots__ = ("error", "event", "receipt")

    def __init__(self, event: Event):
        self.event = event
        self.receipt: Receipt | None = None
        self.error: BaseException | None = None


class AuditLog:
    """A writer of the audit log in ``audit_dir``.

    Parameters
    ----------
    audit_dir : path
        ``LAB/audit``.
    origin : str
        The checkpoints' origin line (the lab's identity).
    signer : Ed25519PrivateKey
        The lab key; checkpoints are signed with it.
    checkpoint_every : int
        Sign a checkpoint each time the size crosses a multiple of this.
    policy_digest : str
        ``sha256:<hex>`` of the policy in force, written into every entry.
    clock : callable
        Injected time source (UTC datetimes).
    repair_actor : str, optional
        Who authorises cutting a garbage tail; without it such a tail is refused.
    """

    def __init__(
        self,
        audit_dir: Path | str,
        origin: str,
        signer: Ed25519PrivateKey,
        *,
        checkpoint_every: int = 256,
        policy_digest: str = "",
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        repair_actor: str | None = None,
    ):
        self.dir = Path(audit_dir)
        self.origin = origin
        self.signer = signer
        self.public_key: Ed25519PublicKey = signer.public_key()
        self.checkpoint_every = checkpoint_every
        self.policy_digest = policy_digest
        self.clock = clock
        self.recoveries: list[Recovery] = []
        (self.dir / CHECKPOINTS).mkdir(parents=True, exist_ok=True)
        self._lock_fd = os.open(self.dir / LOCK, os.O_RDWR | os.O_CREAT, 0o600)
        self._entries_fd = os.open(self.dir / ENTRIES, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o600)
        self._index_fd = os.open(self.dir / INDEX, os.O_RDWR | os.O_CREAT, 0o600)
        self._hashes_fd = os.open(self.dir / HASHES, os.O_RDWR | os.O_CREAT, 0o600)
        self._mutex = threading.Lock()
        self._cond = threading.Condition(self._mutex)
        self._queue: list[_Ticket] = []
        self._leading = False
        self._closed = False
        self._size = -1  # entries known to this process; -1 = not synced yet
        self._end = 0  # byte end of the last entry
        self._frontier: list[tuple[int, bytes]] = []
        try:
            with self._flock():
                recovery = self._sync(allow_garbage=repair_actor is not None)
                if recovery is not None:
                    self._append_locked([self._recovery_event(recovery, repair_actor or "facelab")])
        except BaseException:
            for fd in (self._entries_fd, self._index_fd, self._hashes_fd, self._lock_fd):
                os.close(fd)
            raise

    # ----------------------------------------------------------------- public API

    @property
    def size(self) -> int:
        return self._size

    def record(self, event: Event) -> Receipt:
        """Append ``event`` durably and return its receipt (group-committed)."""
        return self.record_many([event])[0]

    def record_many(self, events: Sequence[Event]) -> list[Receipt]:
        """Append several events in order, durably, with one fsync."""
        for e in events:
            e.validate()
        tickets = [_Ticket(e) for e in events]
        with self._cond:
            if self._closed:
                raise ValueError("audit log is closed")
            self._queue.extend(tickets)
            while any(t.receipt is None and t.error is None for t in tickets):
                if self._leading:
                    self._cond.wait()
                    continue
                self._leading = True
                batch, self._queue = self._queue, []
                self._mutex.release()
                try:
                    error: BaseException | None = None
                    receipts: list[Receipt] = []
                    try:
                        with self._flock():
                            self._sync()
                            receipts = self._append_locked([t.event for t in batch])
                    except BaseException as e:  # every waiter learns of the failure
                        error = e
                finally:
                    self._mutex.acquire()
                    self._leading = False
                for i, t in enumerate(batch):
                    if error is None:
                        t.receipt = receipts[i]
                    else:
                        t.error = error
                self._cond.notify_all()
            for t in tickets:
                if t.error is not None:
                    raise t.error
        return [t.receipt for t in tickets]  # type: ignore[misc]

    def checkpoint(self) -> str:
        """Sign a checkpoint at the current size (if newer than the last) and return it."""
        with self._flock():
            self._sync()
            return self._checkpoint_locked()

    def rebuild(self) -> None:
        """Recompute index.bin and hashes.bin from the entries (the source of truth)."""
        with self._flock():
            self._rebuild_derived()

    def close(self) -> None:
        """Sign a final checkpoint and release the files."""
        with self._mutex:
            if self._closed:
                return
            self._closed = True
        try:
            with self._flock():
                self._sync()
                self._checkpoint_locked()
        finally:
            for fd in (self._entries_fd, self._index_fd, self._hashes_fd, self._lock_fd):
                os.close(fd)

    def __enter__(self) -> AuditLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ----------------------------------------------------------------- internals

    @contextmanager
    def _flock(self) -> Iterator[None]:
        fcntl.flock(self._lock_fd, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)

    def _recovery_event(self, rec: Recovery, actor: str = "facelab") -> Event:
        return Event(
            action="audit.recovered",
            actor=actor,
            role="system",
            object=f"sha256:{rec.sha256}",
            decision=rec.kind,
            details={"after_entry": rec.after_entry, "bytes_cut": rec.bytes_cut},
        )

    def _offset(self, i: int) -> int:
        """End offset of entry ``i`` (0 for i = -1)."""
        if i < 0:
            return 0
        return int.from_bytes(os.pread(self._index_fd, 8, i * 8), "big")

    def _sync(self, allow_garbage: bool = False, cut: bool = True) -> Recovery | None:
        """Bring this process's view up to date with the files (caller holds the flock).

        Costs O(1) when nothing changed, and O(new entries + log n) when another process
        (or a crashed one) appended: adopts complete entries, rebuilds lagging derived
        files, and handles bytes after the last complete entry.
        """
        idx_bytes = os.fstat(self._index_fd).st_size
        entries_size = os.fstat(self._entries_fd).st_size
        hashes_bytes = os.fstat(self._hashes_fd).st_size
        n_idx = idx_bytes // 8
        if (
            n_idx == self._size
            and idx_bytes % 8 == 0
            and entries_size == self._end
            and hashes_bytes == stored_count(n_idx) * 32
        ):
            return None
        if idx_bytes % 8:
            os.ftruncate(self._index_fd, n_idx * 8)
        end_known = self._offset(n_idx - 1)
        if entries_size < end_known:
            raise TamperedError(
                f"{self.dir / ENTRIES}: shorter ({entries_size} bytes) than "
                f"its index says ({end_known}): entries were cut"
            )
        n_hashes = min(leaves_for_stored(hashes_bytes // 32), n_idx)
        if hashes_bytes != stored_count(n_hashes) * 32:
            os.ftruncate(self._hashes_fd, stored_count(n_hashes) * 32)
        if n_hashes == self._size and self._size >= 0:
            frontier = self._frontier
        else:
            frontier = frontier_of(n_hashes, self._read_hash)
        for i in range(n_hashes, n_idx):  # hashes lag the index after a crash
            start, stop = self._offset(i - 1), self._offset(i)
            line = os.pread(self._entries_fd, stop - start - 1, start)
            self._write_hashes(i, rfc9162.leaf_hash(line), frontier)
        self._size, self._end, self._frontier = n_idx, end_known, frontier
        if entries_size == end_known:
            return None
        # bytes after the last indexed entry: adopt complete valid entries, then judge the rest
        tail = os.pread(self._entries_fd, entries_size - end_known, end_known)
        pos = 0
        while (nl := tail.find(b"\n", pos)) >= 0:
            line = tail[pos:nl]
            try:
                if parse_entry(line)["seq"] != self._size:
                    break
            except ValueError:
                break
            self._write_hashes(self._size, rfc9162.leaf_hash(line), self._frontier)
            self._end = end_known + nl + 1
            os.pwrite(self._index_fd, pack_offsets([self._end]), self._size * 8)
            self._size += 1
            pos = nl + 1
        rest = tail[pos:]
        if not rest:
            return None
        torn = b"\n" not in rest and rest.startswith(b'{"')
        kind = "torn-tail" if torn else "garbage-tail"
        if not torn and not allow_garbage:
            raise TamperedError(
                f"{self.dir / ENTRIES}: {len(rest)} bytes after entry {self._size - 1} are "
                "not a valid entry (garbage tail); run `facelab audit repair` to cut them "
                "on the record"
            )
        recovery = Recovery(self._size - 1, len(rest), hashlib.sha256(rest).hexdigest(), kind)
        if cut:
            os.ftruncate(self._entries_fd, self._end)
            os.fsync(self._entries_fd)
        self.recoveries.append(recovery)
        return recovery

    def _read_hash(self, index: int) -> bytes:
        b = os.pread(self._hashes_fd, 32, index * 32)
        if len(b) != 32:
            raise TamperedError(f"{self.dir / HASHES}: stored hash {index} is missing")
        return b

    def _write_hashes(self, n: int, leaf: bytes, frontier: list[tuple[int, bytes]]) -> None:
        hashes = new_hashes(n, leaf, frontier)
        os.pwrite(self._hashes_fd, b"".join(hashes), stored_count(n) * 32)

    def _append_locked(self, events: Sequence[Event]) -> list[Receipt]:
        now = _utc(self.clock())
        lines, receipts = [], []
        for i, e in enumerate(events):
            line = entry_bytes(e, self._size + i, now, self.policy_digest)
            lines.append(line)
            receipts.append(Receipt(self._size + i, rfc9162.leaf_hash(line)))
        blob = b"\n".join(lines) + b"\n"
        os.write(self._entries_fd, blob)
        os.fsync(self._entries_fd)  # durable: the entries are the source of truth
        offsets, end = [], self._end
        for line, r in zip(lines, receipts, strict=True):
            end += len(line) + 1
            offsets.append(end)
            self._write_hashes(r.seq, r.leaf_hash, self._frontier)
        os.pwrite(self._index_fd, pack_offsets(offsets), self._size * 8)
        old = self._size
        self._size += len(events)
        self._end = end
        if old // self.checkpoint_every != self._size // self.checkpoint_every:
            self._checkpoint_locked()
        return receipts

    def _rebuild_derived(self) -> None:
        """Recompute index.bin and hashes.bin from the entries (after repair)."""
        os.ftruncate(self._index_fd, 0)
        os.ftruncate(self._hashes_fd, 0)
        self._size, self._end, self._frontier = -1, 0, []
        self._sync()

    def latest_checkpoint(self) -> tuple[Path, ckpt.Checkpoint] | None:
        files = checkpoint_files(self.dir)
        if not files:
            return None
        note = files[-1].read_bytes()
        try:
            return files[-1], ckpt.verify(note, self.public_key, self.origin)
        except NoteError as e:
            raise TamperedError(f"{files[-1]}: {e}") from e

    def _checkpoint_locked(self) -> str:
        os.fsync(self._index_fd)
        os.fsync(self._hashes_fd)
        root = root_of(self._frontier)
        new = ckpt.Checkpoint(self.origin, self._size, root)
        latest = self.latest_checkpoint()
        if latest is not None:
            path, old = latest
            if old.size > new.size:
                raise TamperedError(
                    f"{path}: a checkpoint at size {old.size} exists but the "
                    f"log has only {new.size} entries (truncated)"
                )
            hf = HashFile(self.dir / HASHES)
            try:
                proof = rfc9162.consistency_proof(old.size, new.size, hf.subtree)
            finally:
                hf.close()
            try:
                rfc9162.verify_consistency(old.size, new.size, old.root, root, proof)
            except rfc9162.RootMismatchError as e:
                raise TamperedError(
                    f"log is not consistent with {path}: {e}; refusing to sign"
                ) from e
            if old.size == new.size:
                return path.read_text(encoding="utf-8")
        note = ckpt.sign(new, self.signer)
        target = self.dir / CHECKPOINTS / f"{new.size:012d}.note"
        tmp = target.with_suffix(".tmp")
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(note)
            f.flush()
            os.fsync(f.fileno())
        os.rename(tmp, target)
        dfd = os.open(self.dir / CHECKPOINTS, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
        return note


def policy_digest(path: Path) -> str:
    try:
        return "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError as e:
        raise BadInputError(f"{path}: unreadable ({e.strerror})") from e
