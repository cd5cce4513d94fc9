"""Legitimate exports that a detector once refused by coincidence (each seen in the demo,
1 run in 24 each, on CI): a sorted list read as an image, and a head whose input width
equals a count of the tenant's training subjects. Each rule is shown with its positive
control: the same detector still finds the leak the rule must not hide."""

from __future__ import annotations

import itertools
from types import SimpleNamespace

import numpy as np
from facelab.gates.exporting._types import Artifact, ScanContext
from facelab.gates.exporting.detectors import structural
from facelab.gates.exporting.detectors.faces import sorted_rasters
from facelab.gates.exporting.provenance import Baseline, output_widths
from hypothesis import given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper

# ---------------------------------------------------------------- sorted lists


@settings(max_examples=50, deadline=None)
@given(st.integers(2, 64), st.integers(0, 2**32 - 1), st.floats(1e-6, 1e6), st.booleans())
def test_any_sorted_list_read_as_an_image_is_a_sorted_raster(
    side: int, seed: int, scale: float, down: bool
) -> None:
    rng = np.random.default_rng(seed)
    a = np.sort(rng.normal(0, scale, side * side).astype(np.float32))
    shuffled = rng.permutation(a)
    views = np.stack([a[::-1] if down else a, shuffled]).reshape(2, side, side)
    xs = shuffled.tolist()  # oracle: a plain walk over the values
    up = all(x <= y for x, y in itertools.pairwise(xs))
    dn = all(x >= y for x, y in itertools.pairwise(xs))
    assert sorted_rasters(views).tolist() == [True, up or dn]


# ------------------------------------------------------------- layer widths


def _ctx(train_subjects: int, widths: frozenset[int]) -> ScanContext:
    index = SimpleNamespace(
        counts=lambda: {"records": 900, "subjects": 300, "train subjects": train_subjects}
    )
    pol = SimpleNamespace(structural={"min_rows": 64})
    base = Baseline("cnn@1.0.0", {}, set(), widths)
    return ScanContext(pol, "acme", index, baseline=lambda art: base)


def _onnx(**tensors: np.ndarray) -> Artifact:
    return Artifact("model.onnx", "onnx", b"", tensors=list(tensors.items()))


def test_a_head_as_wide_as_the_imported_output_is_not_an_instance_store() -> None:
    head = np.zeros((128, 32), np.float32)  # (embedding width, head width)
    assert structural.detect(_onnx(head=head), _ctx(128, frozenset({128}))) == []


def test_a_store_of_one_row_per_training_subject_is_still_found() -> None:
    # positive controls: the same count without the width, and a gallery of another size
    head = np.zeros((128, 32), np.float32)
    found = structural.detect(_onnx(head=head), _ctx(128, frozenset({64})))
    assert [f.detector for f in found] == ["structural"] and "128" in found[0].evidence
    gallery = np.zeros((130, 32), np.float32)
    found = structural.detect(_onnx(g=gallery), _ctx(130, frozenset({128})))
    assert [f.severity for f in found] == ["high"]


def test_the_widths_are_the_static_sizes_of_the_graphs_outputs() -> None:
    out = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 128])
    g = helper.make_graph([], "g", [], [out])
    assert output_widths(helper.make_model(g)) == frozenset({128})
    assert output_widths(None) == frozenset()
