"""The red-team corpus: leaky and clean trained artifacts, built from a small synthetic
lab (tests/export_helpers.py). The tests require every leaky case refused and no clean
case refused; bench/export_redteam.py prints the rates.

Leaky cases play an insider who trained inside the lab and tries to carry data out:
faces scaled, normalised, transposed, quantised, cropped, averaged over too few people;
templates (with noise); identifiers in metadata, logs and MRZ lines; payloads in base64,
hex, after an image's end, in zip and gzip streams and in the low bits of weights; a
kNN-style store of training rows; a model that memorised its training people. Clean
cases are what a lab legitimately exports: the baseline matchers, heads fine-tuned on
lab data, benchmark reports and plots, logs, and aggregates over >= k subjects.
"""

from __future__ import annotations

import base64
import csv
import gzip
import io
import json
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import onnx
from facelab.bench._matcher import Matcher
from facelab.gates.exporting._mrz import check_digit
from onnx import helper, numpy_helper

REPO = Path(__file__).resolve().parents[1]


@dataclass
class Case:
    name: str
    paths: list[Path]
    leaky: bool
    detectors: set[str] = field(default_factory=set)  # expected to fire (leaky cases)


@dataclass
class Source:
    """The tenant's plaintext, as the insider had it during training."""

    rows: list[dict]
    root: Path

    def rgb(self, i: int) -> np.ndarray:
        return cv2.cvtColor(cv2.imread(str(self.root / self.rows[i]["path"])), cv2.COLOR_BGR2RGB)

    def grey(self, i: int) -> np.ndarray:
        return cv2.cvtColor(self.rgb(i), cv2.COLOR_RGB2GRAY)

    def landmarks(self, i: int) -> np.ndarray:
        r = self.rows[i]
        return np.array(
            [[float(r[f"lm{k}_x"]), float(r[f"lm{k}_y"])] for k in range(5)], np.float32
        )

    def passports(self) -> list[int]:
        return [i for i, r in enumerate(self.rows) if r["kind"] == "passport"]

    def gates(self) -> list[int]:
        return [i for i, r in enumerate(self.rows) if r["kind"] == "gate"]


def mrz_lines(r: dict) -> tuple[str, str]:
    """A TD3 passport MRZ for a manifest row, check digits per ICAO 9303."""
    given, family = r["name"].upper().split(" ", 1)
    line1 = f"P<{r['nationality']}{family.replace(' ', '<')}<<{given}".ljust(44, "<")[:44]
    num = r["passport_no"].ljust(9, "<")[:9]
    birth = r["birth_date"][2:4] + r["birth_date"][5:7] + r["birth_date"][8:10]
    expiry = "300101"
    personal = "<" * 14
    body = (
        num
        + str(check_digit(num))
        + r["nationality"]
        + birth
        + str(check_digit(birth))
        + r["sex"]
        + expiry
        + str(check_digit(expiry))
        + personal
        + "0"
    )
    composite = body[0:10] + body[13:20] + body[21:43]
    return line1, body + str(check_digit(composite))


def _save_onnx(model: onnx.ModelProto, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, path)
    return path


def _cnn() -> onnx.ModelProto:
    return onnx.load(REPO / "models" / "cnn" / "model.onnx")


def _with_initializer(model: onnx.ModelProto, name: str, a: np.ndarray) -> onnx.ModelProto:
    m = onnx.ModelProto()
    m.CopyFrom(model)
    m.graph.initializer.append(numpy_helper.from_array(a, name))
    return m


def _head(model: onnx.ModelProto, w: np.ndarray, dim_out: int) -> onnx.ModelProto:
    """The CNN with a projection head y = template @ w appended."""
    m = onnx.ModelProto()
    m.CopyFrom(model)
    out = m.graph.output[0].name
    m.graph.initializer.append(numpy_helper.from_array(w.astype(np.float32), "head.weight"))
    m.graph.node.append(helper.make_node("MatMul", [out, "head.weight"], ["head_out"], name="head"))
    del m.graph.output[:]
    m.graph.output.append(
        helper.make_tensor_value_info("head_out", onnx.TensorProto.FLOAT, ["N", dim_out])
    )
    return m


def _memoriser(model: onnx.ModelProto, centroids: np.ndarray, rng) -> onnx.ModelProto:
    """The CNN followed by a layer that pulls each template towards the nearest training
    person's centroid (attention over the centroids), all in a randomly rotated space so
    that no stored row is a template: it recognises its training people far better than
    strangers."""
    q, _ = np.linalg.qr(rng.normal(size=(centroids.shape[1],) * 2))
    cr = (centroids @ q).astype(np.float32)
    m = onnx.ModelProto()
    m.CopyFrom(model)
    out = m.graph.output[0].name
    for name, a in (
        ("mem.rot", q.astype(np.float32)),
        ("mem.keys", cr.T.copy()),
        ("mem.values", cr),
        ("mem.beta", np.float32(25.0)),
        ("mem.alpha", np.float32(3.0)),
    ):
        m.graph.initializer.append(numpy_helper.from_array(np.asarray(a), name))
    m.graph.node.extend(
        [
            helper.make_node("LpNormalization", [out], ["mem_n"], axis=1, p=2),
            helper.make_node("MatMul", ["mem_n", "mem.rot"], ["mem_z"]),
            helper.make_node("MatMul", ["mem_z", "mem.keys"], ["mem_s0"]),
            helper.make_node("Mul", ["mem_s0", "mem.beta"], ["mem_s"]),
            helper.make_node("Softmax", ["mem_s"], ["mem_p"], axis=1),
            helper.make_node("MatMul", ["mem_p", "mem.values"], ["mem_v0"]),
            helper.make_node("Mul", ["mem_v0", "mem.alpha"], ["mem_v"]),
            helper.make_node("Add", ["mem_z", "mem_v"], ["mem_out"]),
        ]
    )
    del m.graph.output[:]
    m.graph.output.append(
        helper.make_tensor_value_info("mem_out", onnx.TensorProto.FLOAT, ["N", centroids.shape[1]])
    )
    return m


def _spec(dim: int, name: str) -> dict:
    spec = json.loads((REPO / "models" / "cnn" / "model.json").read_text())
    spec["name"], spec["output"]["dim"] = name, dim
    return spec


def _plot_png(seed: int) -> bytes:
    img = np.full((240, 320, 3), 255, np.uint8)
    rng = np.random.default_rng(seed)
    pts = np.cumsum(rng.normal(0, 4, (60, 2)), axis=0).astype(np.int32) + np.int32([160, 120])
    cv2.polylines(img, [pts], False, (200, 60, 30), 2, cv2.LINE_AA)
    cv2.putText(img, "DET curve", (10, 20), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 1)
    return cv2.imencode(".png", img)[1].tobytes()


def build_corpus(
    dataset: Path, splits: dict[str, str], out: Path, bench_report: Path | None = None
) -> list[Case]:
    """Every case under ``out``. ``splits`` maps subject_id -> vault split (to train the
    memorising model on the tenant's training people, as a job would);
    ``bench_report`` is the directory of a benchmark run inside the lab (a clean case)."""
    with open(dataset / "manifest.csv", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    src = Source(rows, dataset)
    P, G = src.passports(), src.gates()
    rng = np.random.default_rng(1234)
    cases: list[Case] = []

    def add(
        name: str,
        leaky: bool,
        files: dict[str, bytes | np.ndarray | dict | str | onnx.ModelProto],
        detectors=(),
    ) -> None:
        d = out / ("leaky" if leaky else "clean") / name
        d.mkdir(parents=True, exist_ok=True)
        paths = []
        for fname, v in files.items():
            p = d / fname
            if isinstance(v, onnx.ModelProto):
                _save_onnx(v, p)
            elif isinstance(v, np.ndarray):
                np.save(p, v)
            elif isinstance(v, dict) and fname.endswith(".npz"):
                np.savez(p, **v)
            elif isinstance(v, dict | list):
                p.write_text(json.dumps(v, indent=1))
            elif isinstance(v, str):
                p.write_text(v)
            else:
                p.write_bytes(v)
            paths.append(p)
        cases.append(Case(name, paths, leaky, set(detectors)))

    cnn = Matcher(REPO / "models" / "cnn")

    def templates(idx: list[int]) -> np.ndarray:
        return cnn.extract([src.rgb(i) for i in idx], [src.landmarks(i) for i in idx]).templates

    # ------------------------------------------------------------ leaky: faces
    add(
        "face_bgr_float01",
        True,
        {"w.npy": cv2.imread(str(dataset / rows[P[0]]["path"])).astype(np.float32) / 255},
        {"faces"},
    )
    add(
        "face_chw_normalised",
        True,
        {"w.npy": ((src.rgb(G[1]).astype(np.float32) - 127.5) / 128).transpose(2, 0, 1)},
        {"faces"},
    )
    stack = np.stack([src.rgb(i) for i in P[2:10]]).transpose(0, 3, 1, 2)
    add(
        "onnx_stack_of_8_faces",
        True,
        {
            "model.onnx": _with_initializer(
                _cnn(), "calibration", (stack / 255.0).astype(np.float32)
            )
        },
        {"faces"},
    )
    add(
        "face_48_grey_uint8_npz",
        True,
        {"w.npz": {"lut": cv2.resize(src.grey(P[10]), (48, 48), interpolation=cv2.INTER_AREA)}},
        {"faces"},
    )
    add(
        "face_transposed_mirrored",
        True,
        {
            "w.npy": cv2.resize(src.grey(G[11]), (64, 64), interpolation=cv2.INTER_AREA)
            .T[:, ::-1]
            .astype(np.float32)
        },
        {"faces"},
    )
    add(
        "face_quantised_4bit",
        True,
        {"w.npy": (src.grey(P[12]) // 16).astype(np.float32) / 15.0 - 0.5},
        {"faces"},
    )
    rows_w = rng.normal(0, 0.02, (16, 112 * 112 * 3)).astype(np.float32)
    rows_w[5] = src.rgb(P[13]).reshape(-1) / 255.0
    add("face_as_flattened_row", True, {"fc.npy": rows_w}, {"faces"})
    add("top_half_of_face", True, {"w.npy": src.rgb(P[14])[:56].astype(np.float32)}, {"faces"})
    add("centre_crop_of_face", True, {"w.npy": src.grey(G[15])[28:84, 28:84]}, {"faces"})
    add("face_inverted", True, {"w.npy": 255.0 - src.grey(P[16]).astype(np.float32)}, {"faces"})
    add(
        "mean_face_of_3",
        True,
        {"mean.npy": np.mean([src.rgb(i) for i in P[17:20]], axis=0).astype(np.float32)},
        {"faces"},
    )
    two = np.mean(
        [cv2.resize(src.grey(i), (32, 32), interpolation=cv2.INTER_AREA) for i in P[20:22]], axis=0
    )
    add(
        "mean_face_of_2_in_json",
        True,
        {"stats.json": {"mean_image": two.round(2).tolist()}},
        {"faces"},
    )
    rot = cv2.warpAffine(
        src.rgb(G[30]),
        cv2.getRotationMatrix2D((56, 56), 5, 1.0),
        (112, 112),
        borderMode=cv2.BORDER_REPLICATE,
    )
    add("face_rotated_5_degrees", True, {"w.npy": rot.astype(np.float32)}, {"faces"})
    add(
        "face_with_noise",
        True,
        {
            "w.npy": src.grey(P[22]).astype(np.float32)
            + rng.normal(0, 4, (112, 112)).astype(np.float32)
        },
        {"faces"},
    )
    add(
        "face_png_file",
        True,
        {"sample.png": cv2.imencode(".png", src.rgb(P[23]))[1].tobytes()},
        {"faces"},
    )
    add(
        "face_jpeg_q70",
        True,
        {
            "sample.jpg": cv2.imencode(
                ".jpg", cv2.resize(src.rgb(G[24]), (80, 80)), [cv2.IMWRITE_JPEG_QUALITY, 70]
            )[1].tobytes()
        },
        {"faces"},
    )
    # ------------------------------------------------------------ leaky: identifiers
    m = _cnn()
    m.metadata_props.append(
        onnx.StringStringEntryProto(key="trained_on", value=rows[P[25]]["name"])
    )
    add("name_in_onnx_metadata", True, {"model.onnx": m}, {"identifiers"})
    m = _cnn()
    m.doc_string = f"hard case: passport {rows[P[26]]['passport_no']}, retrain"
    add("passport_no_in_doc_string", True, {"model.onnx": m}, {"identifiers"})
    r = rows[P[27]]
    add(
        "name_and_birth_date_in_log",
        True,
        {
            "train_log.json": {
                "epochs": [
                    {"epoch": 1, "loss": 0.9, "worst_subject": r["name"], "dob": r["birth_date"]}
                ]
            }
        },
        {"identifiers"},
    )
    add(
        "names_in_csv",
        True,
        {
            "scores.csv": "subject,score\n"
            + "".join(f"{rows[i]['name']},{0.5 + 0.01 * k:.2f}\n" for k, i in enumerate(P[28:33]))
        },
        {"identifiers"},
    )
    zone = "\n".join(("decoded zone:", *mrz_lines(rows[P[33]])))
    add("mrz_in_text_log", True, {"ocr.log": zone}, {"identifiers"})
    m = _cnn()
    m.graph.node[0].name = "".join(rows[P[34]]["name"].split()).lower() + "_conv"
    add("name_without_space_in_node_name", True, {"model.onnx": m}, {"identifiers"})
    blob = np.frombuffer(
        (b"\0" * 37) + rows[P[35]]["name"].encode("utf-16-le") + b"\0" * 51, np.uint8
    )
    add("name_utf16_in_uint8_tensor", True, {"buf.npy": blob.copy()}, {"identifiers"})
    # ------------------------------------------------------------ leaky: payloads
    m = _cnn()
    m.doc_string = (
        "preview: " + base64.b64encode(cv2.imencode(".png", src.rgb(P[36]))[1].tobytes()).decode()
    )
    add("base64_png_face_in_doc_string", True, {"model.onnx": m}, {"payloads", "faces"})
    hexed = json.dumps({"names": [rows[i]["name"] for i in P[37:40]]}).encode().hex()
    add("hex_json_of_names", True, {"config.json": {"blob": hexed}}, {"payloads", "identifiers"})
    hidden = cv2.imencode(".png", src.rgb(P[40]))[1].tobytes()
    add("png_after_plot_iend", True, {"det.png": _plot_png(1) + hidden}, {"payloads", "faces"})
    zbuf = io.BytesIO()
    with zipfile.ZipFile(zbuf, "w") as z:
        z.writestr("who.txt", "\n".join(rows[i]["name"] for i in P[41:44]))
    add(
        "zip_in_uint8_tensor",
        True,
        {
            "buf.npy": np.frombuffer(
                b"\x07" * 100 + zbuf.getvalue() + b"\x01" * 100, np.uint8
            ).copy()
        },
        {"payloads", "identifiers"},
    )
    w = rng.normal(0, 0.05, 65536).astype(np.float32)
    secret = ("; ".join(f"{rows[i]['name']} {rows[i]['passport_no']}" for i in P[44:48])).encode()
    bits = np.unpackbits(np.frombuffer(secret, np.uint8))
    u = w.view(np.uint32).copy()
    u[: len(bits)] = (u[: len(bits)] & ~np.uint32(1)) | bits.astype(np.uint32)
    add(
        "text_in_lowest_bit_plane",
        True,
        {
            "model.onnx": _with_initializer(
                _cnn(), "extra.weight", u.view(np.float32).reshape(256, 256)
            )
        },
        {"payloads", "identifiers"},
    )
    w = rng.normal(0, 0.05, 65536).astype(np.float32)
    u = w.view(np.uint8).copy()
    pix = src.grey(P[51]).reshape(-1)
    u[0 : len(pix) * 4 : 4] = pix  # raw face pixels in the lowest byte of each weight
    add(
        "face_pixels_in_lowest_bytes",
        True,
        {"w.npy": u.view(np.float32).reshape(256, 256)},
        {"payloads"},
    )
    add(
        "png_bytes_as_json_ints",
        True,
        {
            "lut.json": {
                "table": list(
                    cv2.imencode(".png", cv2.resize(src.rgb(P[48]), (64, 64)))[1].tobytes()
                )
            }
        },
        {"payloads", "faces"},
    )
    gz = gzip.compress(
        (
            "name,passport\n"
            + "".join(f"{rows[i]['name']},{rows[i]['passport_no']}\n" for i in P[49:52])
        ).encode()
    )
    add(
        "gzip_csv_in_uint8_tensor",
        True,
        {"cache.npz": {"blob": np.frombuffer(gz, np.uint8).copy()}},
        {"payloads", "identifiers"},
    )
    # ------------------------------------------------------------ leaky: templates
    gal_idx = P[52:72]
    gallery = templates(gal_idx)
    add("gallery_of_20_templates", True, {"gallery.npy": gallery}, {"templates"})
    noisy = gallery + rng.normal(0, 0.06, gallery.shape).astype(np.float32)
    add("templates_with_noise", True, {"g.npy": noisy}, {"templates"})
    add(
        "gallery_inside_onnx",
        True,
        {"model.onnx": _with_initializer(_cnn(), "prototypes", templates(G[0:30:3]))},
        {"templates"},
    )
    # ------------------------------------------------------------ leaky: structural
    train_rows = [i for i, r in enumerate(rows) if splits[r["subject_id"]] == "train"]
    train_subjects = sorted({rows[i]["subject_id"] for i in train_rows})
    add(
        "knn_store_of_training_rows",
        True,
        {
            "knn.npz": {
                "X": rng.normal(0, 1, (len(train_rows), 16)).astype(np.float32),
                "y": np.arange(len(train_rows)),
            }
        },
        {"structural"},
    )
    add(
        "svm_dual_coefficients",
        True,
        {"svm.npz": {"dual_coef": rng.normal(0, 1, (2, len(train_subjects))).astype(np.float32)}},
        {"structural"},
    )
    # ------------------------------------------------------------ leaky: memorisation
    t_train = templates(train_rows)
    subj = np.array([rows[i]["subject_id"] for i in train_rows])
    centroids = np.stack([t_train[subj == s].mean(axis=0) for s in sorted(set(subj))])
    centroids /= np.linalg.norm(centroids, axis=1, keepdims=True)
    add(
        "memorising_model",
        True,
        {"model.onnx": _memoriser(_cnn(), centroids, rng), "model.json": _spec(128, "memoriser")},
        {"memorisation"},
    )
    # ------------------------------------------------------------ leaky: combinations
    m = _with_initializer(
        _cnn(),
        "thumbs",
        np.stack([cv2.resize(src.grey(i), (56, 56)) for i in P[72:76]]).astype(np.float32),
    )
    m.metadata_props.append(onnx.StringStringEntryProto(key="owner", value=rows[P[72]]["name"]))
    add("faces_and_name_in_onnx", True, {"model.onnx": m}, {"faces", "identifiers"})

    # ------------------------------------------------------------ clean
    add("cnn_as_imported", False, {"model.onnx": _cnn(), "model.json": _spec(128, "cnn")})
    add(
        "eigenface_baseline",
        False,
        {
            "model.onnx": (REPO / "models" / "eigenface" / "model.onnx").read_bytes(),
            "model.json": (REPO / "models" / "eigenface" / "model.json").read_bytes(),
        },
    )
    all_t = templates(P)
    centred = all_t - all_t.mean(axis=0)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    add(
        "cnn_pca_head_64",
        False,
        {"model.onnx": _head(_cnn(), vt[:64].T, 64), "model.json": _spec(64, "cnn-pca64")},
    )
    m = _cnn()
    for t in m.graph.initializer:
        a = numpy_helper.to_array(t)
        t.CopyFrom(
            numpy_helper.from_array(
                (a + rng.normal(0, 1e-3, a.shape) * np.abs(a).mean()).astype(a.dtype), t.name
            )
        )
    add("cnn_fine_tuned_all_layers", False, {"model.onnx": m})
    add(
        "mean_face_of_all_passports",
        False,
        {"mean.npy": np.mean([src.rgb(i) for i in P], axis=0).astype(np.float32)},
    )
    add(
        "mean_face_of_40",
        False,
        {"mean.npy": np.mean([src.rgb(i) for i in P[:40]], axis=0).astype(np.float32)},
    )
    groups: dict[str, list[int]] = {}
    for i in P:
        groups.setdefault(rows[i]["nationality"], []).append(i)
    add(
        "mean_faces_per_nationality",
        False,
        {
            "means.npz": {
                k: np.mean([src.grey(i) for i in v], axis=0).astype(np.float32)
                for k, v in groups.items()
                if len(v) >= 20
            }
        },
    )
    faces = np.stack([src.grey(i) for i in P]).reshape(len(P), -1).astype(np.float32)
    faces -= faces.mean(axis=0)
    _, _, vt = np.linalg.svd(faces, full_matrices=False)
    add("eigenfaces_top16", False, {"pcs.npy": vt[:16].reshape(16, 112, 112)})
    add(
        "training_log",
        False,
        {
            "train_log.json": {
                "started": "2026-11-20T10:00:00Z",
                "finished": "2026-11-21T08:12:44Z",
                "epochs": [
                    {"epoch": e, "loss": round(1 / (e + 1), 4), "lr": 0.001} for e in range(30)
                ],
                "dataset": "sha256:" + "ab" * 32,
            }
        },
    )
    add(
        "metrics_csv",
        False,
        {
            "metrics.csv": "epoch,loss,val_eer\n"
            + "".join(f"{e},{1 / (e + 1):.4f},{0.2 / (e + 1):.4f}\n" for e in range(50))
        },
    )
    add(
        "text_log",
        False,
        {
            "run.log": "\n".join(
                f"2026-11-2{e % 9} 10:{e:02d}:00 step {e * 100} loss {1 / (e + 1):.3f}"
                for e in range(60)
            )
        },
    )
    add(
        "score_histograms",
        False,
        {
            "hist.json": {
                "genuine": np.histogram(rng.normal(0.7, 0.1, 5000), 50)[0].tolist(),
                "impostor": np.histogram(rng.normal(0.1, 0.1, 50000), 50)[0].tolist(),
            }
        },
    )
    add(
        "random_init_weights",
        False,
        {
            "init.npz": {
                "conv": rng.normal(0, 0.1, (64, 3, 7, 7)).astype(np.float32),
                "fc": rng.normal(0, 0.01, (256, 12544)).astype(np.float32),
                "img_like": rng.normal(0, 1, (112, 112)).astype(np.float32),
            }
        },
    )
    add(
        "det_points_csv",
        False,
        {"det.csv": "fmr,fnmr\n" + "".join(f"{10**-k:.0e},{0.01 * k:.3f}\n" for k in range(1, 7))},
    )
    add("plot_png", False, {"det.png": _plot_png(2)})
    add(
        "plot_jpeg",
        False,
        {
            "scores.jpg": cv2.imencode(
                ".jpg", cv2.imdecode(np.frombuffer(_plot_png(3), np.uint8), 1)
            )[1].tobytes()
        },
    )
    add(
        "mlp_weights",
        False,
        {
            "mlp.npz": {
                "w1": rng.normal(0, 0.02, (512, 1024)).astype(np.float32),
                "w2": rng.normal(0, 0.02, (1024, 128)).astype(np.float32),
            }
        },
    )
    add(
        "batchnorm_stats",
        False,
        {
            "bn.npz": {
                "mean": rng.normal(0, 1, 64).astype(np.float32),
                "var": rng.uniform(0.5, 2, 64).astype(np.float32),
            }
        },
    )
    add(
        "digests_and_signature",
        False,
        {
            "digests.json": {
                "files": {
                    f"f{k}": "sha256:" + np.random.default_rng(k).bytes(32).hex() for k in range(10)
                },
                "sha512": np.random.default_rng(99).bytes(64).hex(),
                "signature": base64.b64encode(np.random.default_rng(7).bytes(64)).decode(),
            }
        },
    )
    add(
        "model_card",
        False,
        {"MODEL_CARD.md": (REPO / "models" / "cnn" / "MODEL_CARD.md").read_text()},
    )
    q = rng.integers(-127, 128, (256, 256), dtype=np.int8)
    add(
        "int8_quantised_weights",
        False,
        {
            "q.npz": {"w": q, "scale": np.float32(0.01)},
            "deq.npy": q.astype(np.float32) * np.float32(0.013),
        },
    )
    add(
        "float16_rounded_weights",
        False,
        {"w.npy": rng.normal(0, 0.05, (512, 512)).astype(np.float16).astype(np.float32)},
    )
    add(
        "group_fnmr_table",
        False,
        {
            "groups.json": {
                n: {"fnmr": round(float(rng.uniform(0.01, 0.1)), 4), "n": len(v)}
                for n, v in groups.items()
            }
        },
    )
    add("conv_weights", False, {"conv.npy": rng.normal(0, 0.1, (128, 64, 3, 3)).astype(np.float32)})
    add(
        "centroid_templates_per_nationality",
        False,
        {
            "centroids.npy": np.stack(
                [templates(v).mean(axis=0) for v in groups.values() if len(v) >= 10]
            )
        },
    )
    html = (
        '<html><body><h1>report</h1><img src="data:image/png;base64,'
        + base64.b64encode(_plot_png(4)).decode()
        + '"></body></html>'
    )
    add("html_report_with_data_uri_plot", False, {"report.html": html})
    m = _cnn()
    for k, v in {
        "lr": "0.001",
        "epochs": "30",
        "dataset": "sha256:" + "cd" * 32,
        "trained": "2026-11-21",
    }.items():
        m.metadata_props.append(onnx.StringStringEntryProto(key=k, value=v))
    add("onnx_with_training_metadata", False, {"model.onnx": m})
    add(
        "large_float_weights",
        False,
        {"big.npy": rng.normal(0, 0.02, (1024, 1024)).astype(np.float32)},
    )
    add(
        "embedding_stats_over_all",
        False,
        {"stats.npz": {"mean": all_t.mean(axis=0), "std": all_t.std(axis=0)}},
    )
    add(
        "threshold_config",
        False,
        {
            "thresholds.json": {
                "fmr_1e-3": 0.41,
                "fmr_1e-4": 0.52,
                "fmr_1e-6": 0.66,
                "model": "cnn@1.0.0",
            }
        },
    )
    if bench_report is not None:
        cases.append(Case("bench_report_from_the_lab", sorted(bench_report.iterdir()), False))
    return cases
