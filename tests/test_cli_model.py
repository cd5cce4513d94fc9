"""`facelab model keygen | sign | approve | import | list` from the command line."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import pytest

from tests.import_helpers import build_model, make_package, model_json
from tests.test_cli_audit import one_line_error, run


def _register_as_printed(keygen_stdout: str) -> None:
    """Run the command `model keygen` printed, exactly as printed."""
    cmd = keygen_stdout.strip().splitlines()[-1].strip()
    assert cmd.startswith("facelab policy add-")
    p = run(*shlex.split(cmd)[1:])
    assert p.returncode == 0, p.stderr


@pytest.mark.slow  # minutes-class end to end: `make test-slow`
def test_the_whole_import_flow(tmp_path: Path) -> None:
    lab = tmp_path / "lab"
    assert run("init", str(lab)).returncode == 0
    k = tmp_path / "keys"
    k.mkdir()
    for kind, name in (("tenant", "acme"), ("officer", "kim"), ("officer", "lee")):
        p = run("model", "keygen", "--kind", kind, "--out", str(k / name), "--lab", str(lab))
        assert p.returncode == 0, p.stderr
        _register_as_printed(p.stdout)  # no hand edit of the policy
    good = make_package(tmp_path / "good")
    assert run("model", "sign", str(good), "--key", str(k / "acme.key")).returncode == 0
    for o in ("kim", "lee"):
        assert (
            run(
                "model", "approve", str(good), "--officer", o, "--key", str(k / f"{o}.key")
            ).returncode
            == 0
        )
    ok = run("model", "import", "--lab", str(lab), "--tenant", "acme", str(good))
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "REGISTERED" in ok.stdout
    assert ok.stderr.splitlines() == [  # progress, as plain lines off a terminal
        "facelab model import: [1/2] copying the package; unpacking and parsing it in the "
        "confinement",
        "facelab model import: [2/2] smoke test: the model runs in the confinement",
    ]
    bad = make_package(tmp_path / "bad", build_model(custom_op=True), spec=model_json())
    run("model", "sign", str(bad), "--key", str(k / "acme.key"))
    refused = run("model", "import", "--lab", str(lab), "--tenant", "acme", str(bad), "--json")
    assert refused.returncode == 3
    rep = json.loads(refused.stdout)
    failed = {c["check"] for c in rep["checks"] if not c["passed"]}
    assert failed == {"approvals", "onnx", "smoke test"}
    assert "import refused" in refused.stderr and "Traceback" not in refused.stderr
    listed = json.loads(run("model", "list", "--lab", str(lab), "--json").stdout)
    assert [m["model"] for m in listed] == ["tiny@1.0.0"]
    assert run("audit", "verify", "--lab", str(lab)).returncode == 0


def test_sign_with_a_missing_key_is_bad_input(tmp_path: Path) -> None:
    pkg = make_package(tmp_path / "p")
    assert "cannot sign" in one_line_error(
        run("model", "sign", str(pkg), "--key", str(tmp_path / "nope.key"))
    )


def test_approve_before_signing_is_bad_input(tmp_path: Path) -> None:
    pkg = make_package(tmp_path / "p")
    run("model", "keygen", "--kind", "officer", "--out", str(tmp_path / "kim"))
    line = one_line_error(
        run("model", "approve", str(pkg), "--officer", "kim", "--key", str(tmp_path / "kim.key"))
    )
    assert "not signed" in line


def test_import_of_a_missing_package(tmp_path: Path) -> None:
    assert run("init", str(tmp_path / "lab")).returncode == 0
    line = one_line_error(
        run(
            "model",
            "import",
            "--lab",
            str(tmp_path / "lab"),
            "--tenant",
            "acme",
            str(tmp_path / "nothing"),
        )
    )
    assert "no such package" in line
    entries = (tmp_path / "lab" / "audit" / "entries.jsonl").read_text().splitlines()
    last = json.loads(entries[-1])
    assert last["action"] == "model.import" and last["decision"] == "error"  # exit 2 audited
    assert "no such package" in last["details"]["error"]


def test_a_malformed_tar_is_refused_with_exit_3_not_a_traceback(tmp_path: Path) -> None:
    """Issue 15 failure 2 from the command line: a negative base-256 size."""
    from tests.import_helpers import tar_header

    assert run("init", str(tmp_path / "lab")).returncode == 0
    tar = tmp_path / "neg.tar"
    tar.write_bytes(tar_header("p/README.md", b"\xff" * 12) + b"x" * 512 + b"\0" * 1024)
    p = run("model", "import", "--lab", str(tmp_path / "lab"), "--tenant", "acme", str(tar))
    assert p.returncode == 3 and "Traceback" not in p.stderr
    assert "base-256" in p.stdout


def test_package_copies_what_the_gate_takes_and_names_the_rest(tmp_path: Path) -> None:
    src = make_package(tmp_path / "src", extra={"build.py": b"import torch\n"})
    (src / "notes").mkdir()
    p = run("model", "package", str(src), str(tmp_path / "pkg"))
    assert p.returncode == 0, p.stderr
    assert sorted(q.name for q in (tmp_path / "pkg").iterdir()) == [
        "README.md",
        "model.json",
        "model.onnx",
    ]
    assert (tmp_path / "pkg" / "model.onnx").read_bytes() == (src / "model.onnx").read_bytes()
    assert "build.py" in p.stdout and "notes/" in p.stdout
    # an existing OUT is kept unless --force
    (tmp_path / "pkg" / "mine").write_text("keep")
    assert "--force" in one_line_error(run("model", "package", str(src), str(tmp_path / "pkg")))
    assert (tmp_path / "pkg" / "mine").read_text() == "keep"
    assert run("model", "package", str(src), str(tmp_path / "pkg"), "--force").returncode == 0
    assert not (tmp_path / "pkg" / "mine").exists()


def test_sign_refuses_the_wrong_kind_of_key_and_a_dataset(tmp_path: Path) -> None:
    from facelab.synth import SynthConfig, write_dataset

    pkg = make_package(tmp_path / "p")
    run("model", "keygen", "--kind", "officer", "--out", str(tmp_path / "kim"))
    run("model", "keygen", "--kind", "tenant", "--out", str(tmp_path / "acme"))
    line = one_line_error(run("model", "sign", str(pkg), "--key", str(tmp_path / "kim.key")))
    assert "wrong kind of key" in line and "Ed25519" in line
    assert not (pkg / "signatures").exists()  # nothing written
    ds = tmp_path / "ds"
    write_dataset(SynthConfig(identities=2, captures=1, seed=1), ds, workers=1)
    line = one_line_error(run("model", "sign", str(ds), "--key", str(tmp_path / "acme.key")))
    assert "a dataset" in line
    assert not (ds / "signatures").exists()
    # positive control: the right key on a package signs
    assert run("model", "sign", str(pkg), "--key", str(tmp_path / "acme.key")).returncode == 0
    assert (pkg / "signatures" / "tenant.sig").is_file()
