"""The dataset that `facelab synth` writes: format, determinism, atomicity."""

from __future__ import annotations

import csv
import hashlib
import os
from pathlib import Path

import cv2
import facelab.synth._dataset as dataset_mod
import numpy as np
import pytest
from facelab.errors import BadInputError
from facelab.synth import MANIFEST_COLUMNS, NATIONALITY_CODES, SynthConfig, write_dataset


def _digests(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def _rows(root: Path) -> list[dict[str, str]]:
    with open(root / "manifest.csv", encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


def test_manifest_has_design_columns_and_one_row_per_image(small_dataset: Path) -> None:
    with open(small_dataset / "manifest.csv", encoding="utf-8") as f:
        header = f.readline().strip().split(",")
    required = [
        "subject_id",
        "capture_id",
        "kind",
        "path",
        "name",
        "passport_no",
        "nationality",
        "sex",
        "birth_year",
    ]
    required += [f"lm{i}_{a}" for i in range(5) for a in "xy"]
    assert header[: len(required)] == required
    assert tuple(header) == MANIFEST_COLUMNS
    rows = _rows(small_dataset)
    assert len(rows) == 12 * 3
    assert sorted(p.name for p in (small_dataset / "images").iterdir()) == sorted(
        Path(r["path"]).name for r in rows
    )
    for sid in {r["subject_id"] for r in rows}:
        kinds = sorted(r["kind"] for r in rows if r["subject_id"] == sid)
        assert kinds == ["gate", "gate", "passport"]


def test_images_are_rgb_png_of_the_requested_size(small_dataset: Path) -> None:
    for r in _rows(small_dataset)[:6]:
        raw = (small_dataset / r["path"]).read_bytes()
        assert raw[:8] == b"\x89PNG\r\n\x1a\n"
        img = cv2.imdecode(np.frombuffer(raw, np.uint8), cv2.IMREAD_UNCHANGED)
        assert img.shape == (112, 112, 3) and img.dtype == np.uint8


def test_size_is_configurable(tmp_path: Path) -> None:
    write_dataset(SynthConfig(identities=2, captures=1, size=80), tmp_path / "d", workers=1)
    img = cv2.imread(str(tmp_path / "d" / "images" / "S000000-G1.png"))
    assert img.shape == (80, 80, 3)


def test_metadata_is_synthetic_and_consistent_per_subject(small_dataset: Path) -> None:
    rows = _rows(small_dataset)
    for sid in {r["subject_id"] for r in rows}:
        mine = [r for r in rows if r["subject_id"] == sid]
        for key in ("name", "passport_no", "nationality", "sex", "birth_year"):
            assert len({r[key] for r in mine}) == 1, key
    for r in rows:
        assert r["nationality"] in NATIONALITY_CODES
        assert r["sex"] in {"F", "M"}
        assert 1940 <= int(r["birth_year"]) <= 2010
        assert r["name"].replace(" ", "").isalpha()
        assert r["passport_no"].isalnum() and 8 <= len(r["passport_no"]) <= 9


def test_landmarks_are_inside_the_image_and_face_shaped(small_dataset: Path) -> None:
    for r in _rows(small_dataset):
        lm = np.array([[float(r[f"lm{i}_x"]), float(r[f"lm{i}_y"])] for i in range(5)])
        assert np.all((lm > 0) & (lm < 112))
        le, re, nose, ml, mr = lm
        assert le[0] < re[0] and ml[0] < mr[0]
        assert max(le[1], re[1]) < nose[1] < min(ml[1], mr[1])


def test_landmarks_sit_on_the_drawn_features(small_dataset: Path) -> None:
    """The eye landmarks are darker than the cheek below them (they mark real pixels)."""
    darker = 0
    rows = [r for r in _rows(small_dataset) if r["kind"] == "passport"]
    for r in rows:
        g = cv2.imread(str(small_dataset / r["path"]), cv2.IMREAD_GRAYSCALE).astype(float)
        for i in (0, 1):
            x, y = round(float(r[f"lm{i}_x"])), round(float(r[f"lm{i}_y"]))
            eye = g[y - 1 : y + 2, x - 1 : x + 2].mean()
            cheek = g[y + 9 : y + 12, x - 1 : x + 2].mean()
            darker += eye < cheek
    assert darker >= 0.9 * 2 * len(rows)


def test_same_seed_gives_byte_identical_files_whatever_the_workers(tmp_path: Path) -> None:
    cfg = SynthConfig(identities=9, captures=2, seed=42)
    write_dataset(cfg, tmp_path / "a", workers=1)
    write_dataset(cfg, tmp_path / "b", workers=2)
    assert _digests(tmp_path / "a") == _digests(tmp_path / "b")


def test_identity_does_not_depend_on_the_dataset_size(tmp_path: Path) -> None:
    write_dataset(SynthConfig(identities=3, captures=1, seed=7), tmp_path / "a", workers=1)
    write_dataset(SynthConfig(identities=5, captures=1, seed=7), tmp_path / "b", workers=1)
    a, b = _digests(tmp_path / "a"), _digests(tmp_path / "b")
    assert all(b[k] == v for k, v in a.items() if k.startswith("images/"))


def test_other_seed_gives_other_faces(tmp_path: Path) -> None:
    write_dataset(SynthConfig(identities=3, captures=1, seed=1), tmp_path / "a", workers=1)
    write_dataset(SynthConfig(identities=3, captures=1, seed=2), tmp_path / "b", workers=1)
    a, b = _digests(tmp_path / "a"), _digests(tmp_path / "b")
    assert all(a[k] != b[k] for k in a if k.startswith("images/"))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"identities": 0}, "--identities"),
        ({"identities": -3}, "--identities"),
        ({"identities": 2, "captures": -1}, "--captures"),
        ({"identities": 2, "difficulty": -0.5}, "--difficulty"),
        ({"identities": 2, "size": 8}, "--size"),
    ],
)
def test_bad_arguments_are_refused_before_writing(tmp_path: Path, kwargs, message) -> None:
    with pytest.raises(BadInputError, match=message):
        write_dataset(SynthConfig(**kwargs), tmp_path / "d", workers=1)
    assert list(tmp_path.iterdir()) == []


def test_non_empty_out_is_kept_unless_forced(tmp_path: Path) -> None:
    out = tmp_path / "d"
    out.mkdir()
    (out / "precious.txt").write_text("keep me")
    with pytest.raises(BadInputError, match="not empty"):
        write_dataset(SynthConfig(identities=2, captures=1), out, workers=1)
    assert (out / "precious.txt").read_text() == "keep me"
    write_dataset(SynthConfig(identities=2, captures=1), out, workers=1, force=True)
    assert not (out / "precious.txt").exists()
    assert (out / "manifest.csv").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d"]


def test_failure_midway_leaves_no_dataset_and_no_debris(tmp_path: Path, monkeypatch) -> None:
    calls = {"n": 0}
    real = dataset_mod.render_identity

    def flaky(cfg, index):
        calls["n"] += 1
        if calls["n"] > 3:
            raise RuntimeError("simulated crash")
        return real(cfg, index)

    monkeypatch.setattr(dataset_mod, "render_identity", flaky)
    with pytest.raises(RuntimeError):
        write_dataset(SynthConfig(identities=6, captures=1), tmp_path / "d", workers=1)
    assert list(tmp_path.iterdir()) == []


def test_failure_midway_with_force_keeps_the_old_dataset(tmp_path: Path, monkeypatch) -> None:
    out = tmp_path / "d"
    write_dataset(SynthConfig(identities=2, captures=1, seed=1), out, workers=1)
    before = _digests(out)
    monkeypatch.setattr(dataset_mod, "encode_png", lambda img: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        write_dataset(SynthConfig(identities=2, captures=1, seed=9), out, workers=1, force=True)
    assert _digests(out) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d"]


def test_out_whose_parent_is_missing_or_a_file(tmp_path: Path) -> None:
    with pytest.raises(BadInputError, match="does not exist"):
        write_dataset(SynthConfig(identities=1), tmp_path / "no" / "d", workers=1)
    (tmp_path / "f").write_text("x")
    with pytest.raises(BadInputError, match="not a directory"):
        write_dataset(SynthConfig(identities=1), tmp_path / "f", workers=1)


def test_pool_works_after_opencv_threads_ran(tmp_path: Path) -> None:
    """Regression: a fork-based pool hung when OpenCV's thread pool had run before."""
    cv2.setNumThreads(2)
    big = np.zeros((512, 512), np.uint8)
    for _ in range(20):
        cv2.GaussianBlur(big, (31, 31), 0)
    write_dataset(SynthConfig(identities=4, captures=1, seed=3), tmp_path / "d", workers=2)
    assert len(_rows(tmp_path / "d")) == 8


def test_pool_reports_every_identity_once_and_keeps_manifest_order(tmp_path: Path) -> None:
    """This process renders chunks from the end while the pool renders from the front."""
    done: list[int] = []
    write_dataset(
        SynthConfig(identities=40, captures=0, seed=5),
        tmp_path / "d",
        workers=2,
        progress=done.append,
    )
    assert sum(done) == 40
    subjects = [r["subject_id"] for r in _rows(tmp_path / "d")]
    one = tmp_path / "one"
    write_dataset(SynthConfig(identities=40, captures=0, seed=5), one, workers=1)
    assert subjects == [r["subject_id"] for r in _rows(one)]
    assert _digests(tmp_path / "d") == _digests(one)


def test_writer_restores_the_callers_opencv_threads(tmp_path: Path) -> None:
    cv2.setNumThreads(2)
    write_dataset(SynthConfig(identities=3, captures=0, seed=5), tmp_path / "a", workers=2)
    assert cv2.getNumThreads() == 2
    write_dataset(SynthConfig(identities=3, captures=0, seed=5), tmp_path / "b", workers=1)
    assert cv2.getNumThreads() == 2


def test_failure_in_this_process_with_a_pool_leaves_no_dataset(tmp_path: Path, monkeypatch) -> None:
    # the pool's workers fork from a server that imported the real module; the patch
    # fails only the chunks this process renders itself, from the end of the list
    monkeypatch.setattr(dataset_mod, "encode_png", lambda img: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        write_dataset(SynthConfig(identities=30, captures=0), tmp_path / "d", workers=2)
    assert list(tmp_path.iterdir()) == []


def test_short_writes_still_write_whole_files(tmp_path: Path, monkeypatch) -> None:
    """os.write may write less than asked (a nearly full disk): the writer loops."""
    write_dataset(SynthConfig(identities=2, captures=1, seed=8), tmp_path / "a", workers=1)
    real = os.write
    monkeypatch.setattr(dataset_mod.os, "write", lambda fd, data: real(fd, bytes(data[:1000])))
    write_dataset(SynthConfig(identities=2, captures=1, seed=8), tmp_path / "b", workers=1)
    assert _digests(tmp_path / "a") == _digests(tmp_path / "b")
