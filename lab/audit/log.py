"""The append-only audit log: durable appends, group commit, signed checkpoints, proofs.

Every component records through ``AuditLog.record(event)``; a new command must record
what it accesses and decides (see README, "Audit"). ``record`` returns only after the
entry is on disk (fsync). Concurrent ``record`` calls from threads of one process are
batched into one write and one fsync (group commit: the first caller leads and writes
everyone's entries); processes are ordered by flock(2) on ``LAB/audit/lock``, so two
processes appending at once produce one consistent order and lose nothing.

Every durable batch is covered by a signed checkpoint before ``record`` returns: the
*head*, kept outside the log directory (``LAB/keys/audit_head.*``, see ``_head``). A
checkpoint is also filed under ``checkpoints/`` every ``policy.audit.checkpoint_every``
entries and on close (the sequence witnesses cosign).

Verify before signing: on open, the writer runs the independent verifier
(``verify_log``) over the whole log, its derived stores and the head, and stops with
``TamperedError`` (exit 4) on any damage; it never signs a size that is already signed
with another root, nor a tree that does not extend the head. What it may fix on its
own, on the record (an ``audit.recovered`` entry): a torn final line is cut (the bytes
kept under ``audit/cut/``), and an *unsigned tail* of at most ``max_unsigned_tail``
complete entries after the head is adopted when every one of them carries the lab's
MAC (``events.entry_mac``): a writer killed between its fsync and its signature, or a
head slot garbled or rolled back by someone with file access. Adopting, never cutting,
is what keeps such a rollback from deleting signed entries. A complete entry without a
valid MAC after the head is a forged append (``TamperedError``). A garbage tail, a forged
or a longer tail and derived files with wrong content wait for ``repair()`` (an actor on
the record), which adopts what is authentic and cuts the rest; entries that disagree
with the head are never signed.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import os
import secrets
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from cryptography.hazmat.primitives import hashes as _hashes
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from facelab import labfs
from facelab.audit import _head, rfc9162
from facelab.audit import checkpoint as ckpt
from facelab.audit._store import (
    frontier_of,
    new_hashes,
    pack_offsets,
    root_of,
    stored_count,
)
from facelab.audit.events import Event, entry_authentic, entry_bytes, parse_entry
from facelab.errors import BadInputError, BusyError, NoteError, TamperedError

#: How long a command waits for another process's hold on ``audit/lock`` (seconds).
#: Holds are short (one append, or the verification on opening, which grows with the
#: log); a holder stopped or hung must not hang every other command (red team 14c,
#: co04: a SIGSTOPped ingest made ``vault list`` wait for ever).
LOCK_WAIT_S = 60.0

ENTRIES = "entries.jsonl"
INDEX = "index.bin"
HASHES = "hashes.bin"
CHECKPOINTS = "checkpoints"
CUT = "cut"
LOCK = "lock"


@dataclass(frozen=True)
class Receipt:
    """Proof of recording: the entry's position and leaf hash."""

    seq: int
    leaf_hash: bytes


@dataclass(frozen=True)
class Recovery:
    """What opening the log found after the signed head: entries it adopted, or bytes it
    had to cut from the end of entries.jsonl."""

    after_entry: int
    bytes_cut: int
    sha256: str
    kind: str  # "adopted-tail", "torn-tail", "unsigned-tail" or "garbage-tail"
    entries_cut: int = 0
    entries_adopted: int = 0


def flock_within(fd: int, seconds: float, path: Path, what: str = "the audit log's lock") -> None:
    """Take an exclusive ``flock(2)`` on ``fd`` within ``seconds`` (polled, backing off
    from 1 ms to 100 ms), else raise ``BusyError`` naming ``path`` and ``what`` it
    guards; nothing was done."""
    import time

    deadline = time.monotonic() + seconds
    pause = 0.001
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if time.monotonic() >= deadline:
                raise BusyError(
                    f"{path}: another facelab process has held {what} for "
                    f"{seconds:g} s (stopped or hung?); nothing was changed, try again"
                ) from None
            time.sleep(pause)
            pause = min(pause * 2, 0.1)


def mac_key(signer: Ed25519PrivateKey, session: str = "") -> bytes:
    """The entries' MAC key of writer session ``session`` (32 hex digits, random per
    writer): HKDF-SHA256 (RFC 5869) of the lab signing key's raw bytes, the session in
    its info. Entries that a copy of the lab wrote elsewhere carry another session's
    MAC, so they are not taken for this machine's crash tail (red team 14i, case 12)."""
    info = b"facelab audit entry MAC v2 " + session.encode("ascii")
    return HKDF(_hashes.SHA256(), 32, salt=None, info=info).derive(signer.private_bytes_raw())


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


# damage after the signed head that `repair` may cut (nothing signed is ever cut)
_TAIL_KINDS = ("garbage-tail", "corrupt-entry", "deleted-entry", "reordered-entries")


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
        File a checkpoint under ``checkpoints/`` each time the size crosses a multiple.
    policy_digest : str
        ``sha256:<hex>`` of the policy in force, written into every entry.
    clock : callable
        Injected time source (UTC datetimes).
    repair_actor : str, optional
        Who authorises cutting a garbage tail or a long unsigned tail and rebuilding
        derived files; without it those are refused (``TamperedError``).
    head_dir : path, optional
        Where the signed head lives (default ``audit_dir/../keys``).
    max_unsigned_tail : int
        Unsigned entries after the head the writer cuts on its own (crash window).
    lock_wait : float
        Seconds to wait for another process's hold on ``audit/lock`` (``BusyError``).
    pinned_head : bytes, optional
        The largest signed head this machine has seen (``pins.pinned_head``): a log
        below it or rewritten under it is refused on open (``TamperedError``).
    pinned_witnesses : dict, optional
        Witness name -> the largest size this machine saw it cosign: a cosignature
        deleted or rolled back below it is refused on open.
    register_session, known_sessions : callable, optional
        ``register_session(session)`` keeps this writer's random session id outside the
        lab before anything is appended (``pins.register_session``; returns "" or why
        not); ``known_sessions()`` lists the ids kept there. Entries are MACed under a
        key of their session (``mac_key``); an unsigned tail is adopted only when every
        entry verifies under a known session: a crash of a writer on this machine, not
        entries a copy of the lab wrote elsewhere and someone appended here.
    on_head : callable, optional
        ``on_head(note, size)`` is called on close with the signed head the log ends at
        (``pins.advance_head``), so the next command and ``audit verify`` can check
        against it.

    Raises
    ------
    TamperedError
        On open, when the log, its derived stores or its checkpoints are damaged.
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
        head_dir: Path | str | None = None,
        max_unsigned_tail: int = 256,
        lock_wait: float = LOCK_WAIT_S,
        pinned_head: bytes | None = None,
        on_head: Callable[[bytes, int], None] | None = None,
        pinned_witnesses: dict[str, int] | None = None,
        register_session: Callable[[str], str] | None = None,
        known_sessions: Callable[[], Sequence[str]] | None = None,
    ):
        self.dir = Path(audit_dir)
        self.pinned_head = pinned_head
        self.on_head = on_head
        self.pinned_witnesses = pinned_witnesses
        self.head_dir = Path(head_dir) if head_dir is not None else self.dir.parent / "keys"
        self.origin = origin
        self.signer = signer
        self.public_key: Ed25519PublicKey = signer.public_key()
        # this writer's session: registered outside the lab (the pin file) before any
        # entry is written; a tail after the head is adopted only under a registered one
        self.session = secrets.token_hex(16)
        self._mac_key = mac_key(signer, self.session)
        self._known_sessions = known_sessions
        self.session_registered = False
        if register_session is not None:
            self.session_registered = not register_session(self.session)
        self.checkpoint_every = checkpoint_every
        self.policy_digest = policy_digest
        self.clock = clock
        self.max_unsigned_tail = max_unsigned_tail
        self.lock_wait = lock_wait
        self.recoveries: list[Recovery] = []
        (self.dir / CHECKPOINTS).mkdir(parents=True, exist_ok=True)
        self.head_dir.mkdir(parents=True, exist_ok=True)
        # never through a link: a lock or store replaced by a symlink would make every
        # command create or write a file wherever it points (red team 2, a02)
        flags = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC
        opened: list[int] = []
        try:
            for name, extra in ((LOCK, 0), (ENTRIES, os.O_APPEND), (INDEX, 0), (HASHES, 0)):
                opened.append(os.open(self.dir / name, flags | extra, 0o600))
        except OSError as e:
            for fd in opened:
                os.close(fd)
            if e.errno == errno.ELOOP:  # a symbolic link put in the log's place
                raise TamperedError(
                    f"{self.dir / name}: a link where a file of the log must be; not followed"
                ) from e
            raise BadInputError(f"{self.dir / name}: unreadable ({e.strerror or e})") from e
        try:  # a FIFO opened read-write does not block, but reading it would
            for name, fd in zip((LOCK, ENTRIES, INDEX, HASHES), opened, strict=True):
                labfs.check_fd(fd, self.dir / name, error=TamperedError)
        except TamperedError:
            for fd in opened:
                os.close(fd)
            raise
        self._lock_fd, self._entries_fd, self._index_fd, self._hashes_fd = opened
        self._mutex = threading.Lock()
        self._cond = threading.Condition(self._mutex)
        self._queue: list[_Ticket] = []
        self._leading = False
        self._closed = False
        # the first failure to write (a full disk, an I/O error): this writer's view of
        # the files is no longer theirs, so it writes and signs nothing more and reports
        # that failure, never the mismatch it left (the next writer recovers on open)
        self._broken: OSError | None = None
        self._size = 0  # entries known to this process (all covered by the head)
        self._end = 0  # byte end of the last entry
        self._frontier: list[tuple[int, bytes]] = []
        self._head_slot: int | None = None  # the slot holding the newest head
        self._repair_actor = repair_actor
        self._pending: list[Event] = []  # what opening found and must record
        try:
            with self._flock():
                found = self._open_locked(repair_actor)
                pre = [self._recovery_event(r, repair_actor) for r in found]
                if pre or self._pending:
                    self._append_locked(pre + self._pending)
                self._pending = []
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
        """Append several events in order, durably and signed, with one batch."""
        for e in events:
            e.validate()
        tickets = [_Ticket(e) for e in events]
        with self._cond:
            if self._closed:
                raise ValueError("audit log is closed")
            if self._broken is not None:
                raise self._failed_before()
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
                            pre = [self._recovery_event(r) for r in self._sync()]
                            receipts = self._append_locked(pre + [t.event for t in batch])
                            receipts = receipts[len(pre) :]
                    except BaseException as e:  # every waiter learns of the failure
                        error = e
                        if isinstance(e, OSError) and self._broken is None:
                            self._broken = e
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
        """File a checkpoint at the current size (if newer than the last) and return it."""
        if self._broken is not None:
            raise self._failed_before()
        with self._flock():
            found = self._sync()
            if found:
                self._append_locked([self._recovery_event(r) for r in found])
            return self._checkpoint_locked()

    def rebuild(self) -> None:
        """Verify the log again and rewrite index.bin and hashes.bin from the entries.

        Only with a ``repair_actor``: the entries must still agree with the signed head.
        """
        if self._repair_actor is None:
            raise TamperedError("rebuilding the derived stores needs a repair actor")
        with self._flock():
            found = self._open_locked(self._repair_actor, force_rewrite=True)
            pre = [self._recovery_event(r, self._repair_actor) for r in found]
            if pre or self._pending:
                self._append_locked(pre + self._pending)
            self._pending = []

    def close(self) -> None:
        """File a final checkpoint and release the files."""
        with self._mutex:
            if self._closed:
                return
            self._closed = True
        try:
            if self._broken is not None:
                return  # nothing more is signed; the failure was raised where it happened
            with self._flock():
                found = self._sync()
                if found:
                    self._append_locked([self._recovery_event(r) for r in found])
                self._checkpoint_locked()
                hs = (
                    _head.read(self.head_dir, self.public_key, self.origin)
                    if self.on_head
                    else None
                )
            if hs is not None and hs.head is not None:
                self.on_head(hs.head.note, hs.head.checkpoint.size)
        finally:
            for fd in (self._entries_fd, self._index_fd, self._hashes_fd, self._lock_fd):
                os.close(fd)

    def _failed_before(self) -> OSError:
        e = self._broken
        assert e is not None
        return OSError(
            e.errno,
            f"{e.strerror or e} (an earlier write of this command failed; nothing more "
            "is written; the next command recovers the log)",
            e.filename,
        )

    def __enter__(self) -> AuditLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ----------------------------------------------------------------- internals

    @contextmanager
    def _flock(self) -> Iterator[None]:
        flock_within(self._lock_fd, self.lock_wait, self.dir / LOCK)
        try:
            yield
        finally:
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)

    def _recovery_event(self, rec: Recovery, actor: str | None = None) -> Event:
        return Event(
            action="audit.recovered",
            actor=actor or "facelab",
            role="system",
            object=f"sha256:{rec.sha256}",
            decision=rec.kind,
            details={
                "after_entry": rec.after_entry,
                "bytes_cut": rec.bytes_cut,
                "entries_cut": rec.entries_cut,
                "entries_adopted": rec.entries_adopted,
            },
        )

    def _authentic(self, lines: Sequence[bytes], first_seq: int) -> int:
        """How many of ``lines`` (entries from ``first_seq`` on), from the first, carry
        the lab's MAC of a writer session registered on this machine (or this writer's),
        at their own position."""
        keys = [self._mac_key]
        if self._known_sessions is not None and lines:
            try:
                sessions = list(self._known_sessions())
            except (BadInputError, OSError):
                sessions = []
            keys += [mac_key(self.signer, s) for s in reversed(sessions) if s != self.session]
        n = 0
        for line in lines:
            if not any(entry_authentic(line, k, self.origin) for k in keys):
                break
            if parse_entry(line)["seq"] != first_seq + n:
                break
            n += 1
        return n

    def _tail_error(self, signed: int, unsigned: int, adopt: int) -> str | None:
        """Why the tail after the head cannot be taken without a repair actor, or None."""
        if adopt < unsigned:
            return (
                f"entry {signed + adopt}, after the signed head, carries no valid MAC of "
                "a writer of this lab on this machine (a forged append, or entries a copy "
                "of the lab wrote elsewhere)"
            )
        if adopt > self.max_unsigned_tail:
            return (
                f"{adopt} authentic entries after the signed head, more than a crash "
                f"leaves (audit.max_unsigned_tail = {self.max_unsigned_tail}): was the "
                "head rolled back?"
            )
        return None

    def _open_locked(self, repair_actor: str | None, force_rewrite: bool = False):
        """Verify everything, then start from the signed head (caller holds the flock)."""
        from facelab.audit.verify import verify_log

        if repair_actor is not None:
            self._quarantine_bad_checkpoints(repair_actor)
        rep = verify_log(
            self.dir,
            self.origin,
            self.public_key,
            head_dir=self.head_dir,
            check_witnesses=False,
            pinned_head=self.pinned_head,
            pinned_witnesses=self.pinned_witnesses,
        )
        scan = rep.scan
        assert scan is not None
        head = scan.head
        signed = head.checkpoint.size if head is not None else 0
        unsigned = len(scan.lines) - signed if head is not None else 0
        adopt = self._authentic(scan.lines[signed : signed + unsigned], signed) if unsigned else 0
        for dmg in rep.damage:
            if dmg.kind == "torn-tail":
                continue
            if dmg.kind == "unsigned-tail":
                why = self._tail_error(signed, unsigned, adopt)
                if why is None or repair_actor is not None:
                    continue
                raise TamperedError(
                    f"{self.dir}: unsigned-tail: {why}; refusing to sign; `facelab audit "
                    "repair` adopts the authentic entries and cuts the rest on the record"
                )
            after_head = dmg.entry is not None and dmg.entry >= signed
            if dmg.kind in _TAIL_KINDS and after_head and repair_actor is not None:
                continue
            if dmg.kind == "hash-store-mismatch" and repair_actor is not None:
                continue
            where = f" at entry {dmg.entry}" if dmg.entry is not None else ""
            hint = ""
            if dmg.kind in ("garbage-tail", "hash-store-mismatch", "unsigned-tail"):
                hint = "; `facelab audit repair` cuts or rebuilds it on the record"
            raise TamperedError(
                f"{self.dir}: {dmg.kind}{where}: {dmg.message}; refusing to sign{hint}"
            )
        size = signed + adopt  # authentic entries after the head are adopted, never cut
        end = scan.ends[size - 1] if size else 0
        # derived stores: exactly what the verified entries give, up to the head
        want_idx = pack_offsets(scan.ends[:size])
        want_hashes = b"".join(scan.tree.hashes[: stored_count(size)])
        for fd, want in ((self._index_fd, want_idx), (self._hashes_fd, want_hashes)):
            have = os.pread(fd, len(want) + 1, 0)
            if force_rewrite or have != want:
                os.pwrite(fd, want, 0)
                os.ftruncate(fd, len(want))
        self._size, self._end = size, end
        self._frontier = frontier_of(size, lambda i: scan.tree.hashes[i])
        self._head_slot = head.slot if head is not None else None
        found = []
        if adopt:
            found.append(self._adopted(signed, adopt))
        total = os.fstat(self._entries_fd).st_size
        if total != end:
            rest = os.pread(self._entries_fd, total - end, end)
            found.append(self._cut(rest, unsigned - adopt, size))
        return found

    def _adopted(self, signed: int, n: int) -> Recovery:
        rec = Recovery(signed - 1, 0, "", "adopted-tail", entries_adopted=n)
        self.recoveries.append(rec)
        return rec

    def _quarantine_bad_checkpoints(self, actor: str) -> None:
        """Move checkpoint files that do not verify (malformed, forged, misnamed) to
        ``cut/``; each move is recorded once the log is open (``audit.quarantined``)."""
        for path in checkpoint_files(self.dir):
            try:
                cp = ckpt.verify(ckpt.read_note_file(path), self.public_key, self.origin)
                if path.stem == f"{cp.size:012d}":
                    continue
            except (NoteError, OSError):
                pass
            (self.dir / CUT).mkdir(exist_ok=True)
            digest = ""
            try:
                note = labfs.read_bytes(path, ckpt.MAX_NOTE_BYTES, what="a note")
                digest = hashlib.sha256(note).hexdigest()
            except (OSError, BadInputError):
                pass
            os.rename(path, self.dir / CUT / (path.name + ".quarantined"))
            self._pending.append(
                Event(
                    "audit.quarantined",
                    actor,
                    role="system",
                    object=f"sha256:{digest}" if digest else "",
                    decision="checkpoint-does-not-verify",
                    details={"file": path.name[:64]},
                )
            )

    def _cut(self, rest: bytes, complete: int, after: int) -> Recovery:
        """Cut ``rest`` (bytes after entry ``after - 1``), keep a copy under cut/, say what."""
        if complete:
            kind = "unsigned-tail"
        elif b"\n" not in rest and rest.startswith(b'{"'):
            kind = "torn-tail"
        else:
            kind = "garbage-tail"
        digest = hashlib.sha256(rest).hexdigest()
        keep = self.dir / CUT
        keep.mkdir(exist_ok=True)
        fd = os.open(
            keep / f"{after:012d}-{digest[:16]}.bin", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600
        )
        try:
            os.write(fd, rest)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.ftruncate(self._entries_fd, self._end)
        os.fsync(self._entries_fd)
        os.ftruncate(self._index_fd, self._size * 8)
        os.ftruncate(self._hashes_fd, stored_count(self._size) * 32)
        rec = Recovery(after - 1, len(rest), digest, kind, complete)
        self.recoveries.append(rec)
        return rec

    def _sync(self) -> list[Recovery]:
        """Adopt what other processes appended and signed since (caller holds the flock).

        O(1) when nothing changed; O(new entries) otherwise. Entries are adopted only up
        to the signed head, and the head's root must be the tree's; complete entries
        after the head (a process killed before signing) and torn bytes are cut on the
        record; anything else is ``TamperedError``.
        """
        total = os.fstat(self._entries_fd).st_size
        if total == self._end:
            return []
        if total < self._end:
            raise TamperedError(
                f"{self.dir / ENTRIES}: shorter ({total} bytes) than the {self._end} "
                "this writer knows: entries were cut"
            )
        hs = _head.read(self.head_dir, self.public_key, self.origin)
        head = hs.head
        if head is None or head.checkpoint.size < self._size:
            raise TamperedError(f"{self.head_dir}: the signed head is missing or rolled back")
        tail = os.pread(self._entries_fd, total - self._end, self._end)
        base, pos = self._end, 0
        lines: list[bytes] = []
        while (nl := tail.find(b"\n", pos)) >= 0:
            line = tail[pos:nl]
            try:
                ok = parse_entry(line)["seq"] == self._size + len(lines)
            except ValueError:
                ok = False
            if not ok:
                break
            lines.append(line)
            pos = nl + 1
        want = head.checkpoint.size - self._size
        if len(lines) < want:
            raise TamperedError(
                f"{self.dir / ENTRIES}: the head is signed at size {head.checkpoint.size} "
                f"but only {self._size + len(lines)} valid entries follow in order"
            )
        signed = head.checkpoint.size
        unsigned = len(lines) - want
        adopt = self._authentic(lines[want:], signed) if unsigned else 0
        why = self._tail_error(signed, unsigned, adopt)
        if why is not None:
            raise TamperedError(
                f"{self.dir / ENTRIES}: {why}; refusing to sign; run `facelab audit "
                "repair` to adopt the authentic entries and cut the rest on the record"
            )
        start, offsets, end = self._size, [], base
        for k, line in enumerate(lines[: want + adopt]):
            if k == want:
                self._check_root(head.checkpoint)
            end += len(line) + 1
            offsets.append(end)
            self._write_hashes(self._size, rfc9162.leaf_hash(line), self._frontier)
            self._size += 1
        if not adopt:
            self._check_root(head.checkpoint)
        os.pwrite(self._index_fd, pack_offsets(offsets), start * 8)
        self._end = end
        self._head_slot = head.slot
        found = [self._adopted(signed, adopt)] if adopt else []
        rest = tail[end - base :]
        if not rest:
            return found
        torn = b"\n" not in rest and rest.startswith(b'{"')
        if not torn:
            raise TamperedError(
                f"{self.dir / ENTRIES}: {len(rest)} bytes after entry {self._size - 1} are "
                "not a valid entry (garbage tail); run `facelab audit repair` to cut them "
                "on the record"
            )
        return [*found, self._cut(rest, 0, self._size)]

    def _check_root(self, cp: ckpt.Checkpoint) -> None:
        if root_of(self._frontier) != cp.root:
            raise TamperedError(
                f"{self.dir / ENTRIES}: the entries do not give the root the head signed "
                f"at size {cp.size}; refusing to sign"
            )

    def _write_hashes(self, n: int, leaf: bytes, frontier: list[tuple[int, bytes]]) -> None:
        hashes = new_hashes(n, leaf, frontier)
        os.pwrite(self._hashes_fd, b"".join(hashes), stored_count(n) * 32)

    def _append_locked(self, events: Sequence[Event]) -> list[Receipt]:
        now = _utc(self.clock())
        lines, receipts = [], []
        for i, e in enumerate(events):
            line = entry_bytes(
                e,
                self._size + i,
                now,
                self.policy_digest,
                mac_key=self._mac_key,
                origin=self.origin,
            )
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
        self._sign_head()  # acknowledged only once a signed checkpoint covers it
        if old // self.checkpoint_every != self._size // self.checkpoint_every:
            self._checkpoint_locked()
        return receipts

    def _sign_head(self) -> bytes:
        note = ckpt.sign(
            ckpt.Checkpoint(self.origin, self._size, root_of(self._frontier)), self.signer
        ).encode()
        slot = 0 if self._head_slot is None else 1 - self._head_slot
        _head.write(self.head_dir, note, slot)
        self._head_slot = slot
        self._head_note = note
        return note

    def latest_checkpoint(self) -> tuple[Path, ckpt.Checkpoint] | None:
        files = checkpoint_files(self.dir)
        if not files:
            return None
        try:
            note = ckpt.read_note_file(files[-1])
            return files[-1], ckpt.verify(note, self.public_key, self.origin)
        except NoteError as e:
            raise TamperedError(f"{files[-1]}: {e}") from e

    def _checkpoint_locked(self) -> str:
        """File the head (the checkpoint at the current size) under checkpoints/."""
        if self._size == 0:
            return ""
        hs = _head.read(self.head_dir, self.public_key, self.origin)
        if hs.head is None or hs.head.checkpoint.size != self._size:
            note = self._sign_head()
        else:
            note = hs.head.note
        cp = ckpt.verify(note, self.public_key, self.origin)
        target = self.dir / CHECKPOINTS / f"{cp.size:012d}.note"
        if target.exists():
            try:
                old = ckpt.verify(ckpt.read_note_file(target), self.public_key, self.origin)
            except NoteError as e:
                raise TamperedError(f"{target}: {e}") from e
            if old.root != cp.root:
                raise TamperedError(
                    f"{target}: already signs size {cp.size} with another root; "
                    "refusing a second checkpoint at a signed size (split view)"
                )
            return note.decode()
        tmp = target.with_suffix(".tmp")
        with open(tmp, "wb") as f:
            f.write(note)
            f.flush()
            os.fsync(f.fileno())
        os.rename(tmp, target)
        dfd = os.open(self.dir / CHECKPOINTS, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
        return note.decode()


def policy_digest(path: Path) -> str:
    try:
        return "sha256:" + hashlib.sha256(labfs.read_bytes(path, what="a policy")).hexdigest()
    except OSError as e:
        raise BadInputError(f"{path}: unreadable ({e.strerror})") from e
