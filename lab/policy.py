"""Changes to a lab's policy (``LAB/policy.toml``), validated, atomic and on the record.

Every change made here is checked by :func:`enclave_policy.load_policy` before it
replaces the file (a temporary sibling, fsync, ``os.replace``), keeps the file's comments
and layout (tomlkit), and is recorded in the audit log as ``policy.change`` with who made
it and the SHA-256 digests of the old and the new file. A change made by hand, with an
editor, is found the next time the audit log is opened for writing (the digest of the
file differs from the one in force at the log's last entry) and recorded the same way,
``how = "edited outside facelab"``.

The policy in force at the end of the log: the ``new`` digest of a last entry that is a
``policy.change``, else the ``policy`` digest that the last entry carries (every entry
carries the digest of the policy its writer opened with).
"""

from __future__ import annotations

import base64
import os
import re
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import tomlkit
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from facelab import labfs
from facelab.errors import BadInputError
from tomlkit.exceptions import TOMLKitError

from enclave_policy import load_policy

POLICY_CHANGE = "policy.change"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
# keys a lab may set although the shipped policy leaves them at their defaults
OPTIONAL_KEYS = frozenset(
    {"audit.max_unsigned_tail", "audit.max_unwitnessed", "audit.require_witness"}
)
_ENTRIES = "entries.jsonl"


@dataclass(frozen=True)
class PolicyChange:
    """One recorded change: what, and the digests before and after (``sha256:<hex>``)."""

    what: str
    old: str
    new: str
    entry: int | None


def file_digest(path: Path) -> str:
    from facelab.audit import policy_digest

    return policy_digest(path)


def _last_entry(audit_dir: Path) -> dict[str, Any] | None:
    """The last entry of the log (the writer has verified the whole log on open)."""
    path = Path(audit_dir) / _ENTRIES
    try:
        with labfs.open_file(path) as f:
            end = f.seek(0, os.SEEK_END)
            f.seek(max(0, end - 65536))
            tail = f.read()
    except FileNotFoundError:
        return None
    lines = [x for x in tail.split(b"\n") if x]
    from facelab.audit.read import entry_of

    return entry_of(lines[-1]) if lines else None


def in_force(audit_dir: Path) -> str | None:
    """The digest of the policy in force at the end of the log: the ``new`` digest of
    the last ``policy.change``, else the policy of the first entry (``lab.init``); None
    for an empty log. Not the last entry's ``policy`` field: a writer opened before a
    change keeps stamping the digest it opened with, and reading that as the policy in
    force recorded a change back and forth (red team 2, x04)."""
    from facelab.audit.read import entries

    last = _last_entry(audit_dir)
    if last is None:
        return None
    found = None
    for e in entries(audit_dir, b'"policy.change"'):
        if e.get("action") == POLICY_CHANGE and isinstance(e.get("details"), dict):
            found = str(e["details"].get("new", e.get("policy", "")))
    if found is not None:
        return found
    first = next(entries(audit_dir), None)
    return str((first or last).get("policy", ""))


def record_drift(lab, log, actor: str) -> PolicyChange | None:
    """Record a hand edit of the policy since the log's last entry (called on open)."""
    from facelab.audit import intents

    # never between a change's replace and record
    with intents.held(lab.paths.audit, "", log.lock_wait):
        old = in_force(lab.paths.audit)
        new = file_digest(lab.paths.policy)
        if old is None or old == new:
            return None
        return _record_drift(log, actor, old, new)


def _record_drift(log, actor: str, old: str, new: str) -> PolicyChange:
    from facelab.audit import Event

    r = log.record(
        Event(
            POLICY_CHANGE,
            actor,
            object=new,
            details={"old": old, "new": new, "how": "edited outside facelab", "change": ""},
        )
    )
    return PolicyChange("edited outside facelab", old, new, r.seq)


def change(lab, log, actor: str, what: str, edit: Callable[[Any], None]) -> PolicyChange:
    """Apply ``edit`` to the parsed policy, validate, replace the file atomically, record.

    Raises BadInputError (nothing written) when the edit is refused or the result is not
    a valid policy, or when it changes nothing. Changes are serialised by the lab's
    state lock, from the read to the record: six changes started at once all land, each
    recorded with the digest it replaced (red team 2, x04 lost four of six).
    """
    from facelab.audit import intents

    with intents.held(lab.paths.audit, "", log.lock_wait):
        return _change_locked(lab, log, actor, what, edit)


def _change_locked(lab, log, actor: str, what: str, edit: Callable[[Any], None]) -> PolicyChange:
    from facelab.audit import Event

    path = lab.paths.policy
    recorded, current = in_force(lab.paths.audit), file_digest(path)
    if recorded is not None and recorded != current:  # a hand edit goes on the record first
        _record_drift(log, actor, recorded, current)
    text = labfs.read_text(path, what="a policy")
    try:
        doc = tomlkit.parse(text)
    except TOMLKitError as e:
        raise BadInputError(f"{path}: not valid TOML ({e})") from e
    edit(doc)
    new_text = tomlkit.dumps(doc)
    if new_text == text:
        raise BadInputError(f"{path}: {what}: nothing to change")
    old = file_digest(path)
    fd, tmp_name = tempfile.mkstemp(prefix=".policy.", suffix=".toml", dir=path.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(new_text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, path.stat().st_mode & 0o777)
        try:
            load_policy(tmp)
        except BadInputError as e:
            raise BadInputError(
                f"{path}: {what}: refused, the policy would be invalid: "
                + str(e).replace(str(tmp), "policy.toml").removeprefix("policy.toml: ")
            ) from e
        new = file_digest(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    dfd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)
    r = log.record(
        Event(
            POLICY_CHANGE,
            actor,
            object=new,
            details={"old": old, "new": new, "how": "facelab policy", "change": what[:500]},
        )
    )
    return PolicyChange(what, old, new, r.seq)


# ---------------------------------------------------------------- the edits


def check_name(name: str, what: str) -> str:
    if not _NAME.match(name):
        raise BadInputError(
            f"{what} {name!r}: 1-64 letters, digits, '.', '_' or '-', starting with a "
            "letter or digit"
        )
    return name


def ed25519_public_b64(path: Path, role: str) -> str:
    """An officer's or reviewer's public key file: base64 of the raw 32 bytes (what
    ``facelab model keygen`` writes to PREFIX.pub) or a PEM public key."""
    data = _read_key_file(path)
    if b"PRIVATE KEY" in data:
        raise BadInputError(f"{path}: a private key; give the {role}'s .pub file")
    key = None
    if data.lstrip().startswith(b"-----BEGIN"):
        try:
            key = serialization.load_pem_public_key(data)
        except ValueError as e:
            raise BadInputError(f"{path}: not a PEM public key") from e
    else:
        try:
            key = Ed25519PublicKey.from_public_bytes(base64.b64decode(data.strip(), validate=True))
        except ValueError as e:
            raise BadInputError(
                f"{path}: not an Ed25519 public key (an {role} key is made by "
                f"`facelab model keygen --kind {role}`)"
            ) from e
    if not isinstance(key, Ed25519PublicKey):
        raise BadInputError(f"{path}: the wrong kind of key: an {role} key is Ed25519")
    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return base64.b64encode(raw).decode()


def tenant_public_pem(path: Path) -> str:
    """A tenant's model-signing public key: PEM of an ECDSA P-256 key."""
    data = _read_key_file(path)
    if b"PRIVATE KEY" in data:
        raise BadInputError(f"{path}: a private key; give the tenant's .pub file")
    try:
        key = serialization.load_pem_public_key(data)
    except ValueError as e:
        raise BadInputError(
            f"{path}: not a PEM public key (a tenant key is made by "
            "`facelab model keygen --kind tenant`)"
        ) from e
    if not (isinstance(key, ec.EllipticCurvePublicKey) and key.curve.name == "secp256r1"):
        raise BadInputError(f"{path}: the wrong kind of key: a tenant key is ECDSA P-256")
    return key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()


def _read_key_file(path: Path) -> bytes:
    from facelab.jsonfile import read_regular

    try:
        return read_regular(path, max_bytes=16384, what="a key file")
    except FileNotFoundError as e:
        raise BadInputError(f"{path}: unreadable (no such file)") from e


def _table(doc: Any, dotted: str) -> Any:
    t = doc
    for part in dotted.split("."):
        if part not in t or not isinstance(t[part], dict):
            raise BadInputError(f"policy.toml: no table [{dotted}]")
        t = t[part]
    return t


def _add_named_key(doc: Any, table: str, role_list: str, name: str, value: str, what: str):
    t = _table(doc, table)
    if name in t:
        raise BadInputError(f"{what} {name!r} is already in [{table}]")
    t[name] = tomlkit.string(value)  # one line; a PEM's newlines are escaped
    roles = _table(doc, "roles")
    if role_list in roles and name not in roles[role_list]:
        roles[role_list].append(name)


def add_officer(name: str, pub_b64: str) -> Callable[[Any], None]:
    check_name(name, "officer")
    return lambda doc: _add_named_key(
        doc, "import.officers", "import_officers", name, pub_b64, "officer"
    )


def add_reviewer(name: str, pub_b64: str) -> Callable[[Any], None]:
    check_name(name, "reviewer")
    return lambda doc: _add_named_key(
        doc, "export.reviewers", "export_reviewers", name, pub_b64, "reviewer"
    )


def add_tenant_key(tenant: str, pem: str) -> Callable[[Any], None]:
    from facelab.vault.store import check_tenant

    check_tenant(tenant)
    return lambda doc: _add_named_key(doc, "import.tenant_keys", "", tenant, pem, "tenant key")


def add_tenant(
    name: str,
    *,
    processor: str | None = None,
    purposes: Iterable[str] = (),
    retention_days: int | None = None,
    destroy_by: str | None = None,
    data_categories: Iterable[str] = (),
    today: date | None = None,
) -> Callable[[Any], None]:
    """A processor's table ``[tenants.NAME]`` (and its name in ``vault.tenants`` when
    that list is in use), for the public register and the purpose check.

    ``destroy_by`` (YYYY-MM-DD) must not be before ``today`` (default: the UTC date);
    the policy loader bounds it to the years a lab can exist in.

    Raises:
        BadInputError: a bad name, date or duplicate tenant.
    """
    from facelab.vault.store import check_tenant

    check_tenant(name)
    entry: dict[str, Any] = {}
    if processor is not None:
        entry["processor"] = processor
    if list(purposes):
        entry["purposes"] = list(purposes)
    if retention_days is not None:
        entry["retention_days"] = retention_days
    if destroy_by is not None:
        try:
            by = date.fromisoformat(destroy_by)
        except ValueError as e:
            raise BadInputError(f"--destroy-by {destroy_by!r}: not a date (YYYY-MM-DD)") from e
        today = today or datetime.now(UTC).date()
        if by < today:
            # a past date would make the next retention run destroy the tenant at once
            raise BadInputError(
                f"--destroy-by {destroy_by}: already past (today is {today.isoformat()})"
            )
        entry["destroy_by"] = by
    if list(data_categories):
        entry["data_categories"] = list(data_categories)

    def edit(doc: Any) -> None:
        tenants = _table(doc, "tenants")
        if name in tenants:
            raise BadInputError(f"tenant {name!r} is already in [tenants]")
        tbl = tomlkit.table()
        for k, v in entry.items():
            tbl[k] = v
        tenants[name] = tbl
        listed = _table(doc, "vault").get("tenants")
        if listed is not None and len(listed) and name not in listed:
            listed.append(name)

    return edit


def parse_value(text: str) -> Any:
    """A TOML value (``600``, ``true``, ``"weak"``, ``["a", "b"]``); anything that is not
    one is taken as a string, so ``weak`` works as well as ``"weak"``."""
    try:
        return tomlkit.parse(f"v = {text}")["v"]
    except TOMLKitError:
        if "\n" in text or not text.isprintable():
            raise BadInputError(f"{text[:40]!r}: not a TOML value") from None
        return text


def set_value(key: str, text: str) -> Callable[[Any], None]:
    """``policy set KEY VALUE``: KEY is dotted (``jobs.isolation``) and must exist in the
    policy (or be one of OPTIONAL_KEYS); VALUE must have the type the key has."""
    parts = key.split(".")
    if len(parts) < 2 or not all(parts):
        raise BadInputError(f"{key!r}: give a dotted key such as jobs.isolation")
    value = parse_value(text)

    def edit(doc: Any) -> None:
        t = _table(doc, ".".join(parts[:-1]))
        last = parts[-1]
        if last not in t:
            if key not in OPTIONAL_KEYS:
                raise BadInputError(
                    f"{key}: no such key in the policy (`facelab policy show --all` lists them)"
                )
        else:
            old = t[last]
            if isinstance(old, dict) and not isinstance(value, dict):
                raise BadInputError(f"{key}: is a table; set one of its keys")
            if _kind(old) != _kind(value) and not (
                _kind(old) == "float" and _kind(value) == "integer"
            ):
                raise BadInputError(f"{key}: expects {_kind(old)}, got {_kind(value)} {text!r}")
        t[last] = value

    return edit


def _kind(v: Any) -> str:
    from datetime import date

    v = v.unwrap() if hasattr(v, "unwrap") else v
    if isinstance(v, bool):
        return "true or false"
    if isinstance(v, int):
        return "integer"
    if isinstance(v, float):
        return "float"
    if isinstance(v, str):
        return "string"
    if isinstance(v, list):
        return "list"
    if isinstance(v, dict):
        return "table"
    if isinstance(v, date):
        return "date"
    return type(v).__name__


__all__ = [
    "OPTIONAL_KEYS",
    "POLICY_CHANGE",
    "PolicyChange",
    "add_officer",
    "add_reviewer",
    "add_tenant",
    "add_tenant_key",
    "change",
    "ed25519_public_b64",
    "in_force",
    "record_drift",
    "set_value",
    "tenant_public_pem",
]
