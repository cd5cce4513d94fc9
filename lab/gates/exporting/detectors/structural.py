"""Structural: artifacts that store training instances, as kNN and SVM models do.

A tensor with an axis as long as the tenant's number of records or subjects (overall or
in a split) holds one row per person or image: a gallery, support vectors, per-record
labels or weights. SACRO-ML's safemodel refuses such instance-based models on the same
grounds. Tensors unchanged since import are exempt (they were shaped before the lab's
data was seen); small counts are ignored (policy ``min_rows``), since layer widths of a
few dozen coincide with small vaults by chance. Nor is an axis as long as the imported
model's output width (a head appended to the model must have it, and a lab of 128
training subjects under a 128-d matcher is a coincidence, not a store; measured: 1 of 24
demo runs refused a legitimate PCA head this way); a gallery of such a size is still the
behaviour tests' and the template detector's to find. Only model containers (ONNX, NPY, NPZ)
are read this way: in reports and logs, rows are plots and tables, and what they hold is
the content detectors' business.
"""

from __future__ import annotations

from facelab.gates.exporting._types import Artifact, Finding, ScanContext

NAME = "structural"
#: containers of model parameters; a JSON report's 200-bin histogram in a lab of 200
#: subjects is a coincidence, not an instance store
MODEL_KINDS = ("onnx", "npy", "npz")


def detect(art: Artifact, ctx: ScanContext) -> list[Finding]:
    if art.kind not in MODEL_KINDS or art.cache.get("computed"):
        # reports and logs: their rows are read by the content detectors; sums and
        # products of tensors (representations) have shapes of arithmetic, not storage
        return []
    counts = {
        n: c
        for n, c in ctx.index.counts().items()
        if c >= ctx.policy.structural["min_rows"]
        and (n in ("records", "subjects") or n.startswith("train "))
    }
    by_size: dict[int, list[str]] = {}
    for what, n in counts.items():
        by_size.setdefault(n, []).append(what)
    base = ctx.baseline(art) if ctx.baseline is not None and art.kind == "onnx" else None
    widths = base.widths if base is not None else frozenset()
    findings = []
    for loc, a in art.scan_tensors():
        for axis, n in enumerate(a.shape):
            if n in by_size and n not in widths:
                per = " / ".join(sorted(by_size[n]))
                rows = "rows" if a.ndim >= 2 else "values"
                findings.append(
                    Finding(
                        NAME,
                        "high" if a.ndim >= 2 else "medium",
                        art.name,
                        loc,
                        f"axis {axis} of shape {list(a.shape)} has one entry per training "
                        f"instance ({n} = the tenant's {per}): stored {rows} of the training "
                        "set, as in an instance-based (kNN/SVM) model",
                    )
                )
                break
    return findings
