"""Open a model package (a directory or a .tar of one) without trusting it.

A tar is checked member by member before anything is written: only regular files and
directories, relative names without ``..``, no links, devices or FIFOs, and a size cap.
A directory is walked without following links; a symlink anywhere is refused. Either
way the result is a private copy in a temporary directory that the gate owns.
"""

from __future__ import annotations

import os
import shutil
import stat
import tarfile
import tempfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from lab.errors import BadInputError


@dataclass
class Package:
    """A private copy of a package; ``problems`` lists what was refused while opening."""

    root: Path
    files: dict[str, int] = field(default_factory=dict)  # relative path -> size
    problems: list[str] = field(default_factory=list)

    def path(self, rel: str) -> Path:
        return self.root / rel

    def cleanup(self) -> None:
        shutil.rmtree(self.root.parent, ignore_errors=True)


def _safe_name(name: str) -> bool:
    p = PurePosixPath(name)
    return bool(p.parts) and not p.is_absolute() and ".." not in p.parts and "\\" not in name


def open_package(src: Path | str, max_bytes: int) -> Package:
    src = Path(src)
    if not src.exists():
        raise BadInputError(f"{src}: no such package")
    work = Path(tempfile.mkdtemp(prefix="facelab-import-"))
    pkg = Package(work / "pkg")
    pkg.root.mkdir()
    try:
        if src.is_dir():
            _copy_dir(src, pkg, max_bytes)
        elif tarfile.is_tarfile(src):
            _extract_tar(src, pkg, max_bytes)
        else:
            raise BadInputError(f"{src}: not a directory or a tar archive")
    except BaseException:
        pkg.cleanup()
        raise
    return pkg


def _copy_dir(src: Path, pkg: Package, max_bytes: int) -> None:
    total = 0
    for dirpath, dirnames, filenames in os.walk(src, followlinks=False):
        for name in [*dirnames, *filenames]:
            full = Path(dirpath) / name
            rel = full.relative_to(src).as_posix()
            st = full.lstat()
            if stat.S_ISLNK(st.st_mode):
                pkg.problems.append(f"{rel}: symbolic link (links are refused)")
                continue
            if stat.S_ISDIR(st.st_mode):
                continue
            if not stat.S_ISREG(st.st_mode):
                pkg.problems.append(f"{rel}: not a regular file")
                continue
            total += st.st_size
            if total > max_bytes:
                raise BadInputError(f"{src}: package exceeds {max_bytes} bytes")
            dest = pkg.root / rel
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(full, dest, follow_symlinks=False)
            pkg.files[rel] = st.st_size
        dirnames[:] = [d for d in dirnames if not (Path(dirpath) / d).is_symlink()]


def _extract_tar(src: Path, pkg: Package, max_bytes: int) -> None:
    total = 0
    with tarfile.open(src, "r:*") as tf:
        members = tf.getmembers()
        names = [m.name.removeprefix("./") for m in members]
        # a tar of the package directory itself: strip a single common top folder
        top = {n.split("/", 1)[0] for n in names if n}
        strip = ""
        if (
            len(top) == 1
            and _safe_name(next(iter(top)))
            and all("/" in n or m.isdir() for n, m in zip(names, members, strict=True))
        ):
            strip = next(iter(top)) + "/"
        for m, name in zip(members, names, strict=True):
            if not _safe_name(name):
                pkg.problems.append(f"{name}: tar member path escapes the package")
                continue
            rel = name.removeprefix(strip) if strip else name
            if m.isdir():
                continue
            if m.issym() or m.islnk():
                pkg.problems.append(f"{name}: tar member is a link (to {m.linkname!r})")
                continue
            if not m.isfile():
                pkg.problems.append(f"{name}: tar member is a device, FIFO or other special file")
                continue
            if not rel or not _safe_name(rel):
                pkg.problems.append(f"{name}: tar member path escapes the package")
                continue
            total += m.size
            if total > max_bytes:
                raise BadInputError(f"{src}: package exceeds {max_bytes} bytes")
            f = tf.extractfile(m)
            if f is None:
                continue
            dest = pkg.root / rel
            dest.parent.mkdir(parents=True, exist_ok=True)
            with open(dest, "wb") as out:
                shutil.copyfileobj(f, out)
            pkg.files[rel] = m.size
