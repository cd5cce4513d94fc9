"""Progress of long commands (issue 17, item 6): a bar on a terminal, plain lines
otherwise, and the demo's first line at once."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
from pathlib import Path

from facelab.commands._common import Steps

from tests.test_cli_audit import ENV, PROGRESS_LINE


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_steps_off_a_terminal_are_plain_lines(monkeypatch, capsys) -> None:
    with Steps("export", total=3) as steps:
        steps("indexing")
        steps("rebuilding")
    err = capsys.readouterr().err.splitlines()
    assert err == ["facelab export: [1/3] indexing", "facelab export: [2/3] rebuilding"]
    assert all(PROGRESS_LINE.match(x) for x in err)


def test_steps_on_a_terminal_draw_a_bar(monkeypatch) -> None:
    tty = _Tty()
    monkeypatch.setattr(sys, "stderr", tty)
    with Steps("export", total=3) as steps:
        steps("indexing")
        steps("rebuilding")
    out = tty.getvalue()
    assert "\r" in out and "rebuilding" in out  # tqdm redraws one line
    assert "[1/3]" not in out  # no plain lines on a terminal


def test_the_demo_says_its_first_line_before_it_does_anything(tmp_path: Path) -> None:
    lab = tmp_path / "lab"
    p = subprocess.Popen(
        [sys.executable, "-m", "facelab.cli", "demo", "--lab", str(lab)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=ENV,
        start_new_session=True,
    )
    try:
        first = p.stdout.readline()
        lab_existed = lab.exists()
        second = p.stdout.readline()
        running = p.poll() is None
    finally:
        os.killpg(p.pid, signal.SIGKILL)
        p.wait()
    assert first.startswith("facelab demo:")
    assert not lab_existed  # said before the lab was created
    assert second.strip().startswith("[1] creating the lab")
    assert running  # the story is told as it goes, not at the end
