"""The small interface every export detector implements: artifact and context in,
findings out.

A detector is a module under ``detectors/`` with ``NAME`` and
``detect(artifact, ctx) -> list[Finding]``; ``gate.DETECTORS`` lists them, so a new rule
is a new file and one line there. Findings never carry an identifier itself: a matched
subject is named by its pseudonym (the vault's keyed hash of the person).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

SEVERITIES = ("low", "medium", "high")


@dataclass(frozen=True)
class Finding:
    """One piece of evidence that an artifact may hold personal data."""

    detector: str
    severity: str  # low | medium | high
    artifact: str  # file name as given (or "<parent> > <where it was decoded>")
    location: str  # tensor name, JSON path, byte offset, ...
    evidence: str  # for humans; never the identifier itself
    subjects: tuple[str, ...] = ()  # pseudonyms of matched subjects
    score: float | None = None

    def to_json(self) -> dict:
        return {
            "detector": self.detector,
            "severity": self.severity,
            "artifact": self.artifact,
            "location": self.location,
            "evidence": self.evidence,
            "subjects": list(self.subjects),
            "score": self.score,
        }


@dataclass
class Artifact:
    """A file (or a payload decoded from one) as the detectors see it.

    ``tensors`` are numeric arrays with a location; ``strings`` are every piece of text
    (names, doc strings, metadata, JSON keys and values, CSV cells, log lines); ``data``
    is the raw bytes, scanned for identifiers and embedded payloads. ``unchanged`` names
    tensors and strings that are bit-identical to the imported model this artifact
    descends from: they cannot hold lab data, and the deep detectors skip them.
    """

    name: str
    kind: str  # onnx | npy | npz | json | csv | text | png | jpeg | bytes
    data: bytes
    tensors: list[tuple[str, np.ndarray]] = field(default_factory=list)
    strings: list[tuple[str, str]] = field(default_factory=list)
    onnx_model: Any = None
    model_json: dict | None = None  # a sidecar model.json exported with an ONNX model
    depth: int = 0
    declared: bool = False  # a payload the container declares (an HTML data: URI)
    unchanged: set[str] = field(default_factory=set)
    path: Path | None = None
    cache: dict[str, Any] = field(default_factory=dict)  # derived views shared by detectors

    def scan_tensors(self) -> list[tuple[str, np.ndarray]]:
        return [(n, a) for n, a in self.tensors if n not in self.unchanged]

    def scan_strings(self) -> list[tuple[str, str]]:
        return [(n, s) for n, s in self.strings if n not in self.unchanged]


@dataclass
class ScanContext:
    """What detectors share for one scan: the policy, the tenant's subject index, the
    matchers to compute templates with, and notes on what could not be checked."""

    policy: Any  # enclave_policy.ExportPolicy
    tenant: str
    index: Any  # vault_index.SubjectIndex
    matchers: dict[str, Any] = field(default_factory=dict)  # name -> Matcher-like
    baseline: Any = None  # artifact -> provenance.Baseline of its imported model, or None
    notes: list[str] = field(default_factory=list)
    derived: list[Artifact] = field(default_factory=list)  # payloads decoded by detectors
    own_models: dict[str, str] = field(default_factory=dict)  # artifact -> matcher name
    cache: dict[str, Any] = field(default_factory=dict)  # per-scan values shared by detectors
