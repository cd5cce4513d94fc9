"""The kernel's own record of seccomp kills, read from ``/dev/kmsg`` (root only).

When seccomp kills a process (``SECCOMP_RET_KILL_PROCESS``) the kernel logs an audit
record of type 1326 (``AUDIT_SECCOMP``) with the uid, pid and system call number,
whoever the process was: the run's main process or a grandchild whose parent would
rather hide it. The runner opens ``/dev/kmsg`` before the run, skips what was there, and
afterwards collects the records of the run's dedicated uid. Where ``/dev/kmsg`` cannot
be read (not root, or ``auditd`` takes the records), ``available`` is False and the
runner says so instead of guessing from exit codes.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re

_RECORD = re.compile(rb"type=1326 .*? uid=(\d+) .*? syscall=(\d+)")


class SeccompRecords:
    """Open before a run; :meth:`kills` after it."""

    def __init__(self) -> None:
        self.fd: int | None = None
        try:
            self.fd = os.open("/dev/kmsg", os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
            os.lseek(self.fd, 0, os.SEEK_END)
        except OSError:
            self.close()

    @property
    def available(self) -> bool:
        return self.fd is not None

    def kills(self, uid: int) -> list[str]:
        """Names of the system calls for which seccomp killed a process of ``uid``
        since this object was made (in order, repeats kept)."""
        if self.fd is None:
            return []
        out = []
        while True:
            try:
                rec = os.read(self.fd, 8192)
            except OSError as e:
                if e.errno == errno.EPIPE:  # the ring buffer wrapped: keep reading
                    continue
                break  # EAGAIN: no more records
            if not rec:
                break
            m = _RECORD.search(rec)
            if m and int(m.group(1)) == uid:
                out.append(_name(int(m.group(2))))
        return out

    def close(self) -> None:
        if self.fd is not None:
            with contextlib.suppress(OSError):
                os.close(self.fd)
        self.fd = None


def _name(nr: int) -> str:
    try:
        import pyseccomp

        return pyseccomp.resolve_syscall(pyseccomp.system_arch(), nr).decode()
    except Exception:
        return f"syscall {nr}"
