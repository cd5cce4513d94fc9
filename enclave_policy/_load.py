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
class VaultPolicy:
    splits: dict[str, float]
    identifiers_granted: tuple[str, ...]
    tenants: tuple[str, ...]
    max_image_side: int


@dataclass(frozen=True)
class Policy:
    """The parts of the policy the code reads today; the raw table keeps the rest."""

    audit: AuditPolicy
    vault: VaultPolicy
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
    return Policy(AuditPolicy(every, prefix), _vault(raw, path), raw, path)


def _vault(raw: dict, path: Path) -> VaultPolicy:
    v = raw.get("vault")
    if not isinstance(v, dict):
        raise BadInputError(f"{path}: missing table [vault]")
    splits = _get(v, "splits", dict, "vault.", path)
    if not splits or not all(isinstance(k, str) and isinstance(x, int | float)
                             and not isinstance(x, bool) and 0 <= x <= 1
                             for k, x in splits.items()):
        raise BadInputError(f"{path}: vault.splits must map names to ratios in [0, 1]")
    if abs(sum(splits.values()) - 1.0) > 1e-9:
        raise BadInputError(f"{path}: vault.splits must sum to 1, not {sum(splits.values())}")
    granted = _get(v, "identifiers_granted", list, "vault.", path)
    tenants = _get(v, "tenants", list, "vault.", path)
    for key, lst in (("identifiers_granted", granted), ("tenants", tenants)):
        if not all(isinstance(t, str) for t in lst):
            raise BadInputError(f"{path}: vault.{key} must be a list of tenant names")
    side = _get(v, "max_image_side", int, "vault.", path)
    if not 16 <= side <= 16384:
        raise BadInputError(f"{path}: vault.max_image_side must be in [16, 16384]")
    return VaultPolicy({k: float(x) for k, x in splits.items()}, tuple(granted),
                       tuple(tenants), side)
