"""`facelab ingest`, `facelab destroy` and `facelab vault list` from the command line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from facelab.synth import SynthConfig, write_dataset

from tests.test_cli_audit import ENV, one_line_error, run


@pytest.fixture
def lab_and_data(tmp_path: Path) -> tuple[Path, Path]:
    assert run("init", str(tmp_path / "lab")).returncode == 0
    write_dataset(SynthConfig(identities=6, captures=1, seed=3), tmp_path / "ds", workers=1)
    return tmp_path / "lab", tmp_path / "ds"


def test_ingest_list_destroy(lab_and_data) -> None:
    lab, ds = lab_and_data
    p = run("ingest", "--lab", str(lab), "--tenant", "acme", str(ds), "--new-tenant")
    assert p.returncode == 0 and "ingested 12 images of 6 subjects" in p.stdout
    again = run("ingest", "--lab", str(lab), "--tenant", "acme", str(ds))
    assert again.returncode == 0 and "nothing changed" in again.stdout
    listed = json.loads(run("vault", "list", "--lab", str(lab), "--json").stdout)
    assert listed[0]["tenant"] == "acme" and listed[0]["records"] == 12
    d = run("destroy", "--lab", str(lab), "--tenant", "acme", "--yes")
    assert d.returncode == 0 and "verification passed" in d.stdout
    assert run("audit", "verify", "--lab", str(lab)).returncode == 0
    actions = [
        e["action"] for e in json.loads(run("audit", "show", "--lab", str(lab), "--json").stdout)
    ]
    assert actions == [
        "lab.init",
        "vault.ingest.intent",
        "vault.ingest",
        "vault.ingest",  # the second run: unchanged, no intent (nothing to commit)
        "vault.list",
        "vault.destroy.intent",
        "vault.destroy",
    ]


def test_ingest_with_delete_source(lab_and_data) -> None:
    lab, ds = lab_and_data
    p = run(
        "ingest", "--lab", str(lab), "--tenant", "acme", str(ds), "--delete-source", "--new-tenant"
    )
    assert p.returncode == 0, p.stderr
    assert not ds.exists()


@pytest.mark.parametrize("tenant", ["Acme", "../etc", "a;b"])
def test_unsafe_tenant_exits_2(lab_and_data, tenant) -> None:
    lab, ds = lab_and_data
    assert "safe identifier" in one_line_error(
        run("ingest", "--lab", str(lab), "--tenant", tenant, str(ds))
    )


def test_bad_dataset_exits_2_naming_the_file(lab_and_data) -> None:
    lab, ds = lab_and_data
    first = sorted((ds / "images").iterdir())[0]
    first.write_bytes(b"not a png")
    line = one_line_error(
        run("ingest", "--lab", str(lab), "--tenant", "acme", str(ds), "--new-tenant")
    )
    assert str(first) in line and "not a PNG" in line


def test_wrong_passphrase_exits_2(lab_and_data) -> None:
    lab, ds = lab_and_data
    line = one_line_error(
        run(
            "ingest",
            "--lab",
            str(lab),
            "--tenant",
            "acme",
            str(ds),
            env={**ENV, "FACELAB_PASSPHRASE": "nope"},
        )
    )
    assert "wrong passphrase" in line


def test_key_file_for_automation(tmp_path: Path) -> None:
    key = tmp_path / "root.key"
    key.write_bytes(bytes(range(32)))
    env = {k: v for k, v in ENV.items() if k != "FACELAB_PASSPHRASE"}
    env["FACELAB_KEY_FILE"] = str(key)
    assert run("init", str(tmp_path / "lab"), env=env).returncode == 0
    assert run("vault", "list", "--lab", str(tmp_path / "lab"), env=env).returncode == 0
    assert "wrong passphrase" in one_line_error(
        run("vault", "list", "--lab", str(tmp_path / "lab"))
    )


def test_destroy_unknown_tenant_exits_2(lab_and_data) -> None:
    lab, _ = lab_and_data
    p = run("destroy", "--lab", str(lab), "--tenant", "ghost", "--yes")
    assert "no data" in one_line_error(p)


def test_certificate_keygen_writes_a_private_key_file_once(tmp_path: Path) -> None:
    """The validator key made by `certificate keygen` is private (0600), never written
    over an existing file, and is the base64 Ed25519 key `certificate validate` reads."""
    import base64
    import stat as st

    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from tests.test_cli_audit import one_line_error, run

    out = tmp_path / "vera"
    assert run("certificate", "keygen", "--out", str(out)).returncode == 0
    key = tmp_path / "vera.key"
    assert st.S_IMODE(key.stat().st_mode) == 0o600
    priv = Ed25519PrivateKey.from_private_bytes(base64.b64decode(key.read_bytes().strip()))
    pub = base64.b64decode((tmp_path / "vera.pub").read_text().strip())
    assert priv.public_key().public_bytes_raw() == pub
    before = key.read_bytes()
    assert "refusing to overwrite" in one_line_error(
        run("certificate", "keygen", "--out", str(out))
    )
    assert key.read_bytes() == before
