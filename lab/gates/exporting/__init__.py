"""The export gate: detectors that look for personal data in trained artifacts."""

from lab.gates.exporting._types import Artifact, Finding, ScanContext
from lab.gates.exporting.gate import DETECTORS, ExportReport, scan
from lab.gates.exporting.ops import ExportOutcome, Override, export

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
