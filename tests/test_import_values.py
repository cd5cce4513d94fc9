"""Tensor values an imported model may hold (``checks/onnx_values.py``): rules by what a
tensor is for, so a payload in any encoding breaks one of them. Oracles: payload bytes
made here (a pickle, random bytes, printable text) placed in tensors of each kind, and,
as controls, tensors of the kinds real matchers hold (shapes, initialiser draws, the
shipped CNN's trained weights)."""

from __future__ import annotations

import base64
import pickle
import zlib
from pathlib import Path

import numpy as np
import onnx
import pytest
from facelab.gates.importing.checks import onnx_values
from hypothesis import given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper

from enclave_policy import DEFAULT_POLICY, load_policy

REPO = Path(__file__).resolve().parents[1]
POL = load_policy(DEFAULT_POLICY).importing
EVIL = pickle.dumps(("posix", "system", "true"), protocol=2)


def model_with(tensor: onnx.TensorProto, op: str = "Cast", index: int = 0) -> onnx.ModelProto:
    """X -> Y, plus ``tensor`` read by one ``op`` at input ``index`` whose result is
    added to Y times zero (the graph really reads it)."""
    name = tensor.name
    if op == "Cast":
        read = [helper.make_node("Cast", [name], ["r"], to=TensorProto.FLOAT)]
    elif op == "Reshape":
        read = [
            helper.make_node("Reshape", ["X", name], ["r0"]),
            helper.make_node("ReduceSum", ["r0"], ["r"], keepdims=0),
        ]
    elif op == "Gather":
        read = [helper.make_node("Gather", ["table", name], ["r"])]
    else:
        read = [helper.make_node(op, [name, name], ["r"])]
    nodes = [
        *read,
        helper.make_node("ReduceMax", ["r"], ["m"], keepdims=0),
        helper.make_node("Cast", ["m"], ["mf"], to=TensorProto.FLOAT),
        helper.make_node("Mul", ["mf", "zero"], ["z"]),
        helper.make_node("Add", ["X", "z"], ["Y"]),
    ]
    inits = [
        tensor,
        numpy_helper.from_array(np.array(0.0, np.float32), "zero"),
        numpy_helper.from_array(np.zeros(10, np.float32), "table"),
    ]
    g = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, [1, 16])],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [1, 16])],
        inits,
    )
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])


def problems(m: onnx.ModelProto, pol=POL) -> list[str]:
    return onnx_values.check(m, pol, Path("."), [("graph", m.graph)])


def uint8(data: bytes, name: str = "aux") -> onnx.TensorProto:
    return helper.make_tensor(name, TensorProto.UINT8, [len(data)], data, raw=True)


def as_floats(data: bytes) -> onnx.TensorProto:
    data = data + b"\0" * (-len(data) % 4)
    return numpy_helper.from_array(np.frombuffer(data, np.float32).copy(), "w")


@pytest.mark.parametrize(
    "payload",
    [
        EVIL,
        zlib.compress(EVIL),
        zlib.compress(EVIL)[2:-4],
        base64.b64encode(EVIL),
        base64.b32encode(EVIL),
        b"070701" + bytes(200),
    ],
    ids=["pickle", "zlib", "raw-deflate", "base64", "base32", "cpio"],
)
def test_integer_data_read_as_values_is_refused_whatever_its_encoding(payload) -> None:
    found = problems(model_with(uint8(payload)))
    assert len(found) == 1 and "integer data read by Cast input 0" in found[0]
    assert "payload" in found[0]


def test_small_integer_constants_and_shapes_and_indices_pass() -> None:
    assert problems(model_with(uint8(bytes(32)))) == []  # a scalar-sized constant
    shape = numpy_helper.from_array(np.array([4, 4], np.int64), "shape")
    assert problems(model_with(shape, "Reshape")) == []
    idx = numpy_helper.from_array(np.arange(4000, dtype=np.int64) % 10, "idx")
    assert problems(model_with(idx, "Gather")) == []  # an index input, within the limit


def test_an_index_tensor_beyond_the_limit_is_refused() -> None:
    idx = numpy_helper.from_array(np.arange(5000, dtype=np.int64) % 10, "idx")
    found = problems(model_with(idx, "Gather"))
    assert len(found) == 1 and "5,000 shape or index values" in found[0]


def test_a_tensor_read_both_as_an_index_and_as_values_is_data() -> None:
    idx = numpy_helper.from_array(np.arange(64, dtype=np.int64) % 10, "idx")
    m = model_with(idx, "Gather")
    m.graph.node.append(helper.make_node("Cast", ["idx"], ["also"], to=TensorProto.FLOAT))
    assert any("Cast input 0" in p for p in problems(m))


def test_constant_value_ints_count_as_integer_data() -> None:
    m = model_with(uint8(bytes(4)))
    m.graph.node.insert(0, helper.make_node("Constant", [], ["k"], value_ints=list(EVIL)))
    m.graph.node.append(helper.make_node("Add", ["k", "k"], ["k2"]))
    found = problems(m)
    assert any("value_ints" in p and "integer data" in p for p in found), found


@pytest.mark.parametrize(
    "payload",
    [
        EVIL * 4,
        base64.b64encode(EVIL * 4),
        zlib.compress(EVIL * 8),
        np.random.default_rng(0).bytes(512),
    ],
    ids=["pickle", "base64", "zlib", "random"],
)
def test_payload_bytes_read_as_float_weights_are_refused(payload) -> None:
    found = problems(model_with(as_floats(payload), "Add"))
    assert len(found) == 1 and ("NaN or infinite" in found[0] or "beyond" in found[0])


@settings(max_examples=60, deadline=None)
@given(st.binary(min_size=256, max_size=2048))
def test_any_bytes_of_256_or_more_read_as_floats_are_refused(payload) -> None:
    """About 42% of random 32-bit words are NaN, infinite or above 1e6: 64 words all
    below it has a chance of 1e-15. Hypothesis also tries structured bytes (zeros,
    repeats): those are small floats, and pass only when they carry no variety."""
    w = np.frombuffer(payload[: len(payload) // 4 * 4], np.float32)
    with np.errstate(invalid="ignore", over="ignore"):
        ok = np.isfinite(w).all() and (np.abs(w.astype(np.float64)) <= 1e6).all()
    assert (problems(model_with(as_floats(payload), "Add")) == []) == bool(ok)


@settings(max_examples=60, deadline=None)
@given(st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), min_size=256))
def test_printable_text_read_as_floats_is_refused(text) -> None:
    data = text.encode()
    if len(set(data[3::4])) == 1 and data[3] <= 0x49:
        return  # every exponent byte the same small letter: not text a payload needs
    assert problems(model_with(as_floats(data), "Add")) != []


def test_real_weights_pass() -> None:
    rng = np.random.default_rng(1)
    for w in (
        rng.uniform(-0.1, 0.1, (64, 64)).astype(np.float32),  # PyTorch's default init
        (rng.standard_normal((128, 3, 3, 3)) * np.sqrt(2 / 27)).astype(np.float32),  # He
        rng.standard_normal(1000).astype(np.float16),
    ):
        t = numpy_helper.from_array(w, "w")
        assert problems(model_with(t, "Add")) == []
    for name in ("cnn", "eigenface"):  # trained here from synthetic faces
        m = onnx.load(REPO / "models" / name / "model.onnx")
        assert onnx_values.check(m, POL, REPO / "models" / name, [("graph", m.graph)]) == []


def test_nan_and_huge_weights_are_refused() -> None:
    w = np.zeros(16, np.float32)
    w[3] = np.nan
    assert "NaN" in problems(model_with(numpy_helper.from_array(w, "w"), "Add"))[0]
    w[3] = 3e7
    assert "beyond" in problems(model_with(numpy_helper.from_array(w, "w"), "Add"))[0]


def test_string_tensors_are_refused_unless_the_policy_allows_them() -> None:
    from dataclasses import replace

    t = helper.make_tensor("s", TensorProto.STRING, [2], [b"abc", b"def"])
    m = model_with(uint8(bytes(4)))
    m.graph.initializer.append(t)
    assert any("string tensor" in p for p in problems(m))
    assert problems(m, replace(POL, allow_string_tensors=True)) == []
