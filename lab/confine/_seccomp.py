"""The system-call filter of a confined process, compiled by libseccomp.

libseccomp (through ``pyseccomp``, a ctypes binding with the API of libseccomp's own
Python module) builds the BPF program; bubblewrap loads it with ``--seccomp FD`` just
before it executes the confined command, after ``PR_SET_NO_NEW_PRIVS``. Nothing here
assembles BPF by hand.

Two actions:

* ``KILL_PROCESS`` for system calls that reach the kernel's or another process's
  state and that no job, parser or model needs: tracing and profiling
  (``perf_event_open``, ``bpf``, ``ptrace``, ``process_vm_readv/writev``, ``kcmp``),
  kernel images and modules, reboot, swap and accounting, the clock and the host's
  names, mounts and namespaces (``mount``, ``umount2``, ``pivot_root``, ``unshare``,
  ``setns``, ``clone`` with a namespace flag), the kernel key rings, ``userfaultfd``,
  ``io_uring_*``, handles (``open_by_handle_at``), ``quotactl``, ``chroot``. The kernel
  kills the whole process with SIGSYS, which the runner sees from outside and records:
  a denial observed on the kernel side, not read from the job's own words.
* ``ERRNO(ENOSYS)`` for interfaces that open side or covert channels or pass the
  write accounting (``DENY_ENOSYS``: fallocate, inotify, flock and fcntl record locks,
  cachestat, mincore, AIO, NUMA policy, scheduler classes).
* ``ERRNO`` for things a library may try harmlessly and must get an error for:
  ``socket`` and ``socketpair`` (EACCES: the job's only channels are the pipes the
  runner hands over, so no pathname or abstract UNIX socket, netlink or packet socket
  can be made), SysV IPC (EACCES; the IPC namespace is private too), ``clone3``
  (ENOSYS, so that the C library falls back to ``clone``, whose flags the filter can
  read).
"""

from __future__ import annotations

import errno
import os
import tempfile

KILL = (
    "perf_event_open",
    "bpf",
    "ptrace",
    "process_vm_readv",
    "process_vm_writev",
    "kcmp",
    "kexec_load",
    "kexec_file_load",
    "init_module",
    "finit_module",
    "delete_module",
    "reboot",
    "swapon",
    "swapoff",
    "acct",
    "settimeofday",
    "clock_settime",
    "clock_adjtime",
    "adjtimex",
    "sethostname",
    "setdomainname",
    "mount",
    "umount2",
    "pivot_root",
    "move_mount",
    "open_tree",
    "fsopen",
    "fsconfig",
    "fsmount",
    "fspick",
    "mount_setattr",
    "unshare",
    "setns",
    "keyctl",
    "add_key",
    "request_key",
    "userfaultfd",
    "io_uring_setup",
    "io_uring_enter",
    "io_uring_register",
    "open_by_handle_at",
    "name_to_handle_at",
    "quotactl",
    "chroot",
    "lookup_dcookie",
    "iopl",
    "ioperm",
    "syslog",
    "vhangup",
    "nfsservctl",
    "personality",
    "memfd_secret",
    "modify_ldt",
    "pidfd_getfd",
    "process_madvise",
    "process_mrelease",
    "move_pages",
    "migrate_pages",
    "listmount",
    "statmount",
    "fanotify_init",
    "fanotify_mark",
    "quotactl_fd",
    "listmount",
    "statmount",
    "lsm_get_self_attr",
    "lsm_set_self_attr",
    "lsm_list_modules",
)
# System calls newer than the libseccomp of the distribution knows by name, by their
# x86_64 numbers (the kernel's arch/x86/entry/syscalls/syscall_64.tbl)
X86_64_NUMBERS = {
    "statmount": 457,
    "listmount": 458,
    "lsm_get_self_attr": 459,
    "lsm_set_self_attr": 460,
    "lsm_list_modules": 461,
}
# ENOSYS: interfaces a library may probe and must do without. fallocate allocates disk
# without writing (past the write accounting); inotify and file locks on the shared
# read-only files are covert channels between tenants' jobs and watch the host's
# processes; cachestat and mincore read the host's page cache; AIO and mbind are unused.
DENY_ENOSYS = (
    "fallocate",
    "inotify_init",
    "inotify_init1",
    "inotify_add_watch",
    "flock",
    "cachestat",
    "mincore",
    "io_setup",
    "io_submit",
    "io_getevents",
    "io_pgetevents",
    "io_cancel",
    "io_destroy",
    "mbind",
    "set_mempolicy",
    "set_mempolicy_home_node",
    "sched_setattr",
    "sched_setscheduler",
    "lookup_dcookie",
)
# fcntl(2) commands that take or test a record lock (F_GETLK 5, F_SETLK 6, F_SETLKW 7,
# F_OFD_GETLK 36, F_OFD_SETLK 37, F_OFD_SETLKW 38)
FCNTL_LOCKS = (5, 6, 7, 36, 37, 38)
DENY_EACCES = (
    "mq_open",
    "mq_unlink",
    "mq_timedsend",
    "mq_timedreceive",
    "mq_notify",
    "mq_getsetattr",
    "socket",
    "socketpair",
    "shmget",
    "shmat",
    "msgget",
    "msgsnd",
    "msgrcv",
    "semget",
    "semop",
    "semtimedop",
)
# clone(2) flags that make a new namespace (sched.h)
CLONE_NEW = (
    0x00020000  # NEWNS
    | 0x02000000  # NEWCGROUP
    | 0x04000000  # NEWUTS
    | 0x08000000  # NEWIPC
    | 0x10000000  # NEWUSER
    | 0x20000000  # NEWPID
    | 0x40000000  # NEWNET
    | 0x00000080  # NEWTIME
)


def _bits(mask: int) -> list[int]:
    return [1 << i for i in range(mask.bit_length()) if mask >> i & 1]


def available() -> str:
    """'' when libseccomp can be used here, else why not (one line)."""
    try:
        import pyseccomp  # noqa: F401
    except Exception as e:  # the module loads libseccomp.so.2 when imported
        return f"libseccomp unavailable ({type(e).__name__}: {e})"
    return ""


def build_filter():
    """The filter described in the module docstring, as a ``pyseccomp.SyscallFilter``.

    Raises
    ------
    ImportError, OSError
        libseccomp or its binding is missing.
    """
    import pyseccomp as sc

    f = sc.SyscallFilter(defaction=sc.ALLOW)
    import platform

    x86_64 = platform.machine() == "x86_64"
    for name in KILL:
        try:
            f.add_rule(sc.KILL_PROCESS, name)
        except (RuntimeError, ValueError, OSError):
            # unknown to this libseccomp: by number where we know it, else this
            # architecture does not have it
            if x86_64 and name in X86_64_NUMBERS:
                f.add_rule(sc.KILL_PROCESS, X86_64_NUMBERS[name])
    for name in DENY_EACCES:
        try:
            f.add_rule(sc.ERRNO(errno.EACCES), name)
        except (RuntimeError, ValueError, OSError):
            continue
    for name in DENY_ENOSYS:
        try:
            f.add_rule(sc.ERRNO(errno.ENOSYS), name)
        except (RuntimeError, ValueError, OSError):
            continue
    for cmd in FCNTL_LOCKS:
        f.add_rule(sc.ERRNO(errno.ENOLCK), "fcntl", sc.Arg(1, sc.EQ, cmd))
    f.add_rule(sc.ERRNO(errno.ENOSYS), "clone3")
    for bit in _bits(CLONE_NEW):
        f.add_rule(sc.KILL_PROCESS, "clone", sc.Arg(0, sc.MASKED_EQ, bit, bit))
    # ioctl(TIOCSTI) pushes bytes into a terminal's input queue
    f.add_rule(sc.KILL_PROCESS, "ioctl", sc.Arg(1, sc.MASKED_EQ, 0xFFFFFFFF, 0x5412))
    return f


def bpf_file() -> int:
    """A file descriptor, positioned at 0, holding the compiled BPF program (for
    ``bwrap --seccomp FD``). The caller passes it to the child and closes it."""
    f = build_filter()
    fd, name = tempfile.mkstemp(prefix="facelab-seccomp-")
    os.unlink(name)
    with os.fdopen(os.dup(fd), "w+b") as fh:
        f.export_bpf(fh)
    os.lseek(fd, 0, os.SEEK_SET)
    return fd
