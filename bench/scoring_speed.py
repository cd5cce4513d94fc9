"""Scoring core speed, against baselines measured in the same run.

Usage: python bench/scoring_speed.py [--n 20000] [--d 512] [--big]
Needs scikit-learn and pyeer for rows 3-4 (benchmark-only: `pip install scikit-learn
pyeer`, never project dependencies); rows without them are skipped.

1. all-pairs scoring + exact reduction vs numpy's GEMM alone on the same shapes
   (target: >= 70% of the GEMM's comparisons/s)
2. exact FNMR@FMR (five points) and EER from 10M impostor + 1M genuine scores:
   facelab's reduction vs sklearn.metrics.roc_curve-based code and vs pyeer
   (targets: >= 30x and >= 300x faster, identical values)
3. --big: 100k x 100k templates at d=512 (1e10 comparisons), time and peak memory
   (target: < 2 GB)
"""

from __future__ import annotations

import argparse
import math
import resource
import time

import numpy as np

from lab.bench import FMR_TARGETS, eer, fnmr_at_fmr, reduce_scores, score_pairs


def templates(n: int, m: int, d: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    e = rng.standard_normal((n, d), dtype=np.float32)
    e /= np.linalg.norm(e, axis=1, keepdims=True)
    subj = rng.integers(0, n, m)
    p = e[subj] + 0.9 * rng.standard_normal((m, d), dtype=np.float32) / math.sqrt(d) * 8
    p /= np.linalg.norm(p, axis=1, keepdims=True)
    return e, p.astype(np.float32), subj.astype(np.int64)


def gemm_rate(e, p, block_elems: int) -> float:
    b = max(1, block_elems // e.shape[0])
    t = time.perf_counter()
    for j in range(0, p.shape[0], b):
        s = e @ p[j : j + b].T
        del s
    return e.shape[0] * p.shape[0] / (time.perf_counter() - t)


def roc_based(gen, imp):
    from sklearn.metrics import roc_curve

    y = np.concatenate([np.ones(len(gen)), np.zeros(len(imp))])
    s = np.concatenate([gen, imp])
    fpr, tpr, _ = roc_curve(y, s, drop_intermediate=False)
    out = {}
    g = len(gen)
    for a in FMR_TARGETS:  # the largest FPR not above the target, as a count of misses
        i = np.searchsorted(fpr, a, "right") - 1
        out[a] = round((1 - tpr[i]) * g)
    fnr = 1 - tpr
    i = np.nonzero(fnr > fpr)[0][-1]  # the crossing, as lab.bench._metrics defines it
    out["eer"] = (fpr[i] + fnr[i]) / 2
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=20000)
    ap.add_argument("--d", type=int, default=512)
    ap.add_argument("--big", action="store_true")
    args = ap.parse_args()
    rows = []
    if args.big:  # alone in its process, so that the peak memory is its own
        big(rows)
        _print(rows)
        return
    e, p, subj = templates(args.n, args.n, args.d)
    score_pairs(e[:100], p[:100], subj[:100] % 100)  # compile the kernel first
    g = gemm_rate(e, p, 8 << 20)
    t = time.perf_counter()
    ss = score_pairs(e, p, subj)
    ours = args.n * args.n / (time.perf_counter() - t)
    rows.append((f"GEMM only, {args.n}x{args.n}, d={args.d}", f"{g / 1e6:,.0f} M/s", "1.00x"))
    rows.append(
        (
            "all-pairs scoring + exact reduction",
            f"{ours / 1e6:,.0f} M/s",
            f"{ours / g:.2f}x (target >= 0.70)",
        )
    )
    op = fnmr_at_fmr(ss, 1e-6)
    rows.append(("  (FNMR@1e-6 of this run)", f"{op.fnmr:.5f}", f"threshold {op.threshold:.6f}"))

    rng = np.random.default_rng(1)
    gen = rng.normal(0.55, 0.12, 1_000_000).astype(np.float32)
    imp = rng.normal(0.0, 0.09, 10_000_000).astype(np.float32)
    reduce_scores(gen[:10], imp[:10])
    t = time.perf_counter()
    ss2 = reduce_scores(gen, imp)
    vals = {a: fnmr_at_fmr(ss2, a).false_non_matches for a in FMR_TARGETS}
    vals["eer"] = eer(ss2)[0]
    t_ours = time.perf_counter() - t
    rows.append(("exact FNMR@FMR x5 + EER, 10M+1M scores", f"{t_ours:.2f} s", "1.00x"))
    try:
        t = time.perf_counter()
        ref = roc_based(gen, imp)
        t_roc = time.perf_counter() - t
        same = all(ref[a] == vals[a] for a in FMR_TARGETS)
        same_eer = abs(ref["eer"] - vals["eer"]) < 1e-12
        rows.append(
            (
                "  sklearn roc_curve-based",
                f"{t_roc:.2f} s",
                f"{t_roc / t_ours:.0f}x slower; identical FNMR counts: {same}, EER: {same_eer}",
            )
        )
    except ImportError:
        rows.append(("  sklearn roc_curve-based", "skipped", "pip install scikit-learn"))
    try:
        from pyeer.eer_info import get_eer_stats

        t = time.perf_counter()
        get_eer_stats(gen.astype(np.float64), imp.astype(np.float64))
        t_pyeer = time.perf_counter() - t
        rows.append(
            ("  pyeer get_eer_stats", f"{t_pyeer:.2f} s", f"{t_pyeer / t_ours:.0f}x slower")
        )
    except ImportError:
        rows.append(("  pyeer get_eer_stats", "skipped", "pip install pyeer"))

    _print(rows)


def big(rows: list) -> None:
    e, p, subj = templates(100_000, 100_000, 512, seed=2)
    score_pairs(e[:100], p[:100], subj[:100] % 100)
    t = time.perf_counter()
    ss = score_pairs(e, p, subj)
    tb = time.perf_counter() - t
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    rows.append(
        (
            "1e10 comparisons (100k x 100k, d=512)",
            f"{tb:.0f} s",
            f"peak RSS {peak:.2f} GiB incl. 0.4 GiB of templates (target < 2); "
            f"{1e10 / tb / 1e6:.0f} M/s; FNMR@1e-6 {fnmr_at_fmr(ss, 1e-6).fnmr:.5f}",
        )
    )


def _print(rows: list) -> None:
    w = max(len(r[0]) for r in rows)
    for name, v, ratio in rows:
        print(f"{name:<{w}}  {v:>12}  {ratio}")


if __name__ == "__main__":
    main()
