"""What the graph would do, read statically over every graph (issue 15 round 4).

The smoke test runs six kinds of input; a branch none of them takes is never run. A red
team hid a 256 GiB ``ConstantOfShape`` and a Loop of 10^15 iterations in an ``If`` on a
three-pixel "sticker", and a backdoor (the same template for anyone wearing the
sticker) behind the same kind of ``If``. Two rules, over the main graph and every
subgraph at any depth:

**Resource bounds from constants.** Constants are folded (initializers, ``Constant``
nodes, and small integer arithmetic on them: ``Identity``, ``Cast``, ``Concat``,
``Unsqueeze``, ``Squeeze``, ``Add``, ``Sub``, ``Mul``, ``Div``, ``Max``, ``Min``,
``Abs``, ``Neg``, ``Gather``; integers in Python's, so a product cannot wrap), and
every operator whose output size or iteration count they set is bounded by the policy:

* ``ConstantOfShape``, ``Expand``, ``Reshape`` (its shape), ``Range`` (its length), and
  ``Resize``'s ``sizes``: at most ``import.max_computed_elements`` elements;
* ``Tile``'s repeats and ``Resize``/``Upsample``'s scales: a product of at most
  ``import.max_scale_factor``; ``Pad``: each pad at most ``import.max_pad``;
* ``Loop``: a trip count at most ``import.max_loop_iterations``, multiplied through
  nested Loops; a Loop with neither a trip count nor a condition that can stop it (the
  condition a constant true) is unbounded and refused.

**Control flow does not depend on the input's values** (data flow from the graph
inputs). Every value is marked *value-dependent* (computed from the input's pixels) or
not, and *shape-dependent* (its shape computed from the input's pixels) or not. Graph
inputs are value-dependent with fixed shapes; ``Shape`` and ``Size`` of a tensor whose
shape does not depend on values are not value-dependent (what torch.onnx emits for a
branch on the batch size); everything else is value-dependent when any input is, and
subgraphs see the marks of the outer names they use and of the inputs their node
feeds them. Refused: an ``If`` condition, a ``Loop`` trip count or condition (the
body's condition output included), and the size input of the operators above, when
value-dependent. A template is a function of the face, computed the same way for
every face: a trigger in the pixels that switches the computation is a backdoor.

What stays out of reach: an *arithmetic* backdoor, a trigger blended in with
``Where``, ``Mul`` or a steep ``Sigmoid`` without control flow, is data flow like any
other layer's and is not told apart here (the smoke test's discrimination rule catches
the degenerate case where every face gives the same template); shape-derived sizes
scaled by constants the folder does not evaluate are left to the smoke test's limits.
"""

from __future__ import annotations

import math

import numpy as np

# operators whose outputs' *shapes* follow from their inputs' shapes and attributes
# alone (plus the shape, axis and index inputs listed in onnx_values.STRUCTURAL):
# a value-dependent data input makes the output value-dependent, not shape-dependent
_SHAPE_FROM_SHAPES = {
    "Abs", "Add", "And", "ArgMax", "ArgMin", "AveragePool", "BatchNormalization", "Cast",
    "Ceil", "Clip", "Concat", "Conv", "ConvTranspose", "Cos", "Div", "Dropout", "Einsum",
    "Elu", "Equal", "Erf", "Exp", "Flatten", "Floor", "Gather", "GatherElements",
    "GatherND", "Gelu", "Gemm", "GlobalAveragePool", "GlobalMaxPool", "Greater",
    "GreaterOrEqual", "GroupNormalization", "HardSigmoid", "HardSwish", "Identity",
    "InstanceNormalization", "LayerNormalization", "LeakyRelu", "Less", "LessOrEqual",
    "Log", "LogSoftmax", "LpNormalization", "MatMul", "Max", "MaxPool", "Mean", "Min",
    "Mish", "Mod", "Mul", "Neg", "Not", "Or", "Pow", "PRelu", "Reciprocal", "ReduceL1",
    "ReduceL2", "ReduceLogSum", "ReduceLogSumExp", "ReduceMax", "ReduceMean",
    "ReduceMin", "ReduceProd", "ReduceSum", "ReduceSumSquare", "Relu", "Round", "Selu",
    "Shape", "Sigmoid", "Sign", "Sin", "Size", "Softmax", "Softplus", "Softsign", "Sqrt",
    "Sub", "Sum", "Tanh", "Transpose", "Trilu", "Where", "Xor",
    # their size inputs are checked apart (_SIZE_INPUTS): a value-dependent one is refused
    "Expand", "Tile", "Reshape", "Range", "Resize", "Upsample", "Pad", "Slice", "Split",
    "TopK", "Unsqueeze", "Squeeze",
}  # fmt: skip
# (operator, input index) that sets an output's size or an iteration count
_SIZE_INPUTS = {
    "ConstantOfShape": (0,),
    "Expand": (1,),
    "Tile": (1,),
    "Reshape": (1,),
    "Range": (0, 1, 2),
    "Resize": (1, 2, 3),
    "Upsample": (1,),
    "Pad": (1,),
    "Slice": (1, 2, 3, 4),
    "Split": (1,),
    "TopK": (1,),
    "Unsqueeze": (1,),
    "Squeeze": (1,),
    "Loop": (0, 1),
    "If": (0,),
}
_FOLD_MAX = 4096  # elements of a folded constant


class _Ctx:
    def __init__(self, pol, base) -> None:
        self.pol = pol
        self.base = base
        self.problems: list[str] = []
        self.max_elems = int(getattr(pol, "max_computed_elements", 1 << 26))
        self.max_scale = float(getattr(pol, "max_scale_factor", 64))
        self.max_pad = int(getattr(pol, "max_pad", 4096))
        self.max_iter = int(getattr(pol, "max_loop_iterations", 10_000))

    def add(self, msg: str) -> None:
        if len(self.problems) < 40:
            self.problems.append(msg)


def _array(x, base):
    from onnx import numpy_helper

    n = math.prod(x.dims) if x.dims else 1
    if n > _FOLD_MAX:
        return None
    try:
        return numpy_helper.to_array(x, base_dir=str(base))
    except Exception:
        return None


def _constant(node, base):
    from onnx import helper

    for a in node.attribute:
        if a.name == "value":
            return _array(a.t, base)
        if a.name in ("value_int", "value_ints", "value_float", "value_floats"):
            return np.asarray(helper.get_attribute_value(a))
    return None


def _attr(node, name, default=None):
    from onnx import helper

    for a in node.attribute:
        if a.name == name:
            return helper.get_attribute_value(a)
    return default


def _fold(node, ins):
    """The output of a small integer-or-float computation on constants, or None."""
    op = node.op_type
    try:
        with np.errstate(all="ignore"):
            if op in ("Identity",):
                return ins[0]
            if op == "Cast":
                from onnx import helper

                return ins[0].astype(helper.tensor_dtype_to_np_dtype(_attr(node, "to")))
            if op == "Concat":
                return np.concatenate([np.atleast_1d(i) for i in ins], axis=_attr(node, "axis", 0))
            if op in ("Unsqueeze", "Squeeze", "Reshape", "Flatten"):
                return ins[0].reshape(-1) if ins[0].size <= 1 or op != "Reshape" else None
            binary = {
                "Add": np.add,
                "Sub": np.subtract,
                "Mul": np.multiply,
                "Max": np.maximum,
                "Min": np.minimum,
            }
            if op in binary and len(ins) == 2:
                # in Python integers: int64 arithmetic must not wrap a bomb small
                a, b = (np.asarray(i, object) if i.dtype.kind in "iu" else i for i in ins)
                return np.asarray(binary[op](a, b))
            if op == "Div" and len(ins) == 2:
                if ins[0].dtype.kind in "iu":
                    return np.asarray(np.asarray(ins[0], object) // np.asarray(ins[1], object))
                return ins[0] / ins[1]
            if op == "Abs":
                return np.abs(ins[0])
            if op == "Neg":
                return -ins[0]
            if op == "Gather" and len(ins) == 2:
                return np.take(ins[0], ins[1], axis=_attr(node, "axis", 0))
    except Exception:
        return None
    return None


def _bigint(v) -> list[int]:
    return [int(x) for x in np.asarray(v).reshape(-1).tolist()]


class _Flow:
    """Value- and shape-dependence marks and folded constants of one scope chain."""

    def __init__(self, parent=None) -> None:
        self.parent = parent
        self.value: dict[str, bool] = {}
        self.shape: dict[str, bool] = {}
        self.const: dict[str, np.ndarray] = {}

    def get(self, table: str, name: str):
        f = self
        while f is not None:
            d = getattr(f, table)
            if name in d:
                return d[name]
            f = f.parent
        return None

    def v(self, name: str) -> bool:
        return bool(name) and bool(self.get("value", name))

    def s(self, name: str) -> bool:
        return bool(name) and bool(self.get("shape", name))

    def c(self, name: str):
        return self.get("const", name) if name else None


def _bounds(c: _Ctx, where: str, node, ins, mult: int) -> None:
    """Refuse an operator whose constant inputs set a size or a count above the policy."""
    op = node.op_type
    label = f"{where}: node {node.name or op} ({op})"

    def elems(shape, what):
        dims = _bigint(shape)
        n = math.prod(abs(d) for d in dims) if dims else 1
        if n > c.max_elems:
            c.add(
                f"{label} {what} {n:,} elements (limit {c.max_elems:,}, "
                "import.max_computed_elements): a resource bomb, even in a branch the smoke "
                "test does not take"
            )

    if op == "ConstantOfShape" and ins[0] is not None:
        elems(ins[0], "makes a tensor of")
    elif op == "Expand" and len(ins) > 1 and ins[1] is not None:
        elems(ins[1], "expands to at least")
    elif op == "Reshape" and len(ins) > 1 and ins[1] is not None:
        elems(ins[1], "reshapes to")
    elif op == "Range" and all(i is not None for i in ins[:3]) and len(ins) >= 3:
        try:
            start, limit, delta = (float(np.asarray(i).reshape(-1)[0]) for i in ins[:3])
            n = max(math.ceil((limit - start) / delta), 0) if delta else math.inf
        except (ValueError, OverflowError, IndexError):
            n = math.inf
        if n > c.max_elems:
            c.add(f"{label} makes a range of {n:,} elements (limit {c.max_elems:,}, "
                  "import.max_computed_elements): a resource bomb")  # fmt: skip
    elif op == "Tile" and len(ins) > 1 and ins[1] is not None:
        f = math.prod(abs(d) for d in _bigint(ins[1]))
        if f > c.max_scale:
            c.add(f"{label} repeats its input {f:,} times (limit {c.max_scale:g}, "
                  "import.max_scale_factor): a resource bomb")  # fmt: skip
    elif op in ("Resize", "Upsample"):
        scales = ins[2] if op == "Resize" and len(ins) > 2 else (ins[1] if len(ins) > 1 else None)
        sc = _attr(node, "scales") if op == "Upsample" and scales is None else scales
        if sc is not None and np.asarray(sc).size:
            vals = np.asarray(sc, np.float64).reshape(-1)
            f = float(np.prod(np.abs(vals))) if np.isfinite(vals).all() else math.inf
            if f > c.max_scale:
                c.add(f"{label} scales its input by {f:g} (limit {c.max_scale:g}, "
                      "import.max_scale_factor): a resource bomb")  # fmt: skip
        if op == "Resize" and len(ins) > 3 and ins[3] is not None:
            elems(ins[3], "resizes to")
    elif op == "Pad":
        pads = ins[1] if len(ins) > 1 else None
        pads = _attr(node, "pads") if pads is None else pads
        if pads is not None and len(_bigint(pads)) and max(_bigint(pads)) > c.max_pad:
            c.add(f"{label} pads by {max(_bigint(pads)):,} (limit {c.max_pad:,}, "
                  "import.max_pad): a resource bomb")  # fmt: skip


def _loop(c: _Ctx, where: str, node, flow: _Flow, mult: int) -> int:
    """Check a Loop's trip count and condition; return the iteration multiplier."""
    label = f"{where}: node {node.name or 'Loop'} (Loop)"
    m_name = node.input[0] if len(node.input) > 0 else ""
    k_name = node.input[1] if len(node.input) > 1 else ""
    m = flow.c(m_name)
    k = flow.c(k_name)
    if m is not None:
        trips = max(_bigint(m) or [0])
    elif m_name:
        trips = None  # from shapes: bounded by the tensors' sizes, run by the smoke test
    else:
        trips = math.inf if (not k_name or (k is not None and bool(np.all(k)))) else None
    body = _attr(node, "body")
    body_cond = body.output[0].name if body is not None and len(body.output) else ""
    stops = body_cond and not _const_true(body, body_cond)
    if trips is math.inf and not stops:
        c.add(f"{label} has no trip count and a condition that never stops it: unbounded")
        return mult
    if trips is not None and trips is not math.inf and trips * mult > c.max_iter:
        c.add(
            f"{label} runs {trips:,} iterations"
            + (f" ({trips * mult:,} with its enclosing loops)" if mult > 1 else "")
            + f" (limit {c.max_iter:,}, import.max_loop_iterations): a hang, even in a "
            "branch the smoke test does not take"
        )
    return mult * (trips if isinstance(trips, int) and trips > 0 else 1)


def _const_true(g, name: str) -> bool:
    """True when ``name`` in body ``g`` is the loop's incoming condition passed through
    (Identity of the condition input) or a constant true: it never stops the loop."""
    for node in g.node:
        if name in node.output:
            if node.op_type == "Identity" and len(g.input) > 1 and node.input[0] == g.input[1].name:
                return True
            if node.op_type == "Constant":
                v = _constant(node, ".")
                return v is not None and bool(np.all(v))
    return False


def _graph(c: _Ctx, where: str, g, flow: _Flow, mult: int) -> None:
    for x in g.initializer:
        flow.value[x.name] = False
        flow.shape[x.name] = False
        if x.data_type not in (8,):  # not strings
            a = _array(x, c.base)
            if a is not None:
                flow.const[x.name] = a
    for node in g.node:
        op = node.op_type
        ins = [flow.c(n) for n in node.input]
        label = f"{where}: node {node.name or op} ({op})"
        vdep = [flow.v(n) for n in node.input]
        sdep = [flow.s(n) for n in node.input]
        # control flow and sizes from the input's values
        for i in _SIZE_INPUTS.get(op, ()):
            if i < len(vdep) and vdep[i]:
                what = {
                    "If": "its condition",
                    "Loop": "its trip count" if i == 0 else "its condition",
                }.get(op, f"its size input {i}")
                c.add(
                    f"{label}: {what} is computed from the input's values (data-dependent "
                    "control flow or size: a trigger in the pixels that switches the "
                    "computation, a backdoor or a bomb the smoke test does not reach)"
                )
        _bounds(c, where, node, ins, mult)
        inner_mult = mult
        if op == "Loop":
            inner_mult = _loop(c, where, node, flow, mult)
        # marks of the outputs
        any_v = any(vdep)
        if op in ("Shape", "Size"):
            out_v = bool(sdep and sdep[0])
            out_s = False
        elif op == "ConstantOfShape":
            out_v = any_v
            out_s = any_v or any(sdep)
        elif op in _SHAPE_FROM_SHAPES:
            out_v = any_v
            out_s = any(sdep) or any(vdep[i] for i in _SIZE_INPUTS.get(op, ()) if i < len(vdep))
        else:  # default deny: the output's shape may follow the values
            out_v = any_v
            out_s = any_v or any(sdep)
        # subgraphs: If branches, Loop and Scan bodies
        subs = [(a.name, a.g) for a in node.attribute if a.type == a.GRAPH]
        subs += [(a.name, s) for a in node.attribute if a.type == a.GRAPHS for s in a.graphs]
        for aname, sg in subs:
            inner = _Flow(flow)
            if op == "Loop":
                # iteration number, condition, then the loop-carried values
                marks = [(False, False), (vdep[1] if len(vdep) > 1 else False, False)]
                marks += [(vdep[i], sdep[i] or vdep[i]) for i in range(2, len(vdep))]
            else:  # Scan and the rest: every body input as dependent as the node's inputs
                marks = [(any_v, any(sdep) or any_v)] * len(sg.input)
            for i, vi in enumerate(sg.input):
                mv, ms = marks[i] if i < len(marks) else (any_v, any_v or any(sdep))
                inner.value[vi.name] = mv
                inner.shape[vi.name] = ms
            _graph(c, f"{where}: node {node.name or op} {aname}", sg, inner, inner_mult)
            if op == "Loop" and len(sg.output) and inner.v(sg.output[0].name):
                c.add(
                    f"{label}: its condition is computed from the input's values "
                    "(data-dependent control flow: a loop the pixels stop or run on)"
                )
            outs_v = any(inner.v(o.name) for o in sg.output)
            outs_s = any(inner.s(o.name) for o in sg.output)
            out_v = out_v or outs_v
            out_s = out_s or outs_s or (op == "Loop" and outs_v)
        if op == "If":
            out_s = out_s or out_v  # branches may differ in shape
        for o in node.output:
            if o:
                flow.value[o] = out_v
                flow.shape[o] = out_s
        # constants
        if op == "Constant":
            v = _constant(node, c.base)
            if v is not None and node.output:
                flow.const[node.output[0]] = v
        elif node.output and ins and all(i is not None for i in ins) and not subs:
            v = _fold(node, ins)
            if v is not None and np.asarray(v).size <= _FOLD_MAX:
                flow.const[node.output[0]] = np.asarray(v)


def check(model, pol, base) -> list[str]:
    """Problems of ``model``'s graph (see the module docstring), one line each."""
    c = _Ctx(pol, base)
    flow = _Flow()
    inits = {x.name for x in model.graph.initializer}
    for vi in model.graph.input:
        if vi.name not in inits:  # an input with an initializer of the same name is one
            flow.value[vi.name] = True
            flow.shape[vi.name] = False
    _graph(c, "graph", model.graph, flow, 1)
    return c.problems
