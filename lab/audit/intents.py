"""State changes and their records together: an intent before the commit, an outcome after.

Every component that changes state (ingest, destroy, retention; import and release in
the gates) records ``<action>.intent`` before it commits and ``<action>`` with
``details["intent"] = <seq of the intent>`` after. Both are durable and signed before
the call returns (``AuditLog.record``), so after a crash at any point the log holds
either nothing (nothing was committed), an intent alone (the commit may or may not have
happened: the reconciler of that action looks at the state and records the outcome), or
both. ``open_intents`` lists the intents that have no outcome yet.

An intent without an outcome is not always a crash: another process may be between
the two right now. Whoever records an intent holds the *state lock* of its tenant
(``held``: an ``flock(2)`` on ``LAB/audit/locks/<tenant>.lock``, ``_lab`` for the lab's
own changes) from before the intent until after the outcome; the kernel drops it when
the process dies. A reconciler finishes an intent only when it can take that lock
without waiting (``try_held``) and the intent is still open once it holds it, so a live
change is never closed as aborted, and never gets two outcomes.

Usage::

    seq = intents.begin(log, Event("export.release", actor, tenant=t, details={...}))
    ... commit ...
    intents.finish(log, seq, Event("export.release", actor, tenant=t, decision="released"))
"""

from __future__ import annotations

import fcntl
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

from facelab.audit.events import Event
from facelab.audit.log import LOCK_WAIT_S, AuditLog, flock_within

INTENT = ".intent"
LOCKS = "locks"
LAB_KEY = "_lab"  # the state lock of changes that belong to no tenant (retention)

_held: dict[str, tuple[int, int]] = {}  # lock path -> (fd, depth), this process
_held_mutex = threading.Lock()


def _lock_path(audit_dir: Path | str, tenant: str) -> Path:
    name = tenant or LAB_KEY
    if not name or "/" in name or name.startswith("."):
        raise ValueError(f"no state lock for {tenant!r}")
    return Path(audit_dir) / LOCKS / f"{name}.lock"


def _open_lock(path: Path) -> int:
    path.parent.mkdir(mode=0o700, exist_ok=True)
    return os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)


@contextmanager
def held(audit_dir: Path | str, tenant: str, wait: float = LOCK_WAIT_S) -> Iterator[None]:
    """Hold ``tenant``'s state lock, waiting at most ``wait`` seconds for it (callers pass
    the policy's ``audit.lock_wait_seconds``, ``AuditLog.lock_wait``); reentrant within
    a process.

    Wrap everything from before ``begin`` to after ``finish``. Order: a state lock is
    taken before the audit log's own lock, never while holding it.

    Raises ``BusyError`` (exit 75) when another process holds it past ``wait``: a
    stopped or hung command never hangs every later command of that tenant.
    """
    key = str(_lock_path(audit_dir, tenant))
    with _held_mutex:
        if key in _held:
            fd, depth = _held[key]
            _held[key] = (fd, depth + 1)
            mine = False
        else:
            mine = True
    if mine:
        fd = _open_lock(Path(key))
        try:
            who = f"the state lock of {'tenant ' + repr(tenant) if tenant else 'the lab'}"
            flock_within(fd, wait, Path(key), who)
        except BaseException:
            os.close(fd)
            raise
        with _held_mutex:
            _held[key] = (fd, 1)
    try:
        yield
    finally:
        with _held_mutex:
            fd, depth = _held[key]
            if depth > 1:
                _held[key] = (fd, depth - 1)
                fd = -1
            else:
                del _held[key]
        if fd >= 0:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)


@contextmanager
def try_held(audit_dir: Path | str, tenant: str) -> Iterator[bool]:
    """Take ``tenant``'s state lock if nobody holds it; yields whether it did. False
    means a change of that tenant is live (in another process, or in this one)."""
    key = str(_lock_path(audit_dir, tenant))
    with _held_mutex:
        busy_here = key in _held
    if busy_here:
        yield False
        return
    fd = _open_lock(Path(key))
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        with _held_mutex:
            _held[key] = (fd, 1)
        try:
            yield True
        finally:
            with _held_mutex:
                _held.pop(key, None)
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def begin(log: AuditLog, event: Event) -> int:
    """Record the intent of ``event`` (action ``<action>.intent``); return its seq."""
    intent = replace(event, action=event.action + INTENT, decision="intent")
    return log.record(intent).seq


def finish(log: AuditLog, intent_seq: int, event: Event) -> int:
    """Record the outcome of the intent ``intent_seq``; return the outcome's seq."""
    details = {**dict(event.details), "intent": intent_seq}
    return log.record(replace(event, details=details)).seq


def open_intents(audit_dir: Path | str, prefix: str = "") -> list[dict]:
    """Intent entries (parsed) whose action starts with ``prefix`` and that no later
    entry closes (an entry whose ``details.intent`` is the intent's seq), in log order.

    Reads the entries once; only lines that mention an intent are parsed.
    """
    from facelab.audit.read import entries

    opened: dict[int, dict] = {}
    closed: set[int] = set()
    for e in entries(audit_dir, b"intent"):
        action = str(e.get("action", ""))
        if action.endswith(INTENT) and action.startswith(prefix):
            opened[e["seq"]] = e
        ref = e.get("details", {}).get("intent") if isinstance(e.get("details"), dict) else None
        if isinstance(ref, int):
            closed.add(ref)
    return [e for s, e in sorted(opened.items()) if s not in closed]
