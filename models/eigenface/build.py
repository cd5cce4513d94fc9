"""Build the eigenface (PCA) baseline matcher as an ONNX graph, from synthetic faces only.

Usage: python models/eigenface/build.py [--identities 600] [--components 128]

Training data: a synthetic dataset generated here (seed 9001, disjoint from any seed the
tests or the benchmark use), aligned to 64x64 grayscale with the five landmarks. The
graph: x (N, 1, 64, 64), already (gray - 127.5) / 128 -> Flatten -> subtract the image's
own mean and divide by its L2 norm (lighting) -> subtract the training mean -> MatMul
with the whitened principal components -> template (N, components).
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from facelab.bench._align import align
from facelab.synth import SynthConfig, write_dataset
from facelab.vault.dataset import read_dataset

HERE = Path(__file__).resolve().parent
SIZE = 64


def load_aligned(ds: Path) -> np.ndarray:
    import cv2

    rows = []
    for it in read_dataset(ds):
        img = cv2.imdecode(np.frombuffer(it.png, np.uint8), cv2.IMREAD_COLOR_RGB)
        lm = np.array(
            [[float(it.row[f"lm{i}_x"]), float(it.row[f"lm{i}_y"])] for i in range(5)], np.float32
        )
        g = cv2.cvtColor(align(img, lm, (SIZE, SIZE)), cv2.COLOR_RGB2GRAY)
        rows.append((g.astype(np.float32) - 127.5) / 128.0)
    x = np.stack(rows).reshape(len(rows), -1)
    x -= x.mean(axis=1, keepdims=True)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def build(identities: int, components: int, out: Path) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="facelab-eigenface-"))
    try:
        write_dataset(SynthConfig(identities=identities, captures=2, seed=9001), tmp / "ds")
        x = load_aligned(tmp / "ds")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    mu = x.mean(axis=0)
    _, sv, vt = np.linalg.svd(x - mu, full_matrices=False)
    w = (vt[:components] / sv[:components, None]).T.astype(np.float32)  # whitened
    nodes = [
        helper.make_node("Flatten", ["x"], ["f"]),
        helper.make_node("ReduceMean", ["f"], ["m"], axes=[1], keepdims=1),
        helper.make_node("Sub", ["f", "m"], ["c"]),
        helper.make_node("ReduceL2", ["c"], ["n"], axes=[1], keepdims=1),
        helper.make_node("Add", ["n", "eps"], ["n2"]),
        helper.make_node("Div", ["c", "n2"], ["u"]),
        helper.make_node("Sub", ["u", "mu"], ["d"]),
        helper.make_node("MatMul", ["d", "W"], ["template"]),
    ]
    inits = [
        numpy_helper.from_array(mu.astype(np.float32), "mu"),
        numpy_helper.from_array(w, "W"),
        numpy_helper.from_array(np.array(1e-6, np.float32), "eps"),
    ]
    graph = helper.make_graph(
        nodes,
        "eigenface",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 1, SIZE, SIZE])],
        [helper.make_tensor_value_info("template", TensorProto.FLOAT, ["N", components])],
        inits,
    )
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", 17)],
        ir_version=8,
        producer_name="facelab models/eigenface/build.py",
    )
    onnx.checker.check_model(model)
    out.mkdir(parents=True, exist_ok=True)
    onnx.save(model, out / "model.onnx")
    (out / "model.json").write_text(
        json.dumps(
            {
                "name": "eigenface",
                "version": "1.0.0",
                "input": {
                    "size": [SIZE, SIZE],
                    "layout": "NCHW",
                    "channels": "GRAY",
                    "mean": 127.5,
                    "std": 128.0,
                },
                "output": {"dim": components},
                "similarity": "cosine",
            },
            indent=2,
        )
        + "\n"
    )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--identities", type=int, default=600)
    ap.add_argument("--components", type=int, default=128)
    ap.add_argument("--out", type=Path, default=HERE)
    args = ap.parse_args()
    build(args.identities, args.components, args.out)
    print(f"wrote {args.out / 'model.onnx'} ({(args.out / 'model.onnx').stat().st_size:,} bytes)")


if __name__ == "__main__":
    main()
