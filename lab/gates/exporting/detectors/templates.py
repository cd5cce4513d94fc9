"""Templates: rows of tensors that are biometric templates of vault subjects, a
smuggled gallery.

For each matcher in the scan (the lab's reference models, and the artifact's own model
when it is exported with its model.json), every vault record gets a template. A tensor
row of that dimension (rows of a 2-D tensor, columns too, or a flat vector of k * d
values) is a template of a subject when its best cosine to that subject's records
exceeds what an impostor reaches at the policy's false-match rate, measured on the vault
itself. Noise added to a row lowers its cosine, but while it still matches better than
an impostor would, it is found.
"""

from __future__ import annotations

import numpy as np
from facelab.gates.exporting._types import Artifact, Finding, ScanContext
from facelab.gates.exporting.vault_index import subject_templates

NAME = "templates"
MAX_ROWS = 2_000_000


def _row_views(a: np.ndarray, d: int):
    if a.dtype.kind not in "iuf" or a.size < d:
        return
    if a.ndim >= 2 and a.shape[-1] == d:
        yield "rows", a.reshape(-1, d)
    if a.ndim == 2 and a.shape[0] == d and a.shape[1] != d:
        yield "columns", a.T
    if a.ndim == 1 and a.size % d == 0:
        yield f"flat vector as {a.size // d} x {d}", a.reshape(-1, d)


def detect(art: Artifact, ctx: ScanContext) -> list[Finding]:
    findings = []
    tensors = art.scan_tensors()
    for mname, matcher in ctx.matchers.items():
        d = matcher.dim
        candidates = [(loc, how, rows) for loc, a in tensors for how, rows in _row_views(a, d)]
        if not candidates:
            continue
        st = subject_templates(
            ctx.index,
            mname,
            lambda ims, lms, m=matcher: m.extract(ims, lms).templates,
            ctx.policy.templates["fmr"],
            ctx.policy.templates["max_records"],
        )
        if len(st.templates) == 0:
            continue
        thr = max(st.impostor_threshold, ctx.policy.templates["min_cosine"])
        rec_subjects = ctx.index.subjects[st.records]
        for loc, how, rows in candidates:
            x = np.nan_to_num(np.asarray(rows[:MAX_ROWS], np.float32))
            norms = np.linalg.norm(x, axis=1, keepdims=True)
            x = np.divide(x, norms, out=np.zeros_like(x), where=norms > 0)
            best = np.full(len(x), -1.0, np.float32)
            arg = np.zeros(len(x), np.int64)
            for c0 in range(0, len(st.templates), 8192):
                s = x @ st.templates[c0 : c0 + 8192].T
                j = s.argmax(axis=1)
                v = s[np.arange(len(x)), j]
                better = v > best
                best[better], arg[better] = v[better], j[better] + c0
            hit = best >= thr
            if hit.any():
                subs = sorted({str(rec_subjects[j]) for j in arg[hit]})
                findings.append(
                    Finding(
                        NAME,
                        "high",
                        art.name,
                        f"{loc} ({how})",
                        f"{int(hit.sum())} of {len(x)} row(s) match templates of {len(subs)} "
                        f"vault subject(s) under {mname} (best cosine {best.max():.3f}; "
                        f"impostor threshold {thr:.3f}, false-match rate "
                        f"{ctx.policy.templates['fmr']:g} per row)",
                        tuple(subs[:100]),
                        round(float(best.max()), 4),
                    )
                )
    return findings
