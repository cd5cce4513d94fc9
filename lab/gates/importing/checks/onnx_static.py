"""ONNX parsed, never executed: the whole ``ModelProto`` against the policy.

Runs inside ``facelab.confine`` (``_static_child``), so a parser crash, a hang or a memory
blow-up is the confinement's to stop and the gate's to report. What is checked, on the
parsed protobuf and before ``onnx.checker`` (which accepts unknown custom domains and,
given no base directory, resolves external data against the working directory):

* **every graph**: the main graph, every subgraph (``If``/``Loop``/``Scan`` bodies, at
  any depth), every local function's body (functions themselves are refused: custom
  operators), and ``training_info``'s initialization and algorithm graphs (refused
  unless ``import.allow_training_info``; checked like the graph either way, so the
  report names every problem);
* **operators**: domains and default-domain operators against the policy's lists;
* **sizes**: every tensor counted at its *dense* size from its dims (initializers,
  sparse initializers, ``Constant`` and any tensor, sparse-tensor or list-valued
  attribute: ``value_ints``, ``value_floats``, ``value_strings``), string tensors at
  their bytes, against ``max_tensor_elements`` per tensor and ``max_param_bytes`` in
  all (issue 15 failure 6: a 270 MiB string, 70 M int64 and an 8200 x 8200 sparse
  float32 all counted as 0.0 MiB before);
* **external data**: a plain relative location (letters, digits, ``._-/``; not
  ``signatures/``, not a policy-named file, not onnxruntime's ``*/_ORT_MEM_ADDR_/*``),
  in the package, one file per name, only the keys ``location``, ``offset``,
  ``length``, ``checksum``, a length equal to the declared size, inside the file;
* **strings**: doc strings, metadata properties, producer fields, names, string
  attributes and string tensors bounded (``max_string_bytes`` each) and scanned for
  pickles and archives, raw or base64-encoded, and for URLs;
* then ``onnx.checker.check_model`` on the file's path (its base directory is the
  package's private copy, never the operator's working directory).
"""

from __future__ import annotations

import base64
import binascii
import math
import re
from pathlib import PurePosixPath

from facelab.gates.importing._types import CheckResult, GateContext, result
from facelab.gates.importing.checks.files import unreferenced_binaries
from facelab.gates.importing.filetype import scan

NAME = "onnx"
_DEFAULT_DOMAINS = ("", "ai.onnx")
_LOCATION = re.compile(
    r"[A-Za-z0-9_][A-Za-z0-9._-]{0,127}(/[A-Za-z0-9_][A-Za-z0-9._-]{0,127}){0,7}"
)
_EXTERNAL_KEYS = {"location", "offset", "length", "checksum"}
_URL = re.compile(r"(?i)\b(?:[a-z][a-z0-9+.-]{1,15}://|www\.[a-z0-9-]+\.|data:[a-z]+/)")
_B64 = re.compile(rb"[A-Za-z0-9+/_-]{24,}={0,2}")
_MAX_PROBLEMS = 40


class _Tally:
    def __init__(self, ctx: GateContext) -> None:
        self.ctx = ctx
        self.pol = ctx.policy
        self.problems: list[str] = []
        self.total = 0
        self.nodes = 0
        self.strings_bytes = 0

    def add(self, msg: str) -> None:
        if len(self.problems) < _MAX_PROBLEMS:
            self.problems.append(f"model.onnx: {msg}")
        elif len(self.problems) == _MAX_PROBLEMS:
            self.problems.append("model.onnx: ... more problems not listed")


def _itemsize(data_type: int) -> int | None:
    from onnx import TensorProto, helper

    if data_type == TensorProto.STRING:
        return 0
    try:
        return int(helper.tensor_dtype_to_np_dtype(data_type).itemsize)
    except Exception:  # UNDEFINED or a number onnx does not know
        return None


def _count(t: _Tally, where: str, elements: int, nbytes: int) -> None:
    t.total += nbytes
    if elements > t.pol.max_tensor_elements:
        t.add(
            f"{where} declares {elements:,} elements, {nbytes / 2**30:.1f} GiB "
            f"(limit {t.pol.max_tensor_elements:,})"
        )


def _tensor(t: _Tally, where: str, x, *, external_ok: bool = True) -> None:
    """Count a TensorProto at max(declared dense size, stored size); check its data."""
    import onnx

    if any(d < 0 for d in x.dims):
        t.add(f"{where} has a negative dimension")
        return
    n = math.prod(x.dims) if x.dims else 1
    item = _itemsize(x.data_type)
    if item is None:
        t.add(f"{where} has an unknown data type ({x.data_type})")
        return
    stored = (
        len(x.raw_data)
        + 4 * (len(x.float_data) + len(x.int32_data))
        + 8 * (len(x.int64_data) + len(x.double_data) + len(x.uint64_data))
    )
    if x.data_type == onnx.TensorProto.STRING:
        strings = sum(len(s) for s in x.string_data)
        stored += strings + 8 * len(x.string_data)
        for s in x.string_data:
            _string(t, f"{where} (string element)", s, bounded=False)
    nbytes = max(n * item, stored)
    _count(t, where, n, nbytes)
    _string(t, f"{where} doc string", x.doc_string)
    if x.data_location == onnx.TensorProto.EXTERNAL:
        if not external_ok:
            t.add(f"{where} keeps its data outside the model, where no tensor of this kind may")
        else:
            _external(t, where, x, n * item)
    elif len(x.external_data):
        t.add(f"{where} lists external data but is not marked external")


def _sparse(t: _Tally, where: str, s) -> None:
    """A SparseTensorProto: onnxruntime makes it dense, so its dense size counts."""
    if any(d < 0 for d in s.dims):
        t.add(f"{where} has a negative dimension")
        return
    _tensor(t, f"{where} values", s.values, external_ok=False)
    _tensor(t, f"{where} indices", s.indices, external_ok=False)
    item = _itemsize(s.values.data_type) or 1
    n = math.prod(s.dims) if s.dims else 1
    _count(t, f"{where} (dense {list(s.dims)})", n, n * item)


def _string(t: _Tally, where: str, s, bounded: bool = True) -> None:
    """Bound a string field and look for payloads in it (raw, base64, URLs)."""
    if not s:
        return
    data = s.encode("utf-8", "surrogatepass") if isinstance(s, str) else bytes(s)
    t.strings_bytes += len(data)
    if bounded and len(data) > t.pol.max_string_bytes:
        t.add(f"{where} is {len(data):,} bytes (limit {t.pol.max_string_bytes:,})")
        return
    if len(data) < 12:  # too short for a payload; only a URL scheme could fit
        if b"://" in data:
            t.add(f"{where} holds a URL ({data[:60]!r})")
        return
    found = scan(data, max_ops=200_000)
    if found:
        p = found[0]
        t.add(f"{where} holds {p.kind} data ({p.detail})")
        return
    for m in _B64.finditer(data):
        try:
            raw = base64.b64decode(m.group() + b"=" * (-len(m.group()) % 4), altchars=b"-_")
        except (binascii.Error, ValueError):
            continue
        found = scan(raw, max_ops=200_000)
        if found:
            p = found[0]
            t.add(f"{where} holds base64-encoded {p.kind} data ({p.detail})")
            return
    text = data.decode("utf-8", "replace")
    m = _URL.search(text)
    if m:
        t.add(f"{where} holds a URL ({text[m.start() : m.start() + 60]!r})")


def _external(t: _Tally, where: str, x, nbytes: int) -> None:
    ctx = t.ctx
    info: dict[str, str] = {}
    for e in x.external_data:
        if e.key not in _EXTERNAL_KEYS or e.key in info:
            t.add(f"{where} has an unexpected or repeated external-data key {e.key!r}")
            return
        info[e.key] = e.value
    loc = info.get("location", "")
    if "_ORT_MEM_ADDR_" in loc:
        t.add(f"{where} asks onnxruntime to read process memory (location {loc!r})")
        return
    if not _LOCATION.fullmatch(loc) or ".." in PurePosixPath(loc).parts:
        t.add(f"{where} points outside the package (external data {loc!r})")
        return
    rel = PurePosixPath(loc).as_posix()
    if rel.split("/", 1)[0] == "signatures":
        t.add(f"{where} takes its data from {rel!r}: signatures/ is outside the tenant signature")
        return
    if rel in ctx.policy.allowed_files:
        t.add(f"{where} takes its data from {rel!r}, a file with a role of its own")
        return
    if rel not in ctx.package.files:
        t.add(f"{where} refers to missing external data file {rel!r}")
        return
    off, length = info.get("offset", "0"), info.get("length", str(nbytes))
    if not (off.isdigit() and length.isdigit() and len(off) < 16 and len(length) < 16):
        t.add(f"{where} has a malformed external-data offset or length")
        return
    if x.raw_data:
        t.add(f"{where} has both raw data and external data")
        return
    offset, size = int(off), int(length)
    if size != nbytes:
        t.add(f"{where} reads {size:,} bytes for a tensor of {nbytes:,}")
        return
    if offset + size > ctx.package.files[rel]:
        t.add(f"{where} reads past the end of {rel!r}")
        return
    ctx.external_files.add(rel)


def _attribute(t: _Tally, where: str, a, graphs: list) -> None:
    import onnx

    A = onnx.AttributeProto
    w = f"{where} attribute {a.name}"
    _string(t, f"{w} doc string", a.doc_string)
    if a.type == A.TENSOR:
        _tensor(t, w, a.t)
    elif a.type == A.TENSORS:
        for x in a.tensors:
            _tensor(t, w, x)
    elif a.type == A.SPARSE_TENSOR:
        _sparse(t, w, a.sparse_tensor)
    elif a.type == A.SPARSE_TENSORS:
        for s in a.sparse_tensors:
            _sparse(t, w, s)
    elif a.type == A.INTS:
        _count(t, w, len(a.ints), 8 * len(a.ints))
    elif a.type == A.FLOATS:
        _count(t, w, len(a.floats), 4 * len(a.floats))
    elif a.type == A.STRINGS:
        _count(t, w, len(a.strings), sum(len(s) for s in a.strings))
        for s in a.strings:
            _string(t, w, s)
    elif a.type == A.STRING:
        _string(t, w, a.s)
    elif a.type == A.GRAPH:
        graphs.append((f"{w} (subgraph)", a.g))
    elif a.type == A.GRAPHS:
        graphs.extend((f"{w} (subgraph)", g) for g in a.graphs)


def _nodes(t: _Tally, where: str, nodes, graphs: list) -> None:
    pol = t.pol
    allowed_domains = set(pol.allowed_domains)
    for node in nodes:
        t.nodes += 1
        dom = node.domain or ""
        label = node.name or node.op_type
        if dom not in allowed_domains:
            t.add(
                f"{where}: node {label} uses operator {dom}:{node.op_type} "
                "from a domain the policy does not allow"
            )
        elif dom in _DEFAULT_DOMAINS and node.op_type not in pol.allowed_ops:
            t.add(f"{where}: node {label} uses operator {node.op_type}, not in the allow-list")
        _string(t, f"{where}: node {label} doc string", node.doc_string)
        _string(t, f"{where}: node name", node.name)
        for a in node.attribute:
            _attribute(t, f"{where}: node {label}", a, graphs)


def _graph(t: _Tally, where: str, g, graphs: list) -> None:
    _string(t, f"{where} doc string", g.doc_string)
    _string(t, f"{where} name", g.name)
    for p in g.metadata_props:
        _string(t, f"{where} metadata key", p.key)
        _string(t, f"{where} metadata {p.key[:40]!r}", p.value)
    for x in g.initializer:
        _tensor(t, f"{where}: initializer {x.name!r}", x)
    for s in g.sparse_initializer:
        _sparse(t, f"{where}: sparse initializer {s.values.name!r}", s)
    for vi in [*g.input, *g.output, *g.value_info]:
        _string(t, f"{where}: value {vi.name[:40]!r} doc string", vi.doc_string)
        dims = vi.type.tensor_type.shape.dim
        n = math.prod(d.dim_value for d in dims if d.dim_value > 0) if dims else 0
        if n > t.pol.max_tensor_elements:
            lim = t.pol.max_tensor_elements
            t.add(f"{where}: {vi.name!r} declares {n:,} elements (limit {lim:,})")
    _nodes(t, where, g.node, graphs)


def check_model(t: _Tally, model) -> None:
    """Every part of ``model`` (see the module docstring); problems go to ``t``."""
    pol = t.pol
    allowed_domains = set(pol.allowed_domains)
    for imp in model.opset_import:
        if imp.domain not in allowed_domains and imp.domain not in _DEFAULT_DOMAINS:
            t.add(
                f"imports operator set of custom domain {imp.domain!r}, not allowed by the policy"
            )
    for field in ("doc_string", "producer_name", "producer_version", "domain"):
        _string(t, field.replace("_", " "), getattr(model, field))
    if len(model.metadata_props) > 256:
        t.add(f"{len(model.metadata_props)} metadata properties (limit 256)")
    for p in model.metadata_props:
        _string(t, "metadata key", p.key)
        _string(t, f"metadata {p.key[:40]!r}", p.value)
    graphs: list = [("graph", model.graph)]
    for f in model.functions:
        t.add(f"defines local function {f.domain}:{f.name} (custom operators are refused)")
        fw = f"function {f.domain}:{f.name}"
        _string(t, f"{fw} doc string", f.doc_string)
        for a in f.attribute_proto:
            _attribute(t, fw, a, graphs)
        _nodes(t, fw, f.node, graphs)
    if len(model.training_info) and not getattr(pol, "allow_training_info", False):
        t.add(
            f"carries training_info ({len(model.training_info)} training graphs), "
            "which the policy does not allow (import.allow_training_info)"
        )
    for i, ti in enumerate(model.training_info):
        graphs.append((f"training_info[{i}] initialization", ti.initialization))
        graphs.append((f"training_info[{i}] algorithm", ti.algorithm))
    seen = 0
    while graphs:
        where, g = graphs.pop()
        seen += 1
        if seen > 10_000:
            t.add("more than 10,000 graphs")
            break
        _graph(t, where, g, graphs)
    if t.total > pol.max_param_bytes:
        t.add(
            f"parameters total {t.total / 2**20:,.1f} MiB "
            f"(limit {pol.max_param_bytes / 2**20:,.0f} MiB)"
        )


def run(ctx: GateContext) -> CheckResult:
    """Parse ``model.onnx`` of the private copy and check it (inside the confinement)."""
    import onnx

    if "model.onnx" not in ctx.package.files:
        return result(NAME, ["model.onnx: missing"])
    path = ctx.package.path("model.onnx")
    try:
        model = onnx.load_model(str(path), load_external_data=False)
    except Exception as e:  # protobuf DecodeError, RecursionError and friends
        return result(NAME, [f"model.onnx: not a valid ONNX model ({e.__class__.__name__})"])
    t = _Tally(ctx)
    check_model(t, model)
    problems = t.problems + unreferenced_binaries(ctx)
    if not problems:
        try:
            onnx.checker.check_model(str(path))
        except Exception as e:
            problems.append(f"model.onnx: onnx.checker refuses it: {str(e).splitlines()[0][:300]}")
    if not problems:
        ctx.onnx_model = model
    return result(NAME, problems, f"{t.nodes} nodes, {t.total / 2**20:.1f} MiB of parameters")
