"""`facelab audit show`: filter the log's entries by tenant, action and time."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from facelab import labfs
from facelab.audit.log import ENTRIES
from facelab.audit.read import entry_of
from facelab.errors import BadInputError


def _time(value: str | None, name: str) -> str | None:
    """Normalise an ISO 8601 time to the log's form (UTC, microseconds, 'Z')."""
    if value is None:
        return None
    try:
        dt = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as e:
        raise BadInputError(f"--{name} {value!r} is not an ISO 8601 time") from e
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def filter_entries(
    audit_dir: Path | str,
    *,
    tenant: str | None = None,
    action: str | None = None,
    since: str | None = None,
    until: str | None = None,
) -> list[dict]:
    lo, hi = _time(since, "since"), _time(until, "until")
    out = []
    with labfs.open_file(Path(audit_dir) / ENTRIES) as f:
        for raw in f:
            if not raw.endswith(b"\n"):
                break  # a torn tail is not an entry; `audit verify` reports it
            e = entry_of(raw)
            if e is None:  # not an entry: `audit verify` reports it
                continue
            if tenant is not None and e.get("tenant") != tenant:
                continue
            if action is not None:
                a = e.get("action", "")
                if action.endswith("*") and not a.startswith(action[:-1]):
                    continue
                if not action.endswith("*") and a != action:
                    continue
            t = e.get("time", "")
            if (lo is not None and t < lo) or (hi is not None and t >= hi):
                continue
            out.append(e)
    return out


def format_table(rows: list[dict]) -> str:
    cols = ("seq", "time", "actor", "role", "tenant", "action", "decision", "object")
    cells = [[str(r.get(c, ""))[:48] for c in cols] for r in rows]
    widths = [max([len(c), *(len(x[i]) for x in cells)]) for i, c in enumerate(cols)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(cols, widths, strict=True))]
    lines += ["  ".join(x.ljust(w) for x, w in zip(row, widths, strict=True)) for row in cells]
    lines.append(f"({len(rows)} entries)")
    return "\n".join(lines)
