"""A crash loop (issue 14): ingest and destroy alternately, each killed with SIGKILL at a
random moment of its run, for many rounds. After every round, reopening the lab finishes
the record (``ops.reconcile``), and the test's own oracles agree with the log: SQLite
opened directly holds all of the tenant's records or none, exactly as the outcome entries
(parsed here) say; a destroyed tenant's key is gone from the key store; `facelab audit
verify` exits 0. No change without its record, no record without its change.

Slow (``make test-slow``): ``FACELAB_CRASH_ROUNDS`` rounds (default 24). The deterministic
crash points of each operation are in tests/test_vault_destroy.py (default suite)."""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from facelab.labdir import audit_writer, unlock
from facelab.synth import SynthConfig, write_dataset
from facelab.vault import keystore, ops

from tests.audit_helpers import PASS, make_lab

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[1]
_RUN = r"""
import sys
from facelab.labdir import open_lab, unlock, audit_writer
from facelab.vault import ops
lab = open_lab(sys.argv[1]); root = unlock(lab, sys.argv[4].encode())
with audit_writer(lab, root) as log:
    if sys.argv[2] == "ingest":
        ops.ingest(lab, root, "acme", sys.argv[3], "tester", log)
    else:
        ops.destroy(lab, root, "acme", "officer", log)
"""


def _start(lab, what: str, ds: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", _RUN, str(lab.paths.root), what, str(ds), PASS.decode()],
        env={**os.environ, "PYTHONPATH": str(REPO)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def _log_says_held(lab) -> bool:
    """The tenant's data is in the vault by the log: the last outcome of ingest or
    destroy (intents and aborted outcomes change nothing)."""
    held = False
    for line in (lab.paths.root / "audit" / "entries.jsonl").read_text().splitlines():
        e = json.loads(line)
        if e["action"] == "vault.ingest" and e["decision"] in ("ok", "unchanged"):
            held = True
        elif e["action"] == "vault.destroy" and e["decision"] == "destroyed":
            held = False
    return held


def test_ingest_and_destroy_killed_at_random_moments_never_disagree_with_the_log(
    tmp_path: Path,
) -> None:
    ds = tmp_path / "ds"
    write_dataset(SynthConfig(identities=6, captures=2, seed=3), ds, workers=1)
    full = len(list((ds / "images").rglob("*.png")))
    lab = make_lab(tmp_path / "lab")
    rng = random.Random(int(os.environ.get("FACELAB_CRASH_SEED", "14")))
    rounds = int(os.environ.get("FACELAB_CRASH_ROUNDS", "24"))
    # how long each operation takes when nothing kills it (calibrates the kill times)
    took = {}
    for what in ("ingest", "destroy"):
        t0 = time.monotonic()
        p = _start(lab, what, ds)
        assert p.wait(120) == 0, p.stderr.read().decode()
        took[what] = time.monotonic() - t0
    killed = 0
    for _ in range(rounds):
        what = "destroy" if _log_says_held(lab) else "ingest"
        p = _start(lab, what, ds)
        time.sleep(rng.uniform(0.0, took[what]))
        if p.poll() is None:
            p.send_signal(signal.SIGKILL)
            killed += 1
        p.wait(60)
        root = unlock(lab, PASS)
        with audit_writer(lab, root) as log:
            ops.reconcile(lab, root, log, "tester")  # raises if vault and log disagree
        with sqlite3.connect(lab.paths.vault) as db:
            n = db.execute("SELECT COUNT(*) FROM records WHERE tenant='acme'").fetchone()[0]
        held = _log_says_held(lab)
        assert n == (full if held else 0), (what, n, held)
        if not held:
            assert keystore.load_tenant_key(lab.paths.keys, "acme") is None
        v = subprocess.run(
            [sys.executable, "-m", "facelab.cli", "audit", "verify", "--lab", str(lab.paths.root)],
            capture_output=True,
            text=True,
        )
        assert v.returncode == 0, v.stdout + v.stderr
    assert killed >= rounds // 4, f"only {killed} of {rounds} rounds were killed mid-run"
