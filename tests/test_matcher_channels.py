"""The matcher feeds a model the channels, layout and normalisation its model.json
declares (``lab/bench/_matcher.py``).

Oracle: each model here returns the mean of every input channel (and a constant 100, so
that a one-channel template is not just "1.0" after L2 normalisation); the image is one
flat colour, so the expected template follows from the definitions alone: channel order
RGB or BGR, grey = ITU-R BT.601 luma 0.299 R + 0.587 G + 0.114 B, (x - mean) / std per
channel, NCHW or NHWC.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from facelab.bench._matcher import Matcher
from onnx import TensorProto, helper, numpy_helper

RGB = (200.0, 100.0, 50.0)
H, W = 16, 24  # not square: a swapped height and width cannot pass
LANDMARKS = np.array(
    [[38.3, 51.7], [73.5, 51.5], [56.0, 71.7], [41.5, 92.4], [70.7, 92.2]], np.float32
)


def _model(channels: int, layout: str) -> onnx.ModelProto:
    """X -> per-channel spatial mean -> concat [means..., 100] -> Y[N, channels + 1]."""
    shape = ["N", channels, H, W] if layout == "NCHW" else ["N", H, W, channels]
    nodes, x = [], "X"
    if layout == "NHWC":
        nodes.append(helper.make_node("Transpose", ["X"], ["Xt"], perm=[0, 3, 1, 2]))
        x = "Xt"
    nodes += [
        helper.make_node("GlobalAveragePool", [x], ["p"]),
        helper.make_node("Flatten", ["p"], ["f"]),
        helper.make_node("Shape", ["f"], ["fs"]),
        helper.make_node("Gather", ["fs", "zero"], ["n"], axis=0),
        helper.make_node("Concat", ["n", "one"], ["cs"], axis=0),
        helper.make_node("Expand", ["hundred", "cs"], ["c"]),
        helper.make_node("Concat", ["f", "c"], ["Y"], axis=1),
    ]
    inits = [
        numpy_helper.from_array(np.array([0], np.int64), "zero"),
        numpy_helper.from_array(np.array([1], np.int64), "one"),
        numpy_helper.from_array(np.array([[100.0]], np.float32), "hundred"),
    ]
    graph = helper.make_graph(
        nodes,
        "channel-means",
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, shape)],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, ["N", channels + 1])],
        inits,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def _matcher(tmp_path: Path, channels: str, layout: str, mean, std) -> Matcher:
    c = 1 if channels == "GRAY" else 3
    d = tmp_path / f"{channels}-{layout}"
    d.mkdir()
    (d / "model.onnx").write_bytes(_model(c, layout).SerializeToString())
    spec = {
        "name": "means",
        "version": "1.0.0",
        "input": {
            "size": [H, W],
            "layout": layout,
            "channels": channels,
            "mean": mean,
            "std": std,
        },
        "output": {"dim": c + 1},
        "similarity": "cosine",
    }
    (d / "model.json").write_text(json.dumps(spec))
    return Matcher(d)


def _expected(channels: str, mean, std) -> np.ndarray:
    r, g, b = RGB
    values = {"RGB": [r, g, b], "BGR": [b, g, r], "GRAY": [0.299 * r + 0.587 * g + 0.114 * b]}[
        channels
    ]
    m = np.broadcast_to(np.asarray(mean, np.float64).reshape(-1), (len(values),))
    s = np.broadcast_to(np.asarray(std, np.float64).reshape(-1), (len(values),))
    y = np.array([*((np.array(values) - m) / s), 100.0])
    return y / np.linalg.norm(y)


@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
@pytest.mark.parametrize(
    ("channels", "mean", "std"),
    [
        ("RGB", 0.0, 1.0),
        ("BGR", 0.0, 1.0),
        ("GRAY", 0.0, 1.0),
        ("RGB", [20.0, 40.0, 60.0], [2.0, 4.0, 8.0]),
        ("BGR", [20.0, 40.0, 60.0], [2.0, 4.0, 8.0]),
        ("GRAY", [27.5], [0.5]),
    ],
)
def test_the_model_gets_the_channels_layout_and_normalisation_it_declares(
    tmp_path, channels, layout, mean, std
) -> None:
    m = _matcher(tmp_path, channels, layout, mean, std)
    image = np.empty((112, 112, 3), np.uint8)
    image[...] = np.array(RGB, np.uint8)  # RGB order, as the matcher's callers give it
    got = m.extract([image], [LANDMARKS]).templates[0]
    want = _expected(channels, mean, std)
    # OpenCV rounds grey to a whole level: half a level moves these templates < 0.005
    np.testing.assert_allclose(got, want, atol=0.01 if channels == "GRAY" else 1e-5)


def test_grey_is_luma_not_an_average_or_the_bgr_formula(tmp_path) -> None:
    """A direct check of the one-channel input: the value the model receives."""
    m = _matcher(tmp_path, "GRAY", "NCHW", 0.0, 1.0)
    image = np.empty((H, W, 3), np.uint8)
    image[...] = np.array(RGB, np.uint8)
    x = m.preprocess([image])
    assert x.shape == (1, 1, H, W)
    luma = 0.299 * RGB[0] + 0.587 * RGB[1] + 0.114 * RGB[2]  # 124.2
    assert abs(float(x.mean()) - luma) <= 1.0
    assert abs(float(x.mean()) - sum(RGB) / 3) > 5  # not the plain average (116.7)
    assert abs(float(x.mean()) - (0.114 * RGB[0] + 0.587 * RGB[1] + 0.299 * RGB[2])) > 10


def test_the_model_runs_only_at_the_batch_size_the_smoke_test_ran(tmp_path) -> None:
    """70 images in batches of 64: two calls of 64 rows each (the last padded), and the
    70 templates are those of single-image calls (the padding's outputs dropped)."""
    from facelab.gates.importing.checks.smoke import JOB_BATCH, batches

    m = _matcher(tmp_path, "RGB", "NCHW", 0.0, 1.0)
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (H, W, 3), dtype=np.uint8) for _ in range(70)]
    seen: list[int] = []
    real = m.session

    class Spy:
        def run(self, outputs, feed):
            seen.append(len(next(iter(feed.values()))))
            return real.run(outputs, feed)

    m.session = Spy()
    got = m.extract(images, [LANDMARKS] * 70, batch=JOB_BATCH).templates
    assert seen == [JOB_BATCH, JOB_BATCH] and JOB_BATCH in batches(None)
    m.session = real
    one = np.stack([m.extract([im], [LANDMARKS], batch=1).templates[0] for im in images[60:]])
    np.testing.assert_allclose(got[60:], one, atol=1e-6)
