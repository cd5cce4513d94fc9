"""Take a model package (a directory, or a tar or gzip-compressed tar of one) into a
private work directory without parsing a byte of it here.

* **a directory** is copied by this process: walked without following links; only
  regular files with a single link are copied (a symbolic link, a hard link, which may
  name a file outside the package, a FIFO or a device is listed as a problem and never
  opened); each file is opened with ``O_NOFOLLOW | O_NONBLOCK`` and checked again on
  its descriptor; counts and bytes are bounded. The copy is hashed as it is written.
* **an archive** is copied as one file; the confined unpacker (``_tar.py`` inside
  ``facelab.confine``) extracts it, and :func:`adopt` reads back what it wrote with
  ``facelab.confine.walk_regular`` (no link followed, single-link regular files only).

The package's digest is the one :func:`facelab.synth.dataset_digest` defines (relative
path and SHA-256 of each file, in path order), computed from the hashes taken while
copying or reading back, so no file is read twice for it.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from facelab.errors import BadInputError

_OPEN = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


@dataclass
class Package:
    """A private copy of a package. ``problems`` lists what was refused while taking
    it in; ``sha256`` maps each file to its digest; ``work`` is the gate's temporary
    directory (removed by :meth:`cleanup`)."""

    root: Path
    files: dict[str, int] = field(default_factory=dict)  # relative path -> size
    problems: list[str] = field(default_factory=list)
    sha256: dict[str, str] = field(default_factory=dict)
    work: Path | None = None

    def path(self, rel: str) -> Path:
        return self.root / rel

    def cleanup(self) -> None:
        shutil.rmtree(self.work if self.work is not None else self.root.parent, ignore_errors=True)

    def digest(self) -> str:
        """``sha256:<hex>``, equal to ``facelab.synth.dataset_digest(self.root)``."""
        h = hashlib.sha256()
        for rel in sorted(self.sha256, key=lambda r: PurePosixPath(r).parts):
            h.update(rel.encode() + b"\0" + bytes.fromhex(self.sha256[rel]))
        return "sha256:" + h.hexdigest()


def copy_dir(src: Path, dest: Path, *, max_bytes: int, max_files: int) -> Package:
    """Copy the regular files of ``src`` into ``dest`` (created, readable by a confined
    run's uid). Returns the package; refusals are its ``problems``."""
    from facelab.gates.importing._tar import empty_dirs

    pkg = Package(dest)
    dest.mkdir(mode=0o755)
    total = 0
    dirs: set[str] = set()
    for dirpath, dirnames, filenames in os.walk(src, followlinks=False):
        for name in sorted([*dirnames, *filenames]):
            full = Path(dirpath) / name
            rel = full.relative_to(src).as_posix()
            st = full.lstat()
            if stat.S_ISLNK(st.st_mode):
                pkg.problems.append(f"{rel}: symbolic link (links are refused)")
                continue
            if stat.S_ISDIR(st.st_mode):
                (dest / rel).mkdir(mode=0o755, exist_ok=True)
                dirs.add(rel)
                continue
            if not stat.S_ISREG(st.st_mode):
                pkg.problems.append(f"{rel}: not a regular file")
                continue
            if st.st_nlink > 1:
                pkg.problems.append(
                    f"{rel}: hard link ({st.st_nlink} names; a file with more than one link "
                    "may be a file outside the package)"
                )
                continue
            if len(pkg.files) >= max_files:
                pkg.problems.append(f"{src}: more than {max_files} files")
                return pkg
            try:
                size, digest = _copy_file(full, dest / rel, st, max_bytes - total)
            except _Refused as e:
                pkg.problems.append(f"{rel}: {e}")
                if "package exceeds" in str(e):
                    return pkg
                continue
            total += size
            pkg.files[rel] = size
            pkg.sha256[rel] = digest
        dirnames[:] = [d for d in dirnames if not (Path(dirpath) / d).is_symlink()]
    pkg.problems += empty_dirs(dirs, pkg.files)
    return pkg


class _Refused(Exception):
    pass


def _copy_file(src: Path, dest: Path, st: os.stat_result, room: int) -> tuple[int, str]:
    try:
        fd = os.open(src, _OPEN)
    except OSError as e:
        raise _Refused(f"not opened ({e.strerror})") from e
    try:
        fst = os.fstat(fd)
        if not stat.S_ISREG(fst.st_mode) or fst.st_ino != st.st_ino or fst.st_nlink != 1:
            raise _Refused("replaced while read")
        h = hashlib.sha256()
        n = 0
        out = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
        try:
            while block := os.read(fd, 1 << 20):
                n += len(block)
                if n > room:
                    raise _Refused("the package exceeds its size limit")
                h.update(block)
                view = memoryview(block)
                while view:
                    view = view[os.write(out, view) :]
        finally:
            os.close(out)
        return n, h.hexdigest()
    finally:
        os.close(fd)


def copy_archive(src: Path, dest: Path, *, max_bytes: int) -> str:
    """Copy the archive file ``src`` to ``dest`` (mode 0644), at most ``max_bytes``;
    return its SHA-256 (hex).

    Raises
    ------
    BadInputError
        ``src`` is not a regular file, or is larger than ``max_bytes``.
    """
    try:
        fd = os.open(src, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as e:
        raise BadInputError(f"{src}: cannot read the package ({e.strerror})") from e
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise BadInputError(f"{src}: not a directory or a tar archive")
        n = 0
        h = hashlib.sha256()
        out = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
        try:
            while block := os.read(fd, 1 << 20):
                n += len(block)
                if n > max_bytes:
                    raise BadInputError(f"{src}: package exceeds {max_bytes} bytes")
                h.update(block)
                view = memoryview(block)
                while view:
                    view = view[os.write(out, view) :]
        finally:
            os.close(out)
        return h.hexdigest()
    finally:
        os.close(fd)


def adopt(root: Path, reported: dict[str, int], max_files: int, max_bytes: int) -> Package:
    """Read back a tree a confined run wrote (never following a link, single-link
    regular files only) and check it against what the run reported."""
    from facelab.confine import walk_regular

    pkg = Package(root)
    files, bad = walk_regular(root, max_files=max_files + 64, max_file_bytes=max_bytes)
    for b in bad:
        pkg.problems.append(f"{b.path}: {b.reason} in the unpacked package")
    for f in files:
        pkg.files[f.path] = f.size
        pkg.sha256[f.path] = f.sha256
    if not bad and pkg.files != reported:
        pkg.problems.append("the unpacked files differ from what the unpacker reported")
    return pkg
