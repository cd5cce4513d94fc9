"""Inside the confinement: parse tenant files and write the release from what was parsed
(content disarm and reconstruction). ``facelab.gates.exporting.rebuild`` calls :func:`run`
through ``facelab.confine``; nothing here runs outside it.

Each file is read as the kind the export contract gave it and rebuilt into the run's
write path; the result says, per file, ``ok`` with facts (for the report and the gate's
next steps) or ``refused`` with the reason. Nothing is executed or unpickled.
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
import unicodedata
from collections import Counter
from pathlib import Path

import numpy as np

SAFE_NAME = re.compile(r"^[A-Za-z0-9_.:/-]{1,128}$")
SAFE_ATTR_STRING = re.compile(r"^[A-Za-z0-9_]{1,32}$")
NUMBER = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$")
MAGIC = {
    b"\x93NUMPY": "npy",
    b"PK\x03\x04": "zip",
    b"\x89HDF\r\n\x1a\n": "h5",
    b"GGUF": "gguf",
    b"PAR1": "parquet",
}


class Refused(ValueError):
    """This file cannot leave as the kind it was declared; the message says why."""


MAX_DECLARED_DIM = 1 << 16  # a static axis declared larger is written symbolic


def run(files: list[dict], policy: dict, baselines: dict | None = None, seed: int = 0) -> dict:
    """Rebuild every file. ``files``: [{"name", "kind", "src", "out"}]; ``policy``: the
    contract table as a dict; ``baselines``: name -> ONNX of each model the tenant
    imported. Weights unchanged since the model a file descends from are kept bit for
    bit; changed ones are re-quantised."""
    rng = np.random.default_rng(seed)
    bases = load_baselines(baselines or {})
    out = []
    for f in files:
        try:
            Path(f["out"]).parent.mkdir(parents=True, exist_ok=True)
            facts = REBUILD[f["kind"]](Path(f["src"]), Path(f["out"]), policy, rng, bases)
            out.append({"name": f["name"], "status": "ok", "facts": facts})
        except Refused as e:
            out.append({"name": f["name"], "status": "refused", "reason": str(e)[:300]})
        except Exception as e:  # a parser of tenant bytes that fails is a refusal
            out.append(
                {
                    "name": f["name"],
                    "status": "refused",
                    "reason": f"does not parse as {f['kind']} ({type(e).__name__}: {str(e)[:160]})",
                }
            )
    return {"files": out}


def load_baselines(baselines: dict[str, str]) -> dict[str, dict[str, np.ndarray]]:
    """Read each imported model (name -> its ONNX; its model.json beside it, as
    ``<stem>.json``): returns name -> its initializers, and keeps its nodes' signatures
    and its model.json for the rebuild (``_BASE_NODES``, ``_BASE_SPECS``)."""
    bases = {}
    if not baselines:
        return bases
    import onnx
    from onnx import numpy_helper

    for name, path in baselines.items():
        bm = onnx.load(path)
        bases[name] = {t.name: numpy_helper.to_array(t) for t in bm.graph.initializer}
        _BASE_NODES[name] = Counter(_signature(n) for n in bm.graph.node)
        _BASE_DIMS[name] = {
            d.dim_value
            for v in (*bm.graph.input, *bm.graph.output)
            for d in v.type.tensor_type.shape.dim
            if d.HasField("dim_value")
        }
        spec = Path(path).with_suffix(".json")
        if spec.is_file():
            doc = json.loads(spec.read_text(encoding="utf-8"))
            if isinstance(doc, dict):
                _BASE_SPECS[name] = doc
    return bases


# the model.json of each imported model, by name@version (set by ``load_baselines``)
_BASE_SPECS: dict[str, dict] = {}

# the nodes of each imported model's graph (operator and attributes), by name@version
# (set by ``run``)
_BASE_NODES: dict[str, Counter] = {}

# the static axes the imported model declares on its inputs and outputs (free to keep)
_BASE_DIMS: dict[str, set[int]] = {}

# (operator, input position) where an integer tensor is a shape, axes, pads or bounds
SHAPE_SLOTS = frozenset(
    [("Reshape", 1), ("Expand", 1), ("Tile", 1), ("Unsqueeze", 1), ("Squeeze", 1)]
    + [("Slice", j) for j in (1, 2, 3, 4)]
    + [(op, 1) for op in ("ReduceMean", "ReduceSum", "ReduceMax", "ReduceMin", "ReduceL2")]
    + [("Pad", 1), ("Pad", 3), ("ConstantOfShape", 0), ("Resize", 3), ("Split", 1)]
)


def _signature(n) -> tuple:
    """A node's operator and attributes (names, inputs and outputs left out): the same
    signature as an imported node means nothing in it was chosen for the export."""
    return (n.domain or "", n.op_type, tuple(sorted(a.SerializeToString() for a in n.attribute)))


def _descent(tensors: dict[str, np.ndarray], bases: dict) -> tuple[str | None, dict | None]:
    """The imported model holding at least half of these tensors at the same name and
    shape (the most), or (None, None)."""
    best, best_share = (None, None), 0.5
    for name, b in bases.items():
        same = sum(1 for k, a in tensors.items() if k in b and b[k].shape == a.shape)
        share = same / max(1, len(tensors))
        if share >= best_share:
            best, best_share = (name, b), share
    return best


# ---------------------------------------------------------------- weights


def _check_floats(name: str, a: np.ndarray) -> None:
    if a.dtype.kind == "f" and not np.isfinite(a).all():
        raise Refused(f"{name}: holds NaN or infinity")


def _rebuild_tensors(
    tensors: dict[str, np.ndarray], policy: dict, rng, base: dict | None
) -> tuple[dict[str, np.ndarray], dict]:
    """Keep tensors bit-identical to the imported model; re-quantise changed and new float
    tensors (in a changed tensor, the values that differ from the imported ones); refuse
    new integer tensors beyond shape-like sizes and other dtypes. ``capacity_bits`` in the
    facts bounds what every changed value can carry, exponents included
    (``_quantise.released_bits``)."""
    from facelab.gates.exporting._quantise import released_bits, requantise

    m, m16 = int(policy["mantissa_bits"]), int(policy["mantissa_bits_half"])
    out, changed, bits, values = {}, [], 0.0, 0
    for name, a in tensors.items():
        if a.size > int(policy["max_tensor_elements"]):
            raise Refused(f"{name}: {a.size} elements exceeds export.max_tensor_elements")
        old = base.get(name) if base else None
        same_place = old is not None and old.shape == a.shape and old.dtype == a.dtype
        if same_place and old.tobytes() == a.tobytes():
            out[name] = a
            continue
        if a.dtype in (np.float32, np.float16, np.float64):
            _check_floats(name, a)
            r = requantise(np.ascontiguousarray(a), m, rng, half_bits=m16)
            kept = m16 if a.dtype == np.float16 else m
            diff = None
            if same_place:  # values equal to the imported ones stay as imported
                width = {2: np.uint16, 4: np.uint32, 8: np.uint64}[a.dtype.itemsize]
                a_bits = np.ascontiguousarray(a).view(width)
                same = a_bits == np.ascontiguousarray(old).view(width)
                r = np.where(same, old, r).astype(a.dtype)
                diff = np.ascontiguousarray(r).view(width) != np.ascontiguousarray(old).view(width)
            bits += released_bits(r, diff, kept)
            values += a.size if diff is None else int(diff.sum())
            changed.append(name)
            out[name] = r
        elif a.dtype.kind in "iub" and a.size <= int(policy["max_new_int_elements"]):
            bits += a.size * a.dtype.itemsize * 8
            values += a.size
            changed.append(name)
            out[name] = a
        else:
            raise Refused(
                f"{name}: a new or changed {a.dtype} tensor of {a.size} values; only float "
                f"weights (re-quantised) and integer tensors of at most "
                f"{policy['max_new_int_elements']} values may be new"
            )
    return out, {
        "tensors": len(tensors),
        "rebuilt": changed[:50],
        "n_rebuilt": len(changed),
        "values_changed": values,
        "capacity_bits": round(bits, 1),
        "mantissa_bits": m,
    }


def _read_weights(src: Path, policy: dict) -> tuple[str, dict[str, np.ndarray]]:
    data = src.read_bytes()
    fmt = next((k for mg, k in MAGIC.items() if data.startswith(mg)), None)
    suffix = src.suffix.lower()
    limit = int(policy["max_tensor_elements"])
    if suffix == ".safetensors":
        from safetensors.numpy import load

        (hlen,) = np.frombuffer(data[:8], "<u8") if len(data) >= 8 else (0,)
        if not 0 < hlen < min(len(data), 1 << 24):
            raise Refused("not a safetensors file (header length)")
        hdr = json.loads(data[8 : 8 + int(hlen)])
        for k, v in hdr.items():
            if k != "__metadata__" and math.prod(v.get("shape", [])) > limit:
                raise Refused(f"{k}: declared shape exceeds export.max_tensor_elements")
        return "safetensors", dict(load(data))
    if suffix == ".npy" and fmt == "npy":
        f = io.BytesIO(data)
        version = np.lib.format.read_magic(f)
        shape, _, dt = (
            np.lib.format.read_array_header_1_0(f)
            if version == (1, 0)
            else np.lib.format.read_array_header_2_0(f)
        )
        if dt.hasobject or dt.names:
            raise Refused("an object or structured array (never loaded)")
        if math.prod(shape) > limit:
            raise Refused("declared shape exceeds export.max_tensor_elements")
        return "npy", {"array": np.load(io.BytesIO(data), allow_pickle=False)}
    if suffix == ".npz" and fmt == "zip":
        z = np.load(io.BytesIO(data), allow_pickle=False)
        return "npz", {k: z[k] for k in z.files}
    if suffix in (".h5", ".hdf5", ".keras") and (fmt == "h5" or suffix == ".keras"):
        return "h5", _read_h5(data, suffix, limit)
    if suffix == ".gguf" and fmt == "gguf":
        from gguf import GGUFReader

        tmp = src
        r = GGUFReader(tmp)
        out = {}
        for t in r.tensors:
            if t.n_elements > limit:
                raise Refused(f"{t.name}: exceeds export.max_tensor_elements")
            a = np.array(t.data)
            if a.dtype not in (np.float32, np.float16):
                raise Refused(f"{t.name}: GGUF type {t.tensor_type.name} is not rebuilt")
            out[t.name] = a.reshape([int(x) for x in reversed(t.shape.tolist())])
        return "gguf", out
    if suffix in (".pt", ".pth", ".bin") and fmt == "zip":
        from facelab.gates.exporting._torchzip import Refused as TorchRefused
        from facelab.gates.exporting._torchzip import read

        try:
            return "pt", read(data, limit)
        except TorchRefused as e:
            raise Refused(str(e)) from e
    raise Refused(
        f"{suffix or '(no suffix)'} with {'bytes of ' + fmt if fmt else 'unknown bytes'}: "
        "not a data-only weight format the contract reads (npy, npz, safetensors, h5, "
        "gguf, PyTorch zip)"
    )


def _read_h5(data: bytes, suffix: str, limit: int) -> dict[str, np.ndarray]:
    import h5py

    if suffix == ".keras":  # a zip: config.json + model.weights.h5
        import zipfile

        z = zipfile.ZipFile(io.BytesIO(data))
        cfg = z.read("config.json") if "config.json" in z.namelist() else b"{}"
        _check_keras_config(cfg.decode("utf-8", "replace"))
        data = z.read("model.weights.h5")
    out: dict[str, np.ndarray] = {}
    with h5py.File(io.BytesIO(data), "r") as f:
        for key in ("model_config", "keras_version", "backend"):
            if key in f.attrs:
                v = f.attrs[key]
                _check_keras_config(v.decode() if isinstance(v, bytes) else str(v))

        def visit(name, obj):
            if isinstance(obj, h5py.Dataset):
                if obj.size > limit:
                    raise Refused(f"{name}: exceeds export.max_tensor_elements")
                if obj.dtype.kind not in "fiub":
                    raise Refused(f"{name}: dataset of type {obj.dtype} is not a weight")
                out[name] = np.asarray(obj[()])

        f.visititems(visit)
    return out


def _check_keras_config(text: str) -> None:
    if any(w in text for w in ('"Lambda"', "'Lambda'", "TFOpLambda", "__lambda__", "function")):
        raise Refused("the Keras config holds a Lambda layer or code")


def _write_weights(fmt: str, tensors: dict[str, np.ndarray], out: Path) -> Path:
    """Write the rebuilt tensors; returns the file (its suffix says the format)."""
    if fmt == "npy":
        with open(out, "wb") as fh:
            np.save(fh, tensors["array"], allow_pickle=False)
    elif fmt == "npz":
        with open(out, "wb") as fh:
            np.savez(fh, **tensors)
    elif fmt == "h5":
        import h5py

        out = out.with_suffix(".h5")
        with h5py.File(out, "w", track_order=True) as f:
            for k, a in tensors.items():
                f.create_dataset(k, data=a)
    else:  # safetensors, and the rebuild of gguf and PyTorch zips
        from safetensors.numpy import save_file

        out = out.with_suffix(".safetensors")
        save_file({k: np.ascontiguousarray(a) for k, a in tensors.items()}, str(out))
    return out


def rebuild_weights(src: Path, out: Path, policy: dict, rng, bases) -> dict:
    fmt, tensors = _read_weights(src, policy)
    names = list(tensors)
    for n in names:
        if not SAFE_NAME.match(n):
            raise Refused(f"tensor name {n[:40]!r} is not a plain name")
    parent, base = _descent(tensors, bases)
    rebuilt, facts = _rebuild_tensors(tensors, policy, rng, base)
    facts["descends_from"] = parent
    written = _write_weights(fmt, rebuilt, out)
    with open(str(written) + ".scan.npz", "wb") as fh:
        np.savez(fh, **{f"t{i}": a for i, a in enumerate(rebuilt.values())})
    facts.update({"format": fmt, "written_as": written.name, "names": names[:200]})
    return facts


# ---------------------------------------------------------------- ONNX


def rebuild_onnx(src: Path, out: Path, policy: dict, rng, bases) -> dict:
    """Only the nodes and initializers reachable from the graph's outputs, with none of
    metadata, doc strings, functions, training_info, sparse or unknown fields; value
    names not in the imported model renamed; changed weights re-quantised."""
    import onnx
    from onnx import helper, numpy_helper

    data = src.read_bytes()
    m = onnx.ModelProto()
    m.ParseFromString(data)
    g = m.graph
    allowed_ops = set(policy["allowed_ops"])
    allowed_domains = set(policy["allowed_domains"])
    limit = int(policy["max_tensor_elements"])
    for t in [*g.initializer, *(sp.values for sp in g.sparse_initializer)]:
        if t.data_location == onnx.TensorProto.EXTERNAL:
            raise Refused(f"initializer {t.name[:40]!r} keeps its data in an external file")
        if math.prod(t.dims) > limit or any(d < 0 for d in t.dims):
            raise Refused(f"initializer {t.name[:40]!r}: declared shape exceeds the limit")
    for sp in g.sparse_initializer:
        if math.prod(sp.dims) > limit or any(d < 0 for d in sp.dims):
            raise Refused("a sparse initializer's declared shape exceeds the limit")
    consts: dict[str, np.ndarray] = {}
    for t in g.initializer:
        consts[t.name] = numpy_helper.to_array(t)
    for sp in g.sparse_initializer:  # densified, then rebuilt like any weight
        dense = np.zeros(math.prod(sp.dims), numpy_helper.to_array(sp.values).dtype)
        idx = numpy_helper.to_array(sp.indices).astype(np.int64)
        if idx.ndim == 2:
            idx = np.ravel_multi_index(idx.T, tuple(sp.dims))
        dense[idx] = numpy_helper.to_array(sp.values)
        consts[sp.values.name] = dense.reshape(tuple(sp.dims))
    producers = {}
    for n in g.node:
        if n.domain not in allowed_domains or n.op_type not in allowed_ops:
            pass  # checked below for the reachable nodes only
        for o in n.output:
            producers[o] = n
    wanted = [o.name for o in g.output]
    if not wanted:
        raise Refused("the graph declares no outputs")
    keep_nodes, seen, stack = [], set(), list(wanted)
    used_consts: set[str] = set()
    while stack:
        v = stack.pop()
        if v in seen or not v:
            continue
        seen.add(v)
        if v in consts:
            used_consts.add(v)
            continue
        n = producers.get(v)
        if n is None:
            continue
        if id(n) not in {id(k) for k in keep_nodes}:
            keep_nodes.append(n)
            stack.extend(n.input)
    parent, base = _descent({k: consts[k] for k in used_consts}, bases)
    if parent is None and policy["onnx_requires_import"]:
        raise Refused(
            "does not descend from a model the tenant imported (fewer than half of its "
            "weights at the same name and shape)"
        )
    order = {id(n): i for i, n in enumerate(g.node)}
    keep_nodes.sort(key=lambda n: order[id(n)])
    inputs = [i for i in g.input if i.name not in consts]
    ops = sorted({f"{n.domain or 'ai.onnx'}:{n.op_type}" for n in keep_nodes})
    bad = [
        f"{n.domain}:{n.op_type}"
        for n in keep_nodes
        if n.domain not in allowed_domains or n.op_type not in allowed_ops
    ]
    if bad:
        raise Refused(f"operator {sorted(set(bad))[0]} is outside the allow-list")
    # the graph's structure is a channel too (72 no-op nodes whose operator types spell a
    # name; 13 new nodes whose every operator choice is a few bits): a node is "as
    # imported" when the imported graph has a node of the same operator and attributes
    # (each imported node matched once); every other node is new. At most
    # ``max_new_nodes`` may be new, and each is charged in the capacity bound: its
    # operator (one of the allow-list), where each input comes from (one of the values
    # before it), and its attributes (floats rounded to ``mantissa_bits``).
    from facelab.gates.exporting._quantise import round_scalar, scalar_bits

    m_bits = int(policy["mantissa_bits"])
    if parent is not None and parent not in _BASE_NODES:
        raise Refused(f"the graph of {parent} was not read (load_baselines); not rebuilt")
    pool = Counter(_BASE_NODES.get(parent, Counter())) if parent is not None else Counter()
    is_new: list[bool] = []
    for n in keep_nodes:
        sig = _signature(n)
        if pool[sig] > 0:
            pool[sig] -= 1
            is_new.append(False)
        else:
            is_new.append(True)
    added = sum(is_new)
    limit = int(policy.get("max_new_nodes", 8))
    if parent is not None and added > limit:
        raise Refused(
            f"{added} nodes beyond {parent or 'the imported'}'s graph (at most {limit}, "
            "export.contract.max_new_nodes): a graph's structure is a channel"
        )
    struct_bits = 0.0
    n_values = len(inputs) + len(used_consts)
    for n, new_node in zip(keep_nodes, is_new, strict=True):
        if new_node:
            struct_bits += math.log2(max(2, len(allowed_ops)))
            struct_bits += len(n.input) * math.log2(max(2, n_values))
        n_values += len(n.output)
    # names: kept when the imported model has them, else renamed
    keep_names = set(base or {}) | {i.name for i in inputs} | set(wanted)
    rename: dict[str, str] = {}

    def nm(v: str) -> str:
        if not v:
            return v
        if v in keep_names and SAFE_NAME.match(v):
            return v
        return rename.setdefault(v, f"v{len(rename)}")

    def num(x: float, new_node: bool) -> float:
        """A float attribute: as imported, or rounded to ``mantissa_bits`` and charged."""
        nonlocal struct_bits
        if not new_node:
            return float(x)
        try:
            y = round_scalar(float(x), m_bits)
        except ValueError as e:
            raise Refused(f"a float attribute: {e}") from e
        struct_bits += scalar_bits(m_bits)
        return y

    def integer(x: int, new_node: bool) -> int:
        nonlocal struct_bits
        if new_node:
            struct_bits += 1 + abs(int(x)).bit_length()
        return int(x)

    new_nodes, dropped_attrs = [], 0
    for i, (n, new_node) in enumerate(zip(keep_nodes, is_new, strict=True)):
        attrs = []
        for a in n.attribute:
            if a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS):
                raise Refused(f"node {i} ({n.op_type}) holds a subgraph; not rebuilt")
            if a.type == onnx.AttributeProto.TENSOR:
                if n.op_type != "Constant":
                    raise Refused(f"node {i} ({n.op_type}) holds a tensor attribute")
                consts[n.output[0]] = numpy_helper.to_array(a.t)
                used_consts.add(n.output[0])
                continue
            if a.type in (onnx.AttributeProto.SPARSE_TENSOR, onnx.AttributeProto.TENSORS):
                raise Refused(f"node {i} ({n.op_type}) holds a sparse or tensor-list attribute")
            if a.type == onnx.AttributeProto.STRING:
                sv = a.s.decode("utf-8", "replace")
                if not SAFE_ATTR_STRING.match(sv):
                    raise Refused(f"node {i} ({n.op_type}) attribute {a.name}: not a keyword")
                if new_node:
                    struct_bits += 8 * len(sv)
                attrs.append(helper.make_attribute(a.name, sv))
            elif a.type == onnx.AttributeProto.STRINGS:
                raise Refused(f"node {i} ({n.op_type}) attribute {a.name}: a list of strings")
            elif a.type == onnx.AttributeProto.INT:
                attrs.append(helper.make_attribute(a.name, integer(a.i, new_node)))
            elif a.type == onnx.AttributeProto.FLOAT:
                attrs.append(helper.make_attribute(a.name, num(a.f, new_node)))
            elif a.type == onnx.AttributeProto.INTS:
                if len(a.ints) > int(policy["max_new_int_elements"]):
                    raise Refused(f"node {i} ({n.op_type}) attribute {a.name}: a long list")
                attrs.append(helper.make_attribute(a.name, [integer(x, new_node) for x in a.ints]))
            elif a.type == onnx.AttributeProto.FLOATS:
                if len(a.floats) > int(policy["max_new_int_elements"]):
                    raise Refused(f"node {i} ({n.op_type}) attribute {a.name}: a long list")
                attrs.append(helper.make_attribute(a.name, [num(x, new_node) for x in a.floats]))
            else:
                dropped_attrs += 1
        if n.op_type == "Constant":
            continue  # became an initializer
        nn = helper.make_node(
            n.op_type, [nm(x) for x in n.input], [nm(x) for x in n.output], name=f"n{i}"
        )
        nn.attribute.extend(attrs)
        new_nodes.append(nn)
    # an integer tensor that is new or changed may only give a shape, axes or pads: as
    # Gather indices (or any data) its values are free choices that re-quantisation never
    # touches (the red team's payload in a Gather's indices)
    for c in sorted(used_consts):
        t = consts[c]
        if t.dtype.kind not in "iub":
            continue
        old = (base or {}).get(c)
        if (
            old is not None
            and old.dtype == t.dtype
            and old.shape == t.shape
            and old.tobytes() == t.tobytes()
        ):
            continue
        uses = [(k.op_type, j) for k in keep_nodes for j, x in enumerate(k.input) if x == c]
        bad_use = [u for u in uses if u not in SHAPE_SLOTS]
        if c in wanted:
            bad_use.append(("a graph output", 0))
        if bad_use or not uses:
            op, j = bad_use[0] if bad_use else ("nothing", 0)
            raise Refused(
                f"integer tensor {c[:40]!r} feeds {op} input {j}: a new or changed integer "
                "tensor may only give a shape, axes, pads or slice bounds (its values are "
                "not re-quantised)"
            )
    # declared shapes of the inputs and outputs are metadata a tenant writes: the batch
    # axis is always "N", a static axis at most MAX_DECLARED_DIM (larger is symbolic) and
    # each static axis the imported model does not declare is charged its log2 (red team
    # 20e, case 15: a first name in the output's declared batch size, charged nothing)
    io_dims = [d for v in (*inputs, *g.output) for d in v.type.tensor_type.shape.dim[1:]]
    struct_bits += sum(
        math.log2(MAX_DECLARED_DIM)
        for d in io_dims
        if d.HasField("dim_value")
        and 0 < d.dim_value <= MAX_DECLARED_DIM
        and d.dim_value not in _BASE_DIMS.get(parent or "", set())
    )
    tensors = {c: consts[c] for c in sorted(used_consts)}
    rebuilt, facts = _rebuild_tensors(tensors, policy, rng, base)
    facts["weights_capacity_bits"] = facts["capacity_bits"]
    facts["structure_capacity_bits"] = round(struct_bits, 1)
    facts["capacity_bits"] = round(facts["capacity_bits"] + struct_bits, 1)
    facts["new_nodes"] = added
    inits = [numpy_helper.from_array(a, nm(k)) for k, a in rebuilt.items()]

    def vi(v) -> onnx.ValueInfoProto:
        tt = v.type.tensor_type
        dims = [
            d.dim_value
            if k > 0 and d.HasField("dim_value") and 0 < d.dim_value <= MAX_DECLARED_DIM
            else ("N" if k == 0 else f"d{k}")
            for k, d in enumerate(tt.shape.dim)
        ]
        return helper.make_tensor_value_info(nm(v.name), tt.elem_type, dims)

    # every 2-D float output leaves L2-normalised: a matcher scores by cosine, so nothing
    # legitimate changes, and an output's length is no channel (a gallery hidden in the
    # norm of the embedding, the red team's, was read back from it at 95%)
    normalised = 0
    for o in g.output:
        tt = o.type.tensor_type
        if tt.elem_type != onnx.TensorProto.FLOAT or len(tt.shape.dim) != 2:
            continue
        name = nm(o.name)
        producers = [n for n in new_nodes if name in n.output]
        if len(producers) != 1:
            continue
        raw = f"{name}__raw"
        producers[0].output[list(producers[0].output).index(name)] = raw
        for n in new_nodes:  # a node that also reads the output reads the raw value
            for k, x in enumerate(n.input):
                if x == name:
                    n.input[k] = raw
        new_nodes.append(
            helper.make_node(
                "LpNormalization", [raw], [name], name=f"l2_{normalised}", axis=-1, p=2
            )
        )
        normalised += 1
    graph = helper.make_graph(
        new_nodes, "rebuilt", [vi(i) for i in inputs], [vi(o) for o in g.output], inits
    )
    opsets = [o for o in m.opset_import if o.domain in ("", "ai.onnx")]
    model = helper.make_model(graph, opset_imports=opsets, ir_version=m.ir_version)
    onnx.checker.check_model(model)
    out.write_bytes(model.SerializeToString())
    dropped = {
        "nodes": len(g.node) - len(keep_nodes),
        "initializers": len(g.initializer)
        + len(g.sparse_initializer)
        - len([c for c in used_consts if c in {t.name for t in g.initializer}]),
        "metadata_props": len(m.metadata_props),
        "functions": len(m.functions),
        "training_info": len(m.training_info),
        "attributes": dropped_attrs,
        "renamed": len(rename),
    }
    shapes = []
    for i in inputs:
        tt = i.type.tensor_type
        shapes.append([d.dim_value if d.HasField("dim_value") else -1 for d in tt.shape.dim])
    facts.update(
        {
            "ops": ops,
            "dropped": dropped,
            "input_shapes": shapes,
            "outputs": len(wanted),
            "outputs_l2_normalised": normalised,
            "descends_from": parent,
        }
    )
    return facts


# ---------------------------------------------------------------- JSON


_MODEL_JSON = {
    "name": str,
    "version": str,
    "input": {"size": list, "layout": str, "channels": str, "mean": None, "std": None},
    "output": {"dim": int},
    "similarity": str,
}


def rebuild_model_json(src: Path, out: Path, policy: dict, rng, base) -> dict:
    from facelab.gates.importing.checks.model_json import validate

    doc = json.loads(src.read_bytes().decode("utf-8"))
    problems = validate(doc) if isinstance(doc, dict) else ["not an object"]
    if problems:
        raise Refused(f"not a valid model.json ({problems[0]})")
    for k in ("name", "version"):
        if not SAFE_NAME.match(str(doc[k])) or len(str(doc[k])) > 64:
            raise Refused(f"model.json {k}: not a plain name")
    inp = doc["input"]
    # a name and a version are free text (a person's name fits in 64 characters): the
    # release keeps a name only when it is an imported model's own, or that name with the
    # head suffix facelab's trainer writes for this output size; the version is always the
    # imported model's. Anything else is renamed "<imported name>-derived".
    imported = dict(k.rpartition("@")[::2] for k in sorted(base or {}))
    dim = int(doc["output"]["dim"])
    name = str(doc["name"])
    parent = next((n for n in imported if name in (n, f"{n}-pca{dim}")), None)
    renamed = parent is None
    if renamed:
        parent = next(iter(imported), "model")
        name = f"{parent}-derived"
    version = imported.get(parent, "0.0.0")

    # every number that is not the imported model.json's own is rounded to
    # ``mantissa_bits`` (a float64 mean holds 52 free bits; L12 of the red team) and
    # charged in the capacity bound, as are changed sizes, width and keywords
    from facelab.gates.exporting._quantise import round_scalar, scalar_bits

    m_bits = int(policy["mantissa_bits"])
    ref = _BASE_SPECS.get(f"{parent}@{version}", {})
    ref_in = ref.get("input", {}) if isinstance(ref.get("input"), dict) else {}
    bits = 0.0

    def nums(key: str):
        nonlocal bits
        v, old = inp[key], ref_in.get(key)
        if v == old and type(v) is type(old):
            return v
        try:
            if isinstance(v, list):
                bits += scalar_bits(m_bits) * len(v) + 8
                return [round_scalar(float(x), m_bits) for x in v]
            bits += scalar_bits(m_bits)
            return round_scalar(float(v), m_bits)
        except ValueError as e:
            raise Refused(f"model.json input.{key}: {e}") from e

    def same(value, old, width: float) -> None:
        nonlocal bits
        if value != old:
            bits += width

    size = [int(inp["size"][0]), int(inp["size"][1])]
    same(size, ref_in.get("size"), 2 * 16)
    same(str(inp["layout"]), ref_in.get("layout"), 8)
    same(str(inp["channels"]), ref_in.get("channels"), 8)
    same(str(doc["similarity"]), ref.get("similarity"), 8)
    ref_dim = ref.get("output", {}).get("dim") if isinstance(ref.get("output"), dict) else None
    same(dim, ref_dim, 1 + abs(dim).bit_length())
    clean = {
        "name": name,
        "version": version,
        "input": {
            "size": size,
            "layout": str(inp["layout"]),
            "channels": str(inp["channels"]),
            "mean": nums("mean"),
            "std": nums("std"),
        },
        "output": {"dim": dim},
        "similarity": str(doc["similarity"]),
    }
    extra = sorted(set(doc) - set(clean))
    out.write_text(json.dumps(clean, indent=2) + "\n")
    return {
        "dropped_keys": extra[:20],
        "spec": clean,
        "renamed": renamed or version != str(doc["version"]),
        "capacity_bits": round(bits, 1),
    }


def _round(v: float, digits: int) -> float:
    if v == 0 or not math.isfinite(v):
        if not math.isfinite(v):
            raise Refused("a number that is not finite")
        return 0.0
    return float(f"{v:.{digits}g}")


# the benchmark report's schema (lab/bench/run.py): strings allowed only here
_REPORT_STRINGS = {
    ("model", "name"): SAFE_NAME,
    ("model", "version"): SAFE_NAME,
    ("model", "similarity"): re.compile(r"^cosine$"),
    ("model", "input", "layout"): re.compile(r"^(NCHW|NHWC)$"),
    ("model", "input", "channels"): re.compile(r"^(RGB|BGR|GRAY)$"),
    ("lab", "tenant"): re.compile(r"^[a-z0-9][a-z0-9_-]{0,31}$"),
    ("lab", "split"): re.compile(r"^(train|verification|test|all)$"),
    ("lab", "job"): re.compile(r"^[0-9]{8}T[0-9]{6}Z-[0-9a-f]{8}$"),
}
_REPORT_TOP = {
    "protocol",
    "model",
    "operating_points",
    "eer",
    "auc",
    "d_prime",
    "speed",
    "groups_at_fmr",
    "impostor_subsets",
    "det",
    "histogram",
    "intervals",
    "lab",
    # the report card of the exact metrics (issue 16)
    "auc_error_bound",
    "cross_group_fmr",
    "failures",
    "fairness",
    "provenance",
    "rocch_eer",
    "warnings",
}
# any other text of the report: one printable line (a reason, a rule's name, provenance),
# no more of a channel than the contract's free text
_REPORT_TEXT = re.compile(r"^[\x20-\x7e]{0,400}$")
_GROUP_KEY = re.compile(r"^[A-Za-z0-9 +<>=._-]{1,16}$")
_KEY = re.compile(r"^[a-z0-9_]{1,40}$")


def _clean_report(v, path: tuple, digits: int, max_list: int):
    if isinstance(v, bool) or v is None:
        return v
    if isinstance(v, int):
        return v
    if isinstance(v, float):
        return _round(v, digits)
    if isinstance(v, str):
        rule = _REPORT_STRINGS.get(path, _REPORT_TEXT)
        if not rule.match(v):
            raise Refused(f"report.json {'.'.join(map(str, path))}: text where the schema has none")
        return v
    if isinstance(v, list):
        if len(v) > max_list:
            raise Refused(f"report.json {'.'.join(map(str, path))}: a list of {len(v)} values")
        return [_clean_report(x, (*path, "[]"), digits, max_list) for x in v]
    if isinstance(v, dict):
        out = {}
        in_groups = len(path) >= 1 and path[-1] == "groups"
        for k, x in v.items():
            if not isinstance(k, str):
                raise Refused("report.json: a key that is not text")
            if in_groups:
                if not _GROUP_KEY.match(k):
                    raise Refused(f"report.json {'.'.join(path)}: group {k[:20]!r}")
                out[k] = _clean_report(x, (*path, "<group>"), digits, max_list)
            else:
                if not (_KEY.match(k) or _GROUP_KEY.match(k) or re.match(r"^[0-9.e-]{1,12}$", k)):
                    raise Refused(f"report.json {'.'.join(path)}: key {k[:20]!r}")
                out[k] = _clean_report(x, (*path, k), digits, max_list)
        return out
    raise Refused("report.json: a value of an unknown type")


def rebuild_bench_report(src: Path, out: Path, policy: dict, rng, base) -> dict:
    """report.json re-written from its parsed values under the benchmark's schema (numbers
    rounded to ``report_digits`` significant digits); report.html, det.png and scores.png
    drawn again by facelab's own report code from those values."""
    from facelab.bench.report import write_report

    doc = json.loads(src.read_bytes().decode("utf-8"))
    if not isinstance(doc, dict) or not set(doc) <= _REPORT_TOP or "model" not in doc:
        raise Refused("report.json: not facelab's benchmark report (unknown top-level keys)")
    intervals = doc.pop("intervals", None)
    clean = _clean_report(doc, (), int(policy["report_digits"]), int(policy["max_list"]))
    if intervals is not None:
        from facelab.bench.run import run_benchmark  # noqa: F401  (the constant's home)

        clean["intervals"] = (
            "fnmr_ci95: Wilson score interval; fnmr_ci95_bootstrap: 1,000 resamples of "
            "subjects at the fixed threshold"
        )
    out.mkdir(parents=True, exist_ok=True)
    write_report(clean, out)
    return {"files": sorted(p.name for p in out.iterdir())}


# ---------------------------------------------------------------- tables and text


def rebuild_table(src: Path, out: Path, policy: dict, rng, base) -> dict:
    """A metrics table: declared columns only, numbers (group columns hold short labels),
    each row with a count column at least ``min_cell_count`` when it names a group."""
    cols_ok = set(policy["table_columns"])
    groups_ok = set(policy["table_group_columns"])
    counts = set(policy["table_count_columns"])
    if src.suffix.lower() == ".parquet":
        import pyarrow.parquet as pq

        t = pq.read_table(io.BytesIO(src.read_bytes()))
        header = list(t.column_names)
        rows = [
            ["" if x is None else str(x) for x in r]
            for r in zip(*[t.column(c).to_pylist() for c in header], strict=True)
        ]
    else:
        text = src.read_bytes().decode("utf-8")
        delim = "\t" if src.suffix.lower() == ".tsv" else ","
        rows_all = list(csv.reader(io.StringIO(text), delimiter=delim))
        if not rows_all:
            raise Refused("an empty table")
        header, rows = rows_all[0], rows_all[1:]
    header = [h.strip() for h in header]
    bad = [h for h in header if h not in cols_ok and h not in groups_ok]
    if bad:
        raise Refused(f"column {bad[0][:30]!r} is not a declared metrics column")
    if len(set(header)) != len(header):
        raise Refused("a column appears twice")
    if len(rows) > int(policy["max_table_rows"]):
        raise Refused(f"{len(rows)} rows (at most {policy['max_table_rows']})")
    gi = [i for i, h in enumerate(header) if h in groups_ok]
    ci = [i for i, h in enumerate(header) if h in counts]
    k = int(policy["min_cell_count"])
    clean = []
    for r, row in enumerate(rows):
        if len(row) != len(header):
            raise Refused(f"row {r + 2}: {len(row)} cells for {len(header)} columns")
        new = []
        for j, cell in enumerate(row):
            cell = cell.strip()
            if j in gi:
                if not _GROUP_KEY.match(cell):
                    raise Refused(f"row {r + 2} column {header[j]!r}: not a group label")
                new.append(cell)
            else:
                if not NUMBER.match(cell):
                    raise Refused(f"row {r + 2} column {header[j]!r}: not a number")
                v = float(cell)
                new.append(str(int(v)) if v.is_integer() and abs(v) < 2**53 else repr(_round(v, 6)))
        if gi:
            if not ci:
                raise Refused("a table of groups needs a count column (minimum cell count)")
            for j in ci:
                if float(new[j]) < k:
                    raise Refused(f"row {r + 2}: a group of {new[j]} (minimum cell count {k})")
        clean.append(new)
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(header)
    w.writerows(clean)
    name = out.with_suffix(".csv")
    name.write_text(buf.getvalue())
    # free numbers and labels: every byte of the rebuilt table is charged
    return {
        "rows": len(clean),
        "columns": header,
        "written_as": name.name,
        "capacity_bits": 8 * len(buf.getvalue().encode()),
    }


def rebuild_text(src: Path, out: Path, policy: dict, rng, base) -> dict:
    data = src.read_bytes()
    if len(data) > int(policy["max_text_bytes"]):
        raise Refused(f"{len(data)} bytes of text (at most {policy['max_text_bytes']})")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise Refused(f"not UTF-8 text (byte {e.start})") from e
    text = unicodedata.normalize("NFKC", text)
    bad = [
        c for c in text if unicodedata.category(c) in ("Cc", "Cf", "Co", "Cs") and c not in "\n\t"
    ]
    if bad:
        raise Refused(f"control or format characters in text (U+{ord(bad[0]):04X})")
    non_ascii = sum(1 for c in text if ord(c) > 0x7E)
    if non_ascii > int(policy["max_text_non_ascii"]):
        raise Refused(f"{non_ascii} characters outside ASCII in a free-text file")
    clean = text.replace("\r\n", "\n")
    out.write_text(clean)
    return {"bytes": len(text), "capacity_bits": 8 * len(clean.encode())}


REBUILD = {
    "onnx_model": rebuild_onnx,
    "model_json": rebuild_model_json,
    "bench_report": rebuild_bench_report,
    "metrics_table": rebuild_table,
    "text": rebuild_text,
    "weights": rebuild_weights,
}


def run_models(jobs: list[dict]) -> dict:
    """Run ONNX models on prepared inputs: [{"model", "x", "out"}] (paths); every output
    of rank 2 is saved (``out`` + ``.<k>.npy``). A model that fails is reported per job."""
    import onnxruntime as ort

    res = []
    for j in jobs:
        try:
            opts = ort.SessionOptions()
            opts.intra_op_num_threads = 2
            s = ort.InferenceSession(j["model"], opts, providers=["CPUExecutionProvider"])
            ins = s.get_inputs()
            if len(ins) != 1:
                raise ValueError(f"{len(ins)} inputs, one image input expected")
            x = np.load(j["x"], allow_pickle=False)
            outs: list[list[np.ndarray]] = []
            for i in range(0, len(x), 64):
                ys = s.run(None, {ins[0].name: x[i : i + 64]})
                outs.append([np.asarray(y) for y in ys])
            shapes = []
            for k in range(len(outs[0]) if outs else 0):
                y = np.concatenate([o[k] for o in outs])
                if y.ndim != 2 or y.shape[0] != len(x) or y.dtype.kind != "f":
                    shapes.append(list(y.shape))
                    continue
                if not np.isfinite(y).all():
                    raise ValueError("NaN or infinite output")
                np.save(f"{j['out']}.{k}.npy", y.astype(np.float32))
                shapes.append(list(y.shape))
            res.append({"status": "ok", "shapes": shapes})
        except Exception as e:  # a model that cannot be run is a refusal upstream
            res.append({"status": "failed", "error": f"{type(e).__name__}: {str(e)[:200]}"})
    return {"jobs": res}
