"""The zero client attacked: each hostile trainer of ``tests/hostile_jobs.py`` runs as a
registered trainer of a real lab, and each test asserts the *effect* (the bytes are not
in the outbox, the listener got nothing, the file did not change, the process is gone)
with an oracle of its own (a raw byte scan, a host-side listener, ``/proc``), and the
audit record the runner wrote from its own observations. Positive controls show each
probe works where it should (the host process can do what the job cannot).

Runs as whoever runs the tests: as root (as CI does), the job gets a dedicated uid; the
``unprivileged`` tests at the end run the confinement as ``nobody`` where the machine
allows it.
"""

from __future__ import annotations

import ctypes
import json
import os
import resource
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from facelab.confine import missing_layers
from facelab.jobs import run_job
from facelab.labdir import open_lab

from tests import hostile_jobs
from tests.export_helpers import PASSPHRASE, build_export_lab

MISSING = missing_layers()
# only the tests that run something confined skip (the ``el`` fixture and this mark), each
# naming the layers the machine lacks; the refusals themselves run everywhere
needs_sandbox = pytest.mark.skipif(
    bool(MISSING), reason="needs the whole confinement; missing here: " + "; ".join(MISSING)
)
HOSTILE = [
    n
    for n, v in vars(__import__("tests.hostile_jobs", fromlist=["x"])).items()
    if callable(v)
    and not n.startswith("_")
    and getattr(v, "__module__", "") == "tests.hostile_jobs"
]
SECRET = "correct horse battery staple 7f3e"
libc = ctypes.CDLL(None, use_errno=True)


@pytest.fixture(scope="module")
def el(tmp_path_factory: pytest.TempPathFactory):
    if MISSING:  # the lab's model is imported through the confined import gate
        pytest.skip("needs the whole confinement; missing here: " + "; ".join(MISSING))
    e = build_export_lab(tmp_path_factory.mktemp("zc"), identities=12, captures=2)
    p = e.lab.paths.policy
    trainers = ", ".join(f'{n} = "tests.hostile_jobs:{n}"' for n in HOSTILE)
    text = p.read_text().replace(
        'trainers = { pca_head = "facelab.jobs.trainers:pca_head" }',
        f'trainers = {{ pca_head = "facelab.jobs.trainers:pca_head", {trainers} }}',
    )
    text = text.replace(
        'trainer_params = { pca_head = { dim = "number" } }',
        'trainer_params = { pca_head = { dim = "number" }, unix_connect = { path = "text" }, '
        'tcp_connect = { port = "number" }, sysv_shm_read = { key = "number", size = "number" }, '
        'sysv_msg_send = { key = "number" }, read_paths = { paths = "text" }, '
        'write_paths = { paths = "text" }, plant_links = { vault = "text" } }',
    ).replace("allow_text_params = false", "allow_text_params = true")
    for old, new in (
        ("wall_seconds = 900", "wall_seconds = 20"),
        ("cpu_seconds = 600", "cpu_seconds = 5"),  # the hostile jobs are small; spin dies sooner
        ("memory_mb = 4096", "memory_mb = 2048"),
        ("max_outbox_mb = 512", "max_outbox_mb = 24"),
        ("max_output_kb = 256", "max_output_kb = 64"),
    ):
        assert old in text
        text = text.replace(old, new)
    p.write_text(text)
    e.lab = open_lab(e.lab.paths.root)
    return e


def job(el, trainer: str, **params):
    root, log = el.unlocked()
    with log:
        return run_job(
            el.lab,
            root,
            "acme",
            {
                "kind": "train",
                "purpose": "train",
                "model": "cnn@1.0.0",
                "trainer": trainer,
                "params": params,
            },
            "mallory",
            log,
        )


def finish(el, job_id: str) -> dict:
    lines = (el.lab.paths.root / "audit" / "entries.jsonl").read_text().splitlines()
    return next(
        e
        for e in map(json.loads, reversed(lines))
        if e["action"] == "job.finish" and e["object"] == job_id
    )


def job_manifest(el, e: dict) -> dict:
    """The job's manifest (names, digests, spec, summary: what the log may not hold),
    checked here against the digest its ``job.finish`` entry recorded."""
    import hashlib

    raw = (el.lab.paths.root / "manifests" / e["tenant"] / f"job-{e['object']}.json").read_bytes()
    assert hashlib.sha256(raw).hexdigest() == e["details"]["manifest_sha256"]
    return json.loads(raw)


def outbox_bytes(r) -> bytes:
    """Every byte of every regular file in the job's outbox (the test's own scan)."""
    out = b""
    for p in sorted(r.outbox.rglob("*")):
        if p.is_file() and not p.is_symlink():
            out += p.read_bytes()
    return out


def dedicated_uid(r) -> int:
    layer = next(x for x in r.confinement if x.startswith("identity: dedicated uid"))
    return int(layer.split()[3].rstrip(","))


def processes_of(uid: int) -> list[int]:
    pids = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                if d.stat().st_uid == uid:
                    pids.append(int(d.name))
            except OSError:
                continue
    return pids


# ---------------------------------------------------------------- secrets and memory


def test_no_job_sees_the_operator_secret(el, monkeypatch) -> None:
    from facelab.labdir import capture_secrets, read_passphrase

    monkeypatch.setenv("FACELAB_PASSPHRASE", SECRET)
    assert os.environ["FACELAB_PASSPHRASE"] == SECRET  # positive control: it is set here
    capture_secrets()  # what the CLI does first
    assert "FACELAB_PASSPHRASE" not in os.environ
    assert read_passphrase() == SECRET.encode()
    r = job(el, "steal_environment")
    assert r.status == "done", r.error
    stolen = outbox_bytes(r)
    assert b"PATH=" in stolen or b"'PATH'" in stolen  # the probe did read environments
    assert SECRET.encode() not in stolen
    assert str(PASSPHRASE.decode()).encode() not in stolen
    from facelab import labdir

    labdir._CAPTURED.clear()


def test_a_job_sees_no_secret_the_runner_holds_by_any_route(el, monkeypatch) -> None:
    """The runner's process holds the passphrase in its environment (facelab used as a
    library: nobody called ``capture_secrets``); the job reads its own environment and
    argv, ``/proc/self``, PID 1's, its parent's and every process's environ and cmdline:
    the secret is in none of them."""
    monkeypatch.setenv("FACELAB_PASSPHRASE", SECRET)
    monkeypatch.setenv("FACELAB_KEY_FILE", "/nonexistent/" + SECRET.replace(" ", "-"))
    assert os.environ["FACELAB_PASSPHRASE"] == SECRET  # positive control: the runner has it
    r = job(el, "steal_environment")
    assert r.status == "done", r.error
    stolen = outbox_bytes(r)
    sources = (r.outbox / "sources.txt").read_text().split()
    # positive control: every route was read (own, PID 1, the parent; environ and argv)
    for route in ("self/environ", "self/cmdline", "1/environ", "1/cmdline"):
        assert route in sources, sources
    assert b"PATH=" in stolen or b"'PATH'" in stolen
    assert b"python" in stolen  # a command line was read
    for needle in (SECRET, SECRET.replace(" ", "-"), PASSPHRASE.decode()):
        assert needle.encode() not in stolen, needle


@pytest.mark.parametrize(
    "trainer",
    [
        "perf_event_open",
        "bpf",
        "ptrace_parent",
        "process_vm_readv",
        "new_user_namespace",
        "set_hostname",
        "keyctl",
        "io_uring",
    ],
)
def test_kernel_reaching_system_calls_kill_the_job_and_are_recorded(el, trainer: str) -> None:
    r = job(el, trainer)
    assert r.status == "failed"
    # killed before it could write what the call returned
    assert not any(name.endswith(".txt") for name in r.outputs)
    e = finish(el, r.job_id)
    assert any("forbidden system call" in k for k in e["details"]["kernel_events"])
    assert e["decision"] == "failed"


def test_the_job_runs_as_an_unprivileged_uid_with_no_capabilities(el) -> None:
    r = job(el, "read_paths", paths=["/proc/self/status"])
    status = (r.outbox / "stolen-0.bin").read_text()
    fields = dict(line.split(":\t", 1) for line in status.splitlines() if ":\t" in line)
    for cap in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"):
        assert int(fields[cap], 16) == 0, cap
    assert fields["NoNewPrivs"].strip() == "1" and fields["Seccomp"].strip() == "2"
    uid = int(fields["Uid"].split()[0])
    if os.geteuid() == 0:
        assert uid == dedicated_uid(r) and uid >= 100_000
    assert fields["Pid"].strip() == "1"  # init of its own PID namespace


# ---------------------------------------------------------------- channels out


def test_a_pathname_unix_socket_is_not_reachable(el, tmp_path: Path) -> None:
    path = str(tmp_path / "listener.sock")
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(path)
    os.chmod(path, 0o777)
    srv.listen(1)
    srv.settimeout(0.3)
    try:
        # positive control: a host process reaches it
        c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        c.connect(path)
        srv.accept()[0].close()
        c.close()
        r = job(el, "unix_connect", path=path)
        with pytest.raises(TimeoutError):
            srv.accept()
    finally:
        srv.close()
    assert (r.outbox / "unix.txt").read_text() != "connected"


def test_no_tcp_and_no_netlink(el) -> None:
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    srv.settimeout(0.3)
    try:
        r = job(el, "tcp_connect", port=srv.getsockname()[1])
        with pytest.raises(TimeoutError):
            srv.accept()
    finally:
        srv.close()
    assert (r.outbox / "tcp.txt").read_text() != "connected"
    r = job(el, "netlink_interfaces")
    host_ifaces = [n for _, n in socket.if_nameindex() if n != "lo"]
    seen = (r.outbox / "netlink.txt").read_text()
    assert seen.startswith("denied")
    assert not any(n in seen for n in host_ifaces)


def test_host_sysv_ipc_is_out_of_reach(el) -> None:
    key = 0x5FACE000 + os.getpid() % 4096
    marker = b"HOST-SHM-" + os.urandom(8).hex().encode()
    shmid = libc.shmget(key, 4096, 0o1000 | 0o666)  # IPC_CREAT
    assert shmid >= 0
    libc.shmat.restype = ctypes.c_void_p
    addr = libc.shmat(shmid, None, 0)
    ctypes.memmove(addr, marker, len(marker))
    qid = libc.msgget(key, 0o1000 | 0o666)
    assert qid >= 0
    try:
        # positive control: the segment holds the marker for a host reader
        assert ctypes.string_at(addr, len(marker)) == marker
        r = job(el, "sysv_shm_read", key=key, size=len(marker))
        assert marker not in outbox_bytes(r)
        r = job(el, "sysv_msg_send", key=key)
        buf = ctypes.create_string_buffer(8192)
        got = libc.msgrcv(qid, buf, 8000, 0, 0o4000)  # IPC_NOWAIT
        assert got == -1  # nothing arrived in the host's queue
    finally:
        libc.shmdt(ctypes.c_void_p(addr))
        libc.shmctl(shmid, 0, None)  # IPC_RMID
        libc.msgctl(qid, 0, None)


# ---------------------------------------------------------------- files


def test_the_host_filesystem_is_not_there(el) -> None:
    root = el.lab.paths.root
    targets = [
        "/etc/shadow",
        "/etc/passwd",
        str(root / "keys" / "keystore.json"),
        str(root / "vault.db"),
        str(root / "policy.toml"),
        str(root / "audit" / "entries.jsonl"),
        str(Path.home() / ".bash_history"),
    ]
    host_readable = [t for t in targets if Path(t).is_file()]
    assert host_readable  # positive control: the host process reads them
    r = job(el, "read_paths", paths=targets)
    assert not [n for n in r.outputs if n.startswith("stolen-")]
    scan = outbox_bytes(r)
    for t in host_readable:
        data = Path(t).read_bytes()
        if len(data) >= 16:
            assert data[:64] not in scan


def test_lab_files_metadata_cannot_change(el) -> None:
    from facelab.bench.lab_run import registered_model

    _, model_dir = registered_model(el.lab, "acme", "cnn@1.0.0")
    before = {p.name: os.stat(p) for p in model_dir.iterdir()}
    r = job(el, "change_metadata")
    after = {p.name: os.stat(p) for p in model_dir.iterdir()}
    for name, st in before.items():
        assert (st.st_mode, st.st_mtime_ns, st.st_uid) == (
            after[name].st_mode,
            after[name].st_mtime_ns,
            after[name].st_uid,
        )
        assert not os.listxattr(model_dir / name)
    assert " ok" not in (r.outbox / "meta.txt").read_text()


def test_writes_land_only_in_the_outbox(el) -> None:
    base = el.lab.paths.root
    targets = [
        base.parent / "outside.txt",
        base / "models" / "evil.txt",
        base / "audit" / "evil.txt",
        base / "outbox" / "beta.txt",
        Path("/tmp") / f"facelab-escape-{os.getpid()}.txt",
    ]
    r = job(el, "write_paths", paths=[str(t) for t in targets])
    assert r.status == "done", r.error
    for t in targets:
        assert not t.exists(), t


def test_links_fifos_and_hard_links_in_the_outbox_are_removed_not_followed(el) -> None:
    vault = el.lab.paths.root / "vault.db"
    import hashlib

    vault_digest = hashlib.sha256(vault.read_bytes()).hexdigest()
    t0 = time.monotonic()
    r = job(el, "plant_links", vault=str(vault))
    assert time.monotonic() - t0 < 15  # the FIFO did not hang the runner
    assert r.status == "done", r.error
    assert set(r.outputs) == {"alone.txt"}  # a file with two names is refused under both
    assert vault_digest not in r.outputs.values()
    left = {p.name for p in r.outbox.rglob("*")}
    assert left <= {"alone.txt", "sub"}
    e = finish(el, r.job_id)
    # the log counts what was removed by kind; which entries, by name, is in the manifest
    assert {"link", "special-file", "hard-link"} <= set(e["details"]["removed_from_outbox"])
    removed = " ".join(job_manifest(el, e)["removed"])
    for what in ("symbolic link", "FIFO", "hard link"):
        assert what in removed
    assert vault_digest not in json.dumps(e)


# ---------------------------------------------------------------- processes and limits


def test_a_detached_grandchild_dies_with_the_job(el) -> None:
    r = job(el, "detached_writer")
    late = r.outbox / "late.txt"
    size = late.stat().st_size if late.exists() else 0
    time.sleep(0.5)
    assert (late.stat().st_size if late.exists() else 0) == size
    if os.geteuid() == 0:
        assert processes_of(dedicated_uid(r)) == []


def test_a_grandchild_holding_stdout_does_not_block_the_runner(el) -> None:
    t0 = time.monotonic()
    r = job(el, "pipe_holder")
    assert time.monotonic() - t0 < 10  # wall_seconds is 20
    assert r.status == "done", r.error
    if os.geteuid() == 0:
        assert processes_of(dedicated_uid(r)) == []


def test_a_killed_jobs_children_die_too(el) -> None:
    r = job(el, "orphan_then_spin")
    assert r.status in ("timeout", "failed")
    e = finish(el, r.job_id)
    assert e["details"]["kernel_events"]
    if os.geteuid() == 0:
        # SIGKILLed processes are gone once the kernel has torn them down; on a loaded
        # machine that can lag the runner's return by a moment, never by seconds
        deadline = time.monotonic() + 5
        while processes_of(dedicated_uid(r)) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert processes_of(dedicated_uid(r)) == []


def test_the_number_of_processes_is_bounded(el) -> None:
    r = job(el, "fork_many")
    forks = int((r.outbox / "forks.txt").read_text())
    assert 0 < forks < 64  # RLIMIT_NPROC of the dedicated uid (or pids.max)


def test_the_outbox_is_capped(el) -> None:
    r = job(el, "fill_outbox")
    assert r.status == "failed"
    total = sum(p.stat().st_size for p in r.outbox.rglob("*") if p.is_file())
    # the cap, plus what a fast writer lands between two polls of the accounting (20 ms)
    assert total <= (24 + 64) << 20
    e = finish(el, r.job_id)
    assert any("over the cap" in k or "SIGXFSZ" in k for k in e["details"]["kernel_events"])


def test_a_sparse_giant_file_is_refused_by_the_kernel(el) -> None:
    r = job(el, "sparse_file")
    assert r.status == "failed" and r.error == "OSError"
    assert "File too large" in (r.outbox / "job-error.txt").read_text()  # EFBIG: RLIMIT_FSIZE
    sparse = r.outbox / "sparse.bin"
    assert not sparse.exists() or sparse.stat().st_size <= 24 << 20


def test_a_stdout_flood_is_cut_and_the_runner_does_not_grow(el) -> None:
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    r = job(el, "flood_stdout")
    grown_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
    assert r.status == "failed"
    assert grown_kib < 64 << 10  # not the 512 MiB the job printed
    assert "output over the cap" in finish(el, r.job_id)["details"]["kernel_events"]


def test_memory_is_limited(el) -> None:
    t0 = time.monotonic()
    r = job(el, "eat_memory")  # 4 GiB asked for against 2 GiB
    took = time.monotonic() - t0
    assert r.status == "failed"
    assert r.summary == {}
    # the reason is memory, not the clock: the allocation failed (or the cgroup's OOM
    # killer acted) long before the 20 s wall clock
    e = finish(el, r.job_id)["details"]
    said = json.dumps([r.error, list(r.events), e.get("error"), e.get("kernel_events")])
    assert "MemoryError" in said or "memory over the cgroup limit" in said, said
    assert "wall clock" not in said and took < 15


def test_cpu_and_wall_clock_are_limited(el) -> None:
    t0 = time.monotonic()
    r = job(el, "spin")
    assert time.monotonic() - t0 < 25
    assert r.status in ("failed", "timeout")
    assert finish(el, r.job_id)["details"]["kernel_events"]


# ---------------------------------------------------------------- the job's words


def test_a_forged_result_line_does_not_reach_the_log(el) -> None:
    r = job(el, "forge_result")
    e = finish(el, r.job_id)
    layers = " ".join(e["details"]["confinement"])
    assert "totally-isolated" not in json.dumps(e)
    assert "seccomp" in layers and "landlock: abi" in layers


@pytest.mark.parametrize("trainer", ["pixels_in_summary", "name_in_summary"])
def test_tenant_data_in_a_summary_never_reaches_the_log(el, trainer: str) -> None:
    r = job(el, trainer)
    e = finish(el, r.job_id)
    assert e["details"]["summary_refused"] in ("not-an-object", "bad-key", "bad-value")
    assert "summary" not in e["details"] and "summary_sha256" not in e["details"]
    assert job_manifest(el, e)["summary"]["refused_sha256"]  # the digest: in the manifest
    raw = (el.lab.paths.root / "audit" / "entries.jsonl").read_text()
    assert '"face"' not in raw and '"subject": "' not in raw.split(r.job_id)[-1]


def test_even_a_valid_summarys_values_stay_out_of_the_signed_log(el) -> None:
    """Sixteen floats are 128 bytes of channel per job into a log that outlives the
    tenant: the log keeps their count, the caller gets the values, and the job's manifest
    (removed by destroy) keeps them and their digest (a plain digest of a few numbers in
    the log would be inverted by guessing them)."""
    r = job(el, "list_records")
    e = finish(el, r.job_id)
    assert r.summary["records"] > 0
    import hashlib

    assert e["details"]["summary_keys"] == len(r.summary)
    assert {k for k in e["details"] if k.startswith("summary")} == {
        "summary_keys",
        "summary_refused",
    }
    expected = hashlib.sha256(json.dumps(r.summary, sort_keys=True).encode()).hexdigest()
    m = job_manifest(el, e)
    assert m["summary_sha256"] == expected and m["summary"] == r.summary
    assert expected not in json.dumps(e)


def test_a_jobs_error_text_is_data_not_a_log_line(el) -> None:
    r = job(el, "error_with_data")
    e = finish(el, r.job_id)
    subject = (r.outbox / "job-error.txt").read_text().split()[1]  # the text went here
    entry = json.dumps(e)
    assert e["details"]["job_error"]["class"] == "ValueError"
    assert subject not in entry and "\\x1b" not in entry and "\x1b" not in entry
    assert r.error == "ValueError"


def test_an_exit_status_cannot_forge_a_kernel_event(el) -> None:
    r = job(el, "fake_sigsys_exit")
    e = finish(el, r.job_id)
    if os.geteuid() == 0:  # the kernel's own record is read: the exit status is not trusted
        assert not any("forbidden system call" in k for k in e["details"]["kernel_events"])


def test_a_childs_forbidden_call_is_recorded_from_the_kernel(el) -> None:
    if os.geteuid() != 0:
        pytest.skip("the kernel's seccomp records (/dev/kmsg) need root")
    r = job(el, "hidden_child_violation")
    e = finish(el, r.job_id)
    assert r.status == "failed"
    assert any("perf_event_open" in k for k in e["details"]["kernel_events"])


def test_fallocate_cannot_pass_the_write_accounting(el) -> None:
    r = job(el, "fallocate_burst")
    used = sum(p.stat().st_blocks * 512 for p in r.outbox.rglob("*") if p.is_file())
    assert used < 24 << 20
    assert "ok" not in (r.outbox / "fallocate.txt").read_text().split(",")


def test_a_binary_the_job_wrote_cannot_be_executed(el) -> None:
    r = job(el, "exec_written")
    assert (r.outbox / "exec.txt").read_text() != "ran"


def test_no_inotify_and_no_file_locks_between_jobs(el) -> None:
    r = job(el, "watch_files")
    seen = (r.outbox / "watch.txt").read_text()
    assert seen.startswith("fd=-1") and "flock=ok" not in seen


def test_an_outbox_past_path_max_is_handled_and_the_job_recorded(el) -> None:
    r = job(el, "long_paths")
    e = finish(el, r.job_id)  # recorded, no traceback: the walk uses directory descriptors
    assert e["decision"] == "done"
    assert r.outputs == {} and not list(r.outbox.iterdir())  # 250-character names refused
    assert e["details"]["removed_from_outbox"]
    assert not (el.lab.paths.root / "jobs" / "acme" / r.job_id).exists()


def test_extended_attributes_and_timestamps_do_not_survive_the_outbox(el) -> None:
    r = job(el, "xattr_smuggle")
    p = r.outbox / "plain.txt"
    assert os.listxattr(p) == []
    assert p.stat().st_mtime_ns != 987654321


def test_only_the_trainers_own_code_is_bound(el, tmp_path, monkeypatch) -> None:
    """A trainer that is a single module file gets that file bound, not the directory
    it was found in (which may hold the operator's files)."""
    mods = tmp_path / "mods"
    mods.mkdir()
    tmp_path.chmod(0o755)
    mods.chmod(0o755)
    src = Path(hostile_jobs.__file__).read_text()
    (mods / "beside_mod.py").write_text(src)
    (mods / "operator-notes.txt").write_text(SECRET)
    (mods / "operator-notes.txt").chmod(0o644)
    monkeypatch.syspath_prepend(str(mods))
    p = el.lab.paths.policy
    before = p.read_text()
    p.write_text(
        before.replace(
            'trainers = { pca_head = "facelab.jobs.trainers:pca_head"',
            'trainers = { beside = "beside_mod:read_beside_me", '
            'pca_head = "facelab.jobs.trainers:pca_head"',
        )
    )
    try:
        el.lab = open_lab(el.lab.paths.root)
        assert (mods / "operator-notes.txt").read_text() == SECRET  # the host reads it
        r = job(el, "beside")
        assert r.status == "done", r.error
        assert SECRET.encode() not in outbox_bytes(r)
    finally:
        p.write_text(before)
        el.lab = open_lab(el.lab.paths.root)


def test_a_job_sees_only_its_tenants_records_of_its_split(el) -> None:
    r = job(el, "list_records")
    assert r.status == "done", r.error
    from facelab.vault.ops import open_vault

    root, _ = el.unlocked()
    with open_vault(el.lab, root) as v:
        acme_train = {x.record_id for x in v.records("acme", "train")}
    assert set((r.outbox / "seen.txt").read_text().split()) == acme_train
    assert r.summary["train_split_only"] is True


# ---------------------------------------------------------------- as an unprivileged user


def _nobody_python(tmp: Path) -> str | None:
    """A Python that ``nobody`` can run and that imports facelab: this interpreter when
    nobody can read it, else a venv of the distribution's Python of the same version
    that sees facelab's sources and this venv's packages (pyenv lives under /root)."""
    import site

    def nobody_ok(argv: list[str]) -> bool:
        p = subprocess.run(
            ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", *argv, "-I", "-c",
             "import facelab.confine, numpy"],
            capture_output=True, check=False, cwd="/", env={"PATH": "/usr/bin:/bin"},
        )  # fmt: skip
        return p.returncode == 0

    real = Path(os.path.realpath(sys.executable))
    if all(p.stat().st_mode & 0o001 for p in real.parents) and nobody_ok([sys.executable]):
        return sys.executable
    dist = Path(f"/usr/bin/python{sys.version_info.major}.{sys.version_info.minor}")
    if not dist.exists():
        return None
    venv = tmp / "nobody-venv"
    subprocess.run([str(dist), "-m", "venv", "--without-pip", str(venv)], check=True)
    sp = next(venv.glob("lib/python*/site-packages"))
    repo = Path(__file__).resolve().parents[1]
    (sp / "facelab-src.pth").write_text(f"{repo}\n{site.getsitepackages()[0]}\n")
    for p in [tmp, *tmp.rglob("*")]:
        if not p.is_symlink():
            p.chmod(0o755 if p.is_dir() else 0o644 | (p.stat().st_mode & 0o111))
    py = str(venv / "bin" / "python")
    return py if nobody_ok([py]) else None


@pytest.fixture
def open_tmp():
    """A temporary directory that other users can traverse (pytest's are 0700)."""
    import shutil
    import tempfile

    d = Path(tempfile.mkdtemp(prefix="facelab-nobody-"))
    d.chmod(0o755)
    yield d
    shutil.rmtree(d, ignore_errors=True)


@needs_sandbox
def test_the_confinement_holds_for_an_unprivileged_operator(open_tmp: Path) -> None:
    """The same kinds of probe with the runner itself running as ``nobody``: a user
    namespace instead of a dedicated uid."""
    if os.geteuid() != 0:
        pytest.skip("needs root to become nobody")
    tmp_path = open_tmp
    for parent in tmp_path.parents:
        if not os.access(parent, os.X_OK) or parent.stat().st_mode & 0o001 == 0:
            pytest.skip(f"{parent} is not traversable by nobody")
    py = _nobody_python(tmp_path)
    if py is None:
        pytest.skip("no Python here that nobody can run with facelab importable")
    work = tmp_path / "nobody"
    work.mkdir()
    os.chown(work, 65534, 65534)
    script = work / "probe.py"
    script.write_text(
        "import ctypes, os, socket\n"
        "def run():\n"
        "    out = {'uid': os.getuid()}\n"
        "    try:\n"
        "        socket.socket(socket.AF_UNIX); out['sock'] = 'made'\n"
        "    except OSError as e: out['sock'] = e.errno\n"
        "    out['shadow'] = os.path.exists('/etc/shadow')\n"
        "    out['status'] = open('/proc/self/status').read()\n"
        "    return out\n"
        "def perf():\n"
        "    return ctypes.CDLL(None).syscall(298, 0, 0, -1, -1, 0)\n"
    )
    script.chmod(0o644)
    code = (
        "import json; from pathlib import Path; from facelab.confine import run_python\n"
        "out = {}\n"
        "for fn in ('run', 'perf'):\n"
        f"    r = run_python('{script}:' + fn, {{}}, read=[Path('{work}')],"
        f" write=[Path('{work}/ws')], strict=False)\n"
        "    out[fn] = {'status': r.status, 'result': r.result, 'layers': r.layers,"
        " 'error': r.error}\n"
        "print(json.dumps(out))\n"
    )
    p = subprocess.run(
        ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", py, "-c", code],
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin", "HOME": str(work), "FACELAB_PASSPHRASE": SECRET},
        cwd=work,
        timeout=120,
        check=False,
    )
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout.strip().splitlines()[-1])
    assert out["run"]["status"] == "ok", out
    res = out["run"]["result"]
    assert res["sock"] != "made" and res["shadow"] is False
    assert "CapEff:\t0000000000000000" in res["status"]
    assert "NoNewPrivs:\t1" in res["status"] and "Seccomp:\t2" in res["status"]
    assert SECRET not in p.stdout
    assert "user namespace" in out["run"]["layers"][0]
    assert out["perf"]["status"] == "denied"  # perf_event_open: killed by seccomp


# ---------------------------------------------------------------- the one confinement


@needs_sandbox
def test_a_confined_child_never_inherits_the_callers_environment(tmp_path, monkeypatch) -> None:
    from facelab.confine import run_python

    monkeypatch.setenv("FACELAB_PASSPHRASE", SECRET)
    tmp_path.chmod(0o755)  # read paths must be readable by the run's own uid
    probe = tmp_path / "probe.py"
    probe.write_text(
        "import os\n"
        "def run():\n"
        "    return {'env': dict(os.environ), 'proc': open('/proc/self/environ').read()}\n"
    )
    seen = []

    def from_the_host(proc) -> None:  # /proc/<child>/environ read by the test itself
        seen.append(Path(f"/proc/{proc.pid}/environ").read_bytes())

    r = run_python(
        f"{probe}:run", {}, read=[tmp_path], write=[tmp_path / "ws"], on_start=from_the_host
    )
    assert r.status == "ok", r.error
    assert seen and b"PATH=" in seen[0] and SECRET.encode() not in seen[0]
    assert SECRET not in json.dumps(r.result)
    assert "PATH" in r.result["env"]  # positive control: the probe did read an environment


def test_the_import_gates_smoke_test_runs_in_the_confinement(el, tmp_path, monkeypatch) -> None:
    """The smoke test (which parses and runs tenant bytes with onnxruntime) goes through
    facelab.confine, and its child sees no secret."""
    import facelab.confine
    from facelab.gates.importing.ops import import_model

    from tests.import_helpers import make_keys, sign_and_approve

    calls = []
    real = facelab.confine.run_python

    def spy(target, kwargs, **kw):
        calls.append(target)
        return real(target, kwargs, **kw)

    monkeypatch.setattr(facelab.confine, "run_python", spy)
    monkeypatch.setenv("FACELAB_PASSPHRASE", SECRET)
    del make_keys, sign_and_approve  # the lab's own CNN package, re-imported
    pkg = el.lab.paths.root.parent / "cnn-package"
    _, log = el.unlocked()
    with log:
        report = import_model(el.lab, "acme", pkg, "operator", log)
    assert report.accepted, report.table()
    assert "facelab.gates.importing.checks._smoke_child:run" in calls


def test_strict_isolation_refuses_to_run_without_a_layer_and_names_it(el, monkeypatch) -> None:
    import facelab.confine
    from facelab.errors import JobRefused

    started = []
    monkeypatch.setattr(
        facelab.confine, "missing_layers", lambda: ["seccomp: libseccomp unavailable (test)"]
    )
    monkeypatch.setattr(facelab.confine, "run_python", lambda *a, **k: started.append(a))
    box = el.lab.paths.root / "outbox" / "acme"
    before = {p.name for p in box.iterdir()} if box.exists() else set()
    with pytest.raises(JobRefused, match="libseccomp unavailable"):
        job(el, "list_records")
    assert started == []  # nothing ran
    assert ({p.name for p in box.iterdir()} if box.exists() else set()) == before
    lines = (el.lab.paths.root / "audit" / "entries.jsonl").read_text().splitlines()
    last = json.loads(lines[-1])
    # the log: a code and a count (the layers' names are lab text, but the log of a
    # tenant's job holds codes only); the tenant was told which (the match above)
    assert last["action"] == "job.refuse"
    assert last["details"] == {"reason": "isolation-missing", "missing": 1}


@pytest.mark.parametrize(
    ("module", "attr", "value", "named"),
    [
        ("_run", "bwrap_path", lambda: None, "bubblewrap"),
        ("_landlock", "landlock_abi", lambda: 0, "Landlock"),
        ("_seccomp", "available", lambda: "libseccomp unavailable (test)", "seccomp"),
    ],
)
def test_strict_refuses_when_the_machine_really_lacks_a_layer(
    tmp_path, monkeypatch, module, attr, value, named
) -> None:
    """The machine's probe itself (not a stand-in for ``missing_layers``) reports the
    layer gone, and ``run_python`` under ``strict`` starts nothing: the probe's marker
    file is not written. Positive control: where every layer is present, the same probe
    runs and writes it."""
    import importlib

    from facelab.confine import _run, run_python

    tmp_path.chmod(0o755)
    probe = tmp_path / "probe.py"
    probe.write_text(
        "import pathlib, sys\n"
        "def run(out):\n"
        "    pathlib.Path(out, 'ran').write_text('yes')\n"
        "    return {'ran': True}\n"
    )
    ws = tmp_path / "ws"
    if not MISSING:  # positive control
        r = run_python(f"{probe}:run", {"out": str(ws)}, read=[tmp_path], write=[ws])
        assert r.status == "ok", r.error
        assert (ws / "ran").read_text() == "yes"
        (ws / "ran").unlink()
    monkeypatch.setattr(importlib.import_module(f"facelab.confine.{module}"), attr, value)
    assert any(named in m for m in _run.missing_layers())
    r = run_python(f"{probe}:run", {"out": str(ws)}, read=[tmp_path], write=[ws], strict=True)
    assert r.status == "refused" and named in r.error
    assert not (ws / "ran").exists()  # the effect: nothing ran


def test_run_python_itself_refuses_under_strict_when_a_layer_is_missing(tmp_path, monkeypatch):
    from facelab.confine import _run

    monkeypatch.setattr(_run, "missing_layers", lambda: ["Landlock: none (test)"])
    r = _run.run_python("os:getcwd", {}, write=[tmp_path / "ws"])
    assert r.status == "refused" and "Landlock" in r.error
    assert not (tmp_path / "ws").exists()  # nothing was set up, nothing ran


def test_odd_file_names_and_messages_cannot_break_or_forge_the_log(el) -> None:
    r = job(el, "odd_names")
    assert r.status == "failed" and len(r.outputs) == 81  # 80 plain names + job-error.txt
    e = finish(el, r.job_id)  # the entry was written, one line of valid JSON
    assert e["decision"] == "failed"
    assert e["details"]["output_files"] == 81 and "outputs" not in e["details"]
    assert e["details"]["removed_from_outbox"] == {"name": 7}  # every odd name
    assert "\n" not in json.dumps(e["details"]["error"]) and e["details"]["job_error"]
    lines = (el.lab.paths.root / "audit" / "entries.jsonl").read_text().splitlines()
    assert all(json.loads(line) for line in lines)  # nothing injected a line
    env = {**os.environ, "FACELAB_PASSPHRASE": PASSPHRASE.decode()}
    v = subprocess.run(
        [sys.executable, "-m", "facelab.cli", "audit", "verify", "--lab", str(el.lab.paths.root)],
        capture_output=True, text=True, env=env, timeout=120, check=False,
    )  # fmt: skip
    assert v.returncode == 0, v.stdout + v.stderr


def test_outbox_names_are_plain_and_short(el) -> None:
    """Names outside [A-Za-z0-9._-]{1,64} are removed like links (escape sequences,
    invalid UTF-8); what remains is recorded. Shorter names still carry bits: the export
    gate's rebuild names what it releases."""
    r = job(el, "names_carry_data")
    assert r.status == "done", r.error
    names = {p.name for p in r.outbox.rglob("*")}
    assert "plain.txt" in names
    assert not any("\x1b" in n or "\udcff" in n for n in names)
    e = finish(el, r.job_id)
    assert e["details"]["removed_from_outbox"].get("name")
    assert all(len(n) <= 64 for n in names)
