"""Vault speed: ingest and decrypted reads, with plaintext baselines in the same run.

Usage: python bench/vault_speed.py [--identities N] [--captures K]

Rows:
  plaintext read+decode     reading and decoding the dataset's PNG files (what ingest
                            must do anyway to validate them): the baseline
  ingest                    validate + encrypt + one SQLite transaction (facelab ingest)
  decrypted reads           Vault.records(): unwrap the data key, open image and metadata
  decrypted reads + decode  the same, and decode every PNG to pixels
Targets (issue 3): ingest >= 1,000 images/s (112x112 PNG) and decrypted reads >= 5,000
records/s on 2 cores.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
from facelab.audit import Event
from facelab.labdir import audit_writer, init_and_record, unlock
from facelab.synth import SynthConfig, write_dataset
from facelab.vault import ops

PASS = b"bench passphrase"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--identities", type=int, default=1000)
    ap.add_argument("--captures", type=int, default=3)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="facelab-vault-bench-"))
    try:
        ds = tmp / "ds"
        write_dataset(SynthConfig(identities=args.identities, captures=args.captures, seed=7), ds)
        files = sorted((ds / "images").iterdir())
        n = len(files)
        t = time.perf_counter()
        for f in files:
            cv2.imdecode(np.frombuffer(f.read_bytes(), np.uint8), cv2.IMREAD_UNCHANGED)
        base = n / (time.perf_counter() - t)

        lab = init_and_record(tmp / "lab", PASS, "bench")
        root = unlock(lab, PASS)
        with audit_writer(lab, root) as log:
            t = time.perf_counter()
            ops.ingest(lab, root, "acme", ds, "bench", log)
            ingest = n / (time.perf_counter() - t)
            log.record(Event("bench.read", "bench"))
            with ops.open_vault(lab, root) as v:
                t = time.perf_counter()
                k = sum(1 for _ in v.records("acme"))
                reads = k / (time.perf_counter() - t)
                t = time.perf_counter()
                k2 = sum(r.image().shape[0] > 0 for r in v.records("acme"))
                reads_dec = k2 / (time.perf_counter() - t)
        assert k == k2 == n
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    rows = [
        ("plaintext read+decode", base),
        ("ingest", ingest),
        ("decrypted reads", reads),
        ("decrypted reads + decode", reads_dec),
    ]
    print(f"vault speed: {n} images of {args.identities} identities, 112x112 PNG")
    print(f"{'what':<26}{'per second':>12}{'vs plaintext':>14}")
    for name, rate in rows:
        print(f"{name:<26}{rate:>12,.0f}{rate / base:>13.2f}x")
    print(
        f"targets: ingest >= 1,000/s ({'met' if ingest >= 1000 else 'NOT met'}), "
        f"reads >= 5,000/s ({'met' if reads >= 5000 else 'NOT met'})"
    )


if __name__ == "__main__":
    main()
