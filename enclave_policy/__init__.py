"""The lab's policy as data: schema, loader and rule engine (grown by later issues)."""

from enclave_policy._load import (
    DEFAULT_POLICY,
    AuditPolicy,
    ExportPolicy,
    GovernancePolicy,
    ImportPolicy,
    Policy,
    TenantPolicy,
    VaultPolicy,
    load_policy,
)

__all__ = [
    "DEFAULT_POLICY",
    "AuditPolicy",
    "ExportPolicy",
    "GovernancePolicy",
    "ImportPolicy",
    "Policy",
    "TenantPolicy",
    "VaultPolicy",
    "load_policy",
]
