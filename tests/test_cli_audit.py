"""`facelab init` and `facelab audit ...` from the command line."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
ENV = {
    **os.environ,
    "PYTHONPATH": str(REPO),
    "FACELAB_PASSPHRASE": "pw-cli-passphrase",
    "FACELAB_ACTOR": "ops",
}


def run(*args: str, env: dict | None = None, stdin=subprocess.DEVNULL):
    return subprocess.run(
        [sys.executable, "-m", "facelab.cli", *args],
        capture_output=True,
        text=True,
        env=env or ENV,
        stdin=stdin,
        timeout=120,
        check=False,
    )


# a long command's progress lines off a terminal (facelab.commands._common.Steps)
PROGRESS_LINE = re.compile(r"^facelab [a-z ]+: \[\d+(/\d+)?\] ")


def one_line_error(p, code: int = 2) -> str:
    """The one error line on stderr (progress lines of long commands aside)."""
    assert p.returncode == code, (p.returncode, p.stderr)
    assert "Traceback" not in p.stderr
    out = [x for x in p.stderr.strip().splitlines() if not PROGRESS_LINE.match(x)]
    assert len(out) == 1, p.stderr
    return out[0]


@pytest.fixture
def lab(tmp_path: Path) -> Path:
    p = run("init", str(tmp_path / "lab"))
    assert p.returncode == 0, p.stderr
    return tmp_path / "lab"


def test_init_then_verify_show_checkpoint_prove_consistency(lab: Path, tmp_path: Path) -> None:
    assert run("audit", "verify", "--lab", str(lab)).returncode == 0
    old = run("audit", "checkpoint", "--lab", str(lab)).stdout
    (tmp_path / "old.note").write_text(old)
    # more entries, by a second command that records (a repair with nothing to cut)
    assert run("audit", "repair", "--lab", str(lab)).returncode == 0
    shown = json.loads(run("audit", "show", "--lab", str(lab), "--json").stdout)
    assert [e["action"] for e in shown][:1] == ["lab.init"]
    assert shown[0]["actor"] == "ops"
    proof = json.loads(run("audit", "prove", "--lab", str(lab), "--entry", "0").stdout)
    assert proof["verified"] is True
    cons = run("audit", "consistency", "--lab", str(lab), "--old", str(tmp_path / "old.note"))
    assert cons.returncode == 0 and json.loads(cons.stdout)["consistent"] is True


def test_show_filters_by_tenant_action_and_time(tmp_path: Path) -> None:
    from tests.audit_helpers import make_lab

    lab = make_lab(tmp_path / "lab", entries=9)
    root = str(lab.paths.root)
    t1 = json.loads(run("audit", "show", "--lab", root, "--tenant", "t1", "--json").stdout)
    assert [e["details"]["i"] for e in t1] == [1, 4, 7]
    ev = json.loads(run("audit", "show", "--lab", root, "--action", "test.*", "--json").stdout)
    assert len(ev) == 9
    future = json.loads(
        run("audit", "show", "--lab", root, "--since", "2999-01-01", "--json").stdout
    )
    assert future == []
    table = run("audit", "show", "--lab", root, "--action", "lab.init").stdout
    assert "lab.init" in table and "(1 entries)" in table
    line = one_line_error(run("audit", "show", "--lab", root, "--since", "yesterday"))
    assert "--since" in line


def test_init_refuses_a_non_empty_directory(tmp_path: Path) -> None:
    (tmp_path / "lab").mkdir()
    (tmp_path / "lab" / "keep").write_text("x")
    line = one_line_error(run("init", str(tmp_path / "lab")))
    assert str(tmp_path / "lab") in line
    assert (tmp_path / "lab" / "keep").read_text() == "x"


def test_no_passphrase_is_a_clear_error(tmp_path: Path) -> None:
    env = {k: v for k, v in ENV.items() if k != "FACELAB_PASSPHRASE"}
    line = one_line_error(run("init", str(tmp_path / "lab"), env=env))
    assert "FACELAB_PASSPHRASE" in line
    assert not (tmp_path / "lab").exists()


def test_wrong_passphrase_is_a_clear_error(lab: Path) -> None:
    line = one_line_error(
        run("audit", "repair", "--lab", str(lab), env={**ENV, "FACELAB_PASSPHRASE": "wrong"})
    )
    assert "wrong passphrase" in line


def test_not_a_lab(tmp_path: Path) -> None:
    line = one_line_error(run("audit", "verify", "--lab", str(tmp_path)))
    assert "not a facelab lab" in line


def test_prove_outside_the_tree_is_bad_input(lab: Path) -> None:
    assert "outside" in one_line_error(run("audit", "prove", "--lab", str(lab), "--entry", "5"))


def test_witness_checkpoint_from_another_lab_is_refused(lab: Path, tmp_path: Path) -> None:
    assert run("init", str(tmp_path / "other")).returncode == 0
    other = run("audit", "checkpoint", "--lab", str(tmp_path / "other")).stdout
    (tmp_path / "w.note").write_text(other)
    p = run("audit", "verify", "--lab", str(lab), "--witness", str(tmp_path / "w.note"))
    assert p.returncode == 4 and "forged-checkpoint" in p.stderr
    p = run("audit", "consistency", "--lab", str(lab), "--old", str(tmp_path / "w.note"))
    assert p.returncode == 4


def test_synth_with_lab_records_the_dataset(lab: Path, tmp_path: Path) -> None:
    p = run("synth", "--out", str(tmp_path / "d"), "--identities", "3", "--lab", str(lab))
    assert p.returncode == 0, p.stderr
    shown = json.loads(
        run("audit", "show", "--lab", str(lab), "--action", "dataset.synth", "--json").stdout
    )
    assert len(shown) == 1 and shown[0]["object"].startswith("sha256:")
    assert shown[0]["details"]["identities"] == 3
    assert run("audit", "verify", "--lab", str(lab)).returncode == 0


def test_an_unreadable_lab_file_is_one_line_not_a_traceback(lab: Path) -> None:
    (lab / "audit" / "entries.jsonl").unlink()
    (lab / "audit" / "entries.jsonl").mkdir()  # a directory where a file must be
    line = one_line_error(run("audit", "repair", "--lab", str(lab)))
    assert "entries.jsonl" in line


def test_an_ascii_only_terminal_gets_escapes_not_a_traceback(tmp_path) -> None:
    """Red team en02: PYTHONIOENCODING=ascii and a C locale, a lab path and an actor
    with non-ASCII letters: every line prints (the letters escaped), exit 0."""
    env = {**ENV, "PYTHONIOENCODING": "ascii", "LC_ALL": "C", "LANG": "C"}
    env["FACELAB_ACTOR"] = "ren\u00e9e-\u65e5\u672c"
    lab = tmp_path / "lab-\u00fc-\u20ac-\u65e5\u672c"
    outs = []
    for args in (("init", str(lab)), ("audit", "verify", "--lab", str(lab))):
        p = run(*args, env=env)
        assert p.returncode == 0 and "Traceback" not in p.stderr, p.stderr
        outs.append(p.stdout)
    assert "\\xfc" in outs[0] or "\\u20ac" in outs[0]  # init names the path, escaped


def test_nothing_the_lab_creates_is_group_or_world_writable_under_umask_0(tmp_path) -> None:
    """Red team (session 7): with umask 000 the audit log and certificates directory
    were world-writable (any local user could append). The CLI masks 022 always."""
    lab = tmp_path / "lab"
    p = subprocess.run(
        [sys.executable, "-m", "facelab.cli", "init", str(lab)],
        capture_output=True,
        text=True,
        env=ENV,
        preexec_fn=lambda: os.umask(0),
        check=False,
    )
    assert p.returncode == 0, p.stderr
    loose = [
        str(q.relative_to(tmp_path))
        for q in [lab, *lab.rglob("*")]
        if not q.is_symlink() and q.stat().st_mode & 0o022
    ]
    assert loose == []
    assert len(list(lab.rglob("*"))) > 5  # control: the walk saw the lab's files


def test_prove_of_an_entry_edited_in_place_is_tampered_not_verified(lab: Path) -> None:
    """Red team 14g, case 04: the leaf is hashed from the entry's bytes, not taken from
    the hash store the edit left alone."""
    first = run("audit", "prove", "--lab", str(lab), "--entry", "0")
    assert first.returncode == 0 and json.loads(first.stdout)["verified"] is True
    entries = lab / "audit" / "entries.jsonl"
    raw = entries.read_bytes()
    assert raw.count(b'"actor":"ops"') >= 1
    entries.write_bytes(raw.replace(b'"actor":"ops"', b'"actor":"opz"', 1))
    p = run("audit", "prove", "--lab", str(lab), "--entry", "0")
    assert p.returncode == 4 and "TAMPERED" in p.stderr and "Traceback" not in p.stderr
    doc = json.loads(p.stdout)
    assert doc["verified"] is False and '"actor":"opz"' in doc["entry_json"]
    proof = lab.parent / "proof.json"
    proof.write_text(p.stdout)
    # the offline check refuses the same document
    v = run("audit", "verify-proof", str(proof), "--key", str(lab / "keys" / "lab_signing.pub"))
    assert v.returncode == 4
