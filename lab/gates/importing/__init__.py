"""The model import gate: signed packages, officer approvals, static and sandboxed checks."""

from lab.gates.importing.gate import ImportReport, inspect, list_models, register
from lab.gates.importing.signing import approve, sign_package

__all__ = ["ImportReport", "approve", "inspect", "list_models", "register", "sign_package"]
