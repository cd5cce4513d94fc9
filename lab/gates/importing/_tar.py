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
* **nothing outside the archive**: after the end-of-archive block only zero bytes;
  a ``.tar.gz`` is one gzip member (RFC 1952) without FEXTRA or FCOMMENT, with at most
  a plain FNAME, and nothing after its trailer (these bytes would reach no check and no
  signature, yet ``tar --ignore-zeros`` or ``gzip -d`` would unpack them).
* **names**: UTF-8, relative, no ``..``, no backslash or NUL, no duplicates, no file
  where a directory is needed; files are created with ``O_EXCL | O_NOFOLLOW``.

Source: POSIX.1-2017 ``pax`` (ustar and pax interchange formats), GNU tar manual
"Basic Tar Format".
"""

from __future__ import annotations

import os
import re
import stat
import zlib
from pathlib import Path, PurePosixPath

BLOCK = 512
_OCTAL = re.compile(rb"[0-7]+")
# pax records the gate reads past: each a number or a short name (what tar, bsdtar and
# tarfile write); a record that can carry free bytes (comment, xattrs, ACLs, linkpath on
# a file) is refused by the canonical-archive rule
_PAX_NUMBER = re.compile(r"-?[0-9]{1,20}(?:\.[0-9]{1,9})?")
_PAX_KEYS_IGNORED = {
    "atime": _PAX_NUMBER,
    "ctime": _PAX_NUMBER,
    "mtime": _PAX_NUMBER,
    "uid": _PAX_NUMBER,
    "gid": _PAX_NUMBER,
    "SCHILY.dev": _PAX_NUMBER,
    "SCHILY.ino": _PAX_NUMBER,
    "SCHILY.nlink": _PAX_NUMBER,
    "LIBARCHIVE.creationtime": _PAX_NUMBER,
    "uname": re.compile(r"[A-Za-z0-9_.][A-Za-z0-9_.@$+-]{0,31}"),
    "gname": re.compile(r"[A-Za-z0-9_.][A-Za-z0-9_.@$+-]{0,31}"),
}
# --- the canonical-archive rule (bytes outside the signed content, issue 15 round 3):
# a header field the gate does not use must be empty; a string field is NUL after its
# terminator; a numeric field is octal digits and at most two terminator bytes (space or
# NUL: "0000644\0" from tar and tarfile, "000644 \0" from bsdtar, "%06o\0 " checksums)
_NUMERIC = re.compile(rb" {0,11}[0-7]{1,12}[ \0]{0,2}")
_ZERO_NUMERIC = re.compile(rb"\0*| {0,7}0{1,8}[ \0]{0,2}")
_USER_NAME = re.compile(rb"(?:[A-Za-z0-9_.][A-Za-z0-9_.@$+-]{0,31})?")
_CANON = "the archive must be canonical"


class TarRefused(Exception):
    """The archive is malformed or over a bound; the message says which and where."""


def safe_name(name: str) -> bool:
    """A relative POSIX path without ``..``, backslash, NUL or an empty name."""
    if not name or "\\" in name or "\0" in name:
        return False
    p = PurePosixPath(name)
    return bool(p.parts) and not p.is_absolute() and ".." not in p.parts


# what gzip(1) and tarfile write: the archive's own name, without ".gz"
_GZ_NAME = re.compile(rb"[A-Za-z0-9][A-Za-z0-9._+-]{0,59}\.(?:tar|tgz)")
FTEXT, FHCRC, FEXTRA, FNAME, FCOMMENT = 1, 2, 4, 8, 16


class _Gzip:
    """One gzip member (RFC 1952), nothing else: the header's optional fields that carry
    bytes (FEXTRA, FCOMMENT) are refused, FNAME only when it is a plain file name (what
    ``gzip(1)`` and Python's ``tarfile`` write: up to 64 characters ending in ``.tar`` or
    ``.tgz``; it is read past, never stored), reserved flags refused; after the
    deflate stream, the CRC-32 and size must match and the file must end (a second
    member or trailing bytes would be bytes the signature does not cover that a
    multi-member reader such as ``gzip -d`` still unpacks)."""

    def __init__(self, f) -> None:
        self.f, self.raw_n, self.z = f, 0, None
        hdr = self._raw(10)
        if len(hdr) < 10 or hdr[:3] != b"\x1f\x8b\x08":
            raise TarRefused("gzip header: not a deflate gzip member")
        flags = hdr[3]
        if flags & 0xE0:
            raise TarRefused(f"gzip header: reserved flags set ({flags:#04x})")
        if flags & FEXTRA:
            raise TarRefused("gzip header: FEXTRA field refused (bytes outside the signature)")
        if flags & FCOMMENT:
            raise TarRefused("gzip header: FCOMMENT field refused (bytes outside the signature)")
        if flags & FNAME:
            name = bytearray()
            while (c := self._raw(1)) != b"\0":
                if not c or len(name) > 255:
                    raise TarRefused("gzip header: FNAME is not a terminated file name")
                name += c
            if not _GZ_NAME.fullmatch(bytes(name)):
                raise TarRefused(
                    f"gzip header: FNAME {bytes(name[:40])!r} is not a plain file name"
                )
        if flags & FHCRC:
            self._raw(2)
        self.z = zlib.decompressobj(-15)
        self.crc, self.size, self.buf, self.done = 0, 0, b"", False

    @property
    def n(self) -> int:
        """Compressed bytes the decompressor consumed so far (for the ratio bound)."""
        return self.raw_n - (len(self.z.unconsumed_tail) if self.z is not None else 0)

    def _raw(self, k: int) -> bytes:
        b = self.f.read(k)
        self.raw_n += len(b)
        return b

    def _finish(self) -> None:
        tail = self.z.unused_data
        while len(tail) < 8:
            more = self._raw(8 - len(tail))
            if not more:
                raise TarRefused("gzip trailer: truncated")
            tail += more
        crc, isize = int.from_bytes(tail[:4], "little"), int.from_bytes(tail[4:8], "little")
        if crc != self.crc or isize != self.size & 0xFFFFFFFF:
            raise TarRefused("gzip trailer: CRC-32 or size does not match the data")
        if tail[8:] or self._raw(1):
            raise TarRefused(
                "bytes after the gzip member (a second member or trailing data; "
                "outside the signature)"
            )
        self.done = True

    def read(self, k: int) -> bytes:
        while len(self.buf) < k and not self.done:
            if self.z.eof:
                self._finish()
                break
            chunk = self.z.unconsumed_tail or self._raw(1 << 16)
            if not chunk:
                raise TarRefused("gzip stream: truncated")
            out = self.z.decompress(chunk, max(k - len(self.buf), 1 << 16))
            self.crc = zlib.crc32(out, self.crc)
            self.size += len(out)
            self.buf += out
        got, self.buf = self.buf[:k], self.buf[k:]
        return got


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


def _cstring(field: bytes) -> bytes | None:
    """The string of a NUL-padded field, or None when a byte follows its terminator."""
    head, _nul, rest = field.partition(b"\0")
    return head if not rest.strip(b"\0") else None


def _canonical_header(header: bytes, where: str, typ: bytes, magic: bytes) -> None:
    """The canonical-archive rule for one 512-byte header (any type): every field the
    gate does not use is empty, every string field NUL after its terminator, every
    numeric field plain. Raises TarRefused naming the field and the rule."""

    def bad(what: str) -> TarRefused:
        return TarRefused(
            f"{where}: {what} ({_CANON}: header fields the gate does not "
            "use must be empty; bytes there are outside the signed content)"
        )

    for what, a, b in (
        ("mode", 100, 108),
        ("uid", 108, 116),
        ("gid", 116, 124),
        ("size", 124, 136),
        ("mtime", 136, 148),
        ("checksum", 148, 156),
    ):
        if not _NUMERIC.fullmatch(header[a:b]):
            raise bad(f"{what} field is not plain octal digits with a NUL or space end")
    if _cstring(header[0:100]) is None:
        raise bad("bytes after the name's NUL terminator")
    link = _cstring(header[157:257])
    if link is None:
        raise bad("bytes after the link name's NUL terminator")
    if link and typ not in (b"1", b"2"):
        raise bad(f"a link name ({len(link)} bytes) on a member that is not a link")
    v7 = magic == b"\0" * 8
    for what, a, b in (("user name", 265, 297), ("group name", 297, 329)):
        v = _cstring(header[a:b])
        if v is None or not _USER_NAME.fullmatch(v) or (v7 and v):
            raise bad(f"{what} field is not a plain user or group name")
    for what, a, b in (("devmajor", 329, 337), ("devminor", 337, 345)):
        if typ not in (b"3", b"4") and not _ZERO_NUMERIC.fullmatch(header[a:b]):
            raise bad(f"{what} field is not empty on a member that is not a device")
    if v7:  # GNU tar writes zero device numbers in v7 headers too
        if header[345:].strip(b"\0"):
            raise bad("bytes after the device numbers of a v7 header")
        return
    if magic == b"ustar  \0":  # GNU: atime, ctime, offset, sparse map, realsize
        if header[345:].strip(b"\0"):
            raise bad("GNU fields after devminor (times, sparse map, padding) are not empty")
        return
    if _cstring(header[345:500]) is None:
        raise bad("bytes after the name prefix's NUL terminator")
    if header[500:].strip(b"\0"):
        raise bad("the header's unused bytes 500-511 are not zero")


_EXT_MARKERS = (b"././@PaxHeader", b"././@LongLink", b"@PaxHeader", b"@LongLink")
# GNU tar "%d/PaxHeaders/%f" (older "%d/PaxHeaders.%p/%f"), bsdtar "%d/PaxHeader/%f"
_EXT_TEMPLATE = re.compile(rb"(?:(.*)/)?PaxHeaders?(?:\.[0-9]{1,10})?/(.*)", re.DOTALL)


def _names_agree(header, magic, name, override, ext_names, where) -> None:
    """The canonical-archive rule for name fields the gate reads past: the name field
    of a pax or GNU long-name header is a fixed marker (``././@PaxHeader``,
    ``././@LongLink``) or the tools' template naming the member that follows
    (``DIR/PaxHeaders/BASE``, possibly truncated); the ustar name (and prefix) of a member
    whose name comes from a pax ``path`` or a GNU long name is that name, possibly
    truncated, with non-ASCII characters possibly written as ``?`` (``tarfile``).
    Anything else would be bytes that no check and no signature covers."""
    full = name.encode("utf-8")
    full_n = full.removeprefix(b"./").rstrip(b"/")
    renders = (full + b"/", name.encode("ascii", "replace") + b"/")
    for off, field in ext_names:
        if field in _EXT_MARKERS:
            continue
        m = _EXT_TEMPLATE.fullmatch(field)
        cand = (m.group(1) + b"/" + m.group(2) if m.group(1) else m.group(2)) if m else None
        cand = cand.removeprefix(b"./") if cand is not None else None
        if cand is None or not cand or not (full_n + b"/").startswith(cand):
            raise TarRefused(
                f"{where}: the name field of the extended header at byte {off} "
                f"({field[:60]!r}) is neither a marker nor the tools' name for this member "
                f"({_CANON}: bytes outside the signed content)"
            )
    if override is None:
        return
    base = header[0:100].split(b"\0", 1)[0]
    prefix = header[345:500].split(b"\0", 1)[0] if magic == b"ustar\x0000" else b""
    field = prefix + b"/" + base if prefix else base
    if field and not any(r.startswith(field) for r in renders):
        raise TarRefused(
            f"{where}: the header's own name field ({field[:60]!r}) is not the member's "
            f"name from its extended header ({_CANON}: bytes outside the signed content)"
        )


def _zero_padding(pad: bytes, offset: int, what: str) -> None:
    """Block padding after a member's data must be zero bytes (canonical-archive rule)."""
    if pad.strip(b"\0"):
        k = len(pad) - len(pad.lstrip(b"\0"))
        raise TarRefused(
            f"{what}: the block padding after its data holds non-zero bytes "
            f"(at byte {offset + k}; {_CANON}: padding must be zero, bytes there are "
            "outside the signed content)"
        )


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
        if k in out:
            raise TarRefused(f"pax header at byte {offset}: key {k[:40]!r} appears twice")
        if k in ("path", "size", "linkpath"):
            out[k] = v
        elif k in _PAX_KEYS_IGNORED:
            if not _PAX_KEYS_IGNORED[k].fullmatch(v):
                raise TarRefused(
                    f"pax header at byte {offset}: {k} value {v[:40]!r} is not a plain "
                    f"number or name ({_CANON}: a record the gate reads past holds no "
                    "free bytes)"
                )
            out[k] = v
        else:
            raise TarRefused(
                f"pax header at byte {offset}: key {k[:60]!r} is not supported ({_CANON}: "
                "records that carry free bytes, such as comment or extended attributes, "
                "are outside the signed content; with bsdtar use --no-xattrs)"
            )
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
            counting = stream = _Gzip(raw)
        else:
            raw.seek(0)
            stream = raw
        return _extract(stream, counting, dest, max_members, max_member, max_total, max_ratio)
    except (OSError, EOFError, zlib.error) as e:
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
    longlink: str | None = None
    ext_names: list[tuple[int, bytes]] = []  # (offset, name field) of x/L/K headers
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
            _end(take, stream, read)
            break
        stored = _octal(header[148:156], "checksum", offset)
        unsigned = sum(header[:148]) + 256 + sum(header[156:])
        signed = 256 + sum(b - 256 if b >= 128 else b for b in header[:148] + header[156:])
        if stored not in (unsigned, signed):
            raise TarRefused(f"header at byte {offset}: checksum mismatch")
        magic = header[257:265]
        if magic not in (b"ustar\x0000", b"ustar  \x00", b"\0" * 8):
            raise TarRefused(f"header at byte {offset}: unknown magic {magic!r}")
        size = _octal(header[124:136], "size", offset)
        for name_, a, b in (("mode", 100, 108), ("uid", 108, 116), ("gid", 116, 124)):
            _octal(header[a:b], name_, offset)
        _octal(header[136:148], "mtime", offset)
        typ = header[156:157]
        if typ in (b"x", b"L", b"K"):
            _canonical_header(header, f"extended header at byte {offset}", typ, magic)
            ext_names.append((offset, header[0:100].split(b"\0", 1)[0]))
            if size > 1 << 16:
                raise TarRefused(f"header at byte {offset}: extended header of {size} bytes")
            block = take(-(-size // BLOCK) * BLOCK)
            data = block[:size]
            _zero_padding(block[size:], offset + BLOCK + size, f"extended header at byte {offset}")
            if typ == b"x":
                pax = _pax(data, offset)
            else:
                got = _cstring(data)
                if got is None:
                    raise TarRefused(
                        f"long name at byte {offset}: bytes after its NUL terminator ({_CANON})"
                    )
                try:
                    text = got.decode("utf-8")
                except UnicodeDecodeError as e:
                    raise TarRefused(f"long name at byte {offset}: not UTF-8") from e
                if typ == b"L":
                    longname = text
                else:
                    longlink = text
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
        has_linkpath = "linkpath" in pax or longlink is not None
        override = pax.get("path", longname)
        pax, longname, longlink = {}, None, None
        padded = -(-size // BLOCK) * BLOCK
        kind = {b"0": "file", b"\0": "file", b"7": "file", b"5": "dir"}.get(typ)
        link = {b"1": "hard link", b"2": "symbolic link"}.get(typ)
        special = {b"3": "character device", b"4": "block device", b"6": "FIFO"}.get(typ)
        if kind is None and link is None and special is None:
            raise TarRefused(f"header at byte {offset}: member type {typ!r} is not supported")
        where = f"{name[:200]!r} (header at byte {offset})" if name else f"header at byte {offset}"
        _canonical_header(header, where, typ, magic)
        if name is not None:
            _names_agree(header, magic, name, override, ext_names, where)
        ext_names = []
        if kind is not None and has_linkpath:
            raise TarRefused(
                f"{where}: a link target (pax linkpath or GNU long link) on a member that "
                f"is not a link ({_CANON}: bytes outside the signed content)"
            )
        if kind == "dir" and size:
            raise TarRefused(
                f"{where}: a directory member carries {size} bytes of data ({_CANON}: "
                "bytes outside the signed content)"
            )
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
            _zero_padding(
                take(padded - size), read - (padded - size), f"{rel} (header at byte {offset})"
            )
        files[rel] = size
    problems += empty_dirs(dirs, files)
    return files, problems


def empty_dirs(dirs, files) -> list[str]:
    """Problems for directories that hold no file at any depth: the signature covers
    files only, so such a directory (and its name, which can carry bytes) is unsigned."""
    full = set()
    for rel in files:
        parts = PurePosixPath(rel).parts
        full.update("/".join(parts[:i]) for i in range(1, len(parts)))
    return [
        f"{d}/: empty directory (the signature covers files only; refused)"
        for d in sorted(set(dirs) - full)
    ]


def _end(take, stream, at: int) -> None:
    """After the first zero block: the rest of the stream (the second end block and the
    record padding) must be zero bytes. A member after the end marker is what
    ``tar --ignore-zeros`` or ``tarfile(ignore_zeros=True)`` would still unpack: bytes
    outside the signature, refused."""
    pos = at
    while True:
        b = stream.read(1 << 16)
        if not b:
            return
        if b.strip(b"\0"):
            k = pos + len(b) - len(b.lstrip(b"\0"))
            raise TarRefused(f"data after the end-of-archive marker (byte {k})")
        pos += len(b)
        if pos - at > 1 << 24:
            raise TarRefused("more than 16 MiB of padding after the end-of-archive marker")


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
