"""Read the entries of a log, fast, for the components that look things up in it.

``entries(audit_dir, needle)`` parses only the complete lines that contain ``needle``
(a byte string that every wanted entry holds, such as ``b'"action":"vault.'``), so a
lookup over a long log costs a scan of its bytes and the JSON of a few lines. It reads
without verifying: callers that decide anything from the log run where the log has
been verified (a writer verifies it when it opens). Lines that are not audit entries
(``entry_of``) are skipped: a forged ``null`` or ``[]`` line, or one nested past the
parser's recursion limit, is for ``audit verify`` to report, never a traceback here
(red team 14e, c04 and c05).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

from facelab import labfs
from facelab.audit.log import ENTRIES

_STR_FIELDS = ("action", "actor", "decision", "object", "policy", "role", "tenant", "time")


def entry_of(raw: bytes) -> dict | None:
    """The entry a line holds, or None when it is not one: not JSON, not an object, a
    field of the wrong type (the text fields strings, ``seq`` an integer, ``details`` an
    object). Never raises."""
    try:
        e = json.loads(raw)
    except (ValueError, RecursionError):
        return None
    if not isinstance(e, dict):
        return None
    if any(not isinstance(e.get(k, ""), str) for k in _STR_FIELDS):
        return None
    if not isinstance(e.get("details", {}), dict):
        return None
    seq = e.get("seq", 0)
    if not isinstance(seq, int) or isinstance(seq, bool):
        return None
    return e


def entries(audit_dir: Path | str, needle: bytes = b"") -> Iterator[dict]:
    """The parsed entries (in log order) whose line contains ``needle``; nothing when
    the log does not exist."""
    try:
        f = labfs.open_file(Path(audit_dir) / ENTRIES)
    except FileNotFoundError:
        return
    with f:
        for raw in f:
            if not raw.endswith(b"\n") or needle not in raw:
                continue
            e = entry_of(raw)
            if e is not None:
                yield e
