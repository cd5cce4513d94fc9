"""Tamper-evident audit log: RFC 9162 Merkle tree, signed checkpoints, proofs.

Every component records through ``AuditLog.record(Event(...))``; every new command
must record what it accesses and what it decides.
"""

from lab.audit.checkpoint import Checkpoint
from lab.audit.events import AuditSchemaError, Event
from lab.audit.log import AuditLog, Receipt, Recovery, policy_digest
from lab.audit.verify import Damage, VerifyReport, verify_log

__all__ = [
    "AuditLog",
    "AuditSchemaError",
    "Checkpoint",
    "Damage",
    "Event",
    "Receipt",
    "Recovery",
    "VerifyReport",
    "policy_digest",
    "verify_log",
]
