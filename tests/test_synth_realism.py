"""The synthetic faces look like faces to tools nobody here wrote, and carry identity.

A few hundred identities at the default difficulty (issue 2's acceptance checks).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from facelab.synth import SynthConfig, write_dataset
from facelab.synth import _realism as realism


@pytest.fixture(scope="module")
def realism_sets(tmp_path_factory: pytest.TempPathFactory) -> dict[float, Path]:
    root = tmp_path_factory.mktemp("realism")
    out = {}
    for d in (0.5, 1.0, 2.0):
        out[d] = root / f"d{d}"
        write_dataset(SynthConfig(identities=300, captures=2, seed=101, difficulty=d), out[d])
    out[-1] = root / "train"  # disjoint identities (other seed) to fit the PCA baseline
    write_dataset(SynthConfig(identities=300, captures=1, seed=202, difficulty=1.0), out[-1])
    return out


def _split(path: Path):
    rows, imgs = realism.load(path)
    pas = [im for r, im in zip(rows, imgs, strict=True) if r["kind"] == "passport"]
    gate = [im for r, im in zip(rows, imgs, strict=True) if r["kind"] == "gate"]
    return rows, imgs, pas, gate


def test_haar_cascade_finds_one_face(realism_sets) -> None:
    _, _, pas, gate = _split(realism_sets[1.0])
    assert realism.haar_one_face_rate(pas) >= 0.90
    assert realism.haar_one_face_rate(gate) >= 0.60


def test_dlib_hog_finds_one_face(realism_sets) -> None:
    pytest.importorskip("dlib")
    _, _, pas, gate = _split(realism_sets[1.0])
    assert realism.hog_one_face_rate(pas) >= 0.90
    assert realism.hog_one_face_rate(gate[:300]) >= 0.60


@pytest.mark.slow  # minutes-class end to end: `make test-slow`
def test_pca_baseline_separates_identities_and_difficulty_hurts(realism_sets) -> None:
    train_rows, train_imgs = realism.load(realism_sets[-1])
    eers = {}
    for d in (0.5, 1.0, 2.0):
        rows, imgs = realism.load(realism_sets[d])
        eers[d] = realism.pca_baseline(train_rows, train_imgs, rows, imgs).eer
    assert eers[1.0] < 0.35, eers
    assert eers[0.5] < eers[1.0] < eers[2.0], eers
