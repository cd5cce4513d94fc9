"""A cgroup for one confined run, where the machine delegates one (root only).

cgroup v2 (``/sys/fs/cgroup/cgroup.controllers``): a child of this process's cgroup
with ``memory.max``, ``memory.swap.max = 0`` and ``pids.max``. cgroup v1: a child of
this process's ``memory`` cgroup (``memory.limit_in_bytes``) and of its ``pids`` cgroup
(``pids.max``). The run's first process joins before it executes bubblewrap, so every
process of the run is counted; at the end every process left in it is killed and the
cgroup removed. Without either, ``kind()`` is "" and the runner relies on rlimits and
its own accounting.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path("/sys/fs/cgroup")


def _own(controller: str) -> str | None:
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        _, ctrls, path = line.split(":", 2)
        if controller in ctrls.split(","):
            return path
    return None


def _v2_parent() -> Path | None:
    if not (ROOT / "cgroup.controllers").exists():
        return None
    own = _own("")
    if own is None:
        return None
    parent = ROOT / own.lstrip("/")
    ctrl = (parent / "cgroup.subtree_control").read_text() if parent.exists() else ""
    if "memory" in ctrl and "pids" in ctrl and os.access(parent, os.W_OK):
        return parent
    return None


def _v1_parents() -> tuple[Path, Path] | None:
    mem, pids = _own("memory"), _own("pids")
    if mem is None or pids is None:
        return None
    m, p = ROOT / "memory" / mem.lstrip("/"), ROOT / "pids" / pids.lstrip("/")
    if m.is_dir() and p.is_dir() and os.access(m, os.W_OK) and os.access(p, os.W_OK):
        return m, p
    return None


def kind() -> str:
    """ "v2", "v1" or "" (no cgroup this process may create)."""
    if os.geteuid() != 0:
        return "v2" if _v2_parent() is not None else ""
    if _v2_parent() is not None:
        return "v2"
    return "v1" if _v1_parents() is not None else ""


@dataclass
class JobCgroup:
    kind: str
    dirs: tuple[Path, ...]

    @property
    def path(self) -> tuple[Path, ...]:
        return self.dirs

    def oom_killed(self) -> bool:
        d = self.dirs[0]
        name = "memory.events" if self.kind == "v2" else "memory.oom_control"
        with contextlib.suppress(OSError, ValueError):
            for line in (d / name).read_text().splitlines():
                k, _, v = line.partition(" ")
                if k == "oom_kill" and int(v) > 0:
                    return True
        return False

    def remove(self) -> None:
        for _ in range(50):
            pids = set()
            for d in self.dirs:
                with contextlib.suppress(OSError):
                    pids |= {int(x) for x in (d / "cgroup.procs").read_text().split()}
            for pid in pids:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)
            gone = True
            for d in self.dirs:
                try:
                    d.rmdir()
                except FileNotFoundError:
                    pass
                except OSError:
                    gone = False
            if gone:
                return
            time.sleep(0.02)


def join(dirs: tuple[Path, ...], pid: int) -> None:
    """Move ``pid`` into the run's cgroup(s); called in the child before exec."""
    for d in dirs:
        (d / "cgroup.procs").write_text(str(pid))


def create(memory_mb: int, max_procs: int) -> JobCgroup | None:
    """A new cgroup for one run, or None where none can be made."""
    name = f"facelab-{os.getpid()}-{secrets.token_hex(4)}"
    try:
        parent = _v2_parent()
        if parent is not None:
            d = parent / name
            d.mkdir()
            (d / "memory.max").write_text(str(memory_mb << 20))
            with contextlib.suppress(OSError):
                (d / "memory.swap.max").write_text("0")
            (d / "pids.max").write_text(str(max_procs))
            return JobCgroup("v2", (d,))
        if os.geteuid() != 0:
            return None
        v1 = _v1_parents()
        if v1 is None:
            return None
        m, p = v1[0] / name, v1[1] / name
        m.mkdir()
        p.mkdir()
        (m / "memory.limit_in_bytes").write_text(str(memory_mb << 20))
        (p / "pids.max").write_text(str(max_procs))
        return JobCgroup("v1", (m, p))
    except OSError:
        return None
