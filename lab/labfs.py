"""The one reader for the files of a lab, of an evidence pack, and of the documents
named on the command line (certificates, notes, keys, proofs, policies).

Any of them may have been replaced by someone with file access: a FIFO (an ordinary
``open`` blocks forever), a link to ``/dev/zero`` (an endless read), a socket, a
directory, or a file of many gigabytes. Every read here

* opens with ``O_NONBLOCK | O_CLOEXEC``, and ``O_NOFOLLOW`` unless the caller says
  the path came from the user (``follow=True``: a link given on the command line names
  the file they meant; a link inside a lab or a pack is refused);
* ``fstat``\\ s the descriptor it opened and refuses anything that is not a regular file,
  naming the path and what it is;
* reads at most a stated number of bytes and refuses a larger file.

Each refusal is one exception of the type the caller passes (``BadInputError``, exit 2,
for a file of a lab or an argument; ``TamperedError``, exit 4, where the surrounding code
treats a bad file as damage, as in an evidence pack). A missing file is
:class:`FileNotFoundError`, as is: callers say what that means. Writers are not here.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

from facelab.errors import BadInputError, FacelabError

__all__ = [
    "LOG_MAX_BYTES",
    "MAX_BYTES",
    "check_fd",
    "kind",
    "open_file",
    "open_regular",
    "read_bytes",
    "read_prefix",
    "read_text",
    "require_regular",
    "sha256",
]

MAX_BYTES = 16 << 20  # a document (JSON, TOML, a note, a key): larger is not one
LOG_MAX_BYTES = 1 << 34  # an append-only log or a hash store (16 GiB)

_FLAGS = os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC


def kind(mode: int) -> str:
    """What a file of mode ``mode`` is, in words (for messages)."""
    for test, name in (
        (stat.S_ISREG, "regular file"),
        (stat.S_ISDIR, "directory"),
        (stat.S_ISLNK, "symbolic link"),
        (stat.S_ISFIFO, "FIFO"),
        (stat.S_ISSOCK, "socket"),
        (stat.S_ISCHR, "character device"),
        (stat.S_ISBLK, "block device"),
    ):
        if test(mode):
            return name
    return "special file"


def open_regular(
    path: Path | str, *, follow: bool = False, error: type[FacelabError] = BadInputError
) -> int:
    """A descriptor of ``path`` opened for reading, if it is a regular file.

    Never blocks (a FIFO is opened non-blocking and then refused) and, unless
    ``follow``, never goes through a link. The caller closes the descriptor.

    Raises
    ------
    FileNotFoundError
        ``path`` does not exist.
    error
        ``path`` is a link (when not ``follow``), a FIFO, socket, device or directory,
        or cannot be opened.
    """
    try:
        fd = os.open(path, _FLAGS | (0 if follow else os.O_NOFOLLOW))
    except FileNotFoundError:
        raise
    except OSError as e:
        if e.errno == errno.ELOOP and not follow:
            raise error(f"{path}: a symbolic link, not a regular file") from e
        if e.errno == errno.ENXIO:  # a socket
            raise error(f"{path}: not a regular file (a socket)") from e
        raise error(f"{path}: unreadable ({e.strerror or e})") from e
    try:
        mode = os.fstat(fd).st_mode
    except OSError as e:
        os.close(fd)
        raise error(f"{path}: unreadable ({e.strerror or e})") from e
    if not stat.S_ISREG(mode):
        os.close(fd)
        raise error(f"{path}: not a regular file (a {kind(mode)})")
    return fd


def open_file(path: Path | str, *, follow: bool = False, error: type[FacelabError] = BadInputError):
    """:func:`open_regular` as a buffered binary file object (to stream a log by lines);
    the caller closes it."""
    return os.fdopen(open_regular(path, follow=follow, error=error), "rb")


def check_fd(fd: int, path: Path | str, *, error: type[FacelabError] = BadInputError) -> None:
    """Refuse a descriptor another call opened (a writer's ``O_RDWR | O_CREAT``, which
    does not block on a FIFO but whose reads would) unless it is of a regular file."""
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        raise error(f"{path}: not a regular file (a {kind(mode)})")


def _read_fd(fd: int, path, max_bytes: int, what: str, error: type[FacelabError]) -> bytes:
    parts, n = [], 0
    try:
        while n <= max_bytes:
            b = os.read(fd, min(1 << 24, max_bytes + 1 - n))
            if not b:
                break
            parts.append(b)
            n += len(b)
    except OSError as e:
        raise error(f"{path}: unreadable ({e.strerror or e})") from e
    except MemoryError as e:
        raise error(f"{path}: too large to read in this machine's memory") from e
    if n > max_bytes:
        raise error(f"{path}: over {max_bytes} bytes, not {what}")
    return b"".join(parts)


def read_bytes(
    path: Path | str,
    max_bytes: int = MAX_BYTES,
    *,
    follow: bool = False,
    what: str = "a file facelab reads",
    error: type[FacelabError] = BadInputError,
) -> bytes:
    """The bytes of the regular file ``path``, at most ``max_bytes`` of them.

    See :func:`open_regular` for what is refused; a larger file is ``error`` too.
    """
    fd = open_regular(path, follow=follow, error=error)
    try:
        return _read_fd(fd, path, max_bytes, what, error)
    finally:
        os.close(fd)


def sha256(
    path: Path | str,
    max_bytes: int = LOG_MAX_BYTES,
    *,
    what: str = "a file facelab hashes",
    error: type[FacelabError] = BadInputError,
) -> str:
    """SHA-256 (hex) of the regular file ``path``, read in 1 MiB blocks (never whole in
    memory; a model may be gigabytes), refused as :func:`read_bytes` refuses."""
    import hashlib

    fd = open_regular(path, error=error)
    h, n = hashlib.sha256(), 0
    try:
        while b := os.read(fd, 1 << 20):
            n += len(b)
            if n > max_bytes:
                raise error(f"{path}: over {max_bytes} bytes, not {what}")
            h.update(b)
    except OSError as e:
        raise error(f"{path}: unreadable ({e.strerror or e})") from e
    finally:
        os.close(fd)
    return h.hexdigest()


def read_text(
    path: Path | str,
    max_bytes: int = MAX_BYTES,
    *,
    follow: bool = False,
    what: str = "a text file",
    error: type[FacelabError] = BadInputError,
) -> str:
    """:func:`read_bytes` decoded as UTF-8 (anything else is ``error``)."""
    data = read_bytes(path, max_bytes, follow=follow, what=what, error=error)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise error(f"{path}: not {what} (not UTF-8)") from e


def read_prefix(
    path: Path | str, limit: int, *, error: type[FacelabError] = BadInputError
) -> tuple[bytes, int]:
    """At most ``limit`` bytes from the start of the regular file ``path`` and its size;
    ``(b"", 0)`` when it does not exist. Links are not followed."""
    try:
        fd = open_regular(path, error=error)
    except FileNotFoundError:
        return b"", 0
    try:
        size = os.fstat(fd).st_size
        parts, got = [], 0
        while got < min(limit, size):
            b = os.pread(fd, min(1 << 24, limit - got), got)
            if not b:
                break
            parts.append(b)
            got += len(b)
        return b"".join(parts), size
    except OSError as e:
        raise error(f"{path}: unreadable ({e.strerror or e})") from e
    finally:
        os.close(fd)


def require_regular(
    path: Path | str, *, missing_ok: bool = True, error: type[FacelabError] = BadInputError
) -> bool:
    """Whether ``path`` exists as a regular file (not through a link); anything else
    there is ``error``. For files another library opens by name (SQLite): check first,
    so that it never opens a FIFO or a device. False when missing and ``missing_ok``."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        if missing_ok:
            return False
        raise
    except OSError as e:
        raise error(f"{path}: unreadable ({e.strerror or e})") from e
    if not stat.S_ISREG(st.st_mode):
        raise error(f"{path}: not a regular file (a {kind(st.st_mode)})")
    return True
