"""The work a model asks for per image, bounded before anything runs (issue 15).

A red team's model chained 400 ``MatMul`` of a 1024 x 1024 constant with itself: the
graph's output does not depend on them, no size or count is large, and onnxruntime
folds the chain once when the session is built, 860 GFLOP that the smoke test's clock
measured at whatever speed the machine had that minute. The class is *work*, whether
it runs at load (constant folding) or on every image, in any branch: this check sums an
upper bound of the floating-point operations of every node of every graph, with shapes
from ONNX shape inference for one image at the size ``model.json`` declares (and again
per image for the largest batch a lab job feeds: work that grows faster than the batch
is held to the same bound), and refuses a model above ``import.max_gflops``.

Shapes. The graph's input gets batch 1 and the declared height, width and channels
(its symbolic dimensions replaced), then ``onnx.shape_inference.infer_shapes`` with
data propagation (shapes computed by ``Shape``/``Gather``/``Concat`` are followed).
A node whose output shape stays unknown, or whose shape is symbolic, is refused: what
cannot be bounded is not admitted (default deny; the graph check already refuses sizes
computed from pixel values).

Cost per node, in FLOPs (a multiply-add counts 2), an upper bound each:

* ``MatMul`` 2·|Y|·K, ``Gemm`` 2·M·N·K (+|Y| for C), ``Conv`` 2·|Y|·|W|/C_out,
  ``ConvTranspose`` 2·|X|·|W|/C_in, ``Einsum`` 2·∏ of every index's size (without
  the subscripts parsed: 2·∏ of the inputs' sizes, which bounds it);
* pooling |Y|·∏kernel; everything else the sum of its inputs' and outputs' sizes;
* ``If`` the dearer branch; ``Loop`` its body times the trip count (a constant one, or
  ``import.max_loop_iterations`` when the count comes from shapes); ``Scan`` its body
  times the scanned axis's length.

Defined here (no standard defines a model's cost); the per-operator counts are the
usual ones (e.g. the FLOP counts of fvcore and of onnx-tool). ArcFace's iResNet-100 at
112 x 112 is about 24 GFLOP by this count.
"""

from __future__ import annotations

import math

import numpy as np

_CONST_MAX = 4096  # elements of an outer constant a subgraph's inference sees by value
_POOLS = {"MaxPool", "AveragePool", "LpPool", "MaxRoiPool", "MaxUnpool"}


class _Unbounded(Exception):
    pass


def _input_shape(vi, model_json: dict | None, batch: int = 1) -> list[int]:
    """The shape of graph input ``vi`` for ``batch`` images of the declared size."""
    inp = (model_json or {}).get("input") or {}
    size = inp.get("size") or [None, None]
    h, w = ([*list(size), None, None])[:2]
    ch = 1 if inp.get("channels") == "GRAY" else 3
    nhwc = inp.get("layout") == "NHWC"
    dims = vi.type.tensor_type.shape.dim
    known = {0: batch}
    if len(dims) == 4:
        known.update({3: ch, 1: h, 2: w} if nhwc else {1: ch, 2: h, 3: w})
    out = []
    for i, d in enumerate(dims):
        if d.HasField("dim_value"):
            out.append(int(d.dim_value))
        elif known.get(i) is not None:
            out.append(int(known[i]))
        else:
            raise _Unbounded(f"graph input {vi.name!r} dimension {i} is symbolic")
    return out


def _produced(g) -> set[str]:
    names = {x.name for x in g.input} | {x.name for x in g.initializer}
    names |= {x.values.name for x in g.sparse_initializer}
    for node in g.node:
        names.update(node.output)
    return names


def _used(g) -> set[str]:
    """Every name ``g`` reads, its subgraphs' outer references included."""
    names: set[str] = set()
    for node in g.node:
        names.update(x for x in node.input if x)
        for a in node.attribute:
            for sg in [a.g] if a.type == a.GRAPH else (a.graphs if a.type == a.GRAPHS else []):
                names |= _used(sg) - _produced(sg)
    return names


def _small_constants(g, outer: dict) -> dict:
    """``outer`` plus ``g``'s initializers and ``Constant`` values of at most
    ``_CONST_MAX`` elements (axes, shapes, indices a subgraph reads from outside)."""
    out = dict(outer)
    for x in g.initializer:
        if math.prod(x.dims) <= _CONST_MAX and not x.external_data:
            out[x.name] = x
    for node in g.node:
        if node.op_type == "Constant" and len(node.output) == 1:
            for a in node.attribute:
                if (
                    a.name == "value"
                    and math.prod(a.t.dims) <= _CONST_MAX
                    and not a.t.external_data
                ):
                    t = type(a.t)()
                    t.CopyFrom(a.t)
                    t.name = node.output[0]
                    out[t.name] = t
    return out


def _infer(g, bind: dict, outer: dict, opsets, consts: dict | None = None) -> dict:
    """{name: (elem_type, shape)} of every value of graph ``g`` (not of its subgraphs):
    ``g`` copied into a model of its own whose inputs are ``g``'s inputs with the shapes
    in ``bind`` plus the outer names it reads with their shapes, then ONNX shape
    inference. Shapes the tenant declared (value_info, outputs) are dropped first: a
    claim is not evidence."""
    import onnx
    from onnx import helper, shape_inference

    c = onnx.GraphProto()
    c.CopyFrom(g)
    del c.value_info[:]
    for vi in c.output:
        if vi.type.HasField("tensor_type"):
            vi.type.tensor_type.ClearField("shape")
    for vi in c.input:
        if vi.name in bind and vi.type.HasField("tensor_type"):
            et, shape = bind[vi.name]
            vi.type.tensor_type.elem_type = vi.type.tensor_type.elem_type or et
            vi.type.tensor_type.ClearField("shape")
            vi.type.tensor_type.shape.SetInParent()
            for n in shape:
                vi.type.tensor_type.shape.dim.add().dim_value = n
    for name in sorted(_used(g) - _produced(g)):
        if name in (consts or {}):  # an outer constant: its value, for data propagation
            c.initializer.append(consts[name])
        elif name in outer:
            et, shape = outer[name]
            c.input.append(helper.make_tensor_value_info(name, et, shape))
    m = helper.make_model(c, opset_imports=list(opsets))
    m.ir_version = 10
    m = shape_inference.infer_shapes(m, check_type=False, strict_mode=False, data_prop=True)
    table: dict = {}
    gi = m.graph
    for x in gi.initializer:
        table[x.name] = (x.data_type, [int(d) for d in x.dims])
    for x in gi.sparse_initializer:
        table[x.values.name] = (x.values.data_type, [int(d) for d in x.dims])
    for vi in list(gi.input) + list(gi.value_info) + list(gi.output):
        if not vi.type.HasField("tensor_type") or not vi.type.tensor_type.HasField("shape"):
            continue
        dims = vi.type.tensor_type.shape.dim
        if all(d.HasField("dim_value") and d.dim_value >= 0 for d in dims):
            table[vi.name] = (vi.type.tensor_type.elem_type, [int(d.dim_value) for d in dims])
    return table


def _n(shape) -> int:
    return math.prod(shape) if shape else 1


def _attr(node, name, default=None):
    from onnx import helper

    for a in node.attribute:
        if a.name == name:
            return helper.get_attribute_value(a)
    return default


def _node_cost(node, table: dict, where: str) -> int:
    """FLOPs of one node without subgraphs; raises _Unbounded on an unknown shape."""
    label = f"{where}: node {node.name or node.op_type} ({node.op_type})"
    if node.op_type in ("If", "Loop", "Scan"):
        return 0  # their work is their subgraphs' (counted by the caller)

    def shape(name):
        if name not in table:
            raise _Unbounded(f"{label}: the shape of {name!r} cannot be inferred statically")
        return table[name]

    ins = [shape(x) if x else [] for x in node.input]
    outs = [shape(y) for y in node.output if y]
    op = node.op_type
    y = outs[0] if outs else []
    if op == "MatMul" and len(ins) >= 2:
        k = ins[0][-1] if ins[0] else 1
        return 2 * _n(y) * k
    if op == "Gemm" and len(ins) >= 2:
        a = ins[0]
        k = (a[0] if _attr(node, "transA", 0) else a[-1]) if a else 1
        return 2 * _n(y) * k + _n(y)
    if op in ("Conv", "ConvInteger", "QLinearConv") and len(ins) >= 2:
        w = ins[1] if op != "QLinearConv" else ins[3]
        per_out = _n(w[1:]) if len(w) > 1 else 1
        return 2 * _n(y) * per_out
    if op == "ConvTranspose" and len(ins) >= 2:
        w = ins[1]
        per_in = _n(w[1:]) if len(w) > 1 else 1
        return 2 * _n(ins[0]) * per_in
    if op == "Einsum":
        return 2 * _einsum_size(_attr(node, "equation", b""), ins)
    if op in _POOLS:
        return _n(y) * _n(list(_attr(node, "kernel_shape", []) or [1]))
    return sum(_n(s) for s in ins) + sum(_n(s) for s in outs)


def _einsum_size(equation, ins) -> int:
    """∏ of every index's size; 2·∏|inputs| bounds it when the subscripts are not plain."""
    eq = equation.decode() if isinstance(equation, bytes) else str(equation)
    lhs = eq.replace(" ", "").split("->")[0]
    terms = lhs.split(",")
    if "." not in lhs and len(terms) == len(ins):
        sizes: dict[str, int] = {}
        for t, s in zip(terms, ins, strict=False):
            if len(t) != len(s):
                break
            for c, d in zip(t, s, strict=False):
                sizes[c] = max(sizes.get(c, 1), d)
        else:
            return math.prod(sizes.values()) if sizes else 1
    return math.prod(_n(s) for s in ins)


def _graph_cost(
    g,
    bind: dict,
    outer: dict,
    where: str,
    pol,
    opsets,
    consts: dict | None = None,
    peak: list | None = None,
) -> tuple[int, dict]:
    """FLOPs of graph ``g`` and its value table. ``outer`` holds the enclosing scopes'
    values, ``bind`` the types and shapes of ``g``'s own inputs, ``consts`` the
    enclosing scopes' small constants."""
    own = _infer(g, bind, outer, opsets, consts)
    if peak is not None:  # the largest value this graph makes: (bytes, name)
        for name, (et, shape) in own.items():
            size = _n(shape) * _itemsize(et)
            if size > peak[0]:
                peak[:] = [size, f"{where}: {name!r}"]
    consts = _small_constants(g, consts or {})
    table = {**outer, **own}
    shapes = {k: v[1] for k, v in table.items()}
    total = 0
    for node in g.node:
        label = f"{where}: node {node.name or node.op_type}"
        subs = [(a.name, a.g) for a in node.attribute if a.type == a.GRAPH]
        subs += [(a.name, s) for a in node.attribute if a.type == a.GRAPHS for s in a.graphs]
        if not subs:
            total += _node_cost(node, shapes, where)
        elif node.op_type == "If":
            total += max(
                _graph_cost(sg, {}, table, f"{label} {n}", pol, opsets, consts, peak)[0]
                for n, sg in subs
            )
        elif node.op_type in ("Loop", "Scan") and len(subs) == 1:
            sub = subs[0][1]
            where_sub = f"{label} {subs[0][0]}"
            total += _body_cost(node, sub, table, where_sub, g, pol, opsets, consts, peak)
            shapes.update({k: v[1] for k, v in table.items()})
        else:
            raise _Unbounded(f"{label} ({node.op_type}): a subgraph of an unknown kind")
    return total, table


def _get(table: dict, name: str, label: str):
    if name not in table:
        raise _Unbounded(f"{label}: the shape of {name!r} cannot be inferred statically")
    return table[name]


def _body_cost(
    node, body, table: dict, label: str, g, pol, opsets, consts: dict, peak: list | None
) -> int:
    """A Loop or Scan body's FLOPs times its iterations. Loop-carried values take their
    initial shapes and must keep them: a value that grows each iteration (a Concat onto
    itself) has no static bound. The node's outputs get their shapes in ``table``."""
    from onnx import TensorProto

    ins = [i.name for i in body.input]
    outs = [o.name for o in body.output]
    bind: dict = {}
    if node.op_type == "Loop":
        carried = [x for x in node.input[2:]]
        first, out_first = 2, 1
        if len(ins) >= 2:
            bind[ins[0]] = (TensorProto.INT64, [])
            bind[ins[1]] = (TensorProto.BOOL, [])
        iterations = _trips(node, g, pol)
    else:
        n_scan = int(_attr(node, "num_scan_inputs", 0) or 0)
        carried = list(node.input[: len(node.input) - n_scan])
        first, out_first = 0, 0
        axes = list(_attr(node, "scan_input_axes", []) or [0] * n_scan)
        iterations = 1
        for k, name in enumerate(node.input[len(node.input) - n_scan :]):
            et, s = _get(table, name, label)
            ax = axes[k] if k < len(axes) else 0
            ax = ax + len(s) if ax < 0 else ax
            if not 0 <= ax < len(s):
                raise _Unbounded(f"{label}: scan axis {ax} outside {name!r}")
            iterations = max(iterations, s[ax])
            if len(carried) + k < len(ins):
                bind[ins[len(carried) + k]] = (et, s[:ax] + s[ax + 1 :])
    for k, name in enumerate(carried):
        if first + k < len(ins):
            bind[ins[first + k]] = _get(table, name, label)
    cost, inner = _graph_cost(body, bind, table, label, pol, opsets, consts, peak)
    for k in range(len(carried)):
        o = outs[out_first + k] if out_first + k < len(outs) else None
        i = ins[first + k] if first + k < len(ins) else None
        if o is None or i is None or _get(inner, o, label)[1] != bind[i][1]:
            raise _Unbounded(
                f"{label}: loop-carried value {k} changes shape across iterations (no static "
                "bound on its size or on the work done with it)"
            )
    for k, y in enumerate(node.output):
        if not y:
            continue
        if k < len(carried):
            table[y] = bind[ins[first + k]]
        else:
            o = outs[out_first + k] if out_first + k < len(outs) else None
            if o is not None and o in inner:
                et, s = inner[o]
                table[y] = (et, [iterations, *s])
    return cost * iterations


def _trips(node, g, pol) -> int:
    """A Loop's trip count when a constant sets it, else the policy's bound."""
    limit = int(getattr(pol, "max_loop_iterations", 10_000))
    name = node.input[0] if node.input else ""
    if name:
        for x in g.initializer:
            if x.name == name:
                from onnx import numpy_helper

                v = numpy_helper.to_array(x).reshape(-1)
                return max(0, min(int(v[0]), limit)) if v.size else limit
        for n in g.node:
            if n.op_type == "Constant" and name in n.output:
                from onnx import numpy_helper

                t = _attr(n, "value")
                if t is not None:
                    v = np.asarray(numpy_helper.to_array(t)).reshape(-1)
                    return max(0, min(int(v[0]), limit)) if v.size else limit
    return limit


def _itemsize(elem_type: int) -> int:
    from onnx import helper

    try:
        return max(1, np.dtype(helper.tensor_dtype_to_np_dtype(elem_type)).itemsize)
    except Exception:  # strings and unknown types: counted as 8 bytes an element
        return 8


def work(model, model_json: dict | None, pol=None, batch: int = 1) -> tuple[float, int, str]:
    """(GFLOP, bytes of the largest value, its name) of ``model`` for a batch of
    ``batch`` images: an upper bound of the work (10^9 floating-point operations, a
    multiply-add counting 2; every branch and loop included, see the module docstring)
    and the largest tensor any node makes. Raises ``ValueError`` naming the node whose
    shape cannot be inferred statically."""
    g = model.graph
    inits = {x.name for x in g.initializer}
    bind = {}
    peak: list = [0, ""]
    try:
        for vi in g.input:
            if vi.name not in inits and vi.type.HasField("tensor_type"):
                bind[vi.name] = (vi.type.tensor_type.elem_type, _input_shape(vi, model_json, batch))
        cost, _ = _graph_cost(g, bind, {}, "graph", pol, model.opset_import, None, peak)
    except _Unbounded as e:
        raise ValueError(str(e)) from None
    return cost / 1e9, int(peak[0]), str(peak[1])


def gflops(model, model_json: dict | None, pol=None, batch: int = 1) -> float:
    """The GFLOP of :func:`work`."""
    return work(model, model_json, pol, batch)[0]


def check(model, pol, model_json: dict | None) -> list[str]:
    """Problems of ``model``'s work per image against ``import.max_gflops``, and of its
    largest value against ``import.max_tensor_mb``, one line each (none when within
    both). Counted at batch 1 and at the largest batch a lab job feeds
    (``smoke.JOB_BATCH``): work that grows faster than the batch (a size computed from
    the batch dimension) is held to the same bound per image, and a value that explodes
    with the batch is seen at the batch a job uses."""
    from facelab.gates.importing.checks.smoke import JOB_BATCH

    limit = float(getattr(pol, "max_gflops", 50.0))
    mem = int(getattr(pol, "max_tensor_mb", 2048)) << 20
    for batch in (1, JOB_BATCH):
        try:
            total, peak, where = work(model, model_json, pol, batch)
        except ValueError as e:
            return [f"{e}: the work the model asks for has no static bound (default deny)"]
        except Exception as e:  # shape inference refusing the graph
            return [
                f"graph: ONNX shape inference refuses it ({e.__class__.__name__}): the work "
                "the model asks for has no static bound"
            ]
        if total / batch > limit:
            return [
                f"graph: asks for {total / batch:,.1f} GFLOP per image at batch {batch}, "
                "every node, branch and loop counted, constant subgraphs included (limit "
                f"{limit:g}, import.max_gflops): a compute bomb, at load or on every image"
            ]
        if peak > mem:
            return [
                f"{where} is {peak / 2**20:,.0f} MiB at batch {batch} (limit "
                f"{mem >> 20:,}, import.max_tensor_mb): a memory bomb"
            ]
    return []
