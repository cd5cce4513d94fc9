"""Hostile trainers: each tries one way out of the zero client. The tests register them
in a lab's policy (as a tenant's registered trainer would be) and assert the effect.

Every probe writes what it managed to get to its outbox, so that a test can look for
the stolen bytes with a raw scan of its own, whatever the job claims."""

from __future__ import annotations

import contextlib
import ctypes
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

libc = ctypes.CDLL(None, use_errno=True)


def _note(ctx, name: str, data: bytes | str) -> None:
    if isinstance(data, str):
        data = data.encode()
    (ctx.outbox / name).write_bytes(data)


# ------------------------------------------------------------------- secrets and memory


def steal_environment(ctx) -> dict:
    """Every environment and command line this process can see: its own (``os.environ``,
    ``sys.argv``, ``/proc/self/environ``), PID 1's, its parent's and every ``/proc/*``
    entry's ``environ`` and ``cmdline``."""
    got = [repr(dict(os.environ)).encode(), repr(sys.argv).encode()]
    names = ["self", "1", str(os.getppid())]
    if Path("/proc").is_dir():
        names += [d.name for d in Path("/proc").iterdir() if d.name.isdigit()]
    read = []
    for name in names:
        for what in ("environ", "cmdline"):
            with contextlib.suppress(OSError):
                got.append(Path(f"/proc/{name}/{what}").read_bytes())
                read.append(f"{name}/{what}")
    _note(ctx, "environ.bin", b"\n".join(got))
    _note(ctx, "sources.txt", "\n".join(read))
    return {"sources": len(got)}


def perf_event_open(ctx) -> dict:
    """perf_event_open(2) as the issue's attacker used it to read the runner's memory."""
    attr = (ctypes.c_uint8 * 128)()
    fd = libc.syscall(298, ctypes.byref(attr), 0, -1, -1, 0)
    _note(ctx, "perf.txt", f"fd={fd} errno={ctypes.get_errno()}")
    return {"fd": fd}


def bpf(ctx) -> dict:
    fd = libc.syscall(321, 0, None, 0)
    _note(ctx, "bpf.txt", f"fd={fd}")
    return {"fd": fd}


def ptrace_parent(ctx) -> dict:
    r = libc.syscall(101, 16, os.getppid(), None, None)  # PTRACE_ATTACH
    _note(ctx, "ptrace.txt", f"r={r}")
    return {"r": r}


def process_vm_readv(ctx) -> dict:
    r = libc.syscall(310, 1, None, 0, None, 0, 0)
    _note(ctx, "vm.txt", f"r={r}")
    return {"r": r}


def new_user_namespace(ctx) -> dict:
    r = libc.unshare(0x10000000)
    _note(ctx, "unshare.txt", f"r={r}")
    return {"r": r}


def set_hostname(ctx) -> dict:
    r = libc.sethostname(b"owned", 5)
    _note(ctx, "hostname.txt", f"r={r}")
    return {"r": r}


def keyctl(ctx) -> dict:
    r = libc.syscall(250, 0, -3, 0)  # KEYCTL_GET_KEYRING_ID of the user keyring
    _note(ctx, "keyctl.txt", f"r={r}")
    return {"r": r}


def io_uring(ctx) -> dict:
    params = (ctypes.c_uint8 * 120)()
    r = libc.syscall(425, 4, ctypes.byref(params))
    _note(ctx, "uring.txt", f"r={r}")
    return {"r": r}


# ------------------------------------------------------------------- channels out


def unix_connect(ctx) -> dict:
    """Connect to a pathname AF_UNIX socket a host process listens on."""
    path = ctx.params["path"]
    try:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(path)
        s.sendall(b"escaped")
        result = "connected"
    except OSError as e:
        result = f"{type(e).__name__}: {e}"
    _note(ctx, "unix.txt", result)
    return {"connected": result == "connected"}


def tcp_connect(ctx) -> dict:
    try:
        socket.create_connection(("127.0.0.1", int(ctx.params["port"])), timeout=2).sendall(b"x")
        result = "connected"
    except OSError as e:
        result = str(e)
    _note(ctx, "tcp.txt", result)
    return {"connected": result == "connected"}


def netlink_interfaces(ctx) -> dict:
    try:
        s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 0)
        s.close()
        names = [n for _, n in socket.if_nameindex()]
        result = ",".join(names)
    except OSError as e:
        result = f"denied {e}"
    _note(ctx, "netlink.txt", result)
    return {}


def sysv_shm_read(ctx) -> dict:
    """Attach a host SysV shared-memory segment by its key and copy it out."""
    key = int(ctx.params["key"])
    shmid = libc.shmget(key, 0, 0)
    data = b""
    if shmid >= 0:
        libc.shmat.restype = ctypes.c_void_p
        addr = libc.shmat(shmid, None, 0o10000)  # SHM_RDONLY
        if addr not in (None, ctypes.c_void_p(-1).value):
            data = ctypes.string_at(addr, int(ctx.params["size"]))
    _note(ctx, "shm.bin", data or f"shmget={shmid} errno={ctypes.get_errno()}".encode())
    return {}


def sysv_msg_send(ctx) -> dict:
    """Send a face thumbnail of one record through a host message queue."""
    key = int(ctx.params["key"])
    qid = libc.msgget(key, 0)
    sent = -1
    if qid >= 0:
        png = ctx.records()[0].png[:2000]
        buf = ctypes.create_string_buffer(ctypes.sizeof(ctypes.c_long) + len(png))
        ctypes.memmove(buf, ctypes.byref(ctypes.c_long(1)), ctypes.sizeof(ctypes.c_long))
        ctypes.memmove(ctypes.addressof(buf) + ctypes.sizeof(ctypes.c_long), png, len(png))
        sent = libc.msgsnd(qid, buf, len(png), 0o4000)
    _note(ctx, "msg.txt", f"msgget={qid} sent={sent}")
    return {}


# ------------------------------------------------------------------- files


def read_paths(ctx) -> dict:
    """Try to read each path in params.paths; copy whatever opens to the outbox."""
    out = []
    for i, p in enumerate(ctx.params["paths"]):
        try:
            data = Path(p).read_bytes()
            (ctx.outbox / f"stolen-{i}.bin").write_bytes(data)
            out.append(f"{p}: read {len(data)}")
        except OSError as e:
            out.append(f"{p}: {e.strerror}")
    _note(ctx, "read.txt", "\n".join(out))
    return {}


def change_metadata(ctx) -> dict:
    """chmod, timestamps and an xattr on the job's own model files (lab files)."""
    out = []
    for f in sorted(Path(ctx.model_dir).iterdir()):
        for what, fn in (
            ("chmod", lambda p: os.chmod(p, 0o777)),
            ("utime", lambda p: os.utime(p, (0, 0))),
            ("xattr", lambda p: os.setxattr(p, "user.facelab", b"x")),
        ):
            try:
                fn(f)
                out.append(f"{f.name} {what} ok")
            except OSError as e:
                out.append(f"{f.name} {what} {e.strerror}")
    _note(ctx, "meta.txt", "\n".join(out))
    return {}


def write_paths(ctx) -> dict:
    out = []
    for p in ctx.params["paths"]:
        try:
            Path(p).write_text("escaped")
            out.append(f"{p}: written")
        except OSError as e:
            out.append(f"{p}: {e.strerror}")
    _note(ctx, "write.txt", "\n".join(out))
    return {}


def plant_links(ctx) -> dict:
    """Leave a symlink to the vault, a FIFO, a hard link and a link to /dev/zero in the
    outbox for the runner to trip over."""
    os.symlink(ctx.params["vault"], ctx.outbox / "vault-link.db")
    os.symlink("/dev/zero", ctx.outbox / "zero.bin")
    os.mkfifo(ctx.outbox / "pipe.fifo")
    (ctx.outbox / "alone.txt").write_text("fine")
    (ctx.outbox / "real.txt").write_text("linked")
    os.link(ctx.outbox / "real.txt", ctx.outbox / "hard.txt")
    (ctx.outbox / "sub").mkdir()
    os.symlink("/", ctx.outbox / "sub" / "root")
    return {"planted": 5}


# ------------------------------------------------------------------- processes and limits


def detached_writer(ctx) -> dict:
    """Double-fork a daemon that keeps appending to the outbox, then return at once."""
    target = ctx.outbox / "late.txt"
    if os.fork() == 0:
        os.setsid()
        if os.fork() == 0:
            with contextlib.suppress(Exception):
                for _ in range(400):
                    with open(target, "a") as f:
                        f.write("late\n")
                    time.sleep(0.025)
            os._exit(0)
        os._exit(0)
    time.sleep(0.2)
    return {}


def pipe_holder(ctx) -> dict:
    """A grandchild keeps stdout and stderr open and sleeps; the job returns."""
    subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    return {}


def orphan_then_spin(ctx) -> dict:
    subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    while True:
        pass


def fork_many(ctx) -> dict:
    """Try to hold 300 processes alive at once; report how many it got."""
    pids = []
    for _ in range(300):
        try:
            pid = os.fork()
        except OSError:
            break
        if pid == 0:
            time.sleep(5)
            os._exit(0)
        pids.append(pid)
    _note(ctx, "forks.txt", str(len(pids)))
    for p in pids:
        with contextlib.suppress(OSError):
            os.kill(p, 9)
    return {"forks": len(pids)}


def fill_outbox(ctx) -> dict:
    """Write as much as it can, 8 MiB at a time, in many files."""
    block = os.urandom(1 << 23)
    for i in range(256):  # 2 GiB
        (ctx.outbox / f"fill-{i}.bin").write_bytes(block)
    return {}


def sparse_file(ctx) -> dict:
    with open(ctx.outbox / "sparse.bin", "wb") as f:
        f.truncate(10 << 30)
    return {}


def flood_stdout(ctx) -> dict:
    block = "x" * (1 << 20)
    for _ in range(512):
        sys.stdout.write(block)
    sys.stdout.flush()
    return {}


def eat_memory(ctx) -> dict:
    # bytes(n) is calloc'd: the address space is asked for but no page is touched, so the
    # limit binds in microseconds of CPU (a bytearray writes every page: 2 GiB of page
    # faults took more than the 5 s CPU limit on a loaded CI machine)
    hog = []
    for _ in range(64):
        hog.append(bytes(64 << 20))
    return {"mib": len(hog) * 64}


def spin(ctx) -> dict:
    while True:
        pass


# ------------------------------------------------------------------- the job's words


def forge_result(ctx) -> dict:
    """Print the old protocol's result line with a fake confinement list."""
    print('FACELAB-RESULT {"ok": true, "confinement": ["totally-isolated"], "summary": {}}')
    return {"confinement": 1.0}


def pixels_in_summary(ctx) -> dict:
    img = ctx.records()[0].image()
    return {"face": img[:24, :24, 0].ravel().tolist()}


def name_in_summary(ctx) -> dict:
    return {"subject": ctx.records()[0].subject}


def list_records(ctx) -> dict:
    recs = ctx.records()
    (ctx.outbox / "seen.txt").write_text("\n".join(sorted({r.record_id for r in recs})))
    return {
        "records": len(recs),
        "subjects": len({r.subject for r in recs}),
        "train_split_only": {r.split for r in recs} == {"train"},
    }


def odd_names(ctx) -> dict:
    """Names the audit log must not choke on: control characters, a fake log line,
    very long names, and more files than an entry lists."""
    names = ["new\nline.txt", "esc\x1b[31mred.txt", "tab\tand\rcr.txt", "ü" * 120, "x" * 250]
    names += ['fake"}, "decision": "done', "\u202eevil.txt"]
    for n in names:
        (ctx.outbox / n).write_text("x")
    for i in range(80):
        (ctx.outbox / f"many-{i:03d}.txt").write_text(str(i))
    raise RuntimeError('stop\n{"action": "job.finish", "decision": "done"}\x07')


# ------------------------------------------------------------------- found by the red team


def fake_sigsys_exit(ctx) -> dict:
    """Exit with the status a seccomp kill gives, without any forbidden call."""
    os._exit(159)


def hidden_child_violation(ctx) -> dict:
    """A child makes a forbidden call and dies; the job itself ends cleanly."""
    pid = os.fork()
    if pid == 0:
        libc.syscall(298, 0, 0, -1, -1, 0)  # perf_event_open
        os._exit(0)
    os.waitpid(pid, 0)
    return {"clean": True}


def fallocate_burst(ctx) -> dict:
    out = []
    for i in range(8):
        fd = os.open(ctx.outbox / f"big-{i}.bin", os.O_CREAT | os.O_WRONLY)
        try:
            os.posix_fallocate(fd, 0, 16 << 20)
            out.append("ok")
        except OSError as e:
            out.append(e.strerror)
        finally:
            os.close(fd)
    _note(ctx, "fallocate.txt", ",".join(out))
    return {}


def exec_written(ctx) -> dict:
    import shutil

    target = ctx.workspace / "mytrue"
    shutil.copyfile("/usr/bin/true", target)
    os.chmod(target, 0o755)
    try:
        subprocess.run([str(target)], check=True)
        result = "ran"
    except OSError as e:
        result = e.strerror
    _note(ctx, "exec.txt", result)
    return {}


def watch_files(ctx) -> dict:
    try:
        fd = libc.inotify_init1(0)
        result = f"fd={fd} errno={ctypes.get_errno()}"
    except Exception as e:
        result = str(e)
    try:
        import fcntl

        with open(os.__file__, "rb") as f:
            fcntl.flock(f, fcntl.LOCK_SH | fcntl.LOCK_NB)
        result += " flock=ok"
    except OSError as e:
        result += f" flock={e.strerror}"
    _note(ctx, "watch.txt", result)
    return {}


def long_paths(ctx) -> dict:
    """A tree deeper than PATH_MAX, built relative to directory descriptors."""
    fd = os.open(ctx.outbox, os.O_RDONLY | os.O_DIRECTORY)
    for _ in range(40):
        os.mkdir("y" * 250, dir_fd=fd)
        nfd = os.open("y" * 250, os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
        os.close(fd)
        fd = nfd
    f = os.open("deep.txt", os.O_CREAT | os.O_WRONLY, dir_fd=fd)
    os.write(f, b"deep")
    os.close(f)
    os.close(fd)
    return {}


def xattr_smuggle(ctx) -> dict:
    p = ctx.outbox / "plain.txt"
    p.write_text("plain")
    os.setxattr(p, "user.face", ctx.records()[0].png[:2000])
    os.utime(p, ns=(123456789, 987654321))
    return {}


def read_beside_me(ctx) -> dict:
    """Read a file that sits next to this trainer's module on the host."""
    here = Path(__file__).resolve().parent
    out = []
    for p in sorted(here.iterdir()) if here.is_dir() else []:
        if p.name != Path(__file__).name:
            try:
                out.append(f"{p.name}: {p.read_bytes()[:40]!r}")
            except OSError as e:
                out.append(f"{p.name}: {e.strerror}")
    _note(ctx, "beside.txt", "\n".join(out) or "nothing")
    return {}


def error_with_data(ctx) -> dict:
    r = ctx.records()[0]
    raise ValueError(f"{r.subject} {r.png[:100].hex()} \x1b[2J")


def names_carry_data(ctx) -> dict:
    """File names as the payload (the red team's thumbnail in names), and a name that is
    not even UTF-8."""
    payload = ctx.records()[0].png[:60].hex()
    for i in range(0, len(payload), 40):
        (ctx.outbox / f"log_{i:03d}_{payload[i : i + 40]}.txt").write_text("ok")
    (ctx.outbox / "plain.txt").write_text("ok")
    fd = os.open(os.fsencode(ctx.outbox) + b"/\xff\xfe.txt", os.O_CREAT | os.O_WRONLY)
    os.close(fd)
    (ctx.outbox / "dir\x1b[2J").mkdir()
    (ctx.outbox / "dir\x1b[2J" / "x.txt").write_text("x")
    return {}
