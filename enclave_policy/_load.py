"""Load and validate a policy file (TOML). Errors name the file and the key."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path

from lab.errors import BadInputError

DEFAULT_POLICY = Path(__file__).with_name("default.toml")


@dataclass(frozen=True)
class AuditPolicy:
    checkpoint_every: int
    origin_prefix: str


@dataclass(frozen=True)
class Policy:
    """The parts of the policy the code reads today; the raw table keeps the rest."""

    audit: AuditPolicy
    raw: dict
    source: Path


def _get(table: dict, key: str, typ: type, where: str, path: Path):
    if key not in table:
        raise BadInputError(f"{path}: missing key {where}{key}")
    v = table[key]
    if not isinstance(v, typ) or (isinstance(v, bool) and typ is not bool):
        raise BadInputError(f"{path}: {where}{key} must be {typ.__name__}, got {v!r}")
    return v


def load_policy(path: Path | str = DEFAULT_POLICY) -> Policy:
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise BadInputError(f"{path}: cannot read policy ({e.strerror})") from e
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise BadInputError(f"{path}: not valid TOML ({e})") from e
    if _get(raw, "schema", int, "", path) != 1:
        raise BadInputError(f"{path}: schema {raw['schema']} is not supported (expected 1)")
    audit = raw.get("audit")
    if not isinstance(audit, dict):
        raise BadInputError(f"{path}: missing table [audit]")
    every = _get(audit, "checkpoint_every", int, "audit.", path)
    if not 1 <= every <= 1_000_000:
        raise BadInputError(f"{path}: audit.checkpoint_every must be in [1, 1000000]")
    prefix = _get(audit, "origin_prefix", str, "audit.", path)
    return Policy(AuditPolicy(every, prefix), raw, path)
