"""Scan-only modes (issue 18), from the command line: `scan-model` on the shipped
models as a fresh clone holds them (the committed files) and on a malicious package,
`scan-export` on a leaky and a clean artifact against a plaintext synthetic dataset.
Exit codes as modelscan's: 0 clean, 1 issues found, 2 usage.

The leaky artifacts carry a face and a name taken by the test from the dataset's own
files (the oracle); each leaky case has a clean twin that differs only in the leak.
"""

from __future__ import annotations

import csv
import json
import os
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from facelab.synth import SynthConfig, write_dataset

REPO = Path(__file__).resolve().parents[1]
SHIPPED = ("cnn", "eigenface")


def _cli(*args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FACELAB_")}
    env["PYTHONPATH"] = str(REPO)
    return subprocess.run(
        [sys.executable, "-m", "facelab.cli", *args], capture_output=True, text=True, env=env
    )


def _package(src: Path, dst: Path) -> Path:
    """A shipped model as a tenant ships it: model, description and card (its build
    script stays home: the import gate allows no code in a package)."""
    dst.mkdir()
    for f in ("model.onnx", "model.json", "MODEL_CARD.md"):
        shutil.copyfile(src / f, dst / f)
    return dst


def _as_cloned(name: str, tmp: Path) -> Path:
    """``models/NAME`` as a fresh clone holds it: the committed files (``git archive
    HEAD``), not the working tree; the working tree where git is not there."""
    import io
    import tarfile

    p = subprocess.run(
        ["git", "-C", str(REPO), "archive", "--format=tar", "HEAD", f"models/{name}"],
        capture_output=True,
        check=False,
    )
    if p.returncode != 0:
        return REPO / "models" / name
    with tarfile.open(fileobj=io.BytesIO(p.stdout)) as t:  # our own commit's archive
        t.extractall(tmp / "clone", filter="data")
    return tmp / "clone" / "models" / name


@pytest.mark.parametrize("name", SHIPPED)
def test_scan_model_finds_the_shipped_models_clean(name: str, tmp_path: Path) -> None:
    p = _cli("scan-model", str(_package(_as_cloned(name, tmp_path), tmp_path / name)), "--json")
    assert p.returncode == 0, p.stdout + p.stderr
    doc = json.loads(p.stdout)
    assert doc["clean"] and doc["model"] == f"{name}@1.0.0"
    by = {c["name"]: c["passed"] for c in doc["checks"]}
    assert by["signature"] is None and by["approvals"] is None  # not required, not passed
    assert by["files"] and by["onnx"] and by["model.json"]


def test_scan_model_reports_a_malicious_package_and_a_build_script(tmp_path: Path) -> None:
    from facelab.demo import _Payload, _tiny_model

    bad = tmp_path / "malicious"
    _tiny_model(bad)
    (bad / "weights.pt").write_bytes(pickle.dumps(_Payload()))
    p = _cli("scan-model", str(bad))
    assert p.returncode == 1, p.stdout + p.stderr
    assert "ISSUES FOUND" in p.stdout and "system" in p.stdout
    # the same package without the pickle is clean (the finding is the pickle's)
    (bad / "weights.pt").unlink()
    assert _cli("scan-model", str(bad)).returncode == 0
    # a shipped model's own directory holds its build script: code is not allowed
    p = _cli("scan-model", str(REPO / "models" / "cnn"))
    assert p.returncode == 1 and "build.py" in p.stdout


def test_scan_model_usage_errors_are_exit_2(tmp_path: Path) -> None:
    p = _cli("scan-model", str(tmp_path / "missing"))
    assert p.returncode == 2 and "no such package" in p.stderr
    (tmp_path / "x.bin").write_bytes(b"not an archive")
    p = _cli("scan-model", str(tmp_path / "x.bin"))
    assert p.returncode == 2 and "Traceback" not in p.stderr
    assert _cli("scan-model").returncode == 2


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("scan") / "ds"
    write_dataset(SynthConfig(identities=16, captures=2, seed=3), d, workers=1)
    return d


def _row(ds: Path) -> dict:
    with open(ds / "manifest.csv", newline="") as f:
        return next(csv.DictReader(f))


@pytest.mark.slow  # minutes-class end to end: `make test-slow`
def test_scan_export_finds_a_face_and_a_name_and_passes_their_clean_twins(
    dataset: Path, tmp_path: Path
) -> None:
    row = _row(dataset)
    img = cv2.imread(str(dataset / row["path"]))[:, :, ::-1]
    face = tmp_path / "leaky" / "adapter_weights.npy"
    face.parent.mkdir()
    np.save(face, ((img.astype(np.float32) - 127.5) / 128.0).transpose(2, 0, 1))
    noise = tmp_path / "clean" / "adapter_weights.npy"
    noise.parent.mkdir()
    np.save(noise, np.random.default_rng(0).standard_normal((3, 112, 112)).astype(np.float32))
    p = _cli("scan-export", str(face), "--dataset", str(dataset), "--json")
    assert p.returncode == 1, p.stdout + p.stderr
    doc = json.loads(p.stdout)
    assert doc["decision"] == "issues found"
    assert any(f["detector"] == "faces" and f["severity"] == "high" for f in doc["findings"])
    p = _cli("scan-export", str(noise), "--dataset", str(dataset))
    assert p.returncode == 0, p.stdout + p.stderr
    assert "CLEAN" in p.stdout
    log = tmp_path / "leaky" / "train.log"
    log.write_text(f"epoch 3 loss 0.41 worst pair: {row['name']} ({row['passport_no']})\n")
    p = _cli("scan-export", str(log), "--dataset", str(dataset), "--json")
    assert p.returncode == 1, p.stdout + p.stderr
    assert any(f["detector"] == "identifiers" for f in json.loads(p.stdout)["findings"])
    ok = tmp_path / "clean" / "train.log"
    ok.write_text("epoch 3 loss 0.41 worst pair: subject 17 (gate capture)\n")
    assert _cli("scan-export", str(ok), "--dataset", str(dataset)).returncode == 0
    # nothing was released or kept anywhere: the scan wrote no file beside its inputs
    assert sorted(x.name for x in (tmp_path / "leaky").iterdir()) == [
        "adapter_weights.npy",
        "train.log",
    ]


def test_scan_export_usage_errors_are_exit_2(dataset: Path, tmp_path: Path) -> None:
    f = tmp_path / "a.txt"
    f.write_text("hello\n")
    p = _cli("scan-export", str(f))
    assert p.returncode == 2 and "--dataset" in p.stderr
    p = _cli("scan-export", str(tmp_path / "missing.txt"), "--dataset", str(dataset))
    assert p.returncode == 2 and "no such artifact" in p.stderr
    p = _cli("scan-export", str(f), "--dataset", str(tmp_path))
    assert p.returncode == 2 and "manifest.csv" in p.stderr and "Traceback" not in p.stderr
