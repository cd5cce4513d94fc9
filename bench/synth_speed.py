"""Images per second of `facelab synth`, with baselines measured in the same run.

Usage: python bench/synth_speed.py [--identities N] [--captures K] [--dir DIR]

Rows:
  png-only     encoding pre-rendered images to PNG, one process: the floor of any writer
  render-only  rendering without writing, one process
  synth x1     the whole writer with 1 worker process
  synth xN     the whole writer with all CPUs (what `facelab synth` does)
The ratio column compares each row with `synth x1`; the target is 1,500 images/s at
112x112 on a 2-core machine for `synth xN`. The default run writes 10,000 images, so
that the pool's start-up (a forkserver importing OpenCV, about 0.3 s of one core, during
which this process renders alone) weighs as it does in real datasets. The datasets go
to a temporary directory under --dir (default: the system's temporary directory): file
creation and page-cache copies are part of the cost, and differ between file systems.
Run it on a disk that has not just deleted many files (see the comment in main()).
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

import cv2
from facelab.synth import SynthConfig, encode_png, render_identity, write_dataset

TARGET = 1500.0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--identities", type=int, default=2500)
    ap.add_argument("--captures", type=int, default=3)
    ap.add_argument("--size", type=int, default=112)
    ap.add_argument("--dir", type=Path, default=None, help="where to write the datasets")
    args = ap.parse_args()
    cfg = SynthConfig(identities=args.identities, captures=args.captures, seed=1, size=args.size)
    n_img = cfg.identities * (cfg.captures + 1)
    cpus = len(os.sched_getaffinity(0))
    rows: list[tuple[str, float]] = []

    sub = SynthConfig(
        identities=min(500, cfg.identities), captures=cfg.captures, seed=1, size=cfg.size
    )
    cv2.setNumThreads(1)  # as in the writer's processes
    # warm up (noise table, codecs) on other identities, then time
    warm = SynthConfig(identities=5, captures=cfg.captures, seed=2, size=cfg.size)
    for i in range(warm.identities):
        render_identity(warm, i)
    t = time.perf_counter()
    images = [img for i in range(sub.identities) for _, img in render_identity(sub, i)]
    rows.append(("render-only x1", len(images) / (time.perf_counter() - t)))
    t = time.perf_counter()
    for img in images:
        encode_png(img)
    rows.append(("png-only x1", len(images) / (time.perf_counter() - t)))

    tmp = Path(tempfile.mkdtemp(prefix="facelab-bench-", dir=args.dir))
    try:
        for workers in (1, cpus):
            out = tmp / f"w{workers}"
            # start each timed run on a settled disk (earlier steps' dirty pages written
            # back). Datasets are deleted only at the end: ext4 skips inodes deleted in
            # the last 60 s (up to 360 s) when it allocates new ones, so a run right
            # after a large delete pays a scan of the inode tables that a user writing a
            # dataset does not (seen in `perf`: recently_deleted, find_get_block_common).
            os.sync()
            time.sleep(2.0)
            t = time.perf_counter()
            write_dataset(cfg, out, workers=workers)
            rows.append((f"synth x{workers}", n_img / (time.perf_counter() - t)))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    base = dict(rows)["synth x1"]
    print(
        f"facelab synth speed: {cfg.identities} identities x {cfg.captures + 1} images, "
        f"{cfg.size}x{cfg.size}, {cpus} CPUs, written under {tmp.parent}"
    )
    print(f"{'what':<16}{'images/s':>10}{'vs synth x1':>13}")
    for name, rate in rows:
        print(f"{name:<16}{rate:>10.0f}{rate / base:>12.2f}x")
    best = dict(rows)[f"synth x{cpus}"]
    print(
        f"target {TARGET:.0f} images/s on 2 cores: {'met' if best >= TARGET else 'NOT met'} "
        f"({best / TARGET:.2f} of target)"
    )


if __name__ == "__main__":
    main()
