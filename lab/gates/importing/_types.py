"""The small interface every import check implements: context in, result out."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from facelab.gates.importing.package import Package

from enclave_policy import ImportPolicy


@dataclass
class GateContext:
    """What the checks share. Checks only read it, except for the facts they establish."""

    package: Package
    policy: ImportPolicy
    tenant: str
    kinds: dict[str, str] = field(default_factory=dict)  # file -> type by magic bytes
    model_json: dict[str, Any] | None = None
    onnx_model: Any = None  # onnx.ModelProto, parsed without external data
    external_files: set[str] = field(default_factory=set)
    # external file -> [(offset, length, tensor)] of every tensor that reads it (bytes)
    external_ranges: dict[str, list[tuple[int, int, str]]] = field(default_factory=dict)
    statement_sha256: str | None = None
    approvers: list[str] = field(default_factory=list)
    # what the registry stores besides the signed files: both written again by the gate
    # from their parsed, schema-checked content (never the tenant-delivered bytes)
    signed_files: frozenset[str] = frozenset()  # the names the verified statement lists
    tenant_sig_bytes: bytes = b""
    approval_bytes: dict[str, bytes] = field(default_factory=dict)  # officer -> document

    @property
    def root(self) -> Path:
        return self.package.root


@dataclass(frozen=True)
class CheckResult:
    name: str
    passed: bool
    problems: tuple[str, ...] = ()
    info: str = ""

    def to_json(self) -> dict:
        return {
            "check": self.name,
            "passed": self.passed,
            "problems": list(self.problems),
            "info": self.info,
        }


def result(name: str, problems: list[str], info: str = "") -> CheckResult:
    return CheckResult(name, not problems, tuple(problems), info)


def policy_to_json(pol: ImportPolicy) -> dict:
    """The import policy as JSON, for a confined run (public keys only: no secret)."""
    from dataclasses import asdict

    d = asdict(pol)
    d["allowed_ops"] = sorted(pol.allowed_ops)
    d["allowed_domains"] = list(pol.allowed_domains)
    return d


def policy_from_json(d: dict) -> ImportPolicy:
    return ImportPolicy(
        **{
            **d,
            "allowed_ops": frozenset(d["allowed_ops"]),
            "allowed_domains": tuple(d["allowed_domains"]),
        }
    )
