"""Memorisation: a membership-inference test at the level of the person.

For an exported embedding model (one that comes with its model.json), subjects of the
tenant's training split are compared with held-out subjects (the other splits; the
vault's split is a keyed hash of the person, so both are random samples of the same
population). Per subject, two signals under the model: its genuine score (mean cosine
of its passport photo to its gate captures) and its margin over the nearest other
subject (genuine minus the best impostor cosine). A model that memorised its training
people scores them higher than strangers. Reported as SACRO-ML reports its attacks:
AUC with a one-sided Mann-Whitney p-value, and the TPR at FPR 1e-3 (the threshold is
the held-out quantile, so its resolution is 1 / held-out subjects). The decision rests
on TPR at low FPR as well as on AUC, each only when significant.
"""

from __future__ import annotations

import math

import numpy as np
from facelab.gates.exporting._types import Artifact, Finding, ScanContext

NAME = "memorisation"


def auc_p(pos: np.ndarray, neg: np.ndarray) -> tuple[float, float]:
    """AUC = P(pos > neg) (ties half) and its one-sided p-value (normal approximation
    of the Mann-Whitney U statistic, tie-corrected)."""
    n1, n2 = len(pos), len(neg)
    allv = np.concatenate([pos, neg])
    order = allv.argsort(kind="mergesort")
    ranks = np.empty(len(allv))
    sorted_v = allv[order]
    i = 0
    ties = 0.0
    while i < len(allv):
        j = i
        while j + 1 < len(allv) and sorted_v[j + 1] == sorted_v[i]:
            j += 1
        ranks[order[i : j + 1]] = (i + j) / 2 + 1
        t = j - i + 1
        ties += t**3 - t
        i = j + 1
    u = ranks[:n1].sum() - n1 * (n1 + 1) / 2
    auc = u / (n1 * n2)
    n = n1 + n2
    var = n1 * n2 / 12 * ((n + 1) - ties / (n * (n - 1)))
    z = (u - n1 * n2 / 2) / math.sqrt(var) if var > 0 else 0.0
    return float(auc), 0.5 * math.erfc(z / math.sqrt(2))


def tpr_at(pos: np.ndarray, neg: np.ndarray, fpr: float) -> float:
    thr = np.quantile(neg, 1 - fpr, method="higher")
    return float((pos > thr).mean())


def person_scores(
    templates: np.ndarray, subjects: np.ndarray, kinds: np.ndarray
) -> dict[str, tuple[float, float]]:
    """subject -> (genuine score, margin over the nearest other subject)."""
    names = sorted(set(subjects))
    p_rows, g_rows, keep = [], [], []
    for s in names:
        p = templates[(subjects == s) & (kinds == "passport")]
        g = templates[(subjects == s) & (kinds != "passport")]
        if len(p) and len(g):
            p_rows.append(p.mean(axis=0))
            g_rows.append(g)
            keep.append(s)
    if len(keep) < 2:
        return {}
    gallery = np.stack(p_rows)
    gallery /= np.linalg.norm(gallery, axis=1, keepdims=True)
    out = {}
    for i, (s, g) in enumerate(zip(keep, g_rows, strict=True)):
        sims = g @ gallery.T  # (gates, subjects)
        genuine = float(sims[:, i].mean())
        others = np.delete(sims, i, axis=1)
        out[s] = (genuine, genuine - float(others.max(axis=1).mean()))
    return out


def detect(art: Artifact, ctx: ScanContext) -> list[Finding]:
    mname = ctx.own_models.get(art.name)
    if mname is None:
        return []
    pol = ctx.policy.memorisation
    idx = ctx.index
    train = sorted(set(idx.subjects[idx.splits == "train"]))
    held = sorted(set(idx.subjects[idx.splits != "train"]))
    cap = pol["max_subjects"]

    def sample(xs: list[str]) -> list[str]:
        return xs if len(xs) <= cap else [xs[int(i)] for i in np.linspace(0, len(xs) - 1, cap)]

    train, held = sample(train), sample(held)
    if len(held) < pol["min_held_out"] or len(train) < pol["min_held_out"]:
        ctx.notes.append(
            f"memorisation ({art.name}): not estimable, {len(train)} training "
            f"and {len(held)} held-out subjects (need {pol['min_held_out']})"
        )
        return []
    # the model's outputs on the vault's photos, from its confined behavioural run
    st = idx.templates[mname]
    keep = np.isin(idx.subjects[st.records], list(set(train) | set(held)))
    st = type(st)(st.records[keep], st.templates[keep], st.impostor_threshold)
    scores = person_scores(st.templates, idx.subjects[st.records], idx.kinds[st.records])
    results = []
    for k, signal in enumerate(("genuine score", "nearest-neighbour margin")):
        pos = np.array([scores[s][k] for s in train if s in scores])
        neg = np.array([scores[s][k] for s in held if s in scores])
        auc, p = auc_p(pos, neg)
        results.append((signal, auc, p, tpr_at(pos, neg, 1e-3), len(pos), len(neg)))
    text = "; ".join(
        f"{sig}: AUC {auc:.3f} (p = {p:.2g}), TPR {tpr:.3f} at FPR 1e-3 "
        f"(resolution {1 / nn:.1g}; {np_} training vs {nn} held-out subjects)"
        for sig, auc, p, tpr, np_, nn in results
    )
    bad = [
        r
        for r in results
        if r[2] < pol["alpha"] and (r[1] > pol["max_auc"] or r[3] > pol["max_tpr_at_fpr"])
    ]
    if bad:
        worst = max(bad, key=lambda r: r[1])
        return [
            Finding(
                NAME,
                "high",
                art.name,
                "model outputs",
                f"the model recognises its training people better than strangers: {text}",
                score=round(worst[1], 4),
            )
        ]
    ctx.notes.append(f"memorisation ({art.name}): passed; {text}")
    return []
