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
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

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


@dataclass(frozen=True)
class Event:
    """What a component asks the log to record."""

    action: str
    actor: str
    role: str = "operator"
    tenant: str = ""
    object: str = ""
    decision: str = "ok"
    details: Mapping[str, Any] = field(default_factory=dict)

    def validate(self) -> None:
        if not _ACTION.match(self.action):
            raise ValueError(f"audit action {self.action!r} is not 'component.verb'")
        for name in ("actor", "role", "tenant", "object", "decision"):
            if not isinstance(getattr(self, name), str):
                raise ValueError(f"audit field {name} must be a string")
        if not self.actor:
            raise ValueError("audit events must name an actor")
        canonical({"details": dict(self.details)})  # JSON-serialisable, no NaN


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
