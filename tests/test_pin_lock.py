"""A process stopped while it holds the pin file's lock does not hang the machine's
facelab commands (red team 14j, H04): they stop with exit 75 within the pin lock's
wait (``pins.LOCK_WAIT_S``), one line, nothing written."""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
import time
from pathlib import Path

from facelab.audit import pins

from tests.audit_helpers import PASS, make_lab

REPO = Path(__file__).resolve().parents[1]


def test_a_held_pin_lock_is_exit_75_not_a_hang(tmp_path: Path, monkeypatch) -> None:
    known = tmp_path / "known_labs.json"
    monkeypatch.setenv(pins.ENV, str(known))
    lab = make_lab(tmp_path / "lab", entries=1)
    env = {
        **os.environ,
        pins.ENV: str(known),
        "PYTHONPATH": str(REPO),
        "FACELAB_PASSPHRASE": PASS.decode(),
    }
    cmd = [sys.executable, "-m", "facelab.cli", "audit", "verify", "--lab", str(lab.paths.root)]
    assert subprocess.run(cmd, env=env, capture_output=True).returncode == 0  # control
    fd = os.open(known.with_name(known.name + ".lock"), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # what a stopped holder keeps
        t = time.monotonic()
        p = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
        took = time.monotonic() - t
    finally:
        os.close(fd)
    assert p.returncode == 75, (p.returncode, p.stderr)
    assert "pin file's lock" in p.stderr and "Traceback" not in p.stderr
    assert took < pins.LOCK_WAIT_S + 30
