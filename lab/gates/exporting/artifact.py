"""Read an artifact into what the detectors scan: tensors, strings and raw bytes.

Types are told by their bytes first (PNG, JPEG, NPY and ZIP magic numbers) and by the
suffix only for formats without one (ONNX protobuf, JSON, CSV, text); a suffix that
contradicts the bytes is refused. Nothing is executed or unpickled: NPY/NPZ load with
``allow_pickle=False`` and ONNX is parsed, never run. Declared tensor sizes are checked
before any array is built, so an ONNX file that declares a 10^12-element tensor is
refused without allocating it.
"""

from __future__ import annotations

import csv
import io
import json
import math
import struct
import zipfile
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
from facelab.errors import FacelabError
from facelab.gates.exporting._types import Artifact

from enclave_policy import ExportPolicy

TEXT_SUFFIXES = {".txt", ".log", ".md", ".html", ".htm", ".jsonl", ".yaml", ".yml", ".xml"}
MAGIC = {
    b"\x89PNG\r\n\x1a\n": "png",
    b"\xff\xd8\xff": "jpeg",
    b"\x93NUMPY": "npy",
    b"PK\x03\x04": "zip",
    b"PK\x05\x06": "zip",
}
SUFFIX_KIND = {
    ".onnx": "onnx",
    ".npy": "npy",
    ".npz": "npz",
    ".json": "json",
    ".csv": "csv",
    ".tsv": "csv",
    ".png": "png",
    ".jpg": "jpeg",
    ".jpeg": "jpeg",
}


class Unscannable(FacelabError):
    """The gate cannot see inside this artifact (type, size or structure)."""


def magic_kind(data: bytes) -> str | None:
    for magic, kind in MAGIC.items():
        if data.startswith(magic):
            return kind
    return None


def load(path: Path, policy: ExportPolicy) -> Artifact:
    """Read ``path`` (a file) as an artifact; ``Unscannable`` says why it cannot be."""
    if path.is_symlink() or not path.is_file():
        raise Unscannable(f"{path}: not a regular file")
    size = path.stat().st_size
    if size > policy.max_artifact_bytes:
        raise Unscannable(f"{path}: {size} bytes exceeds export.max_artifact_bytes")
    data = path.read_bytes()
    suffix = path.suffix.lower()
    kind = SUFFIX_KIND.get(suffix) or ("text" if suffix in TEXT_SUFFIXES else None)
    magic = magic_kind(data)
    if kind is None:
        if suffix in policy.allow_unscannable or "*" in policy.allow_unscannable:
            return Artifact(path.name, "bytes", data, path=path)
        raise Unscannable(
            f"{path}: type {suffix or '(no suffix)'} cannot be scanned "
            "(allowed: onnx, npy, npz, json, csv, text, png, jpeg)"
        )
    expected = {"npz": "zip"}.get(kind, kind)
    if (magic is not None and magic != expected) or (
        magic is None and kind in ("png", "jpeg", "npy", "npz")
    ):
        raise Unscannable(
            f"{path}: the bytes are {magic or 'not ' + kind}, not what the suffix {suffix} says"
        )
    art = parse(path.name, kind, data, policy)
    art.path = path
    return art


def parse(name: str, kind: str, data: bytes, policy: ExportPolicy, depth: int = 0) -> Artifact:
    art = Artifact(name, kind, data, depth=depth)
    try:
        {
            "onnx": _onnx,
            "npy": _npy,
            "npz": _npz,
            "json": _json,
            "csv": _csv,
            "text": _text,
            "png": _image,
            "jpeg": _image,
            "bytes": lambda a, p: None,
            "zip": _zip,
        }[kind](art, policy)
    except Unscannable:
        raise
    except Exception as e:  # parsers of attacker bytes raise many types
        raise Unscannable(
            f"{name}: not a valid {kind} file ({type(e).__name__}: {str(e)[:120]})"
        ) from e
    return art


def _check_elements(shape, where: str, policy: ExportPolicy) -> None:
    n = math.prod(int(d) for d in shape) if shape else 1
    if n > policy.max_tensor_elements or any(int(d) < 0 for d in shape):
        raise Unscannable(
            f"{where}: declared shape {list(shape)} exceeds export.max_tensor_elements"
        )


# ---------------------------------------------------------------- ONNX


def _onnx(art: Artifact, policy: ExportPolicy) -> None:
    import onnx
    from onnx import numpy_helper

    model = onnx.load_from_string(art.data)
    art.onnx_model = model
    s = art.strings
    for key, val in (
        ("producer_name", model.producer_name),
        ("producer_version", model.producer_version),
        ("domain", model.domain),
        ("doc_string", model.doc_string),
    ):
        if val:
            s.append((f"model.{key}", val))
    for p in model.metadata_props:
        s.append((f"metadata_props[{p.key!r}] key", p.key))
        s.append((f"metadata_props[{p.key!r}]", p.value))

    def tensor(where: str, t) -> None:
        if t.data_location == onnx.TensorProto.EXTERNAL:
            raise Unscannable(
                f"{art.name}: {where} keeps its data in an external file; "
                "export the model with its weights inline"
            )
        _check_elements(t.dims, f"{art.name}: {where}", policy)
        if t.name:
            s.append((f"{where} name", t.name))
        if t.doc_string:
            s.append((f"{where} doc_string", t.doc_string))
        a = numpy_helper.to_array(t)
        if a.dtype == object:
            for i, v in enumerate(a.reshape(-1)):
                s.append(
                    (
                        f"{where}[{i}]",
                        v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v),
                    )
                )
        else:
            art.tensors.append((where, a))

    def graph(g, prefix: str) -> None:
        if g.name:
            s.append((f"{prefix}graph.name", g.name))
        if g.doc_string:
            s.append((f"{prefix}graph.doc_string", g.doc_string))
        for vi in (*g.input, *g.output, *g.value_info):
            s.append((f"{prefix}value {vi.name!r}", vi.name))
            if vi.doc_string:
                s.append((f"{prefix}value {vi.name!r} doc_string", vi.doc_string))
        for t in g.initializer:
            tensor(f"{prefix}initializer {t.name!r}", t)
        for sp in g.sparse_initializer:
            tensor(f"{prefix}sparse initializer {sp.values.name!r} values", sp.values)
            tensor(f"{prefix}sparse initializer {sp.values.name!r} indices", sp.indices)
        for n in g.node:
            where = f"{prefix}node {n.name or n.op_type!r}"
            if n.name:
                s.append((f"{where} name", n.name))
            if n.doc_string:
                s.append((f"{where} doc_string", n.doc_string))
            for a in n.attribute:
                aw = f"{where} attribute {a.name}"
                if a.type == onnx.AttributeProto.TENSOR:
                    tensor(aw, a.t)
                elif a.type == onnx.AttributeProto.TENSORS:
                    for i, t in enumerate(a.tensors):
                        tensor(f"{aw}[{i}]", t)
                elif a.type == onnx.AttributeProto.STRING:
                    s.append((aw, a.s.decode("utf-8", "replace")))
                elif a.type == onnx.AttributeProto.STRINGS:
                    for i, v in enumerate(a.strings):
                        s.append((f"{aw}[{i}]", v.decode("utf-8", "replace")))
                elif a.type == onnx.AttributeProto.FLOATS and len(a.floats) >= 16:
                    art.tensors.append((aw, np.asarray(a.floats, np.float32)))
                elif a.type == onnx.AttributeProto.INTS and len(a.ints) >= 16:
                    art.tensors.append((aw, np.asarray(a.ints, np.int64)))
                elif a.type == onnx.AttributeProto.GRAPH:
                    graph(a.g, f"{aw} > ")
                elif a.type == onnx.AttributeProto.GRAPHS:
                    for i, sub in enumerate(a.graphs):
                        graph(sub, f"{aw}[{i}] > ")

    graph(model.graph, "")
    for f in model.functions:
        for n in f.node:
            if n.doc_string:
                s.append((f"function {f.name!r} node doc_string", n.doc_string))
        if f.doc_string:
            s.append((f"function {f.name!r} doc_string", f.doc_string))


# ---------------------------------------------------------------- NumPy


def _npy_header(f, version: tuple[int, int]):
    """(shape, fortran order, dtype) of an NPY header, read without the data."""
    if version == (1, 0):
        return np.lib.format.read_array_header_1_0(f)
    if version in ((2, 0), (3, 0)):
        return np.lib.format.read_array_header_2_0(f)
    raise ValueError(f"NPY format version {version} is not supported")


def _npy_array(data: bytes, where: str, policy: ExportPolicy) -> np.ndarray:
    f = io.BytesIO(data)
    version = np.lib.format.read_magic(f)
    shape, _, dtype = _npy_header(f, version)  # header only
    if dtype.hasobject:
        raise Unscannable(f"{where}: object array (a pickle); never loaded")
    _check_elements(shape, where, policy)
    return np.load(io.BytesIO(data), allow_pickle=False)


def _add_array(art: Artifact, where: str, a: np.ndarray) -> None:
    if a.dtype.kind in "US":
        for i, v in enumerate(a.reshape(-1)[:100000]):
            art.strings.append(
                (f"{where}[{i}]", v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v))
            )
    elif a.dtype.kind in "biuf" and a.dtype.names is None:
        art.tensors.append((where, a))
    elif a.dtype.names:
        for field in a.dtype.names:
            _add_array(art, f"{where}.{field}", a[field])
    else:
        raise Unscannable(f"{where}: dtype {a.dtype} cannot be scanned")


def _npy(art: Artifact, policy: ExportPolicy) -> None:
    _add_array(art, "array", _npy_array(art.data, art.name, policy))


def _members(art: Artifact, policy: ExportPolicy) -> Iterator[tuple[str, bytes]]:
    """(name, bytes) of each member of a ZIP, the declared sizes kept under the limit;
    every member name is also a string of the artifact."""
    with zipfile.ZipFile(io.BytesIO(art.data)) as z:
        total = 0
        for info in z.infolist():
            total += info.file_size
            if total > policy.max_artifact_bytes:
                raise Unscannable(f"{art.name}: members expand beyond export.max_artifact_bytes")
            art.strings.append((f"member {info.filename!r} name", info.filename))
            yield info.filename, z.read(info)


def _npz(art: Artifact, policy: ExportPolicy) -> None:
    for name, body in _members(art, policy):
        if not (name.endswith(".npy") and body.startswith(b"\x93NUMPY")):
            raise Unscannable(f"{art.name}: member {name!r} is not an array")
        _add_array(art, f"member {name!r}", _npy_array(body, f"{art.name}:{name}", policy))


def _zip(art: Artifact, policy: ExportPolicy) -> None:
    """A ZIP found inside another artifact: arrays, text and images of its members."""
    for name, body in _members(art, policy):
        where = f"member {name!r}"
        if body.startswith(b"\x93NUMPY"):
            _add_array(art, where, _npy_array(body, f"{art.name}:{name}", policy))
            continue
        art.strings.append((where, body.decode("utf-8", "replace")))
        img = _decode_image(body)
        if img is not None:
            art.tensors.append((f"{where} image", img))


# ---------------------------------------------------------------- text formats


def _walk_json(art: Artifact, v, where: str) -> None:
    if isinstance(v, dict):
        for k, x in v.items():
            art.strings.append((f"{where} key", str(k)))
            _walk_json(art, x, f"{where}.{k}")
    elif isinstance(v, list):
        if v and all(isinstance(x, int | float) and not isinstance(x, bool) for x in v):
            art.tensors.append((where, np.asarray(v, np.float64)))
            return
        if v and all(isinstance(x, list) for x in v):
            try:
                a = np.asarray(v, np.float64)
                if a.ndim >= 2:
                    art.tensors.append((where, a))
                    return
            except (ValueError, TypeError):
                pass
        for i, x in enumerate(v):
            _walk_json(art, x, f"{where}[{i}]")
    elif isinstance(v, str):
        art.strings.append((where, v))


def _json(art: Artifact, policy: ExportPolicy) -> None:
    doc = json.loads(art.data.decode("utf-8-sig"))
    _walk_json(art, doc, "$")
    if art.name.endswith("model.json") and isinstance(doc, dict):
        art.model_json = doc


def _csv(art: Artifact, policy: ExportPolicy) -> None:
    text = art.data.decode("utf-8-sig")
    rows = list(csv.reader(io.StringIO(text)))
    numeric = []
    for i, row in enumerate(rows):
        for j, cell in enumerate(row):
            art.strings.append((f"row {i + 1} column {j + 1}", cell))
        try:
            numeric.append([float(c) for c in row])
        except ValueError:
            continue
    widths = {len(r) for r in numeric}
    if len(numeric) >= 2 and len(widths) == 1:
        art.tensors.append(("numeric rows", np.asarray(numeric, np.float64)))


def _text(art: Artifact, policy: ExportPolicy) -> None:
    text = art.data.decode("utf-8", "replace")
    for i, line in enumerate(text.splitlines()):
        if line.strip():
            art.strings.append((f"line {i + 1}", line))


# ---------------------------------------------------------------- images


def image_pixels(data: bytes) -> int | None:
    """Width x height declared in a PNG IHDR or a JPEG SOF header, read before decoding
    (a 100,000 x 100,000 PNG of a few kilobytes must not be decoded)."""
    if data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) >= 24:
        w, h = struct.unpack(">II", data[16:24])
        return w * h
    if data.startswith(b"\xff\xd8"):
        p = 2
        while p + 9 <= len(data) and data[p] == 0xFF:
            marker = data[p + 1]
            seg = struct.unpack(">H", data[p + 2 : p + 4])[0]
            if marker in (
                0xC0,
                0xC1,
                0xC2,
                0xC3,
                0xC5,
                0xC6,
                0xC7,
                0xC9,
                0xCA,
                0xCB,
                0xCD,
                0xCE,
                0xCF,
            ):
                h, w = struct.unpack(">HH", data[p + 5 : p + 9])
                return w * h
            p += 2 + seg
    return None


MAX_DECODE_PIXELS = 1 << 26  # 64 M pixels: far beyond any face, far below a bomb


def _decode_image(data: bytes) -> np.ndarray | None:
    n = image_pixels(data)
    if n is not None and n > MAX_DECODE_PIXELS:
        raise Unscannable(f"declares {n} pixels (more than {MAX_DECODE_PIXELS}): not decoded")
    a = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if a is None:
        return None
    if a.ndim == 3 and a.shape[2] >= 3:
        a = cv2.cvtColor(a[..., :3], cv2.COLOR_BGR2RGB)
    return a


def _image(art: Artifact, policy: ExportPolicy) -> None:
    img = _decode_image(art.data)
    if img is None:
        raise Unscannable(f"{art.name}: does not decode as {art.kind}")
    if img.shape[0] * img.shape[1] > policy.max_tensor_elements:
        raise Unscannable(f"{art.name}: image too large")
    art.tensors.append(("pixels", img))
