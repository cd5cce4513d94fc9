"""The export gate: detectors that look for personal data in trained artifacts."""

from facelab.gates.exporting._types import Artifact, Finding, ScanContext
from facelab.gates.exporting.gate import DETECTORS, ExportReport, scan
from facelab.gates.exporting.ops import ExportOutcome, Override, export

__all__ = [
    "DETECTORS",
    "Artifact",
    "ExportOutcome",
    "ExportReport",
    "Finding",
    "Override",
    "ScanContext",
    "export",
    "scan",
]
