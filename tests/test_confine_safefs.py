"""Reading what a confined run left behind (``facelab.confine.safefs``), without a sandbox:
links, FIFOs, sockets, hard links, caps. The oracle is the test's own hashlib."""

from __future__ import annotations

import hashlib
import os
import socket
import threading
from pathlib import Path

import pytest
from facelab.confine.safefs import disown, hash_fd, walk_regular


def _tree(root: Path) -> dict[str, bytes]:
    files = {"a.txt": b"alpha", "sub/b.bin": os.urandom(3000), "sub/deeper/c": b""}
    for rel, data in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    return files


def test_regular_files_are_listed_with_their_digests(tmp_path: Path) -> None:
    files = _tree(tmp_path)
    got, bad = walk_regular(tmp_path)
    assert bad == []
    assert {f.path: f.sha256 for f in got} == {
        k: hashlib.sha256(v).hexdigest() for k, v in files.items()
    }
    assert {f.path: f.size for f in got} == {k: len(v) for k, v in files.items()}


def test_links_fifos_sockets_and_hard_links_are_reported_never_opened(tmp_path: Path) -> None:
    _tree(tmp_path)
    secret = tmp_path.parent / f"{tmp_path.name}-secret"
    secret.write_bytes(b"do not read")
    os.symlink(secret, tmp_path / "link")
    os.symlink("/dev/zero", tmp_path / "zero")
    os.symlink(tmp_path.parent, tmp_path / "dirlink")
    os.mkfifo(tmp_path / "fifo")  # opening it for reading would block forever
    s = socket.socket(socket.AF_UNIX)
    s.bind(str(tmp_path / "sock"))
    os.link(tmp_path / "a.txt", tmp_path / "a-again.txt")
    done = threading.Event()
    result: list = []

    def walk() -> None:
        result.append(walk_regular(tmp_path))
        done.set()

    threading.Thread(target=walk, daemon=True).start()
    assert done.wait(10), "walk_regular blocked (it opened the FIFO)"
    got, bad = result[0]
    reasons = {b.path: b.reason for b in bad}
    assert reasons["link"] == reasons["zero"] == reasons["dirlink"] == "symbolic link"
    assert reasons["fifo"] == "FIFO" and reasons["sock"] == "socket"
    assert "hard link" in reasons["a.txt"] and "hard link" in reasons["a-again.txt"]
    paths = {f.path for f in got}
    assert paths == {"sub/b.bin", "sub/deeper/c"}
    assert hashlib.sha256(b"do not read").hexdigest() not in {f.sha256 for f in got}
    s.close()


def test_caps_on_entries_and_file_size(tmp_path: Path) -> None:
    for i in range(30):
        (tmp_path / f"f{i:02d}").write_bytes(b"x" * i)
    got, bad = walk_regular(tmp_path, max_files=10)
    assert len(got) == 10  # exactly the cap: the eleventh entry stops the walk
    assert [b.reason for b in bad] == ["more than 10 entries"] and bad[0].path == "f10"
    got, bad = walk_regular(tmp_path, max_file_bytes=20)
    assert {f.path for f in got} == {f"f{i:02d}" for i in range(21)}
    assert len(bad) == 9 and all("over the cap" in b.reason for b in bad)


def test_a_sparse_file_is_refused_by_its_size_without_reading_it(tmp_path: Path) -> None:
    with open(tmp_path / "sparse", "wb") as f:
        f.truncate(1 << 40)  # 1 TiB of holes: reading it would take hours
    got, bad = walk_regular(tmp_path, max_file_bytes=1 << 20)
    assert got == [] and "over the cap" in bad[0].reason


def test_hash_fd_streams_and_stops_at_its_limit(tmp_path: Path) -> None:
    p = tmp_path / "f"
    p.write_bytes(os.urandom(5 << 20))
    fd = os.open(p, os.O_RDONLY)
    try:
        assert hash_fd(fd, 6 << 20) == (5 << 20, hashlib.sha256(p.read_bytes()).hexdigest())
        os.lseek(fd, 0, 0)
        with pytest.raises(ValueError):
            hash_fd(fd, 1 << 20)
    finally:
        os.close(fd)


def test_the_root_itself_must_be_a_real_directory(tmp_path: Path) -> None:
    os.symlink(tmp_path, tmp_path.parent / f"{tmp_path.name}-link")
    with pytest.raises(OSError):
        walk_regular(tmp_path.parent / f"{tmp_path.name}-link")


def test_disown_gives_everything_back_without_following_links(tmp_path: Path) -> None:
    _tree(tmp_path)
    outside = tmp_path.parent / f"{tmp_path.name}-outside"
    outside.write_text("x")
    outside.chmod(0o666)
    os.symlink(outside, tmp_path / "link")
    (tmp_path / "a.txt").chmod(0o777)
    disown(tmp_path, os.getuid(), os.getgid())
    assert (tmp_path / "a.txt").stat().st_mode & 0o777 == 0o600
    assert (tmp_path / "sub").stat().st_mode & 0o777 == 0o700
    assert outside.stat().st_mode & 0o777 == 0o666  # the link's target is untouched
