"""Tamper-evident audit log: RFC 9162 Merkle tree, signed checkpoints, proofs.

Every component records through ``AuditLog.record(Event(...))``; every new command
must record what it accesses and what it decides.
"""

from facelab.audit.checkpoint import Checkpoint
from facelab.audit.events import AuditSchemaError, Event
from facelab.audit.log import AuditLog, Receipt, Recovery, policy_digest
from facelab.audit.verify import Damage, VerifyReport, verify_log

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
