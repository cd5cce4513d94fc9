"""Reading what a confined run left behind, without trusting it.

A workspace or outbox is written by hostile code: it may hold symbolic links (to the
vault, the key store, ``/dev/zero``), FIFOs (a reader blocks forever), devices,
sockets, hard links to files elsewhere, or sparse files of many gigabytes. Every entry
is looked at with ``lstat`` relative to an open directory descriptor and opened with
``O_NOFOLLOW | O_NONBLOCK``; only regular files with one link are read, by streaming;
everything else is reported, never opened. Counts and bytes are capped.
"""

from __future__ import annotations

import hashlib
import os
import stat
from dataclasses import dataclass
from pathlib import Path

from facelab.labfs import kind

_OPEN_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_OPEN_FILE = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


@dataclass(frozen=True)
class UnsafeEntry:
    """An entry that is not a plain file or directory, or is over a cap."""

    path: str  # relative to the walked root
    reason: str


@dataclass(frozen=True)
class RegularFile:
    path: str  # relative, '/'-separated
    size: int
    sha256: str


def hash_fd(fd: int, limit: int) -> tuple[int, str]:
    """(bytes, sha256 hex) of an open file, read in 1 MiB blocks up to ``limit`` bytes.

    Raises
    ------
    ValueError
        The file holds more than ``limit`` bytes.
    """
    h = hashlib.sha256()
    n = 0
    while True:
        block = os.read(fd, 1 << 20)
        if not block:
            return n, h.hexdigest()
        n += len(block)
        if n > limit:
            raise ValueError(f"larger than {limit} bytes")
        h.update(block)


def walk_regular(
    root: Path, *, max_files: int = 10_000, max_file_bytes: int = 1 << 30
) -> tuple[list[RegularFile], list[UnsafeEntry]]:
    """Every regular file under ``root`` with its size and SHA-256, and every entry that
    was refused (links, FIFOs, sockets, devices, hard links, files over the cap, entries
    past ``max_files``). Never follows a link, never opens a special file, never
    reads a file whole into memory. ``root`` itself must be a real directory.

    Raises
    ------
    NotADirectoryError, OSError
        ``root`` is a link or not a directory.
    """
    files: list[RegularFile] = []
    bad: list[UnsafeEntry] = []
    top = os.open(root, _OPEN_DIR)
    stack: list[tuple[int, str]] = [(top, "")]
    seen = 0
    try:
        while stack:
            dfd, rel = stack.pop()
            try:
                names = sorted(os.listdir(dfd))
                for name in names:
                    path = f"{rel}{name}"
                    seen += 1
                    if seen > max_files:
                        bad.append(UnsafeEntry(path, f"more than {max_files} entries"))
                        return files, bad
                    st = os.stat(name, dir_fd=dfd, follow_symlinks=False)
                    if stat.S_ISDIR(st.st_mode):
                        try:
                            stack.append((os.open(name, _OPEN_DIR, dir_fd=dfd), path + "/"))
                        except OSError as e:
                            bad.append(UnsafeEntry(path, f"directory not opened ({e.strerror})"))
                        continue
                    if not stat.S_ISREG(st.st_mode):
                        bad.append(UnsafeEntry(path, kind(st.st_mode)))
                        continue
                    if st.st_nlink > 1:
                        bad.append(UnsafeEntry(path, f"hard link ({st.st_nlink} names)"))
                        continue
                    if st.st_size > max_file_bytes:
                        bad.append(UnsafeEntry(path, f"{st.st_size} bytes, over the cap"))
                        continue
                    try:
                        fd = os.open(name, _OPEN_FILE, dir_fd=dfd)
                    except OSError as e:
                        bad.append(UnsafeEntry(path, f"not opened ({e.strerror})"))
                        continue
                    try:
                        fst = os.fstat(fd)
                        if not stat.S_ISREG(fst.st_mode) or fst.st_ino != st.st_ino:
                            bad.append(UnsafeEntry(path, "replaced while read"))
                            continue
                        size, digest = hash_fd(fd, max_file_bytes)
                        files.append(RegularFile(path, size, digest))
                    except ValueError as e:
                        bad.append(UnsafeEntry(path, str(e)))
                    finally:
                        os.close(fd)
            finally:
                os.close(dfd)
    finally:
        for dfd, _ in stack:
            os.close(dfd)
    return files, bad


def disown(root: Path, uid: int = 0, gid: int = 0) -> None:
    """Give every entry under ``root`` (and ``root``) back to ``uid:gid``; drop group
    and other permissions, extended attributes and chosen timestamps (both are channels
    the export gate does not read). Works relative to directory descriptors, never
    follows a link, never opens a special file, and copes with paths past PATH_MAX.

    Raises
    ------
    OSError
        ``root`` is not a real directory, or the walk fails.
    """
    os.chown(root, uid, gid, follow_symlinks=False)
    os.chmod(root, 0o700)
    for _, dirs, files, dfd in os.fwalk(root, follow_symlinks=False):
        for name in [*dirs, *files]:
            st = os.stat(name, dir_fd=dfd, follow_symlinks=False)
            os.chown(name, uid, gid, dir_fd=dfd, follow_symlinks=False)
            if stat.S_ISDIR(st.st_mode):
                os.chmod(name, 0o700, dir_fd=dfd)
            elif stat.S_ISREG(st.st_mode):
                fd = os.open(name, _OPEN_FILE, dir_fd=dfd)
                try:
                    os.fchmod(fd, stat.S_IMODE(st.st_mode) & 0o600 | 0o400)
                    for attr in os.listxattr(fd):
                        os.removexattr(fd, attr)
                    os.utime(fd)
                finally:
                    os.close(fd)
