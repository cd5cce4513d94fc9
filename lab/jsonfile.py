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

from facelab.errors import BadInputError

MAX_BYTES = 16 << 20  # 16 MiB: larger than any JSON facelab writes for a person to read


def read_json(
    path: Path | str,
    *,
    what: str = "JSON",
    expect: type | tuple[type, ...] | None = dict,
    max_bytes: int = MAX_BYTES,
) -> Any:
    """The parsed document of ``path`` (at most ``max_bytes`` bytes, UTF-8).

    ``expect`` is the type the top level must have (None: any). Raises
    :class:`FileNotFoundError` when the file does not exist (callers say what that
    means) and :class:`BadInputError` for every other problem.
    """
    path = Path(path)
    try:
        with open(path, "rb") as f:
            data = f.read(max_bytes + 1)
    except FileNotFoundError:
        raise
    except OSError as e:
        raise BadInputError(f"{path}: unreadable ({e.strerror or e})") from e
    if len(data) > max_bytes:
        raise BadInputError(f"{path}: over {max_bytes} bytes, not {what}")
    try:
        doc = json.loads(data.decode("utf-8"))
    except UnicodeDecodeError as e:
        raise BadInputError(f"{path}: not {what} (not UTF-8)") from e
    except RecursionError as e:
        raise BadInputError(f"{path}: not {what} (nested too deeply)") from e
    except ValueError as e:
        raise BadInputError(f"{path}: not {what} ({str(e)[:80]})") from e
    if expect is not None and not isinstance(doc, expect):
        raise BadInputError(f"{path}: not {what} (a JSON {type(doc).__name__} at the top)")
    return doc
