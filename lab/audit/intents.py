"""State changes and their records together: an intent before the commit, an outcome after.

Every component that changes state (ingest, destroy, retention; import and release in
the gates) records ``<action>.intent`` before it commits and ``<action>`` with
``details["intent"] = <seq of the intent>`` after. Both are durable and signed before
the call returns (``AuditLog.record``), so after a crash at any point the log holds
either nothing (nothing was committed), an intent alone (the commit may or may not have
happened: the reconciler of that action looks at the state and records the outcome), or
both. ``open_intents`` lists the intents that have no outcome yet.

Usage::

    seq = intents.begin(log, Event("export.release", actor, tenant=t, details={...}))
    ... commit ...
    intents.finish(log, seq, Event("export.release", actor, tenant=t, decision="released"))
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

from facelab.audit.events import Event
from facelab.audit.log import ENTRIES, AuditLog

INTENT = ".intent"


def begin(log: AuditLog, event: Event) -> int:
    """Record the intent of ``event`` (action ``<action>.intent``); return its seq."""
    intent = replace(event, action=event.action + INTENT, decision="intent")
    return log.record(intent).seq


def finish(log: AuditLog, intent_seq: int, event: Event) -> int:
    """Record the outcome of the intent ``intent_seq``; return the outcome's seq."""
    details = {**dict(event.details), "intent": intent_seq}
    return log.record(replace(event, details=details)).seq


def open_intents(audit_dir: Path | str, prefix: str = "") -> list[dict]:
    """Intent entries (parsed) whose action starts with ``prefix`` and that no later
    entry closes (an entry whose ``details.intent`` is the intent's seq), in log order.

    Reads the entries once; only lines that mention an intent are parsed.
    """
    opened: dict[int, dict] = {}
    closed: set[int] = set()
    try:
        f = open(Path(audit_dir) / ENTRIES, "rb")  # noqa: SIM115
    except FileNotFoundError:
        return []
    with f:
        for raw in f:
            if not raw.endswith(b"\n") or b"intent" not in raw:
                continue
            try:
                e = json.loads(raw)
            except ValueError:
                continue
            action = e.get("action", "")
            if action.endswith(INTENT) and action.startswith(prefix):
                opened[e["seq"]] = e
            ref = e.get("details", {}).get("intent") if isinstance(e.get("details"), dict) else None
            if isinstance(ref, int):
                closed.add(ref)
    return [e for s, e in sorted(opened.items()) if s not in closed]
