"""Landlock, the confinement's second filesystem layer (the first is the minimal
mount namespace that bubblewrap builds).

* Filesystem: Landlock (Linux >= 5.13), applied to the process itself after
  ``PR_SET_NO_NEW_PRIVS``: read (and execute) only the listed paths, write only the
  listed ones. Everything else, the lab's keys, vault and other tenants' directories,
  ``/proc`` of the parent (its environment holds the passphrase), fails with EACCES.
  From Landlock ABI 4, TCP bind and connect are denied too; from ABI 6, signals and
  abstract UNIX sockets outside the sandbox.

The syscalls are made with ctypes (numbers are the same on every architecture for
syscalls added after 5.1): ``landlock_create_ruleset`` 444, ``landlock_add_rule`` 445,
``landlock_restrict_self`` 446 (see the kernel's Documentation/userspace-api/landlock).
"""

from __future__ import annotations

import ctypes
import os
from pathlib import Path

from facelab.errors import IsolationError

PR_SET_NO_NEW_PRIVS = 38
SYS_CREATE, SYS_ADD, SYS_RESTRICT = 444, 445, 446
LANDLOCK_CREATE_RULESET_VERSION = 1
RULE_PATH_BENEATH = 1

FS_EXECUTE, FS_WRITE_FILE, FS_READ_FILE, FS_READ_DIR = 1, 2, 4, 8
FS_ALL_V1 = (1 << 13) - 1  # EXECUTE .. MAKE_SYM
FS_REFER, FS_TRUNCATE, FS_IOCTL_DEV = 1 << 13, 1 << 14, 1 << 15
NET_BIND_TCP, NET_CONNECT_TCP = 1, 2
SCOPE_ABSTRACT_UNIX, SCOPE_SIGNAL = 1, 2
_FILE_RIGHTS = FS_EXECUTE | FS_WRITE_FILE | FS_READ_FILE | FS_TRUNCATE | FS_IOCTL_DEV


def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


def landlock_abi() -> int:
    """The running kernel's Landlock ABI version, 0 when there is none."""
    try:
        v = _libc().syscall(
            SYS_CREATE, None, ctypes.c_size_t(0), ctypes.c_uint32(LANDLOCK_CREATE_RULESET_VERSION)
        )
    except (OSError, AttributeError):
        return 0
    return max(0, int(v))


class _RulesetAttr(ctypes.Structure):
    _fields_ = [
        ("handled_access_fs", ctypes.c_uint64),
        ("handled_access_net", ctypes.c_uint64),
        ("scoped", ctypes.c_uint64),
    ]


class _PathBeneath(ctypes.Structure):
    _pack_ = 1
    _fields_ = [("allowed_access", ctypes.c_uint64), ("parent_fd", ctypes.c_int32)]


def restrict_filesystem(read: list[Path], write: list[Path]) -> int:
    """Confine this process to reading ``read`` and writing ``write`` (and what is
    beneath them). Irreversible. Returns the Landlock ABI used."""
    abi = landlock_abi()
    if abi < 1:
        raise IsolationError("the kernel has no Landlock (Linux >= 5.13 with it enabled)")
    fs = (
        FS_ALL_V1
        | (FS_REFER if abi >= 2 else 0)
        | (FS_TRUNCATE if abi >= 3 else 0)
        | (FS_IOCTL_DEV if abi >= 5 else 0)
    )
    attr = _RulesetAttr(
        fs,
        NET_BIND_TCP | NET_CONNECT_TCP if abi >= 4 else 0,
        SCOPE_ABSTRACT_UNIX | SCOPE_SIGNAL if abi >= 6 else 0,
    )
    size = 8 if abi < 4 else 16 if abi < 6 else 24
    libc = _libc()
    fd = libc.syscall(SYS_CREATE, ctypes.byref(attr), ctypes.c_size_t(size), ctypes.c_uint32(0))
    if fd < 0:
        raise IsolationError(f"landlock_create_ruleset: {os.strerror(ctypes.get_errno())}")
    try:
        # write paths: everything but execute (a binary the run writes cannot be run)
        for paths, rights in (
            (read, FS_EXECUTE | FS_READ_FILE | FS_READ_DIR),
            (write, fs & ~FS_EXECUTE),
        ):
            for p in paths:
                if not p.exists():
                    continue
                pfd = os.open(p, os.O_PATH | os.O_CLOEXEC)
                try:
                    allowed = rights & fs if p.is_dir() else rights & fs & _FILE_RIGHTS
                    rule = _PathBeneath(allowed, pfd)
                    if (
                        libc.syscall(
                            SYS_ADD,
                            ctypes.c_int(fd),
                            ctypes.c_int(RULE_PATH_BENEATH),
                            ctypes.byref(rule),
                            ctypes.c_uint32(0),
                        )
                        != 0
                    ):
                        raise IsolationError(
                            f"landlock_add_rule {p}: {os.strerror(ctypes.get_errno())}"
                        )
                finally:
                    os.close(pfd)
        if libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
            raise IsolationError("prctl(PR_SET_NO_NEW_PRIVS) failed")
        if libc.syscall(SYS_RESTRICT, ctypes.c_int(fd), ctypes.c_uint32(0)) != 0:
            raise IsolationError(f"landlock_restrict_self: {os.strerror(ctypes.get_errno())}")
    finally:
        os.close(fd)
    return abi
