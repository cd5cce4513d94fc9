"""One reader for every JSON file facelab reads that it did not just write itself (lab
metadata, the key store's header, certificates, proofs, overrides, job specs, witness
state): bounded, strict and fail-closed.

A file that is missing, too large (``/dev/zero`` included), not UTF-8, not JSON, nested
past the parser's recursion limit, or not of the expected type is one
:class:`~facelab.errors.BadInputError` naming the file and the reason (exit 2), never a
traceback.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from facelab import labfs
from facelab.errors import BadInputError

MAX_BYTES = labfs.MAX_BYTES  # 16 MiB: larger than any JSON facelab writes for a person to read


def _no_duplicates(pairs: list[tuple[str, object]]) -> dict:
    out: dict = {}
    for k, v in pairs:
        if k in out:
            raise ValueError(f"duplicate key {k[:40]!r} (a second value no parser agrees on)")
        out[k] = v
    return out


def _no_constant(name: str):
    raise ValueError(f"{name} is not a JSON number (RFC 8259 section 6)")


def strict_loads(text: str | bytes) -> Any:
    """``json.loads`` of RFC 8259 JSON only: a duplicate key in any object (RFC 8259
    section 4: "names SHOULD be unique"; parsers disagree on which value wins, so a
    signed document with two values of one key means one thing to the verifier and
    another to its reader) and Python's extensions ``NaN``, ``Infinity``,
    ``-Infinity`` raise ValueError. ``bytes`` must be UTF-8 (UnicodeDecodeError)."""
    if isinstance(text, bytes | bytearray):
        text = bytes(text).decode("utf-8")
    return json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_no_constant)


def read_regular(
    path: Path | str, *, max_bytes: int = MAX_BYTES, what: str = "a file", follow: bool = True
) -> bytes:
    """The bytes of ``path`` if it is a regular file of at most ``max_bytes`` bytes
    (:func:`facelab.labfs.read_bytes`: a FIFO, socket, device or directory is one
    :class:`BadInputError`, never a hang or an endless read). ``follow``: a link given by
    the user is followed (it names the file they meant); a file of a lab passes False.
    :class:`FileNotFoundError` is raised as is.
    """
    return labfs.read_bytes(path, max_bytes, follow=follow, what=what)


def read_json(
    path: Path | str,
    *,
    what: str = "JSON",
    expect: type | tuple[type, ...] | None = dict,
    max_bytes: int = MAX_BYTES,
    follow: bool = True,
) -> Any:
    """The parsed document of ``path`` (at most ``max_bytes`` bytes, UTF-8).

    ``expect`` is the type the top level must have (None: any). Raises
    :class:`FileNotFoundError` when the file does not exist (callers say what that
    means) and :class:`BadInputError` for every other problem. ``follow``: as in
    :func:`read_regular`.
    """
    path = Path(path)
    data = read_regular(path, max_bytes=max_bytes, what=what, follow=follow)
    try:
        doc = strict_loads(data.decode("utf-8"))
    except UnicodeDecodeError as e:
        raise BadInputError(f"{path}: not {what} (not UTF-8)") from e
    except RecursionError as e:
        raise BadInputError(f"{path}: not {what} (nested too deeply)") from e
    except ValueError as e:
        raise BadInputError(f"{path}: not {what} ({str(e)[:80]})") from e
    if expect is not None and not isinstance(doc, expect):
        raise BadInputError(f"{path}: not {what} (a JSON {type(doc).__name__} at the top)")
    return doc
