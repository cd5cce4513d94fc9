"""A tar reader for hostile archives: every header validated before anything loops on
it, every count and size bounded while streaming (runs inside ``facelab.confine``).

Why not ``tarfile``: CPython's reader trusts a header's size field. A base-256 size that
is negative makes ``getmembers()`` loop forever on the Python 3.11.7 used here
(CVE-2025-8194, issue 15 failure 2), and a gzip-compressed archive is decompressed as
far as the reader asks. Here:

* **headers**: the checksum must be right; numeric fields must be plain octal (a
  base-256 field, the only way to write a negative or huge number, is refused); the
  magic must be POSIX ``ustar``, GNU ``ustar  `` or none (v7); member types are regular
  files, directories, pax extended headers (``path`` and ``size`` honoured, GNU sparse
  keys and global headers refused) and GNU long names; links, devices and FIFOs are
  listed as problems and never written; anything else is refused.
* **bounds**: members (``max_members``), bytes of one member (``max_member``), bytes of
  all members (``max_total``), bytes read from the stream (headers included), and for
  a ``.tar.gz`` the decompression ratio (``max_ratio``, checked once 1 MiB came out):
  the stream stops at the first breach, so a 4 GiB gzip bomb costs what its first
  megabytes cost.
* **names**: UTF-8, relative, no ``..``, no backslash or NUL, no duplicates, no file
  where a directory is needed; files are created with ``O_EXCL | O_NOFOLLOW``.

Source: POSIX.1-2017 ``pax`` (ustar and pax interchange formats), GNU tar manual
"Basic Tar Format".
"""

from __future__ import annotations

import gzip
import os
import re
import stat
import zlib
from pathlib import Path, PurePosixPath

BLOCK = 512
_OCTAL = re.compile(rb"[0-7]+")
_PAX_KEYS_IGNORED = re.compile(
    r"(atime|ctime|mtime|uid|gid|uname|gname|comment|charset|hdrcharset|linkpath"
    r"|SCHILY\.(?!.*sparse).*|LIBARCHIVE\.(?!.*sparse).*)\Z"
)


class TarRefused(Exception):
    """The archive is malformed or over a bound; the message says which and where."""


def safe_name(name: str) -> bool:
    """A relative POSIX path without ``..``, backslash, NUL or an empty name."""
    if not name or "\\" in name or "\0" in name:
        return False
    p = PurePosixPath(name)
    return bool(p.parts) and not p.is_absolute() and ".." not in p.parts


class _Counting:
    """The compressed file, counting what the decompressor consumed."""

    def __init__(self, f) -> None:
        self.f, self.n = f, 0

    def read(self, k: int = -1) -> bytes:
        b = self.f.read(k)
        self.n += len(b)
        return b

    def readable(self) -> bool:
        return True


def _octal(field: bytes, what: str, offset: int) -> int:
    if field[:1] and field[0] & 0x80:
        raise TarRefused(
            f"header at byte {offset}: base-256 {what} field (a negative or huge number)"
        )
    v = field.split(b"\0", 1)[0].strip(b" ")
    if not v:
        return 0
    if not _OCTAL.fullmatch(v):
        raise TarRefused(f"header at byte {offset}: {what} field is not octal ({v[:12]!r})")
    return int(v, 8)


def _read_exact(f, n: int, offset: int) -> bytes:
    out = bytearray()
    while len(out) < n:
        b = f.read(n - len(out))
        if not b:
            raise TarRefused(f"truncated archive at byte {offset + len(out)}")
        out += b
    return bytes(out)


def _pax(data: bytes, offset: int) -> dict[str, str]:
    out: dict[str, str] = {}
    pos = 0
    while pos < len(data):
        if data[pos:].strip(b"\0") == b"":
            break
        sp = data.find(b" ", pos, pos + 20)
        if sp < 0 or not data[pos:sp].isdigit():
            raise TarRefused(f"pax header at byte {offset}: malformed record")
        length = int(data[pos:sp])
        rec = data[pos : pos + length]
        if length <= sp - pos + 1 or len(rec) != length or not rec.endswith(b"\n"):
            raise TarRefused(f"pax header at byte {offset}: malformed record length")
        key, eq, value = rec[sp - pos + 1 : -1].partition(b"=")
        if not eq:
            raise TarRefused(f"pax header at byte {offset}: record without '='")
        try:
            k, v = key.decode("utf-8"), value.decode("utf-8")
        except UnicodeDecodeError as e:
            raise TarRefused(f"pax header at byte {offset}: not UTF-8") from e
        if k in ("path", "size"):
            out[k] = v
        elif not _PAX_KEYS_IGNORED.match(k):
            raise TarRefused(f"pax header at byte {offset}: key {k!r} is not supported")
        pos += length
    if "size" in out and not (out["size"].isdigit() and len(out["size"]) <= 15):
        raise TarRefused(f"pax header at byte {offset}: size {out['size'][:20]!r} is not a number")
    return out


def is_tar_or_gzip(path: Path) -> bool:
    """A cheap look at the first block (no parsing): gzip magic, or a tar header whose
    checksum field is octal. The confined reader decides the rest."""
    with open(path, "rb") as f:
        head = f.read(BLOCK)
    if head[:2] == b"\x1f\x8b":
        return True
    return len(head) == BLOCK and (head[257:262] == b"ustar" or bool(_OCTAL.match(head[148:155])))


def extract(
    src: Path,
    dest: Path,
    *,
    max_members: int,
    max_member: int,
    max_total: int,
    max_ratio: float,
) -> tuple[dict[str, int], list[str]]:
    """Extract the tar (or gzip-compressed tar) ``src`` into the empty directory
    ``dest``. Returns ({relative path: size} of the files written, problems: members
    refused but skipped: links, devices, names escaping the package).

    Raises
    ------
    TarRefused
        Malformed headers, a bound breached, a duplicate or conflicting name.
    """
    raw = open(src, "rb")  # noqa: SIM115 - closed below
    try:
        counting = None
        if raw.read(2) == b"\x1f\x8b":
            raw.seek(0)
            counting = _Counting(raw)
            stream = gzip.GzipFile(fileobj=counting, mode="rb")
        else:
            raw.seek(0)
            stream = raw
        return _extract(stream, counting, dest, max_members, max_member, max_total, max_ratio)
    except (OSError, EOFError, zlib.error, gzip.BadGzipFile) as e:
        raise TarRefused(f"the compressed stream is corrupt ({e.__class__.__name__})") from e
    finally:
        raw.close()


def _extract(stream, counting, dest, max_members, max_member, max_total, max_ratio):
    files: dict[str, int] = {}
    dirs: set[str] = set()
    problems: list[str] = []
    read = 0  # bytes out of the (decompressed) stream
    total = 0
    members = 0
    pax: dict[str, str] = {}
    longname: str | None = None
    stream_cap = max_total + (max_members * 4 + 16) * BLOCK

    def take(n: int) -> bytes:
        nonlocal read
        if read + n > stream_cap:
            raise TarRefused(f"more than {stream_cap} bytes in the archive stream")
        b = _read_exact(stream, n, read)
        read += n
        if counting is not None and read > 1 << 20 and read > max_ratio * max(counting.n, 1):
            raise TarRefused(
                f"decompression ratio over {max_ratio:g} ({read} bytes from {counting.n})"
            )
        return b

    while True:
        offset = read
        try:
            header = take(BLOCK)
        except TarRefused as e:
            if "truncated" in str(e) and offset > 0:
                raise TarRefused(f"archive ends without its end-of-archive blocks ({e})") from e
            raise
        if header == b"\0" * BLOCK:
            break
        stored = _octal(header[148:156], "checksum", offset)
        unsigned = sum(header[:148]) + 256 + sum(header[156:])
        signed = 256 + sum(b - 256 if b >= 128 else b for b in header[:148] + header[156:])
        if stored not in (unsigned, signed):
            raise TarRefused(f"header at byte {offset}: checksum mismatch")
        magic = header[257:265]
        if magic not in (b"ustar\x0000", b"ustar  \x00") and magic[:6] != b"\0" * 6:
            raise TarRefused(f"header at byte {offset}: unknown magic {magic!r}")
        size = _octal(header[124:136], "size", offset)
        for name_, a, b in (("mode", 100, 108), ("uid", 108, 116), ("gid", 116, 124)):
            _octal(header[a:b], name_, offset)
        _octal(header[136:148], "mtime", offset)
        typ = header[156:157]
        if typ in (b"x", b"L", b"K"):
            if size > 1 << 16:
                raise TarRefused(f"header at byte {offset}: extended header of {size} bytes")
            data = take(-(-size // BLOCK) * BLOCK)[:size]
            if typ == b"x":
                pax = _pax(data, offset)
            elif typ == b"L":
                try:
                    longname = data.split(b"\0", 1)[0].decode("utf-8")
                except UnicodeDecodeError as e:
                    raise TarRefused(f"long name at byte {offset}: not UTF-8") from e
            continue
        if typ == b"g":
            raise TarRefused(f"header at byte {offset}: pax global header refused")
        if "size" in pax:
            size = int(pax["size"])
        members += 1
        if members > max_members:
            raise TarRefused(f"more than {max_members} members")
        if size > max_member:
            raise TarRefused(f"member at byte {offset}: {size} bytes (limit {max_member})")
        try:
            if "path" in pax:
                name = pax["path"]
            elif longname is not None:
                name = longname
            else:
                base = header[0:100].split(b"\0", 1)[0].decode("utf-8")
                prefix = header[345:500].split(b"\0", 1)[0].decode("utf-8")
                name = f"{prefix}/{base}" if prefix and magic == b"ustar\x0000" else base
        except UnicodeDecodeError:
            name = None
        pax, longname = {}, None
        padded = -(-size // BLOCK) * BLOCK
        kind = {b"0": "file", b"\0": "file", b"7": "file", b"5": "dir"}.get(typ)
        link = {b"1": "hard link", b"2": "symbolic link"}.get(typ)
        special = {b"3": "character device", b"4": "block device", b"6": "FIFO"}.get(typ)
        if kind is None and link is None and special is None:
            raise TarRefused(f"header at byte {offset}: member type {typ!r} is not supported")
        if name is None:
            problems.append(f"member at byte {offset}: name is not UTF-8")
            _skip(take, padded)
            continue
        name = name.removeprefix("./").rstrip("/") if name not in ("./", ".") else ""
        if name == "" and kind == "dir":
            continue
        if link is not None:
            target = header[157:257].split(b"\0", 1)[0].decode("utf-8", "replace")
            problems.append(f"{name}: tar member is a {link} (to {target!r})")
            _skip(take, padded)
            continue
        if special is not None:
            problems.append(f"{name}: tar member is a {special}")
            _skip(take, padded)
            continue
        if not safe_name(name):
            problems.append(f"{name}: tar member path escapes the package")
            _skip(take, padded)
            continue
        rel = PurePosixPath(name).as_posix()
        if rel in files or (rel in dirs and kind == "file"):
            raise TarRefused(f"{rel}: member appears twice")
        parts = PurePosixPath(rel).parts
        for i in range(1, len(parts) + (kind == "dir")):
            d = "/".join(parts[:i])
            if d in files:
                raise TarRefused(f"{rel}: {d} is a file and a directory")
            if d not in dirs:
                _mkdir(dest / d)
                dirs.add(d)
        if kind == "dir":
            _skip(take, padded)
            continue
        total += size
        if total > max_total:
            raise TarRefused(f"members hold more than {max_total} bytes")
        fd = os.open(dest / rel, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
        try:
            left = size
            while left:
                chunk = take(min(left, 1 << 20))
                _write_all(fd, chunk)
                left -= len(chunk)
        finally:
            os.close(fd)
        if padded > size:
            take(padded - size)
        files[rel] = size
    return files, problems


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _skip(take, n: int) -> None:
    while n:
        k = min(n, 1 << 20)
        take(k)
        n -= k


def _mkdir(p: Path) -> None:
    try:
        os.mkdir(p, 0o755)
    except FileExistsError:
        if not stat.S_ISDIR(os.lstat(p).st_mode):
            raise TarRefused(f"{p.name}: not a directory") from None
