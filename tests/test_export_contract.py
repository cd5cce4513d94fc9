"""The export contract and the rebuild (content disarm and reconstruction), as pure
parts: what each kind may hold, what the rebuilt file keeps, and the re-quantisation's
bits. The rebuild functions are called directly here (the gate calls them confined);
the oracles are byte scans and bit arithmetic written in these tests."""

from __future__ import annotations

import io
import json
import pickle
import struct
import sys
import types
import zipfile
from pathlib import Path

import numpy as np
import onnx
import pytest
from facelab.gates.exporting import _rebuild_child as rb
from facelab.gates.exporting import _torchzip
from facelab.gates.exporting._quantise import capacity_bits, requantise
from facelab.gates.exporting.contract import child_policy, classify
from hypothesis import given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper

from enclave_policy import load_policy

POL = load_policy()
CP = child_policy(POL.exporting, POL.importing)
REPO = Path(__file__).resolve().parents[1]
CNN = REPO / "models" / "cnn" / "model.onnx"
MARK = "ZZ-SECRET-MARKER-42"


def _bases() -> dict:
    return rb.load_baselines({"cnn@1.0.0": str(CNN)})


def _rebuild(kind: str, src: Path, out: Path) -> dict:
    return rb.REBUILD[kind](src, out, CP, np.random.default_rng(0), _bases())


# ---------------------------------------------------------------- re-quantisation


@settings(max_examples=200, deadline=None)
@given(
    st.floats(-1e30, 1e30, allow_nan=False, allow_subnormal=False).map(
        lambda v: float(np.float32(v))
    ),
    st.integers(1, 22),
    st.integers(0, 99),
)
def test_requantised_values_keep_m_bits_and_stay_within_one_and_a_half_steps(
    x: float, m: int, seed: int
) -> None:
    if 0 < abs(x) < 1.2e-38:
        return  # subnormal: no exponent of its own to keep
    a = np.array([x], np.float32)
    y = requantise(a, m, np.random.default_rng(seed))
    bits = int(y.view(np.uint32)[0])
    assert bits & ((1 << (23 - m)) - 1) == 0  # everything below the kept bits is zero
    if x != 0:
        step = 2.0 ** (np.frexp(np.float64(x))[1] - 1 - m)
        assert abs(float(y[0]) - x) <= 1.5 * step * 2  # a carry to the next exponent
    else:
        assert y[0] == 0


def test_the_lowest_kept_bit_is_a_coin_toss_whatever_the_input() -> None:
    m = 10
    rng = np.random.default_rng(1)
    # on the grid and off it (not a power of two: there a step down lands on the finer
    # grid of the binade below, whose lowest kept bit is then always 0)
    for value in (0.7512, 1.5, -3.25, 0.1234567):
        a = np.full(20000, value, np.float32)
        low = (requantise(a, m, rng).view(np.uint32) >> (23 - m)) & 1
        assert 0.48 < low.mean() < 0.52, (value, low.mean())


def test_the_capacity_bound_is_not_beaten_by_a_payload_in_the_kept_bits() -> None:
    """An encoder that writes b bits into each of n values (equal bits included) sends
    n * b bits; the bound must be at least that for every b the rebuild keeps."""
    rng = np.random.default_rng(2)
    w = rng.normal(size=4096).astype(np.float32)
    for b in (1, 5, 10, 19):
        payload = rng.integers(0, 2**b, size=w.size, dtype=np.uint32)
        mask = np.uint32((1 << b) - 1) << np.uint32(23 - 10 + (10 - min(b, 10)))
        hidden = (w.view(np.uint32) & ~mask) | ((payload << np.uint32(13)) & mask)
        changed = int((hidden != w.view(np.uint32)).sum())
        sent = w.size * min(b, 10)
        assert capacity_bits(changed, w.size, np.float32, 10) >= sent * changed / w.size


def test_uniform_random_init_on_a_2_to_the_minus_24_grid_is_not_a_payload(tmp_path) -> None:
    from safetensors.numpy import save_file

    w = np.random.default_rng(3).random((256, 128), dtype=np.float32) - 0.5
    save_file({"layer.weight": w}, str(tmp_path / "init.safetensors"))
    facts = _rebuild("weights", tmp_path / "init.safetensors", tmp_path / "out.safetensors")
    assert facts["format"] == "safetensors" and facts["n_rebuilt"] == 1
    from safetensors.numpy import load_file

    r = load_file(str(tmp_path / "out.safetensors"))["layer.weight"]
    assert np.abs(r - w).max() <= 2.0**-10  # re-quantised, close
    assert (r.view(np.uint32) & 0x1FFF).max() == 0  # 13 low bits empty


# ---------------------------------------------------------------- ONNX


def _dressed_cnn(tmp_path: Path) -> Path:
    """The shipped CNN with every place the detectors never read: metadata, doc
    strings, a model-local function, training_info, a sparse constant, a dead branch,
    and an unknown protobuf field, each holding the marker."""
    m = onnx.load(CNN)
    m.doc_string = MARK
    m.graph.doc_string = MARK
    m.metadata_props.add(key="author", value=MARK)
    m.graph.node[0].doc_string = MARK
    m.graph.node[0].name = MARK
    f = onnx.FunctionProto(name="leak", domain="evil.io", doc_string=MARK)
    m.functions.append(f)
    m.training_info.add().initialization.name = MARK
    sp = onnx.SparseTensorProto(
        values=numpy_helper.from_array(np.array([1.0, 2.0], np.float32), "sparse_leak"),
        indices=numpy_helper.from_array(np.array([0, 3], np.int64), "sparse_idx"),
        dims=[8],
    )
    m.graph.sparse_initializer.append(sp)
    m.graph.initializer.append(
        numpy_helper.from_array(np.frombuffer(MARK.encode() * 4, np.uint8).copy(), "dead")
    )
    m.graph.node.append(helper.make_node("Identity", ["dead"], ["dead_out"], name="deadnode"))
    data = m.SerializeToString()
    # an unknown field (number 99, length-delimited) appended to the ModelProto
    field = b"\x9a\x06" + bytes([len(MARK)]) + MARK.encode()  # tag 99, wire type 2
    p = tmp_path / "model.onnx"
    p.write_bytes(data + field)
    assert MARK.encode() in p.read_bytes()
    return p


def test_the_rebuilt_onnx_keeps_only_what_computes_the_outputs(tmp_path: Path) -> None:
    import onnxruntime as ort

    src = _dressed_cnn(tmp_path)
    out = tmp_path / "rebuilt.onnx"
    facts = _rebuild("onnx_model", src, out)
    data = out.read_bytes()
    assert MARK.encode() not in data and MARK.encode("utf-16-le") not in data
    m = onnx.load_from_string(data)
    assert not m.metadata_props and not m.functions and not m.training_info
    assert not m.doc_string and not m.graph.sparse_initializer
    assert all(not n.doc_string for n in m.graph.node)
    assert facts["descends_from"] == "cnn@1.0.0" and facts["dropped"]["functions"] == 1
    x = np.random.default_rng(0).normal(size=(2, 3, 64, 64)).astype(np.float32)
    s = ort.InferenceSession(str(CNN))
    a = s.run(None, {s.get_inputs()[0].name: x})[0]
    b = ort.InferenceSession(str(out)).run(None, {m.graph.input[0].name: x})[0]
    # unchanged weights are kept bit for bit; the output leaves L2-normalised (a cosine
    # matcher sees the same scores; an output's length is no channel)
    np.testing.assert_allclose(b, a / np.linalg.norm(a, axis=1, keepdims=True), rtol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(b, axis=1), 1.0, rtol=1e-6)
    kept = {t.name: numpy_helper.to_array(t) for t in m.graph.initializer}
    for t in onnx.load(CNN).graph.initializer:
        np.testing.assert_array_equal(kept[t.name], numpy_helper.to_array(t))
    assert facts["outputs_l2_normalised"] == 1


def test_a_model_with_an_operator_outside_the_allow_list_is_refused(tmp_path: Path) -> None:
    m = onnx.load(CNN)
    out = m.graph.output[0].name
    m.graph.node.append(helper.make_node("Hardmax", [out], ["h"]))
    del m.graph.output[:]
    m.graph.output.append(helper.make_tensor_value_info("h", TensorProto.FLOAT, ["N", 128]))
    onnx.save(m, tmp_path / "m.onnx")
    with pytest.raises(rb.Refused, match="Hardmax is outside the allow-list"):
        _rebuild("onnx_model", tmp_path / "m.onnx", tmp_path / "o.onnx")
    assert not (tmp_path / "o.onnx").exists()


def test_an_onnx_that_descends_from_no_imported_model_is_refused(tmp_path: Path) -> None:
    with pytest.raises(rb.Refused, match="does not descend"):
        _rebuild("onnx_model", REPO / "models" / "eigenface" / "model.onnx", tmp_path / "o")


def test_a_new_large_integer_tensor_is_refused(tmp_path: Path) -> None:
    """zlib or base-36 identifiers in an int tensor: only shape-like sizes may be new."""
    m = onnx.load(CNN)
    out = m.graph.output[0].name
    blob = np.frombuffer(b"x" * 400, np.uint8).astype(np.int64)
    m.graph.initializer.append(numpy_helper.from_array(blob, "ids"))
    m.graph.node.append(helper.make_node("Gather", [out, "ids"], ["g"], axis=1))
    del m.graph.output[:]
    m.graph.output.append(helper.make_tensor_value_info("g", TensorProto.FLOAT, ["N", 400]))
    onnx.save(m, tmp_path / "m.onnx")
    with pytest.raises(rb.Refused, match=r"only float|may only give a shape"):
        _rebuild("onnx_model", tmp_path / "m.onnx", tmp_path / "o.onnx")


# ---------------------------------------------------------------- JSON, tables, text


def test_model_json_is_rebuilt_from_the_schema_only(tmp_path: Path) -> None:
    doc = json.loads((REPO / "models" / "cnn" / "model.json").read_text())
    doc["notes"] = MARK
    (tmp_path / "model.json").write_text(json.dumps(doc))
    facts = _rebuild("model_json", tmp_path / "model.json", tmp_path / "o.json")
    assert MARK not in (tmp_path / "o.json").read_text() and facts["dropped_keys"] == ["notes"]


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("given,family\nAnna,Berg\n", "not a declared metrics column"),
        ("label,loss\nx,0.1\n", "not a declared metrics column"),
        ("epoch,loss\n1,abc\n", "not a number"),
        ("nationality,fnmr,count\nXAA,0.1,3\n", "minimum cell count"),
        ("nationality,fnmr\nXAA,0.1\n", "needs a count column"),
    ],
)
def test_tables_outside_the_contract_are_refused(tmp_path: Path, text: str, why: str) -> None:
    (tmp_path / "t.csv").write_text(text)
    with pytest.raises(rb.Refused, match=why):
        _rebuild("metrics_table", tmp_path / "t.csv", tmp_path / "o.csv")


def test_a_declared_table_is_rewritten_from_its_numbers(tmp_path: Path) -> None:
    (tmp_path / "t.csv").write_text("epoch , loss\n1,0.50000000001\n2,4e-1\nXX\n"[:-3])
    _rebuild("metrics_table", tmp_path / "t.csv", tmp_path / "o.csv")
    assert (tmp_path / "o.csv").read_text() == "epoch,loss\n1,0.5\n2,0.4\n"
    (tmp_path / "g.csv").write_text("nationality,fnmr,count\nXAA,0.125,40\n")
    _rebuild("metrics_table", tmp_path / "g.csv", tmp_path / "g2.csv")


def test_text_that_is_not_text_is_refused(tmp_path: Path) -> None:
    import cv2

    png = cv2.imencode(".png", np.zeros((8, 8), np.uint8))[1].tobytes()
    (tmp_path / "run.log").write_bytes(png)  # an image named as a log
    with pytest.raises(rb.Refused):
        _rebuild("text", tmp_path / "run.log", tmp_path / "o.log")
    (tmp_path / "z.txt").write_text("a\u200bb")  # a zero-width character (format)
    with pytest.raises(rb.Refused, match="format characters"):
        _rebuild("text", tmp_path / "z.txt", tmp_path / "o.txt")


def test_the_contract_names_the_kind_or_the_reason(tmp_path: Path) -> None:
    names = [
        "a/model.onnx",
        "a/model.json",
        "r/report.json",
        "r/det.png",
        "x/face.png",
        "x/blob.bin2",
        "x/train.log",
        "x/w.safetensors",
        "x/other.json",
    ]
    for n in names:
        (tmp_path / n).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / n).write_bytes(b"x")
    items = {i.rel: i for i in classify([(tmp_path / n, n) for n in names], CP["kinds"])}
    assert items["a/model.onnx"].kind == "onnx_model" and not items["a/model.onnx"].reason
    assert items["r/det.png"].discarded  # drawn again from report.json
    assert "images leave only as plots" in items["x/face.png"].reason
    assert "no kind of the export contract" in items["x/blob.bin2"].reason
    assert "no kind of the export contract" in items["x/other.json"].reason
    assert items["x/w.safetensors"].kind == "weights"
    limited = classify([(tmp_path / "x/train.log", "x/train.log")], ("onnx_model",))
    assert "not in export.contract.kinds" in limited[0].reason


# ---------------------------------------------------------------- data-only formats


def test_a_keras_h5_with_a_lambda_layer_is_refused(tmp_path: Path) -> None:
    import h5py

    with h5py.File(tmp_path / "m.h5", "w") as f:
        f.attrs["model_config"] = json.dumps({"layers": [{"class_name": "Lambda"}]})
        f.create_dataset("dense/kernel", data=np.zeros((4, 4), np.float32))
    with pytest.raises(rb.Refused, match="Lambda"):
        _rebuild("weights", tmp_path / "m.h5", tmp_path / "o.h5")
    with h5py.File(tmp_path / "ok.h5", "w") as f:
        f.create_dataset("dense/kernel", data=np.ones((4, 4), np.float32))
    facts = _rebuild("weights", tmp_path / "ok.h5", tmp_path / "o2.h5")
    assert facts["names"] == ["dense/kernel"]


def test_gguf_tensors_are_read_natively_and_rebuilt_as_safetensors(tmp_path: Path) -> None:
    from gguf import GGUFWriter

    w = GGUFWriter(str(tmp_path / "m.gguf"), "test")
    w.add_string("general.description", MARK)
    w.add_tensor("blk.0.weight", np.linspace(-1, 1, 64, dtype=np.float32).reshape(8, 8))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    facts = _rebuild("weights", tmp_path / "m.gguf", tmp_path / "o.gguf")
    assert facts["written_as"] == "o.safetensors"
    assert MARK.encode() not in (tmp_path / "o.safetensors").read_bytes()


def _torch_zip(objects, storages: dict[str, np.ndarray]) -> bytes:
    """A torch.save-format zip written without torch: stand-in modules named torch and
    torch._utils let pickle record the same globals torch's pickler records."""
    torch = types.ModuleType("torch")
    utils = types.ModuleType("torch._utils")

    class FloatStorage:
        pass

    FloatStorage.__module__, FloatStorage.__qualname__ = "torch", "FloatStorage"

    def _rebuild_tensor_v2(*a):
        return None

    _rebuild_tensor_v2.__module__ = "torch._utils"
    _rebuild_tensor_v2.__qualname__ = "_rebuild_tensor_v2"
    torch.FloatStorage, utils._rebuild_tensor_v2 = FloatStorage, _rebuild_tensor_v2
    torch._utils = utils

    class T:
        def __init__(self, key, shape):
            self.key, self.shape = key, shape

        def __reduce__(self):
            stride = tuple(int(np.prod(self.shape[i + 1 :])) for i in range(len(self.shape)))
            return (_rebuild_tensor_v2, (("S", self.key), 0, self.shape, stride, False, {}))

    class P(pickle.Pickler):
        def persistent_id(self, obj):
            if isinstance(obj, tuple) and len(obj) == 2 and obj[0] == "S":
                return ("storage", FloatStorage, obj[1], "cpu", storages[obj[1]].size)
            return None

    saved = {k: sys.modules.get(k) for k in ("torch", "torch._utils")}
    sys.modules["torch"], sys.modules["torch._utils"] = torch, utils
    try:
        buf = io.BytesIO()
        P(buf, protocol=2).dump(objects(T))
    finally:
        for k, v in saved.items():
            if v is None:
                sys.modules.pop(k, None)
            else:
                sys.modules[k] = v
    z = io.BytesIO()
    with zipfile.ZipFile(z, "w") as zf:
        zf.writestr("archive/data.pkl", buf.getvalue())
        for k, a in storages.items():
            zf.writestr(f"archive/data/{k}", a.astype("<f4").tobytes())
    return z.getvalue()


def test_a_pytorch_state_dict_is_read_by_opcodes_and_nothing_else(tmp_path: Path) -> None:
    w = np.arange(12, dtype=np.float32)
    data = _torch_zip(lambda T: {"fc.weight": T("0", (3, 4))}, {"0": w})
    got = _torchzip.read(data, 10**6)
    np.testing.assert_array_equal(got["fc.weight"], w.reshape(3, 4))
    (tmp_path / "m.pt").write_bytes(data)
    facts = _rebuild("weights", tmp_path / "m.pt", tmp_path / "o.pt")
    assert facts["format"] == "pt" and facts["written_as"] == "o.safetensors"


class _Evil:
    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (Path(self.marker),))


def test_a_pytorch_zip_whose_pickle_calls_anything_else_is_refused(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    z = io.BytesIO()
    with zipfile.ZipFile(z, "w") as zf:
        zf.writestr("archive/data.pkl", pickle.dumps({"w": _Evil(str(marker))}, protocol=2))
    with pytest.raises(_torchzip.Refused, match="only tensor reconstruction"):
        _torchzip.read(z.getvalue(), 10**6)
    assert not marker.exists()


def test_a_safetensors_header_that_declares_a_huge_tensor_is_refused(tmp_path: Path) -> None:
    hdr = json.dumps({"w": {"dtype": "F32", "shape": [10**6, 10**6], "data_offsets": [0, 4]}})
    data = struct.pack("<Q", len(hdr)) + hdr.encode() + b"\0" * 4
    (tmp_path / "h.safetensors").write_bytes(data)
    with pytest.raises(rb.Refused, match="exceeds"):
        _rebuild("weights", tmp_path / "h.safetensors", tmp_path / "o.safetensors")


def test_a_subject_pseudonym_is_an_identifier() -> None:
    from facelab.gates.exporting._types import Artifact, ScanContext
    from facelab.gates.exporting.detectors import identifiers
    from facelab.gates.exporting.vault_index import SubjectIndex

    pseudo = "fec658cd70d92978a36c855649ae4813"
    idx = SubjectIndex(
        b"k" * 32,
        {},
        np.array([pseudo, "0" * 32]),
        np.array(["passport"] * 2),
        np.array(["train"] * 2),
        np.zeros((2, 64, 64), np.uint8),
        {},
    )
    ctx = ScanContext(POL.exporting, "acme", idx)
    hit = Artifact("t.txt", "text", b"", strings=[("line 1", f"row {pseudo.upper()} 0.3")])
    miss = Artifact("t.txt", "text", b"", strings=[("line 1", f"row {pseudo[:-1]}f 0.3")])
    found = identifiers.detect(hit, ctx)
    assert [f.severity for f in found] == ["high"] and "pseudonym" in found[0].evidence
    assert identifiers.detect(miss, ctx) == []


@pytest.mark.parametrize(
    ("name", "version", "released"),
    [
        ("cnn", "1.0.0", ("cnn", "1.0.0")),  # the imported model's own
        ("cnn-pca128", "1.0.0", ("cnn-pca128", "1.0.0")),  # facelab's suffix for this size
        ("cnn-pca64", "1.0.0", ("cnn-derived", "1.0.0")),  # not this model's output size
        ("anna-berg-1990", "1.0.0", ("cnn-derived", "1.0.0")),  # a name in the name
        ("cnn", "19.90.312", ("cnn", "1.0.0")),  # a birth date in the version
    ],
)
def test_model_json_names_are_an_imported_models_never_free_text(
    tmp_path: Path, name: str, version: str, released: tuple[str, str]
) -> None:
    doc = json.loads((REPO / "models" / "cnn" / "model.json").read_text())
    doc["name"], doc["version"] = name, version
    (tmp_path / "model.json").write_text(json.dumps(doc))
    facts = _rebuild("model_json", tmp_path / "model.json", tmp_path / "o.json")
    out = json.loads((tmp_path / "o.json").read_text())
    assert (out["name"], out["version"]) == released
    assert facts["renamed"] is ((name, version) != released)


@pytest.mark.parametrize(("added", "refused"), [(1, False), (40, True)])
def test_a_graph_may_add_only_a_small_head(tmp_path: Path, added: int, refused: bool) -> None:
    """Operator types in sequence are a channel (40 no-op nodes can spell a name): beyond
    the imported model's own nodes, at most ``max_new_nodes`` may be added."""
    m = onnx.load(CNN)
    prev = m.graph.output[0].name
    for i in range(added):
        m.graph.node.append(helper.make_node("Identity", [prev], [f"id{i}"]))
        prev = f"id{i}"
    del m.graph.output[:]
    m.graph.output.append(helper.make_tensor_value_info(prev, TensorProto.FLOAT, ["N", 128]))
    onnx.save(m, tmp_path / "m.onnx")
    files = [{"name": "m", "kind": "onnx_model", "src": str(tmp_path / "m.onnx")}]
    files[0]["out"] = str(tmp_path / "o.onnx")
    [r] = rb.run(files, CP, {"cnn@1.0.0": str(CNN)})["files"]
    assert (r["status"] == "refused") is refused, r
    if refused:
        assert "beyond cnn@1.0.0's graph" in r["reason"]


def test_a_link_to_a_regular_file_is_not_a_regular_file_whatever_its_name(tmp_path) -> None:
    # the contract classifies what a link points at never: a link is refused by itself
    (tmp_path / "metrics.csv").write_text("epoch,loss\n1,0.5\n")
    (tmp_path / "train.log").write_text("ok\n")
    (tmp_path / "link.csv").symlink_to(tmp_path / "metrics.csv")
    (tmp_path / "link.log").symlink_to("train.log")
    names = ["metrics.csv", "train.log", "link.csv", "link.log"]
    items = {i.rel: i for i in classify([(tmp_path / n, n) for n in names], CP["kinds"])}
    assert (items["metrics.csv"].kind, items["metrics.csv"].reason) == ("metrics_table", "")
    assert (items["train.log"].kind, items["train.log"].reason) == ("text", "")  # controls
    for n in ("link.csv", "link.log"):
        assert (items[n].kind, items[n].reason) == (None, "not a regular file"), n


@pytest.mark.parametrize(
    ("written", "taken"), [(["metrics.csv"], True), (["a.csv", "b.csv"], False)]
)
def test_an_item_is_taken_only_when_its_rebuild_wrote_exactly_one_file(
    tmp_path, monkeypatch, written, taken
) -> None:
    # the confined reader is replaced by one that writes ``written`` for the item: two
    # files for one item are refused, never "the first one in directory order"
    from types import SimpleNamespace

    from facelab.gates.exporting import contract

    (tmp_path / "metrics.csv").write_text("epoch,loss\n1,0.5\n")
    items = classify([(tmp_path / "metrics.csv", "metrics.csv")], CP["kinds"])
    assert items[0].kind == "metrics_table" and not items[0].reason

    def fake_run(target, kwargs, *, read, write, limits, **kw):
        for f in kwargs["files"]:
            out = Path(f["out"]).parent
            out.mkdir()
            for name in written:
                (out / name).write_text("epoch,loss\n1,0.5\n")
        return SimpleNamespace(status="ok", result={"files": [{"status": "ok"}]}, error=None)

    monkeypatch.setattr(contract.confine, "run_python", fake_run)
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    assert contract.rebuild(items, POL.exporting, POL.importing, scratch, {}, 1) is None
    if taken:
        assert items[0].reason == "" and items[0].out.name == "metrics.csv"
    else:
        assert items[0].reason == "the rebuild wrote no single file" and items[0].out is None
