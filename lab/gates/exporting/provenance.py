"""Import-to-export diff: what changed since the model was imported.

The baseline is the model as the import gate registered it. Every tensor of the
artifact is compared with the tensor at the same place in the baseline: bit-identical
tensors (and strings) cannot hold lab data and are marked unchanged, so the deep
detectors skip them. For a changed tensor the report gives how many values changed and
an upper bound on the information the change can carry: for each changed value, the
number of its low-order bits that differ from the imported value (position of the
highest differing bit + 1). A new tensor counts all its bits.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from facelab.gates.exporting._types import Artifact, Finding, ScanContext

NAME = "provenance"


@dataclass
class Baseline:
    model: str  # name@version (or digest) of the imported model
    tensors: dict[str, np.ndarray]
    strings: set[tuple[str, str]]
    #: static sizes of the imported graph's outputs (its embedding width): a head fitted
    #: after those outputs has an axis of this length whatever the lab's data
    widths: frozenset[int] = frozenset()

    @classmethod
    def from_artifact(cls, model: str, art: Artifact) -> Baseline:
        return cls(model, dict(art.tensors), set(art.strings), output_widths(art.onnx_model))

    def overlap(self, art: Artifact) -> float:
        """Share of the artifact's tensors found at the same place with the same shape."""
        if not art.tensors:
            return 0.0
        same = sum(
            1
            for loc, a in art.tensors
            if loc in self.tensors and self.tensors[loc].shape == a.shape
        )
        return same / len(art.tensors)


def output_widths(model) -> frozenset[int]:
    """Static dimension sizes of an ONNX model's graph outputs (symbolic ones skipped);
    empty for None."""
    if model is None:
        return frozenset()
    return frozenset(
        d.dim_value
        for o in model.graph.output
        for d in o.type.tensor_type.shape.dim
        if d.HasField("dim_value") and d.dim_value > 0
    )


def _digest(a: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest()


def capacity_bits(old: np.ndarray, new: np.ndarray) -> tuple[int, int]:
    """(changed values, bits they can carry at most) for same-shape, same-dtype arrays."""
    width = new.dtype.itemsize
    utype = {1: np.uint8, 2: np.uint16, 4: np.uint32, 8: np.uint64}[width]
    x = np.ascontiguousarray(old).view(utype).reshape(-1) ^ np.ascontiguousarray(new).view(
        utype
    ).reshape(-1)
    changed = x != 0
    n = int(changed.sum())
    if n == 0:
        return 0, 0
    bits = np.floor(np.log2(x[changed].astype(np.float64))).astype(np.int64) + 1
    return n, int(bits.sum())


def detect(art: Artifact, ctx: ScanContext) -> list[Finding]:
    if ctx.baseline is None or art.kind != "onnx" or art.depth > 0:
        return []
    base = ctx.baseline(art)
    if base is None:
        return []
    changed, new, bits, values = [], [], 0, 0
    for loc, a in art.tensors:
        old = base.tensors.get(loc)
        if old is not None and old.shape == a.shape and old.dtype == a.dtype:
            if _digest(old) == _digest(a):
                art.unchanged.add(loc)
                continue
            n, b = capacity_bits(old, a)
            changed.append(loc)
            values += n
            bits += b
        else:
            new.append(loc)
            values += a.size
            bits += a.size * a.dtype.itemsize * 8
    for loc, s in art.strings:
        if (loc, s) in base.strings:
            art.unchanged.add(loc)
    total = len(art.tensors)
    listed = ", ".join((changed + new)[:8]) + (" ..." if len(changed) + len(new) > 8 else "")
    return [
        Finding(
            NAME,
            "low",
            art.name,
            "whole model",
            f"descends from {base.model}: {total - len(changed) - len(new)} of {total} "
            f"tensors unchanged (skipped by the deep scans); {len(changed)} changed, "
            f"{len(new)} new ({listed or 'none'}); {values} values differ (the capacity "
            "bound is the rebuild's, in the notes)",
            score=float(bits),
        )
    ]


def load_baseline(model: str, onnx_path: Path, policy) -> Baseline:
    from facelab.gates.exporting.artifact import parse

    return Baseline.from_artifact(
        model, parse(onnx_path.name, "onnx", onnx_path.read_bytes(), policy)
    )
