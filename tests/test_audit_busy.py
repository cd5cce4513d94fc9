"""A process that holds the audit log's lock and never lets go (stopped, hung) stops
the other commands with exit 75 and one line after ``audit.lock_wait_seconds``; it
never hangs them (red team 14c, co04: a SIGSTOPped ingest made ``vault list`` wait
for ever), and nothing is written while it holds the lock."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.test_cli_audit import ENV, one_line_error, run

HOLDER = """
import fcntl, os, sys, time
fd = os.open(sys.argv[1], os.O_RDWR)
fcntl.flock(fd, fcntl.LOCK_EX)
print("held", flush=True)
time.sleep(600)
"""


def _lab_with_a_short_wait(tmp: Path) -> Path:
    lab = tmp / "lab"
    assert run("init", str(lab)).returncode == 0
    pol = lab / "policy.toml"
    pol.write_text(pol.read_text().replace("lock_wait_seconds = 60", "lock_wait_seconds = 2"))
    assert "lock_wait_seconds = 2" in pol.read_text()
    return lab


def test_a_stopped_holder_of_the_log_lock_makes_others_stop_not_hang(tmp_path: Path) -> None:
    lab = _lab_with_a_short_wait(tmp_path)
    assert run("vault", "list", "--lab", str(lab)).returncode == 0  # records the policy edit
    entries = (lab / "audit" / "entries.jsonl").read_bytes()
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(lab / "audit" / "lock")],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        os.kill(holder.pid, signal.SIGSTOP)  # as a stopped facelab process would
        t0 = time.monotonic()
        p = run("vault", "list", "--lab", str(lab))
        waited = time.monotonic() - t0
        line = one_line_error(p, 75)
        assert "audit/lock" in line and "nothing was changed" in line
        assert 2 <= waited < 60, waited  # it waited for the policy's time, then stopped
        assert (lab / "audit" / "entries.jsonl").read_bytes() == entries  # nothing written
    finally:
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait()
    # positive control: the holder gone, the same command works and records
    p = run("vault", "list", "--lab", str(lab))
    assert p.returncode == 0, p.stderr
    assert run("audit", "verify", "--lab", str(lab), env=ENV).returncode == 0


def test_the_wait_is_a_bounded_integer_in_the_policy(tmp_path: Path) -> None:
    lab = tmp_path / "lab"
    assert run("init", str(lab)).returncode == 0
    pol = lab / "policy.toml"
    pol.write_text(pol.read_text().replace("lock_wait_seconds = 60", "lock_wait_seconds = 0"))
    line = one_line_error(run("vault", "list", "--lab", str(lab)))
    assert "lock_wait_seconds" in line


def test_a_stopped_holder_of_a_tenants_state_lock_makes_destroy_stop_not_hang(
    tmp_path: Path,
) -> None:
    """Red team 14d, c15: the tenant's state lock (``audit/locks/<tenant>.lock``, held by
    every change of that tenant from its intent to its outcome) is bounded like the
    log's lock: a stopped holder makes ``destroy`` stop with exit 75 and change nothing."""
    from facelab.synth import SynthConfig, write_dataset

    lab = _lab_with_a_short_wait(tmp_path)
    write_dataset(SynthConfig(identities=3, captures=1, seed=5), tmp_path / "ds", workers=1)
    p = run("ingest", "--lab", str(lab), "--tenant", "acme", str(tmp_path / "ds"), "--new-tenant")
    assert p.returncode == 0, p.stderr
    vault, entries = (lab / "vault.db").read_bytes(), (lab / "audit" / "entries.jsonl").read_bytes()
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(lab / "audit" / "locks" / "acme.lock")],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        os.kill(holder.pid, signal.SIGSTOP)
        t0 = time.monotonic()
        p = run("destroy", "--lab", str(lab), "--tenant", "acme", "--yes")
        waited = time.monotonic() - t0
        line = one_line_error(p, 75)
        assert "acme.lock" in line and "nothing was changed" in line
        assert 2 <= waited < 60, waited
        assert (lab / "vault.db").read_bytes() == vault  # the records are all there
        assert (
            not (lab / "audit" / "entries.jsonl")
            .read_bytes()[len(entries) :]
            .count(b"vault.destroy")
        )  # no intent recorded while another process holds the tenant
    finally:
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait()
    d = run("destroy", "--lab", str(lab), "--tenant", "acme", "--yes")  # positive control
    assert d.returncode == 0, d.stderr
    assert run("audit", "verify", "--lab", str(lab), env=ENV).returncode == 0
