"""ONNX parsed, never executed: operators against the policy's allow-list, declared sizes
under the policy's limits, external data that stays inside the package, onnx.checker.

Order matters: sizes and references are checked on the parsed protobuf first (a model
that declares a 10 GB initializer is refused before anything allocates it), and only
then does onnx.checker run. The checker and shape inference accept unknown custom
domains (``evil.io:ReadFile``) and do not check external-data paths, hence the rest.
"""

from __future__ import annotations

import math
from pathlib import PurePosixPath

from lab.gates.importing._types import CheckResult, GateContext, result
from lab.gates.importing.checks.files import unreferenced_binaries

NAME = "onnx"
_DEFAULT_DOMAINS = ("", "ai.onnx")


def _graphs(graph):
    """A graph and every subgraph (Loop, If, Scan bodies), depth first."""
    import onnx

    yield graph
    for node in graph.node:
        for a in node.attribute:
            if a.type == onnx.AttributeProto.GRAPH:
                yield from _graphs(a.g)
            elif a.type == onnx.AttributeProto.GRAPHS:
                for g in a.graphs:
                    yield from _graphs(g)


def _tensors(graph):
    """Initializers and tensor-valued attributes (Constant nodes), with a location."""
    import onnx

    for t in graph.initializer:
        yield f"initializer {t.name!r}", t
    for s in graph.sparse_initializer:
        yield f"sparse initializer {s.values.name!r}", s.values
    for node in graph.node:
        for a in node.attribute:
            if a.type == onnx.AttributeProto.TENSOR:
                yield f"node {node.name or node.op_type!r} attribute {a.name}", a.t
            elif a.type == onnx.AttributeProto.TENSORS:
                for t in a.tensors:
                    yield f"node {node.name or node.op_type!r} attribute {a.name}", t


def run(ctx: GateContext) -> CheckResult:
    import onnx
    from onnx import helper

    pol = ctx.policy
    if "model.onnx" not in ctx.package.files:
        return result(NAME, ["model.onnx: missing"])
    path = ctx.package.path("model.onnx")
    try:
        model = onnx.load_model(str(path), load_external_data=False)
    except Exception as e:  # protobuf DecodeError and friends
        return result(NAME, [f"model.onnx: not a valid ONNX model ({e.__class__.__name__})"])
    problems: list[str] = []
    allowed_domains = set(pol.allowed_domains)
    for imp in model.opset_import:
        if imp.domain not in allowed_domains and imp.domain not in _DEFAULT_DOMAINS:
            problems.append(
                f"model.onnx: imports operator set of custom domain "
                f"{imp.domain!r}, not allowed by the policy"
            )
    for f in model.functions:
        problems.append(
            f"model.onnx: defines local function {f.domain}:{f.name} (custom operators are refused)"
        )
    total_bytes = 0
    for graph in _graphs(model.graph):
        for node in graph.node:
            dom = node.domain or ""
            if dom not in allowed_domains:
                problems.append(
                    f"model.onnx: node {node.name or '?'} uses operator "
                    f"{dom}:{node.op_type} from a domain the policy does not allow"
                )
            elif dom in _DEFAULT_DOMAINS and node.op_type not in pol.allowed_ops:
                problems.append(
                    f"model.onnx: node {node.name or '?'} uses operator "
                    f"{node.op_type}, not in the policy's allow-list"
                )
        for vi in [*graph.input, *graph.output, *graph.value_info]:
            dims = vi.type.tensor_type.shape.dim
            n = math.prod(d.dim_value for d in dims if d.dim_value > 0) if dims else 0
            if n > pol.max_tensor_elements:
                problems.append(
                    f"model.onnx: {vi.name!r} declares {n:,} elements "
                    f"(limit {pol.max_tensor_elements:,})"
                )
        for where, t in _tensors(graph):
            n = math.prod(t.dims) if t.dims else 1
            if any(d < 0 for d in t.dims):
                problems.append(f"model.onnx: {where} has a negative dimension")
                continue
            try:
                item = helper.tensor_dtype_to_np_dtype(t.data_type).itemsize
            except Exception:
                item = 8
            nbytes = n * item
            total_bytes += nbytes
            if n > pol.max_tensor_elements:
                problems.append(
                    f"model.onnx: {where} declares {n:,} elements, "
                    f"{nbytes / 2**30:.1f} GiB (limit {pol.max_tensor_elements:,})"
                )
            if t.data_location == onnx.TensorProto.EXTERNAL:
                problems += _external(ctx, where, t, nbytes)
    if total_bytes > pol.max_param_bytes:
        problems.append(
            f"model.onnx: parameters total {total_bytes / 2**20:,.0f} MiB "
            f"(limit {pol.max_param_bytes / 2**20:,.0f} MiB)"
        )
    problems += unreferenced_binaries(ctx)
    if not problems:
        try:
            onnx.checker.check_model(model)
        except Exception as e:
            problems.append(f"model.onnx: onnx.checker refuses it: {str(e).splitlines()[0]}")
    if not problems:
        ctx.onnx_model = model
    return result(
        NAME,
        problems,
        f"{sum(len(g.node) for g in _graphs(model.graph))} nodes, "
        f"{total_bytes / 2**20:.1f} MiB of parameters",
    )


def _external(ctx: GateContext, where: str, t, nbytes: int) -> list[str]:
    info = {e.key: e.value for e in t.external_data}
    loc = info.get("location", "")
    p = PurePosixPath(loc)
    if not loc or p.is_absolute() or ".." in p.parts or "\\" in loc or loc.startswith("~"):
        return [f"model.onnx: {where} points outside the package (external data {loc!r})"]
    rel = p.as_posix()
    if rel not in ctx.package.files:
        return [f"model.onnx: {where} refers to missing external data file {rel!r}"]
    try:
        offset = int(info.get("offset", "0"))
        length = int(info.get("length", str(nbytes)))
    except ValueError:
        return [f"model.onnx: {where} has a malformed external-data offset or length"]
    if offset < 0 or length < 0 or offset + length > ctx.package.files[rel]:
        return [f"model.onnx: {where} reads past the end of {rel!r}"]
    ctx.external_files.add(rel)
    return []
