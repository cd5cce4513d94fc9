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

Entry authentication (issue 14): a writer adds ``"mac"``, an HMAC-SHA256 (RFC 2104) of
the entry's canonical line without it, keyed by a key derived (HKDF, RFC 5869) from the
lab's signing key, so only a holder of the passphrase can make one. A writer that finds
complete entries after the signed head (killed between its fsync and its signature, or a
head slot rolled back or garbled by someone with file access) adopts those that carry a
valid MAC instead of cutting them, and refuses any that do not (a forged append). The
MAC is inside the leaf, so the Merkle tree and the checkpoints cover it; verifiers
without the passphrase check everything else as before. Entries written before the MAC
existed have no ``mac`` field and stay valid below the head.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from facelab.audit import _files_schema
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
MAC_FIELD = "mac"
_MAC = re.compile(r"^[A-Za-z0-9_-]{43}$")  # 32 bytes, base64url without padding
_MAC_CONTEXT = b"facelab audit entry v1\n"
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
    keys, nesting at most 4 deep, finite numbers, 16 KiB of canonical JSON in all. Entries
    about a tenant's files (``job.*``, ``export.*``, ``release.*``) also obey the
    declared schema of ``facelab.audit._files_schema``: each detail key declared, each
    value of its declared type (counts, numbers, fixed-length digests, lab-made ids,
    short enumerations), and ``object`` a lab-made id or digest.
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
        # entries about a tenant's files: every key declared, every value typed and sized
        why = _files_schema.problem(self.action, self.object, self.details)
        if why:
            raise AuditSchemaError(f"audit schema: {why}")


def canonical(obj: Mapping[str, Any]) -> bytes:
    return json.dumps(
        obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode("utf-8")


def entry_mac(key: bytes, origin: str, body: bytes) -> str:
    """HMAC-SHA256 of ``body`` (an entry's canonical line without ``mac``) bound to the
    log's ``origin``; 43 characters of unpadded base64url."""
    tag = hmac.new(key, _MAC_CONTEXT + origin.encode() + b"\n" + body, hashlib.sha256)
    return base64.urlsafe_b64encode(tag.digest()).rstrip(b"=").decode()


def entry_authentic(line: bytes, key: bytes, origin: str) -> bool:
    """Whether ``line`` is a well-formed entry whose ``mac`` verifies under ``key``."""
    try:
        obj = parse_entry(line)
    except ValueError:
        return False
    mac = obj.pop(MAC_FIELD, None)
    if mac is None:
        return False
    return hmac.compare_digest(mac, entry_mac(key, origin, canonical(obj)))


def entry_bytes(
    event: Event,
    seq: int,
    time: str,
    policy: str,
    *,
    mac_key: bytes | None = None,
    origin: str = "",
) -> bytes:
    """The canonical line (without newline) of ``event`` recorded as entry ``seq``;
    with ``mac_key``, authenticated for the log ``origin`` (see the module docstring)."""
    obj: dict[str, Any] = {
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
    body = canonical(obj)
    if mac_key is None:
        return body
    obj[MAC_FIELD] = entry_mac(mac_key, origin, body)
    return canonical(obj)


def parse_entry(line: bytes) -> dict[str, Any]:
    """Parse and check one entry line; raise ValueError naming what is wrong."""
    try:
        obj = json.loads(line.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as e:
        # RecursionError: a forged line of 200,000 nested arrays (red team 14d, c21)
        raise ValueError(f"not JSON ({e.__class__.__name__})") from e
    if not isinstance(obj, dict):
        raise ValueError("not an audit entry (wrong fields)")
    keys = tuple(sorted(k for k in obj if k != MAC_FIELD))
    if keys != FIELDS:
        raise ValueError("not an audit entry (wrong fields)")
    if MAC_FIELD in obj and not (isinstance(obj[MAC_FIELD], str) and _MAC.match(obj[MAC_FIELD])):
        raise ValueError("mac is not 43 characters of base64url")
    if not isinstance(obj["seq"], int) or isinstance(obj["seq"], bool) or obj["seq"] < 0:
        raise ValueError("seq is not a non-negative integer")
    if canonical(obj) != line:
        raise ValueError("not in canonical form")
    return obj
