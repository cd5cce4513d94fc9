"""Read the entries of a log, fast, for the components that look things up in it.

``entries(audit_dir, needle)`` parses only the complete lines that contain ``needle``
(a byte string that every wanted entry holds, such as ``b'"action":"vault.'``), so a
lookup over a long log costs a scan of its bytes and the JSON of a few lines. It reads
without verifying: callers that decide anything from the log run where the log has
been verified (a writer verifies it when it opens). Lines that are not JSON objects are
skipped.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

from facelab.audit.log import ENTRIES


def entries(audit_dir: Path | str, needle: bytes = b"") -> Iterator[dict]:
    """The parsed entries (in log order) whose line contains ``needle``; nothing when
    the log does not exist."""
    try:
        f = open(Path(audit_dir) / ENTRIES, "rb")  # noqa: SIM115
    except FileNotFoundError:
        return
    with f:
        for raw in f:
            if not raw.endswith(b"\n") or needle not in raw:
                continue
            try:
                e = json.loads(raw)
            except ValueError:
                continue
            if isinstance(e, dict):
                yield e
