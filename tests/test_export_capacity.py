"""What a release can carry, by class (issue 20): every value the tenant chose is
rebuilt to a bounded form and charged in a capacity bound, and a tenant's releases
together stay within its budget.

Each class has a leak built as a tenant would build it (the red team's L01-L14), what
the gate does with it (refused with the reason, or rebuilt so that the payload does not
survive, and charged), and a positive control: a legitimate artifact of the same shape
that leaves. The rebuild is called as the gate calls it (``_rebuild_child.run``, here
unconfined); the oracles are bit arithmetic written in these tests.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import onnx
import pytest
from facelab.gates.exporting import _rebuild_child as rb
from facelab.gates.exporting._quantise import released_bits, requantise, round_scalar
from facelab.gates.exporting.contract import child_policy
from facelab.gates.exporting.ops import budget_finding
from hypothesis import given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper

from enclave_policy import load_policy

POL = load_policy()
CP = child_policy(POL.exporting, POL.importing)
M = int(CP["mantissa_bits"])
REPO = Path(__file__).resolve().parents[1]
CNN = REPO / "models" / "cnn" / "model.onnx"
BASES = {"cnn@1.0.0": str(CNN)}  # its model.json beside it, as the gate copies it


def _rebuild(tmp_path: Path, kind: str, name: str, data: bytes) -> dict:
    """One file through the rebuild as the gate runs it: {"status", "facts" | "reason"}."""
    src = tmp_path / "in" / name
    src.parent.mkdir(exist_ok=True)
    src.write_bytes(data)
    files = [{"name": name, "kind": kind, "src": str(src), "out": str(tmp_path / "out" / name)}]
    [r] = rb.run(files, CP, BASES, seed=1)["files"]
    return r


def _cnn() -> onnx.ModelProto:
    return onnx.load(CNN)


def _with_head(m: onnx.ModelProto, nodes: list, inits: list, out: str, dim: int):
    m.graph.initializer.extend(inits)
    m.graph.node.extend(nodes)
    del m.graph.output[:]
    m.graph.output.append(helper.make_tensor_value_info(out, TensorProto.FLOAT, ["N", dim]))
    return m


def _released_initializers(tmp_path: Path, name: str) -> dict[str, np.ndarray]:
    m = onnx.load(tmp_path / "out" / name)
    return {t.name: numpy_helper.to_array(t) for t in m.graph.initializer}


# ---------------------------------------------------------------- exponents (L01)


def _exponent_payload(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """n float32 values whose exponent fields are a payload byte each (0x01-0xFE, no
    infinities or subnormals): what L01 put in a new tensor."""
    payload = np.random.default_rng(seed).integers(1, 255, n, dtype=np.uint32)
    return (payload << np.uint32(23)).view(np.float32), payload


def test_a_payload_in_the_exponents_of_a_new_tensor_is_charged_for_every_exponent_bit(
    tmp_path: Path,
) -> None:
    """L01: re-quantisation keeps exponents, so the bound must count them: a new tensor of
    n values with a byte in each exponent field is charged at least 8 n bits (the oracle:
    the payload's size), and the budget then refuses what does not fit."""
    w, payload = _exponent_payload(512, 0)
    m = _with_head(
        _cnn(),
        [helper.make_node("Add", [_cnn().graph.output[0].name, "x"], ["y"])],
        [numpy_helper.from_array(np.resize(w, 128), "x")],
        "y",
        128,
    )
    r = _rebuild(tmp_path, "onnx_model", "m.onnx", m.SerializeToString())
    assert r["status"] == "ok", r
    imported = {t.name for t in _cnn().graph.initializer}
    [released] = [
        a for k, a in _released_initializers(tmp_path, "m.onnx").items() if k not in imported
    ]
    # the payload is still there (exponents are kept) ...
    survived = (released.view(np.uint32) >> 23) & 0xFF
    assert (survived == np.resize(payload, 128)).mean() > 0.6
    # ... and charged: at least 8 bits a value
    assert r["facts"]["weights_capacity_bits"] >= 8 * 128
    # positive control: a head's ordinary weights span a few binades and are charged
    # far less per value than the exponent payload
    g = np.random.default_rng(1).normal(0, 0.09, 128).astype(np.float32)
    m = _with_head(
        _cnn(),
        [helper.make_node("Add", [_cnn().graph.output[0].name, "x"], ["y"])],
        [numpy_helper.from_array(g, "x")],
        "y",
        128,
    )
    ok = _rebuild(tmp_path, "onnx_model", "g.onnx", m.SerializeToString())
    assert ok["status"] == "ok"
    assert ok["facts"]["weights_capacity_bits"] < r["facts"]["weights_capacity_bits"] - 2 * 128


@settings(max_examples=60, deadline=None)
@given(
    st.integers(1, 400),  # values
    st.integers(0, 8),  # exponent bits of payload per value
    st.integers(0, M),  # mantissa bits of payload per value (within the kept ones)
    st.booleans(),  # sign bit used
    st.integers(0, 2**16),
)
def test_the_bound_is_at_least_what_any_encoder_put_into_the_released_values(
    n: int, e_bits: int, m_bits: int, sign: bool, seed: int
) -> None:
    """Property: an encoder writing ``e_bits`` into the exponent, ``m_bits`` into the
    kept mantissa and one into the sign of each of n values sends at most that many bits;
    ``released_bits`` on the re-quantised tensor is never below what survives (bits
    below the lowest kept one are dropped, the lowest kept one is a coin toss)."""
    rng = np.random.default_rng(seed)
    e = 127 + rng.integers(0, 2**e_bits, n) - (2**e_bits) // 2  # centred on 2**0
    mant = rng.integers(0, 2**m_bits, n).astype(np.uint32) << np.uint32(23 - m_bits)
    s = rng.integers(0, 2, n).astype(np.uint32) if sign else np.zeros(n, np.uint32)
    x = ((s << 31) | (e.astype(np.uint32) << 23) | mant).view(np.float32)
    r = requantise(x, M, np.random.default_rng(seed + 1))
    surviving = e_bits + max(0, m_bits - 1) + int(sign)
    assert released_bits(r, None, M) >= n * surviving


# ---------------------------------------------------------------- kept mantissas (L02, L03)


def test_a_key_permuted_payload_in_a_bias_is_charged_and_nothing_below_the_kept_bits_leaves(
    tmp_path: Path,
) -> None:
    """L02/L03: mantissas of a small bias, permuted with a key so that no detector sees a
    face or a template. Bits below the kept ones do not leave; the kept ones do, and are
    charged: the bound is at least the payload that survives. (Refusing it is the
    budget's part: tests/test_export_budget.py.)"""
    bias = numpy_helper.to_array(
        next(t for t in _cnn().graph.initializer if t.name == "embed.bias")
    )
    key = np.random.default_rng(42).permutation(bias.size)
    low = np.random.default_rng(7).integers(0, 2**13, bias.size, dtype=np.uint32)
    high = np.random.default_rng(8).integers(0, 2**6, bias.size, dtype=np.uint32)
    bits = bias.view(np.uint32) & ~np.uint32(0x7FFFF)  # keep sign, exponent, top 4 bits
    hidden = (bits | (high[key] << np.uint32(13)) | low[key]).view(np.float32)
    m = _cnn()
    t = next(t for t in m.graph.initializer if t.name == "embed.bias")
    t.CopyFrom(numpy_helper.from_array(hidden, "embed.bias"))
    r = _rebuild(tmp_path, "onnx_model", "m.onnx", m.SerializeToString())
    assert r["status"] == "ok", r
    out = _released_initializers(tmp_path, "m.onnx")["embed.bias"].view(np.uint32)
    assert (out & 0x1FFF).max() == 0  # the 13 low bits of the payload are gone
    recovered = (out >> np.uint32(13)) & 0x3F
    assert (recovered[np.argsort(key)] == high).mean() < 0.75  # the coin toss, at least
    assert r["facts"]["capacity_bits"] >= bias.size * 5  # what survives is charged
    # positive control: the imported bias, unchanged, is kept bit for bit and costs 0
    ok = _rebuild(tmp_path, "onnx_model", "c.onnx", _cnn().SerializeToString())
    assert ok["status"] == "ok" and ok["facts"]["capacity_bits"] == 0
    kept = _released_initializers(tmp_path, "c.onnx")["embed.bias"]
    assert kept.tobytes() == bias.tobytes()


def test_a_changed_tensor_is_charged_only_for_the_values_that_changed(tmp_path: Path) -> None:
    """Values equal to the imported ones stay as imported (bit for bit); the bound then
    charges the changed ones and which they are, not the whole tensor."""
    m = _cnn()
    t = next(t for t in m.graph.initializer if t.name == "embed.weight")
    a = numpy_helper.to_array(t).copy()
    a[0, :4] += 0.01
    t.CopyFrom(numpy_helper.from_array(a, "embed.weight"))
    r = _rebuild(tmp_path, "onnx_model", "m.onnx", m.SerializeToString())
    assert r["status"] == "ok"
    out = _released_initializers(tmp_path, "m.onnx")["embed.weight"]
    assert np.array_equal(out.reshape(-1)[4:], numpy_helper.to_array(t).reshape(-1)[4:])
    assert 0 < r["facts"]["capacity_bits"] < 4 * (1 + 8 + M) + 64 + 100


# ---------------------------------------------------------------- graph structure (L06)


def _chain(ops: list[str]) -> onnx.ModelProto:
    m = _cnn()
    prev = m.graph.output[0].name
    nodes = []
    for i, op in enumerate(ops):
        nodes.append(helper.make_node(op, [prev], [f"c{i}"]))
        prev = f"c{i}"
    return _with_head(m, nodes, [], prev, 128)


def test_operator_choices_of_a_side_chain_are_refused_beyond_max_new_nodes(tmp_path) -> None:
    """L06: 13 new nodes whose operator types are the payload (Relu = 0, Identity = 1)."""
    payload = np.random.default_rng(3).integers(0, 2, 13)
    leak = _chain(["Identity" if b else "Relu" for b in payload])
    r = _rebuild(tmp_path, "onnx_model", "m.onnx", leak.SerializeToString())
    assert r["status"] == "refused"
    assert "max_new_nodes" in r["reason"] and "13 nodes" in r["reason"]
    # positive control: a two-node head leaves, its structure charged (operator and
    # inputs of each new node)
    w = np.random.default_rng(4).normal(0, 0.09, (128, 32)).astype(np.float32)
    b = np.zeros(32, np.float32)
    head = _with_head(
        _cnn(),
        [
            helper.make_node("MatMul", [_cnn().graph.output[0].name, "hw"], ["h"]),
            helper.make_node("Add", ["h", "hb"], ["y"]),
        ],
        [numpy_helper.from_array(w, "hw"), numpy_helper.from_array(b, "hb")],
        "y",
        32,
    )
    ok = _rebuild(tmp_path, "onnx_model", "h.onnx", head.SerializeToString())
    assert ok["status"] == "ok", ok
    f = ok["facts"]
    assert f["new_nodes"] == 2
    assert f["structure_capacity_bits"] >= 2 * math.log2(len(CP["allowed_ops"]))


def test_a_changed_attribute_makes_an_imported_node_new() -> None:
    """A node is as imported only with the imported operator and attributes."""
    m = _cnn()
    gemm = next(n for n in m.graph.node if n.op_type == "Gemm")
    before = rb._signature(gemm)
    next(a for a in gemm.attribute if a.name == "alpha").f = 1.0000001
    assert rb._signature(gemm) != before


# ---------------------------------------------------------------- integers (L08)


def test_integer_initializers_as_gather_indices_are_refused_as_shapes_they_leave(
    tmp_path: Path,
) -> None:
    """L08: a payload as Gather indices (each index a choice of 128). New or changed
    integer tensors may give only shapes, axes, pads and bounds."""
    idx = np.random.default_rng(5).integers(0, 128, 48).astype(np.int64)
    out = _cnn().graph.output[0].name
    leak = _with_head(
        _cnn(),
        [helper.make_node("Gather", [out, "idx"], ["y"], axis=1)],
        [numpy_helper.from_array(idx, "idx")],
        "y",
        48,
    )
    r = _rebuild(tmp_path, "onnx_model", "m.onnx", leak.SerializeToString())
    assert r["status"] == "refused" and "Gather input 1" in r["reason"], r
    # positive control: a new shape tensor for a Reshape leaves (and is charged)
    shape = np.array([-1, 128], np.int64)
    ok_model = _with_head(
        _cnn(),
        [helper.make_node("Reshape", [out, "shape"], ["y"])],
        [numpy_helper.from_array(shape, "shape")],
        "y",
        128,
    )
    ok = _rebuild(tmp_path, "onnx_model", "r.onnx", ok_model.SerializeToString())
    assert ok["status"] == "ok", ok
    assert ok["facts"]["weights_capacity_bits"] >= 2 * 64


# ---------------------------------------------------------------- attributes (L11)


def test_float_attributes_of_new_or_changed_nodes_are_rounded_and_charged(tmp_path) -> None:
    """L11: 23 payload bits in the imported Gemm's alpha (1.0 plus a tiny payload). The
    node is then new: its float attributes leave with ``mantissa_bits`` kept and are
    charged."""
    payload = 0b1010_1100_1110_0001_0101_011
    alpha = float(np.array([0x3F800000 | payload], np.uint32).view(np.float32)[0])
    m = _cnn()
    gemm = next(n for n in m.graph.node if n.op_type == "Gemm")
    next(a for a in gemm.attribute if a.name == "alpha").f = alpha
    r = _rebuild(tmp_path, "onnx_model", "m.onnx", m.SerializeToString())
    assert r["status"] == "ok", r
    rebuilt = onnx.load(tmp_path / "out" / "m.onnx")
    a = next(
        x.f
        for n in rebuilt.graph.node
        if n.op_type == "Gemm"
        for x in n.attribute
        if x.name == "alpha"
    )
    low = int(np.array([a], np.float32).view(np.uint32)[0]) & ((1 << (23 - M)) - 1)
    assert low == 0 and a == round_scalar(alpha, M)
    assert r["facts"]["new_nodes"] == 1 and r["facts"]["structure_capacity_bits"] >= 1 + 8 + M
    # positive control: the imported Gemm keeps its attributes exactly, uncharged
    ok = _rebuild(tmp_path, "onnx_model", "c.onnx", _cnn().SerializeToString())
    assert ok["facts"]["new_nodes"] == 0 and ok["facts"]["structure_capacity_bits"] == 0


# ---------------------------------------------------------------- model.json numbers (L12)


def test_model_json_numbers_not_the_imported_ones_leave_rounded_and_charged(tmp_path) -> None:
    """L12: full float64 values in mean and std (52 bits each)."""
    spec = json.loads((REPO / "models" / "cnn" / "model.json").read_text())
    leak = json.loads(json.dumps(spec))
    leak["input"]["mean"] = [127.50000000000123, 127.49999999987654, 127.5000000004321]
    leak["input"]["std"] = 128.00000000012345
    r = _rebuild(tmp_path, "model_json", "model.json", json.dumps(leak).encode())
    assert r["status"] == "ok", r
    out = json.loads((tmp_path / "out" / "model.json").read_text())
    for v in [*out["input"]["mean"], out["input"]["std"]]:
        f32 = np.array([v], np.float32)
        assert float(f32[0]) == v  # a float32 ...
        assert int(f32.view(np.uint32)[0]) & ((1 << (23 - M)) - 1) == 0  # ... of M bits
    assert r["facts"]["capacity_bits"] >= 4 * (1 + 8 + M)
    # positive control: the imported model.json's numbers are kept exactly, uncharged
    ok = _rebuild(tmp_path, "model_json", "c.json", json.dumps(spec).encode())
    assert ok["status"] == "ok" and ok["facts"]["capacity_bits"] == 0
    assert json.loads((tmp_path / "out" / "c.json").read_text())["input"] == spec["input"]


# ---------------------------------------------------------------- the budget (L14)


@pytest.mark.parametrize(
    ("spent", "bits", "budget", "refused"),
    [(0, 100, 100, False), (60, 40, 100, False), (60, 41, 100, True), (0, 101, 100, True)],
)
def test_the_budget_refuses_only_what_goes_over_it(spent, bits, budget, refused) -> None:
    f = budget_finding(spent, bits, budget)
    assert (f is not None) is refused
    if refused:
        assert f.severity == "high" and "tenant_capacity_bits" in f.evidence


# ---------------------------------------------------------------- declared shapes (20e)
def test_declared_shapes_of_inputs_and_outputs_carry_no_payload(tmp_path: Path) -> None:
    """Red team 20e, case 15: a first name as the output's declared batch size (a 60-bit
    integer), released and charged nothing. The batch axis leaves as "N", a static axis
    above MAX_DECLARED_DIM leaves symbolic, and each static axis is charged."""
    payload = 339624532330853971
    m = _cnn()
    out = m.graph.output[0]
    out.type.tensor_type.shape.dim[0].dim_value = payload
    m.graph.input[0].type.tensor_type.shape.dim[0].dim_value = payload % 1000 + 7
    r = _rebuild(tmp_path, "onnx_model", "m.onnx", m.SerializeToString())
    assert r["status"] == "ok", r
    rel = onnx.load(tmp_path / "out" / "m.onnx")
    declared = [
        d.dim_value
        for v in (*rel.graph.input, *rel.graph.output)
        for d in v.type.tensor_type.shape.dim
        if d.HasField("dim_value")
    ]
    assert payload not in declared and payload % 1000 + 7 not in declared
    assert all(0 < x <= rb.MAX_DECLARED_DIM for x in declared)
    for v in (*rel.graph.input, *rel.graph.output):
        assert v.type.tensor_type.shape.dim[0].dim_param == "N"
    # a wide static axis is written symbolic, never as its number
    m2 = _cnn()
    m2.graph.output[0].type.tensor_type.shape.dim[1].dim_value = payload
    r2 = _rebuild(tmp_path, "onnx_model", "w.onnx", m2.SerializeToString())
    assert r2["status"] == "ok", r2
    rel2 = onnx.load(tmp_path / "out" / "w.onnx")
    assert rel2.graph.output[0].type.tensor_type.shape.dim[1].dim_param == "d1"
    # a static axis the imported model does not declare is charged its log2; its own
    # (3, 64, 64, 128) are free, so the unchanged model still costs 0
    m3 = _cnn()
    m3.graph.output[0].type.tensor_type.shape.dim[1].dim_value = 4242
    r3 = _rebuild(tmp_path, "onnx_model", "c.onnx", m3.SerializeToString())
    assert r3["facts"]["structure_capacity_bits"] >= math.log2(rb.MAX_DECLARED_DIM)
    assert r["facts"]["structure_capacity_bits"] == 0
