"""A lab file replaced by hostile bytes is one line and an exit code (2 bad input, 4
damage), never a traceback, and signed documents hold no field outside a signature
(red team 14e: c04, c05, c06, c07, c14, c26, c29 and one held case)."""

from __future__ import annotations

import base64
import json
import os
import shutil
import sqlite3
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat
from facelab.synth import SynthConfig, write_dataset

from tests.test_cli_audit import ENV, one_line_error, run


@pytest.fixture(scope="module")
def template(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("hostile")
    env = {**ENV, "FACELAB_KNOWN_LABS": str(d / "pins.json")}
    assert run("init", str(d / "lab"), env=env).returncode == 0
    write_dataset(SynthConfig(identities=3, captures=1, seed=11), d / "ds", workers=1)
    p = run("ingest", "--lab", str(d / "lab"), "--tenant", "acme", str(d / "ds"), "--new-tenant",
            env=env)  # fmt: skip
    assert p.returncode == 0, p.stderr
    return d / "lab"


@pytest.fixture
def lab(template, tmp_path) -> tuple[Path, dict]:
    """A copy of the template lab, used on "another machine" (its own pin file): a copy
    that then changes is a fork of the template."""
    shutil.copytree(template, tmp_path / "lab", symlinks=True)
    env = {**ENV, "FACELAB_KNOWN_LABS": str(tmp_path / "pins.json")}
    assert run("audit", "verify", "--lab", str(tmp_path / "lab"), env=env).returncode == 0
    return tmp_path / "lab", env


@pytest.mark.parametrize("line", [b"[]", b"null", b'"x"', b"7", b'{"action": ["a"]}'])
def test_a_line_that_is_not_an_entry_is_damage_in_verify_and_skipped_by_show(lab, line) -> None:
    root, env = lab
    with open(root / "audit" / "entries.jsonl", "ab") as f:
        f.write(line + b"\n")
    one_line_error(run("audit", "verify", "--lab", str(root), env=env), 4)
    p = run("audit", "show", "--lab", str(root), "--json", env=env)
    assert "Traceback" not in p.stderr and p.returncode in (0, 4), p.stderr
    one_line_error(run("vault", "list", "--lab", str(root), env=env), 4)  # a writer refuses


def test_a_malformed_vault_page_is_damage_not_a_traceback(lab) -> None:
    root, env = lab
    db = root / "vault.db"
    with sqlite3.connect(db) as c:
        c.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        page = c.execute("PRAGMA page_size").fetchone()[0]
        rootpage = c.execute("SELECT rootpage FROM sqlite_master WHERE name='tenants'").fetchone()
    data = bytearray(db.read_bytes())
    start = (rootpage[0] - 1) * page
    data[start : start + page] = b"\xff" * page  # the header page stays valid
    db.write_bytes(bytes(data))
    line = one_line_error(run("vault", "list", "--lab", str(root), env=env), 4)
    assert "damaged" in line


def test_a_directory_in_place_of_a_tenant_key_names_the_file(lab) -> None:
    root, env = lab
    kek = next((root / "keys").rglob("acme*"))
    kek.unlink()
    kek.mkdir()
    line = one_line_error(run("vault", "list", "--lab", str(root), env=env))
    assert str(kek) in line


def test_a_sparse_terabyte_hash_store_is_damage_without_reading_it(lab) -> None:
    root, env = lab
    with open(root / "audit" / "hashes.bin", "r+b") as f:
        f.truncate(1 << 40)
    line = one_line_error(run("audit", "verify", "--lab", str(root), env=env), 4)
    assert "hashes.bin" in line


def test_a_deeply_nested_certificate_in_the_lab_does_not_break_the_register(lab) -> None:
    root, env = lab
    certs = root / "certificates"
    certs.mkdir(exist_ok=True)
    (certs / "destroy-acme-20260101T000000Z.json").write_text("[" * 100_000 + "]" * 100_000)
    p = run("register", "--lab", str(root), env=env)
    assert "Traceback" not in p.stderr and p.returncode in (0, 2, 4), p.stderr


@pytest.mark.parametrize("doc", [[1, 2], {"a": 1}, [{"model": 1}]])
def test_a_hostile_model_registry_is_one_line(lab, doc) -> None:
    root, env = lab
    (root / "models").mkdir(exist_ok=True)
    (root / "models" / "registry.json").write_text(json.dumps(doc))
    line = one_line_error(run("model", "list", "--lab", str(root), env=env))
    assert "registry.json" in line


def test_no_field_of_a_validated_certificate_is_outside_a_signature(lab, tmp_path) -> None:
    """c14: the signers' names, titles and dates were printed as verified after an edit."""
    root, env = lab
    assert run("destroy", "--lab", str(root), "--tenant", "acme", "--yes", env=env).returncode == 0
    [cert] = (root / "certificates").glob("destroy-acme-*.json")
    pub = tmp_path / "lab.pub"
    pub.write_text((root / "keys" / "lab_signing.pub").read_text())
    vkey = Ed25519PrivateKey.generate()
    vfile, vpub = tmp_path / "v.key", tmp_path / "v.pub"
    vfile.write_bytes(
        base64.b64encode(vkey.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption()))
    )
    from facelab.labdir import public_key_b64

    vpub.write_text(public_key_b64(vkey.public_key()))
    p = run("certificate", "validate", str(cert), "--key-file", str(vfile),
            "--performer-key", str(pub), "--name", "Dana Officer", env=env)  # fmt: skip
    assert p.returncode == 0, p.stderr
    keys = ["--key", str(pub), "--key", str(vpub), "--require-validation"]
    assert run("certificate", "verify", str(cert), *keys, env=env).returncode == 0  # control
    good = json.loads(cert.read_text())
    for i in (0, 1):
        for field in ("name", "date", "title", "role"):
            if field not in good["signatures"][i]:
                continue
            bad = json.loads(json.dumps(good))
            bad["signatures"][i][field] = "Mallory" if field != "date" else "2020-01-01"
            cert.write_text(json.dumps(bad))
            p = run("certificate", "verify", str(cert), *keys, env=env)
            assert p.returncode == 4, (i, field, p.stdout)
    for extra in ({"note": "x"},):
        cert.write_text(json.dumps({**good, **extra}))
        assert run("certificate", "verify", str(cert), *keys, env=env).returncode == 4
    cert.write_text(json.dumps(good))
    assert os.path.getsize(cert) > 0
    assert run("certificate", "verify", str(cert), *keys, env=env).returncode == 0


@pytest.mark.parametrize("actor", ["a\nb", "x\u202eevil", "y" * 129, "\x1b[31mred"])
def test_an_actor_that_is_not_one_printable_line_is_refused_before_anything(lab, actor) -> None:
    """Red team 14f, case 05 (an actor of bytes that are not UTF-8 was a traceback; a
    newline or a bidi override was recorded as given)."""
    root, env = lab
    before = (root / "audit" / "entries.jsonl").read_bytes()
    line = one_line_error(
        run("vault", "list", "--lab", str(root), env={**env, "FACELAB_ACTOR": actor})
    )
    assert "FACELAB_ACTOR" in line
    assert (root / "audit" / "entries.jsonl").read_bytes() == before


def test_an_actor_of_bytes_that_are_not_utf8_is_one_line(lab) -> None:
    import subprocess
    import sys

    root, env = lab
    envb = {k.encode(): v.encode() for k, v in env.items()}
    envb[b"FACELAB_ACTOR"] = b"\xff\xfe"
    p = subprocess.run(
        [sys.executable, "-m", "facelab.cli", "vault", "list", "--lab", str(root)],
        env=envb, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert p.returncode == 2 and "Traceback" not in p.stderr and "FACELAB_ACTOR" in p.stderr


def test_rows_under_a_tenant_the_vault_does_not_list_are_damage(lab) -> None:
    """Red team 14f, case 16: a record row copied under another tenant name and id."""
    root, env = lab
    with sqlite3.connect(root / "vault.db") as c:
        row = list(c.execute("SELECT * FROM records LIMIT 1").fetchone())
        row[0], row[1] = row[0] + "x", row[1] + "x"
        c.execute(f"INSERT INTO records VALUES ({','.join('?' * len(row))})", row)
    line = one_line_error(run("vault", "list", "--lab", str(root), env=env), 4)
    assert "does not list" in line
