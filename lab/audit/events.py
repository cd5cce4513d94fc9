"""Audit events and their canonical bytes (the Merkle leaves).

An entry is one line of canonical JSON: keys sorted, no whitespace, UTF-8, integers and
strings only in the fixed fields, no NaN. The leaf data of entry ``seq`` is exactly that
line without its newline::

    {"action":"lab.init","actor":"alice","decision":"ok","details":{...},
     "object":"sha256:...","policy":"sha256:...","role":"operator","seq":0,
     "tenant":"","time":"2026-11-23T16:30:00.123456Z"}

``action`` names what happened (``component.verb``), ``object`` is a digest of what it
happened to, ``decision`` is the outcome (``ok``, ``refused``, ``released``, ...), and
``policy`` is the SHA-256 of the policy file in force.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from facelab.errors import AuditSchemaError

FIELDS = (
    "action",
    "actor",
    "decision",
    "details",
    "object",
    "policy",
    "role",
    "seq",
    "tenant",
    "time",
)
_ACTION = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+$")


# The schema every entry obeys (issue 14: audit entries never hold tenant data). Entries
# carry digests, counts, decisions, short names and pseudonymous ids; a value that could
# hold a face, a name list or a file (a long string, a long list, deep nesting) is refused
# when the Event is built, before anything is written.
MAX_STR = 512  # characters of one string value
MAX_LIST = 256  # items of one list
MAX_KEYS = 64  # keys of one mapping
MAX_DEPTH = 4  # nesting of details
MAX_DETAILS = 16 * 1024  # bytes of the canonical JSON of details
_TENANT = re.compile(r"^(|[a-z][a-z0-9_-]{0,31})$")
_FIELD_MAX = {"actor": 128, "role": 32, "object": 200, "decision": 40}


def escape_text(text: str, n: int = 300) -> str:
    """Text from outside (a job's message, a file name, a package's finding) as an entry
    may hold it: control and other non-printable characters escaped (``\\x1b``), at most
    ``n`` characters, so it passes the schema and cannot forge a line on a terminal."""
    out = "".join(c if c.isprintable() else ascii(c)[1:-1] for c in str(text))
    return out if len(out) <= n else out[: n - 1] + "…"


def _printable(s: str) -> bool:
    return not any(ord(c) < 0x20 or 0x7F <= ord(c) < 0xA0 for c in s)


def _check_value(v: Any, where: str, depth: int) -> None:
    if v is None or isinstance(v, bool):
        return
    if isinstance(v, int):
        if not -(2**63) <= v < 2**63:
            raise AuditSchemaError(f"audit detail {where}: integer out of range")
        return
    if isinstance(v, float):
        if not math.isfinite(v):
            raise AuditSchemaError(f"audit detail {where}: not a finite number")
        return
    if isinstance(v, str):
        if len(v) > MAX_STR or not _printable(v):
            raise AuditSchemaError(
                f"audit detail {where}: strings are at most {MAX_STR} printable characters"
            )
        return
    if depth >= MAX_DEPTH:
        raise AuditSchemaError(f"audit detail {where}: nested deeper than {MAX_DEPTH}")
    if isinstance(v, (list, tuple)):
        if len(v) > MAX_LIST:
            raise AuditSchemaError(f"audit detail {where}: a list of over {MAX_LIST} items")
        for i, x in enumerate(v):
            _check_value(x, f"{where}[{i}]", depth + 1)
        return
    if isinstance(v, Mapping):
        if len(v) > MAX_KEYS:
            raise AuditSchemaError(f"audit detail {where}: over {MAX_KEYS} keys")
        for k, x in v.items():
            if not isinstance(k, str) or not 0 < len(k) <= 64 or not _printable(k):
                raise AuditSchemaError(f"audit detail {where}: keys are short strings")
            _check_value(x, f"{where}.{k}", depth + 1)
        return
    raise AuditSchemaError(f"audit detail {where}: {type(v).__name__} is not allowed")


@dataclass(frozen=True)
class Event:
    """What a component asks the log to record; checked against the schema when built.

    Raises ``AuditSchemaError`` (a ``ValueError``) for a field of the wrong type or
    length, a tenant that is not a tenant id, or details that are not small: strings of
    at most 512 printable characters, lists of at most 256 items, mappings of at most 64
    keys, nesting at most 4 deep, finite numbers, 16 KiB of canonical JSON in all.
    """

    action: str
    actor: str
    role: str = "operator"
    tenant: str = ""
    object: str = ""
    decision: str = "ok"
    details: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        if (
            not isinstance(self.action, str)
            or len(self.action) > 64
            or not _ACTION.match(self.action)
        ):
            raise AuditSchemaError(f"audit action {self.action!r} is not 'component.verb'")
        for name in ("actor", "role", "tenant", "object", "decision"):
            if not isinstance(getattr(self, name), str):
                raise AuditSchemaError(f"audit field {name} must be a string")
        for name, limit in _FIELD_MAX.items():
            v = getattr(self, name)
            if len(v) > limit or not _printable(v):
                raise AuditSchemaError(f"audit field {name}: at most {limit} printable characters")
        if not self.actor:
            raise AuditSchemaError("audit events must name an actor")
        if not _TENANT.match(self.tenant):
            raise AuditSchemaError(f"audit field tenant {self.tenant[:40]!r} is not a tenant id")
        if not isinstance(self.details, Mapping):
            raise AuditSchemaError("audit details must be a mapping")
        _check_value(self.details, "details", 0)
        try:
            size = len(canonical({"details": dict(self.details)}))
        except (TypeError, ValueError) as e:
            raise AuditSchemaError(f"audit details are not canonical JSON ({e})") from e
        if size > MAX_DETAILS:
            raise AuditSchemaError(f"audit details are {size} bytes, over {MAX_DETAILS}")


def canonical(obj: Mapping[str, Any]) -> bytes:
    return json.dumps(
        obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode("utf-8")


def entry_bytes(event: Event, seq: int, time: str, policy: str) -> bytes:
    """The canonical line (without newline) of ``event`` recorded as entry ``seq``."""
    return canonical(
        {
            "action": event.action,
            "actor": event.actor,
            "decision": event.decision,
            "details": dict(event.details),
            "object": event.object,
            "policy": policy,
            "role": event.role,
            "seq": seq,
            "tenant": event.tenant,
            "time": time,
        }
    )


def parse_entry(line: bytes) -> dict[str, Any]:
    """Parse and check one entry line; raise ValueError naming what is wrong."""
    try:
        obj = json.loads(line.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"not JSON ({e.__class__.__name__})") from e
    if not isinstance(obj, dict) or tuple(sorted(obj)) != FIELDS:
        raise ValueError("not an audit entry (wrong fields)")
    if not isinstance(obj["seq"], int) or isinstance(obj["seq"], bool) or obj["seq"] < 0:
        raise ValueError("seq is not a non-negative integer")
    if canonical(obj) != line:
        raise ValueError("not in canonical form")
    return obj
