"""The evidence pack and offline verification (issue 18): a regulator checks the lab's
records with the lab's public key alone, and one changed byte anywhere fails the pack.

Oracles independent of the code under test: the flips are made on the bytes on disk by
the test; the re-signed packs are written by the test's own listing (hashlib) and the
lab's key; the checks assert the verdict and the file named, and each has a positive
control (the unchanged or re-signed but unedited pack verifies).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import random
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from facelab.accountability import evidence, offline
from facelab.errors import TamperedError
from facelab.labdir import (
    audit_writer,
    init_and_record,
    load_public_key,
    load_signing_key,
    public_key_b64,
    unlock,
)
from facelab.synth import SynthConfig, write_dataset
from facelab.vault import ops

PASS = b"evidence pack test passphrase"
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """A lab with two tenants, one destroyed (certificate), and its evidence pack."""
    base = tmp_path_factory.mktemp("evidence")
    lab = init_and_record(base / "lab", PASS, "op")
    root = unlock(lab, PASS)
    for tenant, seed in (("acme", 1), ("borealis", 2)):
        ds = base / f"ds-{tenant}"
        write_dataset(SynthConfig(identities=4, captures=1, seed=seed, size=48), ds, workers=1)
        with audit_writer(lab, root) as log:
            ops.ingest(lab, root, tenant, ds, "op", log)
    with audit_writer(lab, root) as log:
        ops.destroy(lab, root, "borealis", "op", log)
        _a_release(lab, root, log, base / "threshold.txt")
    pack = evidence.write_pack(lab, root, base / "pack", "op", lambda: audit_writer(lab, root))
    pub = base / "lab.pub"
    pub.write_text(public_key_b64(load_public_key(lab)) + "\n")
    return lab, pack, pub


def _a_release(lab, root, log, src: Path) -> Path:
    """A release as the export gate writes and records it (its own writer, ``_release``,
    and the entry ``export`` records), for a one-line text file."""
    from facelab.audit import Event
    from facelab.gates.exporting.gate import ExportReport
    from facelab.gates.exporting.ops import _release

    src.write_text("threshold 0.42\n")
    sha = hashlib.sha256(src.read_bytes()).hexdigest()
    art = {
        "name": "text.txt",
        "path": "part-1/text.txt",
        "kind": "text",
        "bytes": src.stat().st_size,
        "sha256": sha,
        "source_sha256": sha,
        "file": str(src),
    }
    report = ExportReport("acme", (art,), (), (), "medium")
    policy_sha = hashlib.sha256(lab.paths.policy.read_bytes()).hexdigest()
    out = _release(lab, root, "acme", report, "op", "released", None, policy_sha, _now())
    log.record(
        Event(
            "export.release",
            "op",
            role="tenant",
            tenant="acme",
            object="sha256:" + hashlib.sha256(sha.encode()).hexdigest(),
            decision="released",
            details={
                # released files by digest (published); their names are in the release's
                # own manifest, never in the log
                "artifacts": 1,
                "released_sha256": [sha],
                "release": str(out.relative_to(lab.paths.root)),
            },
        )
    )
    return out


def _now():
    from datetime import UTC, datetime

    return datetime.now(UTC)


@pytest.fixture
def pack(built, tmp_path) -> Path:
    """A fresh copy of the pack, away from the lab (the checker has no lab directory)."""
    p = tmp_path / "pack"
    shutil.copytree(built[1], p, symlinks=True)
    return p


def _key(built):
    return load_public_key(built[0])


def _resign(pack: Path, built) -> None:
    """What someone holding the lab key could do: list the pack again and sign it."""
    files = {}
    for dirpath, _, names in os.walk(pack):
        for n in names:
            p = Path(dirpath) / n
            rel = p.relative_to(pack).as_posix()
            if rel not in (evidence.MANIFEST, evidence.SIGNATURE):
                data = p.read_bytes()
                files[rel] = {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}
    m = json.loads((pack / evidence.MANIFEST).read_text())
    m["files"] = dict(sorted(files.items()))
    mbytes = (json.dumps(m, indent=2, sort_keys=True) + "\n").encode()
    (pack / evidence.MANIFEST).write_bytes(mbytes)
    key = load_signing_key(built[0], PASS)
    (pack / evidence.SIGNATURE).write_text(base64.b64encode(key.sign(mbytes)).decode() + "\n")


def test_the_pack_verifies_with_the_public_key_alone_and_not_with_another(built, pack) -> None:
    rep = evidence.verify_pack(pack, _key(built))
    assert rep.ok, rep.problems
    assert rep.certificates == 1 and rep.releases == 1 and rep.proofs == 2
    assert rep.entries >= 6
    assert {c["outcome"].split(":")[0] for c in rep.controls} >= {"intact"}
    # the pack holds what a regulator needs, as files
    for rel in (
        "register/register.json",
        "policy/policy.toml",
        "policy/history.json",
        "audit/entries.jsonl",
        "audit/head/audit_head.a.note",
        "imports/decisions.json",
        "index.html",
    ):
        assert (pack / rel).is_file(), rel
    [cert] = list((pack / "certificates").glob("destroy-borealis-*.json"))
    page = (pack / "index.html").read_text()
    sha = hashlib.sha256(b"threshold 0.42\n").hexdigest()
    assert cert.name in page and sha in page and "Import decisions" in page
    # the pack's own creation is on the record it carries
    actions = [
        json.loads(x)["action"] for x in (pack / "audit/entries.jsonl").read_text().splitlines()
    ]
    assert actions[-1] == "evidence.pack"
    other = Ed25519PrivateKey.generate().public_key()
    bad = evidence.verify_pack(pack, other)
    assert not bad.ok and bad.problems[0].startswith("MANIFEST.json: the signature")


def _flip_positions(size: int, rel: str, rng: random.Random) -> list[int]:
    """Every byte of the signature and of files up to 512 bytes; in larger files the
    first and last byte and 128 positions drawn with a fixed seed."""
    if size <= 512 or rel == evidence.SIGNATURE:
        return list(range(size))
    return sorted({0, size - 1, *rng.sample(range(size), 128)})


def _flip_all(pack: Path, key, positions, masks) -> tuple[int, list[str]]:
    missed, n = [], 0
    for p in sorted(x for x in pack.rglob("*") if x.is_file()):
        rel = p.relative_to(pack).as_posix()
        data = bytearray(p.read_bytes())
        for i in positions(len(data), rel):
            for mask in masks(i):
                data[i] ^= mask
                p.write_bytes(data)
                if evidence.verify_pack(pack, key, fail_fast=True).ok:
                    missed.append(f"{rel}@{i}^{mask:#x}")
                data[i] ^= mask
                n += 1
        p.write_bytes(data)
    return n, missed


def test_every_byte_flip_in_the_pack_is_caught(built, pack) -> None:
    """A one-bit flip (bit 0 at even positions, bit 7 at odd ones) at every position of
    ``_flip_positions`` in every file, the file restored after each one; the slow test
    below flips both bits of every byte of every file. Positive control at the end."""
    rng = random.Random(18)
    n, missed = _flip_all(
        pack,
        _key(built),
        lambda size, rel: _flip_positions(size, rel, rng),
        lambda i: (0x80 if i % 2 else 0x01,),
    )
    assert n > 2000
    assert missed == []
    assert evidence.verify_pack(pack, _key(built)).ok  # restored: verifies again


@pytest.mark.slow
def test_every_byte_flip_of_every_file_is_caught(built, pack) -> None:
    n, missed = _flip_all(pack, _key(built), lambda size, rel: range(size), lambda i: (1, 0x80))
    assert missed == [] and n > 80_000


def test_added_removed_and_linked_files_fail_the_pack(built, pack) -> None:
    key = _key(built)
    (pack / "certificates" / "extra.json").write_text("{}")
    assert "certificates/extra.json: in the pack but not in MANIFEST.json" in (
        evidence.verify_pack(pack, key).problems
    )
    (pack / "certificates" / "extra.json").unlink()
    victim = next((pack / "proofs").glob("*.json"))
    data = victim.read_bytes()
    victim.unlink()
    assert any(
        "listed in MANIFEST.json but missing" in p for p in evidence.verify_pack(pack, key).problems
    )
    victim.symlink_to(built[0].paths.root / "lab.json")
    assert not evidence.verify_pack(pack, key).ok
    victim.unlink()
    victim.write_bytes(data)
    assert evidence.verify_pack(pack, key).ok


def test_inner_checks_hold_even_when_the_listing_is_signed_again(built, pack) -> None:
    """Someone with the lab key re-signs the listing after an edit: the audit log, the
    certificate's own signature, the proofs and the recomputed controls still fail."""
    key = _key(built)
    _resign(pack, built)
    assert evidence.verify_pack(pack, key).ok  # positive control: the helper is sound

    def edited(rel: str, old: bytes, new: bytes) -> list[str]:
        p = pack / rel
        data = p.read_bytes()
        assert old in data
        p.write_bytes(data.replace(old, new, 1))
        _resign(pack, built)
        probs = evidence.verify_pack(pack, key).problems
        p.write_bytes(data)
        _resign(pack, built)
        return probs

    probs = edited("audit/entries.jsonl", b'"actor":"op"', b'"actor":"xx"')
    assert any(p.startswith("audit/: edited-entry") for p in probs), probs
    cert = next((pack / "certificates").glob("*.json")).relative_to(pack).as_posix()
    probs = edited(cert, b'"subjects": 4', b'"subjects": 3')
    assert any(p.startswith(cert) and "signature does not verify" in p for p in probs), probs
    probs = edited("controls.json", b"head at size", b"head at  size")
    assert "controls.json: the outcomes differ from what the pack shows" in probs
    probs = edited("imports/decisions.json", b"[]", b'[{"entry": 1}]')
    assert "imports/decisions.json: differs from the model.import entries" in probs
    h = json.loads((pack / "policy/history.json").read_text())[0]["sha256"].encode()
    probs = edited("policy/history.json", h, b"sha256:" + b"0" * 64)
    assert any(p.startswith("policy/history.json") for p in probs), probs
    [rel] = [p.parent for p in (pack / "releases").glob("*/*/manifest.json")]
    rid = rel.relative_to(pack / "releases").as_posix()
    observed = json.loads((rel / "observed.json").read_text())["part-1/text.txt"].encode()
    probs = edited(f"releases/{rid}/observed.json", observed, b"0" * 64)
    assert f"releases/{rid}: the released files in the lab differ from the manifest" in probs
    probs = edited(f"releases/{rid}/manifest.json", b'"acme"', b'"acmf"')
    assert any(p.startswith(f"releases/{rid}") and "signature" in p for p in probs), probs
    proof = next((pack / "proofs").glob("*.json")).relative_to(pack).as_posix()
    probs = edited(proof, b'\\"actor\\":\\"op\\"', b'\\"actor\\":\\"xx\\"')
    assert any(p.startswith(proof) for p in probs), probs
    cert = pack / next((pack / "certificates").glob("*.json")).relative_to(pack)
    cert.rename(cert.with_name("destroy-acme-20260101T000000Z.json"))
    _resign(pack, built)
    probs = evidence.verify_pack(pack, key).problems
    assert any("no vault.destroy entry of its tenant names it" in p for p in probs), probs
    cert.with_name("destroy-acme-20260101T000000Z.json").rename(cert)
    _resign(pack, built)
    assert evidence.verify_pack(pack, key).ok


def test_a_lab_whose_released_file_changed_gets_a_pack_that_says_so(
    built, tmp_path, monkeypatch
) -> None:
    """The pack shows the lab as it is: a released file changed after its release is a
    problem of the pack (exit 4 at the CLI), not a pack that is silently fine."""
    from facelab.labdir import open_lab

    shutil.copytree(built[0].paths.root, tmp_path / "lab", symlinks=True)
    # a copy of a lab that then changes is a fork: it is checked on "another machine"
    monkeypatch.setenv("FACELAB_KNOWN_LABS", str(tmp_path / "pins.json"))
    lab = open_lab(tmp_path / "lab")
    [f] = list((lab.paths.root / "released").glob("acme/*/part-1/text.txt"))
    f.chmod(0o644)
    f.write_text("threshold 0.99\n")
    root = unlock(lab, PASS)
    out = evidence.write_pack(lab, root, tmp_path / "pack", "op", lambda: audit_writer(lab, root))
    probs = evidence.verify_pack(out, load_public_key(lab)).problems
    assert len(probs) == 1 and "the released files in the lab differ" in probs[0]


def test_a_lab_whose_certificate_was_deleted_gets_a_pack_that_says_so(
    built, tmp_path, monkeypatch
) -> None:
    """Red team 2, a09: deleting a destruction certificate from the lab made the tenant
    vanish from the pack, which still verified. Every certificate the log names must be
    in the pack, as the log recorded it (a validator's counter-signature allowed)."""
    from facelab.labdir import open_lab
    from facelab.vault import certificate

    shutil.copytree(built[0].paths.root, tmp_path / "lab", symlinks=True)
    # a copy of a lab that then changes is a fork: it is checked on "another machine"
    monkeypatch.setenv("FACELAB_KNOWN_LABS", str(tmp_path / "pins.json"))
    lab = open_lab(tmp_path / "lab")
    root = unlock(lab, PASS)
    [cert] = list((lab.paths.root / "certificates").glob("destroy-borealis-*.json"))
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    doc = certificate.add_validation(
        certificate.read(cert), Ed25519PrivateKey.generate(), "Vera", "2026-12-01"
    )
    certificate.write(doc, cert)  # validated: still the certificate the log recorded
    out = evidence.write_pack(lab, root, tmp_path / "p1", "op", lambda: audit_writer(lab, root))
    assert evidence.verify_pack(out, load_public_key(lab)).ok
    cert.unlink()
    out = evidence.write_pack(lab, root, tmp_path / "p2", "op", lambda: audit_writer(lab, root))
    probs = evidence.verify_pack(out, load_public_key(lab)).problems
    assert any(cert.name in p and "not in the pack" in p for p in probs), probs
    from facelab.vault import retention

    row = next(r for r in retention.register(lab, root) if r["tenant"] == "borealis")
    assert row["status"] == "destroyed (certificate missing from the lab)"  # not gone


def _cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO), "FACELAB_PASSPHRASE": PASS.decode()}
    return subprocess.run(
        [sys.executable, "-m", "facelab.cli", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
    )


def test_cli_evidence_verify_exit_codes(built, pack, tmp_path) -> None:
    p = _cli("evidence", "verify", str(pack), "--key", str(built[2]))
    assert p.returncode == 0, p.stderr
    assert "verifies under the key given" in p.stdout
    f = pack / "register" / "register.md"
    f.write_bytes(f.read_bytes().replace(b"|", b"!", 1))
    p = _cli("evidence", "verify", str(pack), "--key", str(built[2]))
    assert p.returncode == 4 and "register/register.md: differs" in p.stderr
    assert "Traceback" not in p.stderr
    p = _cli("evidence", "verify", str(tmp_path / "nope"), "--key", str(built[2]))
    assert p.returncode == 2 and "not a directory" in p.stderr
    p = _cli("evidence", "--out", str(tmp_path / "x"))
    assert p.returncode == 2 and "--lab" in p.stderr
    p = _cli("evidence", "--lab", str(built[0].paths.root), "--out", str(pack))
    assert p.returncode == 2 and "already exists" in p.stderr


def test_offline_release_checkpoint_and_proof_with_the_public_key_only(built, tmp_path) -> None:
    from facelab.gates.exporting.release import FORMAT, dumps, sign_manifest

    lab, _, pub = built
    key = load_public_key(lab)
    # a release directory as the export gate writes it, away from any lab
    rel = tmp_path / "release"
    (rel / "part-1").mkdir(parents=True)
    body = b"threshold 0.42\n"
    (rel / "part-1" / "text.txt").write_bytes(body)
    manifest = {
        "format": FORMAT,
        "tenant": "acme",
        "released": "2026-12-01T00:00:00+00:00",
        "decision": "released",
        "artifacts": [
            {
                "name": "text.txt",
                "path": "part-1/text.txt",
                "kind": "text",
                "bytes": len(body),
                "sha256": hashlib.sha256(body).hexdigest(),
            }
        ],
    }
    (rel / "manifest.json").write_text(dumps(sign_manifest(manifest, load_signing_key(lab, PASS))))
    assert offline.verify_release_dir(rel, key).files == {
        "part-1/text.txt": hashlib.sha256(body).hexdigest()
    }
    assert _cli("evidence", "verify-release", str(rel), "--key", str(pub)).returncode == 0
    (rel / "part-1" / "text.txt").write_bytes(b"threshold 0.43\n")
    with pytest.raises(TamperedError, match="differs from the signed manifest"):
        offline.verify_release_dir(rel, key)
    p = _cli("evidence", "verify-release", str(rel), "--key", str(pub))
    assert p.returncode == 4 and "Traceback" not in p.stderr
    (rel / "part-1" / "text.txt").write_bytes(body)
    (rel / "part-1" / "smuggled.txt").write_bytes(b"x")
    with pytest.raises(TamperedError, match="not listed"):
        offline.verify_release_dir(rel, key)
    (rel / "part-1" / "smuggled.txt").unlink()
    # a manifest signed by another key (even one that names itself inside) fails
    other = Ed25519PrivateKey.generate()
    (rel / "manifest.json").write_text(dumps(sign_manifest(manifest, other)))
    with pytest.raises(TamperedError, match="signature does not verify"):
        offline.verify_release_dir(rel, key)
    # a checkpoint note, alone
    note = sorted((lab.paths.audit / "checkpoints").glob("*.note"))[-1]
    p = _cli("evidence", "verify-checkpoint", str(note), "--key", str(pub))
    assert p.returncode == 0 and lab.origin in p.stdout
    otherpub = tmp_path / "other.pub"
    otherpub.write_text(public_key_b64(other.public_key()))
    assert _cli("evidence", "verify-checkpoint", str(note), "--key", str(otherpub)).returncode == 4
    # an inclusion proof from the pack, alone
    proof = json.loads(next((built[1] / "proofs").glob("*.json")).read_text())
    assert offline.verify_proof(proof, key)["origin"] == lab.origin
    proof["entry_json"] = proof["entry_json"].replace('"op"', '"xx"')
    with pytest.raises(TamperedError):
        offline.verify_proof(proof, key)


@pytest.mark.parametrize("garbage", [b"[1, 2]", b'{"a": null}', b"\xff\xfe"])
def test_a_pack_of_odd_shapes_is_refused_never_a_traceback(built, pack, garbage) -> None:
    """Every JSON file and the audit log replaced by odd bytes, the listing re-signed
    (so the inner parsers see them): the verdict is a problem list, never an exception."""
    key = _key(built)
    targets = [p for p in pack.rglob("*.json") if p.name != evidence.MANIFEST]
    targets.append(pack / "audit" / "entries.jsonl")
    for p in targets:
        original = p.read_bytes()
        p.write_bytes(garbage)
        _resign(pack, built)
        rep = evidence.verify_pack(pack, key)
        assert not rep.ok, p
        p.write_bytes(original)
    _resign(pack, built)
    assert evidence.verify_pack(pack, key).ok
