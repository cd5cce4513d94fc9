"""`facelab bench`: the 1:1 verification protocol, end to end, into report.json.

Protocol (the documented lab's task 1): the enrolment is each subject's passport image,
the probe each gate capture. Genuine pairs: every (passport, gate) pair of one subject.
Impostor pairs: every cross-subject (passport, gate) pair, all N x M of them, scored in
blocks and reduced exactly (``lab.bench._scoring``).

Reported: FNMR at FMR 1e-2 ... 1e-6 with thresholds, Wilson 95% intervals and the rule
of three; EER and its threshold; AUC; d'; the DET curve; per group (nationality, sex,
age band) the FMR over the group's own impostor pairs and the FNMR, at the global
FMR = 1e-3 threshold, with max/min ratios (NISTIR 8280); the NIST-style impostor
subsets (same sex, same age band, same nationality) with their own FNMR at FMR and EER;
template size, extraction time per image and comparisons per second.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from lab.bench._dlib import DlibMatcher
from lab.bench._matcher import Matcher
from lab.bench._metrics import FMR_TARGETS, auc, d_prime, det_curve, eer, fnmr_at_fmr
from lab.bench._scoring import score_pairs, score_tiles
from lab.errors import BadInputError
from lab.synth import CAPTURE_YEAR

GROUP_FMR = 1e-3


@dataclass(frozen=True)
class Sample:
    """One image as the benchmark needs it (from a dataset directory or the vault)."""

    subject: str
    kind: str  # passport | gate
    image: np.ndarray  # RGB uint8
    landmarks: np.ndarray  # (5, 2)
    nationality: str
    sex: str
    birth_year: int


def age_band(birth_year: int) -> str:
    age = CAPTURE_YEAR - birth_year
    lo = min(max(age // 10 * 10, 10), 70)
    return f"{lo}-{lo + 9}" if lo < 70 else "70+"


def bootstrap_fnmr(
    scores: np.ndarray, subject: np.ndarray, threshold: float, *, rounds: int = 1000, seed: int = 0
) -> list[float]:
    """95% percentile interval of FNMR at a fixed threshold, resampling subjects (a
    subject's gate captures are correlated, so captures are not resampled alone)."""
    if len(scores) == 0:
        return [math.nan, math.nan]
    subjects, inv = np.unique(subject, return_inverse=True)
    misses = np.bincount(inv, weights=(scores < threshold)).astype(np.float64)
    tries = np.bincount(inv).astype(np.float64)
    rng = np.random.default_rng(seed)
    pick = rng.integers(0, len(subjects), (rounds, len(subjects)))
    rates = misses[pick].sum(1) / tries[pick].sum(1)
    return [float(np.quantile(rates, 0.025)), float(np.quantile(rates, 0.975))]


def wilson(failures: int, n: int, z: float = 1.96) -> tuple[float, float]:
    if n == 0:
        return math.nan, math.nan
    p = failures / n
    den = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / den
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / den
    return max(0.0, centre - half), min(1.0, centre + half)


def run_benchmark(
    samples: Sequence[Sample],
    matcher: Matcher | DlibMatcher,
    *,
    progress: Callable[[int], None] | None = None,
    scorer: Callable = score_pairs,
) -> dict:
    """Run the protocol on ``samples`` with ``matcher``; ``scorer`` is ``score_pairs``
    in-process or ``score_pairs_on_cluster`` bound to a Dask client."""
    # one enrolment per subject (its first passport image): a second passport of the
    # same subject would otherwise be scored against that subject's probes as an impostor
    enrol, row_of, extra = [], {}, 0
    for s in samples:
        if s.kind != "passport":
            continue
        if s.subject in row_of:
            extra += 1
            continue
        row_of[s.subject] = len(enrol)
        enrol.append(s)
    probes = [s for s in samples if s.kind == "gate"]
    gen_row = np.array([row_of.get(s.subject, -1) for s in probes], np.int64)
    if not enrol or not probes or (gen_row < 0).all():
        raise BadInputError(
            "no genuine pairs: the data needs passport and gate images of the same subjects"
        )
    ext_e = matcher.extract(
        [s.image for s in enrol], [s.landmarks for s in enrol], progress=progress
    )
    ext_p = matcher.extract(
        [s.image for s in probes], [s.landmarks for s in probes], progress=progress
    )
    t0 = time.perf_counter()
    ss = scorer(ext_e.templates, ext_p.templates, gen_row)
    seconds = time.perf_counter() - t0
    n_pairs = len(enrol) * len(probes)
    has = np.nonzero(gen_row >= 0)[0]
    gen_scores = np.einsum("ij,ij->i", ext_e.templates[gen_row[has]], ext_p.templates[has])
    gen_subject = gen_row[has]
    points = []
    for a in FMR_TARGETS:
        op = fnmr_at_fmr(ss, a)
        lo, hi = wilson(op.false_non_matches, ss.n_genuine)
        points.append(
            {
                "fmr_target": a,
                "threshold": op.threshold,
                "fnmr": op.fnmr,
                "fnmr_ci95": [lo, hi],
                "fnmr_ci95_bootstrap": bootstrap_fnmr(gen_scores, gen_subject, op.threshold),
                "fmr": op.fmr,
                "estimable": op.estimable,
            }
        )
    e, et = eer(ss)
    t, fmr, fnmr = det_curve(ss)
    hist = _histograms(ss)
    # demographic differentials (NISTIR 8280): per group, FMR over the impostor pairs
    # within the group and FNMR, both at the global threshold of FMR = GROUP_FMR; and
    # NIST-style impostor subsets (same sex, same age band, same nationality)
    thr = fnmr_at_fmr(ss, GROUP_FMR).threshold
    groups, subsets = {}, {}
    del has, gen_scores
    for key, fn in (
        ("nationality", lambda s: s.nationality),
        ("sex", lambda s: s.sex),
        ("age_band", lambda s: age_band(s.birth_year)),
    ):
        le = np.array([fn(s) for s in enrol])
        lp = np.array([fn(s) for s in probes])
        per, tiles = {}, []
        for g in sorted(set(le) | set(lp)):
            ie, ip = np.nonzero(le == g)[0], np.nonzero(lp == g)[0]
            local = {int(r): k for k, r in enumerate(ie)}
            gr = np.array([local.get(int(gen_row[j]), -1) for j in ip], np.int64)
            tiles.append((ext_e.templates[ie], ext_p.templates[ip], gr))
            s_g = (
                ext_e.templates[ie] @ ext_p.templates[ip].T
                if len(ie) and len(ip)
                else np.empty((0, 0), np.float32)
            )
            gmask = np.zeros(s_g.shape, bool)
            has_g = np.nonzero(gr >= 0)[0]
            gmask[gr[has_g], has_g] = True
            n_imp_g = int(s_g.size - len(has_g))
            fm = int(((s_g >= thr) & ~gmask).sum())
            fnm = int((s_g[gr[has_g], has_g] < thr).sum())
            per[str(g)] = {
                "enrolments": len(ie),
                "probes": len(ip),
                "impostor_pairs": n_imp_g,
                "genuine_pairs": len(has_g),
                "fmr": fm / n_imp_g if n_imp_g else None,
                "fmr_estimable": n_imp_g >= 3 / GROUP_FMR,
                "fnmr": fnm / len(has_g) if len(has_g) else None,
                "fnmr_ci95": list(wilson(fnm, len(has_g))) if len(has_g) else None,
            }
        fmrs = [v["fmr"] for v in per.values() if v["fmr"] is not None]
        fnmrs = [v["fnmr"] for v in per.values() if v["fnmr"] is not None]
        groups[key] = {"groups": per, "fmr_max_min": _ratio(fmrs), "fnmr_max_min": _ratio(fnmrs)}
        sub = score_tiles(tiles, thresholds=[thr])
        if sub.n_genuine and sub.n_impostor:
            op = fnmr_at_fmr(sub, GROUP_FMR)
            subsets[f"same_{key}"] = {
                "impostor_pairs": sub.n_impostor,
                "eer": eer(sub)[0],
                "fnmr_at_fmr": {
                    str(a): fnmr_at_fmr(sub, a).fnmr
                    for a in FMR_TARGETS
                    if fnmr_at_fmr(sub, a).estimable
                },
                "fmr_at_global_threshold": sub.imp_ge(thr) / sub.n_impostor,
                "threshold_at_fmr": op.threshold,
            }
    return {
        "protocol": {
            "enrolments": len(enrol),
            "probes": len(probes),
            "subjects": len(row_of),
            "genuine_pairs": ss.n_genuine,
            "impostor_pairs": ss.n_impostor,
            "passport_images_not_enrolled": extra,
        },
        "model": {
            **matcher.spec,
            "template_bytes": ext_e.template_bytes,
            "extraction_ms_per_image": 1000
            * (ext_e.seconds_per_image + ext_p.seconds_per_image)
            / 2,
        },
        "operating_points": points,
        "eer": {"value": e, "threshold": et},
        "auc": auc(ss),
        "d_prime": d_prime(ss),
        "speed": {
            "comparisons": n_pairs,
            "scoring_seconds": seconds,
            "comparisons_per_second": n_pairs / seconds if seconds > 0 else None,
        },
        "groups_at_fmr": {"fmr": GROUP_FMR, "threshold": thr, **groups},
        "impostor_subsets": subsets,
        "det": {"threshold": t.tolist(), "fmr": fmr.tolist(), "fnmr": fnmr.tolist()},
        "histogram": hist,
        "intervals": "fnmr_ci95: Wilson score interval; fnmr_ci95_bootstrap: 1,000 "
        "resamples of subjects at the fixed threshold",
    }


def _histograms(ss, bins: int = 200) -> dict:
    """Genuine and impostor score densities on a common grid (for the plot)."""
    from lab.bench._kernels import NBINS

    lo = min(float(ss.genuine[0]), -1 + np.nonzero(ss.counts)[0][0] * 2 / NBINS)
    hi = max(float(ss.genuine[-1]), -1 + (np.nonzero(ss.counts)[0][-1] + 1) * 2 / NBINS)
    edges = np.linspace(lo, hi, bins + 1)
    g, _ = np.histogram(ss.genuine, edges, density=True)
    centres_fine = -1 + (np.arange(NBINS) + 0.5) * 2 / NBINS
    imp, _ = np.histogram(centres_fine, edges, weights=ss.counts)
    imp = imp / max(imp.sum() * (edges[1] - edges[0]), 1e-12)
    return {
        "centres": ((edges[:-1] + edges[1:]) / 2).tolist(),
        "genuine": g.tolist(),
        "impostor": imp.tolist(),
    }


def _ratio(vals: list[float]) -> float | None:
    """max/min of a rate across groups; None when a group has no error at all."""
    if not vals or min(vals) == 0:
        return None
    return max(vals) / min(vals)


def samples_from_dataset(path) -> list[Sample]:
    import cv2

    from lab.vault.dataset import read_dataset

    out = []
    for it in read_dataset(path):
        r = it.row
        img = cv2.imdecode(np.frombuffer(it.png, np.uint8), cv2.IMREAD_COLOR_RGB)
        lm = np.array([[float(r[f"lm{i}_x"]), float(r[f"lm{i}_y"])] for i in range(5)], np.float32)
        out.append(
            Sample(
                r["subject_id"],
                r["kind"],
                img,
                lm,
                r["nationality"],
                r["sex"],
                int(r["birth_year"]),
            )
        )
    return out


def summary_table(report: dict) -> str:
    lines = [
        f"model {report['model']['name']}@{report['model']['version']}: "
        f"{report['protocol']['genuine_pairs']:,} genuine, "
        f"{report['protocol']['impostor_pairs']:,} impostor pairs",
        f"  {'FMR':>8} {'FNMR':>9} {'95% CI':>19} {'threshold':>11}",
    ]
    for p in report["operating_points"]:
        ci = (
            "not estimable"
            if not p["estimable"]
            else f"[{p['fnmr_ci95'][0]:.4f}, {p['fnmr_ci95'][1]:.4f}]"
        )
        lines.append(
            f"  {p['fmr_target']:>8.0e} {p['fnmr']:>9.5f} {ci:>19} {p['threshold']:>11.6f}"
        )
    lines.append(
        f"  EER {report['eer']['value']:.4f} at {report['eer']['threshold']:.6f}; "
        f"AUC {report['auc']:.4f}; d' {report['d_prime']:.3f}"
    )
    sp = report["speed"]
    lines.append(
        f"  {sp['comparisons_per_second'] or 0:,.0f} comparisons/s; "
        f"{report['model']['template_bytes']} bytes per template; "
        f"{report['model']['extraction_ms_per_image']:.2f} ms per image"
    )
    for key in ("nationality", "sex", "age_band"):
        g = report["groups_at_fmr"][key]
        f = "n/a" if g["fmr_max_min"] is None else f"{g['fmr_max_min']:.2f}"
        n = "n/a" if g["fnmr_max_min"] is None else f"{g['fnmr_max_min']:.2f}"
        lines.append(f"  by {key:<11} at the FMR 1e-3 threshold: FMR max/min {f}, FNMR max/min {n}")
    return "\n".join(lines)
