"""Start-up overhead of the zero client, with baselines in the same run.

Usage: python bench/job_startup.py [--runs 15]

Rows (median and 90th percentile of --runs, wall clock):
  python -I -c pass            a bare interpreter start: the floor of any child process
  python -I -m facelab.confine.entry-like import    the same interpreter importing the entry
  run_python, no-op target     bubblewrap + setpriv + seccomp + Landlock + the entry,
                               a target that returns at once
  run_job, no-op trainer       the whole job path on a 6-subject lab: policy check, the
                               no-data check, audit entries, record stream, confinement,
                               outbox walk, workspace removal (a trainer that returns {})
Target (issue 13): job start-up overhead under 1 s.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def timed(fn, runs: int) -> tuple[float, float]:
    fn()  # warm the page cache
    xs = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        xs.append(time.perf_counter() - t)
    xs.sort()
    return statistics.median(xs), xs[int(0.9 * (len(xs) - 1))]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=15)
    args = ap.parse_args()
    from facelab.confine import missing_layers, run_python

    missing = missing_layers()
    if missing:
        sys.exit(
            "bench/job_startup.py: the confinement cannot be built here: " + "; ".join(missing)
        )
    work = Path(tempfile.mkdtemp(prefix="facelab-bench-startup-"))
    work.chmod(0o755)
    probe = work / "noop.py"
    probe.write_text("def run():\n    return {}\n")
    rows = []
    rows.append(
        (
            "python -I -c pass",
            *timed(
                lambda: subprocess.run([sys.executable, "-I", "-c", "pass"], check=True), args.runs
            ),
        )
    )
    rows.append(
        (
            "python -I, import facelab.confine.entry",
            *timed(
                lambda: subprocess.run(
                    [sys.executable, "-I", "-c", "import facelab.confine.entry"],
                    check=True,
                    cwd="/",
                ),
                args.runs,
            ),
        )
    )

    def confined() -> None:
        r = run_python(f"{probe}:run", {}, read=[work], write=[work / "ws"])
        assert r.status == "ok", r.error

    rows.append(("run_python, no-op target", *timed(confined, args.runs)))

    from tests.export_helpers import PASSPHRASE, build_export_lab

    el = build_export_lab(work / "lab", identities=6, captures=2)
    text = el.lab.paths.policy.read_text().replace(
        'trainers = { pca_head = "facelab.jobs.trainers:pca_head" }',
        'trainers = { pca_head = "facelab.jobs.trainers:pca_head", noop = "bench_noop:run" }',
    )
    el.lab.paths.policy.write_text(text)
    mods = Path(tempfile.mkdtemp(prefix="facelab-bench-mods-"))
    mods.chmod(0o755)
    (mods / "bench_noop.py").write_text("def run(ctx):\n    return {}\n")
    sys.path.insert(0, str(mods))
    from facelab.jobs import run_job
    from facelab.labdir import open_lab

    el.lab = open_lab(el.lab.paths.root)
    spec = {"kind": "train", "purpose": "train", "model": "cnn@1.0.0", "trainer": "noop"}

    from facelab.labdir import audit_writer, unlock

    root = unlock(el.lab, PASSPHRASE)  # the operator's key derivation is not the job's

    def job() -> None:
        with audit_writer(el.lab, root) as log:
            r = run_job(el.lab, root, "acme", spec, "bench", log)
        assert r.status == "done", r.error

    rows.append(("run_job, no-op trainer", *timed(job, args.runs)))
    base = rows[0][1]
    print(f"{'what':<38} {'median s':>9} {'p90 s':>8} {'x bare start':>13}")
    for name, med, p90 in rows:
        print(f"{name:<38} {med:>9.3f} {p90:>8.3f} {med / base:>13.1f}")
    print(f"\ntarget: job start-up overhead < 1 s -> run_job median {rows[-1][1]:.3f} s")


if __name__ == "__main__":
    main()
