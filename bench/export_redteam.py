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

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.export_corpus import build_corpus
from tests.export_helpers import Scanner, bench_outbox, build_export_lab, subject_splits


def naive_refuses(paths: list[Path], needles: list[bytes]) -> bool:
    for p in paths:
        data = p.read_bytes()
        if any(n in data for n in needles):
            return True
    return False


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--identities", type=int, default=150)
    ap.add_argument("--work", type=Path)
    args = ap.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="facelab-redteam-"))
    try:
        el = build_export_lab(work, identities=args.identities)
        cases = build_corpus(el.dataset, subject_splits(el), work / "corpus",
                         bench_outbox(el))
        with open(el.dataset / "manifest.csv", encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
        needles = [(el.dataset / r["path"]).read_bytes() for r in rows]
        needles += [r["name"].encode() for r in rows] + [r["passport_no"].encode() for r in rows]
        t = time.perf_counter()
        scanner = Scanner(el)
        index_s = time.perf_counter() - t
        print(f"{'case':<38} {'truth':<6} {'gate':<9} {'naive':<9} {'s':>5}  detectors")
        tally = {("gate", True): 0, ("gate", False): 0, ("naive", True): 0,
                 ("naive", False): 0}
        for c in cases:
            t = time.perf_counter()
            rep = scanner.scan(c.paths)
            dt = time.perf_counter() - t
            naive = naive_refuses(c.paths, needles)
            tally[("gate", c.leaky)] += rep.refused
            tally[("naive", c.leaky)] += naive
            fired = sorted({f.detector for f in rep.blocking()})
            print(f"{c.name:<38} {'leaky' if c.leaky else 'clean':<6} "
                  f"{'refused' if rep.refused else 'released':<9} "
                  f"{'refused' if naive else 'released':<9} {dt:>5.2f}  {','.join(fired)}")
        scanner.close()
        n_leaky = sum(c.leaky for c in cases)
        n_clean = len(cases) - n_leaky
        print(f"\nindex of {len(rows)} vault images built in {index_s:.2f} s")
        print(f"{'gate':<22} {'detection rate':>15} {'false refusals':>15}")
        for g in ("gate", "naive"):
            name = "facelab export gate" if g == "gate" else "naive byte match"
            print(f"{name:<22} {tally[(g, True)]:>5}/{n_leaky} = {tally[(g, True)] / n_leaky:.3f}"
                  f" {tally[(g, False)]:>5}/{n_clean} = {tally[(g, False)] / n_clean:.3f}")
        ok = tally[("gate", True)] == n_leaky and tally[("gate", False)] == 0
        print(f"targets (all leaky refused, no clean refused): {'met' if ok else 'NOT met'}")
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
