"""The benchmark protocol, the matcher adapter and `facelab bench`."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest

from lab.bench._align import ARCFACE_112, align
from lab.bench._matcher import Matcher
from lab.bench.run import run_benchmark, samples_from_dataset, wilson
from lab.errors import BadInputError
from lab.synth import SynthConfig, write_dataset
from tests.import_helpers import build_model, model_json

REPO = Path(__file__).resolve().parents[1]
EIGENFACE = REPO / "models" / "eigenface"


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("bench") / "ds"
    write_dataset(SynthConfig(identities=80, captures=2, seed=31), out)
    return out


def test_alignment_puts_the_landmarks_on_the_template() -> None:
    img = np.zeros((200, 200, 3), np.uint8)
    lm = ARCFACE_112 * 1.5 + 10  # the template, scaled and shifted
    for x, y in lm.astype(int):
        img[y - 1 : y + 2, x - 1 : x + 2] = 255
    out = align(img, lm, (112, 112))
    for x, y in np.round(ARCFACE_112).astype(int):
        assert out[y - 1 : y + 2, x - 1 : x + 2].max() > 100


def test_the_eigenface_baseline_extracts_unit_templates(dataset) -> None:
    m = Matcher(EIGENFACE)
    samples = samples_from_dataset(dataset)[:10]
    ext = m.extract([s.image for s in samples], [s.landmarks for s in samples])
    assert ext.templates.shape == (10, 128) and ext.templates.dtype == np.float32
    assert np.allclose(np.linalg.norm(ext.templates, axis=1), 1, atol=1e-5)
    assert (EIGENFACE / "model.onnx").stat().st_size < 20 * 2**20


def test_the_protocol_and_the_report(dataset) -> None:
    rep = run_benchmark(samples_from_dataset(dataset), Matcher(EIGENFACE))
    p = rep["protocol"]
    assert (p["enrolments"], p["probes"], p["genuine_pairs"]) == (80, 160, 160)
    assert p["impostor_pairs"] == 80 * 160 - 160
    assert rep["eer"]["value"] < 0.35  # far better than chance on held-out identities
    fnmr = [x["fnmr"] for x in rep["operating_points"]]
    assert fnmr == sorted(fnmr)  # a stricter FMR costs more false non-matches
    for x in rep["operating_points"][:2]:
        lo, hi = x["fnmr_ci95_bootstrap"]
        assert lo <= x["fnmr"] <= hi and hi - lo < 0.5
    est = [x["estimable"] for x in rep["operating_points"]]
    assert est == [True, True, False, False, False]  # 12,640 impostors: rule of three
    for key in ("nationality", "sex", "age_band"):
        groups = rep["groups_at_fmr"][key]["groups"]
        assert sum(g["genuine_pairs"] for g in groups.values()) == 160
    assert 0.5 < rep["auc"] <= 1 and rep["d_prime"] > 0


def test_wilson_interval() -> None:
    lo, hi = wilson(10, 100)
    assert lo == pytest.approx(0.0552, abs=1e-3) and hi == pytest.approx(0.1744, abs=1e-3)
    assert wilson(0, 50)[0] == 0.0


def _model_dir(tmp: Path, model: onnx.ModelProto, spec: dict) -> Path:
    tmp.mkdir()
    onnx.save(model, tmp / "model.onnx")
    (tmp / "model.json").write_text(json.dumps(spec))
    return tmp


def test_output_that_contradicts_model_json(dataset, tmp_path) -> None:
    d = _model_dir(tmp_path / "m", build_model(dim=16), model_json(dim=32))
    s = samples_from_dataset(dataset)[:4]
    with pytest.raises(BadInputError, match=r"contradicts model\.json"):
        Matcher(d).extract([x.image for x in s], [x.landmarks for x in s])


def test_nan_templates_are_an_error(dataset, tmp_path) -> None:
    model = build_model(dim=16)
    w = onnx.numpy_helper.to_array(model.graph.initializer[0]).copy()
    w[0, 0] = np.nan
    model.graph.initializer[0].CopyFrom(onnx.numpy_helper.from_array(w, "W"))
    d = _model_dir(tmp_path / "m", model, model_json(dim=16))
    s = samples_from_dataset(dataset)[:4]
    with pytest.raises(BadInputError, match="NaN"):
        Matcher(d).extract([x.image for x in s], [x.landmarks for x in s])


def test_no_genuine_pairs_exits_2(tmp_path) -> None:
    ds = tmp_path / "ds"
    write_dataset(SynthConfig(identities=5, captures=0, seed=1), ds, workers=1)
    p = subprocess.run(
        [
            sys.executable,
            "-m",
            "lab.cli",
            "bench",
            "--dataset",
            str(ds),
            "--model",
            str(EIGENFACE),
            "--out",
            str(tmp_path / "r"),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert p.returncode == 2 and "no genuine pairs" in p.stderr
    assert "Traceback" not in p.stderr


def test_cli_writes_the_report(dataset, tmp_path) -> None:
    p = subprocess.run(
        [
            sys.executable,
            "-m",
            "lab.cli",
            "bench",
            "--dataset",
            str(dataset),
            "--model",
            str(EIGENFACE),
            "--out",
            str(tmp_path / "r"),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert p.returncode == 0, p.stderr
    assert "EER" in p.stdout
    rep = json.loads((tmp_path / "r" / "report.json").read_text())
    assert rep["model"]["name"] == "eigenface"
    for f in ("det.png", "scores.png"):
        assert (tmp_path / "r" / f).read_bytes()[:4] == b"\x89PNG"
    page = (tmp_path / "r" / "report.html").read_text()
    assert "FNMR at fixed FMR" in page and "data:image/png;base64," in page


def test_subsets_and_group_rates(dataset) -> None:
    rep = run_benchmark(samples_from_dataset(dataset), Matcher(EIGENFACE))
    sub = rep["impostor_subsets"]
    assert set(sub) == {"same_nationality", "same_sex", "same_age_band"}
    assert 0 < sub["same_sex"]["impostor_pairs"] < rep["protocol"]["impostor_pairs"]
    sex = rep["groups_at_fmr"]["sex"]["groups"]
    assert sum(g["impostor_pairs"] for g in sex.values()) == sub["same_sex"]["impostor_pairs"]


def test_bench_inside_the_lab(tmp_path) -> None:
    """Records through the vault, a model through the import gate, the report to the
    tenant's outbox, the run in the audit log."""
    import shutil

    from lab.bench.lab_run import bench_in_lab, outbox
    from lab.gates.importing.ops import import_model
    from lab.labdir import audit_writer, open_lab, unlock
    from lab.vault import ops
    from tests.audit_helpers import PASS, make_lab
    from tests.import_helpers import configure, make_keys, sign_and_approve

    lab = make_lab(tmp_path / "lab")
    keys = make_keys(tmp_path / "keys")
    configure(lab.paths.root, keys)
    lab = open_lab(lab.paths.root)
    ds = tmp_path / "ds"
    write_dataset(SynthConfig(identities=120, captures=2, seed=77), ds, workers=1)
    pkg = tmp_path / "pkg"
    shutil.copytree(EIGENFACE, pkg, ignore=shutil.ignore_patterns("*.py", "*.md"))
    sign_and_approve(pkg, keys)
    root = unlock(lab, PASS)
    with audit_writer(lab, root) as log:
        ops.ingest(lab, root, "acme", ds, "tester", log)
        assert import_model(lab, "acme", pkg, "tester", log).accepted
        report, page = bench_in_lab(
            lab, root, "acme", "eigenface@1.0.0", "tester", log, split="train"
        )
    with ops.open_vault(lab, root) as v:
        subjects = {r.subject for r in v.records("acme", "train")}
    assert report["protocol"]["genuine_pairs"] == 2 * len(subjects)  # two gate captures each
    assert page.parent.parent == outbox(lab, "acme") and page.exists()
    entries = (lab.paths.audit / "entries.jsonl").read_text()
    # a confined job, not a run in the operator's process
    assert '"job.start"' in entries and '"job.finish"' in entries and '"vault.read"' in entries
    with audit_writer(lab, root) as log, pytest.raises(BadInputError, match="not registered"):
        bench_in_lab(lab, root, "acme", "nosuch@1", "tester", log)


def test_the_dlib_reference_matcher(dataset) -> None:
    pytest.importorskip("face_recognition_models")
    from lab.bench._dlib import DlibMatcher

    samples = samples_from_dataset(dataset)[:60]  # 20 subjects: dlib takes ~0.1 s a face
    rep = run_benchmark(samples, DlibMatcher())
    assert rep["model"]["name"] == "dlib-resnet" and rep["protocol"]["genuine_pairs"] == 40
    assert rep["eer"]["value"] < 0.35


def test_a_second_passport_is_not_scored_as_an_impostor(dataset) -> None:
    import dataclasses

    samples = samples_from_dataset(dataset)
    extra = [dataclasses.replace(s) for s in samples if s.kind == "passport"][:5]
    rep = run_benchmark(samples + extra, Matcher(EIGENFACE))
    assert rep["protocol"]["enrolments"] == 80
    assert rep["protocol"]["passport_images_not_enrolled"] == 5
    assert rep["protocol"]["impostor_pairs"] == 80 * 160 - 160


@pytest.mark.parametrize("layout,channels", [("NHWC", "BGR"), ("NCHW", "RGB"), ("NHWC", "GRAY")])
def test_layouts_and_channel_orders_from_model_json(dataset, tmp_path, layout, channels):
    """An ArcFace-style 112x112 model, or any layout/channel order model.json declares."""
    from onnx import TensorProto, helper, numpy_helper

    c = 1 if channels == "GRAY" else 3
    shape = ["N", 112, 112, c] if layout == "NHWC" else ["N", c, 112, 112]
    axes = [1, 2] if layout == "NHWC" else [2, 3]
    w = numpy_helper.from_array(np.arange(c * 8, dtype=np.float32).reshape(c, 8) + 1, "W")
    g = helper.make_graph(
        [
            helper.make_node("ReduceMean", ["x"], ["m"], axes=axes, keepdims=0),
            helper.make_node("MatMul", ["m", "W"], ["y"]),
        ],
        "t",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 8])],
        [w],
    )
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    spec = {
        "name": "t",
        "version": "1",
        "input": {
            "size": [112, 112],
            "layout": layout,
            "channels": channels,
            "mean": 127.5,
            "std": 128.0,
        },
        "output": {"dim": 8},
        "similarity": "cosine",
    }
    m = Matcher(_model_dir(tmp_path / "m", model, spec))
    s = samples_from_dataset(dataset)[:3]
    x = m.preprocess([s[0].image])
    assert x.shape == ((1, 112, 112, c) if layout == "NHWC" else (1, c, 112, 112))
    if channels == "BGR":  # channel order reversed before normalisation
        assert np.allclose(x[0, 5, 5, 0], (s[0].image[5, 5, 2] - 127.5) / 128)
    ext = m.extract([t.image for t in s], [t.landmarks for t in s])
    assert ext.templates.shape == (3, 8)


def test_cuda_without_a_gpu_says_so_and_uses_the_cpu() -> None:
    import onnxruntime as ort

    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("a CUDA provider is present here")
    said = []
    m = Matcher(EIGENFACE, "cuda", warn=said.append)
    assert said and "using the CPU" in said[0]
    assert m.session.get_providers() == ["CPUExecutionProvider"]
    with pytest.raises(BadInputError, match="--device"):
        Matcher(EIGENFACE, "tpu")
