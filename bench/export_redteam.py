"""Export gate against the red-team corpus: detection rate and false-refusal rate.

Usage: python bench/export_redteam.py [--identities 150] [--work DIR]

Builds the small synthetic lab and the corpus of tests/export_corpus.py (36 leaky, 30
clean artifact sets), scans each, and prints one line per case and the rates. Baseline in
the same run: a naive gate that refuses a file holding a vault image's PNG bytes, a
name or a passport number verbatim (what a byte-level DLP rule would do).
Targets (issue 7): every leaky artifact refused, no clean one refused.
"""

from __future__ import annotations

import argparse
import csv
import shutil
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.export_corpus import build_corpus
from tests.export_helpers import Scanner, bench_outbox, build_export_lab, subject_splits


def naive_refuses(paths: list[Path], needles: list[bytes]) -> bool:
    for p in paths:
        data = p.read_bytes()
        if any(n in data for n in needles):
            return True
    return False


TRANSFORMS = {
    "exact copy, float /255": lambda a: a.astype(np.float32) / 255,
    "Gaussian noise sigma 20": lambda a: a + RNG.normal(0, 20, a.shape),
    "JPEG quality 30": lambda a: cv2.imdecode(
        cv2.imencode(".jpg", a.astype(np.uint8), [cv2.IMWRITE_JPEG_QUALITY, 30])[1], 1
    ).astype(np.float32),
    "downscaled to 24 px": lambda a: cv2.resize(a, (24, 24), interpolation=cv2.INTER_AREA),
    "blurred sigma 3": lambda a: cv2.GaussianBlur(a, (0, 0), 3),
    "gamma 2.2": lambda a: 255 * (a / 255.0) ** 2.2,
    "rotated 90 (np.rot90)": lambda a: np.rot90(a).copy(),
    "rotated 5 degrees": lambda a: cv2.warpAffine(
        a, cv2.getRotationMatrix2D((56, 56), 5, 1.0), (112, 112), borderMode=cv2.BORDER_REPLICATE
    ),
    "bottom half": lambda a: a[56:],
    "cropped to 100 px (6 px margin)": lambda a: a[6:106, 6:106],
    "shifted 8 px (rolled)": lambda a: np.roll(a, 8, axis=1),
    "cropped to 90 px": lambda a: a[11:101, 11:101],
    "eye band (rows 30-70)": lambda a: a[30:70],
    "converted to HSV": lambda a: cv2.cvtColor(a.astype(np.uint8), cv2.COLOR_RGB2HSV),
}
RNG = np.random.default_rng(5)


def robustness(scanner: Scanner, el, rows: list[dict], every: int = 23) -> None:
    """How often the faces detector finds one vault image under each transform."""
    from lab.gates.exporting._types import Artifact, ScanContext
    from lab.gates.exporting.detectors import faces

    ctx = ScanContext(el.lab.policy.exporting, el.tenant, scanner.index)
    picked = rows[::every]
    print(f"\nfaces detector robustness ({len(picked)} vault images each)")
    print(f"{'transform':<34} {'found':>9}")
    for name, f in TRANSFORMS.items():
        found = 0
        for r in picked:
            a = cv2.cvtColor(cv2.imread(str(el.dataset / r["path"])), cv2.COLOR_BGR2RGB)
            art = Artifact("x.npy", "npy", b"", tensors=[("array", f(a.astype(np.float32)))])
            found += bool(faces.detect(art, ctx))
        print(f"{name:<34} {found:>4}/{len(picked)}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--identities", type=int, default=150)
    ap.add_argument("--work", type=Path)
    args = ap.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="facelab-redteam-"))
    try:
        el = build_export_lab(work, identities=args.identities)
        cases = build_corpus(el.dataset, subject_splits(el), work / "corpus", bench_outbox(el))
        with open(el.dataset / "manifest.csv", encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
        needles = [(el.dataset / r["path"]).read_bytes() for r in rows]
        needles += [r["name"].encode() for r in rows] + [r["passport_no"].encode() for r in rows]
        t = time.perf_counter()
        scanner = Scanner(el)
        index_s = time.perf_counter() - t
        print(f"{'case':<38} {'truth':<6} {'gate':<9} {'naive':<9} {'s':>5}  detectors")
        tally = {("gate", True): 0, ("gate", False): 0, ("naive", True): 0, ("naive", False): 0}
        for c in cases:
            t = time.perf_counter()
            rep = scanner.scan(c.paths)
            dt = time.perf_counter() - t
            naive = naive_refuses(c.paths, needles)
            tally[("gate", c.leaky)] += rep.refused
            tally[("naive", c.leaky)] += naive
            fired = sorted({f.detector for f in rep.blocking()})
            print(
                f"{c.name:<38} {'leaky' if c.leaky else 'clean':<6} "
                f"{'refused' if rep.refused else 'released':<9} "
                f"{'refused' if naive else 'released':<9} {dt:>5.2f}  {','.join(fired)}"
            )
        scanner.close()
        n_leaky = sum(c.leaky for c in cases)
        n_clean = len(cases) - n_leaky
        print(f"\nindex of {len(rows)} vault images built in {index_s:.2f} s")
        print(f"{'gate':<22} {'detection rate':>15} {'false refusals':>15}")
        for g in ("gate", "naive"):
            name = "facelab export gate" if g == "gate" else "naive byte match"
            print(
                f"{name:<22} {tally[(g, True)]:>5}/{n_leaky} = {tally[(g, True)] / n_leaky:.3f}"
                f" {tally[(g, False)]:>5}/{n_clean} = {tally[(g, False)] / n_clean:.3f}"
            )
        ok = tally[("gate", True)] == n_leaky and tally[("gate", False)] == 0
        print(f"targets (all leaky refused, no clean refused): {'met' if ok else 'NOT met'}")
        robustness(scanner, el, rows)
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
