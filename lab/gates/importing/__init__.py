"""The model import gate: signed packages, officer approvals, static and sandboxed checks.

Names are imported on first use (PEP 562), so that the confined checks, which import
``facelab.gates.importing._static_child``, do not pay for the gate's own imports.
"""

from __future__ import annotations

__all__ = ["ImportReport", "approve", "inspect", "list_models", "register", "sign_package"]

_FROM = {
    "ImportReport": "gate",
    "inspect": "gate",
    "list_models": "gate",
    "register": "gate",
    "approve": "signing",
    "sign_package": "signing",
}


def __getattr__(name: str):
    if name in _FROM:
        import importlib

        return getattr(importlib.import_module(f"facelab.gates.importing.{_FROM[name]}"), name)
    raise AttributeError(f"module 'facelab.gates.importing' has no attribute {name!r}")
