"""Issue 20, item 7: the low-bit rule raises no false alarm on the value grids that real
weights sit on, and still finds a payload hidden in them.

Weights from real training runs: the shipped CNN (trained on synthetic faces by
``models/cnn/build.py``) and a small network trained here with plain SGD. Grids: float16
and bfloat16 upcasts, int8 dequantisation, uniform initialisers on a 2^-24 grid, normal
initialisers, moving averages. Positive controls: the same trained weights with text or a
PNG written into their lowest bit plane or byte are found."""

from __future__ import annotations

import functools
from pathlib import Path

import cv2
import numpy as np
import onnx
import pytest
from facelab.gates.exporting._types import ScanContext
from facelab.gates.exporting.artifact import load
from facelab.gates.exporting.detectors import payloads
from onnx import numpy_helper

from enclave_policy import load_policy

REPO = Path(__file__).resolve().parents[1]
CNN = REPO / "models" / "cnn" / "model.onnx"
POLICY = load_policy().exporting


def _cnn_weights() -> dict[str, np.ndarray]:
    m = onnx.load(str(CNN))
    out = {}
    for t in m.graph.initializer:
        a = numpy_helper.to_array(t)
        if a.dtype == np.float32 and a.size >= POLICY.payloads["lsb_min_values"]:
            out[t.name] = a
    assert out, "the CNN has float32 weights large enough to scan"
    return out


def _sgd_trained(seed: int = 0, steps: int = 300) -> dict[str, np.ndarray]:
    """A two-layer ReLU network (256-128-16) trained with SGD and momentum on a random
    linear-plus-noise regression task, all in float32, as a training loop leaves it."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(4096, 256)).astype(np.float32)
    y = (x @ rng.normal(size=(256, 16)).astype(np.float32) * 0.1).astype(np.float32)
    w1 = (rng.normal(size=(256, 128)) * np.sqrt(2 / 256)).astype(np.float32)
    w2 = (rng.normal(size=(128, 16)) * np.sqrt(2 / 128)).astype(np.float32)
    v1, v2 = np.zeros_like(w1), np.zeros_like(w2)
    lr, mom = np.float32(0.01), np.float32(0.9)
    for step in range(steps):
        i = rng.integers(0, len(x), size=64)
        h = np.maximum(x[i] @ w1, 0)
        err = h @ w2 - y[i]
        g2 = h.T @ err / 64
        g1 = x[i].T @ ((err @ w2.T) * (h > 0)) / 64
        v1 = mom * v1 - lr * g1
        v2 = mom * v2 - lr * g2
        w1, w2 = w1 + v1, w2 + v2
        if step == 0:
            first = float(np.mean(err**2))
    assert float(np.mean((np.maximum(x @ w1, 0) @ w2 - y) ** 2)) < first  # it learned
    return {"fc1.weight": w1.astype(np.float32), "fc2.weight": w2.astype(np.float32)}


def _bf16(a: np.ndarray) -> np.ndarray:
    """Round to bfloat16 (nearest even) and back to float32."""
    u = a.astype(np.float32).view(np.uint32).astype(np.uint64)
    u = (u + 0x7FFF + ((u >> 16) & 1)) & 0xFFFF0000
    return u.astype(np.uint32).view(np.float32)


def _int8(a: np.ndarray) -> np.ndarray:
    scale = np.float32(np.abs(a).max() / 127)
    return (np.round(a / scale).astype(np.int8).astype(np.float32) * scale).astype(np.float32)


def _ema(seed: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    w = np.zeros((128, 128), np.float32)
    for _ in range(50):
        w = np.float32(0.99) * w + np.float32(0.01) * rng.normal(size=w.shape).astype(np.float32)
    return w


@functools.cache
def _grids() -> dict[str, dict[str, np.ndarray]]:
    rng = np.random.default_rng(7)
    cnn, sgd = _cnn_weights(), _sgd_trained()
    return {
        "cnn-trained": cnn,
        "sgd-trained": sgd,
        "cnn-float16-upcast": {k: v.astype(np.float16).astype(np.float32) for k, v in cnn.items()},
        "sgd-bfloat16-upcast": {k: _bf16(v) for k, v in sgd.items()},
        "cnn-int8-dequantised": {k: _int8(v) for k, v in cnn.items()},
        "uniform-init-2^-24-grid": {
            "w": (rng.random((256, 128), dtype=np.float32) - np.float32(0.5)) * np.float32(0.2)
        },
        "glorot-uniform-init": {
            "w": rng.uniform(-0.1, 0.1, size=(256, 128)).astype(np.float32),
        },
        "normal-init": {"w": (rng.normal(size=(256, 128)) * 0.02).astype(np.float32)},
        "moving-average": {"w": _ema()},
        "float64-trained": {k: v.astype(np.float64) for k, v in sgd.items()},
    }


def _scan(tmp_path: Path, name: str, tensors: dict[str, np.ndarray]) -> list:
    p = tmp_path / f"{name}.npz"
    np.savez(p, **tensors)
    art = load(p, POLICY)
    ctx = ScanContext(POLICY, "acme", None)
    return [f for f in payloads.detect(art, ctx) if "bit" in f.location or "byte" in f.location]


@pytest.mark.parametrize("grid", sorted(_grids()))
def test_weights_on_a_real_value_grid_raise_no_low_bit_finding(tmp_path, grid) -> None:
    found = _scan(tmp_path, grid, _grids()[grid])
    assert found == [], [(f.location, f.evidence) for f in found]


def _hide(a: np.ndarray, payload: bytes, plane: bool) -> np.ndarray:
    u = a.astype(np.float32).reshape(-1).view(np.uint32).copy()
    if plane:  # one bit per value, most significant bit of each byte first
        bits = np.unpackbits(np.frombuffer(payload, np.uint8))[: u.size]
        u[: bits.size] = (u[: bits.size] & ~np.uint32(1)) | bits.astype(np.uint32)
    else:  # the whole lowest byte
        b = np.frombuffer(payload, np.uint8)[: u.size].astype(np.uint32)
        u[: b.size] = (u[: b.size] & ~np.uint32(0xFF)) | b
    return u.view(np.float32).reshape(a.shape)


TEXT = (b"Subject 0042 MUELLER ANNA born 1987-03-14 passport C01X00T47 " * 40)[:2000]


def _png() -> bytes:
    face = (np.random.default_rng(5).random((24, 24)) * 255).astype(np.uint8)
    return cv2.imencode(".png", face)[1].tobytes()


@pytest.mark.parametrize("plane", [True, False], ids=["bit-plane", "lowest-byte"])
@pytest.mark.parametrize("payload", ["text", "png"])
@pytest.mark.parametrize("source", ["cnn-trained", "sgd-trained"])
def test_a_payload_in_the_low_bits_of_trained_weights_is_found(
    tmp_path, source, payload, plane
) -> None:
    weights = _grids()[source]
    name = max(weights, key=lambda k: weights[k].size)
    data = TEXT if payload == "text" else _png()
    need = len(data) * (8 if plane else 1)
    if weights[name].size < need:
        pytest.skip(f"{name} holds {weights[name].size} values, the payload needs {need}")
    tampered = {**weights, name: _hide(weights[name], data, plane)}
    found = _scan(tmp_path, f"{source}-{payload}", tampered)
    assert found, "the hidden payload was not found"
    assert all(name in f.location for f in found)


def _face_bytes(n: int) -> bytes:
    """Raw 8-bit pixels of a smooth synthetic face-like image: no magic number, not
    text, about 7 bits of entropy per byte (what only the entropy test can see)."""
    side = int(np.ceil(np.sqrt(n)))
    yy, xx = np.mgrid[0:side, 0:side] / side
    img = 128 + 60 * np.sin(6 * xx) * np.cos(4 * yy) + 40 * np.exp(-((xx - 0.5) ** 2) * 20)
    return np.clip(img, 0, 255).astype(np.uint8).reshape(-1)[:n].tobytes()


def test_value_grid_finds_the_step_of_a_grid_and_none_for_trained_weights() -> None:
    from facelab.gates.exporting.detectors.payloads import value_grid

    sgd = _sgd_trained()["fc1.weight"]
    assert value_grid(sgd) is None
    q = _int8(sgd)
    c = value_grid(q)
    assert c is not None and np.isclose(c, np.abs(sgd).max() / 127, rtol=1e-6)


@pytest.mark.parametrize("source", ["cnn-int8-dequantised", "uniform-init-2^-24-grid"])
def test_pixels_in_the_lowest_byte_of_grid_weights_are_still_found(tmp_path, source) -> None:
    """The grid excuses structure only while the values stay on it: raw pixels written
    into the lowest byte move them off it, and the entropy test applies again."""
    weights = _grids()[source]
    name = max(weights, key=lambda k: weights[k].size)
    w = weights[name]
    tampered = {**weights, name: _hide(w, _face_bytes(w.size), plane=False)}
    found = _scan(tmp_path, f"{source}-pixels", tampered)
    assert any("lowest byte" in f.location and name in f.location for f in found), found
