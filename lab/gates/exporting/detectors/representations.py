"""Representations: tensors that become a face (or a byte stream) once combined the way
an encoder would have split them. Each candidate is handed to every detector again as a
derived artifact (``ctx.derived``), so the faces, payload and identifier rules see it.

* the inverse 2-D DCT of every matrix of an image's size (frequency-domain faces);
* the sum of every two same-shape float tensors (additive shares);
* the product of every two tensors whose inner sizes agree (low-rank factors);
* every tensor plus the vault's mean face, at the tensor's size (a residual from it);
* the XOR of every two same-size byte tensors (a key travelling with its data);
* zlib streams at the start of a byte tensor, decompressed;
* every changed weight of a model that descends from an imported one, minus its imported
  value (a fine-tuning delta: a face added to public weights is invisible in the sum).

Pairs are taken among the ``MAX_TENSORS`` largest tensors of an artifact only (a model
with thousands of tensors is not squared); the bound is a known limit.
"""

from __future__ import annotations

import zlib
from itertools import combinations

import cv2
import numpy as np
from facelab.gates.exporting._types import Artifact, Finding, ScanContext

NAME = "representations"
MAX_TENSORS = 24
MAX_ELEMENTS = 1 << 22


def _image_sized(a: np.ndarray, ctx: ScanContext) -> bool:
    lo, hi = ctx.policy.faces["min_side"], ctx.policy.faces["max_side"]
    return a.ndim == 2 and lo <= a.shape[0] <= hi and lo <= a.shape[1] <= hi


def derived_views(art: Artifact, ctx: ScanContext) -> list[tuple[str, np.ndarray]]:
    ts = [
        (loc, a)
        for loc, a in art.scan_tensors()
        if a.dtype.kind in "fiu" and 0 < a.size <= MAX_ELEMENTS
    ]
    ts = sorted(ts, key=lambda t: -t[1].size)[:MAX_TENSORS]
    out: list[tuple[str, np.ndarray]] = []
    base = ctx.baseline(art) if ctx.baseline is not None and art.kind == "onnx" else None
    for loc, a in ts:
        old = base.tensors.get(loc) if base is not None else None
        if (
            old is not None
            and old.shape == a.shape
            and a.dtype.kind == "f"
            and old.dtype.kind == "f"
            and not np.array_equal(old, a)
        ):
            out.append(
                (f"{loc} minus its imported value", a.astype(np.float32) - old.astype(np.float32))
            )
        if _image_sized(a, ctx):
            out.append((f"inverse DCT of {loc}", cv2.idct(a.astype(np.float32))))
        mean = ctx.cache.get("mean face")
        if mean is None and len(ctx.index.thumbs):
            mean = ctx.index.thumbs.astype(np.float32).mean(axis=0)
            ctx.cache["mean face"] = mean
        if mean is not None and _image_sized(a, ctx) and a.dtype.kind == "f":
            m = cv2.resize(mean, (a.shape[1], a.shape[0]), interpolation=cv2.INTER_AREA)
            scale = 255.0 if np.abs(a).max() > 2 else 1.0
            out.append((f"{loc} plus the vault's mean face", a + m * (scale / 255.0)))
        if a.dtype == np.uint8 and a.size > 8:
            b = a.tobytes()
            if b[:1] == b"\x78":
                try:
                    body = zlib.decompressobj().decompress(b, MAX_ELEMENTS)
                    out.append((f"zlib stream in {loc}", np.frombuffer(body, np.uint8)))
                except zlib.error:
                    pass
    for (la, a), (lb, b) in combinations(ts, 2):
        if a.shape == b.shape and a.dtype.kind == "f" and b.dtype.kind == "f":
            out.append((f"{la} + {lb}", a.astype(np.float32) + b.astype(np.float32)))
        if a.size == b.size and a.dtype == np.uint8 and b.dtype == np.uint8:
            out.append((f"{la} XOR {lb}", (a.reshape(-1) ^ b.reshape(-1))))
        for (lx, x), (ly, y) in (((la, a), (lb, b)), ((lb, b), (la, a))):
            if (
                x.ndim == 2
                and y.ndim == 2
                and x.shape[1] == y.shape[0]
                and x.shape[0] * y.shape[1] <= MAX_ELEMENTS
                and x.shape[1] < min(x.shape[0], y.shape[1])
            ):
                out.append((f"{lx} @ {ly}", x.astype(np.float32) @ y.astype(np.float32)))
    return out


def detect(art: Artifact, ctx: ScanContext) -> list[Finding]:
    if art.depth > 0 or art.declared:  # combinations are not combined again
        return []
    views = derived_views(art, ctx)
    if views:
        kid = Artifact(
            f"{art.name} > combined tensors",
            "npy",
            b"",
            tensors=[(loc, np.nan_to_num(v)) for loc, v in views],
            depth=art.depth + 1,
        )
        # computed values: their low bits are arithmetic, not a channel (no low-bit rule)
        kid.cache["computed"] = True
        ctx.derived.append(kid)
    return []
