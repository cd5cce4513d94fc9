"""Scratch directories a SIGKILLed gate leaves in ``$TMPDIR`` are removed by the next
one (``facelab.scratch``); a live owner's, another user's, a link and a foreign name
are left alone."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from facelab import scratch

CHILD = (
    "import sys, time\n"
    "from facelab.scratch import scratch_dir\n"
    "d = scratch_dir('import')\n"
    "(d / 'model.onnx').write_bytes(b'tenant bytes')\n"
    "print(d, flush=True)\n"
    "time.sleep(60)\n"
)


@pytest.fixture
def tmpdir_env(tmp_path, monkeypatch):
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", None)  # re-read $TMPDIR
    return tmp_path


def _killed_child_scratch(tmp: Path) -> Path:
    env = {**os.environ, "TMPDIR": str(tmp)}
    p = subprocess.Popen([sys.executable, "-c", CHILD], stdout=subprocess.PIPE, text=True, env=env)
    line = p.stdout.readline().strip()
    p.send_signal(signal.SIGKILL)
    p.wait()
    p.stdout.close()
    return Path(line)


def test_a_killed_owners_scratch_is_removed_by_the_next_one(tmpdir_env) -> None:
    left = _killed_child_scratch(tmpdir_env)
    assert (left / "model.onnx").read_bytes() == b"tenant bytes"  # the SIGKILL left it
    mine = scratch.scratch_dir("export")
    assert not left.exists()
    assert mine.is_dir() and mine.parent == tmpdir_env
    assert oct(mine.stat().st_mode & 0o777) == "0o700"


def test_a_live_owners_scratch_stays(tmpdir_env) -> None:
    first = scratch.scratch_dir("import")  # this process is alive
    second = scratch.scratch_dir("smoke")
    assert first.is_dir() and second.is_dir()


def test_a_reused_pid_does_not_keep_a_dead_owners_scratch(tmpdir_env) -> None:
    # same pid as a live process, another start time: the owner is gone
    d = tmpdir_env / f"facelab-import-{os.getpid()}.1-abc123"
    d.mkdir()
    scratch.sweep(tmpdir_env)
    assert not d.exists()


def test_links_foreign_names_and_files_are_left_alone(tmpdir_env) -> None:
    target = tmpdir_env / "precious"
    target.mkdir()
    (target / "keep").write_text("x")
    link = tmpdir_env / "facelab-import-999999999.1-abc"
    link.symlink_to(target)
    plain = tmpdir_env / "facelab-export-999999999.1-def"
    plain.write_text("a file, not a directory")
    other = tmpdir_env / "facelab-demo-xyz"  # not a scratch name
    other.mkdir()
    assert scratch.sweep(tmpdir_env) == []
    assert (target / "keep").exists() and link.is_symlink() and plain.exists() and other.exists()


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to give a directory to another uid")
def test_another_users_scratch_is_left_alone(tmpdir_env) -> None:
    d = tmpdir_env / "facelab-import-999999999.1-ghi"
    d.mkdir()
    os.chown(d, 65534, 65534)
    assert scratch.sweep(tmpdir_env) == []
    assert d.exists()


@pytest.mark.parametrize("kind", ["", "Import", "../x", "im port", "imp0rt"])
def test_a_kind_is_lower_case_letters(kind) -> None:
    with pytest.raises(ValueError):
        scratch.scratch_dir(kind)


SIBLING_CHILD = (
    "import sys, time\n"
    "from pathlib import Path\n"
    "from facelab.scratch import sibling_dir\n"
    "d = sibling_dir(Path(sys.argv[1]))\n"
    "(d / 'half.png').write_bytes(b'half a dataset')\n"
    "print(d, flush=True)\n"
    "time.sleep(60)\n"
)


def test_a_killed_writers_sibling_is_removed_by_the_next_writer_of_that_output(
    tmp_path,
) -> None:
    out = tmp_path / "ds"
    p = subprocess.Popen(
        [sys.executable, "-c", SIBLING_CHILD, str(out)], stdout=subprocess.PIPE, text=True
    )
    left = Path(p.stdout.readline().strip())
    p.send_signal(signal.SIGKILL)
    p.wait()
    p.stdout.close()
    assert left.parent == tmp_path and (left / "half.png").exists()
    other = tmp_path / ".ds.x.tmp-999999999.1-abc"  # the sibling of another output, ds.x
    other.mkdir()
    mine = scratch.sibling_dir(out)
    assert not left.exists() and other.exists()
    assert mine.name.startswith(f".ds.tmp-{os.getpid()}.")
    again = scratch.sibling_dir(out)  # a live owner's sibling stays
    assert mine.exists() and again.exists()


def test_a_dataset_killed_mid_write_leaves_nothing_after_the_next_synth(tmp_path) -> None:
    """Through the writer itself: a stale sibling of a killed synth is gone once synth
    writes the same dataset again."""
    from facelab.synth import SynthConfig, write_dataset

    stale = tmp_path / ".ds.tmp-999999999.1-stale0"
    stale.mkdir()
    (stale / "images").mkdir()
    write_dataset(SynthConfig(identities=2, captures=1, seed=1), tmp_path / "ds", workers=1)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ds"]
