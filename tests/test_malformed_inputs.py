"""Malformed files handed to the CLI, from an independent red team of the records
(issue 14; cases d02-d08): each is one line and exit 2 (bad input) or 4 (tampered),
never a traceback, and reading never runs without bound. Every JSON file facelab reads
goes through one bounded, fail-closed reader (``facelab.jsonfile``)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from facelab.cli import main
from facelab.errors import BadInputError
from facelab.jsonfile import read_json

from tests.audit_helpers import PASS, make_lab

DEEP = "[" * 100_000


@pytest.fixture
def lab(tmp_path: Path):
    return make_lab(tmp_path / "lab", entries=3)


def _cli(capsys, monkeypatch, *argv: str) -> tuple[int, str]:
    monkeypatch.setenv("FACELAB_PASSPHRASE", PASS.decode())
    monkeypatch.setenv("FACELAB_ACTOR", "tester")
    try:
        code = main(list(argv))
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else 2
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    return code, err


def _one_line(code: int, err: str, codes=(2, 4)) -> str:
    lines = [x for x in err.strip().splitlines() if x.strip()]
    assert code in codes and len(lines) == 1, (code, err)
    return lines[0]


@pytest.mark.parametrize(
    "body", [b"[]", DEEP.encode(), b"\xff\xfe", b'{"format": "facelab-lab/1", "lab_id": 5}']
)
def test_damaged_lab_metadata_is_one_line(lab, capsys, monkeypatch, body) -> None:
    (lab.paths.root / "lab.json").write_bytes(body)
    for argv in (("audit", "verify"), ("vault", "list")):
        line = _one_line(*_cli(capsys, monkeypatch, *argv, "--lab", str(lab.paths.root)))
        assert "lab.json" in line


@pytest.mark.parametrize("n", [1, 3, 1 << 40])
def test_key_store_parameters_out_of_range_are_refused(lab, capsys, monkeypatch, n) -> None:
    ks = lab.paths.root / "keys" / "keystore.json"
    doc = json.loads(ks.read_text())
    doc["n"] = n
    ks.write_text(json.dumps(doc))
    line = _one_line(*_cli(capsys, monkeypatch, "vault", "list", "--lab", str(lab.paths.root)))
    assert "keystore.json" in line


def test_a_filed_checkpoint_that_is_not_utf8_is_tampering(lab, capsys, monkeypatch) -> None:
    notes = sorted((lab.paths.root / "audit" / "checkpoints").glob("*.note"))
    data = notes[-1].read_bytes()
    notes[-1].write_bytes(data[:5] + b"\xff" + data[5:])
    for argv in (("audit", "checkpoint"), ("audit", "prove", "--entry", "0")):
        code, err = _cli(capsys, monkeypatch, *argv, "--lab", str(lab.paths.root))
        _one_line(code, err, codes=(4,))


def test_prove_at_size_zero_is_refused(lab, capsys, monkeypatch) -> None:
    code, err = _cli(
        capsys, monkeypatch, "audit", "prove", "--lab", str(lab.paths.root), "--entry", "0",
        "--size", "0",
    )  # fmt: skip
    assert "--size 0" in _one_line(code, err, codes=(2,))


@pytest.mark.parametrize("body", ["deep", "zero"])
def test_a_proof_file_is_read_bounded(lab, tmp_path, capsys, monkeypatch, body) -> None:
    f = tmp_path / "p.json"
    if body == "deep":
        f.write_text(DEEP)
    else:
        f = Path("/dev/zero")
    key = lab.paths.root / "keys" / "lab_signing.pub"
    code, err = _cli(capsys, monkeypatch, "audit", "verify-proof", str(f), "--key", str(key))
    _one_line(code, err, codes=(2,))


def test_a_certificate_nested_too_deeply_is_one_line(tmp_path, lab, capsys, monkeypatch) -> None:
    f = tmp_path / "c.json"
    f.write_text('{"a":' * 100_000)
    key = lab.paths.root / "keys" / "lab_signing.pub"
    code, err = _cli(capsys, monkeypatch, "certificate", "verify", str(f), "--key", str(key))
    _one_line(code, err, codes=(2,))


def test_the_reader_positive_control_and_its_limits(tmp_path) -> None:
    f = tmp_path / "ok.json"
    f.write_text('{"a": [1, 2]}')
    assert read_json(f) == {"a": [1, 2]}
    f.write_text("[1]")
    with pytest.raises(BadInputError, match="a JSON list at the top"):
        read_json(f)
    assert read_json(f, expect=list) == [1]
    f.write_bytes(b"{}" + b" " * 100)
    with pytest.raises(BadInputError, match="over 10 bytes"):
        read_json(f, max_bytes=10)
    with pytest.raises(FileNotFoundError):
        read_json(tmp_path / "missing.json")


def test_a_damaged_witness_directory_is_one_line(lab, tmp_path, capsys, monkeypatch) -> None:
    w = tmp_path / "w"
    code, _ = _cli(capsys, monkeypatch, "witness", "init", "--dir", str(w), "--name", "w1")
    assert code == 0
    saved = (w / "witness.json").read_bytes()
    (w / "witness.json").write_text(DEEP)
    code, err = _cli(
        capsys, monkeypatch, "audit", "witness", "--lab", str(lab.paths.root),
        "--witness-dir", str(w),
    )  # fmt: skip
    _one_line(code, err)
    (w / "witness.json").write_bytes(saved)
    shutil.rmtree(w / "logs", ignore_errors=True)
    (w / "logs").mkdir()
    import hashlib

    state = w / "logs" / (hashlib.sha256(lab.origin.encode()).hexdigest()[:24] + ".json")
    state.write_text(json.dumps({"log_key": "x", "note": 5}))
    code, err = _cli(
        capsys, monkeypatch, "audit", "witness", "--lab", str(lab.paths.root),
        "--witness-dir", str(w),
    )  # fmt: skip
    _one_line(code, err)


def test_a_validator_name_is_one_printable_line(lab, tmp_path, capsys, monkeypatch) -> None:
    from facelab.gates.importing.keys import write_keypair

    priv, _, _ = write_keypair("officer", tmp_path / "v")
    cert = tmp_path / "c.json"
    cert.write_text("{}")
    code, err = _cli(
        capsys, monkeypatch, "certificate", "validate", str(cert), "--key-file", str(priv),
        "--performer-key", str(lab.paths.root / "keys" / "lab_signing.pub"),
        "--name", "Vic; result passed\n/tmp/other.json: performer root signature verifies",
    )  # fmt: skip
    _one_line(code, err, codes=(2,))


def test_registering_a_witness_twice_adds_one_entry(lab, tmp_path, capsys, monkeypatch) -> None:
    monkeypatch.setenv("FACELAB_PASSPHRASE", PASS.decode())
    assert main(["witness", "init", "--dir", str(tmp_path / "w"), "--name", "w1"]) == 0
    vkey = capsys.readouterr().out.strip().splitlines()[-1]  # init prints the vkey last
    entries = lab.paths.root / "audit" / "entries.jsonl"
    for _ in range(2):  # a rerun after a killed or finished call
        code, _err = _cli(
            capsys, monkeypatch, "audit", "witness-add", "--lab", str(lab.paths.root), vkey
        )
        assert code == 0
    adds = [x for x in entries.read_text().splitlines() if '"audit.witness_add"' in x]
    assert len(adds) == 1


def _special(tmp_path: Path, kind: str) -> Path:
    import os

    if kind == "dev-zero":
        return Path("/dev/zero")
    if kind == "directory":
        d = tmp_path / "a-directory"
        d.mkdir(exist_ok=True)
        return d
    p = tmp_path / "a-fifo"
    if not p.exists():
        os.mkfifo(p)
    return p


@pytest.mark.parametrize("kind", ["fifo", "dev-zero", "directory"])
def test_a_special_file_where_a_file_is_expected_is_one_line_never_a_hang(
    lab, tmp_path, kind
) -> None:
    """Red team 2 (m01, m02, m04, m07): a FIFO or /dev/zero given as a key, a proof, a
    certificate, the pin file or a witness's key hung the command. Every such input is
    read by one reader that refuses what is not a regular file (or too large)."""
    import os
    import subprocess
    import sys

    bad = _special(tmp_path, kind)
    pub = str(lab.paths.public_key)
    wdir = tmp_path / "w"
    wdir.mkdir(exist_ok=True)
    (wdir / "witness.json").write_text('{"name": "w1"}')
    if not (wdir / "witness.key").exists():
        (wdir / "witness.key").symlink_to(bad)
    root = str(lab.paths.root)
    runs = [
        ({}, ["audit", "verify", "--lab", root, "--trusted-key", str(bad)]),
        ({}, ["audit", "verify-proof", str(bad), "--key", pub]),
        ({}, ["certificate", "verify", str(bad), "--key", pub]),
        (
            {},
            [
                "certificate",
                "validate",
                str(bad),
                "--key-file",
                str(bad),
                "--performer-key",
                pub,
                "--name",
                "V",
            ],
        ),
        ({"FACELAB_KNOWN_LABS": str(bad)}, ["audit", "verify", "--lab", root]),
        ({}, ["audit", "witness", "--lab", root, "--witness-dir", str(wdir)]),
        (
            {"FACELAB_PASSPHRASE": "", "FACELAB_KEY_FILE": str(bad)},
            ["vault", "list", "--lab", root],
        ),
    ]
    for extra, argv in runs:
        env = {**os.environ, "FACELAB_PASSPHRASE": PASS.decode(), **extra}
        if extra.get("FACELAB_PASSPHRASE") == "":
            del env["FACELAB_PASSPHRASE"]
        p = subprocess.run(
            [sys.executable, "-m", "facelab.cli", *argv],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert "Traceback" not in p.stderr, (argv, p.stderr)
        # a pin file it cannot use stops verify too (exit 2): a corrupted anchor must not
        # turn the checks it anchors off (red team 14d, c26)
        lines = [x for x in p.stderr.strip().splitlines() if x.strip()]
        assert p.returncode in (2, 4) and len(lines) == 1, (argv, p.returncode, p.stderr)


class _Derived(Exception):
    """Raised by the stand-in KDF: unlock got past the header checks."""


@pytest.mark.parametrize(("n", "accepted"), [(1 << 22, True), (1 << 23, False)])
def test_the_scrypt_cost_bound_is_2_to_the_22(lab, monkeypatch, n, accepted) -> None:
    # the documented bound (keystore.unlock): n = 2**22 is derived, 2**23 is refused
    # before any work; the KDF is replaced so that neither case spends 4 GiB of memory
    from facelab.vault import _primitives as pr
    from facelab.vault import keystore

    ks = lab.paths.root / "keys" / "keystore.json"
    doc = json.loads(ks.read_text())
    doc["n"] = n
    ks.write_text(json.dumps(doc))
    seen = []

    def derive(secret, salt, **kw):
        seen.append(kw["n"])
        raise _Derived

    monkeypatch.setattr(pr, "derive_root", derive)
    if accepted:
        with pytest.raises(_Derived):
            keystore.unlock(lab.paths.keys, PASS)
        assert seen == [n]
    else:
        with pytest.raises(BadInputError, match="scrypt parameters out of range"):
            keystore.unlock(lab.paths.keys, PASS)
        assert seen == []
