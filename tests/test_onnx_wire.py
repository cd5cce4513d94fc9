"""The subgraph-depth walk over ONNX's wire format (red team 15, case 27: 45 If nodes
nested in each other's branches, past protobuf's 100-level parse limit). Oracle: the
depth computed here by recursion over the parsed ModelProto; any bytes at all give a
number or None, never an exception."""

from __future__ import annotations

import numpy as np
from facelab.gates.importing.checks._onnx_wire import subgraph_depth
from hypothesis import given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper


def nested_if(depth: int, *, width: int = 1) -> bytes:
    """A model whose output passes through ``depth`` If nodes, each inside the previous
    one's then-branch (``width`` Ifs side by side at the top)."""

    def body(level: int, name: str):
        out = helper.make_tensor_value_info(f"{name}_o", TensorProto.FLOAT, None)
        if level == 0:
            return helper.make_graph(
                [helper.make_node("Identity", ["x"], [f"{name}_o"])], name, [], [out]
            )
        inner = helper.make_node(
            "If",
            ["c"],
            [f"{name}_o"],
            then_branch=body(level - 1, name + "t"),
            else_branch=body(0, name + "e"),
        )
        return helper.make_graph([inner], name, [], [out])

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])
    outs, nodes = [], []
    for i in range(width):
        g = body(depth, f"g{i}")
        nodes += list(g.node)
        outs.append(helper.make_tensor_value_info(f"g{i}_o", TensorProto.FLOAT, None))
    c = numpy_helper.from_array(np.array(True), "c")
    graph = helper.make_graph(nodes, "main", [x], outs, initializer=[c])
    return helper.make_model(graph).SerializeToString()


def reference_depth(model_bytes: bytes) -> int:
    import onnx

    m = onnx.ModelProto.FromString(model_bytes)

    def graph_depth(g) -> int:
        best = 0
        for n in g.node:
            for a in n.attribute:
                for sub in [a.g] if a.type == onnx.AttributeProto.GRAPH else list(a.graphs):
                    best = max(best, 1 + graph_depth(sub))
        return best

    return graph_depth(m.graph)


@settings(max_examples=25, deadline=None)
@given(depth=st.integers(0, 20), width=st.integers(1, 3))
def test_the_walk_agrees_with_the_parsed_model(depth, width) -> None:
    data = nested_if(depth, width=width)
    assert subgraph_depth(data) == reference_depth(data) == depth


def _field(number: int, payload: bytes) -> bytes:
    """A length-delimited protobuf field (wire type 2)."""

    def varint(v: int) -> bytes:
        out = bytearray()
        while True:
            out.append((v & 0x7F) | (0x80 if v > 0x7F else 0))
            v >>= 7
            if not v:
                return bytes(out)

    return varint(number << 3 | 2) + varint(len(payload)) + payload


def deep_wire(depth: int) -> bytes:
    """``nested_if(depth)`` written at the wire level: helper.make_graph itself cannot
    build what protobuf cannot parse (GraphProto.node 1, NodeProto.op_type 4 and
    .attribute 5, AttributeProto.name 1, .g 6 and .type 20, ModelProto.graph 7)."""
    graph = _field(1, _field(4, b"Identity"))
    for _ in range(depth):
        attr = _field(1, b"then_branch") + b"\xa0\x01\x05" + _field(6, graph)  # type GRAPH
        graph = _field(1, _field(4, b"If") + _field(5, attr))
    return _field(7, graph)


def test_the_wire_builder_matches_the_model_builder() -> None:
    assert subgraph_depth(deep_wire(7)) == reference_depth(deep_wire(7)) == 7


def test_the_walk_stops_once_past_its_limit() -> None:
    assert subgraph_depth(deep_wire(40), stop=16) == 17


def test_a_model_past_protobufs_parse_limit_still_gets_its_depth() -> None:
    import onnx
    import pytest
    from google.protobuf.message import DecodeError

    data = deep_wire(45)
    with pytest.raises((DecodeError, RecursionError)):
        onnx.ModelProto.FromString(data)
    assert subgraph_depth(data) == 45


@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=300))
def test_any_bytes_give_a_depth_or_none_never_an_error(data) -> None:
    d = subgraph_depth(data)
    assert d is None or d >= 0


def test_a_truncated_model_is_not_well_formed() -> None:
    data = nested_if(3)
    assert subgraph_depth(data[: len(data) // 2]) is None
