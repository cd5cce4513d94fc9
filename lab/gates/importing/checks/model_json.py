"""model.json describes how to feed the model and what it returns (DESIGN.md's format).

    {"name": str, "version": str,
     "input": {"size": [H, W], "layout": "NCHW" | "NHWC", "channels": "RGB" | "BGR" |
               "GRAY", "mean": number or [per channel], "std": number or [per channel]},
     "output": {"dim": int}, "similarity": "cosine" | "euclidean"}

An ArcFace-style model is {"size": [112, 112], "layout": "NCHW", "channels": "RGB",
"mean": 127.5, "std": 128.0} with output dim 512.
"""

from __future__ import annotations

import math
import re

from facelab.gates.importing._types import CheckResult, GateContext, result

NAME = "model.json"
MAX_BYTES = 1 << 16
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


_KEYS = {"name", "version", "input", "output", "similarity"}
_INPUT_KEYS = {"size", "layout", "channels", "mean", "std"}
_OUTPUT_KEYS = {"dim"}
# input normalisation, in pixel units (0..255): x' = (x - mean) / std
MEAN_RANGE = (-1024.0, 1024.0)
STD_RANGE = (1e-3, 1024.0)


def _unknown(where: str, obj: dict, known: set[str]) -> list[str]:
    extra = sorted(set(obj) - known)
    if not extra:
        return []
    names = ", ".join(repr(k[:40]) for k in extra[:5])
    return [f"model.json: unknown field(s) {names} in {where} (known: {', '.join(sorted(known))})"]


def validate(doc: object) -> list[str]:
    """Problems of a parsed model.json (empty: valid; unknown fields are
    :func:`unknown_fields`'s). Numbers must be finite and in range: mean in
    ``MEAN_RANGE``, std in ``STD_RANGE`` (pixel units), sizes in [8, 1024], output.dim
    in [1, 65536]."""
    p: list[str] = []
    if not isinstance(doc, dict):
        return ["model.json: not a JSON object"]
    for key in ("name", "version"):
        v = doc.get(key)
        if not isinstance(v, str) or not _NAME_RE.match(v):
            p.append(f"model.json: {key} must be a short name (letters, digits, . _ -)")
    inp = doc.get("input")
    if not isinstance(inp, dict):
        return [*p, "model.json: missing object input"]
    size = inp.get("size")
    if not (
        isinstance(size, list)
        and len(size) == 2
        and all(isinstance(x, int) and 8 <= x <= 1024 for x in size)
    ):
        p.append("model.json: input.size must be [H, W] with 8 <= H, W <= 1024")
    if inp.get("layout") not in ("NCHW", "NHWC"):
        p.append("model.json: input.layout must be NCHW or NHWC")
    ch = inp.get("channels")
    if ch not in ("RGB", "BGR", "GRAY"):
        p.append("model.json: input.channels must be RGB, BGR or GRAY")
    n = 1 if ch == "GRAY" else 3
    for key in ("mean", "std"):
        v = inp.get(key)
        vals = v if isinstance(v, list) else [v]
        lo, hi = MEAN_RANGE if key == "mean" else STD_RANGE
        if not (
            len(vals) in (1, n)
            and all(isinstance(x, int | float) and not isinstance(x, bool) for x in vals)
        ):
            p.append(f"model.json: input.{key} must be a number or one per channel")
        elif not all(math.isfinite(x) for x in vals):
            p.append(f"model.json: input.{key} must be finite (NaN and Infinity refused)")
        elif not all(lo <= x <= hi for x in vals):
            p.append(f"model.json: input.{key} must lie in [{lo:g}, {hi:g}] (pixel units)")
    out = doc.get("output")
    if not (isinstance(out, dict) and isinstance(out.get("dim"), int) and 1 <= out["dim"] <= 65536):
        p.append("model.json: output.dim must be an integer in [1, 65536]")
    if doc.get("similarity") not in ("cosine", "euclidean"):
        p.append("model.json: similarity must be cosine or euclidean")
    return p


def unknown_fields(doc: object) -> list[str]:
    """Problems for fields outside the module docstring's schema (the import gate refuses
    them: tenant bytes the lab never reads; the export gate rebuilds model.json from
    the schema instead and calls only :func:`validate`)."""
    if not isinstance(doc, dict):
        return []
    p = _unknown("the document", doc, _KEYS)
    if isinstance(doc.get("input"), dict):
        p += _unknown("input", doc["input"], _INPUT_KEYS)
    if isinstance(doc.get("output"), dict):
        p += _unknown("output", doc["output"], _OUTPUT_KEYS)
    return p


def read(path) -> dict | list | str | int | float | bool | None:
    """model.json's document: at most 64 KiB, nested at most 64 deep (100,000 ``[``
    is a RecursionError in ``json.loads``; issue 15 failure 1).

    Raises
    ------
    ValueError
        Too large, too deep or not JSON.
    """
    from facelab.gates.importing.signing import read_json

    return read_json(path, MAX_BYTES)


def run(ctx: GateContext) -> CheckResult:
    if "model.json" not in ctx.package.files:
        return result(NAME, ["model.json: missing"])
    try:
        doc = read(ctx.package.path("model.json"))
    except ValueError as e:
        return result(NAME, [f"model.json: not JSON ({e})"])
    problems = unknown_fields(doc) + validate(doc)
    if not problems:
        ctx.model_json = doc
    return result(
        NAME, problems, f"{doc.get('name')}@{doc.get('version')}" if isinstance(doc, dict) else ""
    )
