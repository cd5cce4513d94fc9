"""Export gate speed: a ~100 MB ONNX model scanned against a vault of 10,000 subjects.

Usage: python bench/export_speed.py [--subjects 10000] [--mb 100] [--work DIR]

The lab: 10,000 synthetic subjects (a passport photo and one gate capture each, 20,000
images) ingested for one tenant, and the shipped CNN imported (signed, approved) as the
reference matcher. The artifact: that CNN fine-tuned with a large MLP head (~100 MB of
new float32 weights, so every byte is scanned at full depth; the conv layers are
unchanged since import and skipped). Baselines in the same run: hashing the file, parsing
it, and reading every record of the vault (decrypt + PNG decode).
Target (issue 7): the whole scan under 60 s on 2 cores.
"""

from __future__ import annotations

import argparse
import hashlib
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx
from onnx import helper, numpy_helper

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from facelab.gates.exporting import export
from facelab.vault.ops import open_vault

from tests.export_helpers import build_export_lab


def big_model(cnn: Path, mb: int, out: Path) -> Path:
    """The CNN with an MLP head 128 -> h -> h -> 128 of about ``mb`` MB."""
    m = onnx.load(cnn)
    h = int((mb * (1 << 20) / 4) ** 0.5)
    rng = np.random.default_rng(0)
    last = m.graph.output[0].name
    for i, (a, b) in enumerate(((128, h), (h, h), (h, 128))):
        m.graph.initializer.append(
            numpy_helper.from_array(
                (rng.standard_normal((a, b), dtype=np.float32) / np.float32(np.sqrt(a))),
                f"mlp.{i}.weight",
            )
        )
        m.graph.node.append(helper.make_node("MatMul", [last, f"mlp.{i}.weight"], [f"mlp{i}"]))
        last = f"mlp{i}"
        if i < 2:
            m.graph.node.append(helper.make_node("Relu", [last], [f"relu{i}"]))
            last = f"relu{i}"
    del m.graph.output[:]
    m.graph.output.append(helper.make_tensor_value_info(last, onnx.TensorProto.FLOAT, ["N", 128]))
    out.mkdir(parents=True, exist_ok=True)
    onnx.save(m, out / "model.onnx")
    return out / "model.onnx"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--subjects", type=int, default=10000)
    ap.add_argument("--mb", type=int, default=100)
    ap.add_argument("--work", type=Path)
    args = ap.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="facelab-export-bench-"))
    try:
        t0 = time.perf_counter()
        el = build_export_lab(work / "lab", identities=args.subjects, captures=1, workers=2)
        setup = time.perf_counter() - t0
        model = big_model(el.cnn / "model.onnx", args.mb, work / "artifact")
        size = model.stat().st_size
        rows = []

        t = time.perf_counter()
        hashlib.sha256(model.read_bytes()).hexdigest()
        rows.append(("read + sha256 of the file", time.perf_counter() - t))
        t = time.perf_counter()
        onnx.load(model)
        rows.append(("onnx.load (parse)", time.perf_counter() - t))
        root, log = el.unlocked()
        t = time.perf_counter()
        with open_vault(el.lab, root) as v:
            n = sum(1 for r in v.records(el.tenant) if r.image() is not None)
        rows.append((f"vault read: {n} records decrypted + decoded", time.perf_counter() - t))
        base = rows[0][1]
        with log:
            t = time.perf_counter()
            out = export(el.lab, root, el.tenant, [model], "bench", log)
            total = time.perf_counter() - t
        rows.append(("export gate, end to end", total))
        print(
            f"lab: {args.subjects} subjects, {n} images (set-up {setup:.0f} s); artifact "
            f"{size / 2**20:.1f} MiB; decision {out.decision}"
        )
        print(f"{'step':<48} {'seconds':>8} {'x sha256':>9}")
        for name, s in rows:
            print(f"{name:<48} {s:>8.2f} {s / base:>9.1f}")
        print(
            "export gate, per detector (s):",
            ", ".join(f"{k} {v:.2f}" for k, v in out.report.seconds.items()),
        )
        print(f"target: under 60 s -> {'met' if total < 60 else 'NOT met'} ({total:.1f} s)")
        for f in out.report.findings:
            print(f"  finding: {f.severity} {f.detector}: {f.evidence[:120]}")
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
