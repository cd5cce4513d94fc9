"""Audit log speed: durable appends, full verification, proofs; baselines in the same run.

Usage: python bench/audit_speed.py [--entries N] [--threads T]

Every append is durable (fsync of entries.jsonl) and covered by a signed head (an Ed25519
checkpoint written and fsynced to LAB/keys/audit_head.*) before record() returns; the
Event schema is checked when each event is built.

Rows:
  append, one per sync        record() from one thread: one batch per entry (baseline)
  append, group commit        record() from T threads: callers share fsyncs
  append, record_many(64)     batches of 64 entries per fsync
  verify N entries            verify_log over the whole log and all its checkpoints
  inclusion proof at N        from the stored hashes (O(log n) reads)
  root by full recompute      MTH over all N leaf hashes (what a proof avoids)
Targets (issue 4): >= 2,000 durable appends/s with group commit; verification of 1M
entries < 30 s on 2 cores; proofs in O(log n) without reading the whole log.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import threading
import time
from pathlib import Path

from facelab.audit import Event, rfc9162, verify_log
from facelab.audit.proofs import prove_inclusion
from facelab.labdir import audit_writer, init_and_record, load_public_key, open_lab

PASS = b"bench passphrase"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--entries", type=int, default=1_000_000)
    ap.add_argument("--threads", type=int, default=16)
    ap.add_argument("--appends", type=int, default=2000)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="facelab-audit-bench-"))
    rows: list[tuple[str, str, str]] = []
    try:
        lab = init_and_record(tmp / "lab", PASS, "bench")
        log = audit_writer(lab, PASS)
        n = args.appends // 4
        t = time.perf_counter()
        for i in range(n):
            log.record(Event("bench.single", "bench", details={"i": i}))
        single = n / (time.perf_counter() - t)
        rows.append(("append, one per sync", f"{single:,.0f} /s", "1.00x"))

        per = args.appends // args.threads

        def worker(k: int) -> None:
            for i in range(per):
                log.record(Event("bench.group", f"t{k}", details={"i": i}))

        ths = [threading.Thread(target=worker, args=(k,)) for k in range(args.threads)]
        t = time.perf_counter()
        for th in ths:
            th.start()
        for th in ths:
            th.join()
        group = per * args.threads / (time.perf_counter() - t)
        rows.append(
            (
                f"append, group commit ({args.threads} threads)",
                f"{group:,.0f} /s",
                f"{group / single:.2f}x",
            )
        )

        t = time.perf_counter()
        for b in range(args.appends // 64):
            log.record_many(
                [Event("bench.batch", "bench", details={"b": b, "i": i}) for i in range(64)]
            )
        batch = (args.appends // 64) * 64 / (time.perf_counter() - t)
        rows.append(("append, record_many(64)", f"{batch:,.0f} /s", f"{batch / single:.2f}x"))

        # grow the log to N entries (fast path: big batches), then verify it all
        missing = args.entries - log.size
        while missing > 0:
            k = min(4096, missing)
            log.record_many(
                [
                    Event(
                        "bench.fill",
                        "bench",
                        tenant=f"t{i % 7}",
                        object="sha256:" + "ab" * 32,
                        details={"i": i},
                    )
                    for i in range(k)
                ]
            )
            missing -= k
        log.close()
        lab = open_lab(tmp / "lab")
        t = time.perf_counter()
        rep = verify_log(lab.paths.audit, lab.origin, load_public_key(lab))
        vt = time.perf_counter() - t
        assert rep.intact, rep.damage
        rows.append(
            (
                f"verify {rep.entries:,} entries, {rep.checkpoints:,} checkpoints",
                f"{vt:.1f} s",
                f"{rep.entries / vt:,.0f} entries/s",
            )
        )

        size = rep.latest_size
        t = time.perf_counter()
        for k in range(0, size, max(1, size // 200)):
            prove_inclusion(lab.paths.audit, k, size)
        pt = (time.perf_counter() - t) / len(range(0, size, max(1, size // 200)))
        leaves = [bytes(32)] * size  # the cost of the recompute a proof avoids
        t = time.perf_counter()
        rfc9162.root_from_leaf_hashes(leaves)
        ft = time.perf_counter() - t
        rows.append(
            (
                f"inclusion proof at size {size:,}",
                f"{pt * 1e3:.2f} ms",
                f"{ft / pt:,.0f}x faster than a recompute",
            )
        )
        rows.append((f"root by full recompute of {size:,} leaves", f"{ft:.2f} s", ""))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    w = max(len(r[0]) for r in rows)
    print(f"{'what':<{w}}  {'measured':>14}  ratio")
    for name, val, ratio in rows:
        print(f"{name:<{w}}  {val:>14}  {ratio}")


if __name__ == "__main__":
    main()
