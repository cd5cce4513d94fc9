"""A PyTorch ``torch.save`` zip read without unpickling: the pickle's opcodes are
interpreted by a small machine that knows only how a state dict of tensors is built.

Allowed globals: ``torch._utils._rebuild_tensor_v2`` (and ``_rebuild_tensor``),
``torch.*Storage`` classes, ``collections.OrderedDict`` and ``torch.Size``. Anything else
(``os.system``, ``builtins.eval``, a ``REDUCE`` on another callable, ``BUILD`` of an
object, an extension code) is refused, naming the opcode. Storages are read from the
zip's ``data/<key>`` members with NumPy. Tensors must be contiguous views of their
storage (what ``torch.save`` of a state dict writes).
"""

from __future__ import annotations

import io
import math
import pickletools
import zipfile

import numpy as np

STORAGES = {
    "FloatStorage": np.float32,
    "DoubleStorage": np.float64,
    "HalfStorage": np.float16,
    "LongStorage": np.int64,
    "IntStorage": np.int32,
    "ShortStorage": np.int16,
    "CharStorage": np.int8,
    "ByteStorage": np.uint8,
    "BoolStorage": np.bool_,
}
ALLOWED = {
    ("torch._utils", "_rebuild_tensor_v2"),
    ("torch._utils", "_rebuild_tensor"),
    ("collections", "OrderedDict"),
    ("torch", "Size"),
    *(("torch", s) for s in STORAGES),
}


class Refused(ValueError):
    pass


class _Mark:
    pass


def read(data: bytes, max_elements: int) -> dict[str, np.ndarray]:
    """Tensors of a ``torch.save`` zip by name; ``Refused`` says why not."""
    z = zipfile.ZipFile(io.BytesIO(data))
    names = z.namelist()
    pkl = [n for n in names if n.endswith("/data.pkl") or n == "data.pkl"]
    if len(pkl) != 1:
        raise Refused("not a torch.save zip (no single data.pkl)")
    prefix = pkl[0][: -len("data.pkl")]
    obj = _interpret(z.read(pkl[0]), lambda key: z.read(f"{prefix}data/{key}"), max_elements)
    if not isinstance(obj, dict):
        raise Refused("the pickle does not hold a dict of tensors")
    out = {}
    for k, v in obj.items():
        if not isinstance(k, str) or not isinstance(v, np.ndarray):
            raise Refused(f"entry {str(k)[:40]!r} is not a tensor")
        out[k] = v
    return out


def _interpret(pkl: bytes, storage, max_elements: int):
    stack: list = []
    memo: dict = {}
    storages: dict[str, np.ndarray] = {}
    for op, arg, _pos in pickletools.genops(pkl):
        name = op.name
        if name in ("PROTO", "FRAME"):
            continue
        if name == "STOP":
            return stack.pop()
        if name in ("EMPTY_DICT",):
            stack.append({})
        elif name in ("EMPTY_TUPLE",):
            stack.append(())
        elif name == "EMPTY_LIST":
            stack.append([])
        elif name == "MARK":
            stack.append(_Mark)
        elif name in ("BINUNICODE", "SHORT_BINUNICODE", "UNICODE", "BINUNICODE8"):
            stack.append(str(arg))
        elif name in ("BININT", "BININT1", "BININT2", "LONG1", "INT", "LONG"):
            stack.append(int(arg))
        elif name in ("BINFLOAT", "FLOAT"):
            stack.append(float(arg))
        elif name in ("NEWTRUE", "NEWFALSE"):
            stack.append(name == "NEWTRUE")
        elif name == "NONE":
            stack.append(None)
        elif name in ("BINPUT", "LONG_BINPUT", "PUT", "MEMOIZE"):
            memo[len(memo) if name == "MEMOIZE" else arg] = stack[-1]
        elif name in ("BINGET", "LONG_BINGET", "GET"):
            stack.append(memo[arg])
        elif name in ("TUPLE", "LIST"):
            i = _mark(stack)
            items = stack[i + 1 :]
            del stack[i:]
            stack.append(tuple(items) if name == "TUPLE" else list(items))
        elif name in ("TUPLE1", "TUPLE2", "TUPLE3"):
            n = int(name[-1])
            items = tuple(stack[-n:])
            del stack[-n:]
            stack.append(items)
        elif name == "SETITEM":
            v, k = stack.pop(), stack.pop()
            _dict(stack[-1])[k] = v
        elif name == "SETITEMS":
            i = _mark(stack)
            items = stack[i + 1 :]
            del stack[i:]
            d = _dict(stack[-1])
            for k, v in zip(items[::2], items[1::2], strict=True):
                d[k] = v
        elif name == "APPENDS":
            i = _mark(stack)
            items = stack[i + 1 :]
            del stack[i:]
            if not isinstance(stack[-1], list):
                raise Refused("APPENDS to something that is not a list")
            stack[-1].extend(items)
        elif name in ("GLOBAL", "STACK_GLOBAL"):
            if name == "GLOBAL":
                mod, _, qual = str(arg).partition(" ")
            else:
                qual, mod = stack.pop(), stack.pop()
            if (mod, qual) not in ALLOWED:
                raise Refused(
                    f"the pickle names {mod}.{qual}: only tensor reconstruction is allowed"
                )
            stack.append(("global", mod, qual))
        elif name == "BINPERSID":
            pid = stack.pop()
            if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage"):
                raise Refused("a persistent id that is not a storage")
            _, cls, key, _loc, numel = pid
            if not (isinstance(cls, tuple) and cls[0] == "global" and cls[2] in STORAGES):
                raise Refused("a storage of an unknown type")
            if numel > max_elements:
                raise Refused(f"storage of {numel} elements exceeds the limit")
            key = str(key)
            if key not in storages:
                raw = storage(key)
                dt = np.dtype(STORAGES[cls[2]])
                if len(raw) != numel * dt.itemsize:
                    raise Refused(f"storage {key} holds {len(raw)} bytes, not {numel} x {dt}")
                storages[key] = np.frombuffer(raw, dt)
            stack.append(("storage", storages[key]))
        elif name == "REDUCE":
            args, fn = stack.pop(), stack.pop()
            stack.append(_call(fn, args, max_elements))
        else:
            raise Refused(f"pickle opcode {name} is not allowed (only tensor reconstruction)")
    raise Refused("the pickle has no STOP")


def _mark(stack: list) -> int:
    for i in range(len(stack) - 1, -1, -1):
        if stack[i] is _Mark:
            return i
    raise Refused("no MARK")


def _dict(x):
    if not isinstance(x, dict):
        raise Refused("SETITEM on something that is not a dict")
    return x


def _call(fn, args, max_elements: int):
    if not (isinstance(fn, tuple) and fn[0] == "global") or not isinstance(args, tuple):
        raise Refused("REDUCE of something that is not an allowed global")
    _, mod, qual = fn
    if (mod, qual) == ("collections", "OrderedDict"):
        if args not in ((), ([],)):
            raise Refused("OrderedDict with arguments")
        return {}
    if (mod, qual) == ("torch", "Size"):
        return tuple(int(x) for x in args[0])
    if qual in ("_rebuild_tensor_v2", "_rebuild_tensor"):
        st, offset, size, stride = args[:4]
        if not (isinstance(st, tuple) and st[0] == "storage"):
            raise Refused("a tensor without a storage")
        flat = st[1]
        size = tuple(int(s) for s in size)
        n = math.prod(size)
        if n > max_elements or offset < 0 or offset + n > len(flat):
            raise Refused("a tensor outside its storage")
        want, acc = [], 1
        for s in reversed(size):
            want.insert(0, acc)
            acc *= s
        if n > 1 and tuple(int(x) for x in stride) != tuple(want):
            raise Refused("a non-contiguous tensor")
        return np.array(flat[offset : offset + n]).reshape(size)
    raise Refused(f"REDUCE of {mod}.{qual}")
