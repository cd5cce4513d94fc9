"""The import gate against a corpus of bad packages built here, and a good one."""

from __future__ import annotations

import io
import json
import os
import pickle
import stat
import tarfile
import zipfile
from pathlib import Path

import pytest

from lab.gates.importing import list_models
from lab.gates.importing.ops import import_model, models_dir
from lab.labdir import audit_writer, open_lab
from tests.audit_helpers import PASS, make_lab
from tests.import_helpers import (
    build_model,
    configure,
    make_keys,
    make_package,
    model_json,
    sign_and_approve,
)


class _Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned > /tmp/facelab-pwned",))


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    return make_keys(tmp_path_factory.mktemp("keys"))


@pytest.fixture
def lab(tmp_path: Path, keys):
    lab = make_lab(tmp_path / "lab")
    configure(lab.paths.root, keys, smoke_timeout_s=4)
    return open_lab(lab.paths.root)


def gate(lab, package: Path):
    with audit_writer(lab, PASS) as log:
        return import_model(lab, "acme", package, "tester", log)


def failed(report) -> dict[str, str]:
    return {c.name: " | ".join(c.problems) for c in report.failed()}


def test_a_good_package_is_registered_read_only_and_audited(lab, keys, tmp_path) -> None:
    pkg = sign_and_approve(make_package(tmp_path / "good"), keys)
    report = gate(lab, pkg)
    assert report.accepted, report.table()
    assert [c.name for c in report.checks] == [
        "files",
        "signature",
        "approvals",
        "model.json",
        "onnx",
        "smoke test",
    ]
    models = list_models(models_dir(lab))
    assert models[0]["model"] == "tiny@1.0.0" and models[0]["approvers"] == ["kim", "lee"]
    stored = models_dir(lab) / models[0]["path"]
    mode = (stored / "model.onnx").stat().st_mode
    assert not mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH)
    entries = (lab.paths.audit / "entries.jsonl").read_text()
    assert '"model.import"' in entries and '"registered"' in entries
    again = gate(lab, pkg)  # content-addressed: the same package registers once
    assert again.accepted and len(list_models(models_dir(lab))) == 1


def test_a_tar_of_a_good_package_is_accepted(lab, keys, tmp_path) -> None:
    pkg = sign_and_approve(make_package(tmp_path / "good"), keys)
    tar = tmp_path / "good.tar"
    with tarfile.open(tar, "w") as tf:
        tf.add(pkg, arcname="good")
    assert gate(lab, tar).accepted


# ---------------------------------------------------------------- the bad corpus
def test_unsigned(lab, tmp_path) -> None:
    f = failed(gate(lab, make_package(tmp_path / "p")))
    assert "unsigned" in f["signature"]


def test_one_approval_only(lab, keys, tmp_path) -> None:
    f = failed(gate(lab, sign_and_approve(make_package(tmp_path / "p"), keys, ("kim",))))
    assert set(f) == {"approvals", "smoke test"}
    assert "1 valid approval(s)" in f["approvals"]


def test_the_same_officer_twice_is_one_approval(lab, keys, tmp_path) -> None:
    pkg = sign_and_approve(make_package(tmp_path / "p"), keys, ("kim",))
    (pkg / "signatures/approvals/kim2.json").write_text(
        (pkg / "signatures/approvals/kim.json").read_text()
    )
    assert "1 valid approval(s)" in failed(gate(lab, pkg))["approvals"]


def test_a_file_changed_after_signing(lab, keys, tmp_path) -> None:
    pkg = sign_and_approve(make_package(tmp_path / "p"), keys)
    (pkg / "model.json").write_text(json.dumps(model_json(name="swapped")))
    f = failed(gate(lab, pkg))
    assert "does not verify" in f["signature"] and "model.json" in f["signature"]


def test_a_file_added_after_signing(lab, keys, tmp_path) -> None:
    pkg = sign_and_approve(make_package(tmp_path / "p"), keys)
    (pkg / "LICENSE").write_text("MIT\n")
    assert "does not verify" in failed(gate(lab, pkg))["signature"]


def test_an_approver_not_in_the_policy(lab, keys, tmp_path) -> None:
    f = failed(gate(lab, sign_and_approve(make_package(tmp_path / "p"), keys, ("kim", "park"))))
    assert "'park' is not an import officer" in f["approvals"]


def test_an_approval_forged_with_another_key(lab, keys, tmp_path) -> None:
    from lab.gates.importing import approve

    pkg = sign_and_approve(make_package(tmp_path / "p"), keys, ("kim",))
    approve(pkg, "lee", keys.stranger)  # lee's name, someone else's key
    assert "signature does not verify" in failed(gate(lab, pkg))["approvals"]


@pytest.mark.parametrize("name", ["weights.pkl", "model.pt", "README.md", "extra.bin"])
def test_a_pickle_calling_os_system_is_refused_unread(lab, keys, tmp_path, name) -> None:
    pkg = make_package(tmp_path / "p")
    (pkg / name).write_bytes(pickle.dumps(_Evil(), protocol=2 if name != "extra.bin" else 0))
    f = failed(gate(lab, sign_and_approve(pkg, keys)))
    assert "pickle" in f["files"] and "system" in f["files"], f
    assert not Path("/tmp/facelab-pwned").exists()


def test_a_pytorch_style_zip_of_pickles(lab, keys, tmp_path) -> None:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("archive/data.pkl", pickle.dumps(_Evil()))
    pkg = make_package(tmp_path / "p", extra={"model.bin": buf.getvalue()})
    f = failed(gate(lab, sign_and_approve(pkg, keys)))
    assert "zip of pickles" in f["files"] and "system" in f["files"]


def test_a_nested_archive(lab, keys, tmp_path) -> None:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        info = tarfile.TarInfo("x.txt")
        info.size = 1
        tf.addfile(info, io.BytesIO(b"x"))
    pkg = make_package(tmp_path / "p", extra={"weights.tgz": buf.getvalue()})
    assert "nested archive" in failed(gate(lab, sign_and_approve(pkg, keys)))["files"]


def test_an_onnx_model_with_a_custom_op(lab, keys, tmp_path) -> None:
    pkg = make_package(tmp_path / "p", build_model(custom_op=True))
    f = failed(gate(lab, sign_and_approve(pkg, keys)))
    assert "evil.io:ReadFile" in f["onnx"]
    assert "never loaded" in f["smoke test"]


def test_external_data_pointing_outside_the_package(lab, keys, tmp_path) -> None:
    pkg = make_package(tmp_path / "p", build_model(external=("../../etc/passwd", 4)))
    f = failed(gate(lab, sign_and_approve(pkg, keys)))
    assert "points outside the package" in f["onnx"] and "../../etc/passwd" in f["onnx"]


@pytest.mark.parametrize("loc", ["/etc/passwd", "sub/../../x.bin", "~/.ssh/id_rsa"])
def test_other_escaping_external_data(lab, keys, tmp_path, loc) -> None:
    pkg = make_package(tmp_path / "p", build_model(external=(loc, 4)))
    assert "outside the package" in failed(gate(lab, sign_and_approve(pkg, keys)))["onnx"]


def test_a_tar_with_a_symlink(lab, keys, tmp_path) -> None:
    pkg = sign_and_approve(make_package(tmp_path / "p"), keys)
    tar = tmp_path / "p.tar"
    with tarfile.open(tar, "w") as tf:
        tf.add(pkg, arcname="p")
        link = tarfile.TarInfo("p/weights.bin")
        link.type = tarfile.SYMTYPE
        link.linkname = "/etc/passwd"
        tf.addfile(link)
    f = failed(gate(lab, tar))
    assert "link" in f["files"] and "/etc/passwd" in f["files"]


@pytest.mark.parametrize("name", ["../evil.txt", "/abs.txt"])
def test_a_tar_member_escaping_the_package(lab, tmp_path, name) -> None:
    tar = tmp_path / "p.tar"
    with tarfile.open(tar, "w") as tf:
        info = tarfile.TarInfo(name)
        info.size = 1
        tf.addfile(info, io.BytesIO(b"x"))
    assert "escapes" in failed(gate(lab, tar))["files"]


def test_a_symlink_in_a_package_directory(lab, keys, tmp_path) -> None:
    pkg = sign_and_approve(make_package(tmp_path / "p"), keys)
    os.symlink("/etc/passwd", pkg / "LICENSE")
    assert "symbolic link" in failed(gate(lab, pkg))["files"]


def test_a_declared_10_gb_initializer(lab, keys, tmp_path) -> None:
    pkg = make_package(tmp_path / "p", build_model(huge=True), extra={"weights.bin": b"\0" * 40})
    f = failed(gate(lab, sign_and_approve(pkg, keys)))
    assert "2,500,000,000 elements, 9.3 GiB" in f["onnx"]
    assert "never loaded" in f["smoke test"]


def test_output_shape_contradicting_model_json(lab, keys, tmp_path) -> None:
    pkg = make_package(tmp_path / "p", build_model(dim=16), spec=model_json(dim=128))
    f = failed(gate(lab, sign_and_approve(pkg, keys)))
    assert set(f) == {"smoke test"} and "contradicts model.json" in f["smoke test"]


def test_a_model_that_runs_past_the_time_limit(lab, keys, tmp_path) -> None:
    pkg = make_package(tmp_path / "p", build_model(slow=True))
    f = failed(gate(lab, sign_and_approve(pkg, keys)))
    assert set(f) == {"smoke test"} and "time limit" in f["smoke test"]


def test_bad_model_json(lab, keys, tmp_path) -> None:
    spec = model_json()
    spec["input"]["layout"] = "NCWH"
    spec["output"]["dim"] = 0
    f = failed(gate(lab, sign_and_approve(make_package(tmp_path / "p", spec=spec), keys)))
    assert "layout" in f["model.json"] and "output.dim" in f["model.json"]


def test_not_onnx_bytes(lab, keys, tmp_path) -> None:
    pkg = make_package(tmp_path / "p")
    (pkg / "model.onnx").write_bytes(b"\x08\x07" + os.urandom(300))
    assert "onnx" in failed(gate(lab, sign_and_approve(pkg, keys)))


def test_every_refusal_is_audited_with_its_reasons(lab, tmp_path) -> None:
    gate(lab, make_package(tmp_path / "p"))
    last = json.loads((lab.paths.audit / "entries.jsonl").read_text().splitlines()[-1])
    assert last["action"] == "model.import" and last["decision"] == "refused"
    assert "signature" in last["details"]["failed"]


def test_a_signature_that_leaves_the_model_unsigned(lab, keys, tmp_path) -> None:
    """model-signing verifies all but the paths the signer ignored: a tenant signature
    that ignores model.onnx verifies with any model.onnx. The gate refuses it."""
    import model_signing

    from lab.gates.importing import approve

    pkg = make_package(tmp_path / "p")
    (pkg / "signatures").mkdir()
    hashing = model_signing.hashing.Config().set_ignored_paths(
        paths=["signatures", "model.onnx"], ignore_git_paths=False
    )
    (
        model_signing.signing.Config()
        .set_hashing_config(hashing)
        .use_elliptic_key_signer(private_key=keys.tenant_key)
        .sign(pkg, pkg / "signatures" / "tenant.sig")
    )
    for name, key in keys.officers.items():
        approve(pkg, name, key)
    before = (pkg / "model.onnx").read_bytes()
    (pkg / "model.onnx").write_bytes(build_model(dim=32).SerializeToString())  # swapped
    assert (pkg / "model.onnx").read_bytes() != before
    f = failed(gate(lab, pkg))
    assert "only 'signatures' may be left out" in f["signature"]
    assert "model.onnx: not covered" in f["signature"]
