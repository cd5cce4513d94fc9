"""The import gate bounds the work a model asks for before anything runs (issue 15,
red team rt15 case 12: 400 chained constant MatMuls that onnxruntime folds at load).

Oracles: FLOP counts written here by hand from each operator's definition (a
multiply-add counts 2), and onnxruntime running the admitted shapes.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import onnx
import pytest
from facelab.gates.importing.checks import onnx_compute
from onnx import TensorProto, helper, numpy_helper

from enclave_policy import DEFAULT_POLICY, load_policy

REPO = Path(__file__).resolve().parents[1]
POL = load_policy(DEFAULT_POLICY).importing
N = helper.make_node
C = numpy_helper.from_array
SPEC = {"input": {"size": [8, 8], "layout": "NCHW", "channels": "RGB"}}


def model(nodes, inits, out="Y", shape=("N", 3, 8, 8)) -> onnx.ModelProto:
    g = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, list(shape))],
        [helper.make_tensor_value_info(out, TensorProto.FLOAT, None)],
        inits,
    )
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def flat(nodes) -> list:
    """X[1,3,8,8] -> F[1,192], then ``nodes``."""
    return [N("Flatten", ["X"], ["F"]), *nodes]


def test_the_shipped_models_are_well_within_the_default_bound() -> None:
    for name in ("cnn", "eigenface"):
        d = REPO / "models" / name
        m = onnx.load(str(d / "model.onnx"), load_external_data=False)
        work = onnx_compute.gflops(m, json.loads((d / "model.json").read_text()))
        assert 0 < work < POL.max_gflops / 100
        assert onnx_compute.check(m, POL, json.loads((d / "model.json").read_text())) == []


def test_matmul_and_gemm_count_two_flops_per_multiply_add() -> None:
    w = C(np.ones((192, 64), np.float32), "W")
    m = model(flat([N("MatMul", ["F", "W"], ["Y"])]), [w])
    mm = 2 * 1 * 64 * 192  # Y[1,64], K = 192
    flatten = 192 * 2  # input and output elements
    assert onnx_compute.gflops(m, SPEC) * 1e9 == pytest.approx(mm + flatten)
    g = model(flat([N("Gemm", ["F", "W"], ["Y"])]), [w])
    assert onnx_compute.gflops(g, SPEC) * 1e9 == pytest.approx(mm + 64 + flatten)


def test_conv_counts_its_kernel_per_output_element() -> None:
    w = C(np.ones((16, 3, 3, 3), np.float32), "W")
    m = model([N("Conv", ["X", "W"], ["Y"], pads=[1, 1, 1, 1])], [w])
    assert onnx_compute.gflops(m, SPEC) * 1e9 == pytest.approx(2 * (16 * 8 * 8) * (3 * 3 * 3))


def test_the_batch_and_image_size_come_from_model_json_not_the_graph() -> None:
    w = C(np.ones((16, 3, 3, 3), np.float32), "W")
    m = model([N("Conv", ["X", "W"], ["Y"], pads=[1, 1, 1, 1])], [w], shape=("N", 3, "H", "W"))
    big = {"input": {"size": [16, 16], "layout": "NCHW", "channels": "RGB"}}
    assert onnx_compute.gflops(m, big) == pytest.approx(4 * onnx_compute.gflops(m, SPEC))


def test_a_chain_of_constant_matmuls_is_refused_even_though_the_output_ignores_it() -> None:
    """Case 12: work onnxruntime does once, at load, by folding constants."""
    p = C(np.eye(512, dtype=np.float32), "P")
    nodes, prev = [], "P"
    for k in range(200):
        nodes.append(N("MatMul", [prev, "P"], [f"p{k}"]))
        prev = f"p{k}"
    nodes += [
        N("ReduceSum", [prev], ["t"], keepdims=0),
        N("ReduceMean", ["X"], ["m"], keepdims=0),
        N("Add", ["m", "t"], ["Y"]),
    ]
    m = model(nodes, [p])
    expected = 200 * 2 * 512**3
    assert onnx_compute.gflops(m, SPEC) * 1e9 >= expected
    problems = onnx_compute.check(m, POL, SPEC)
    assert len(problems) == 1 and "import.max_gflops" in problems[0]
    # the positive control: the same graph under a policy that allows its work
    assert onnx_compute.check(m, replace(POL, max_gflops=60.0), SPEC) == []


def loop_model(trips: int, grow: bool = False) -> onnx.ModelProto:
    """A Loop of ``trips`` iterations whose body multiplies a [1,192] carried value by a
    192x192 matrix (or, with ``grow``, concatenates it onto itself)."""
    body_nodes = [N("Identity", ["c"], ["c2"])]
    if grow:
        body_nodes.append(N("Concat", ["v", "v"], ["v2"], axis=1))
    else:
        body_nodes.append(N("MatMul", ["v", "W"], ["v2"]))
    body = helper.make_graph(
        body_nodes,
        "body",
        [
            helper.make_tensor_value_info("i", TensorProto.INT64, []),
            helper.make_tensor_value_info("c", TensorProto.BOOL, []),
            helper.make_tensor_value_info("v", TensorProto.FLOAT, None),
        ],
        [
            helper.make_tensor_value_info("c2", TensorProto.BOOL, []),
            helper.make_tensor_value_info("v2", TensorProto.FLOAT, None),
        ],
    )
    inits = [
        C(np.eye(192, dtype=np.float32), "W"),
        C(np.array(trips, np.int64), "M"),
        C(np.array(True), "cond"),
    ]
    return model(flat([N("Loop", ["M", "cond", "F"], ["Y"], body=body)]), inits)


def test_a_loop_body_counts_once_per_iteration() -> None:
    one = 2 * 192 * 192 + 2  # the MatMul, the Identity of the condition
    for trips in (1, 10, 1000):
        work = onnx_compute.gflops(loop_model(trips), SPEC) * 1e9
        assert work == pytest.approx(trips * one + 2 * 192)


def test_a_loop_carried_value_that_grows_has_no_bound_and_is_refused() -> None:
    problems = onnx_compute.check(loop_model(30, grow=True), POL, SPEC)
    assert len(problems) == 1 and "changes shape across iterations" in problems[0]


def test_if_counts_the_dearer_branch() -> None:
    cheap = helper.make_graph(
        [N("Identity", ["F"], ["a"])], "cheap", [], [helper.make_tensor_value_info("a", 1, None)]
    )
    dear = helper.make_graph(
        [N("MatMul", ["F", "W"], ["b"])], "dear", [], [helper.make_tensor_value_info("b", 1, None)]
    )
    inits = [C(np.eye(192, dtype=np.float32), "W"), C(np.array(True), "k")]
    m = model(flat([N("If", ["k"], ["Y"], then_branch=cheap, else_branch=dear)]), inits)
    assert onnx_compute.gflops(m, SPEC) * 1e9 == pytest.approx(2 * 192 * 192 + 2 * 192)


def test_einsum_counts_every_index_once() -> None:
    w = C(np.ones((192, 32), np.float32), "W")
    m = model(flat([N("Einsum", ["F", "W"], ["Y"], equation="bk,kn->bn")]), [w])
    assert onnx_compute.gflops(m, SPEC) * 1e9 == pytest.approx(2 * 192 * 32 + 2 * 192)


def test_declared_shapes_are_not_believed() -> None:
    """A tenant's value_info claiming a small MatMul output does not lower the count."""
    a = C(np.ones((4096, 64), np.float32), "A")
    b = C(np.ones((64, 4096), np.float32), "B")
    m = model(
        [
            N("MatMul", ["A", "B"], ["P"]),
            N("ReduceSum", ["P"], ["t"], keepdims=0),
            N("ReduceMean", ["X"], ["m"], keepdims=0),
            N("Add", ["m", "t"], ["Y"]),
        ],
        [a, b],
    )
    m.graph.value_info.append(helper.make_tensor_value_info("P", TensorProto.FLOAT, [1, 1]))
    assert onnx_compute.gflops(m, SPEC) * 1e9 >= 2 * 4096 * 4096 * 64


def test_a_node_whose_shape_cannot_be_inferred_is_refused() -> None:
    """Default deny: a Reshape to a shape read from the input's values has no static size
    (onnx_graph refuses its control too; this check stands on its own)."""
    m = model(
        flat(
            [
                N("ArgMax", ["F"], ["k"], axis=1, keepdims=0),
                N("ConstantOfShape", ["k"], ["Z"]),
                N("ReduceSum", ["Z"], ["Y"], keepdims=0),
            ]
        ),
        [],
    )
    problems = onnx_compute.check(m, POL, SPEC)
    assert len(problems) == 1 and "no static bound" in problems[0]


def test_the_policy_bound_is_validated(tmp_path) -> None:
    from facelab.errors import BadInputError

    text = DEFAULT_POLICY.read_text()
    for bad in ("0", "-1", "1e7", "true", '"50"'):
        p = tmp_path / "p.toml"
        p.write_text(text.replace("max_gflops = 50.0", f"max_gflops = {bad}"))
        with pytest.raises(BadInputError, match="max_gflops"):
            load_policy(p)


def test_a_body_reading_axes_from_the_enclosing_graph_is_bounded() -> None:
    """A benign renormalising Loop (red team rt15 case 33): the body's ReduceL2 takes its
    axes from an initializer of the main graph; its shape follows from that value."""
    body = helper.make_graph(
        [
            N("Identity", ["c"], ["c2"]),
            N("ReduceL2", ["v", "axes"], ["n"], keepdims=1),
            N("Div", ["v", "n"], ["v2"]),
        ],
        "body",
        [
            helper.make_tensor_value_info("i", TensorProto.INT64, []),
            helper.make_tensor_value_info("c", TensorProto.BOOL, []),
            helper.make_tensor_value_info("v", TensorProto.FLOAT, None),
        ],
        [
            helper.make_tensor_value_info("c2", TensorProto.BOOL, []),
            helper.make_tensor_value_info("v2", TensorProto.FLOAT, None),
        ],
    )
    inits = [
        C(np.array([1], np.int64), "axes"),
        C(np.array(3, np.int64), "M"),
        C(np.array(True), "cond"),
    ]
    m = model(flat([N("Loop", ["M", "cond", "F"], ["Y"], body=body)]), inits)
    # per iteration: Identity 2, ReduceL2 192 + 1 (axes) + 1, Div 192 + 1 + 192
    assert onnx_compute.gflops(m, SPEC) * 1e9 == pytest.approx(3 * 581 + 2 * 192)


def test_work_that_grows_faster_than_the_batch_is_held_to_the_same_bound() -> None:
    """A blob of (N - 1)^2 x 512 rows of 2048 times a 2048 x 1024 MatMul: nothing at batch
    1, about 8.5e12 FLOP (133 GFLOP per image) at a job's batch of 64."""
    nodes = [
        N("Shape", ["X"], ["xs"]),
        N("Gather", ["xs", "i0"], ["n"], axis=0),
        N("Sub", ["n", "one"], ["a"]),
        N("Mul", ["a", "a"], ["a2"]),
        N("Mul", ["a2", "k"], ["rows"]),
        N("Concat", ["rows", "wide"], ["shape"], axis=0),
        N("ConstantOfShape", ["shape"], ["blob"]),
        N("MatMul", ["blob", "W"], ["p"]),
        N("ReduceSum", ["p"], ["t"], keepdims=0),
        N("ReduceMean", ["X"], ["m"], keepdims=0),
        N("Add", ["m", "t"], ["Y"]),
    ]
    inits = [
        C(np.array([0], np.int64), "i0"),
        C(np.array([1], np.int64), "one"),
        C(np.array([512], np.int64), "k"),
        C(np.array([2048], np.int64), "wide"),
        C(np.ones((2048, 1024), np.float32), "W"),
    ]
    m = model(nodes, inits)
    assert onnx_compute.gflops(m, SPEC, POL, batch=1) < 1e-3
    problems = onnx_compute.check(m, POL, SPEC)
    assert len(problems) == 1 and "at batch 64" in problems[0], problems


def test_a_value_that_explodes_with_the_batch_is_a_memory_bomb_even_within_the_work_bound():
    """ConstantOfShape of N**6 floats summed: 2 GFLOP per image at batch 64 (within the
    work bound) but one 256 GiB tensor; batch 1 makes one float."""
    nodes = [
        N("Shape", ["X"], ["xs"]),
        N("Gather", ["xs", "i0"], ["n"], axis=0),
        N("Mul", ["n", "n"], ["n2"]),
        N("Mul", ["n2", "n2"], ["n4"]),
        N("Mul", ["n4", "n2"], ["n6"]),
        N("ConstantOfShape", ["n6"], ["blob"]),
        N("ReduceSum", ["blob"], ["t"], keepdims=0),
        N("ReduceMean", ["X"], ["m"], keepdims=0),
        N("Add", ["m", "t"], ["Y"]),
    ]
    m = model(nodes, [C(np.array([0], np.int64), "i0")])
    total, peak, where = onnx_compute.work(m, SPEC, POL, batch=64)
    assert total / 64 < POL.max_gflops and peak == 4 * 64**6 and "'blob'" in where
    assert onnx_compute.work(m, SPEC, POL, batch=1)[1] <= 4 * 192  # no blob at batch 1
    problems = onnx_compute.check(m, POL, SPEC)
    assert len(problems) == 1 and "import.max_tensor_mb" in problems[0], problems
    # positive control: the bound lifted, nothing else stops it statically
    assert onnx_compute.check(m, replace(POL, max_tensor_mb=1 << 30), SPEC) == []
