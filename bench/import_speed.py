"""Import gate speed on a ~100 MB ONNX model, with baselines in the same run.

Usage: python bench/import_speed.py [--mb 100]

Rows:
  sha256 of the file         reading and hashing the bytes once: the floor of any check
  onnx.load (parse only)     protobuf parse without external data
  payload scan               filetype.scan over the whole file (pickles and archives at
                             any offset), in this process
  decoded-stream search      filetype.decoded_payload: zlib / LZMA-alone streams at any
                             offset, decoded and scanned again (round 2)
  static checks              intake copy; one confined run (facelab.confine: start-up, files
                             with the whole-file payload scan, model.json, the whole
                             ModelProto, onnx.checker); signature (model-signing re-hashes
                             every file) and approvals; nothing executed
  static + smoke test        plus the confined onnxruntime smoke test (six input kinds,
                             batches up to the job batch, 64)
Target (issues 6 and 15): static checks of a 100 MB ONNX model under 5 s.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import mmap
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx
from facelab.gates.importing import approve, inspect, sign_package
from facelab.gates.importing.filetype import decoded_payload, scan_file
from facelab.gates.importing.keys import load_officer_key, write_keypair
from facelab.labdir import public_key_b64
from onnx import TensorProto, helper, numpy_helper

from enclave_policy import load_policy


def build(d: Path, mb: int) -> None:
    cols = mb * (1 << 20) // (4 * 512)
    w = numpy_helper.from_array(
        np.random.default_rng(0).standard_normal((512, cols), dtype=np.float32), "W"
    )
    p = numpy_helper.from_array(
        np.random.default_rng(1).standard_normal((cols, 8), dtype=np.float32) / cols, "P"
    )
    s = numpy_helper.from_array(np.ones((3, 512), np.float32), "S")
    nodes = [
        helper.make_node("GlobalAveragePool", ["X"], ["g"]),
        helper.make_node("Flatten", ["g"], ["f"]),
        helper.make_node("MatMul", ["f", "S"], ["a"]),
        helper.make_node("MatMul", ["a", "W"], ["b"]),
        helper.make_node("MatMul", ["b", "P"], ["Y"]),
    ]
    g = helper.make_graph(
        nodes,
        "big",
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, ["N", 3, 112, 112])],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, ["N", 8])],
        [w, p, s],
    )
    d.mkdir()
    onnx.save(
        helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=8),
        d / "model.onnx",
    )
    (d / "model.json").write_text(
        json.dumps(
            {
                "name": "big",
                "version": "1",
                "input": {
                    "size": [112, 112],
                    "layout": "NCHW",
                    "channels": "RGB",
                    "mean": 127.5,
                    "std": 128.0,
                },
                "output": {"dim": 8},
                "similarity": "cosine",
            }
        )
    )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--mb", type=int, default=100)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="facelab-import-bench-"))
    try:
        pkg = tmp / "pkg"
        build(pkg, args.mb)
        size = (pkg / "model.onnx").stat().st_size
        tkey, tpub, _ = write_keypair("tenant", tmp / "tenant")
        sign_package(pkg, tkey)
        officers = {}
        for name in ("kim", "lee"):
            k, _, _ = write_keypair("officer", tmp / name)
            key = load_officer_key(k)
            approve(pkg, name, key)
            officers[name] = public_key_b64(key.public_key())
        base = load_policy().importing
        pol = type(base)(
            **{
                **base.__dict__,
                "officers": officers,
                "tenant_keys": {"acme": tpub.read_text()},
                "max_param_bytes": 2 * size,
                "max_package_bytes": 4 * size,
            }
        )
        t = time.perf_counter()
        hashlib.sha256((pkg / "model.onnx").read_bytes()).hexdigest()
        t_hash = time.perf_counter() - t
        t = time.perf_counter()
        onnx.load_model(str(pkg / "model.onnx"), load_external_data=False)
        t_parse = time.perf_counter() - t
        t = time.perf_counter()
        scan_file(pkg / "model.onnx")
        t_scan = time.perf_counter() - t
        t = time.perf_counter()
        with (
            open(pkg / "model.onnx", "rb") as f,
            mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mm,
        ):
            decoded_payload(mm, text=False)
        t_decoded = time.perf_counter() - t
        t = time.perf_counter()
        report, ctx = inspect(pkg, "acme", pol, dynamic=False)
        t_static = time.perf_counter() - t
        ctx.package.cleanup()
        assert report.accepted, report.table()
        t = time.perf_counter()
        report2, ctx2 = inspect(pkg, "acme", pol, dynamic=True)
        t_all = time.perf_counter() - t
        ctx2.package.cleanup()
        assert report2.accepted, report2.table()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"import gate on a {size / 2**20:.0f} MiB ONNX model")
    print(f"{'what':<30}{'seconds':>9}{'vs sha256':>11}")
    for name, v in (
        ("sha256 of the file", t_hash),
        ("onnx.load (parse only)", t_parse),
        ("payload scan", t_scan),
        ("decoded-stream search", t_decoded),
        ("static checks", t_static),
        ("static + smoke test", t_all),
    ):
        print(f"{name:<30}{v:>9.2f}{v / t_hash:>10.1f}x")
    print(f"target: static checks < 5 s: {'met' if t_static < 5 else 'NOT met'}")


if __name__ == "__main__":
    main()
