"""Build model packages, keys and a policy for the import-gate tests."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from facelab.gates.importing import approve, sign_package
from facelab.gates.importing.keys import load_officer_key, write_keypair
from facelab.labdir import open_lab
from onnx import TensorProto, helper, numpy_helper


@dataclass
class Keys:
    tenant_key: Path
    tenant_pub: str
    officers: dict[str, Ed25519PrivateKey]
    stranger: Ed25519PrivateKey


def make_keys(d: Path) -> Keys:
    d.mkdir(parents=True, exist_ok=True)
    priv, pub, _ = write_keypair("tenant", d / "tenant")
    officers = {}
    for name in ("kim", "lee", "park"):
        p, _, _ = write_keypair("officer", d / name)
        officers[name] = load_officer_key(p)
    return Keys(priv, pub.read_text(), {k: officers[k] for k in ("kim", "lee")}, officers["park"])


def configure(lab_root: Path, keys: Keys, tenant: str = "acme", **limits) -> None:
    """Put the tenant's and two officers' public keys (not park's) into the lab policy."""
    from facelab.labdir import public_key_b64

    policy = lab_root / "policy.toml"
    text = policy.read_text()
    officers = ", ".join(
        f'{n} = "{public_key_b64(k.public_key())}"' for n, k in keys.officers.items()
    )
    text = text.replace("officers = {}", f"officers = {{ {officers} }}")
    text = text.replace(
        "tenant_keys = {}", f"tenant_keys = {{ {tenant} = {json.dumps(keys.tenant_pub)} }}"
    )
    for k, v in limits.items():
        import re

        text = re.sub(rf"^{k} = .*$", f"{k} = {v}", text, flags=re.M)
    policy.write_text(text)
    open_lab(lab_root)  # validates


def build_model(
    dim: int = 16,
    *,
    custom_op: bool = False,
    slow: bool = False,
    external: tuple[str, int] | None = None,
    huge: bool = False,
) -> onnx.ModelProto:
    """X[N,3,112,112] -> GlobalAveragePool -> Flatten -> MatMul W[3,dim] -> Y[N,dim]."""
    w = numpy_helper.from_array(np.arange(3 * dim, dtype=np.float32).reshape(3, dim) / 10, "W")
    inits = [w]
    nodes = [
        helper.make_node("GlobalAveragePool", ["X"], ["p"], name="gap"),
        helper.make_node("Flatten", ["p"], ["f"], name="flat"),
        helper.make_node("MatMul", ["f", "W"], ["Y0"], name="proj"),
    ]
    out = "Y0"
    opsets = [helper.make_opsetid("", 17)]
    if custom_op:
        nodes.append(
            helper.make_node(
                "ReadFile", ["Y0"], ["Y1"], domain="evil.io", name="exfil", path="/etc/shadow"
            )
        )
        opsets.append(helper.make_opsetid("evil.io", 1))
        out = "Y1"
    if slow:  # a Loop with a trip count nobody waits for: the input's size times 10**8
        # (from a shape, so no static bound applies: the smoke test's time limit does)
        body = helper.make_graph(
            [
                helper.make_node("Identity", ["c_in"], ["c_out"]),
                helper.make_node("Add", ["v_in", "one"], ["v_out"]),
            ],
            "body",
            [
                helper.make_tensor_value_info("i", TensorProto.INT64, []),
                helper.make_tensor_value_info("c_in", TensorProto.BOOL, []),
                helper.make_tensor_value_info("v_in", TensorProto.FLOAT, None),
            ],
            [
                helper.make_tensor_value_info("c_out", TensorProto.BOOL, []),
                helper.make_tensor_value_info("v_out", TensorProto.FLOAT, None),
            ],
            [numpy_helper.from_array(np.array(1e-9, np.float32), "one")],
        )
        inits += [
            numpy_helper.from_array(np.array(10**8, np.int64), "M"),
            numpy_helper.from_array(np.array(True), "cond"),
        ]
        nodes.append(helper.make_node("Size", ["X"], ["xsize"]))
        nodes.append(helper.make_node("Mul", ["xsize", "M"], ["trips"]))
        nodes.append(helper.make_node("Loop", ["trips", "cond", "Y0"], ["Y2"], body=body))
        out = "Y2"
    if external is not None:
        loc, n = external
        t = _external_tensor("E", [n])
        t.data_location = TensorProto.EXTERNAL
        for k, v in (("location", loc), ("offset", "0"), ("length", str(4 * n))):
            e = t.external_data.add()
            e.key, e.value = k, v
        inits.append(t)
    if huge:  # declares 2.5e9 float32 elements (10 GB) kept "elsewhere"
        t = _external_tensor("H", [50_000, 50_000])
        t.data_location = TensorProto.EXTERNAL
        for k, v in (("location", "weights.bin"), ("offset", "0"), ("length", "40")):
            e = t.external_data.add()
            e.key, e.value = k, v
        inits.append(t)
    graph = helper.make_graph(
        nodes,
        "embed",
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, ["N", 3, 112, 112])],
        [helper.make_tensor_value_info(out, TensorProto.FLOAT, ["N", dim])],
        inits,
    )
    return helper.make_model(graph, opset_imports=opsets, ir_version=8)


def _external_tensor(name: str, dims: list[int]) -> TensorProto:
    t = TensorProto()
    t.name = name
    t.data_type = TensorProto.FLOAT
    t.dims.extend(dims)
    return t


def model_json(dim: int = 16, name: str = "tiny") -> dict:
    return {
        "name": name,
        "version": "1.0.0",
        "input": {
            "size": [112, 112],
            "layout": "NCHW",
            "channels": "RGB",
            "mean": 127.5,
            "std": 128.0,
        },
        "output": {"dim": dim},
        "similarity": "cosine",
    }


def make_package(
    d: Path,
    model: onnx.ModelProto | None = None,
    spec: dict | None = None,
    extra: dict[str, bytes] | None = None,
) -> Path:
    d.mkdir(parents=True)
    (d / "model.onnx").write_bytes((model or build_model()).SerializeToString())
    (d / "model.json").write_text(json.dumps(spec or model_json()))
    (d / "README.md").write_text("# tiny\nA test embedding.\n")
    for rel, data in (extra or {}).items():
        (d / rel).parent.mkdir(parents=True, exist_ok=True)
        (d / rel).write_bytes(data)
    return d


def sign_and_approve(d: Path, keys: Keys, approvers=("kim", "lee")) -> Path:
    sign_package(d, keys.tenant_key)
    for name in approvers:
        key = keys.officers.get(name) or keys.stranger
        approve(d, name, key)
    return d


# ---------------------------------------------------------------- hostile building blocks
def tar_header(
    name: str, size_field: bytes, typ: bytes = b"0", magic: bytes = b"ustar\x0000"
) -> bytes:
    """A 512-byte tar header with a raw 12-byte size field and a correct checksum
    (POSIX.1-2017 ustar layout), for headers ``tarfile`` will not write."""
    h = bytearray(512)
    h[0 : len(name)] = name.encode()
    h[100:108] = b"0000644\0"
    h[108:116] = b"0000000\0"
    h[116:124] = b"0000000\0"
    h[124:136] = size_field
    h[136:148] = b"00000000000\0"
    h[148:156] = b" " * 8
    h[156:157] = typ
    h[257:265] = magic
    h[148:156] = f"{sum(h):06o}\0 ".encode()
    return bytes(h)


def dir_to_tar_bytes(pkg: Path, top: str = "p") -> bytes:
    import io
    import tarfile

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        tf.add(pkg, arcname=top)
    return buf.getvalue()


def with_external_weights(model: onnx.ModelProto, location: str, n: int) -> onnx.ModelProto:
    """Add an unused float32 initializer E[n] whose data is ``location`` (offset 0)."""
    t = _external_tensor("E", [n])
    t.data_location = TensorProto.EXTERNAL
    for k, v in (("location", location), ("offset", "0"), ("length", str(4 * n))):
        e = t.external_data.add()
        e.key, e.value = k, v
    model.graph.initializer.append(t)
    return model


def blowup_model(dim: int = 16, power: int = 10) -> onnx.ModelProto:
    """A model whose memory grows as N**10 (or N**6) with the batch N: at N=1 it asks for
    one float, at N=8 for 2**30 floats (4 GiB), through ConstantOfShape summed into Y.
    With ``power=6``, 2**36 floats (256 GiB) at a job's batch of 64, about 2 GFLOP per
    image: within the static work bound, so only the smoke test's memory limit stops it."""
    base = build_model(dim)
    g = base.graph
    y0 = g.output[0].name
    one = numpy_helper.from_array(np.array([0], np.int64), "ax0")
    zero = numpy_helper.from_array(np.array(0.0, np.float32), "zero_f")
    idx = numpy_helper.from_array(np.array(0, np.int64), "idx0")
    g.initializer.extend([one, zero, idx])
    g.node.extend(
        [
            helper.make_node("Shape", ["X"], ["xs"]),
            helper.make_node("Gather", ["xs", "idx0"], ["n1"], axis=0),
            helper.make_node("Mul", ["n1", "n1"], ["n2"]),
            helper.make_node("Mul", ["n2", "n2"], ["n4"]),
            helper.make_node("Mul", ["n4", "n4"], ["n8"]),
            helper.make_node("Mul", ["n8", "n2"], ["n10"]),
            helper.make_node("Mul", ["n4", "n2"], ["n6"]),
            helper.make_node("Unsqueeze", ["n10" if power == 10 else "n6", "ax0"], ["shape"]),
            helper.make_node("ConstantOfShape", ["shape"], ["big"]),
            helper.make_node("ReduceSum", ["big"], ["s"], keepdims=0),
            helper.make_node("Mul", ["s", "zero_f"], ["s0"]),
            helper.make_node("Add", [y0, "s0"], ["Yb"]),
        ]
    )
    g.output[0].name = "Yb"
    return base
