"""facelab works from any working directory, one holding a `lab/` or `facelab/` folder
included (issue 17, item 1): no process facelab starts imports the user's folders.

The hostile folders write a marker file when imported; the tests assert the marker is
absent (the effect), and a positive control shows that plain Python run there does
import them.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

FACELAB_SCRIPT = Path(sys.executable).parent / "facelab"  # the installed console script

HOSTILE = """import pathlib
pathlib.Path({marker!r}).write_text("imported")
raise RuntimeError("the working directory's {name} package was imported")
"""


@pytest.fixture
def hostile_cwd(tmp_path: Path) -> Path:
    """A working directory with `lab/` and `facelab/` packages that must never load."""
    cwd = tmp_path / "work"
    for name in ("lab", "facelab"):
        (cwd / name).mkdir(parents=True)
        marker = tmp_path / f"IMPORTED-{name}"
        (cwd / name / "__init__.py").write_text(HOSTILE.format(marker=str(marker), name=name))
    return cwd


def _markers(tmp_path: Path) -> list[str]:
    return sorted(p.name for p in tmp_path.glob("IMPORTED-*"))


def test_the_hostile_folders_are_imported_by_a_plain_python_there(
    hostile_cwd: Path, tmp_path: Path
) -> None:
    """Positive control: `python -c` puts the working directory first on sys.path."""
    p = subprocess.run(
        [sys.executable, "-c", "import facelab"],
        cwd=hostile_cwd,
        capture_output=True,
        text=True,
        check=False,
    )
    assert p.returncode != 0
    assert _markers(tmp_path) == ["IMPORTED-facelab"]


def test_synth_with_worker_processes_ignores_the_working_directory(
    hostile_cwd: Path, tmp_path: Path
) -> None:
    # --workers 2: a forkserver pool, whose server is started with `python -c`
    p = subprocess.run(
        [str(FACELAB_SCRIPT), "synth", "--out", "ds", "--identities", "6", "--workers", "2"],
        cwd=hostile_cwd,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert p.returncode == 0, p.stderr
    assert "Traceback" not in p.stderr
    assert _markers(tmp_path) == []
    assert (hostile_cwd / "ds" / "manifest.csv").is_file()  # relative --out, from this cwd
    assert len(list((hostile_cwd / "ds" / "images").iterdir())) == 6 * 3


@pytest.mark.slow
def test_demo_ignores_the_working_directory(hostile_cwd: Path, tmp_path: Path) -> None:
    """The whole demo (about 90 s on 2 shared cores) from the hostile directory."""
    p = subprocess.run(
        [str(FACELAB_SCRIPT), "demo", "--lab", "d"],
        cwd=hostile_cwd,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
        env={**os.environ, "FACELAB_PASSPHRASE": "a demo passphrase"},
    )
    assert p.returncode == 0, p.stderr
    assert "Traceback" not in p.stderr + p.stdout
    assert _markers(tmp_path) == []
    assert (hostile_cwd / "d" / "demo" / "report.html").is_file()
