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
* **external data**: a relative location that stays inside the package
  (:func:`location_problem`: any printable name; absolute, ``~``, ``..`` and control
  characters refused, each with its own reason), not ``signatures/``, not a
  policy-named file, not onnxruntime's ``*/_ORT_MEM_ADDR_/*``, in the package, only the
  keys ``location``, ``offset``, ``length`` (each once), a length equal to the declared
  size, inside the file; the tensors reading a file cover it whole
  (:mod:`~facelab.gates.importing.checks.external_data`);
* **strings, an allow-list** (issue 15 round 2, :func:`_walk_strings`): every message is
  walked; a field the ONNX schema does not define is refused; every string field must
  be listed in ``_STRING_FIELDS`` with its kind (identifier, symbolic dimension, prose,
  or one of ONNX's closed denotation sets) and lie in that kind's grammar; every string
  is also searched for pickles and archives, raw or encoded, and for URLs;
* then ``onnx.checker.check_model`` on the file's path (its base directory is the
  package's private copy, never the operator's working directory).
"""

from __future__ import annotations

import base64
import binascii
import math
import os
import re
import unicodedata
from pathlib import PurePosixPath

from facelab.audit.events import escape_text
from facelab.gates.importing._types import CheckResult, GateContext, result
from facelab.gates.importing.checks import external_data, onnx_compute, onnx_graph, onnx_values
from facelab.gates.importing.checks.files import unreferenced_binaries
from facelab.gates.importing.filetype import decoded_payload, hidden_text, scan, text_char

NAME = "onnx"
_DEFAULT_DOMAINS = ("", "ai.onnx")
_EXTERNAL_KEYS = {"location", "offset", "length"}
# --- the string allow-list (issue 15 round 2): every string field of the ModelProto is
# one of these kinds; a value outside its kind's grammar is refused with its field.
# identifiers: names of values, nodes, graphs, operators, attributes, metadata keys,
# producer fields, quantization annotations (what exporters write: "layer1.0.conv1.weight",
# "/layer1/conv/Conv_output_0", "onnx::Conv_12", "pytorch", "2.1.0")
_IDENT = re.compile(r"[A-Za-z0-9_:./@+-]{0,256}")
# symbolic dimensions: "N", "batch_size", "unk__12", "s0 + 1", "2*s0"
_DIM_PARAM = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_ +*/().-]{0,47}")
# ONNX's closed sets (onnx/docs/TypeDenotation.md, DimensionDenotation.md)
_TYPE_DENOTATIONS = {"", "TENSOR", "IMAGE", "AUDIO", "TEXT"}
_DIM_DENOTATIONS = {
    "",
    "DATA_BATCH",
    "DATA_CHANNEL",
    "DATA_TIME",
    "DATA_FEATURE",
    "FILTER_IN_CHANNEL",
    "FILTER_OUT_CHANNEL",
    "FILTER_SPATIAL",
}
# prose: doc strings, metadata values, string attributes and string tensor elements:
# text (``filetype.text_char``, nothing hidden) whose ASCII runs without a space are at
# most 48 characters (an encoded payload is one long run: base64, hex, base85) and whose
# runs without a space or punctuation in any script at most 120 (Chinese and Japanese
# prose has no spaces but commas and full stops; base65536 has neither)
_PROSE_WORD = 48
_PROSE_CLAUSE = 120
_ASCII_RUN = re.compile(r"[!-~]+")


def _longest_clause(text: str) -> int:
    """Characters in the longest run without a space or a punctuation mark of any script
    (Unicode categories Z and P, and line breaks and tabs)."""
    best = run = 0
    for c in text:
        if c in "\n\t" or unicodedata.category(c)[0] in "ZP":
            run = 0
        else:
            run += 1
            best = max(best, run)
    return best


_PROSE_BYTES = 4096
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
        self.graphs: list = []  # (where, GraphProto) of every graph, once checked

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
    nbytes = max(n * item, stored)
    _count(t, where, n, nbytes)
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


def _grammar(where: str, data: bytes, kind: str, bounded: bool = True) -> str:
    """Why ``data`` is outside its kind's grammar ("" when inside): ``ident`` (see
    ``_IDENT``), ``dim`` (``_DIM_PARAM``), or ``prose`` (UTF-8, printable, at most
    ``_PROSE_BYTES``, no word longer than ``_PROSE_WORD`` characters)."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return f"{where} is not UTF-8 text"
    if kind == "ident":
        if not _IDENT.fullmatch(text):
            return (
                f"{where} is not an identifier ({escape_text(text, 60)!r}; letters, digits "
                "and _:./@+- up to 256 characters)"
            )
    elif kind == "dim":
        if not _DIM_PARAM.fullmatch(text):
            return f"{where} is not a symbolic dimension ({escape_text(text, 60)!r})"
    else:
        if bounded and len(data) > _PROSE_BYTES:
            return f"{where} is {len(data):,} bytes of text (limit {_PROSE_BYTES:,})"
        if any(not text_char(c) or c == "\r" for c in text):
            return f"{where} holds control or non-printable characters"
        if hidden := hidden_text(text):
            return f"{where} holds {hidden}"
        # an encoded payload is one long run of ASCII (base64, hex, base85), or of other
        # characters without punctuation (base65536); prose in any script has spaces or
        # punctuation (Chinese and Japanese sentences have no spaces but have commas)
        ascii_run = max(_ASCII_RUN.findall(text), key=len, default="")
        if len(ascii_run) > _PROSE_WORD:
            return (
                f"{where} holds a {len(ascii_run)}-character ASCII run without a space "
                f"(prose words are at most {_PROSE_WORD}; an encoded payload is one run)"
            )
        clause = _longest_clause(text)
        if clause > _PROSE_CLAUSE:
            return (
                f"{where} holds {clause} characters without a space or punctuation "
                f"(prose clauses are at most {_PROSE_CLAUSE}; an encoded payload is one run)"
            )
    return ""


def _payload(t: _Tally, where: str, data: bytes) -> bool:
    """Add a problem and return True when ``data`` holds a pickle or an archive, raw,
    base64-encoded or behind another encoding (``filetype.decoded_payload``)."""
    found = scan(data, max_ops=200_000)
    if found:
        p = found[0]
        t.add(f"{where} holds {p.kind} data ({p.detail})")
        return True
    for m in _B64.finditer(data):
        try:
            raw = base64.b64decode(m.group() + b"=" * (-len(m.group()) % 4), altchars=b"-_")
        except (binascii.Error, ValueError):
            continue
        found = scan(raw, max_ops=200_000)
        if found:
            p = found[0]
            t.add(f"{where} holds base64-encoded {p.kind} data ({p.detail})")
            return True
    why = decoded_payload(data, text=True)
    if why:
        t.add(f"{where}: {why}")
        return True
    return False


def _string(t: _Tally, where: str, s, bounded: bool = True, kind: str = "prose") -> None:
    """A string field: within its kind's grammar (:func:`_grammar`), bounded, and looked
    at for payloads (raw, base64 and the other encodings of ``filetype.decoded``, URLs)."""
    if not s:
        return
    data = s.encode("utf-8", "surrogatepass") if isinstance(s, str) else bytes(s)
    t.strings_bytes += len(data)
    if bounded and len(data) > t.pol.max_string_bytes:
        t.add(f"{where} is {len(data):,} bytes (limit {t.pol.max_string_bytes:,})")
        return
    if len(data) >= 12 and _payload(t, where, data):
        return
    why = _grammar(where, data, kind, bounded)
    if why:
        t.add(why)
        return
    text = data.decode("utf-8", "replace")
    m = _URL.search(text)
    if m:
        t.add(f"{where} holds a URL ({text[m.start() : m.start() + 60]!r})")


def location_problem(loc: str) -> str:
    """Why an external-data ``location`` is refused ("" when it is a plain relative
    path inside the package). Names may hold any printable character (a space, ``+``,
    letters of any script: what exporters write); "points outside" is said only of a
    location that resolves outside (absolute, or ``..`` above the package)."""
    import posixpath

    if not loc:
        return "is empty"
    if any(not c.isprintable() for c in loc):  # NUL truncates the name in C readers
        return "holds control or other non-printable characters"
    if loc.startswith("/") or re.match(r"[A-Za-z]:[\\/]", loc):
        return "is an absolute path: it points outside the package"
    if loc.startswith("~"):
        return "starts with '~' (a home directory to a shell: it points outside the package)"
    norm = posixpath.normpath(loc)
    if norm == ".." or norm.startswith("../"):
        return "points outside the package ('..' above its top)"
    if ".." in loc.split("/"):
        return "uses '..' (only plain relative paths, no '..', are allowed)"
    if "\\" in loc:
        return "holds a backslash (only '/' separates directories)"
    parts = loc.split("/")
    if any(p in ("", ".") for p in parts):
        return "has an empty or '.' path component"
    if len(parts) > 8 or any(len(p.encode()) > 255 for p in parts) or len(loc.encode()) > 1024:
        return "is too long (at most 8 components of 255 bytes, 1024 bytes in all)"
    return ""


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
    why = location_problem(loc)
    if why:
        t.add(f"{where}: external data location {loc[:200]!r} {why}")
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
    ctx.external_ranges.setdefault(rel, []).append((offset, size, where))


def _attribute(t: _Tally, where: str, a, graphs: list) -> None:
    import onnx

    A = onnx.AttributeProto
    w = f"{where} attribute {a.name}"
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
        for a in node.attribute:
            _attribute(t, f"{where}: node {label}", a, graphs)


def _graph(t: _Tally, where: str, g, graphs: list) -> None:
    for x in g.initializer:
        _tensor(t, f"{where}: initializer {x.name!r}", x)
    for s in g.sparse_initializer:
        _sparse(t, f"{where}: sparse initializer {s.values.name!r}", s)
    for vi in [*g.input, *g.output, *g.value_info]:
        dims = vi.type.tensor_type.shape.dim
        n = math.prod(d.dim_value for d in dims if d.dim_value > 0) if dims else 0
        if n > t.pol.max_tensor_elements:
            lim = t.pol.max_tensor_elements
            t.add(f"{where}: {vi.name!r} declares {n:,} elements (limit {lim:,})")
    _nodes(t, where, g.node, graphs)


# (message, field) -> kind, for every string field the lab accepts; any other string
# field that is set, and any field the ONNX schema does not define (protobuf keeps
# unknown fields as bytes), is refused: default deny.
_ID, _PR, _DIM = "ident", "prose", "dim"
_STRING_FIELDS = {
    ("ModelProto", "producer_name"): _PR,
    ("ModelProto", "producer_version"): _PR,
    ("ModelProto", "domain"): _ID,
    ("ModelProto", "doc_string"): _PR,
    ("OperatorSetIdProto", "domain"): _ID,
    ("StringStringEntryProto", "key"): _ID,
    ("StringStringEntryProto", "value"): _PR,
    ("GraphProto", "name"): _ID,
    ("GraphProto", "doc_string"): _PR,
    ("NodeProto", "input"): _ID,
    ("NodeProto", "output"): _ID,
    ("NodeProto", "name"): _ID,
    ("NodeProto", "op_type"): _ID,
    ("NodeProto", "domain"): _ID,
    ("NodeProto", "overload"): _ID,
    ("NodeProto", "doc_string"): _PR,
    ("AttributeProto", "name"): _ID,
    ("AttributeProto", "ref_attr_name"): _ID,
    ("AttributeProto", "doc_string"): _PR,
    ("AttributeProto", "s"): _PR,
    ("AttributeProto", "strings"): _PR,
    ("ValueInfoProto", "name"): _ID,
    ("ValueInfoProto", "doc_string"): _PR,
    ("TensorProto", "name"): _ID,
    ("TensorProto", "doc_string"): _PR,
    ("TensorProto", "string_data"): _PR,
    ("TensorShapeProto.Dimension", "dim_param"): _DIM,
    ("TensorShapeProto.Dimension", "denotation"): "dim_denotation",
    ("TypeProto", "denotation"): "type_denotation",
    ("TensorAnnotation", "tensor_name"): _ID,
    ("FunctionProto", "name"): _ID,
    ("FunctionProto", "input"): _ID,
    ("FunctionProto", "output"): _ID,
    ("FunctionProto", "attribute"): _ID,
    ("FunctionProto", "domain"): _ID,
    ("FunctionProto", "overload"): _ID,
    ("FunctionProto", "doc_string"): _PR,
}
_MAX_MESSAGES = 2_000_000


def _walk_strings(t: _Tally, model) -> None:
    """Every message of ``model``, once: unknown fields refused, every string field
    checked against :data:`_STRING_FIELDS` (``TensorProto.raw_data`` is weights, not
    read here)."""
    from google.protobuf.descriptor import FieldDescriptor as F
    from google.protobuf.unknown_fields import UnknownFieldSet

    todo = [("model", model)]
    seen = 0
    while todo:
        where, msg = todo.pop()
        seen += 1
        if seen > _MAX_MESSAGES:
            t.add(f"more than {_MAX_MESSAGES:,} protobuf messages")
            return
        mname = msg.DESCRIPTOR.full_name.removeprefix("onnx.")
        unknown = UnknownFieldSet(msg)
        if len(unknown):
            nums = sorted({u.field_number for u in unknown})[:5]
            t.add(f"{where}: field(s) {nums} that the ONNX schema does not define ({mname})")
        if mname == "TensorProto":
            fields = [
                (fd, getattr(msg, fd.name))
                for fd in msg.DESCRIPTOR.fields
                if fd.name != "raw_data"
                and (
                    len(getattr(msg, fd.name))
                    if fd.is_repeated
                    else msg.HasField(fd.name)
                    if fd.type == F.TYPE_MESSAGE or fd.has_presence
                    else getattr(msg, fd.name) != fd.default_value
                )
            ]
        else:
            fields = msg.ListFields()
        for fd, value in fields:
            w = f"{where}.{fd.name}"
            if mname == "TensorProto" and fd.name == "external_data":
                continue  # keys, location, offset, length: _external's allow-list
            if mname == "TensorAnnotation" and fd.name == "quant_parameter_tensor_names":
                for i, e in enumerate(value):  # names of tensors, both key and value
                    _string(t, f"{w}[{i}].key", e.key, kind=_ID)
                    _string(t, f"{w}[{i}].value", e.value, kind=_ID)
                    if len(UnknownFieldSet(e)):
                        t.add(f"{w}[{i}]: fields that the ONNX schema does not define")
                continue
            if fd.type == F.TYPE_MESSAGE:
                items = value if fd.is_repeated else [value]
                for i, v in enumerate(items):
                    label = getattr(v, "name", "") if fd.name != "dim" else ""
                    tag = f"[{i}]" if fd.is_repeated else ""
                    named = (
                        f"({escape_text(label, 40)!r})" if isinstance(label, str) and label else ""
                    )
                    todo.append((f"{w}{tag}{named}", v))
                continue
            if fd.type not in (F.TYPE_STRING, F.TYPE_BYTES):
                continue
            kind = _STRING_FIELDS.get((mname, fd.name))
            values = value if fd.is_repeated else [value]
            before = len(t.problems)
            if kind is None:
                if any(values):
                    t.add(f"{w}: a string field the lab does not read ({mname}.{fd.name})")
                continue
            for v in values:
                if len(t.problems) > before:
                    break  # one problem per field is enough (a string tensor has many)
                if kind == "type_denotation" and v not in _TYPE_DENOTATIONS:
                    t.add(f"{w} {escape_text(v, 40)!r} is not an ONNX type denotation")
                elif kind == "dim_denotation" and v not in _DIM_DENOTATIONS:
                    t.add(f"{w} {escape_text(v, 40)!r} is not an ONNX dimension denotation")
                elif kind in (_ID, _PR, _DIM):
                    _string(t, w, v, bounded=fd.name != "string_data", kind=kind)


def check_model(t: _Tally, model) -> None:
    """Every part of ``model`` (see the module docstring); problems go to ``t``."""
    pol = t.pol
    _walk_strings(t, model)
    allowed_domains = set(pol.allowed_domains)
    # each domain at most once (ONNX IR spec): a second version of the same domain
    # leaves the operators' semantics to whichever reader looks last or first
    imported: dict[str, int] = {}
    for imp in model.opset_import:
        key = "" if imp.domain in _DEFAULT_DOMAINS else imp.domain
        if key in imported:
            t.add(
                f"imports operator set {imp.domain or 'ai.onnx'!r} twice (versions "
                f"{imported[key]} and {imp.version}): a duplicate opset import is ambiguous"
            )
        imported.setdefault(key, imp.version)
    if "" not in imported:
        t.add("imports no default operator set (ai.onnx): the operators' versions are unknown")
    for imp in model.opset_import:
        if imp.domain not in allowed_domains and imp.domain not in _DEFAULT_DOMAINS:
            t.add(
                f"imports operator set of custom domain {imp.domain!r}, not allowed by the policy"
            )
    if len(model.metadata_props) > 256:
        t.add(f"{len(model.metadata_props)} metadata properties (limit 256)")
    graphs: list = [("graph", model.graph)]
    for f in model.functions:
        t.add(f"defines local function {f.domain}:{f.name} (custom operators are refused)")
        fw = f"function {f.domain}:{f.name}"
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
    seen: list = []
    while graphs:
        where, g = graphs.pop()
        seen.append((where, g))
        if len(seen) > 10_000:
            t.add("more than 10,000 graphs")
            break
        _graph(t, where, g, graphs)
    t.graphs = seen
    if t.total > pol.max_param_bytes:
        t.add(
            f"parameters total {t.total / 2**20:,.1f} MiB "
            f"(limit {pol.max_param_bytes / 2**20:,.0f} MiB)"
        )


# subgraphs inside subgraphs: real exporters nest a few (a Loop body holding an If);
# protobuf's parsers stop at 100 message levels, four of them a subgraph level
MAX_SUBGRAPH_DEPTH = 16


def _subgraph_depth(path) -> int | None:
    import mmap

    from facelab.gates.importing.checks._onnx_wire import subgraph_depth

    with open(path, "rb") as f:
        if not os.fstat(f.fileno()).st_size:
            return 0
        with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mm:
            return subgraph_depth(mm, stop=MAX_SUBGRAPH_DEPTH)


def run(ctx: GateContext) -> CheckResult:
    """Parse ``model.onnx`` of the private copy and check it (inside the confinement)."""
    import onnx

    if "model.onnx" not in ctx.package.files:
        return result(NAME, ["model.onnx: missing"])
    path = ctx.package.path("model.onnx")
    depth = _subgraph_depth(path)
    if depth is not None and depth > MAX_SUBGRAPH_DEPTH:
        return result(
            NAME,
            [
                f"model.onnx: subgraphs nested more than {MAX_SUBGRAPH_DEPTH} deep (If, Loop "
                "or Scan bodies inside each other; parsers and ONNX's own checks recurse "
                "through them and stop or overflow)"
            ],
        )
    try:
        model = onnx.load_model(str(path), load_external_data=False)
    except Exception as e:  # protobuf DecodeError, RecursionError and friends
        return result(NAME, [f"model.onnx: not a valid ONNX model ({e.__class__.__name__})"])
    t = _Tally(ctx)
    check_model(t, model)
    problems = t.problems + unreferenced_binaries(ctx) + external_data.coverage_problems(ctx)
    if not problems:  # external data located and bounded: the values can be read
        found = onnx_values.check(model, t.pol, path.parent, t.graphs)
        found += onnx_graph.check(model, t.pol, path.parent)
        if not found:  # sizes bounded, control flow not from pixels: the work is countable
            found += onnx_compute.check(model, t.pol, ctx.model_json)
        problems += [f"model.onnx: {p}" for p in found]
    if not problems:
        try:
            onnx.checker.check_model(str(path))
        except Exception as e:
            problems.append(f"model.onnx: onnx.checker refuses it: {str(e).splitlines()[0][:300]}")
    if not problems:
        ctx.onnx_model = model
    return result(NAME, problems, f"{t.nodes} nodes, {t.total / 2**20:.1f} MiB of parameters")
