"""What the PCA head's differential privacy costs and what it stops (issue 20).

Usage: python bench/trainer_privacy.py [--identities N] [--draws K] [--epsilons 16,8,4,2,1]

Utility: a synthetic dataset (seed 11, 2 gate captures), split by subject as the demo's
vault does (73% of subjects train the head), the CNN's templates, and the 32-d head of
``facelab.jobs.trainers.head_basis`` at each epsilon (delta 1e-6); FNMR at FMR 1e-3 and
the EER (minimum over thresholds of max(FMR, FNMR), a grid of every 7th score) of cosine
scores of all pairs of the test subjects, mean over ``--draws`` noise draws. Baselines
measured in the same run: the raw 128-d templates, the noiseless head (epsilon 1e12)
and a random 32-d orthonormal projection (what a head that learnt nothing gives).

Attack: the steering model a red team used, simulated in template space over the
training subjects: 7 decoy dimensions of high variance for everyone, and for one target
subject only, its 8x8 thumbnail (mean-removed, permuted by a key the attacker holds) in
64 other dimensions. The attacker takes the head's projector restricted to the thumbnail
dimensions, its top eigenvector, un-permutes it, and compares it with every training
subject's thumbnail; printed: the mean |correlation| with the target, with the best
other subject, and how often the target ranks first (20 targets).
"""

from __future__ import annotations

import argparse
import csv
import shutil
import tempfile
from pathlib import Path

import cv2
import numpy as np
from facelab.bench._matcher import Matcher
from facelab.jobs.trainers import head_basis
from facelab.synth import SynthConfig, write_dataset

MODEL = Path(__file__).resolve().parents[1] / "models" / "cnn"
QUIET = 1e12


def load(ds: Path):
    with open(ds / "manifest.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    ims = [cv2.imread(str(ds / r["path"]))[..., ::-1].copy() for r in rows]
    lms = [
        np.array([[float(r[f"lm{i}_x"]), float(r[f"lm{i}_y"])] for i in range(5)], np.float32)
        for r in rows
    ]
    subjects = np.array([r["subject_id"] for r in rows])
    gray = [cv2.cvtColor(im, cv2.COLOR_RGB2GRAY) for im in ims]
    thumbs = np.array([cv2.resize(g, (8, 8), interpolation=cv2.INTER_AREA).ravel() for g in gray])
    thumbs = thumbs.astype(float) - thumbs.mean(axis=1, keepdims=True)
    return ims, lms, subjects, thumbs


def verify(t: np.ndarray, subjects: np.ndarray) -> tuple[float, float]:
    """FNMR at FMR 1e-3 and EER of cosine scores of all pairs of rows."""
    u = t / np.linalg.norm(t, axis=1, keepdims=True)
    iu = np.triu_indices(len(u), 1)
    s = (u @ u.T)[iu]
    same = subjects[iu[0]] == subjects[iu[1]]
    gen, imp = s[same], np.sort(s[~same])[::-1]
    thr = imp[int(1e-3 * len(imp))]
    grid = np.sort(np.concatenate([gen, imp]))[::7]
    eer = min(max((imp >= x).mean(), (gen < x).mean()) for x in grid)
    return float((gen <= thr).mean()), float(eer)


def attack(subjects, thumbs, eps, seed, target):
    rng = np.random.default_rng(seed)
    key = np.random.default_rng(10_000 + seed).permutation(64)
    t = np.zeros((len(subjects), 128))
    t[:, :7] = rng.normal(0, 1, (len(subjects), 7))
    mine = subjects == target
    t[mine] = 0.0
    t[mine, 7:71] = thumbs[mine][:, key] * 1000.0
    t[:, 71:] += rng.normal(0, 1e-3, (len(subjects), 57))
    w, _ = head_basis(t, subjects, 32, eps, 1e-6, rng)
    p = w.astype(float) @ w.T.astype(float)
    decoded = np.empty(64)
    decoded[key] = np.linalg.eigh(p[7:71, 7:71])[1][:, -1]
    people = np.unique(subjects)
    c = {s: abs(np.corrcoef(decoded, thumbs[subjects == s].mean(0))[0, 1]) for s in people}
    best_other = max(v for s, v in c.items() if s != target)
    return c[target], best_other


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--identities", type=int, default=200)
    ap.add_argument("--draws", type=int, default=10)
    ap.add_argument("--epsilons", default="16,8,4,2,1")
    args = ap.parse_args()
    epsilons = [float(x) for x in args.epsilons.split(",")]
    tmp = Path(tempfile.mkdtemp(prefix="facelab-dp-"))
    try:
        write_dataset(SynthConfig(identities=args.identities, captures=2, seed=11), tmp / "d")
        ims, lms, subjects, thumbs = load(tmp / "d")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    t = Matcher(MODEL).extract(ims, lms).templates.astype(np.float64)
    people = np.unique(subjects)
    train = set(np.random.default_rng(0).choice(people, int(0.73 * len(people)), replace=False))
    tr = np.array([s in train for s in subjects])
    print(f"{len(train)} training subjects, {len(people) - len(train)} test subjects")
    print("| head | FNMR at FMR 1e-3 | EER |\n|---|---|---|")
    print("| raw 128-d templates | {:.3f} | {:.3f} |".format(*verify(t[~tr], subjects[~tr])))
    for eps in [QUIET, *epsilons]:
        runs = [
            verify(
                t[~tr]
                @ head_basis(t[tr], subjects[tr], 32, eps, 1e-6, np.random.default_rng(k))[0],
                subjects[~tr],
            )
            for k in range(args.draws)
        ]
        name = "no noise" if eps == QUIET else f"epsilon {eps:g}"
        fnmr, eer = np.mean(runs, axis=0)
        print(f"| 32-d head, {name} | {fnmr:.3f} | {eer:.3f} |")
    runs = []
    for k in range(args.draws):
        q = np.linalg.qr(np.random.default_rng(100 + k).standard_normal((t.shape[1], 32)))[0]
        runs.append(verify(t[~tr] @ q, subjects[~tr]))
    print("| random 32-d projection | {:.3f} | {:.3f} |".format(*np.mean(runs, axis=0)))
    print("\n| head | corr with target | best other | target first |\n|---|---|---|---|")
    s_tr, th_tr = subjects[tr], thumbs[tr]
    targets = np.unique(s_tr)[:20]
    for eps in [QUIET, *epsilons]:
        res = np.array([attack(s_tr, th_tr, eps, k, tg) for k, tg in enumerate(targets)])
        name = "no noise" if eps == QUIET else f"epsilon {eps:g}"
        first = int((res[:, 0] > res[:, 1]).sum())
        print(f"| {name} | {res[:, 0].mean():.2f} | {res[:, 1].mean():.2f} | {first}/20 |")


if __name__ == "__main__":
    main()
