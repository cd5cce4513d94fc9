"""Private scratch directories in ``$TMPDIR`` that a killed process does not leave behind.

The gates copy tenant files (a model package, trained artifacts that may hold faces)
into a scratch directory, work on it in the confinement and remove it in a ``finally``.
A SIGKILL skips the ``finally``. So each directory is named after its owner,
``facelab-<kind>-<pid>.<start>-<random>`` (``start`` is the process's start time in
clock ticks since boot, field 22 of ``/proc/<pid>/stat``, which tells a reused pid
apart), and every new scratch directory first removes the ones whose owner is gone.
A directory whose owner still runs, or that another user owns, is left alone.

The atomic writers (a dataset, a lab, an evidence pack, a subject access report) build
their output in a sibling, ``.<name>.tmp-<pid>.<start>-<random>``, and rename it into
place: :func:`sibling_dir` makes one after removing the siblings of that same output
whose owner is gone (a SIGKILLed writer's half-written copy).
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from pathlib import Path

_NAME = re.compile(r"^facelab-([a-z]+)-(\d{1,10})\.(\d{1,20})-[A-Za-z0-9_]+$")


def _start_time(pid: int) -> str | None:
    """The start time of ``pid`` (clock ticks after boot), or None if it does not run."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # the command name (field 2) is in parentheses and may hold spaces or ')'
    fields = stat[stat.rfind(")") + 2 :].split()
    return fields[19] if len(fields) > 19 else None


def _owner_is_gone(name: str) -> bool:
    m = _NAME.match(name)
    if m is None:
        return False
    pid, start = int(m.group(2)), m.group(3)
    return _start_time(pid) != start


def sweep(base: Path | None = None) -> list[Path]:
    """Remove the scratch directories in ``base`` (default ``$TMPDIR``) whose owning
    process is gone; returns what was removed. Never follows a link, never touches a
    directory another user owns or a name that is not a scratch name."""
    base = Path(base or tempfile.gettempdir())
    removed: list[Path] = []
    try:
        names = os.listdir(base)
    except OSError:
        return removed
    uid = os.geteuid()
    for name in names:
        if not name.startswith("facelab-") or not _owner_is_gone(name):
            continue
        p = base / name
        try:
            st = p.lstat()
        except OSError:
            continue
        if not p.is_dir() or p.is_symlink() or st.st_uid != uid:
            continue
        shutil.rmtree(p, ignore_errors=True)
        removed.append(p)
    return removed


def scratch_dir(kind: str) -> Path:
    """A new private directory (mode 0700) ``$TMPDIR/facelab-<kind>-<pid>.<start>-*``,
    after removing the scratch directories of processes that are gone.

    ``kind`` is lower-case ASCII letters (``import``, ``smoke``, ``export``). The caller
    removes the directory when done.
    """
    if not kind.isascii() or not kind.isalpha() or not kind.islower():
        raise ValueError(f"scratch kind {kind!r}: lower-case letters only")
    sweep()
    pid = os.getpid()
    start = _start_time(pid) or "0"
    return Path(tempfile.mkdtemp(prefix=f"facelab-{kind}-{pid}.{start}-"))


_SIBLING_TAIL = re.compile(r"\.tmp-(\d{1,10})\.(\d{1,20})-[A-Za-z0-9_]+$")


def sweep_siblings(out: Path) -> list[Path]:
    """Remove ``.<out.name>.tmp-<pid>.<start>-*`` beside ``out`` whose owner is gone."""
    out = Path(out)
    parent = out.parent if str(out.parent) else Path(".")
    head = f".{out.name}."
    removed: list[Path] = []
    try:
        names = os.listdir(parent)
    except OSError:
        return removed
    uid = os.geteuid()
    for name in names:
        m = _SIBLING_TAIL.search(name)
        if not name.startswith(head) or m is None or name[len(head) - 1 : m.start()] != "":
            continue
        if _start_time(int(m.group(1))) == m.group(2):
            continue  # its owner still runs
        p = parent / name
        try:
            st = p.lstat()
        except OSError:
            continue
        if p.is_symlink() or not p.is_dir() or st.st_uid != uid:
            continue
        shutil.rmtree(p, ignore_errors=True)
        removed.append(p)
    return removed


def sibling_dir(out: Path) -> Path:
    """A new directory beside ``out`` to build it in (then renamed into place), after
    removing the ones a killed writer of ``out`` left. Raises ``OSError`` as mkdtemp."""
    out = Path(out)
    sweep_siblings(out)
    pid = os.getpid()
    start = _start_time(pid) or "0"
    parent = out.parent if str(out.parent) else Path(".")
    return Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-{pid}.{start}-", dir=parent))
