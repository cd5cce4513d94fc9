"""The rule engine: purpose limitation for job specs, and retention due dates (pure).

A job spec is data a tenant submits: ``kind`` (bench | train), ``purpose``, ``model``,
``split``, ``trainer``, ``params``. It is refused when its purpose is forbidden, not
allowed, or not granted to the tenant; when its kind does not serve its purpose; and
when any key or value of it names a 1:N marker (gallery, search, top_k, track, ...),
whatever purpose it declares: the red line the documented lab's critics drew. A training
job must name a trainer the policy registers.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from enclave_policy._load import GovernancePolicy

KIND_PURPOSE = {"bench": "verify_1to1", "train": "train"}
_TOKEN = re.compile(r"[a-z0-9_:]+")


@dataclass(frozen=True)
class RuleDecision:
    allowed: bool
    reason: str


def _strings(obj: Any, where: str = "") -> Iterator[tuple[str, str]]:
    if isinstance(obj, Mapping):
        for k, v in obj.items():
            yield f"{where}{k} (key)", str(k)
            yield from _strings(v, f"{where}{k}.")
    elif isinstance(obj, list | tuple):
        for i, v in enumerate(obj):
            yield from _strings(v, f"{where}{i}.")
    elif isinstance(obj, str):
        yield where.rstrip("."), obj


def one_to_n_marker(spec: Mapping[str, Any], markers: tuple[str, ...]) -> tuple[str, str] | None:
    """(marker, where) of the first 1:N marker in the spec's keys and values."""
    for where, text in _strings(spec):
        for tok in _TOKEN.findall(text.casefold()):
            parts = {tok, *tok.split("_"), tok.replace("_", "")}
            hit = next((m for m in markers if m in parts), None)
            if hit is not None:
                return hit, where
    return None


def check_job(gov: GovernancePolicy, tenant: str, spec: Mapping[str, Any]) -> RuleDecision:
    purpose = spec.get("purpose")
    kind = spec.get("kind")
    if not isinstance(purpose, str) or not isinstance(kind, str):
        return RuleDecision(False, "the job spec must name its kind and purpose")
    if purpose in gov.forbidden_purposes:
        return RuleDecision(
            False, f"purpose {purpose!r} is forbidden by the policy ([purposes] forbidden)"
        )
    if purpose not in gov.allowed_purposes:
        return RuleDecision(False, f"purpose {purpose!r} is not an allowed purpose")
    if purpose not in gov.tenant(tenant).purposes:
        return RuleDecision(False, f"tenant {tenant!r} is not granted purpose {purpose!r}")
    if KIND_PURPOSE.get(kind) != purpose:
        return RuleDecision(False, f"a {kind!r} job does not serve purpose {purpose!r}")
    hit = one_to_n_marker(spec, gov.forbidden_markers)
    if hit is not None:
        return RuleDecision(
            False,
            f"the job asks for 1:N search ({hit[0]!r} in {hit[1]}), "
            "which the policy forbids whatever purpose is declared",
        )
    if kind == "train" and spec.get("trainer") not in gov.trainers:
        return RuleDecision(
            False, f"trainer {spec.get('trainer')!r} is not registered in [jobs] trainers"
        )
    return RuleDecision(True, f"{kind} for {purpose}, granted to {tenant}")
