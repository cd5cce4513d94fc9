"""Run a Python function in the confinement: the one door for tenant code and bytes.

A confined run is ``bwrap`` (bubblewrap, from the distribution) starting
``python -I -B -m facelab.confine.entry`` in:

* **a dedicated, unprivileged identity.** As root, bubblewrap builds the sandbox with
  its privileges, then ``setpriv`` (util-linux) drops to a uid/gid of its own for this
  run (``UID_BASE`` + a random offset), clears the supplementary groups, empties the
  bounding set and sets ``no_new_privs``; every capability set is then empty. Not as
  root: an unprivileged user namespace (``--unshare-user``), uid mapped to the caller.
* **every namespace**: mount, PID (the confined process is PID 1: when it ends, the
  kernel kills everything else in it), network (only a loopback that is down), IPC
  (no host SysV segment or queue), UTS (its own hostname), cgroup.
* **a minimal root**: a read-only tmpfs with read-only binds of ``/usr`` (and the
  ``/lib``-style links), ``/etc/ld.so.cache``, the Python installation, facelab's own
  packages and the caller's read paths; the caller's write paths bound writable; a
  private ``/tmp`` and ``/dev/shm`` inside the first write path; a new ``/proc`` and a
  minimal ``/dev``. Nothing else of the host (``/etc/shadow``, the lab's keys and vault,
  other tenants) exists inside.
* **seccomp** (``_seccomp.py``, compiled by libseccomp, loaded by bubblewrap).
* **Landlock** (``_landlock.py``) as a second filesystem layer, applied by the entry
  before the target runs; the entry reports the ABI it applied on a channel written
  before any target code runs.
* **limits**: rlimits set before ``exec`` (address space, CPU, file size, processes of
  the dedicated uid, open files, no core), the runner's own accounting of the write
  paths (bytes and files, polled; over the cap the run is killed), stdout and stderr
  read with a cap (killed on overflow), the wall clock (kills the sandbox, and with it
  the PID namespace). Where the machine delegates a cgroup (v2, or v1 ``memory`` and
  ``pids`` as root), the run gets one with a memory and a task limit for the whole run.

The environment inside is built here from nothing: the caller's (which may hold the
operator passphrase) never reaches the child.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import facelab as lab_package
from facelab.confine import _cgroup, _kmsg, _landlock, _seccomp
from facelab.errors import IsolationError

import enclave_policy

UID_BASE = 610_000  # dedicated uids UID_BASE .. UID_BASE + 65535: no account holds them
SIGSYS_EXIT = 128 + signal.SIGSYS
POLL_S = 0.02  # the write accounting's period: a writer overshoots by at most its rate x this
PR_SET_PDEATHSIG = 1


@dataclass(frozen=True)
class Limits:
    """Limits of one confined run.

    Attributes
    ----------
    wall_seconds : float
        Wall-clock time of the whole run; past it the sandbox is killed.
    cpu_seconds : int
        CPU time of each process (RLIMIT_CPU).
    memory_mb : int
        Address space of each process (RLIMIT_AS), and memory of the whole run where a
        cgroup is delegated, in MiB.
    max_procs : int
        Tasks (processes and threads) of the run's dedicated uid (RLIMIT_NPROC), and
        ``pids.max`` of its cgroup.
    max_file_mb : int
        Largest file the run may write (RLIMIT_FSIZE), MiB.
    max_write_mb : int
        Bytes on disk in all write paths together (the runner's accounting), MiB.
    max_files : int
        Directory entries in all write paths together.
    max_output_kb : int
        stdout and stderr together, KiB; past it the run is killed.
    max_result_kb : int
        The result channel, KiB.
    """

    wall_seconds: float = 120.0
    cpu_seconds: int = 120
    memory_mb: int = 2048
    max_procs: int = 64
    max_file_mb: int = 256
    max_write_mb: int = 512
    max_files: int = 4096
    max_output_kb: int = 256
    max_result_kb: int = 1024


@dataclass(frozen=True)
class ConfinedRun:
    """What the runner observed of one confined run (never the run's own claims).

    ``status`` is ``ok`` (exit 0 and a result), ``failed`` (the target raised: its
    error is in ``error``), ``denied`` (killed by seccomp: a forbidden system call),
    ``limit`` (a limit was hit: ``events`` says which), ``timeout`` or ``refused`` (the
    sandbox could not be built). ``result`` is the target's return value (JSON), or
    None. ``layers`` lists the layers in force, from this module's own knowledge plus
    the Landlock ABI that the entry applied before the target ran.
    """

    status: str
    returncode: int | None
    result: object
    error: str
    events: tuple[str, ...]
    layers: tuple[str, ...]
    stdout_tail: str
    stderr_tail: str
    wall_s: float
    uid: int | None = None
    extra: dict = field(default_factory=dict)


_PROC_MASKED = (
    "cmdline",
    "kallsyms",
    "keys",
    "key-users",
    "timer_list",
    "sched_debug",
    "interrupts",
    "diskstats",
    "kcore",
    "modules",
    "buddyinfo",
    "slabinfo",
    "vmallocinfo",
    "zoneinfo",
    "pagetypeinfo",
    "iomem",
    "ioports",
    "swaps",
    "partitions",
    "consoles",
    "devices",
    "misc",
    "locks",
    "latency_stats",
    "sys/kernel/random/boot_id",
    "config.gz",
    "kpagecount",
    "kpageflags",
    "kpagecgroup",
    "stat",
    "loadavg",
    "vmstat",
)


def bwrap_path() -> str | None:
    return shutil.which("bwrap", path="/usr/bin:/bin:/usr/local/bin")


def setpriv_path() -> str | None:
    return shutil.which("setpriv", path="/usr/bin:/bin")


def missing_layers() -> list[str]:
    """Every layer this machine cannot provide, one line each ([] when all are here)."""
    out = []
    if bwrap_path() is None:
        out.append("bubblewrap (bwrap) is not installed: no namespaces or minimal root")
    if os.geteuid() == 0 and setpriv_path() is None:
        out.append("setpriv (util-linux) is not installed: no dedicated uid")
    why = _seccomp.available()
    if why:
        out.append(f"seccomp: {why}")
    if _landlock.landlock_abi() < 1:
        out.append("Landlock: the kernel has none (Linux >= 5.13 with it enabled)")
    if os.geteuid() != 0 and _cgroup.kind() == "":
        out.append("process limit: no dedicated uid (not root) and no delegated cgroup")
    return out


def bound_paths() -> list[Path]:
    """What every confined run reads besides its own read paths: the Python
    installation, its site-packages and facelab's packages; never the working
    directory or other ``PYTHONPATH`` entries."""
    return _python_paths()


def _python_paths() -> list[Path]:
    import site

    paths = {
        Path(sys.prefix),
        Path(sys.base_prefix),
        Path(sys.exec_prefix),
        Path(sys.base_exec_prefix),
        Path(lab_package.__file__).parent,
        Path(enclave_policy.__file__).parent,
        Path(os.path.realpath(sys.executable)).parent.parent,
        *(Path(p) for p in site.getsitepackages()),
        # site-packages added by .pth files (a venv over another's packages); never other
        # sys.path entries (PYTHONPATH may name a directory holding anything)
        *(Path(p) for p in sys.path if p.endswith(("site-packages", "dist-packages"))),
    }
    out = set()
    for p in paths:
        try:
            if p.is_dir():
                out.add(p.resolve())
        except OSError:  # a directory this user may not look into: not bound
            continue
    return sorted(out)


def _covered(p: Path, by: list[Path]) -> bool:
    return any(p == b or b in p.parents for b in by)


def _minimal(paths: list[Path]) -> list[Path]:
    """Drop paths that lie under another path of the list."""
    out: list[Path] = []
    for p in sorted(set(paths), key=lambda q: len(q.parts)):
        if not _covered(p, out):
            out.append(p)
    return out


def _bwrap_argv(
    read: list[Path],
    write: list[Path],
    workdir: Path,
    uid: int | None,
    seccomp_fd: int,
    status_fd: int,
) -> list[str]:
    bw = bwrap_path()
    assert bw is not None
    argv = [
        bw,
        "--unshare-ipc",
        "--unshare-pid",
        "--unshare-net",
        "--unshare-uts",
        "--unshare-cgroup-try",
        "--hostname",
        "facelab-confined",
        "--die-with-parent",
        "--new-session",
        "--as-pid-1",
        "--clearenv",
        "--json-status-fd",
        str(status_fd),
    ]
    if uid is None:
        argv += ["--unshare-user", "--cap-drop", "ALL"]
    else:
        # setpriv needs these three to drop to the dedicated uid and empty the bounding
        # set; it drops them (and every other) before it executes Python
        argv += ["--cap-drop", "ALL"]
        argv += ["--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID", "--cap-add", "CAP_SETPCAP"]
    argv += ["--tmpfs", "/", "--ro-bind", "/usr", "/usr"]
    for name in ("bin", "sbin", "lib", "lib32", "lib64", "libx32"):
        host = Path("/") / name
        if host.is_symlink():
            argv += ["--symlink", os.readlink(host), f"/{name}"]
        elif host.is_dir():
            argv += ["--ro-bind", str(host), f"/{name}"]
    for f in ("/etc/ld.so.cache", "/etc/localtime"):
        if Path(f).exists():
            argv += ["--ro-bind", f, f]
    scratch = write[0] if write else None
    # the private /tmp first: binds below /tmp (a test's tmp_path) then land inside it
    if scratch is not None:
        argv += ["--bind", str(scratch / ".tmp"), "/tmp"]
    else:
        argv += ["--tmpfs", "/tmp"]
    cpu = [Path("/sys/devices/system/cpu")] if Path("/sys/devices/system/cpu").is_dir() else []
    ro = _minimal([p for p in _python_paths() + read + cpu if not _covered(p, [Path("/usr")])])
    # the directories above each bind, traversable by the run's uid (bubblewrap would
    # copy the host's modes, and /root is 0700)
    parents = sorted({a for p in ro + write for a in p.parents if a != Path("/")}, key=str)
    for a in parents:
        if not _covered(a, [Path("/usr")]) and not _covered(a, ro + write):
            argv += ["--perms", "0755", "--dir", str(a)]
    for p in ro:
        if not _covered(p, write):
            argv += ["--ro-bind", str(p), str(p)]
    for p in _minimal(write):
        argv += ["--bind", str(p), str(p)]
    argv += ["--proc", "/proc", "--dev", "/dev"]
    # the host-wide files of procfs masked (as container runtimes do): boot command line,
    # kernel symbols, key rings, interrupts, disks, devices, memory maps of the machine
    for name in _PROC_MASKED:
        if Path("/proc", name).exists():
            argv += ["--ro-bind", "/dev/null", f"/proc/{name}"]
    if scratch is not None:
        argv += ["--bind", str(scratch / ".shm"), "/dev/shm"]
    argv += ["--remount-ro", "/", "--chdir", "/"]  # the entry changes directory as the run's uid
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(workdir),
        "TMPDIR": "/tmp",
        "MPLCONFIGDIR": "/tmp",
        "LANG": "C.UTF-8",
        "OMP_NUM_THREADS": str(min(os.cpu_count() or 1, 8)),
    }
    for k, v in env.items():
        argv += ["--setenv", k, v]
    argv += ["--seccomp", str(seccomp_fd), "--"]
    if uid is not None:
        argv += [
            setpriv_path() or "/usr/bin/setpriv",
            f"--reuid={uid}",
            f"--regid={uid}",
            "--clear-groups",
            "--bounding-set=-all",
            "--inh-caps=-all",
            "--no-new-privs",
            "--",
        ]
    argv += [sys.executable, "-I", "-B", "-m", "facelab.confine.entry"]
    return argv


def _preexec(limits: Limits, dedicated: bool, cgroup_dir: Path | None):
    def apply() -> None:
        import resource

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if cgroup_dir is not None:
            _cgroup.join(cgroup_dir, os.getpid())
        mem = limits.memory_mb << 20
        for res, value in (
            (resource.RLIMIT_AS, mem),
            (resource.RLIMIT_FSIZE, limits.max_file_mb << 20),
            (resource.RLIMIT_NOFILE, 1024),
            (resource.RLIMIT_CORE, 0),
        ):
            resource.setrlimit(res, (value, value))
        # SIGXCPU at the soft limit (recorded as such), SIGKILL 2 s later
        resource.setrlimit(resource.RLIMIT_CPU, (limits.cpu_seconds, limits.cpu_seconds + 2))
        if dedicated:
            resource.setrlimit(resource.RLIMIT_NPROC, (limits.max_procs, limits.max_procs))

    return apply


class _Capped(threading.Thread):
    """Reads a pipe to its end, keeping at most ``keep`` bytes of its tail and counting
    the rest; calls ``over`` once when more than ``cap`` bytes arrived."""

    def __init__(self, fd: int, cap: int, keep: int, over) -> None:
        super().__init__(daemon=True)
        self.fd, self.cap, self.keep, self.over = fd, cap, keep, over
        self.total = 0
        self.head = bytearray()
        self.tail = bytearray()

    def run(self) -> None:
        while True:
            try:
                chunk = os.read(self.fd, 1 << 16)
            except OSError:
                break
            if not chunk:
                break
            self.total += len(chunk)
            if len(self.head) < self.keep:
                self.head += chunk[: self.keep - len(self.head)]
            self.tail += chunk
            if len(self.tail) > self.keep:
                del self.tail[: len(self.tail) - self.keep]
            if self.total > self.cap:
                self.over()
                # keep draining so that the writer is not blocked while it is killed
        os.close(self.fd)


def usage(paths: list[Path]) -> tuple[int, int]:
    """(bytes on disk, directory entries) under ``paths``, never following a link."""
    total = count = 0
    stack = [str(p) for p in paths]
    while stack:
        d = stack.pop()
        try:
            it = os.scandir(d)
        except OSError:
            continue
        with it:
            for e in it:
                count += 1
                try:
                    st = e.stat(follow_symlinks=False)
                except OSError:
                    continue
                # a sparse file counts at its size; delayed allocation at its size too
                total += max(st.st_blocks * 512, st.st_size)
                if e.is_dir(follow_symlinks=False):
                    stack.append(e.path)
    return total, count


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of ``pid`` from /proc/PID/stat, 0 when it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return 0.0


def _kill_uid(uid: int) -> int:
    """SIGKILL every process of the run's dedicated uid (none should be left once its
    PID 1 is gone); return how many there were."""
    n = 0
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                if os.stat(f"/proc/{d}").st_uid == uid:
                    os.kill(int(d), signal.SIGKILL)
                    n += 1
            except (OSError, ProcessLookupError):
                continue
    return n


def _chown_tree(paths: list[Path], uid: int) -> None:
    for p in paths:
        os.chown(p, uid, uid, follow_symlinks=False)
        for sub in (".tmp", ".shm"):
            q = p / sub
            if q.exists():
                os.chown(q, uid, uid, follow_symlinks=False)


def run_python(
    target: str,
    kwargs: dict,
    *,
    read: list[Path] = (),
    write: list[Path] = (),
    limits: Limits = Limits(),
    strict: bool = True,
    workdir: Path | None = None,
    pass_fds: tuple[int, ...] = (),
    on_start=None,
) -> ConfinedRun:
    """Call ``target`` (``"package.module:function"``, facelab's own code) with
    ``kwargs`` (JSON) inside the confinement; return what the runner observed.

    Parameters
    ----------
    target : str
        The function to call inside; it returns a JSON-serialisable value.
    kwargs : dict
        Its keyword arguments, JSON-serialisable.
    read, write : list of Path
        Paths bound read-only / read-write (directories or files; absolute). The first
        write path, if any, holds the private ``/tmp`` and ``/dev/shm``. In a run as
        root, write paths are handed to the run's dedicated uid.
    limits : Limits
    strict : bool
        Refuse (status ``refused``) when any layer is missing, naming it; otherwise
        run with the layers there are and list the missing ones in ``layers``.
    pass_fds : tuple of int
        Extra file descriptors to hand over (e.g. a record stream).
    on_start : callable, optional
        Called with the ``Popen`` once the sandbox is started (the caller may then
        write to a pipe it passed in ``pass_fds``).

    Raises
    ------
    IsolationError
        Only when the sandbox cannot be built and ``strict`` is False is nothing raised;
        a missing layer under ``strict`` is a ``refused`` result, not an exception.
    """
    t0 = time.monotonic()
    read = [Path(p).resolve() for p in read]
    write = [Path(p).resolve() for p in write]
    missing = missing_layers()
    if bwrap_path() is None or (missing and strict):
        return ConfinedRun(
            "refused",
            None,
            None,
            "; ".join(missing) or "no sandbox",
            ("not started: " + "; ".join(missing),),
            (),
            "",
            "",
            0.0,
        )
    for p in write:
        p.mkdir(parents=True, exist_ok=True)
    for sub in (".tmp", ".shm") if write else ():
        (write[0] / sub).mkdir(exist_ok=True, mode=0o700)
    workdir = (workdir or (write[0] if write else Path("/"))).resolve()
    root = os.geteuid() == 0
    uid = UID_BASE + secrets.randbelow(65536) if root else None
    if uid is not None:
        _chown_tree(write, uid)
    cg = _cgroup.create(limits.memory_mb, limits.max_procs) if root else None
    layers = [
        f"identity: dedicated uid {uid}, no capabilities (bounding set empty), no_new_privs"
        if uid is not None
        else "identity: user namespace, no capabilities, no_new_privs",
        "namespaces: mount (minimal read-only root), pid (run is pid 1), net, ipc, uts, cgroup",
        f"seccomp: libseccomp filter ({len(_seccomp.KILL)} calls kill, "
        f"{len(_seccomp.DENY_EACCES)} denied, namespace clone flags kill)",
        f"limits: rlimits (as {limits.memory_mb} MiB, cpu {limits.cpu_seconds} s, "
        f"fsize {limits.max_file_mb} MiB"
        + (f", nproc {limits.max_procs}" if uid is not None else "")
        + f"), writes <= {limits.max_write_mb} MiB / {limits.max_files} entries, "
        f"output <= {limits.max_output_kb} KiB, wall {limits.wall_seconds:g} s",
    ]
    if cg is not None:
        layers.append(f"cgroup {cg.kind}: memory {limits.memory_mb} MiB, pids {limits.max_procs}")
    layers += [f"missing: {m}" for m in missing]
    seccomp_fd = _seccomp.bpf_file()
    res_r, res_w = os.pipe()
    cfg = {
        "target": target,
        "kwargs": kwargs,
        "result_fd": res_w,
        "landlock_read": [str(p) for p in _python_paths() + read]
        + ["/usr", "/etc", "/proc", "/sys/devices/system/cpu", "/dev/urandom", "/dev/zero"],
        "landlock_write": [str(p) for p in write] + ["/tmp", "/dev/shm", "/dev/null"],
        "strict": strict,
        "workdir": str(workdir),
    }
    st_r, st_w = os.pipe()
    argv = _bwrap_argv(read, write, workdir, uid, seccomp_fd, st_w)
    events: list[str] = []
    killed = threading.Event()
    inner: list[int] = []  # host pid of the sandbox's PID 1, from bubblewrap's status

    def kill(why: str) -> None:
        if not killed.is_set():
            killed.set()
            events.append(why)
        # the sandbox's PID 1 first: its namespace dies with it (the parent-death
        # signal does not survive setpriv's change of uid)
        for pid in inner:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        if uid is not None:
            _kill_uid(uid)

    kernel = _kmsg.SeccompRecords() if uid is not None else None
    try:
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            pass_fds=(seccomp_fd, res_w, st_w, *pass_fds),
            env={"PATH": "/usr/bin:/bin"},
            preexec_fn=_preexec(limits, uid is not None, cg.path if cg else None),
            start_new_session=True,
            cwd="/",
        )
    except OSError as e:
        for fd in (res_r, res_w, seccomp_fd, st_r, st_w):
            os.close(fd)
        if cg is not None:
            cg.remove()
        raise IsolationError(f"cannot start bubblewrap: {e}") from e
    os.close(seccomp_fd)
    os.close(res_w)
    os.close(st_w)

    def read_status() -> None:
        with os.fdopen(st_r, "rb") as f:
            for line in f:
                with contextlib.suppress(ValueError, AttributeError):
                    pid = json.loads(line).get("child-pid")
                    if isinstance(pid, int) and pid > 1:
                        inner.append(pid)
                        if killed.is_set():
                            kill("")

    status_reader = threading.Thread(target=read_status, daemon=True)
    status_reader.start()
    cap = limits.max_output_kb << 10
    out_r = _Capped(proc.stdout.fileno(), cap, 8192, lambda: kill("output over the cap"))
    err_r = _Capped(proc.stderr.fileno(), cap, 8192, lambda: kill("output over the cap"))
    res_reader = _Capped(
        res_r,
        limits.max_result_kb << 10,
        limits.max_result_kb << 10,
        lambda: kill("result over the cap"),
    )
    for t in (out_r, err_r, res_reader):
        t.start()
    with contextlib.suppress(BrokenPipeError):
        proc.stdin.write(json.dumps(cfg).encode() + b"\n")
        proc.stdin.close()
    if on_start is not None:
        on_start(proc)
    deadline = t0 + limits.wall_seconds
    cpu_seen = 0.0
    write_cap = limits.max_write_mb << 20
    while True:
        try:
            proc.wait(timeout=POLL_S)
            break
        except subprocess.TimeoutExpired:
            pass
        if time.monotonic() > deadline:
            kill(f"wall clock: killed after {limits.wall_seconds:g} s")
        if write:
            used, n = usage(write)
            if used > write_cap:
                kill(f"writes over the cap ({used >> 20} MiB > {limits.max_write_mb} MiB)")
            elif n > limits.max_files:
                kill(f"files over the cap ({n} > {limits.max_files})")
        if cg is not None and cg.oom_killed():
            kill(f"memory over the cgroup limit ({limits.memory_mb} MiB)")
        if inner:
            cpu_seen = max(cpu_seen, _cpu_seconds(inner[0]))
    if uid is not None:
        # once PID 1 is gone the kernel kills the rest; wait until they are reaped
        left = _kill_uid(uid)
        if left and not killed.is_set():
            events.append("processes left behind were killed")
        for _ in range(100):
            if not left:
                break
            time.sleep(0.02)
            left = _kill_uid(uid)
    for t in (out_r, err_r, res_reader, status_reader):
        t.join(timeout=5)
    if cg is not None:
        if cg.oom_killed():
            events.append(f"memory over the cgroup limit ({limits.memory_mb} MiB)")
        cg.remove()
    rc = proc.returncode
    kills: list[str] = []
    confirmed = kernel is not None and kernel.available  # the kernel's record is read
    if kernel is not None:
        time.sleep(0.05)  # the kernel's audit records of the last kills
        kills = kernel.kills(uid)
        kernel.close()
    messages = []
    for line in bytes(res_reader.head).decode("utf-8", "replace").splitlines():
        try:
            messages.append(json.loads(line))
        except ValueError:
            messages.append({"garbage": line[:80]})
    hello = messages[0] if messages and isinstance(messages[0], dict) else {}
    if "landlock" in hello:
        abi = hello["landlock"]
        layers.insert(3, f"landlock: abi {abi}" if abi else "landlock: NOT applied")
    final = messages[-1] if len(messages) > 1 and isinstance(messages[-1], dict) else {}
    result = final.get("result") if "result" in final else None
    error = str(final.get("error", ""))[:500] if "error" in final else ""
    if not error and "error" in hello:
        error = str(hello["error"])[:500]
    if kills:
        names = ", ".join(sorted(set(kills)))
        events.append(
            f"forbidden system call: {len(kills)} process(es) killed by seccomp "
            f"(kernel audit record): {names}"
        )
        status = "denied"
    elif rc in (SIGSYS_EXIT, -signal.SIGSYS) and not confirmed:
        # no kernel record to read here: the exit status alone (which a process can fake)
        events.append("exit status of SIGSYS (a forbidden system call; no kernel record here)")
        status = "denied"
    elif any(e.startswith("wall clock") for e in events):
        status = "timeout"
    elif events:
        status = "limit"
    elif rc in (128 + signal.SIGKILL, 128 + signal.SIGXCPU, 128 + signal.SIGXFSZ):
        # an exit status is the run's own word (a process may exit 137 itself): only the
        # CPU time the runner saw in /proc turns it into a finding
        if cpu_seen >= limits.cpu_seconds - 1:
            events.append(f"CPU time over {limits.cpu_seconds} s (RLIMIT_CPU)")
        else:
            sig = signal.Signals(rc - 128).name
            events.append(f"exit status {rc} ({sig}: memory or file-size limit, or its own exit)")
        status = "limit"
    elif rc == 0 and "result" in final:
        status = "ok"
    else:
        status = "failed"
        if not error:
            tail = bytes(err_r.tail).decode("utf-8", "replace").strip().splitlines()
            error = f"exit {rc}" + (f": {tail[-1][:300]}" if tail else "")
    return ConfinedRun(
        status,
        rc,
        result,
        error,
        tuple(events),
        tuple(layers),
        bytes(out_r.tail).decode("utf-8", "replace"),
        bytes(err_r.tail).decode("utf-8", "replace"),
        time.monotonic() - t0,
        uid,
        {"stdout_bytes": out_r.total, "stderr_bytes": err_r.total, "hello": hello},
    )
