"""Destruction certificates, offline: what a signature check accepts, what `certificate
validate` writes, and which lab-signed certificates `audit verify` must report as a
destruction the log does not record (``certificate.unrecorded``). Keys are made here;
no lab, no destroy: each test is a few signatures and files."""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat
from facelab.cli import main
from facelab.labdir import public_key_b64
from facelab.vault import certificate
from facelab.vault.certificate import TamperedError


def _cert(tenant: str = "acme", result: str = "passed") -> dict:
    return {
        "certificate_id": f"id-{tenant}",
        "media_information": {"tenant": tenant, "records": 3},
        "sanitization_details": {"verification_result": result},
    }


def _signed(key: Ed25519PrivateKey, tenant: str = "acme") -> dict:
    return certificate.sign_performer(_cert(tenant), key, "officer", "2026-01-01T00:00:00Z")


# ---------------------------------------------------------------- verify_document


def test_a_certificate_verifies_only_under_the_performers_key() -> None:
    lab, other = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    doc = _signed(lab)
    assert certificate.verify_document(doc, [lab.public_key()])["validator"] is None  # control
    with pytest.raises(TamperedError):
        certificate.verify_document(doc, [other.public_key()])
    with pytest.raises(TamperedError):
        certificate.verify_document(doc, [])


def test_a_performer_signature_over_other_content_does_not_verify() -> None:
    lab = Ed25519PrivateKey.generate()
    doc = _signed(lab)
    # the signature of another certificate, under the right key and role
    doc["signatures"][0]["signature"] = _signed(lab, "beta")["signatures"][0]["signature"]
    with pytest.raises(TamperedError):
        certificate.verify_document(doc, [lab.public_key()])


def test_the_first_signature_must_be_the_performers_role() -> None:
    lab = Ed25519PrivateKey.generate()
    doc = _signed(lab)
    doc["signatures"][0]["role"] = "validator"
    with pytest.raises(TamperedError):
        certificate.verify_document(doc, [lab.public_key()])


def test_a_validator_signature_is_checked_under_its_own_trusted_key() -> None:
    lab, val, stranger = (Ed25519PrivateKey.generate() for _ in range(3))
    doc = certificate.add_validation(_signed(lab), val, "Dana", "2026-01-02")
    keys = [lab.public_key(), val.public_key()]
    assert certificate.verify_document(doc, keys)["validator"] == "Dana"  # control
    # the validator's key not among the keys given: not vouched for
    with pytest.raises(TamperedError):
        certificate.verify_document(doc, [lab.public_key()])
    # a validator signature made by a stranger under the validator's name and key
    forged = json.loads(json.dumps(doc))
    forged["signatures"][1]["signature"] = base64.b64encode(
        stranger.sign(certificate._validator_message(doc))
    ).decode()
    with pytest.raises(TamperedError):
        certificate.verify_document(forged, keys)
    # the second signature must be a validator's
    wrong_role = json.loads(json.dumps(doc))
    wrong_role["signatures"][1]["role"] = "performer"
    with pytest.raises(TamperedError):
        certificate.verify_document(wrong_role, keys)


def test_a_validation_by_the_performers_own_key_is_refused_before_signing() -> None:
    lab = Ed25519PrivateKey.generate()
    doc = _signed(lab)
    with pytest.raises(certificate.BadInputError):
        certificate.add_validation(doc, lab, "self", "2026-01-02")


# ---------------------------------------------------------------- the certificates directory


def test_the_certificates_directory_must_be_a_real_directory(tmp_path: Path) -> None:
    certificate.check_dir(tmp_path / "absent")  # absent: made on first write
    certificate.check_dir(tmp_path)  # a directory: fine
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "elsewhere")
    (tmp_path / "file").write_text("x")
    for bad in ("link", "file"):
        with pytest.raises(TamperedError):
            certificate.check_dir(tmp_path / bad)
        with pytest.raises(TamperedError):  # and nothing is written through it
            certificate.write(_signed(Ed25519PrivateKey.generate()), tmp_path / bad / "c.json")
    assert list((tmp_path / "elsewhere").iterdir()) == []


# ---------------------------------------------------------------- unrecorded destructions


def _outcome(seq: int, intent: int, tenant: str, path: Path, decision: str = "destroyed"):
    return {
        "seq": seq,
        "action": "vault.destroy",
        "tenant": tenant,
        "decision": decision,
        "object": certificate.recorded_digest(path),
        "details": {"certificate": path.name, "intent": intent},
    }


def _intent(seq: int, tenant: str) -> dict:
    return {"seq": seq, "action": "vault.destroy.intent", "tenant": tenant, "decision": "intent"}


@pytest.fixture
def certs(tmp_path: Path):
    """A certificates directory holding lab-signed certificates of acme and beta."""
    lab = Ed25519PrivateKey.generate()
    d = tmp_path / "certificates"
    paths = {
        t: certificate.write(_signed(lab, t), d / f"destroy-{t}.json") for t in ("acme", "beta")
    }
    return d, [lab.public_key()], paths


def _names(out: list[str]) -> set[str]:
    return {line.split(":", 1)[0] for line in out}


def test_every_recorded_destruction_is_accounted_for(certs) -> None:
    d, keys, p = certs
    log = [_intent(1, "acme"), _outcome(2, 1, "acme", p["acme"])]
    log += [_intent(3, "beta"), _outcome(4, 3, "beta", p["beta"], decision="failed")]
    assert certificate.unrecorded(d, log, keys) == []


def test_a_certificate_the_log_does_not_record_is_reported(certs) -> None:
    d, keys, p = certs
    log = [_intent(1, "acme"), _outcome(2, 1, "acme", p["acme"])]
    assert _names(certificate.unrecorded(d, log, keys)) == {"destroy-beta.json"}
    # no log at all: both
    assert _names(certificate.unrecorded(d, [], keys)) == {"destroy-acme.json", "destroy-beta.json"}


def test_only_a_destroyed_or_failed_outcome_records_a_certificate(certs) -> None:
    d, keys, p = certs
    other = _outcome(2, 1, "acme", p["acme"], decision="refused")
    log = [_intent(1, "acme"), other, _intent(3, "beta"), _outcome(4, 3, "beta", p["beta"])]
    assert _names(certificate.unrecorded(d, log, keys)) == {"destroy-acme.json"}
    # an entry of another action naming the certificate records nothing either
    log[:2] = [{**_outcome(2, 1, "acme", p["acme"]), "action": "vault.ingest"}]
    assert _names(certificate.unrecorded(d, log, keys)) == {"destroy-acme.json"}


def test_a_recorded_name_holding_another_certificate_is_reported(certs, tmp_path) -> None:
    d, keys, p = certs
    log = [_intent(1, "acme"), _outcome(2, 1, "acme", p["acme"])]
    log += [_intent(3, "beta"), _outcome(4, 3, "beta", p["beta"])]
    # acme's file replaced by another lab-signed certificate (beta's content)
    p["acme"].write_bytes(p["beta"].read_bytes())
    assert _names(certificate.unrecorded(d, log, keys)) == {"destroy-acme.json"}


def test_a_destroy_still_running_or_killed_before_its_outcome_is_not_reported(certs) -> None:
    d, keys, p = certs
    log = [_intent(1, "acme"), _outcome(2, 1, "acme", p["acme"]), _intent(3, "beta")]
    assert certificate.unrecorded(d, log, keys) == []  # beta's intent is open
    # once beta's intent has an outcome naming some other certificate, beta's file is
    # a destruction the log does not record
    log.append(
        {**_outcome(4, 3, "beta", p["acme"]), "details": {"certificate": "x.json", "intent": 3}}
    )
    assert _names(certificate.unrecorded(d, log, keys)) == {"destroy-beta.json"}
    # an open intent of another tenant covers nothing of beta's
    assert _names(certificate.unrecorded(d, [*log, _intent(5, "gamma")], keys)) == {
        "destroy-beta.json"
    }


def test_what_is_not_a_lab_signed_certificate_file_is_not_counted(certs, tmp_path) -> None:
    d, keys, p = certs
    log = [_intent(1, "acme"), _outcome(2, 1, "acme", p["acme"])]
    log += [_intent(3, "beta"), _outcome(4, 3, "beta", p["beta"])]
    stranger = Ed25519PrivateKey.generate()
    certificate.write(_signed(stranger, "gamma"), d / "destroy-gamma.json")  # other key
    (d / "notes.txt").write_bytes(p["acme"].read_bytes())  # not .json
    lab_signed_elsewhere = tmp_path / "lab-signed.json"
    lab_signed_elsewhere.write_bytes(p["beta"].read_bytes())
    os.symlink(lab_signed_elsewhere, d / "destroy-link.json")  # a link: never followed
    (d / "destroy-dir.json").mkdir()
    assert certificate.unrecorded(d, log, keys) == []
    # control: the same bytes as a regular .json file are reported
    (d / "destroy-copy.json").write_bytes(lab_signed_elsewhere.read_bytes())
    assert _names(certificate.unrecorded(d, log, keys)) == {"destroy-copy.json"}


# ---------------------------------------------------------------- the commands


def _key_files(tmp_path: Path, name: str) -> tuple[Ed25519PrivateKey, Path, Path]:
    key = Ed25519PrivateKey.generate()
    priv, pub = tmp_path / f"{name}.key", tmp_path / f"{name}.pub"
    raw = key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
    priv.write_bytes(base64.b64encode(raw) + b"\n")
    pub.write_text(public_key_b64(key.public_key()) + "\n")
    return key, priv, pub


@pytest.fixture
def signed_file(tmp_path: Path):
    lab, _lab_priv, lab_pub = _key_files(tmp_path, "lab")
    path = certificate.write(_signed(lab), tmp_path / "certs" / "destroy-acme.json")
    _val, val_priv, val_pub = _key_files(tmp_path, "validator")
    return path, lab_pub, val_priv, val_pub


def _validate(path, lab_pub, val_priv, name="Dana Officer", title=None) -> int:
    argv = ["certificate", "validate", str(path), "--key-file", str(val_priv)]
    argv += ["--performer-key", str(lab_pub), "--name", name]
    return main(argv + (["--title", title] if title is not None else []))


def test_require_validation_fails_until_a_validator_counter_signs(signed_file) -> None:
    path, lab_pub, val_priv, val_pub = signed_file
    verify = ["certificate", "verify", str(path), "--key", str(lab_pub), "--key", str(val_pub)]
    assert main(verify) == 0
    assert main([*verify, "--require-validation"]) == 4
    assert _validate(path, lab_pub, val_priv) == 0
    assert main([*verify, "--require-validation"]) == 0


@pytest.mark.parametrize(
    ("name", "title", "accepted"),
    [
        ("D" * 80, None, True),
        ("D", "t" * 80, True),
        ("D" * 81, None, False),
        ("", None, False),
        ("D", "", False),
        ("D", "t" * 81, False),
        ("Dana\nOfficer", None, False),
        ("Dana", "chief\x1b[2J", False),
    ],
)
def test_validate_takes_one_printable_line_of_at_most_80_characters(
    signed_file, name, title, accepted
) -> None:
    path, lab_pub, val_priv, _ = signed_file
    before = path.read_bytes()
    rc = _validate(path, lab_pub, val_priv, name, title)
    if accepted:
        assert rc == 0
        doc = json.loads(path.read_text())
        assert doc["signatures"][1]["name"] == name
    else:
        assert rc == 2
        assert path.read_bytes() == before  # nothing written


def test_validate_refuses_a_certificate_the_performer_key_does_not_verify(signed_file) -> None:
    path, _lab_pub, val_priv, val_pub = signed_file
    before = path.read_bytes()
    # the validator's own public key given as the performer's: the check fails
    assert _validate(path, val_pub, val_priv) == 4
    assert path.read_bytes() == before
    doc = json.loads(before)
    doc["certificate"]["media_information"]["records"] = 0  # an edited certificate
    path.write_text(json.dumps(doc))
    assert _validate(path, signed_file[1], val_priv) == 4
    assert json.loads(path.read_text())["signatures"][1:] == []


def test_validate_refuses_a_key_file_that_is_not_a_private_key(signed_file, tmp_path) -> None:
    path, lab_pub, _val_priv, _ = signed_file
    before = path.read_bytes()
    bad = tmp_path / "bad.key"
    bad.write_text("not base64 at all!\n")
    assert _validate(path, lab_pub, bad) == 2
    assert path.read_bytes() == before


def test_no_certificates_directory_is_no_unrecorded_destruction(tmp_path: Path) -> None:
    """A lab that never destroyed anything may have no certificates/ at all."""
    key = Ed25519PrivateKey.generate()
    assert certificate.unrecorded(tmp_path / "certificates", [], [key.public_key()]) == []
