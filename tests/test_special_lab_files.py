"""Every file a lab holds, and every file of an evidence pack, replaced by a FIFO, a
link to ``/dev/zero`` or a directory: the read-only commands end within a timeout,
never with a traceback, with one error line and exit 2 or 4 wherever they need that
file, and nothing else of the lab changes (issue 14; red team 14g c05-c10: a FIFO hung
``audit verify``, ``vault list``, ``destroy`` and ``evidence verify``, and
``policy.toml -> /dev/zero`` read without limit).

The file list comes from a real lab made once per module (``init``, ``synth``,
``ingest``, ``evidence``), not from a hand-written list. Which files a command needs
is found from the lab too: a file whose plain removal makes the command fail is one it
reads, so a special file in its place must make it fail as well (exit 2 or 4); a file it
does without may be read around (exit 0).

The commands run through ``facelab.cli.main`` in a forked child of this process (no
interpreter start per case; each case is still a process of its own, killed at the
timeout), which keeps some 300 cases near half a minute.
"""

from __future__ import annotations

import os
import shutil
import signal
import stat
import sys
import time
from pathlib import Path

import pytest
from facelab.synth import SynthConfig, write_dataset

from tests.test_cli_audit import ENV, run

TIMEOUT_S = 30
KINDS = {
    "fifo": os.mkfifo,
    "devzero": lambda p: os.symlink("/dev/zero", p),
    "directory": os.mkdir,
}
LAB_COMMANDS = {
    "audit verify": ("audit", "verify", "--lab"),
    "vault list": ("vault", "list", "--lab"),
    "register": ("register", "--lab"),
}
# files of the log a writer may append to or re-sign (vault list opens the log as a
# writer); every other file must keep its bytes
APPEND_ONLY = {"audit/entries.jsonl", "audit/index.bin", "audit/hashes.bin"}


def _cli(argv: list[str], env: dict, out: Path) -> tuple[int, str]:
    """(exit code, stderr) of ``facelab argv`` run by ``facelab.cli.main`` in a forked
    child; 124 when it is still running after ``TIMEOUT_S`` (then killed)."""
    err = out.with_suffix(".err")
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        code = 70
        try:
            fd = os.open(err, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            os.dup2(fd, 2)
            os.dup2(os.open(os.devnull, os.O_WRONLY), 1)
            sys.stderr = os.fdopen(2, "w", buffering=1)  # not pytest's capture objects
            sys.stdout = os.fdopen(1, "w")
            os.environ.clear()
            os.environ.update(env)
            from facelab import labdir

            labdir._CAPTURED.clear()
            from facelab.cli import main

            code = main(argv)
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else 1
        except BaseException:
            import traceback

            traceback.print_exc()
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
    rc = _wait(pid, TIMEOUT_S)
    return rc, err.read_text(errors="replace")


def _wait(pid: int, timeout: float) -> int:
    """The exit code of child ``pid``, or 124 after killing it at ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        time.sleep(0.01)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    return 124


def _regular_files(root: Path) -> list[str]:
    out = []
    for dirpath, _dirs, names in os.walk(root):
        for n in names:
            p = Path(dirpath) / n
            if stat.S_ISREG(os.lstat(p).st_mode):
                out.append(p.relative_to(root).as_posix())
    return sorted(out)


def _snapshot(root: Path) -> dict[str, bytes]:
    return {rel: (root / rel).read_bytes() for rel in _regular_files(root)}


@pytest.fixture(scope="module")
def made(tmp_path_factory) -> tuple[Path, Path, dict]:
    """A lab with one tenant, and an evidence pack of it; and the environment (with its
    own key pins) that opens both."""
    d = tmp_path_factory.mktemp("special")
    env = {**ENV, "FACELAB_KNOWN_LABS": str(d / "pins.json")}
    assert run("init", str(d / "lab"), env=env).returncode == 0
    write_dataset(SynthConfig(identities=3, captures=1, seed=11), d / "ds", workers=1)
    p = run("ingest", "--lab", str(d / "lab"), "--tenant", "acme", str(d / "ds"), "--new-tenant",
            env=env)  # fmt: skip
    assert p.returncode == 0, p.stderr
    p = run("evidence", "--lab", str(d / "lab"), "--out", str(d / "pack"), env=env)
    assert p.returncode == 0, p.stderr
    return d / "lab", d / "pack", env


def _copy(src: Path, dst: Path, env: dict, pins: Path) -> dict:
    shutil.copytree(src, dst, symlinks=True)
    if Path(env["FACELAB_KNOWN_LABS"]).exists():
        shutil.copy(env["FACELAB_KNOWN_LABS"], pins)
    return {**env, "FACELAB_KNOWN_LABS": str(pins)}


def _check_others(before: dict[str, bytes], root: Path, skip: str, rc: int) -> list[str]:
    """What was lost or changed among the files other than ``skip``."""
    bad = []
    for rel, old in before.items():
        if rel == skip:
            continue
        p = root / rel
        try:
            st = os.lstat(p)
        except FileNotFoundError:
            if rc == 0 and rel.startswith("audit/checkpoints/"):
                continue  # a writer may move a checkpoint that does not verify to cut/
            bad.append(f"{rel}: gone")
            continue
        if not stat.S_ISREG(st.st_mode):
            bad.append(f"{rel}: no longer a regular file")
            continue
        new = p.read_bytes()
        if new == old:
            continue
        if rel in APPEND_ONLY and new.startswith(old):
            continue
        if rc == 0 and rel.startswith("keys/audit_head."):
            continue  # a writer that succeeded re-signs its head
        bad.append(f"{rel}: changed")
    return bad


def _judge(rc: int, err: str, what: str, *, one_line: bool = True) -> list[str]:
    """What is wrong with a run that ended with ``rc`` and ``err``. ``one_line=False``:
    a problem list (``evidence verify`` names every problem of a pack, one a line)."""
    lines = [x for x in err.strip().splitlines() if x.strip()]
    bad = []
    if rc == 124:
        bad.append(f"{what}: hung (killed after {TIMEOUT_S} s)")
    elif "Traceback" in err:
        bad.append(f"{what}: traceback (exit {rc}): {lines[-1] if lines else ''}")
    elif rc not in (0, 2, 4):
        bad.append(f"{what}: exit {rc}: {err.strip()[:160]}")
    elif rc != 0 and (len(lines) != 1 if one_line else not lines):
        bad.append(f"{what}: {len(lines)} error lines (exit {rc}): {err.strip()[:200]}")
    return bad


def _lab_cases(made, tmp_path: Path, command: str, files: list[str]) -> list[str]:
    lab, _pack, env = made
    argv = list(LAB_COMMANDS[command])
    problems = []
    for i, rel in enumerate(files):
        # the oracle: does the command need this file? (its plain removal fails it)
        root = tmp_path / f"gone{i}"
        e = _copy(lab, root, env, tmp_path / f"gone{i}.json")
        (root / rel).unlink()
        needed, _ = _cli([*argv, str(root)], e, tmp_path / f"gone{i}")
        needed = needed != 0
        shutil.rmtree(root)
        for kind, make in KINDS.items():
            root = tmp_path / f"{kind}{i}"
            e = _copy(lab, root, env, tmp_path / f"{kind}{i}.json")
            (root / rel).unlink()
            make(root / rel)
            before = _snapshot(root)
            rc, err = _cli([*argv, str(root)], e, tmp_path / f"{kind}{i}")
            what = f"{command} with {rel} a {kind}"
            problems += _judge(rc, err, what)
            if needed and rc == 0:
                problems.append(f"{what}: exit 0, but the command fails without the file")
            problems += [f"{what}: {x}" for x in _check_others(before, root, rel, rc)]
            shutil.rmtree(root)
    return problems


def _pack_cases(made, tmp_path: Path, files: list[str]) -> list[str]:
    lab, pack, env = made
    problems = []
    for i, rel in enumerate(files):
        for kind, make in KINDS.items():
            root = tmp_path / f"pack-{kind}{i}"
            shutil.copytree(pack, root, symlinks=True)
            (root / rel).unlink()
            make(root / rel)
            before = _snapshot(root)
            argv = ["evidence", "verify", str(root), "--key", str(lab / "keys/lab_signing.pub")]
            rc, err = _cli(argv, env, tmp_path / f"pack-{kind}{i}")
            what = f"evidence verify with the pack's {rel} a {kind}"
            problems += _judge(rc, err, what, one_line=False)
            if rc == 4 and rel not in err.splitlines()[0]:
                problems.append(f"{what}: the first line does not name the file: {err[:160]}")
            if rc != 4 and rc != 124:  # a pack holds regular files only: never intact
                problems.append(f"{what}: exit {rc}, not 4 (tampered)")
            problems += [f"{what}: {x}" for x in _check_others(before, root, rel, 4)]
            shutil.rmtree(root)
    return problems


def test_the_module_lab_is_whole(made, tmp_path) -> None:
    """Positive control: on the untouched lab and pack every command exits 0, so a
    refusal below is the special file's doing."""
    lab, pack, env = made
    for command, argv in LAB_COMMANDS.items():
        root = tmp_path / command.replace(" ", "-")
        e = _copy(lab, root, env, tmp_path / f"{root.name}.json")
        rc, err = _cli([*argv, str(root)], e, root.with_suffix(".out"))
        assert rc == 0, (command, err)
    key = str(lab / "keys/lab_signing.pub")
    assert _cli(["evidence", "verify", str(pack), "--key", key], env, tmp_path / "ev")[0] == 0
    assert {"audit/entries.jsonl", "keys/tenants/acme.kek", "policy.toml", "vault.db"} <= set(
        _regular_files(lab)
    )


# `audit verify` reads every file of the lab in the default run; the two writers' sweeps
# (about 18 s each on a loaded machine) with `make test-slow`
@pytest.mark.parametrize(
    "command",
    [
        c if c == "audit verify" else pytest.param(c, marks=pytest.mark.slow)
        for c in sorted(LAB_COMMANDS)
    ],
)
def test_every_lab_file_made_special(made, tmp_path, command) -> None:
    problems = _lab_cases(made, tmp_path, command, _regular_files(made[0]))
    assert not problems, "\n".join(problems)


def test_every_pack_file_made_special(made, tmp_path) -> None:
    problems = _pack_cases(made, tmp_path, _regular_files(made[1]))
    assert not problems, "\n".join(problems)


def test_the_harness_sees_a_hang_and_a_traceback(tmp_path) -> None:
    """Negative controls of the harness: a child blocked in open(2) of a FIFO (what the
    red team's commands did) is killed and reported as a hang; a traceback, a second
    line and an unexpected exit code are each reported."""
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child blocks
        try:
            with open(fifo, "rb") as f:
                f.read()
        finally:
            os._exit(0)
    rc = _wait(pid, 1)
    assert rc == 124
    assert _judge(rc, "", "x") == [f"x: hung (killed after {TIMEOUT_S} s)"]
    tb = "Traceback (most recent call last):\nValueError\n"
    assert _judge(1, tb, "x")[0].startswith("x: traceback")
    assert _judge(2, "facelab: error: a\nsecond line\n", "x")[0].startswith("x: 2 error lines")
    assert _judge(1, "facelab: error: x\n", "x")[0].startswith("x: exit 1")
    assert _judge(2, "facelab: error: one line\n", "x") == []


def test_removing_a_needed_file_is_seen_by_the_oracle(made, tmp_path) -> None:
    """The oracle's own controls: without its audit log, ``audit verify`` fails; without
    a lock file it does not need, it succeeds."""
    lab, _pack, env = made
    for rel, want_fail in (("audit/entries.jsonl", True), ("audit/locks/acme.lock", False)):
        root = tmp_path / rel.replace("/", "_")
        e = _copy(lab, root, env, tmp_path / f"{root.name}.json")
        (root / rel).unlink()
        rc, _ = _cli(["audit", "verify", "--lab", str(root)], e, root.with_suffix(".o"))
        assert (rc != 0) == want_fail, (rel, rc)


def test_the_streamed_digest_is_the_files_and_refuses_what_read_bytes_refuses(tmp_path) -> None:
    import hashlib

    from facelab import labfs
    from facelab.errors import BadInputError

    f = tmp_path / "model.onnx"
    f.write_bytes(os.urandom(3 << 20) + b"tail")  # more than one 1 MiB block
    assert labfs.sha256(f) == hashlib.sha256(f.read_bytes()).hexdigest()
    with pytest.raises(BadInputError, match="over"):
        labfs.sha256(f, 1 << 20)
    os.mkfifo(tmp_path / "fifo")
    (tmp_path / "link").symlink_to(f)
    for p in (tmp_path / "fifo", tmp_path / "link", tmp_path):
        with pytest.raises(BadInputError):
            labfs.sha256(p)
