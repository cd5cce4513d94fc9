"""`facelab bench`: the 1:1 verification protocol, end to end, into report.json.

Protocol (the documented lab's task 1): the enrolment is each subject's passport image,
the probe each gate capture. Genuine pairs: every (passport, gate) pair of one subject.
Impostor pairs: every cross-subject (passport, gate) pair, all N x M of them, scored in
blocks and reduced exactly (``facelab.bench._scoring``). Scores are the cosine similarity
of the L2-normalised templates (for a model whose model.json says "euclidean", the
distance of unit templates is sqrt(2 - 2 cos), a monotone map: every rate is the same).

Reported (definitions and sources in ``facelab.bench._metrics`` and
``facelab.bench._uncertainty``):

* FNMR at FMR 1e-2 ... 1e-6: threshold, FNMR, FMR reached, counts, "not estimable"
  (None) by the rule of three; Wilson and subject-bootstrap intervals for FNMR and FMR
  at the threshold and a bootstrap interval for the threshold; generalized FMR/FNMR.
* FTE and FTA: enrolment and probe images the matcher gave no template for (NaN,
  infinite or all-zero output); their comparisons count as failures in the
  generalized rates (ISO/IEC 19795-1).
* EER (FVC2000) with t1, t2 and a bootstrap interval; ROCCH-EER; AUC (exact); d'.
* The DET at every point the exact counts resolve; score densities.
* Demographics (NISTIR 8280): per nationality, sex and age band the FMR (impostor
  pairs within the group) and FNMR at the global FMR = 1e-3 threshold with Wilson and
  bootstrap intervals, "too small" flags, the cross-group FMR matrix, max/min ratios
  only between estimable groups, FDR and GARBE with bootstrap intervals; the NIST-style
  impostor subsets (same sex, age band, nationality) with their own FNMR at FMR.
* Template size, extraction time per image, comparisons per second; provenance.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from facelab.bench._dlib import DlibMatcher
from facelab.bench._matcher import Matcher
from facelab.bench._metrics import (
    FMR_TARGETS,
    auc,
    d_prime,
    det_curve,
    eer,
    fnmr_at_fmr,
    jsonable,
    orientation_warning,
    rates_at,
    rocch_eer,
)
from facelab.bench._scoring import score_pairs, score_tiles
from facelab.bench._uncertainty import (
    eer_interval,
    fdr,
    garbe,
    point_intervals,
    resample_weights,
    subject_counts,
    wilson,
)
from facelab.errors import BadInputError
from facelab.synth import CAPTURE_YEAR

GROUP_FMR = 1e-3
MIN_GENUINE = 30  # a group with fewer genuine comparisons is flagged too small for FNMR
BOOTSTRAP_ROUNDS = 1000
AUC_READ_LIMIT = 50_000_000


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


def _ci(x) -> list[float] | None:
    return None if x is None else [float(x[0]), float(x[1])]


def _extract(extract, samples, progress):
    ext = extract(
        [s.image for s in samples], [s.landmarks for s in samples], progress=progress,
        failures="mark",
    )  # fmt: skip
    failed = ext.failed if ext.failed is not None else np.zeros(len(samples), bool)
    return ext, failed


def _ratio(counts: list[tuple[int, int]]) -> dict:
    """max/min of a rate over estimable groups, from (errors, comparisons) per group.
    When a group has no errors the ratio is unbounded; then its lower bound, the largest
    rate over the upper 95% Wilson bound of the smallest, is given instead."""
    if len(counts) < 2:
        return {"value": None, "lower_bound": None, "reason": "fewer than two estimable groups"}
    rates = [e / n for e, n in counts]
    if min(rates) > 0:
        return {"value": max(rates) / min(rates), "lower_bound": None, "reason": ""}
    upper = min(wilson(e, n)[1] for e, n in counts if e == 0)
    return {
        "value": None,
        "lower_bound": max(rates) / upper,
        "reason": "a group has no errors at this threshold: the ratio is at least "
        "max / (its upper 95% bound)",
    }


def run_benchmark(
    samples: Sequence[Sample],
    matcher: Matcher | DlibMatcher,
    *,
    progress: Callable[[int], None] | None = None,
    scorer: Callable = score_pairs,
    extract: Callable | None = None,
    rounds: int = BOOTSTRAP_ROUNDS,
    seed: int = 0,
) -> dict:
    """Run the protocol on ``samples`` with ``matcher``; ``scorer`` is ``score_pairs``
    in-process or ``score_pairs_on_cluster`` bound to a Dask client, ``extract``
    ``matcher.extract`` (default) or ``extract_on_cluster(client, model_dir)``. Returns
    the report as a dict of strict-JSON values (None where a number is not estimable)."""
    extract = extract or matcher.extract
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
    gen_row_all = np.array([row_of.get(s.subject, -1) for s in probes], np.int64)
    if not enrol or not probes or (gen_row_all < 0).all():
        raise BadInputError(
            "no genuine pairs: the data needs passport and gate images of the same subjects"
        )
    ext_e, fail_e = _extract(extract, enrol, progress)
    ext_p, fail_p = _extract(extract, probes, progress)
    # failures to extract: their comparisons are failed comparisons (generalized rates)
    ok_e, ok_p = np.nonzero(~fail_e)[0], np.nonzero(~fail_p)[0]
    new_row = np.full(len(enrol), -1, np.int64)
    new_row[ok_e] = np.arange(len(ok_e))
    gr_ok = gen_row_all[ok_p]
    gen_row = np.where(gr_ok >= 0, new_row[np.maximum(gr_ok, 0)], -1)
    gen_total = int((gen_row_all >= 0).sum())
    gen_failed = gen_total - int((gen_row >= 0).sum())
    imp_total = len(enrol) * len(probes) - gen_total
    E, P = ext_e.templates[ok_e], ext_p.templates[ok_p]
    enrol_ok = [enrol[i] for i in ok_e]
    probes_ok = [probes[j] for j in ok_p]
    if len(E) == 0 or len(P) == 0 or (gen_row < 0).all():
        raise BadInputError("no genuine pair left: the matcher failed on the images")
    t0 = time.perf_counter()
    ss = scorer(E, P, gen_row)
    seconds = time.perf_counter() - t0
    ss.gen_failed = gen_failed
    ss.imp_failed = imp_total - ss.n_impostor
    n_pairs = len(E) * len(P)

    # the operating points and the candidates of the bootstrap around them
    ops = [fnmr_at_fmr(ss, a) for a in FMR_TARGETS]
    e = eer(ss)
    group_op = fnmr_at_fmr(ss, GROUP_FMR)
    thr = group_op.threshold
    held = [ss.imp_values(b) for b in sorted(ss.imp_exact)]
    fixed = [o.threshold for o in ops if o.threshold is not None]
    fixed += [t for t in (e.t1, e.t2) if t is not None and math.isfinite(t)]
    cands = np.unique(
        np.concatenate(
            [np.nextafter(v, np.float32(np.inf)) for v in held]
            + [ss.gen_values(b) for b in sorted(ss.gen_exact)]
            + [np.asarray(fixed, np.float32)]
        ).astype(np.float32)
    )
    if len(cands) > 20_000:  # keep the operating thresholds, thin the rest
        keep = np.unique(np.concatenate([np.linspace(0, len(cands) - 1, 20_000).astype(int)]))
        cands = np.unique(np.concatenate([cands[keep], np.asarray(fixed, np.float32)]))

    keys = {
        "nationality": lambda s: s.nationality,
        "sex": lambda s: s.sex,
        "age_band": lambda s: age_band(s.birth_year),
    }
    labels = {}
    for key, fn in keys.items():
        names = sorted({fn(s) for s in enrol_ok} | {fn(s) for s in probes_ok})
        idx = {n: i for i, n in enumerate(names)}
        labels[key] = (
            names,
            np.array([idx[fn(s)] for s in enrol_ok], np.int64),
            np.array([idx[fn(s)] for s in probes_ok], np.int64),
        )
    # one pass per grouping (the first also gives the per-subject counts)
    counts = {
        key: subject_counts(
            E, P, gen_row, cands, threshold=thr, probe_group=pg, n_groups=len(names)
        )
        for key, (names, _, pg) in labels.items()
    }
    sc = counts["nationality"]
    w = resample_weights(len(E), rounds, seed)

    points = []
    for op in ops:
        p = {
            "fmr_target": op.fmr_target,
            "estimable": op.estimable,
            "reason": op.reason,
            "threshold": op.threshold,
            "fnmr": op.fnmr,
            "fmr": op.fmr,
            "false_non_matches": op.false_non_matches,
            "false_matches": op.false_matches,
        }
        if op.estimable:
            r = rates_at(ss, op.threshold)
            b = point_intervals(sc, w, op.threshold, op.fmr_target)
            p.update(
                {
                    "fnmr_ci95": _ci(wilson(op.false_non_matches, ss.n_genuine)),
                    "fmr_ci95": _ci(wilson(op.false_matches, ss.n_impostor)),
                    "fnmr_ci95_bootstrap": b["fnmr"],
                    "fmr_ci95_bootstrap": b["fmr"],
                    "threshold_ci95_bootstrap": b["threshold"],
                    "generalized_fnmr": r.generalized_fnmr,
                    "generalized_fmr": r.generalized_fmr,
                }
            )
        points.append(p)

    # exact when the bins holding both kinds are affordable to read (a collection pass
    # keeps their impostor scores: at most 50M values, 200 MB), else a stated bound
    mixed = (ss.gen_counts > 0) & (ss.imp_counts > 0)
    a = auc(ss, exact=int(ss.imp_counts[mixed].sum()) <= AUC_READ_LIMIT)
    fmr_c, fnmr_c = det_curve(ss)
    groups, matrices, fairness = {}, {}, {}
    for key, (names, ge, pg) in labels.items():
        groups[key], matrices[key], fairness[key] = _demographics(
            counts[key], names, ge, pg, gen_row, w, thr
        )
    subsets = _subsets(E, P, gen_row, labels, thr)
    report = {
        "protocol": {
            "enrolments": len(enrol),
            "probes": len(probes),
            "subjects": len(row_of),
            "genuine_pairs": ss.n_genuine,
            "impostor_pairs": ss.n_impostor,
            "passport_images_not_enrolled": extra,
            "score": "cosine similarity of L2-normalised templates (higher = more alike; "
            "a comparison matches when score >= threshold)",
        },
        "failures": {
            "fte": float(fail_e.mean()),
            "fta": float(fail_p.mean()),
            "failed_enrolments": int(fail_e.sum()),
            "failed_probes": int(fail_p.sum()),
            "failed_genuine_comparisons": ss.gen_failed,
            "failed_impostor_comparisons": ss.imp_failed,
        },
        "model": {
            **matcher.spec,
            "template_bytes": ext_e.template_bytes,
            "extraction_ms_per_image": 1000
            * (ext_e.seconds_per_image + ext_p.seconds_per_image)
            / 2,
        },
        "operating_points": points,
        "eer": {
            "value": e.value,
            "low": e.low,
            "high": e.high,
            "t1": e.t1,
            "t2": e.t2,
            "threshold": e.threshold,
            "ci95_bootstrap": eer_interval(sc, w) if e.value is not None else None,
            "rule": "FVC2000 (Maio et al. 2002)",
        },
        "rocch_eer": rocch_eer(ss),
        "auc": a.value,
        "auc_error_bound": a.error_bound,
        "d_prime": d_prime(ss),
        "warnings": [m for m in [orientation_warning(ss)] if m],
        "speed": {
            "comparisons": n_pairs,
            "scoring_seconds": seconds,
            "comparisons_per_second": n_pairs / seconds if seconds > 0 else None,
        },
        "groups_at_fmr": {"fmr": GROUP_FMR, "threshold": thr, **groups},
        "cross_group_fmr": matrices,
        "fairness": fairness,
        "impostor_subsets": subsets,
        "det": {"fmr": fmr_c.tolist(), "fnmr": fnmr_c.tolist()},
        "histogram": _histograms(ss),
        "intervals": "ci95: Wilson score interval (comparisons independent); "
        f"ci95_bootstrap: {rounds} resamples of enrolled subjects (Bolle et al. 2004), "
        "2.5 and 97.5 percentiles; bootstrap thresholds and EERs on the distinct scores "
        "around each operating point",
    }
    if str(matcher.spec.get("similarity", "")).startswith("euclidean"):
        # the model compares by distance: the same rates, thresholds also as distances
        # of the unit templates, d = sqrt(2 - 2 cos) (a match when d <= that)
        report["protocol"]["score"] += (
            "; model.json says euclidean: distance thresholds = sqrt(2 - 2 x cosine)"
        )
        for p in report["operating_points"]:
            t = p["threshold"]
            p["threshold_euclidean"] = None if t is None else math.sqrt(max(0.0, 2 - 2 * t))
    report["provenance"] = provenance(matcher)
    return jsonable(report)


def score_report(genuine, impostor, *, kind: str = "similarity", name: str = "scores") -> dict:
    """The report of scores computed elsewhere (no subjects: Wilson intervals only, no
    demographics). ``kind``: similarity or distance; NaN = a failed comparison."""
    from facelab.bench._scoring import reduce_scores

    # full bins from the start: the report draws the whole DET and the densities
    ss = reduce_scores(genuine, impostor, kind=kind, resolution="full")
    points = []
    for op in (fnmr_at_fmr(ss, a) for a in FMR_TARGETS):
        p = {
            "fmr_target": op.fmr_target,
            "estimable": op.estimable,
            "reason": op.reason,
            "threshold": op.threshold,
            "fnmr": op.fnmr,
            "fmr": op.fmr,
            "false_non_matches": op.false_non_matches,
            "false_matches": op.false_matches,
        }
        if op.estimable:
            r = rates_at(ss, op.threshold)
            p["fnmr_ci95"] = _ci(wilson(op.false_non_matches, ss.n_genuine))
            p["fmr_ci95"] = _ci(wilson(op.false_matches, ss.n_impostor))
            p["generalized_fnmr"], p["generalized_fmr"] = r.generalized_fnmr, r.generalized_fmr
        points.append(p)
    e, a = eer(ss), auc(ss, exact=True)
    fmr_c, fnmr_c = det_curve(ss)
    rule = "score >= threshold" if kind == "similarity" else "score <= threshold"
    n_all = ss.n_genuine + ss.gen_failed
    m_all = ss.n_impostor + ss.imp_failed
    return jsonable(
        {
            "protocol": {
                "enrolments": None,
                "probes": None,
                "genuine_pairs": ss.n_genuine,
                "impostor_pairs": ss.n_impostor,
                "score": f"{kind} scores in {ss.dtype} (a comparison matches when {rule})",
            },
            "failures": {
                "fte": None,
                "fta": None,
                "failed_genuine_comparisons": ss.gen_failed,
                "failed_impostor_comparisons": ss.imp_failed,
                "failed_comparison_rate": (
                    (ss.gen_failed + ss.imp_failed) / (n_all + m_all) if n_all + m_all else None
                ),
            },
            "model": {"name": name, "version": "scores"},
            "operating_points": points,
            "eer": {
                "value": e.value,
                "low": e.low,
                "high": e.high,
                "t1": e.t1,
                "t2": e.t2,
                "threshold": e.threshold,
                "ci95_bootstrap": None,
                "rule": "FVC2000 (Maio et al. 2002)",
            },
            "rocch_eer": rocch_eer(ss),
            "auc": a.value,
            "auc_error_bound": a.error_bound,
            "d_prime": d_prime(ss),
            "warnings": [m for m in [orientation_warning(ss)] if m],
            "speed": {"comparisons_per_second": None},
            "groups_at_fmr": {"fmr": GROUP_FMR, "threshold": None},
            "fairness": {},
            "det": {"fmr": fmr_c.tolist(), "fnmr": fnmr_c.tolist()},
            "histogram": _histograms(ss),
            "intervals": "ci95: Wilson score interval (comparisons independent)",
            "provenance": provenance(),
        }
    )


def provenance(matcher=None, dataset=None) -> dict:
    """Where the numbers come from: facelab version, date, machine, BLAS, the model's
    file digest and the dataset's manifest digest and generator seed (when known)."""
    import hashlib
    import json
    import os
    import platform
    from datetime import UTC, datetime
    from importlib import metadata
    from pathlib import Path

    def digest(path) -> str | None:
        try:
            return "sha256:" + hashlib.sha256(Path(path).read_bytes()).hexdigest()
        except OSError:
            return None

    try:
        version = metadata.version("facelab")
    except metadata.PackageNotFoundError:
        version = None
    out = {
        "facelab": version,
        "date": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "machine": f"{platform.machine()} {platform.system()} {platform.release()}, "
        f"{os.cpu_count()} CPUs, Python {platform.python_version()}, numpy {np.__version__}",
        "blas": blas_info(),
    }
    onnx_file = getattr(matcher, "onnx_file", None)
    if onnx_file is not None:
        out["model_digest"] = digest(onnx_file)
    if dataset is not None:
        d = Path(dataset)
        out["dataset"] = str(d)
        out["dataset_manifest_digest"] = digest(d / "manifest.csv")
        try:
            meta = json.loads((d / "synth.json").read_text())
            out["dataset_seed"] = meta.get("seed")
            out["dataset_generator"] = {k: v for k, v in meta.items() if k != "seed"}
        except (OSError, ValueError):
            out["dataset_seed"] = None
    return out


def blas_info() -> str:
    """The BLAS library and threads in use (threadpoolctl when installed)."""
    try:
        from threadpoolctl import threadpool_info

        try:  # it reads /proc/self/maps, which a confined job may not see
            info = threadpool_info()
        except OSError as e:
            return f"unknown ({e.strerror or e})"
        libs = [i for i in info if i.get("user_api") == "blas"]
        return (
            "; ".join(
                f"{i.get('internal_api')} {i.get('version')} ({i.get('architecture')}, "
                f"{i.get('num_threads')} threads)"
                for i in libs
            )
            or "unknown"
        )
    except ImportError:
        cfg = np.show_config(mode="dicts") if hasattr(np, "show_config") else {}
        blas = (cfg or {}).get("Build Dependencies", {}).get("blas", {})
        return f"{blas.get('name', 'unknown')} {blas.get('version', '')} (threadpoolctl absent)"


def _demographics(sc, names, ge, pg, gen_row, w, thr):
    """Per group rates at the global threshold, the cross-group FMR matrix, FDR and
    GARBE (``facelab.bench._uncertainty``), all with subject-bootstrap intervals."""
    k = len(names)
    if thr is None:
        why = "the global FMR 1e-3 threshold is not estimable"
        return {"groups": {}, "reason": why}, {"reason": why}, {"reason": why}
    onehot = np.zeros((len(ge), k))
    onehot[np.arange(len(ge)), ge] = 1
    # cross-group: rows = enrolment group, columns = probe group
    fm_cell = onehot.T @ sc.fm_group
    n_cell = onehot.T @ sc.n_group
    j = int(np.searchsorted(sc.cands, np.float32(thr), "left"))
    misses = sc.gen_lt[:, j].astype(np.float64)
    tries = sc.n_gen.astype(np.float64)
    same_fm = np.einsum("ek,ek->e", sc.fm_group, onehot)  # row e vs its own group
    same_n = np.einsum("ek,ek->e", sc.n_group, onehot)
    per = {}
    est_fmr, est_fnmr = np.zeros(k, bool), np.zeros(k, bool)
    for g, name in enumerate(names):
        n_imp, fm = int(n_cell[g, g]), int(fm_cell[g, g])
        in_g = ge == g
        n_gen, fnm = int(tries[in_g].sum()), int(misses[in_g].sum())
        est_fmr[g] = n_imp >= 3 / GROUP_FMR
        est_fnmr[g] = n_gen >= MIN_GENUINE
        with np.errstate(invalid="ignore", divide="ignore"):
            wg = w[:, in_g]
            b_fmr = (wg @ same_fm[in_g]) / (wg @ same_n[in_g])
            b_fnmr = (wg @ misses[in_g]) / (wg @ tries[in_g])
        per[str(name)] = {
            "enrolments": int(in_g.sum()),
            "probes": int((pg == g).sum()),
            "impostor_pairs": n_imp,
            "genuine_pairs": n_gen,
            "fmr": fm / n_imp if n_imp else None,
            "fmr_estimable": bool(est_fmr[g]),
            "fmr_ci95": _ci(wilson(fm, n_imp)),
            "fmr_ci95_bootstrap": _pct(b_fmr),
            "fnmr": fnm / n_gen if n_gen else None,
            "fnmr_estimable": bool(est_fnmr[g]),
            "fnmr_ci95": _ci(wilson(fnm, n_gen)),
            "fnmr_ci95_bootstrap": _pct(b_fnmr),
            "too_small": not (est_fmr[g] and est_fnmr[g]),
        }
    fmrs = np.array([v["fmr"] if v["fmr"] is not None else np.nan for v in per.values()])
    fnmrs = np.array([v["fnmr"] if v["fnmr"] is not None else np.nan for v in per.values()])
    fm_n = [(int(fm_cell[g, g]), int(n_cell[g, g])) for g in range(k) if est_fmr[g]]
    fnm_n = [
        (int(misses[ge == g].sum()), int(tries[ge == g].sum())) for g in range(k) if est_fnmr[g]
    ]
    groups = {
        "groups": per,
        "fmr_max_min": _ratio(fm_n),
        "fnmr_max_min": _ratio(fnm_n),
        "min_genuine": MIN_GENUINE,
        "min_impostor": math.ceil(3 / GROUP_FMR),
    }
    with np.errstate(invalid="ignore", divide="ignore"):
        matrix = {
            "enrolment_groups": [str(n) for n in names],
            "probe_groups": [str(n) for n in names],
            "fmr": (fm_cell / n_cell).tolist(),
            "impostor_pairs": n_cell.astype(np.int64).tolist(),
            "false_matches": fm_cell.astype(np.int64).tolist(),
        }
    both = est_fmr & est_fnmr
    f_now = fdr(fmrs[both], fnmrs[both])
    g_now = garbe(fmrs[both], fnmrs[both])
    # bootstrap replicates of the per-group rates, then of FDR and GARBE
    sel = np.nonzero(both)[0]
    rep_f, rep_g = [], []
    if len(sel) >= 2:
        in_sel = onehot[:, sel]
        with np.errstate(invalid="ignore", divide="ignore"):
            bf = (w @ (in_sel * same_fm[:, None])) / (w @ (in_sel * same_n[:, None]))
            bn = (w @ (in_sel * misses[:, None])) / (w @ (in_sel * tries[:, None]))
        for r in range(len(w)):  # a loop over replicates, not scores
            if np.isfinite(bf[r]).all() and np.isfinite(bn[r]).all():
                rep_f.append(fdr(bf[r], bn[r]))
                gv = garbe(bf[r], bn[r])
                rep_g.append(np.nan if gv is None else gv)
    fair = {
        "groups_used": [str(names[i]) for i in sel],
        "fdr": f_now,
        "fdr_ci95_bootstrap": _pct(np.asarray(rep_f, np.float64)),
        "garbe": g_now,
        "garbe_ci95_bootstrap": _pct(np.asarray(rep_g, np.float64)),
        "alpha": 0.5,
        "reason": "" if len(sel) >= 2 else "fewer than two groups estimable for FMR and FNMR",
    }
    return groups, matrix, fair


def _pct(x: np.ndarray) -> list[float] | None:
    x = np.asarray(x, np.float64)
    x = x[np.isfinite(x)]
    if len(x) == 0:
        return None
    return [float(np.quantile(x, 0.025)), float(np.quantile(x, 0.975))]


def _subsets(E, P, gen_row, labels, thr) -> dict:
    """NIST-style impostor subsets: only same-group impostor pairs, their own FNMR at
    FMR and EER."""
    out = {}
    for key, (names, ge, pg) in labels.items():
        tiles = []
        for g in range(len(names)):
            ie, ip = np.nonzero(ge == g)[0], np.nonzero(pg == g)[0]
            local = np.full(len(E), -1, np.int64)
            local[ie] = np.arange(len(ie))
            gr = np.where(gen_row[ip] >= 0, local[np.maximum(gen_row[ip], 0)], -1)
            tiles.append((E[ie], P[ip], gr))
        sub = score_tiles(tiles, thresholds=[thr] if thr is not None else [])
        if not (sub.n_genuine and sub.n_impostor):
            continue
        ops = {a: fnmr_at_fmr(sub, a) for a in FMR_TARGETS}
        out[f"same_{key}"] = {
            "impostor_pairs": sub.n_impostor,
            "eer": eer(sub).value,
            "fnmr_at_fmr": {str(a): o.fnmr for a, o in ops.items() if o.estimable},
            "fmr_at_global_threshold": rates_at(sub, thr).fmr if thr is not None else None,
            "threshold_at_fmr": ops[GROUP_FMR].threshold,
        }
    return out


def _histograms(ss, bins: int | None = None) -> dict:
    """Genuine and impostor score densities on one grid, counted exactly at its edges."""
    lo = min(_first(ss, "gen"), _first(ss, "imp"))
    hi = max(_last(ss, "gen"), _last(ss, "imp"))
    if not (math.isfinite(lo) and math.isfinite(hi)) or hi <= lo:
        return {"edges": [], "genuine": [], "impostor": []}
    if bins is None:  # fewer bins for few genuine scores: a smooth density
        bins = int(np.clip(2 * math.sqrt(ss.n_genuine), 20, 120))
    dt = ss.dtype.type  # the scores' own precision: float64 scores beyond float32's range
    with np.errstate(over="ignore", invalid="ignore"):
        edges = np.linspace(lo, hi, bins + 1).astype(dt)
    if not np.isfinite(edges).all():  # a range wider than the largest float
        return {"edges": [], "genuine": [], "impostor": []}
    edges[-1] = np.nextafter(dt(hi), dt(np.inf))
    edges = np.unique(edges)  # the precision may merge edges of a very narrow range
    if ss.cheap:
        imp_ge, gen_lt = ss.counts_at(edges)
    else:  # reading bins costs a scoring pass: place whole bins by their lowest score
        low = ss.binning.lower_values(ss.dtype)
        imp_ge = np.array([ss.imp_counts[low >= e].sum() for e in edges])
        gen_lt = _gen_lt(ss, edges)
    width = np.diff(edges.astype(np.float64))
    imp = -np.diff(imp_ge) / max(ss.n_impostor, 1) / width
    gen = np.diff(gen_lt) / max(ss.n_genuine, 1) / width
    return {"edges": edges.tolist(), "genuine": gen.tolist(), "impostor": imp.tolist()}


def _gen_lt(ss, edges) -> np.ndarray:
    """#genuine < each edge from the genuine values (all held for GEMM scores)."""
    g = np.sort(np.concatenate([ss.gen_values(b) for b in sorted(ss.gen_exact)] + [[]]))
    return np.searchsorted(g, edges, "left")


def _first(ss, which: str) -> float:
    counts = ss.gen_counts if which == "gen" else ss.imp_counts
    nz = np.nonzero(counts)[0]
    if len(nz) == 0:
        return math.inf
    ss.ensure([nz[0]])
    v = ss.gen_values(nz[0]) if which == "gen" else ss.imp_values(nz[0])
    return float(v[0])


def _last(ss, which: str) -> float:
    counts = ss.gen_counts if which == "gen" else ss.imp_counts
    nz = np.nonzero(counts)[0]
    if len(nz) == 0:
        return -math.inf
    ss.ensure([nz[-1]])
    v = ss.gen_values(nz[-1]) if which == "gen" else ss.imp_values(nz[-1])
    return float(v[-1])


def samples_from_dataset(path) -> list[Sample]:
    import cv2
    from facelab.vault.dataset import read_dataset

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


def num(v, spec: str, none: str = "not estimable") -> str:
    """A number, or the words saying why there is none (never a made-up number)."""
    return none if v is None else format(v, spec)


def ci_text(ci, spec: str = ".4f") -> str:
    return "n/a" if ci is None else f"[{ci[0]:{spec}}, {ci[1]:{spec}}]"


def _ratio_text(r: dict) -> str:
    if r["value"] is not None:
        return f"{r['value']:.2f}"
    if r.get("lower_bound") is not None:
        return f">= {r['lower_bound']:.2f} (a group has no errors)"
    return f"n/a ({r['reason']})"


def summary_table(report: dict) -> str:
    lines = [
        f"model {report['model']['name']}@{report['model']['version']}: "
        f"{report['protocol']['genuine_pairs']:,} genuine, "
        f"{report['protocol']['impostor_pairs']:,} impostor pairs; "
        f"FTE {num(report['failures']['fte'], '.4f', 'n/a')}, "
        f"FTA {num(report['failures']['fta'], '.4f', 'n/a')}",
        f"  {'FMR':>8} {'FNMR':>13} {'95% CI':>19} {'threshold':>13}",
    ]
    for p in report["operating_points"]:
        if not p["estimable"]:
            lines.append(f"  {p['fmr_target']:>8.0e} {'not estimable':>13}  ({p['reason']})")
            continue
        lines.append(
            f"  {p['fmr_target']:>8.0e} {p['fnmr']:>13.5f} "
            f"{ci_text(p.get('fnmr_ci95_bootstrap') or p.get('fnmr_ci95')):>19} "
            f"{p['threshold']:>13.6g}"
        )
    e = report["eer"]
    lines.append(
        f"  EER {num(e['value'], '.4f')} {ci_text(e['ci95_bootstrap'])} (FVC2000, "
        f"t1 {num(e['t1'], '.6g', 'n/a')}); ROCCH-EER {num(report['rocch_eer'], '.4f')}; "
        f"AUC {num(report['auc'], '.4f')}; d' {num(report['d_prime'], '.3f', 'undefined')}"
    )
    sp, m = report["speed"], report["model"]
    if sp["comparisons_per_second"] is not None:
        lines.append(
            f"  {sp['comparisons_per_second']:,.0f} comparisons/s; "
            f"{m['template_bytes']} bytes per template; "
            f"{m['extraction_ms_per_image']:.2f} ms per image"
        )
    for key in ("nationality", "sex", "age_band"):
        if key not in report["groups_at_fmr"]:
            continue
        g = report["groups_at_fmr"][key]
        if "fmr_max_min" not in g:
            lines.append(f"  by {key}: {g.get('reason', '')}")
            continue
        f, n = (_ratio_text(g[k]) for k in ("fmr_max_min", "fnmr_max_min"))
        fa = report["fairness"][key]
        lines.append(
            f"  by {key:<11} at the FMR 1e-3 threshold: FMR max/min {f}, FNMR max/min {n}; "
            f"FDR {num(fa.get('fdr'), '.4f', 'n/a')}, GARBE {num(fa.get('garbe'), '.4f', 'n/a')}"
        )
    for w in report.get("warnings", []):
        lines.append(f"  warning: {w}")
    return "\n".join(lines)
