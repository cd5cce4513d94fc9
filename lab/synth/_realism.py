"""Realism checks of the generator, shared by the tests and bench/synth_realism.py.

They judge the synthetic faces with tools nobody here wrote: OpenCV's Haar cascade,
dlib's HOG detector and ResNet recogniser (optional extra ``reference``), and a plain
eigenface (PCA) baseline on aligned grayscale.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from facelab.bench._align import align as align_to_template


def load(dataset: Path) -> tuple[list[dict[str, str]], list[np.ndarray]]:
    with open(dataset / "manifest.csv", encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))
    imgs = [cv2.imread(str(dataset / r["path"]), cv2.IMREAD_COLOR) for r in rows]
    return rows, imgs


def landmarks(row: dict[str, str]) -> np.ndarray:
    return np.array(
        [[float(row[f"lm{i}_x"]), float(row[f"lm{i}_y"])] for i in range(5)], np.float32
    )


def align(img: np.ndarray, lm: np.ndarray, size: int = 64) -> np.ndarray:
    """Grayscale, then similarity-aligned to the benchmark's 5-point template."""
    return align_to_template(cv2.cvtColor(img, cv2.COLOR_BGR2GRAY), lm, (size, size))


def haar_one_face_rate(imgs: list[np.ndarray]) -> float:
    casc = cv2.CascadeClassifier(cv2.data.haarcascades + "haarcascade_frontalface_default.xml")
    hits = 0
    for im in imgs:
        g = cv2.cvtColor(im, cv2.COLOR_BGR2GRAY)
        hits += (
            len(casc.detectMultiScale(g, scaleFactor=1.1, minNeighbors=3, minSize=(30, 30))) == 1
        )
    return hits / len(imgs)


def hog_one_face_rate(imgs: list[np.ndarray]) -> float:
    import dlib

    det = dlib.get_frontal_face_detector()
    # dlib's HOG window is 80x80; upsample once, as dlib's own examples do for small faces
    return sum(len(det(cv2.cvtColor(im, cv2.COLOR_BGR2RGB), 1)) == 1 for im in imgs) / len(imgs)


def eer(genuine: np.ndarray, impostor: np.ndarray) -> float:
    """Equal error rate by sorting (similarity scores: higher = same person)."""
    s = np.concatenate([genuine, impostor])
    y = np.concatenate([np.ones(len(genuine)), np.zeros(len(impostor))])
    order = np.argsort(-s, kind="stable")
    y = y[order]
    tpr = np.cumsum(y) / len(genuine)
    fpr = np.cumsum(1 - y) / len(impostor)
    fnr = 1 - tpr
    i = int(np.argmin(np.abs(fnr - fpr)))
    return float((fnr[i] + fpr[i]) / 2)


@dataclass(frozen=True)
class PairScores:
    genuine: np.ndarray
    impostor: np.ndarray

    @property
    def eer(self) -> float:
        return eer(self.genuine, self.impostor)


def passport_gate_scores(rows, feats: np.ndarray) -> PairScores:
    """Cosine scores: every passport against every gate capture."""
    f = feats / np.linalg.norm(feats, axis=1, keepdims=True)
    subj = np.array([r["subject_id"] for r in rows])
    kind = np.array([r["kind"] for r in rows])
    p, g = np.where(kind == "passport")[0], np.where(kind == "gate")[0]
    s = f[p] @ f[g].T
    same = subj[p][:, None] == subj[g][None, :]
    return PairScores(s[same], s[~same])


def pca_baseline(train_rows, train_imgs, test_rows, test_imgs, k: int = 60) -> PairScores:
    """Eigenfaces: PCA on aligned, standardised grayscale of disjoint training identities."""

    def vecs(rows, imgs):
        x = np.stack([align(im, landmarks(r)).ravel() for r, im in zip(rows, imgs, strict=True)])
        x = x.astype(np.float32)
        return (x - x.mean(1, keepdims=True)) / (x.std(1, keepdims=True) + 1e-6)

    tr = vecs(train_rows, train_imgs)
    mu = tr.mean(0)
    _, sv, vt = np.linalg.svd(tr - mu, full_matrices=False)
    w = vt[:k] / sv[:k, None]  # whitened
    te = (vecs(test_rows, test_imgs) - mu) @ w.T
    return passport_gate_scores(test_rows, te)


def dlib_resnet_scores(rows, imgs) -> PairScores:
    """dlib's pre-trained ResNet (128-d): HOG detection, 5-point shape, 150x150 chip.

    Scores are negated Euclidean distances, so higher means more alike and dlib's own
    operating point (distance 0.6) is the score -0.6.
    """
    import dlib
    import face_recognition_models as frm

    det = dlib.get_frontal_face_detector()
    sp = dlib.shape_predictor(frm.pose_predictor_five_point_model_location())
    net = dlib.face_recognition_model_v1(frm.face_recognition_model_location())
    feats = []
    for r, im in zip(rows, imgs, strict=True):
        rgb = cv2.resize(
            cv2.cvtColor(im, cv2.COLOR_BGR2RGB), None, fx=2, fy=2, interpolation=cv2.INTER_CUBIC
        )
        found = det(rgb, 0)
        if len(found):
            rect = found[0]
        else:  # fall back on the ground-truth landmarks' box
            lm = landmarks(r) * 2
            (x0, y0), (x1, y1) = lm.min(0), lm.max(0)
            w = x1 - x0
            rect = dlib.rectangle(
                int(x0 - 0.6 * w), int(y0 - 0.8 * w), int(x1 + 0.6 * w), int(y1 + 0.5 * w)
            )
        feats.append(np.array(net.compute_face_descriptor(rgb, sp(rgb, rect))))
    f = np.array(feats)
    subj = np.array([r["subject_id"] for r in rows])
    kind = np.array([r["kind"] for r in rows])
    p, g = np.where(kind == "passport")[0], np.where(kind == "gate")[0]
    d = np.linalg.norm(f[p][:, None, :] - f[g][None, :, :], axis=2)
    same = subj[p][:, None] == subj[g][None, :]
    return PairScores(-d[same], -d[~same])


#: dlib's own operating threshold on the Euclidean distance of its descriptors (dlib's
#: ``face_recognition.py`` example and model card: 99.38% on LFW at 0.6).
DLIB_THRESHOLD = 0.6


def reference_available() -> bool:
    """Whether the ``reference`` extra (dlib and its recogniser weights) is installed."""
    import importlib.util

    return all(importlib.util.find_spec(m) is not None for m in ("dlib", "face_recognition_models"))


def certificate(dataset: Path) -> dict[str, float | int | str]:
    """The dataset's distinctiveness certificate, judged by tools nobody here wrote.

    dlib's ResNet recogniser compares every passport photo with every gate capture
    (``dlib_resnet_scores``): FMR is the share of impostor pairs (different subjects)
    within distance 0.6, FNMR the share of genuine pairs beyond it, EER the equal error
    rate of the distances. Haar: share of passport and gate images where OpenCV's
    frontal cascade finds exactly one face. Needs the ``reference`` extra and a dataset
    with at least two identities and one gate capture each.
    """
    rows, imgs = load(dataset)
    kinds = [r["kind"] for r in rows]
    pas = [m for m, k in zip(imgs, kinds, strict=True) if k == "passport"]
    gate = [m for m, k in zip(imgs, kinds, strict=True) if k == "gate"]
    s = dlib_resnet_scores(rows, imgs)
    if not len(s.genuine) or not len(s.impostor):
        raise ValueError("a certificate needs two identities and a gate capture each")
    return {
        "recogniser": "dlib_face_recognition_resnet_model_v1",
        "threshold": DLIB_THRESHOLD,
        "genuine_pairs": len(s.genuine),
        "impostor_pairs": len(s.impostor),
        "fmr": float(np.mean(s.impostor >= -DLIB_THRESHOLD)),
        "fnmr": float(np.mean(s.genuine < -DLIB_THRESHOLD)),
        "eer": float(s.eer),
        "haar_one_face_passport": haar_one_face_rate(pas),
        "haar_one_face_gate": haar_one_face_rate(gate),
    }
