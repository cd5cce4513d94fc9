"""`facelab synth` and `facelab demo` from the command line: exit codes and messages."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

FACELAB = [sys.executable, "-m", "facelab.cli"]


def _run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*FACELAB, *args], capture_output=True, text=True, cwd=cwd, timeout=300, check=False
    )


def _one_line_error(p: subprocess.CompletedProcess[str]) -> str:
    assert p.returncode == 2, p.stderr
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1, p.stderr
    assert "Traceback" not in p.stderr
    return lines[0]


def test_synth_writes_a_dataset(tmp_path: Path) -> None:
    p = _run(
        "synth", "--out", str(tmp_path / "d"), "--identities", "4", "--captures", "2", "--seed", "3"
    )
    assert p.returncode == 0, p.stderr
    assert "wrote 12 images of 4 identities" in p.stdout
    assert p.stderr == ""  # no progress bar when not on a terminal
    assert (tmp_path / "d" / "manifest.csv").exists()


@pytest.mark.parametrize(
    "args",
    [["--identities", "-1"], ["--identities", "3", "--captures", "-2"], ["--identities", "many"]],
)
def test_negative_or_malformed_counts_exit_2(tmp_path: Path, args: list[str]) -> None:
    line = _one_line_error(_run("synth", "--out", str(tmp_path / "d"), *args))
    assert "identities" in line or "captures" in line
    assert not (tmp_path / "d").exists()


def test_non_empty_out_without_force_exits_2(tmp_path: Path) -> None:
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "x").write_text("x")
    line = _one_line_error(_run("synth", "--out", str(tmp_path / "d"), "--identities", "2"))
    assert str(tmp_path / "d") in line and "not empty" in line
    assert (tmp_path / "d" / "x").read_text() == "x"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="uses /proc")
def test_unwritable_out_exits_2() -> None:
    line = _one_line_error(_run("synth", "--out", "/proc/facelab-test", "--identities", "2"))
    assert "/proc/facelab-test" in line


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes through permission bits")
def test_read_only_parent_exits_2(tmp_path: Path) -> None:
    ro = tmp_path / "ro"
    ro.mkdir(mode=0o500)
    line = _one_line_error(_run("synth", "--out", str(ro / "d"), "--identities", "2"))
    assert "not writable" in line


@pytest.mark.slow  # minutes-class end to end: `make test-slow`
def test_demo_builds_a_lab_with_a_contact_sheet_and_a_verified_log(tmp_path: Path) -> None:
    p = _run("demo", "--lab", str(tmp_path / "lab"), "--identities", "80")
    assert p.returncode == 0, p.stderr
    assert "identities per nationality" in p.stdout
    assert "intact" in p.stdout and "crypto-shredded" in p.stdout
    sheet = tmp_path / "lab" / "demo" / "contact_sheet.png"
    assert list((tmp_path / "lab" / "certificates").glob("destroy-borealis-*.json"))
    assert not list((tmp_path / "lab" / "demo").glob("plaintext-*"))
    assert sheet.read_bytes()[:4] == b"\x89PNG"
    verify = _run("audit", "verify", "--lab", str(tmp_path / "lab"))
    assert verify.returncode == 0, verify.stderr
    shown = _run("audit", "show", "--lab", str(tmp_path / "lab"), "--action", "vault.*")
    for action in ("vault.ingest", "vault.source_deleted", "vault.read", "vault.destroy"):
        assert action in shown.stdout
    # the whole story: jobs, both export decisions, the 1:N refusal, retention, register
    controls = dict(
        line.rsplit("  ", 1)
        for line in p.stdout.splitlines()
        if line.startswith("  ") and "  " in line.strip()
    )
    out = {k.strip(): v.strip() for k, v in controls.items()}
    assert out["1:1 benchmark job (test split), report to the outbox"].startswith("done")
    assert out[
        "training job: a PCA head fitted on the train split, private per subject"
    ].startswith("done")
    assert out[
        "export gate: trained head and benchmark report released, signed manifest"
    ].startswith("released")
    # a bare tensor waits for a reviewer (contract), and the faces detector found the face
    assert out["export gate: artifact hiding a training face refused"] == (
        "refused: contract, faces"
    )
    assert out["1:N search job (gallery, top-k) refused by the purpose policy"].startswith(
        "refused"
    )
    for action in (
        "job.start",
        "job.finish",
        "job.refuse",
        "export.release",
        "export.refuse",
        "retention.run",
    ):
        assert (
            action
            in _run("audit", "show", "--lab", str(tmp_path / "lab"), "--action", action).stdout
        )
    page = (tmp_path / "lab" / "demo" / "report.html").read_text()
    assert "data:image/png;base64," in page and "Register of processors" in page
    assert "| borealis |" in (tmp_path / "lab" / "demo" / "register.md").read_text()
    assert '<table class="register">' in page and "| borealis |" not in page  # a table
    _demo_ends_answerable(tmp_path / "lab", out)


def _demo_ends_answerable(lab: Path, out: dict[str, str]) -> None:
    """Issue 18: the demo ends with an evidence pack that verifies with the public key
    alone, a register that lists models, released digests and destructions, and one
    person's subject access report whose identifiers never reach the log."""
    pack = lab / "demo" / "evidence"
    assert out["evidence pack verified offline with the lab's public key only"].startswith(
        "verifies"
    )
    p = _run("evidence", "verify", str(pack), "--key", str(lab / "keys" / "lab_signing.pub"))
    assert p.returncode == 0, p.stderr
    rows = {
        r["tenant"]: r
        for r in json.loads((pack / "register" / "register.json").read_text())["processors"]
    }
    registry = json.loads((lab / "models" / "registry.json").read_text())
    assert [m["digest"] for m in rows["acme"]["models_imported"]] == [
        e["digest"] for e in registry if e["tenant"] == "acme"
    ]
    [rel] = list((lab / "released" / "acme").iterdir())
    # released files by digest (the log, and so the register, holds no tenant file names)
    listed = {f["sha256"] for x in rows["acme"]["artifacts_released"] for f in x["files"]}
    for a in json.loads((rel / "manifest.json").read_text())["manifest"]["artifacts"]:
        assert hashlib.sha256((rel / a["path"]).read_bytes()).hexdigest() in listed
    gone = rows["borealis"]["destruction"]
    assert gone["status"] == "destroyed" and (lab / "certificates" / gone["certificate"]).is_file()
    hist = json.loads((pack / "policy" / "history.json").read_text())
    assert len(hist) >= 2  # the demo edits the policy after `init`: both texts are kept
    kept = {v.stem for v in (pack / "policy" / "versions").glob("*.toml")}
    assert {h["sha256"].removeprefix("sha256:") for h in hist} == kept
    sar = json.loads((lab / "demo" / "subject-access" / "report.json").read_text())
    assert sar["found"] and [h["tenant"] for h in sar["holdings"]] == ["acme"]
    assert (lab / "demo" / "subject-access" / "report.html").is_file()
    log = (lab / "audit" / "entries.jsonl").read_bytes()
    assert sar["person"]["passport_no"].encode() not in log
    assert sar["person"]["name"].encode() not in log


@pytest.mark.parametrize("n", ["79", "2001", "eighty", "-5"])
def test_demo_refuses_a_size_outside_its_range_before_creating_anything(
    tmp_path: Path, n: str
) -> None:
    p = _run("demo", "--lab", str(tmp_path / "lab"), "--identities", n)
    assert p.returncode == 2
    assert "--identities" in p.stderr and "Traceback" not in p.stderr
    assert not (tmp_path / "lab").exists()


def _run_without_dlib(*args: str) -> subprocess.CompletedProcess[str]:
    """`facelab ARGS` in a Python where dlib cannot be imported (as without the extra)."""
    code = (
        "import sys; sys.modules['dlib'] = None; sys.modules['face_recognition_models'] = None\n"
        "from facelab.cli import main; sys.exit(main(sys.argv[1:]))"
    )
    return subprocess.run(
        [sys.executable, "-c", code, *args],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_audit_without_the_reference_extra_exits_2_before_writing(tmp_path: Path) -> None:
    out = tmp_path / "d"
    p = _run_without_dlib("synth", "--out", str(out), "--identities", "3", "--audit")
    line = _one_line_error(p)
    assert "reference extra" in line
    assert not out.exists()  # refused before any work
    # positive control: the same interpreter trick still lets a plain synth run
    p = _run_without_dlib("synth", "--out", str(out), "--identities", "3")
    assert p.returncode == 0, p.stderr
    assert "audit" not in json.loads((out / "synth.json").read_text())


def test_audit_needs_two_identities_and_a_gate_capture(tmp_path: Path) -> None:
    pytest.importorskip("dlib")
    pytest.importorskip("face_recognition_models")
    for args in (["--identities", "1"], ["--identities", "3", "--captures", "0"]):
        out = tmp_path / "d"
        _one_line_error(_run("synth", "--out", str(out), *args, "--audit"))
        assert not out.exists()


def test_audit_certificate_is_printed_and_recorded(tmp_path: Path) -> None:
    pytest.importorskip("dlib")
    pytest.importorskip("face_recognition_models")
    n, captures = 6, 2
    audited, plain = tmp_path / "a", tmp_path / "p"
    base = ["--identities", str(n), "--captures", str(captures), "--seed", "5", "--workers", "1"]
    p = _run("synth", "--out", str(audited), *base, "--audit")
    assert p.returncode == 0, p.stderr
    a = json.loads((audited / "synth.json").read_text())["audit"]
    assert a["threshold"] == 0.6
    assert a["genuine_pairs"] == n * captures
    assert a["impostor_pairs"] == n * (n - 1) * captures
    for key in ("fmr", "fnmr", "eer", "haar_one_face_passport", "haar_one_face_gate"):
        assert 0.0 <= a[key] <= 1.0, (key, a)
    # rates are counts over the pairs or images they name
    for rate, total in ((a["fmr"], a["impostor_pairs"]), (a["haar_one_face_gate"], n * captures)):
        assert abs(rate * total - round(rate * total)) < 1e-6, (rate, total)
    assert f"FMR at 0.6  {a['fmr']:.4f}" in p.stdout
    assert f"FNMR at 0.6 {a['fnmr']:.4f}" in p.stdout
    assert f"EER         {a['eer']:.4f}" in p.stdout
    # the audit measures the dataset and changes none of its images or rows
    assert _run("synth", "--out", str(plain), *base).returncode == 0
    for rel in ("manifest.csv", *(f"images/{q.name}" for q in (plain / "images").iterdir())):
        assert (audited / rel).read_bytes() == (plain / rel).read_bytes(), rel
    assert "audit" not in json.loads((plain / "synth.json").read_text())
