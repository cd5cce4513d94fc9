"""`facelab export`, `review` and `release verify`: decisions, exit codes, signed
manifests, reviewer overrides, the audit trail, and attacks on the gate itself."""

from __future__ import annotations

import csv
import hashlib
import json
import os
import pickle
import shutil
from pathlib import Path

import cv2
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from tests.export_helpers import PASSPHRASE, build_export_lab
from tests.test_cli_audit import one_line_error
from tests.test_cli_audit import run as _run

ENV = {**os.environ, "FACELAB_PASSPHRASE": PASSPHRASE.decode(), "FACELAB_ACTOR": "alice"}


def run(*args: str):
    return _run(*args, env=ENV)


@pytest.fixture(scope="module")
def el(tmp_path_factory: pytest.TempPathFactory):
    # the CLI, the manifest and overrides, on a copy of the imported model (which no training
    # job wrote: refused by default, tests/test_export_attested.py)
    return build_export_lab(
        tmp_path_factory.mktemp("gate"), identities=40, captures=2, attestation=False
    )


@pytest.fixture
def clean(tmp_path: Path, el) -> Path:
    d = tmp_path / "clean"
    d.mkdir()
    shutil.copyfile(el.cnn / "model.onnx", d / "model.onnx")
    (d / "metrics.csv").write_text("epoch,loss\n1,0.5\n2,0.4\n")
    return d


@pytest.fixture
def leaky(tmp_path: Path, el) -> Path:
    with open(el.dataset / "manifest.csv", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    d = tmp_path / "leaky"
    d.mkdir()
    np.save(d / "w.npy", cv2.imread(str(el.dataset / rows[0]["path"])).astype(np.float32))
    (d / "notes.txt").write_text(f"check {rows[2]['name']}\n")
    return d


def _audit_actions(el) -> list[dict]:
    lines = (el.lab.paths.root / "audit" / "entries.jsonl").read_text().splitlines()
    return [json.loads(x) for x in lines]


def test_a_clean_export_is_released_with_a_signed_manifest(el, clean: Path) -> None:
    p = run("export", "--lab", str(el.lab.paths.root), "--tenant", "acme", str(clean))
    assert p.returncode == 0, p.stdout + p.stderr
    assert "RELEASED" in p.stdout and "descends from cnn@1.0.0" in p.stdout
    rel = Path(p.stdout.split("released to ")[1].split(" (signed")[0])
    # released under the gate's names (one directory given: no part-k level)
    assert sorted(x.relative_to(rel).as_posix() for x in rel.rglob("*") if x.is_file()) == [
        "manifest.json",
        "model.onnx",
        "table.csv",
    ]
    doc = json.loads((rel / "manifest.json").read_text())
    assert doc["manifest"]["decision"] == "released" and doc["manifest"]["tenant"] == "acme"
    v = run("release", "verify", "--lab", str(el.lab.paths.root), str(rel))
    assert v.returncode == 0, v.stderr
    (rel / "table.csv").write_text("epoch,loss\n1,0.0\n")  # tamper after release
    assert run("release", "verify", "--lab", str(el.lab.paths.root), str(rel)).returncode == 4
    doc["manifest"]["decision"] = "overridden"  # forge the manifest
    (rel / "manifest.json").write_text(json.dumps(doc))
    one_line_error(run("release", "verify", "--lab", str(el.lab.paths.root), str(rel)))
    assert _audit_actions(el)[-1]["action"] == "export.release"


def test_a_leaky_export_is_refused_with_exit_3_and_a_json_report(el, leaky: Path) -> None:
    before = (
        set((el.lab.paths.root / "released").rglob("*"))
        if (el.lab.paths.root / "released").exists()
        else set()
    )
    p = run("export", "--lab", str(el.lab.paths.root), "--tenant", "acme", str(leaky), "--json")
    assert p.returncode == 3
    doc = json.loads(p.stdout)
    assert doc["decision"] == "refused" and doc["release"] is None
    by = {f["detector"]: f for f in doc["findings"] if f["severity"] == "high"}
    assert {"faces", "identifiers"} <= set(by)
    # the detectors scan the rebuilt (re-quantised) array: the face is still there
    assert "viewed as 112x112x3" in by["faces"]["location"]
    assert by["faces"]["artifact"] == "weights.npy (tensors)"  # named by the gate
    assert by["identifiers"]["artifact"] == "text.txt"
    # subjects are labels that live for one scan, never the pseudonyms jobs see
    assert by["identifiers"]["subjects"] == ["S2"] or by["identifiers"]["subjects"] == ["S1"]
    assert len(by["faces"]["subjects"]) == 1
    after = (
        set((el.lab.paths.root / "released").rglob("*"))
        if (el.lab.paths.root / "released").exists()
        else set()
    )
    assert after == before
    last = _audit_actions(el)[-1]
    assert last["action"] == "export.refuse" and last["decision"] == "refused"
    # the log counts blocking findings by detector; which file, by name, is in the
    # export's manifest (a place destroy empties), checked against the logged digest
    assert last["details"]["blocking"]["faces"] >= 1
    assert "weights.npy" not in json.dumps(last)
    mf = el.lab.paths.root / "manifests" / "acme" / f"{last['details']['manifest']}.json"
    assert hashlib.sha256(mf.read_bytes()).hexdigest() == last["details"]["manifest_sha256"]
    assert any(b.startswith("faces: weights.npy") for b in json.loads(mf.read_text())["blocking"])
    assert run("audit", "verify", "--lab", str(el.lab.paths.root)).returncode == 0


def test_a_reviewer_override_releases_and_is_logged_with_its_reason(
    el, leaky: Path, tmp_path: Path
) -> None:
    ov = tmp_path / "override.json"
    r = run(
        "review",
        "--tenant",
        "acme",
        "--reviewer",
        "rev",
        "--key",
        str(el.reviewer_key),
        "--reason",
        "synthetic test faces, approved by the DPO",
        "--out",
        str(ov),
        str(leaky),
    )
    assert r.returncode == 0, r.stderr
    p = run(
        "export",
        "--lab",
        str(el.lab.paths.root),
        "--tenant",
        "acme",
        str(leaky),
        "--override",
        str(ov),
    )
    assert p.returncode == 0, p.stderr
    assert "OVERRIDDEN by rev" in p.stdout
    last = _audit_actions(el)[-1]
    assert last["action"] == "export.override"
    assert last["details"]["override"]["reason"].startswith("synthetic test faces")
    rel = el.lab.paths.root / last["details"]["release"]
    m = json.loads((rel / "manifest.json").read_text())["manifest"]
    assert m["decision"] == "overridden" and m["reviewer"]["name"] == "rev"


@pytest.mark.slow  # minutes-class end to end: `make test-slow`
def test_forged_or_misused_overrides_are_rejected_and_nothing_is_released(
    el, leaky: Path, tmp_path: Path
) -> None:
    from facelab.gates.importing.keys import write_keypair

    stranger, _, _ = write_keypair("reviewer", tmp_path / "mallory")
    forged = tmp_path / "forged.json"
    run(
        "review",
        "--tenant",
        "acme",
        "--reviewer",
        "rev",
        "--key",
        str(stranger),
        "--reason",
        "trust me",
        "--out",
        str(forged),
        str(leaky),
    )
    unknown = tmp_path / "unknown.json"
    run(
        "review",
        "--tenant",
        "acme",
        "--reviewer",
        "mallory",
        "--key",
        str(stranger),
        "--reason",
        "trust me",
        "--out",
        str(unknown),
        str(leaky),
    )
    other = tmp_path / "other.json"  # a genuine override, for different bytes
    run(
        "review",
        "--tenant",
        "acme",
        "--reviewer",
        "rev",
        "--key",
        str(el.reviewer_key),
        "--reason",
        "ok",
        "--out",
        str(other),
        str(el.cnn / "model.onnx"),
    )
    released = el.lab.paths.root / "released" / "acme"
    before = sorted(released.iterdir()) if released.exists() else []
    for f, why in (
        (forged, "does not verify"),
        (unknown, "not a reviewer"),
        (other, "does not verify"),
    ):
        p = run(
            "export",
            "--lab",
            str(el.lab.paths.root),
            "--tenant",
            "acme",
            str(leaky),
            "--override",
            str(f),
        )
        assert why in one_line_error(p)
    assert (sorted(released.iterdir()) if released.exists() else []) == before


def test_bad_input_is_one_line_and_exit_2(el, tmp_path: Path) -> None:
    lab = str(el.lab.paths.root)
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    for d in ("a", "b"):
        (tmp_path / d / "log.txt").write_text("epoch 1\n")
    assert "a second artifact named 'log.txt'" in one_line_error(
        run(
            "export",
            "--lab",
            lab,
            "--tenant",
            "acme",
            str(tmp_path / "a" / "log.txt"),
            str(tmp_path / "b" / "log.txt"),
        )
    )
    junk = tmp_path / "override.json"
    junk.write_text('{"reviewer": "rev"}')
    assert "not an override file" in one_line_error(
        run(
            "export",
            "--lab",
            lab,
            "--tenant",
            "acme",
            str(el.cnn / "model.onnx"),
            "--override",
            str(junk),
        )
    )
    for inside in ("keys/keystore.json", "vault.db", "audit"):
        assert "not in tenant acme's outbox" in one_line_error(
            run("export", "--lab", lab, "--tenant", "acme", f"{lab}/{inside}")
        )
    assert "no such artifact" in one_line_error(
        run("export", "--lab", lab, "--tenant", "acme", str(tmp_path / "missing.onnx"))
    )
    assert "not a safe identifier" in one_line_error(
        run("export", "--lab", lab, "--tenant", "../x", str(el.cnn / "model.onnx"))
    )
    assert "no data" in one_line_error(
        run("export", "--lab", lab, "--tenant", "nobody", str(el.cnn / "model.onnx"))
    )


class _Payload:
    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (Path(self.marker),))


def test_attacks_on_the_gate_are_refused_as_unscannable_never_executed(el, tmp_path: Path) -> None:
    d = tmp_path / "attack"
    d.mkdir()
    marker = tmp_path / "pwned"
    arr = np.empty(1, dtype=object)
    arr[0] = _Payload(str(marker))
    with open(d / "pickled.npy", "wb") as f:  # an object array: a pickle inside NPY
        np.lib.format.write_array(f, arr, allow_pickle=True)
    (d / "weights.pt").write_bytes(pickle.dumps(_Payload(str(marker))))
    huge = TensorProto(name="huge", data_type=TensorProto.FLOAT, dims=[10**6, 10**6])
    g = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["y"])],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])],
        [huge],
    )
    onnx.save(helper.make_model(g), d / "huge.onnx")
    (d / "garbage.onnx").write_bytes(os.urandom(4096))
    # a decompression bomb: a tiny PNG that declares 100,000 x 100,000 pixels
    png = cv2.imencode(".png", np.zeros((8, 8), np.uint8))[1].tobytes()
    import struct
    import zlib

    ihdr = b"IHDR" + struct.pack(">IIBBBBB", 100_000, 100_000, 8, 0, 0, 0, 0)
    bomb = png[:8] + struct.pack(">I", 13) + ihdr + struct.pack(">I", zlib.crc32(ihdr)) + png[33:]
    (d / "bomb.png").write_bytes(bomb)
    # an NPY whose header declares 10^12 elements
    hdr = b"{'descr': '<f4', 'fortran_order': False, 'shape': (1000000, 1000000), }"
    hdr += b" " * (118 - len(hdr)) + b"\n"
    (d / "huge.npy").write_bytes(b"\x93NUMPY\x01\x00" + struct.pack("<H", len(hdr)) + hdr)
    os.symlink(el.lab.paths.root / "keys" / "keystore.json", d / "link.json")
    p = run("export", "--lab", str(el.lab.paths.root), "--tenant", "acme", str(d), "--json")
    assert p.returncode == 3, p.stderr
    doc = json.loads(p.stdout)
    refused = {f["artifact"] for f in doc["findings"] if f["detector"] == "contract"}
    assert refused == {
        f"attack/{n}"
        for n in (
            "pickled.npy",
            "weights.pt",
            "huge.onnx",
            "garbage.onnx",
            "link.json",
            "bomb.png",
            "huge.npy",
        )
    }
    assert doc["decision"] == "refused" and not any(a["sha256"] for a in doc["artifacts"])
    assert not marker.exists()
    assert "keystore" not in p.stdout


def test_a_lab_policy_without_an_export_section_stops_with_exit_2(
    el, tmp_path: Path, monkeypatch
) -> None:
    lab = tmp_path / "oldlab"
    shutil.copytree(el.lab.paths.root, lab)
    monkeypatch.setenv("FACELAB_KNOWN_LABS", str(tmp_path / "pins.json"))  # a fork
    text = (lab / "policy.toml").read_text()
    (lab / "policy.toml").write_text(text[: text.index("\n[export]\n")])
    assert "no [export] section" in one_line_error(
        run("export", "--lab", str(lab), "--tenant", "acme", str(el.cnn / "model.onnx"))
    )


def test_an_override_signed_for_one_tenant_does_not_verify_for_another():
    # the override binds the reviewer to a tenant, not only to bytes and a reason
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from facelab.errors import BadInputError
    from facelab.gates.exporting import release
    from facelab.labdir import public_key_b64

    key = Ed25519PrivateKey.generate()
    reviewers = {"rita": public_key_b64(key.public_key())}
    digests, reason = ["ab" * 32, "cd" * 32], "reviewed by hand"
    sig = release.sign_override(key, "acme", digests, reason)
    release.check_override(reviewers, "rita", sig, "acme", digests, reason)  # control
    with pytest.raises(BadInputError, match="does not verify"):
        release.check_override(reviewers, "rita", sig, "beta", digests, reason)
