"""The import gate against a corpus of bad packages built here, and a good one.

Regression tests for issue 15 (failures 1-8) and for public reports, each asserting the
effect (refused for its real defect, an audit entry written, nothing left in $TMPDIR,
no file of the package copied into the lab). Source, idea:

* issue 15 f1: README.md / model.json of 100,000 ``[`` (RecursionError in json.loads).
* issue 15 f2, CPython CVE-2025-8194: a tar member with a negative base-256 size makes
  ``tarfile`` loop forever.
* issue 15 f3, onnx CVE-2022-25882 / CVE-2024-27318 (``a/../b``), CVE-2026-34446
  (hard links): external data resolved against the working directory; a hard-linked
  file outside the package copied in.
* issue 15 f4: weights under ``signatures/`` (outside the tenant signature) swapped
  after the approvals.
* issue 15 f5, picklescan CVE-2025-10155 / GHSA-769v-p64c-89pr and CVE-2025-1889
  (protocol 0/1 pickles under any name), google/saferpickle#46 (a zip behind
  ``PK\x07\x08``), modelaudit#624 (a pickle inside a zip entry), fickling#190 (recent
  picklescan bypasses): a pickle with a broken tail, with text after it, stacked
  pickles, a polyglot ONNX holding a zip of pickles, a 17 MiB pickle, a protocol-4
  pickle without PROTO.
* issue 15 f6: training_info with a custom op, external data outside and a declared
  50000 x 50000 tensor; a sparse 8200 x 8200 initializer; Constant value_ints and
  string tensors over the limits.
* issue 15 f7: memory that explodes with the batch (asked for at batch 8 only).
* issue 15 f8: a gzip bomb (refused while streaming); metadata holding a base64
  pickle and a URL.
* onnxruntime's ``*/_ORT_MEM_ADDR_/*`` external-data tag (reads process memory).
* picklescan GHSA-w8jq-xcqf-f792 / GHSA-7q5r-7gvp-wc82 (zip flag-bit tricks that
  crash a scanner but not PyTorch): found by signature, never by opening the zip.
"""

from __future__ import annotations

import base64
import gzip
import io
import json
import os
import pickle
import stat
import tarfile
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
from facelab.errors import BadInputError
from facelab.gates.importing import gate as gate_module
from facelab.gates.importing import list_models
from facelab.gates.importing.ops import import_model, models_dir
from facelab.labdir import audit_writer, open_lab
from onnx import TensorProto, helper, numpy_helper

from tests.audit_helpers import PASS, make_lab
from tests.import_helpers import (
    blowup_model,
    build_model,
    configure,
    dir_to_tar_bytes,
    make_keys,
    make_package,
    model_json,
    sign_and_approve,
    tar_header,
    with_external_weights,
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
    configure(lab.paths.root, keys, smoke_timeout_s=10)  # a loaded machine too
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
        "registry",
    ]
    models = list_models(models_dir(lab))
    assert models[0]["model"] == "tiny@1.0.0" and models[0]["approvers"] == ["kim", "lee"]
    stored = models_dir(lab) / models[0]["path"]
    mode = (stored / "model.onnx").stat().st_mode
    assert not mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH)
    # the stored copy's directories: readable and traversable by all, writable by none
    dirs = [stored, *(p for p in stored.rglob("*") if p.is_dir())]
    assert {stat.S_IMODE(d.stat().st_mode) for d in dirs} == {0o555}
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
    from facelab.gates.importing import approve

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
    import re

    text = lab.paths.policy.read_text()  # a short limit: the slow model never ends anyway
    lab.paths.policy.write_text(
        re.sub(r"^smoke_timeout_s = .*$", "smoke_timeout_s = 3", text, flags=re.M)
    )
    lab = open_lab(lab.paths.root)
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
    from facelab.gates.importing import approve

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


def _upstream_signed(pkg: Path, keys) -> None:
    """Signed with model-signing's own defaults (it leaves out .git, .github, .gitignore
    and .gitattributes besides the signature), then approved (red team 15, case 30)."""
    import model_signing
    from facelab.gates.importing import approve

    (pkg / "signatures").mkdir(exist_ok=True)
    hashing = model_signing.hashing.Config().set_ignored_paths(paths=["signatures"])
    (
        model_signing.signing.Config()
        .set_hashing_config(hashing)
        .use_elliptic_key_signer(private_key=keys.tenant_key)
        .sign(pkg, pkg / "signatures" / "tenant.sig")
    )
    for name, key in keys.officers.items():
        approve(pkg, name, key)


def test_a_package_signed_with_model_signings_defaults_is_admitted(lab, keys, tmp_path) -> None:
    pkg = make_package(tmp_path / "p")
    _upstream_signed(pkg, keys)
    report = gate(lab, pkg)
    assert report.accepted, failed(report)


def test_a_file_the_signature_leaves_out_is_refused(lab, keys, tmp_path) -> None:
    # the same defaults, but the package holds one of the paths they leave out
    pkg = make_package(tmp_path / "p")
    (pkg / ".gitattributes").write_text("*.onnx binary\n")
    _upstream_signed(pkg, keys)
    f = failed(gate(lab, pkg))
    assert "leaves out ['.gitattributes'], which the package holds" in f["signature"]


def test_a_statement_listing_a_file_twice_is_refused(tmp_path) -> None:
    # verifiers keeping the first entry and those keeping the last would disagree
    from facelab.gates.importing.signing import unsigned_files

    statement = {
        "_type": "https://in-toto.io/Statement/v1",
        "predicate": {
            "serialization": {"method": "files", "ignore_paths": ["signatures"]},
            "resources": [
                {"name": "model.onnx", "digest": "00" * 32, "algorithm": "sha256"},
                {"name": "model.json", "digest": "11" * 32, "algorithm": "sha256"},
                {"name": "model.onnx", "digest": "22" * 32, "algorithm": "sha256"},
            ],
        },
    }
    payload = base64.b64encode(json.dumps(statement).encode()).decode()
    (tmp_path / "signatures").mkdir()
    (tmp_path / "signatures" / "tenant.sig").write_text(
        json.dumps({"dsseEnvelope": {"payload": payload}})
    )
    problems = unsigned_files(tmp_path, ["model.onnx", "model.json"])
    assert problems == ["the signed statement lists model.onnx more than once"]


def test_a_package_holding_packages_is_refused_by_name(lab, keys, tmp_path) -> None:
    # which of pkgA/ and pkgB/ is "the" package would be the reader's guess (red team
    # 15, case 15); signed and approved, so only that can refuse it
    inner = (tmp_path / "p" / "model.onnx", tmp_path / "p" / "model.json")
    pkg = make_package(tmp_path / "p")
    extra = {f"{d}/{f.name}": f.read_bytes() for d in ("pkgA", "pkgB") for f in inner}
    for rel, data in extra.items():
        (pkg / rel).parent.mkdir(exist_ok=True)
        (pkg / rel).write_bytes(data)
    sign_and_approve(pkg, keys)
    f = failed(gate(lab, pkg))
    assert "holds 2 model package(s) in subdirectories (pkgA, pkgB)" in f["files"]


# ---------------------------------------------------------------- issue 15 regressions


@pytest.fixture
def tmpdir_watch(tmp_path, monkeypatch) -> Path:
    """$TMPDIR for the gate: a fresh directory the test checks is empty afterwards."""
    d = tmp_path / "TMPDIR"
    d.mkdir()
    monkeypatch.setenv("TMPDIR", str(d))
    monkeypatch.setattr(tempfile, "tempdir", str(d))
    return d


def audit_entries(lab) -> list[dict]:
    return [json.loads(x) for x in (lab.paths.audit / "entries.jsonl").read_text().splitlines()]


def last_import(lab) -> dict:
    return [e for e in audit_entries(lab) if e["action"] == "model.import"][-1]


def stored_bytes(lab) -> list[bytes]:
    d = models_dir(lab)
    return [p.read_bytes() for p in d.rglob("*") if p.is_file()] if d.exists() else []


# f1 -------------------------------------------------------------------------------------
def test_a_readme_of_100000_brackets_is_only_text(lab, keys, tmp_path, tmpdir_watch) -> None:
    pkg = make_package(tmp_path / "p")
    (pkg / "README.md").write_text("[" * 100_000)
    report = gate(lab, sign_and_approve(pkg, keys))
    assert report.accepted, report.table()  # positive control: odd text is still text
    assert last_import(lab)["decision"] == "registered"
    assert list(tmpdir_watch.iterdir()) == []


def test_a_model_json_of_100000_brackets_is_refused(lab, keys, tmp_path, tmpdir_watch) -> None:
    pkg = make_package(tmp_path / "p")
    (pkg / "model.json").write_text("[" * 100_000)
    f = failed(gate(lab, sign_and_approve(pkg, keys)))
    assert "deeper than 64" in f["model.json"] or "not JSON" in f["model.json"]
    assert last_import(lab)["decision"] == "refused"
    assert list(tmpdir_watch.iterdir()) == []


# f2 -------------------------------------------------------------------------------------
def test_a_negative_base256_tar_size_is_refused_before_any_loop(
    lab, tmp_path, tmpdir_watch
) -> None:
    body = tar_header("p/README.md", b"\xff" * 12) + b"x" * 512 + b"\0" * 1024
    tar = tmp_path / "neg.tar"
    tar.write_bytes(body)
    report = gate(lab, tar)
    assert not report.accepted
    assert "base-256" in failed(report)["files"]
    entry = last_import(lab)
    assert entry["decision"] == "refused" and "base-256" in json.dumps(entry["details"])
    assert list(tmpdir_watch.iterdir()) == []


# f3 -------------------------------------------------------------------------------------
def test_external_data_resolves_inside_the_private_copy_from_any_directory(
    lab, keys, tmp_path, monkeypatch
) -> None:
    weights = np.arange(64, dtype=np.float32).tobytes()
    pkg = make_package(
        tmp_path / "p",
        with_external_weights(build_model(), "weights.bin", 64),
        extra={"weights.bin": weights},
    )
    sign_and_approve(pkg, keys)
    decoy = tmp_path / "cwd-with-decoy"
    decoy.mkdir()
    (decoy / "weights.bin").write_bytes(b"\0" * 3)  # a wrong-size file where cwd lookups land
    empty = tmp_path / "cwd-empty"
    empty.mkdir()
    for cwd in (decoy, empty):
        monkeypatch.chdir(cwd)
        report = gate(lab, pkg)
        assert report.accepted, (cwd, report.table())


def test_a_hard_linked_file_is_refused_and_never_copied(lab, keys, tmp_path) -> None:
    secret = tmp_path / "outside-secret.bin"
    secret.write_bytes(b"SECRET-OUTSIDE-THE-PACKAGE" * 10)
    model = with_external_weights(build_model(), "weights.bin", len(secret.read_bytes()) // 4)
    pkg = make_package(tmp_path / "p", model)
    os.link(secret, pkg / "weights.bin")
    f = failed(gate(lab, sign_and_approve(pkg, keys)))
    assert "hard link" in f["files"]
    assert all(b"SECRET-OUTSIDE" not in b for b in stored_bytes(lab))
    assert list_models(models_dir(lab)) == []


# f4 -------------------------------------------------------------------------------------
def test_weights_under_signatures_are_refused(lab, keys, tmp_path) -> None:
    pkg = make_package(tmp_path / "p", with_external_weights(build_model(), "signatures/w.bin", 4))
    sign_and_approve(pkg, keys)
    (pkg / "signatures" / "w.bin").write_bytes(b"\1" * 16)  # swapped after both approvals
    f = failed(gate(lab, pkg))
    assert "signature files only" in f["signature"]
    assert "outside the tenant signature" in f["onnx"]


def test_a_stray_file_in_signatures_is_refused(lab, keys, tmp_path) -> None:
    pkg = sign_and_approve(make_package(tmp_path / "p"), keys)
    (pkg / "signatures" / "notes.txt").write_text("hello\n")
    assert "signature files only" in failed(gate(lab, pkg))["signature"]


# f5 -------------------------------------------------------------------------------------
def _zip_of_pickles() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("archive/data.pkl", pickle.dumps(_Evil(), protocol=2))
    return buf.getvalue()


_HIDDEN = {
    "protocol 0 with a broken tail": ("README.md", pickle.dumps(_Evil(), 0) + b"\xff\xfe junk"),
    "a pickle then text": ("LICENSE", pickle.dumps(_Evil(), 2) + b"\nMIT License\n"),
    "stacked pickles": ("weights.bin", pickle.dumps(1, 4) + pickle.dumps(_Evil(), 4)),
    "a zip behind PK\\x07\\x08": ("LICENSE", b"PK\x07\x08" + _zip_of_pickles()),
    "a 17 MiB pickle": ("weights.bin", pickle.dumps([b"\0" * (17 << 20), _Evil()], 4)),
    "protocol 4 without PROTO, mid-file": (
        "MODEL_CARD.md",
        b"# card\n" + b"\x8c\x05posix\x94\x8c\x06system\x94\x93\x8c\x02id\x85R.",
    ),
}


@pytest.mark.parametrize("case", sorted(_HIDDEN))
def test_a_hidden_pickle_is_found_by_content(lab, keys, tmp_path, case) -> None:
    name, data = _HIDDEN[case]
    pkg = make_package(tmp_path / "p", extra={name: data})
    f = failed(gate(lab, sign_and_approve(pkg, keys)))
    assert "pickle" in f["files"] and name in f["files"], f
    assert not Path("/tmp/facelab-pwned").exists()


def test_an_onnx_model_that_is_also_a_zip_of_pickles(lab, keys, tmp_path) -> None:
    model = build_model()
    blob = numpy_helper.from_array(np.frombuffer(_zip_of_pickles(), np.uint8), "blob")
    model.graph.initializer.append(blob)
    pkg = make_package(tmp_path / "p", model)
    f = failed(gate(lab, sign_and_approve(pkg, keys)))
    assert "model.onnx" in f["files"] and "zip of pickles" in f["files"]


# f6 -------------------------------------------------------------------------------------
def test_training_info_is_refused_and_checked_like_the_graph(lab, keys, tmp_path) -> None:
    model = build_model()
    big = TensorProto(name="T", data_type=TensorProto.FLOAT, dims=[50_000, 50_000])
    big.data_location = TensorProto.EXTERNAL
    for k, v in (("location", "../../etc/passwd"), ("offset", "0"), ("length", "40")):
        e = big.external_data.add()
        e.key, e.value = k, v
    algo = helper.make_graph(
        [helper.make_node("Steal", ["T"], ["u"], domain="evil.io")], "algo", [], [], [big]
    )
    ti = model.training_info.add()
    ti.algorithm.CopyFrom(algo)
    ti.initialization.CopyFrom(helper.make_graph([], "init", [], []))
    f = failed(gate(lab, sign_and_approve(make_package(tmp_path / "p", model), keys)))
    for needle in ("training_info", "evil.io:Steal", "outside the package", "2,500,000,000"):
        assert needle in f["onnx"], (needle, f["onnx"])


def test_a_sparse_initializer_counts_at_its_dense_size(lab, keys, tmp_path) -> None:
    model = build_model()
    values = numpy_helper.from_array(np.ones(4, np.float32), "S")
    indices = numpy_helper.from_array(np.arange(4, dtype=np.int64), "S_idx")
    model.graph.sparse_initializer.append(helper.make_sparse_tensor(values, indices, [8200, 8200]))
    f = failed(gate(lab, sign_and_approve(make_package(tmp_path / "p", model), keys)))
    assert "dense [8200, 8200]" in f["onnx"] and "parameters total 256.5 MiB" in f["onnx"]


@pytest.fixture
def small_limits(tmp_path, keys):
    """A lab whose limits are small enough to breach with small test files."""
    lab = make_lab(tmp_path / "lab-small")
    configure(lab.paths.root, keys, max_tensor_elements=40_000, max_param_bytes=1 << 20)
    return open_lab(lab.paths.root)


def _static(lab, pkg):
    from facelab.gates.importing import inspect

    report, ctx = inspect(pkg, "acme", lab.policy.importing, dynamic=False)
    ctx.package.cleanup()
    return report


def test_list_valued_constants_and_string_tensors_count(small_limits, keys, tmp_path) -> None:
    good = sign_and_approve(make_package(tmp_path / "good"), keys)
    assert _static(small_limits, good).accepted  # positive control under these limits
    ints = build_model()
    ints.graph.node.append(helper.make_node("Constant", [], ["c"], value_ints=list(range(50_000))))
    f = failed(_static(small_limits, sign_and_approve(make_package(tmp_path / "i", ints), keys)))
    assert "value_ints declares 50,000 elements" in f["onnx"]
    strings = build_model()
    st = helper.make_tensor("names", TensorProto.STRING, [40], [b"a" * (1 << 16)] * 40)
    strings.graph.initializer.append(st)
    f = failed(_static(small_limits, sign_and_approve(make_package(tmp_path / "s", strings), keys)))
    assert "parameters total 2.5 MiB" in f["onnx"]


@pytest.mark.parametrize(
    ("value", "needle"),
    [
        (base64.b64encode(pickle.dumps(_Evil(), 2)).decode(), "base64-encoded"),
        ("weights at https://evil.example/w.bin", "URL"),
    ],
)
def test_metadata_is_scanned_for_payloads(lab, keys, tmp_path, value, needle) -> None:
    model = build_model()
    helper.set_model_props(model, {"note": value})
    f = failed(gate(lab, sign_and_approve(make_package(tmp_path / "p", model), keys)))
    assert needle in f["onnx"]


def test_custom_ops_in_subgraphs_and_functions_are_found(lab, keys, tmp_path) -> None:
    model = build_model()
    branch = helper.make_graph(
        [helper.make_node("Exec", [], ["o"], domain="evil.io")],
        "then",
        [],
        [helper.make_tensor_value_info("o", TensorProto.FLOAT, None)],
    )
    model.graph.node.append(
        helper.make_node("If", ["cond_in"], ["r"], then_branch=branch, else_branch=branch)
    )
    fn = helper.make_function(
        "lib", "F", ["a"], ["b"], [helper.make_node("Run", ["a"], ["b"], domain="evil.io")], []
    )
    model.functions.append(fn)
    f = failed(gate(lab, sign_and_approve(make_package(tmp_path / "p", model), keys)))
    assert "subgraph" in f["onnx"] and "evil.io:Exec" in f["onnx"]
    assert "function lib:F" in f["onnx"] and "evil.io:Run" in f["onnx"]


def test_onnxruntime_memory_address_tag_is_refused(lab, keys, tmp_path) -> None:
    loc = "_ORT_MEM_ADDR_/x.bin"
    pkg = make_package(tmp_path / "p", with_external_weights(build_model(), loc, 4))
    f = failed(gate(lab, sign_and_approve(pkg, keys)))
    assert "process memory" in f["onnx"]


# f7 -------------------------------------------------------------------------------------
def test_memory_that_explodes_with_the_batch_is_refused(lab, keys, tmp_path) -> None:
    """N**10 floats: refused statically, its work per image at a job's batch is over
    ``import.max_gflops``. N**6 floats (256 GiB at batch 64, 2 GFLOP per image): within
    the work bound, refused statically by ``import.max_tensor_mb``; with that bound
    lifted in the policy, the smoke test's memory limit stops it when it runs."""
    import re

    pkg = sign_and_approve(make_package(tmp_path / "p", blowup_model()), keys)
    f = failed(gate(lab, pkg))
    assert set(f) == {"onnx", "smoke test"} and "GFLOP per image at batch 64" in f["onnx"], f
    pkg = sign_and_approve(make_package(tmp_path / "q", blowup_model(power=6)), keys)
    f = failed(gate(lab, pkg))
    assert set(f) == {"onnx", "smoke test"} and "memory bomb" in f["onnx"], f
    text = lab.paths.policy.read_text()
    lab.paths.policy.write_text(
        re.sub(r"^max_tensor_mb = .*$", "max_tensor_mb = 1000000000", text, flags=re.M)
    )
    f = failed(gate(open_lab(lab.paths.root), pkg))
    assert set(f) == {"smoke test"} and "memory" in f["smoke test"], f


# f8 -------------------------------------------------------------------------------------
def _gzip_bomb(total: int) -> bytes:
    """A .tar.gz (one gzip member) whose one tar member declares ``total`` zero bytes,
    a few hundred KiB on disk. (A multi-member bomb is refused sooner: a second gzip
    member is refused, ``test_import_redteam2``.)"""
    import zlib

    co = zlib.compressobj(9, zlib.DEFLATED, 31)  # wbits 31: a gzip wrapper
    out = [co.compress(tar_header("p/weights.bin", f"{total:011o}\0".encode()))]
    zeros = b"\0" * (1 << 20)
    out += [co.compress(zeros) for _ in range(total >> 20)]
    return b"".join(out) + co.flush()


def test_a_gzip_bomb_stops_at_its_first_megabytes(tmp_path) -> None:
    from facelab.gates.importing import _tar

    src = tmp_path / "bomb.tar.gz"
    src.write_bytes(_gzip_bomb(512 << 20))
    assert src.stat().st_size < 1 << 20
    dest = tmp_path / "out"
    dest.mkdir()
    with pytest.raises(_tar.TarRefused, match="decompression ratio"):
        _tar.extract(
            src, dest, max_members=10, max_member=8 << 30, max_total=8 << 30, max_ratio=200
        )
    written = sum(p.stat().st_size for p in dest.rglob("*") if p.is_file())
    assert written < 4 << 20  # stopped long before 512 MiB


def test_a_gzip_bomb_package_is_refused_and_audited(lab, tmp_path, tmpdir_watch) -> None:
    src = tmp_path / "bomb.tar.gz"
    src.write_bytes(_gzip_bomb(256 << 20))  # declares less than the package limit
    f = failed(gate(lab, src))
    assert "decompression ratio" in f["files"]
    assert last_import(lab)["decision"] == "refused"
    assert list(tmpdir_watch.iterdir()) == []


def test_a_good_tar_gz_package_is_accepted(lab, keys, tmp_path) -> None:
    pkg = sign_and_approve(make_package(tmp_path / "good"), keys)
    src = tmp_path / "good.tar.gz"
    src.write_bytes(gzip.compress(dir_to_tar_bytes(pkg)))
    assert gate(lab, src).accepted


# failing closed: crashes, hangs, errors are refusals (or audited bad input) --------------
def test_a_crash_in_the_confined_checks_is_a_refusal(
    lab, keys, tmp_path, tmpdir_watch, monkeypatch
) -> None:
    monkeypatch.setattr(gate_module, "STATIC_TARGET", "facelab.gates.importing._static_child:nope")
    pkg = sign_and_approve(make_package(tmp_path / "p"), keys)
    f = failed(gate(lab, pkg))
    assert "crashed" in f["files"] and "AttributeError" in f["files"]
    assert last_import(lab)["decision"] == "refused"
    assert list(tmpdir_watch.iterdir()) == []


def test_a_hang_in_the_confined_checks_is_a_refusal(
    lab, keys, tmp_path, tmpdir_watch, monkeypatch
) -> None:
    monkeypatch.setattr(gate_module, "STATIC_TIMEOUT_S", 0.3)
    pkg = sign_and_approve(make_package(tmp_path / "p"), keys)
    f = failed(gate(lab, pkg))
    assert "ran past the 0.3 s time limit" in f["files"]
    assert list(tmpdir_watch.iterdir()) == []


def test_a_failure_of_the_gate_itself_is_audited_and_leaves_nothing(
    lab, keys, tmp_path, tmpdir_watch, monkeypatch
) -> None:
    def boom(*a, **k):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(gate_module.confine, "run_python", boom)
    pkg = sign_and_approve(make_package(tmp_path / "p"), keys)
    with pytest.raises(RuntimeError):
        gate(lab, pkg)
    entry = last_import(lab)
    assert entry["decision"] == "error" and "disk on fire" in entry["details"]["error"]
    assert list(tmpdir_watch.iterdir()) == []


@pytest.mark.parametrize("what", ["missing", "not an archive"])
def test_bad_input_is_audited(lab, tmp_path, tmpdir_watch, what) -> None:
    src = tmp_path / "pkg"
    if what == "not an archive":
        src.write_bytes(b"just some bytes\n" * 100)
    with pytest.raises(BadInputError):
        gate(lab, src)
    assert last_import(lab)["decision"] == "error"
    assert list(tmpdir_watch.iterdir()) == []


@pytest.mark.parametrize(("count", "accepted"), [(3, True), (4, False)])
def test_a_directory_package_holds_at_most_max_files_files(tmp_path, count, accepted) -> None:
    # the bound is inclusive: exactly max_files files are copied, one more is refused
    # and nothing past the bound is copied
    from facelab.gates.importing.package import copy_dir

    src = tmp_path / "src"
    src.mkdir()
    for i in range(count):
        (src / f"f{i}.txt").write_bytes(b"x" * (i + 1))
    pkg = copy_dir(src, tmp_path / "dest", max_bytes=1 << 20, max_files=3)
    if accepted:
        assert pkg.problems == []
        assert sorted(pkg.files) == [f"f{i}.txt" for i in range(count)]
        assert (tmp_path / "dest/f2.txt").read_bytes() == b"xxx"
    else:
        assert pkg.problems == [f"{src}: more than 3 files"]
        assert len(pkg.files) == 3 and not (tmp_path / "dest/f3.txt").exists()


@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
def test_every_binary_pickle_protocol_is_sniffed_as_a_pickle(protocol) -> None:
    # oracle: the PROTO opcode (0x80, protocol) that pickle.dumps writes first (PEP 307)
    from facelab.gates.importing.filetype import sniff

    data = pickle.dumps({"w": [1.0, 2.0]}, protocol=protocol)
    assert data[:2] == bytes([0x80, protocol])
    assert sniff(data) == "pickle"
    assert sniff(b"\x80\x06" + data[2:]) == "binary"  # control: no such protocol yet


def test_external_data_the_tenant_statement_does_not_name_is_refused_by_the_signature_check(
    tmp_path,
) -> None:
    """Defence in depth: the signature check names an external-data file of model.onnx
    that the signed statement does not list even when the package listing handed to it
    lacks that file (the gate refuses such a context earlier; the check must not rely on
    it), and a signed external file is accepted (the control)."""
    from types import SimpleNamespace

    from facelab.gates.importing import sign_package
    from facelab.gates.importing._types import GateContext
    from facelab.gates.importing.checks import signature
    from facelab.gates.importing.package import Package

    keys = make_keys(tmp_path / "keys")
    pkg = make_package(tmp_path / "pkg", extra={"weights.bin": b"\0" * 64})
    sign_package(pkg, keys.tenant_key)
    files = {p.relative_to(pkg).as_posix(): p.stat().st_size for p in pkg.rglob("*") if p.is_file()}
    policy = SimpleNamespace(tenant_keys={"acme": keys.tenant_pub})

    def check(external: set[str]):
        ctx = GateContext(Package(pkg, dict(files)), policy, "acme")
        ctx.external_files = external
        return signature.run(ctx)

    ok = check({"weights.bin"})
    assert ok.passed and ok.problems == (), ok.problems
    bad = check({"weights.bin", "more.bin"})
    assert not bad.passed
    assert bad.problems == (
        "more.bin: external data of model.onnx not covered by the tenant signature",
    )


# round 3: a template that mixes in the rest of its batch ---------------------------------
def test_a_model_whose_template_depends_on_the_rest_of_the_batch_is_refused(
    lab, keys, tmp_path
) -> None:
    """Each template plus the batch's mean template: one person's face leaks into
    another's template. The smoke test compares every row of a mixed batch with the same
    image run alone (the plain model, the control, is admitted by the tests above)."""
    m = build_model()
    g = m.graph
    y = g.output[0].name
    g.node.extend(
        [
            helper.make_node("ReduceMean", [y], ["bm"], axes=[0], keepdims=1),
            helper.make_node("Add", [y, "bm"], ["Ymix"]),
        ]
    )
    g.output[0].name = "Ymix"
    f = failed(gate(lab, sign_and_approve(make_package(tmp_path / "p", m), keys)))
    assert set(f) == {"smoke test"} and "depends on the other images" in f["smoke test"], f
    assert list_models(models_dir(lab)) == []
