"""Default deny for channels no detector closes: under the default policy, free text,
metrics tables and bare tensors (``export.contract.reviewed_kinds``) leave only after a
reviewer's output check, a signed override; the gate alone releases derived models and
facelab's own reports (the demo's export, tests/test_cli_synth.py). A name in ROT13,
which no identifier detector reads, is refused by the contract; the same files leave with
a reviewer's override, as the gate's rebuild."""

from __future__ import annotations

import codecs
import csv
import json
import os
from pathlib import Path

import numpy as np
import pytest

from tests.export_helpers import PASSPHRASE, build_export_lab
from tests.test_cli_audit import run as _run

ENV = {**os.environ, "FACELAB_PASSPHRASE": PASSPHRASE.decode(), "FACELAB_ACTOR": "alice"}
REVIEWED = ("metrics_table", "text", "weights")


def run(*args: str):
    return _run(*args, env=ENV)


@pytest.fixture(scope="module")
def el(tmp_path_factory: pytest.TempPathFactory):
    return build_export_lab(
        tmp_path_factory.mktemp("reviewed"), identities=6, captures=1, reviewed_kinds=REVIEWED
    )


def _export(el, *paths: Path, override: Path | None = None):
    extra = ["--override", str(override)] if override else []
    return run(
        "export",
        "--lab",
        str(el.lab.paths.root),
        "--tenant",
        "acme",
        "--json",
        *map(str, paths),
        *extra,
    )


def _released(el) -> list[Path]:
    d = el.lab.paths.root / "released" / "acme"
    return sorted(d.iterdir()) if d.exists() else []


@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("notes.txt", b"training went fine; loss 0.31 after 12 epochs\n"),
        ("metrics.csv", b"epoch,loss\n1,0.5\n2,0.4\n"),
        ("w.npy", None),
    ],
)
def test_a_reviewed_kind_is_refused_without_a_reviewer(el, tmp_path, name, content) -> None:
    f = tmp_path / name
    if content is None:
        np.save(f, np.random.default_rng(0).normal(size=(8, 8)).astype(np.float32))
    else:
        f.write_bytes(content)
    before = _released(el)
    p = _export(el, f)
    assert p.returncode == 3, p.stdout + p.stderr
    findings = json.loads(p.stdout)["findings"]
    assert any(
        x["detector"] == "contract" and "reviewer's output check" in x["evidence"] for x in findings
    )
    assert _released(el) == before  # nothing written


def test_a_name_no_detector_reads_is_held_for_the_reviewer_then_released_with_one(
    el, tmp_path
) -> None:
    with open(el.dataset / "manifest.csv", encoding="utf-8") as fh:
        name = next(csv.DictReader(fh))["name"]
    f = tmp_path / "notes.txt"
    f.write_text(f"thanks to {codecs.encode(name, 'rot13')} for the run\n")
    p = _export(el, f)
    assert p.returncode == 3
    blocking = [x for x in json.loads(p.stdout)["findings"] if x["severity"] == "high"]
    assert [x["detector"] for x in blocking] == ["contract"]  # only the contract held it
    # the reviewer checks it and signs an override naming the file and a reason
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
        "checked by hand: no personal data",
        "--out",
        str(ov),
        str(f),
    )
    assert r.returncode == 0, r.stderr
    before = _released(el)
    p = _export(el, f, override=ov)
    assert p.returncode == 0, p.stdout + p.stderr
    [new] = [d for d in _released(el) if d not in before]
    manifest = json.loads((new / "manifest.json").read_text())["manifest"]
    assert manifest["decision"] == "overridden" and manifest["reviewer"]["name"] == "rev"
