"""`facelab policy ...` (issue 17, item 3): every change is validated, written atomically
and recorded as policy.change with who made it and the digests of the file before and
after; a hand edit is recorded the same way at the next command that writes the log.

The oracle for the digests is hashlib over the file's bytes, computed here."""

from __future__ import annotations

import hashlib
import itertools
import json
import tomllib
from pathlib import Path

import pytest

from tests.test_cli_audit import ENV, one_line_error, run


def _sha(path: Path) -> str:
    return "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()


def _entries(lab: Path) -> list[dict]:
    return [json.loads(x) for x in (lab / "audit" / "entries.jsonl").read_text().splitlines()]


@pytest.fixture
def lab(tmp_path: Path) -> Path:
    assert run("init", str(tmp_path / "lab")).returncode == 0
    for kind, name in (("tenant", "acme"), ("officer", "kim"), ("reviewer", "rita")):
        p = run("model", "keygen", "--kind", kind, "--out", str(tmp_path / name))
        assert p.returncode == 0, p.stderr
    return tmp_path / "lab"


def test_each_change_is_applied_and_recorded(lab: Path, tmp_path: Path) -> None:
    policy = lab / "policy.toml"
    steps = [
        ("add-tenant-key", "acme", str(tmp_path / "acme.pub")),
        ("add-officer", "kim", str(tmp_path / "kim.pub")),
        ("add-reviewer", "rita", str(tmp_path / "rita.pub")),
        ("add-tenant", "acme", "--processor", "Acme Ltd", "--retention-days", "180"),
        ("set", "jobs.isolation", "weak"),
        ("set", "audit.checkpoint_every", "64"),
    ]
    for cmd, *rest in steps:
        before = _sha(policy)
        p = run("policy", cmd, "--lab", str(lab), *rest)
        assert p.returncode == 0, p.stderr
        last = _entries(lab)[-1]
        assert last["action"] == "policy.change" and last["actor"] == "ops"
        assert last["details"]["old"] == before
        assert last["details"]["new"] == _sha(policy) != before
        assert last["details"]["how"] == "facelab policy"
    raw = tomllib.loads(policy.read_text())
    assert raw["import"]["tenant_keys"]["acme"] == (tmp_path / "acme.pub").read_text()
    assert raw["import"]["officers"]["kim"] == (tmp_path / "kim.pub").read_text().strip()
    assert raw["roles"]["import_officers"] == ["kim"]
    assert raw["export"]["reviewers"]["rita"] == (tmp_path / "rita.pub").read_text().strip()
    assert raw["tenants"]["acme"] == {"processor": "Acme Ltd", "retention_days": 180}
    assert raw["jobs"]["isolation"] == "weak" and raw["audit"]["checkpoint_every"] == 64
    assert policy.read_text().startswith("# facelab default lab policy.")  # comments kept
    assert run("audit", "verify", "--lab", str(lab)).returncode == 0
    shown = json.loads(run("policy", "show", "--lab", str(lab), "--json").stdout)
    assert shown["officers"] == ["kim"] and shown["digest"] == _sha(policy)
    assert shown["edited_since_last_entry"] is False


@pytest.mark.parametrize(
    "args, reason",
    [
        (("add-officer", "kim", "{d}/acme.pub"), "wrong kind of key"),  # ECDSA, not Ed25519
        (("add-officer", "kim", "{d}/kim.key"), "private key"),
        (("add-tenant-key", "acme", "{d}/kim.pub"), "not a PEM public key"),
        (("add-tenant-key", "Not A Tenant!", "{d}/acme.pub"), "tenant"),
        (("set", "jobs.isolation", "5"), "expects string"),
        (("set", "jobs.isolaton", "weak"), "no such key"),
        (("set", "vault.splits", "{train = 0.5, verification = 0.2, test = 0.2}"), "sum to 1"),
        (("set", "jobs.isolation", "sandbox"), "isolation"),
        (("add-tenant", "acme", "--destroy-by", "soon"), "not a date"),
        (("add-tenant", "acme", "--destroy-by", "0001-01-01"), "already past"),
        (("add-tenant", "acme", "--destroy-by", "2020-02-29"), "already past"),
    ],
)
def test_a_refused_change_writes_nothing(lab: Path, tmp_path: Path, args, reason) -> None:
    policy = lab / "policy.toml"
    before, n = policy.read_bytes(), len(_entries(lab))
    line = one_line_error(
        run(
            "policy",
            args[0],
            "--lab",
            str(lab),
            *[a.replace("{d}", str(tmp_path)) for a in args[1:]],
        )
    )
    assert reason in line
    assert policy.read_bytes() == before
    assert len(_entries(lab)) == n
    assert [p.name for p in lab.iterdir() if p.name.startswith(".policy.")] == []


def test_adding_a_name_twice_is_refused(lab: Path, tmp_path: Path) -> None:
    pub = str(tmp_path / "kim.pub")
    assert run("policy", "add-officer", "--lab", str(lab), "kim", pub).returncode == 0
    assert "already" in one_line_error(run("policy", "add-officer", "--lab", str(lab), "kim", pub))


def test_a_hand_edit_is_recorded_at_the_next_open(lab: Path) -> None:
    policy = lab / "policy.toml"
    # positive control: a command that writes the log, no edit, no policy.change
    assert run("vault", "list", "--lab", str(lab)).returncode == 0
    assert [e["action"] for e in _entries(lab)][-1] == "vault.list"
    before = _sha(policy)
    policy.write_text(policy.read_text().replace("checkpoint_every = 256", "checkpoint_every = 8"))
    after = _sha(policy)
    shown = run("policy", "show", "--lab", str(lab))
    assert "EDITED" in shown.stdout
    assert (
        run("vault", "list", "--lab", str(lab), env={**ENV, "FACELAB_ACTOR": "eve"}).returncode == 0
    )
    change, listed = _entries(lab)[-2:]
    assert change["action"] == "policy.change" and change["actor"] == "eve"
    assert change["details"] == {
        "old": before,
        "new": after,
        "how": "edited outside facelab",
        "change": "",
    }
    assert listed["action"] == "vault.list" and listed["policy"] == after
    # recorded once: the next open finds nothing new
    assert run("vault", "list", "--lab", str(lab)).returncode == 0
    assert [e["action"] for e in _entries(lab)[-2:]] == ["vault.list", "vault.list"]


def test_keygen_prints_the_exact_registration_command(lab: Path, tmp_path: Path) -> None:
    p = run(
        "model", "keygen", "--kind", "officer", "--out", str(tmp_path / "lee"), "--lab", str(lab)
    )
    cmd = p.stdout.strip().splitlines()[-1].split()
    assert cmd[:3] == ["facelab", "policy", "add-officer"]
    assert run(*cmd[1:]).returncode == 0
    raw = tomllib.loads((lab / "policy.toml").read_text())
    assert raw["import"]["officers"]["lee"] == (tmp_path / "lee.pub").read_text().strip()


def test_changes_started_at_once_all_land_and_chain_in_the_log(lab: Path) -> None:
    """Red team 2, x04: six `policy add-tenant` at once all exited 0 but four were lost
    (each read the file before another replaced it), and the log's old -> new digests
    no longer chained. Changes are serialised from the read to the record."""
    import subprocess
    import sys

    from tests.test_cli_audit import ENV as env

    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "facelab.cli",
                "policy",
                "add-tenant",
                "--lab",
                str(lab),
                f"t{i}",
                "--processor",
                f"P{i}",
            ],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(6)
    ]
    for p in procs:
        _, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
    doc = tomllib.loads((lab / "policy.toml").read_text())
    assert {f"t{i}" for i in range(6)} <= set(doc["tenants"])
    changes = [e for e in _entries(lab) if e["action"] == "policy.change"]
    assert len(changes) >= 6
    for a, b in itertools.pairwise(changes):
        assert b["details"]["old"] == a["details"]["new"]  # one chain, nothing lost
    assert changes[-1]["details"]["new"] == _sha(lab / "policy.toml")
