"""Export gate against the red-team corpus: detection rate and false-refusal rate.

Usage: python bench/export_redteam.py [--identities 150] [--work DIR]

Builds the small synthetic lab and the corpus of tests/export_corpus.py (36 leaky, 30
clean artifact sets), scans each, and prints one line per case and the rates. Baseline in
the same run: a naive gate that refuses a file holding a vault image's PNG bytes, a
name or a passport number verbatim (what a byte-level DLP rule would do).
Targets (issue 7): every leaky artifact refused, no clean one refused.

The scan checks attestation as ``facelab export`` does under the default policy (issue
20): a model no training job of the tenant wrote is refused (``attestation``), so the
corpus's hand-made models, clean ones included, are refused by design; a clean case made
by a real training job (``pca_head``) is added. The row "detectors alone" is the same
scans without the attestation findings (``models_require_attestation = false``).
"""

from __future__ import annotations

import argparse
import csv
import shutil
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.export_corpus import build_corpus
from tests.export_helpers import Scanner, bench_outbox, build_export_lab, subject_splits


def naive_refuses(paths: list[Path], needles: list[bytes]) -> bool:
    for p in paths:
        data = p.read_bytes()
        if any(n in data for n in needles):
            return True
    return False


TRANSFORMS = {
    "exact copy, float /255": lambda a: a.astype(np.float32) / 255,
    "Gaussian noise sigma 20": lambda a: a + RNG.normal(0, 20, a.shape),
    "JPEG quality 30": lambda a: cv2.imdecode(
        cv2.imencode(".jpg", a.astype(np.uint8), [cv2.IMWRITE_JPEG_QUALITY, 30])[1], 1
    ).astype(np.float32),
    "downscaled to 24 px": lambda a: cv2.resize(a, (24, 24), interpolation=cv2.INTER_AREA),
    "blurred sigma 3": lambda a: cv2.GaussianBlur(a, (0, 0), 3),
    "gamma 2.2": lambda a: 255 * (a / 255.0) ** 2.2,
    "rotated 90 (np.rot90)": lambda a: np.rot90(a).copy(),
    "rotated 5 degrees": lambda a: cv2.warpAffine(
        a, cv2.getRotationMatrix2D((56, 56), 5, 1.0), (112, 112), borderMode=cv2.BORDER_REPLICATE
    ),
    "bottom half": lambda a: a[56:],
    "cropped to 100 px (6 px margin)": lambda a: a[6:106, 6:106],
    "shifted 8 px (rolled)": lambda a: np.roll(a, 8, axis=1),
    "cropped to 90 px": lambda a: a[11:101, 11:101],
    "eye band (rows 30-70)": lambda a: a[30:70],
    "converted to HSV": lambda a: cv2.cvtColor(a.astype(np.uint8), cv2.COLOR_RGB2HSV),
}
RNG = np.random.default_rng(5)


def robustness(scanner: Scanner, el, rows: list[dict], every: int = 23) -> None:
    """How often the faces detector finds one vault image under each transform."""
    from facelab.gates.exporting._types import Artifact, ScanContext
    from facelab.gates.exporting.detectors import faces

    ctx = ScanContext(el.lab.policy.exporting, el.tenant, scanner.index)
    picked = rows[::every]
    print(f"\nfaces detector robustness ({len(picked)} vault images each)")
    print(f"{'transform':<34} {'found':>9}")
    for name, f in TRANSFORMS.items():
        found = 0
        for r in picked:
            a = cv2.cvtColor(cv2.imread(str(el.dataset / r["path"])), cv2.COLOR_BGR2RGB)
            art = Artifact("x.npy", "npy", b"", tensors=[("array", f(a.astype(np.float32)))])
            found += bool(faces.detect(art, ctx))
        print(f"{name:<34} {found:>4}/{len(picked)}")


def heldout_cases(el, out: Path) -> list[tuple[str, bool, list[Path]]]:
    """Leaky kinds that no test of the gate builds (from the kinds issue 20 lists, built
    anew here) and clean ones: (name, leaky, paths). Built from the tenant's own
    dataset, as an insider with the training split would."""
    import hashlib
    import json
    import zlib

    import onnx
    from facelab.bench._matcher import Matcher
    from onnx import helper, numpy_helper

    with open(el.dataset / "manifest.csv", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    pas = [r for r in rows if r["kind"] == "passport"]

    def grey(r) -> np.ndarray:
        return cv2.imread(str(el.dataset / r["path"]), cv2.IMREAD_GRAYSCALE).astype(np.float32)

    faces = np.stack([grey(r) for r in pas[:40]])
    face = faces[3]
    rng = np.random.default_rng(11)
    cases: list[tuple[str, bool, list[Path]]] = []

    def put(name: str, leaky: bool, files: dict) -> None:
        d = out / name
        d.mkdir(parents=True)
        for fn, v in files.items():
            p = d / fn
            if isinstance(v, np.ndarray):
                np.save(p, v)
            elif isinstance(v, dict):
                with open(p, "wb") as fh:
                    np.savez(fh, **v)
            elif isinstance(v, bytes):
                p.write_bytes(v)
            else:
                p.write_text(v)
        cases.append((name, leaky, [d]))

    # faces in another representation
    put("dct_coefficients_of_a_face", True, {"w.npy": cv2.dct(face / 255.0).astype(np.float32)})
    u, sv, vt = np.linalg.svd(face / 255.0)
    put(
        "low_rank_factors",
        True,
        {"f.npz": {"a": (u[:, :40] * sv[:40]).astype(np.float32), "b": vt[:40].astype(np.float32)}},
    )
    share = rng.normal(0, 1, face.shape).astype(np.float32)
    put("additive_shares", True, {"s.npz": {"s0": share, "s1": face / 255.0 - share}})
    put(
        "residual_from_the_mean_face",
        True,
        {"r.npy": (face - faces.mean(axis=0)).astype(np.float32)},
    )
    thumbs = np.stack([cv2.resize(f, (16, 16), interpolation=cv2.INTER_AREA) for f in faces])
    put("stack_of_16px_thumbnails", True, {"t.npy": thumbs.astype(np.float32)})
    put(
        "zlib_face_in_uint8_npy",
        True,
        {"b.npy": np.frombuffer(zlib.compress(face.astype(np.uint8).tobytes()), np.uint8)},
    )
    key = rng.integers(0, 256, face.size, dtype=np.uint8)
    put(
        "xor_face_key_alongside",
        True,
        {"x.npz": {"data": face.astype(np.uint8).reshape(-1) ^ key, "key": key}},
    )
    # identifiers
    put(
        "sha256_of_passport_numbers",
        True,
        {
            "ids.txt": "\n".join(
                hashlib.sha256(r["passport_no"].encode()).hexdigest() for r in pas[:30]
            )
            + "\n"
        },
    )
    put(
        "names_as_a_tokenizer_vocabulary",
        True,
        {"vocab.txt": "\n".join(w for r in pas[:30] for w in r["name"].split()) + "\n"},
    )
    # a 1:N identifier: per-identity prototypes under the CNN, scaled, with a bias
    m = Matcher(el.cnn)
    imgs = [cv2.cvtColor(cv2.imread(str(el.dataset / r["path"])), cv2.COLOR_BGR2RGB) for r in pas]
    lms = [
        np.array([[float(r[f"lm{i}_x"]), float(r[f"lm{i}_y"])] for i in range(5)], np.float32)
        for r in pas
    ]
    protos = m.extract(imgs, lms).templates.astype(np.float32)
    g = onnx.load(el.cnn / "model.onnx")
    emb = g.graph.output[0].name
    g.graph.initializer.append(numpy_helper.from_array((3.0 * protos.T).copy(), "cls.w"))
    g.graph.initializer.append(
        numpy_helper.from_array(np.full(len(protos), 0.1, np.float32), "cls.b")
    )
    g.graph.node.append(helper.make_node("MatMul", [emb, "cls.w"], ["z"]))
    g.graph.node.append(helper.make_node("Add", ["z", "cls.b"], ["logits"]))
    del g.graph.output[:]
    g.graph.output.append(
        helper.make_tensor_value_info("logits", onnx.TensorProto.FLOAT, ["N", len(protos)])
    )
    spec = json.loads((el.cnn / "model.json").read_text())
    spec["output"]["dim"] = len(protos)
    put(
        "scaled_classifier_head_with_bias",
        True,
        {"model.onnx": g.SerializeToString(), "model.json": json.dumps(spec)},
    )
    # clean
    c = onnx.load(el.cnn / "model.onnx")
    for t in c.graph.initializer[-2:]:
        a = numpy_helper.to_array(t)
        if a.dtype == np.float32:
            t.CopyFrom(
                numpy_helper.from_array(
                    (a + rng.normal(0, 1e-3, a.shape)).astype(np.float32), t.name
                )
            )
    put(
        "cnn_last_layers_fine_tuned",
        False,
        {"model.onnx": c.SerializeToString(), "model.json": (el.cnn / "model.json").read_text()},
    )
    put("metrics_with_val_eer", False, {"m.csv": "epoch,loss,val_eer\n1,0.9,0.2\n2,0.7,0.1\n"})
    from safetensors.numpy import save_file

    d = out / "uniform_init_safetensors"
    d.mkdir()
    save_file(
        {"head.weight": rng.random((256, 64), dtype=np.float32) - 0.5}, str(d / "head.safetensors")
    )
    cases.append(("uniform_init_safetensors", False, [d]))
    put("training_notes", False, {"NOTES.md": "Fine-tuned for 3 epochs at lr 1e-4.\n"})
    return cases


def heldout(work: Path, identities: int) -> None:
    """The held-out table: kinds no test builds, built after the gate was written."""
    el = build_export_lab(work, identities=identities)
    cases = heldout_cases(el, work / "heldout")
    scanner = Scanner(el)
    print(f"{'held-out case':<38} {'truth':<6} {'gate':<9} {'s':>6}  why")
    tally = {True: [0, 0], False: [0, 0]}
    for name, leaky, paths in cases:
        t = time.perf_counter()
        rep = scanner.scan(paths)
        dt = time.perf_counter() - t
        tally[leaky][0] += rep.refused
        tally[leaky][1] += 1
        why = sorted({f.detector for f in rep.blocking()})
        print(
            f"{name:<38} {'leaky' if leaky else 'clean':<6} "
            f"{'refused' if rep.refused else 'released':<9} {dt:>6.1f}  {','.join(why)}"
        )
    scanner.close()
    r, n = tally[True]
    fr, fn = tally[False]
    print(f"held-out: {r}/{n} leaky refused ({r / n:.2f}); {fr}/{fn} clean refused")


def _trained_case(el):
    """A clean case made the way the lab makes models: a ``pca_head`` training job's
    outbox (its model.onnx and model.json, attested by the audit log)."""
    from facelab.jobs.runner import run_job
    from facelab.labdir import audit_writer, unlock

    from tests.export_corpus import Case
    from tests.export_helpers import PASSPHRASE

    spec = {
        "kind": "train",
        "purpose": "train",
        "model": "cnn@1.0.0",
        "trainer": "pca_head",
        "split": "train",
        "params": {"dim": 32},
    }
    root = unlock(el.lab, PASSPHRASE)
    with audit_writer(el.lab, root) as log:
        job = run_job(el.lab, root, el.tenant, spec, "engineer", log)
    return Case(
        "pca_head_from_a_training_job",
        [job.outbox / "model.onnx", job.outbox / "model.json"],
        False,
    )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--identities", type=int, default=150)
    ap.add_argument("--work", type=Path)
    ap.add_argument("--heldout", action="store_true", help="the held-out kinds only")
    args = ap.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="facelab-redteam-"))
    if args.heldout:
        try:
            heldout(work, args.identities)
        finally:
            if args.work is None:
                shutil.rmtree(work, ignore_errors=True)
        return
    try:
        el = build_export_lab(work, identities=args.identities)
        cases = build_corpus(el.dataset, subject_splits(el), work / "corpus", bench_outbox(el))
        cases.append(_trained_case(el))
        with open(el.dataset / "manifest.csv", encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
        needles = [(el.dataset / r["path"]).read_bytes() for r in rows]
        needles += [r["name"].encode() for r in rows] + [r["passport_no"].encode() for r in rows]
        t = time.perf_counter()
        scanner = Scanner(el, attest=True)
        index_s = time.perf_counter() - t
        print(f"{'case':<38} {'truth':<6} {'gate':<9} {'naive':<9} {'s':>5}  detectors")
        tally = {(g, leaky): 0 for g in ("gate", "detectors", "naive") for leaky in (True, False)}
        for c in cases:
            t = time.perf_counter()
            rep = scanner.scan(c.paths)
            dt = time.perf_counter() - t
            naive = naive_refuses(c.paths, needles)
            tally[("gate", c.leaky)] += rep.refused
            tally[("naive", c.leaky)] += naive
            fired = sorted({f.detector for f in rep.blocking()})
            tally[("detectors", c.leaky)] += bool(set(fired) - {"attestation"})
            print(
                f"{c.name:<38} {'leaky' if c.leaky else 'clean':<6} "
                f"{'refused' if rep.refused else 'released':<9} "
                f"{'refused' if naive else 'released':<9} {dt:>5.2f}  {','.join(fired)}"
            )
        scanner.close()
        n_leaky = sum(c.leaky for c in cases)
        n_clean = len(cases) - n_leaky
        print(f"\nindex of {len(rows)} vault images built in {index_s:.2f} s")
        print(f"{'gate':<22} {'detection rate':>15} {'false refusals':>15}")
        names = {
            "gate": "facelab export gate",
            "detectors": "detectors alone",
            "naive": "naive byte match",
        }
        for g, name in names.items():
            print(
                f"{name:<22} {tally[(g, True)]:>5}/{n_leaky} = {tally[(g, True)] / n_leaky:.3f}"
                f" {tally[(g, False)]:>5}/{n_clean} = {tally[(g, False)] / n_clean:.3f}"
            )
        ok = tally[("gate", True)] == n_leaky and tally[("gate", False)] == 0
        print(f"targets (all leaky refused, no clean refused): {'met' if ok else 'NOT met'}")
        robustness(scanner, el, rows)
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
