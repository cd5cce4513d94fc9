"""Confirmations against typos (issue 17, item 5): a new tenant needs --new-tenant, an
existing --out needs --force, destroy asks for the tenant's name (or --yes) and has a
--dry-run that lists every place it would empty. Each refusal is checked by its effect:
the vault, the file or the directory is as it was."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from facelab.errors import BadInputError
from facelab.synth import SynthConfig, write_dataset
from facelab.vault.ops import TENANT_TREES

from tests.test_cli_audit import one_line_error, run


def _tenants(lab: Path) -> list[str]:
    return [
        r["tenant"] for r in json.loads(run("vault", "list", "--lab", str(lab), "--json").stdout)
    ]


@pytest.fixture
def lab_with_acme(tmp_path: Path) -> tuple[Path, Path]:
    lab, ds = tmp_path / "lab", tmp_path / "ds"
    assert run("init", str(lab)).returncode == 0
    write_dataset(SynthConfig(identities=4, captures=1, seed=3), ds, workers=1)
    p = run("ingest", "--lab", str(lab), "--tenant", "acme", str(ds), "--new-tenant")
    assert p.returncode == 0, p.stderr
    return lab, ds


def test_a_mistyped_tenant_is_not_created(lab_with_acme) -> None:
    lab, ds = lab_with_acme
    line = one_line_error(run("ingest", "--lab", str(lab), "--tenant", "acmee", str(ds)))
    assert "acmee" in line and "known: acme" in line and "--new-tenant" in line
    assert _tenants(lab) == ["acme"]
    # a tenant declared in the policy needs no flag; an existing one neither
    assert run("policy", "add-tenant", "--lab", str(lab), "borealis").returncode == 0
    assert run("ingest", "--lab", str(lab), "--tenant", "borealis", str(ds)).returncode == 0
    assert run("ingest", "--lab", str(lab), "--tenant", "acme", str(ds)).returncode == 0
    assert _tenants(lab) == ["acme", "borealis"]


def test_destroy_off_a_terminal_needs_yes(lab_with_acme) -> None:
    lab, _ = lab_with_acme
    line = one_line_error(run("destroy", "--lab", str(lab), "--tenant", "acme"))
    assert "--yes" in line
    assert _tenants(lab) == ["acme"]
    assert (lab / "keys" / "tenants" / "acme.kek").exists()
    assert run("destroy", "--lab", str(lab), "--tenant", "acme", "--yes").returncode == 0
    assert _tenants(lab) == []


def test_destroy_dry_run_lists_every_place_and_changes_nothing(lab_with_acme) -> None:
    lab, _ = lab_with_acme
    (lab / "outbox" / "acme").mkdir(parents=True)
    (lab / "outbox" / "acme" / "r.json").write_text("{}")
    before = {p: p.read_bytes() for p in lab.rglob("*") if p.is_file() and "audit" not in p.parts}
    p = run("destroy", "--lab", str(lab), "--tenant", "acme", "--dry-run")
    assert p.returncode == 0, p.stderr
    for name, rel in TENANT_TREES:  # the list destroy itself walks
        assert name in p.stdout and str(lab / rel.format(tenant="acme")) in p.stdout
    assert "tenant key" in p.stdout and "vault records" in p.stdout
    assert "8 records of 4 subjects" in p.stdout and "1 files" in p.stdout
    after = {p: p.read_bytes() for p in lab.rglob("*") if p.is_file() and "audit" not in p.parts}
    assert after == before
    assert "no data" in one_line_error(
        run("destroy", "--lab", str(lab), "--tenant", "ghost", "--dry-run")
    )


def test_destroy_on_a_terminal_asks_for_the_tenant_name() -> None:
    from facelab.commands.vault import confirm_destroy

    confirm_destroy("acme", False, ask=lambda _: "acme", terminal=True)
    with pytest.raises(BadInputError, match="does not match"):
        confirm_destroy("acme", False, ask=lambda _: "acme2", terminal=True)
    with pytest.raises(BadInputError, match="--yes"):
        confirm_destroy("acme", False, ask=lambda _: "acme", terminal=False)
    confirm_destroy("acme", True, ask=lambda _: "", terminal=False)


def test_an_existing_bench_out_needs_force(tmp_path: Path) -> None:
    (tmp_path / "g.txt").write_text("\n".join(str(0.8 + i / 1000) for i in range(50)))
    (tmp_path / "i.txt").write_text("\n".join(str(0.1 + i / 1000) for i in range(200)))
    args = ("bench", "--scores", str(tmp_path / "g.txt"), str(tmp_path / "i.txt"))
    out = tmp_path / "r"
    assert run(*args, "--out", str(out)).returncode == 0
    first = (out / "report.json").read_bytes()
    (out / "report.json").write_bytes(b"mine")
    assert "--force" in one_line_error(run(*args, "--out", str(out)))
    assert (out / "report.json").read_bytes() == b"mine"
    assert run(*args, "--out", str(out), "--force").returncode == 0
    assert json.loads((out / "report.json").read_bytes())["eer"] == json.loads(first)["eer"]


def test_an_existing_review_out_needs_force(tmp_path: Path) -> None:
    run("model", "keygen", "--kind", "reviewer", "--out", str(tmp_path / "rita"))
    art = tmp_path / "a.json"
    art.write_text("{}")
    out = tmp_path / "override.json"
    out.write_text("keep")
    args = ("review", "--tenant", "acme", "--reviewer", "rita", "--key", str(tmp_path / "rita.key"),
            "--reason", "checked", "--out", str(out), str(art))  # fmt: skip
    assert "--force" in one_line_error(run(*args))
    assert out.read_text() == "keep"
    assert run(*args, "--force").returncode == 0
    assert json.loads(out.read_text())["reviewer"] == "rita"
