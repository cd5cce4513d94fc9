"""Deeply nested JSON in the audit log and TOML in the policy (red team 14d, c21 and
c22): exit 4 and exit 2 with one line, never a RecursionError traceback."""

from __future__ import annotations

from pathlib import Path

from tests.test_cli_audit import one_line_error, run


def _lab(tmp: Path) -> Path:
    tmp.mkdir(exist_ok=True)
    lab = tmp / "lab"
    assert run("init", str(lab)).returncode == 0
    return lab


def test_a_forged_line_of_deeply_nested_arrays_is_damage_not_a_traceback(tmp_path: Path) -> None:
    lab = _lab(tmp_path)
    with open(lab / "audit" / "entries.jsonl", "ab") as f:
        f.write(b"[" * 200_000 + b"]" * 200_000 + b"\n")
    for cmd in (("audit", "verify"), ("vault", "list")):
        one_line_error(run(*cmd, "--lab", str(lab)), 4)
    # positive control: a fresh lab verifies
    assert run("audit", "verify", "--lab", str(_lab(tmp_path / "b"))).returncode == 0


def test_a_policy_of_deeply_nested_arrays_is_one_line_and_exit_2(tmp_path: Path) -> None:
    lab = _lab(tmp_path)
    pol = lab / "policy.toml"
    pol.write_text("x = " + "[" * 100_000 + "]" * 100_000 + "\n" + pol.read_text())
    line = one_line_error(run("vault", "list", "--lab", str(lab)), 2)
    assert "policy.toml" in line
