"""The gates' promises, each attacked for its effect.

Import gate:
* officers' approvals are bound to the tenant's *current* signed statement: swapping
  ``model.onnx`` after the approvals and re-signing alone is refused, and nothing is
  registered (positive control: the officers approve the new statement, it registers);
* a tar member that escapes the package is never written: the filesystem around the
  extraction (and the absolute path named) is checked, not the message; the member
  beside it is written (positive control).

Export gate:
* a detector that crashes refuses the export (fails closed), for every detector; the
  same artifact without the crash is released (positive control);
* findings never name a subject in any spelling: the report, as JSON and as text, is
  searched by an oracle written here (letters only, accents dropped, case folded) for
  every spelling of the names in the artifact, the ICAO 9303 MRZ form ``SURNAME<<GIVEN``
  included; the same oracle finds the name in the artifact (positive control).
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import tarfile
import tempfile
import unicodedata
from pathlib import Path

import numpy as np
import pytest
from facelab.gates.exporting import gate as export_gate
from facelab.gates.exporting import vault_index
from facelab.gates.exporting._types import ScanContext
from facelab.gates.exporting.artifact import Unscannable, load
from facelab.gates.importing import _tar, list_models, sign_package
from facelab.gates.importing.ops import import_model, models_dir
from facelab.labdir import audit_writer, open_lab
from facelab.vault.dataset import read_dataset
from facelab.vault.store import Record
from onnx import numpy_helper

from enclave_policy import load_policy
from tests.audit_helpers import PASS, make_lab
from tests.import_helpers import (
    build_model,
    configure,
    make_keys,
    make_package,
    sign_and_approve,
)


# ================================================================ import gate
@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    return make_keys(tmp_path_factory.mktemp("keys"))


@pytest.fixture
def lab(tmp_path: Path, keys):
    lab = make_lab(tmp_path / "lab")
    configure(lab.paths.root, keys, smoke_timeout_s=10)  # a loaded machine too
    return open_lab(lab.paths.root)


@pytest.fixture
def tmpdir_watch(tmp_path, monkeypatch) -> Path:
    d = tmp_path / "TMPDIR"
    d.mkdir()
    monkeypatch.setenv("TMPDIR", str(d))
    monkeypatch.setattr(tempfile, "tempdir", str(d))
    return d


def _gate(lab, package: Path):
    with audit_writer(lab, PASS) as log:
        return import_model(lab, "acme", package, "tester", log)


def test_approvals_do_not_carry_over_to_a_model_swapped_and_re_signed(lab, keys, tmp_path):
    pkg = sign_and_approve(make_package(tmp_path / "p"), keys)
    approvals = {p.name: p.read_bytes() for p in (pkg / "signatures/approvals").iterdir()}
    # the tenant swaps the model after both approvals and signs again, alone
    swapped = build_model(dim=16)
    swapped.graph.initializer[0].CopyFrom(
        numpy_helper.from_array(np.ones((3, 16), np.float32), "W")
    )
    (pkg / "model.onnx").write_bytes(swapped.SerializeToString())
    sign_package(pkg, keys.tenant_key)
    assert {p.name: p.read_bytes() for p in (pkg / "signatures/approvals").iterdir()} == approvals
    report = _gate(lab, pkg)
    assert not report.accepted
    failed = {c.name: " | ".join(c.problems) for c in report.failed()}
    assert "signature" not in failed  # the tenant's new signature itself is valid
    assert "another signed manifest" in failed["approvals"]
    assert "0 valid approval(s)" in failed["approvals"]
    assert list_models(models_dir(lab)) == []  # the effect: nothing registered
    # positive control: the officers approve what the tenant now signed; it registers
    sign_and_approve(pkg, keys)
    assert _gate(lab, pkg).accepted
    assert len(list_models(models_dir(lab))) == 1


def _tar_bytes(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as tf:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _tree(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


def _escapes(tmp_path: Path) -> dict[str, bytes]:
    outside = tmp_path / "abs-target.txt"
    return {
        "p/ok.txt": b"inside",
        "../evil-dotdot.txt": b"escaped",
        "p/../../evil-nested.txt": b"escaped",
        str(outside): b"escaped",  # an absolute name
    }


def test_tar_members_escaping_the_destination_are_never_written(tmp_path: Path) -> None:
    work = tmp_path / "work"
    dest = work / "dest"
    dest.mkdir(parents=True)
    src = tmp_path / "pkg.tar"
    src.write_bytes(_tar_bytes(_escapes(tmp_path)))
    before = _tree(tmp_path)
    files, problems = _tar.extract(
        src, dest, max_members=16, max_member=1 << 20, max_total=1 << 20, max_ratio=100
    )
    assert files == {"p/ok.txt": 6}
    assert (dest / "p/ok.txt").read_bytes() == b"inside"  # positive control
    # the effect: nothing new anywhere around the destination, nor at the absolute name
    new = _tree(tmp_path) - before
    assert new == {"work/dest/p", "work/dest/p/ok.txt"}, new
    assert not (tmp_path / "abs-target.txt").exists()
    assert len([p for p in problems if "escapes" in p]) == 3


def test_the_import_gate_writes_no_escaping_member_anywhere(
    lab, tmp_path: Path, tmpdir_watch: Path
) -> None:
    tar = tmp_path / "p.tar"
    tar.write_bytes(_tar_bytes(_escapes(tmp_path)))
    before = _tree(tmp_path)
    report = _gate(lab, tar)
    assert not report.accepted
    new = {p for p in _tree(tmp_path) - before if not p.startswith("lab/")}
    assert new == set(), new
    assert not (tmp_path / "abs-target.txt").exists()
    assert list(tmpdir_watch.iterdir()) == []
    for p in (Path.cwd(), Path("/"), Path("/tmp")):
        assert not (p / "evil-dotdot.txt").exists() and not (p / "evil-nested.txt").exists()


# ================================================================ export gate
@pytest.fixture(scope="module")
def scan_env(small_dataset: Path):
    """The default export policy and an index of ``small_dataset``'s people, with
    identifiers revealed (as the gate reads them)."""
    policy = load_policy()
    with open(small_dataset / "manifest.csv", encoding="utf-8", newline="") as f:
        rows = {r["capture_id"]: r for r in csv.DictReader(f)}
    records = []
    for it in read_dataset(small_dataset):
        r = it.row
        records.append(
            Record(
                r["capture_id"],
                r["subject_id"].lower(),
                r["kind"],
                "train",
                it.png,
                _lms(r),
                r["nationality"],
                r["sex"],
                int(r["birth_year"]),
                r.get("birth_date"),
                r["name"],
                r["passport_no"],
            )
        )
    index = vault_index.build(
        records, fields=tuple(policy.exporting.identifiers["fields"]), workers=1
    )
    return policy, index, list(rows.values())


def _lms(row: dict):
    return np.array(
        [[float(row[f"lm{i}_x"]), float(row[f"lm{i}_y"])] for i in range(5)], np.float32
    )


def _scan(scan_env, paths: list[Path]):
    policy, index, _ = scan_env
    ctx = ScanContext(policy.exporting, "acme", index)
    return export_gate.scan(paths, ctx)


def _clean(tmp_path: Path) -> Path:
    p = tmp_path / "notes.txt"
    p.write_text("epoch 1 loss 0.5\nepoch 2 loss 0.4\n")
    return p


@pytest.mark.parametrize("detector", [d.NAME for d in export_gate.DETECTORS])
@pytest.mark.parametrize(
    ("error", "evidence"),
    [
        (RuntimeError("detector bug"), "detector failed (RuntimeError: detector bug)"),
        (Unscannable("truncated tensor"), "cannot be scanned: truncated tensor"),
    ],
)
def test_a_detector_that_crashes_refuses_the_export(
    scan_env, tmp_path, monkeypatch, detector, error, evidence
):
    clean = _clean(tmp_path)
    assert not _scan(scan_env, [clean]).refused  # positive control: released as it is
    mod = next(d for d in export_gate.DETECTORS if detector == d.NAME)

    def boom(art, ctx):
        raise error

    monkeypatch.setattr(mod, "detect", boom)
    report = _scan(scan_env, [clean])
    assert report.refused
    assert [
        (f.detector, f.severity, f.artifact, f.location, f.evidence) for f in report.blocking()
    ] == [(detector, "high", "notes.txt", "whole artifact", evidence)]


def test_the_report_says_what_each_detector_took(scan_env, tmp_path) -> None:
    (tmp_path / "b").mkdir()
    report = _scan(scan_env, [_clean(tmp_path), _clean(tmp_path / "b")])
    assert report.tenant == "acme"
    assert set(report.seconds) == {d.NAME for d in export_gate.DETECTORS}
    for name, s in report.seconds.items():
        assert isinstance(s, float) and 0 <= s < 60 and s == round(s, 3), (name, s)
    assert min(report.seconds.values()) < 1  # measured, not a constant


def test_a_file_no_reader_accepts_refuses_the_export_and_is_listed(scan_env, tmp_path):
    clean = _clean(tmp_path)
    odd = tmp_path / "program.exe"
    odd.write_bytes(b"MZ\x90\x00" + bytes(range(256)))
    policy, index, _ = scan_env
    ctx = ScanContext(policy.exporting, "acme", index)
    # the unreadable file first: the files after it are still scanned and listed
    gone = tmp_path / "gone.txt"
    gone.symlink_to(tmp_path / "nowhere")  # a file that is not there
    report = export_gate.scan([odd, gone, clean], ctx, names={clean: "part-1/text.txt"})
    assert report.refused
    with pytest.raises(Unscannable) as why:  # the reader's own reason, as the evidence
        load(odd, policy.exporting)
    assert next(
        (f.detector, f.severity, f.artifact, f.location, f.evidence) for f in report.blocking()
    ) == ("unscannable", "high", "program.exe", "whole file", str(why.value))
    assert {f.artifact for f in report.blocking()} == {"program.exe", "gone.txt"}
    listed = {a["name"]: a for a in report.artifacts}
    assert listed.pop("gone.txt") == {
        "name": "gone.txt",
        "kind": "unscannable",
        "bytes": 0,
        "sha256": "",
    }
    assert listed == {
        "program.exe": {
            "name": "program.exe",
            "kind": "unscannable",
            "bytes": odd.stat().st_size,
            "sha256": hashlib.sha256(odd.read_bytes()).hexdigest(),
        },
        "part-1/text.txt": {  # the name the caller gave, not the file's own
            "name": "part-1/text.txt",
            "kind": "text",
            "bytes": clean.stat().st_size,
            "sha256": hashlib.sha256(clean.read_bytes()).hexdigest(),
        },
    }


def _letters(text: str) -> str:
    """The oracle's normal form: NFKD, accents dropped, letters only, case folded."""
    t = unicodedata.normalize("NFKD", text)
    return "".join(c for c in t if c.isalpha() and not unicodedata.combining(c)).casefold()


def _spellings(name: str) -> list[str]:
    given, family = name.split(" ", 1)
    return [
        name,
        f"{family} {given}",
        name.upper(),
        name.lower(),
        f"{family}, {given}",
        f"{given}{family}",
        f"{family.upper()}<<{given.upper()}",  # ICAO 9303 MRZ name field
        f"P<XAA{family.upper()}<<{given.upper()}<<<<<<<<<<<<<<<<<<<<<<",
        f"{given[0]}\u0301{given[1:]} {family}",  # an accent added
        f"{given}  {family}.",
    ]


def _names(scan_env) -> list[str]:
    """Names of two people, each part long enough that the oracle cannot hit it by chance."""
    _, _, rows = scan_env
    out = []
    for r in rows:
        parts = r["name"].split(" ")
        if len(parts) == 2 and min(map(len, parts)) >= 5 and r["name"] not in out:
            out.append(r["name"])
    assert len(out) >= 2, "the synthetic dataset should have two such names"
    return out[:2]


def test_findings_never_name_a_subject_in_any_spelling(scan_env, tmp_path) -> None:
    names = _names(scan_env)
    lines = [f"reviewed by {s}" for n in names for s in _spellings(n)]
    text = tmp_path / "notes.txt"
    text.write_text("\n".join(lines) + "\n", encoding="utf-8")
    table = tmp_path / "table.csv"
    table.write_text(
        "".join(f"{s.replace(',', ' ')},0.5\n" for n in names for s in _spellings(n)),
        encoding="utf-8",
    )
    doc = tmp_path / "doc.json"
    doc.write_text(json.dumps({s: {s: s} for n in names for s in _spellings(n)}))
    # a name part as a key, the whole name below it: the value's JSON path holds the part
    nested = tmp_path / "nested.json"
    nested.write_text(json.dumps({n.split(" ")[1]: {"by": n} for n in names}))
    quoted = tmp_path / "quoted.csv"  # a CSV column named after the person
    quoted.write_text("".join(f"{n.split(' ')[1]}\n{n}\n" for n in names[:1]))
    report = _scan(scan_env, [text, table, doc, nested, quoted])
    assert report.refused
    hits = [f for f in report.findings if f.detector == "identifiers" and f.subjects]
    assert {f.artifact for f in hits} == {
        "notes.txt",
        "table.csv",
        "doc.json",
        "nested.json",
        "quoted.csv",
    }
    # every subject is reported in every artifact that holds its name
    for art in ("notes.txt", "table.csv", "doc.json", "nested.json"):
        assert len({s for f in hits if f.artifact == art for s in f.subjects}) == 2, art
    out = _letters(json.dumps(report.to_json(), ensure_ascii=False) + report.text())
    parts = {p for n in names for p in n.split(" ")}
    # positive control: the oracle finds every part in what was scanned
    scanned = _letters("".join(p.read_text() for p in (text, table, doc, nested, quoted)))
    assert all(_letters(p) in scanned for p in parts)
    leaked = sorted(p for p in parts if _letters(p) in out)
    assert leaked == [], f"the report names {leaked}"


def test_the_oracle_would_see_a_name_in_a_finding(scan_env) -> None:
    """The search above is not blind: a finding that quoted an MRZ name field is caught."""
    name = _names(scan_env)[0]
    given, family = name.split(" ")
    planted = f"evidence: {family.upper()}<<{given.upper()}"
    assert _letters(family) in _letters(planted) and _letters(given) in _letters(planted)
