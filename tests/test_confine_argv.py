"""What a confined run is given, read from the bubblewrap command line the confinement
builds (``confine._run._bwrap_argv``) as data: the environment (exactly the listed
variables, never the caller's), the paths bound read-only and read-write, the private
``/tmp`` and ``/dev/shm``, the namespaces and the dedicated uid. The effects of the same
command line are attacked by ``test_zero_client.py`` (slow, needs bubblewrap); these
rows fail fast when the decision that builds it breaks."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from facelab.confine import _run

ENV = {"PATH", "HOME", "TMPDIR", "MPLCONFIGDIR", "LANG", "OMP_NUM_THREADS"}


def _pairs(argv: list[str], flag: str) -> list[tuple[str, str]]:
    return [(argv[i + 1], argv[i + 2]) for i, a in enumerate(argv) if a == flag]


def _ones(argv: list[str], flag: str) -> list[str]:
    return [argv[i + 1] for i, a in enumerate(argv) if a == flag]


@pytest.fixture
def paths(tmp_path: Path):
    read = tmp_path / "model"
    write = tmp_path / "jobs" / "ws"
    out = tmp_path / "jobs" / "outbox"
    for p in (read, write / ".tmp", write / ".shm", out):
        p.mkdir(parents=True)
    return read, write, out


def _argv(paths, uid=None, write=None) -> list[str]:
    read, ws, out = paths
    return _run._bwrap_argv([read], [ws, out] if write is None else write, ws, uid, 7, 8)


def test_the_child_gets_only_the_listed_environment(paths, monkeypatch) -> None:
    monkeypatch.setenv("FACELAB_PASSPHRASE", "operator-secret-xyz")
    monkeypatch.setattr(_run.os, "cpu_count", lambda: 64)
    argv = _argv(paths)
    assert "--clearenv" in argv
    env = dict(_pairs(argv, "--setenv"))
    assert set(env) == ENV
    assert env["HOME"] == str(paths[1]) and env["TMPDIR"] == "/tmp"
    assert env["OMP_NUM_THREADS"] == "8"  # at most 8 threads, whatever the machine has
    assert not any("operator-secret-xyz" in a for a in argv)
    monkeypatch.setattr(_run.os, "cpu_count", lambda: 3)
    assert dict(_pairs(_argv(paths), "--setenv"))["OMP_NUM_THREADS"] == "3"
    monkeypatch.setattr(_run.os, "cpu_count", lambda: None)
    assert dict(_pairs(_argv(paths), "--setenv"))["OMP_NUM_THREADS"] == "1"


def test_read_paths_are_bound_read_only_and_write_paths_read_write(paths) -> None:
    read, ws, out = paths
    argv = _argv(paths)
    ro, rw = dict(_pairs(argv, "--ro-bind")), dict(_pairs(argv, "--bind"))
    assert ro[str(read)] == str(read) and str(read) not in rw
    assert rw[str(ws)] == str(ws) and rw[str(out)] == str(out)
    assert str(ws) not in ro and str(out) not in ro
    assert ro["/usr"] == "/usr"
    # the interpreter's installation is there, read-only; the working directory is not
    prefix = str(Path(sys.prefix).resolve())
    assert any(prefix == p or prefix.startswith(p.rstrip("/") + "/") for p in [*ro, "/usr"])
    assert str(Path.cwd()) not in ro and str(Path.cwd()) not in rw


def test_a_read_path_inside_a_write_path_is_not_bound_twice(paths) -> None:
    read, ws, out = paths
    inner = ws / "sub"
    inner.mkdir()
    argv = _run._bwrap_argv([read, inner], [ws, out], ws, None, 7, 8)
    assert str(inner) not in dict(_pairs(argv, "--ro-bind"))
    assert str(inner) not in dict(_pairs(argv, "--bind"))
    # and the write path above it is bound as it is, not replaced by an empty directory
    assert str(ws) not in _ones(argv, "--dir")


def test_tmp_and_shm_are_the_first_write_paths_private_directories(paths) -> None:
    ws = paths[1]
    rw = _pairs(_argv(paths), "--bind")
    assert (str(ws / ".tmp"), "/tmp") in rw and (str(ws / ".shm"), "/dev/shm") in rw
    argv = _argv(paths, write=[])
    assert "/tmp" in _ones(argv, "--tmpfs")
    assert not any(dst in ("/tmp", "/dev/shm") for _, dst in _pairs(argv, "--bind"))


def test_every_directory_above_a_bind_is_made_traversable_and_nothing_else(paths) -> None:
    read, ws, _ = paths
    argv = _argv(paths)
    dirs = set(_ones(argv, "--dir"))
    assert {str(read.parent), str(ws.parent)} <= dirs  # tmp_path and tmp_path/jobs
    assert "/" not in dirs
    assert not any(d == "/usr" or d.startswith("/usr/") for d in dirs)
    bound = {s for s, _ in _pairs(argv, "--ro-bind") + _pairs(argv, "--bind")}
    assert not any(d == b or d.startswith(b.rstrip("/") + "/") for d in dirs for b in bound)


def test_the_hosts_top_level_directories_appear_as_on_the_host(paths) -> None:
    argv = _argv(paths)
    links = {dst: target for target, dst in _pairs(argv, "--symlink")}
    ro = dict(_pairs(argv, "--ro-bind"))
    for name in ("bin", "sbin", "lib", "lib32", "lib64", "libx32"):
        host = Path("/") / name
        if host.is_symlink():
            assert links[f"/{name}"] == str(host.readlink())
        elif host.is_dir():
            assert ro[str(host)] == f"/{name}"
        else:
            assert f"/{name}" not in links and str(host) not in ro
    if Path("/etc/ld.so.cache").exists():
        assert ro["/etc/ld.so.cache"] == "/etc/ld.so.cache"
    if Path("/sys/devices/system/cpu").is_dir():
        assert "/sys/devices/system/cpu" in ro


def test_host_wide_proc_files_are_masked(paths) -> None:
    masked = {dst for src, dst in _pairs(_argv(paths), "--ro-bind") if src == "/dev/null"}
    for name in ("kallsyms", "cmdline", "keys"):
        if Path("/proc", name).exists():
            assert f"/proc/{name}" in masked


def test_namespaces_and_the_run_as_a_dedicated_uid_or_a_user_namespace(paths, monkeypatch) -> None:
    argv = _argv(paths)
    for flag in ("--unshare-net", "--unshare-ipc", "--unshare-pid", "--die-with-parent"):
        assert flag in argv
    assert "--unshare-user" in argv and not any(a.startswith("--reuid") for a in argv)
    assert _ones(argv, "--cap-add") == []
    monkeypatch.setattr(_run, "setpriv_path", lambda: "/opt/bin/setpriv")
    argv = _argv(paths, uid=4242)
    assert "--unshare-user" not in argv
    i = argv.index("/opt/bin/setpriv")
    assert argv[i + 1 : i + 3] == ["--reuid=4242", "--regid=4242"]
    assert "--no-new-privs" in argv[i:] and "--bounding-set=-all" in argv[i:]
    assert sorted(_ones(argv, "--cap-add")) == ["CAP_SETGID", "CAP_SETPCAP", "CAP_SETUID"]


@pytest.mark.parametrize(
    ("p", "by", "covered"),
    [
        ("/a/b", ["/a"], True),
        ("/a", ["/a"], True),
        ("/ab", ["/a"], False),  # a prefix of the name is not a parent
        ("/a", ["/a/b"], False),
        ("/a/b", [], False),
    ],
)
def test_a_path_is_covered_by_itself_or_a_parent(p, by, covered) -> None:
    assert _run._covered(Path(p), [Path(b) for b in by]) is covered


def test_minimal_keeps_only_the_topmost_paths() -> None:
    got = _run._minimal([Path(p) for p in ("/a/b", "/a", "/c", "/a/b/c", "/ab", "/a")])
    assert sorted(map(str, got)) == ["/a", "/ab", "/c"]


def test_what_every_run_reads_is_the_python_installation_and_facelab_only(monkeypatch) -> None:
    import facelab

    monkeypatch.syspath_prepend("/nonexistent-pythonpath-entry")
    bound = _run.bound_paths()
    assert Path(sys.prefix).resolve() in bound
    assert any(
        b == Path(facelab.__file__).parent.resolve() or b in Path(facelab.__file__).parents
        for b in bound
    )
    assert all(b.is_dir() and b == b.resolve() for b in bound)
    assert Path("/nonexistent-pythonpath-entry") not in bound
