"""Inside the confinement: load a tenant's model with onnxruntime and run synthetic
batches (``facelab.gates.importing.checks.smoke`` calls this through ``facelab.confine``).

Inputs are prepared the way a lab job prepares them (``facelab.bench._matcher``: RGB
pixels 0..255, channel order, ``(x - mean) / std`` from model.json, layout), from
several kinds of image, because a model can hide a blow-up behind one input value:

* ``face``: a synthetic face (``facelab.synth``), aligned like a benchmark image
  (``facelab.bench._align``; the gate renders it and hands it over as a ``.npy``);
* ``black`` (0) and ``white`` (255): the two ends of the normalised range, and what an
  aligned image's border holds;
* ``mean``: pixels equal to model.json's mean (the normalised input is all zeros);
* ``random``: uniform random pixels; ``checker``: 0 and 255 alternating.

Each kind runs alone at batch 1; then every batch size of the check runs with a batch
whose items cycle through the kinds, and each row is compared with the same image's
output alone (a template must not depend on the other images of its batch). The peak
resident memory is read after each run.
"""

from __future__ import annotations

import resource

KINDS = ("face", "black", "white", "mean", "random", "checker")


def _images(spec: dict, n: int, kinds: tuple[str, ...], face_path: str = ""):
    """``n`` RGB images (float32, 0..255) of model.json's ``input.size``, cycling
    ``kinds``; ``face_path``: the aligned synthetic face (``.npy``, written by the gate)."""
    import numpy as np

    h, w = spec["input"]["size"]
    mean = np.asarray(spec["input"]["mean"], np.float64).reshape(-1)
    face = noise = None
    out = np.empty((n, h, w, 3), np.float32)
    rng = np.random.default_rng(0)
    for i in range(n):
        k = kinds[i % len(kinds)]
        if k == "face":
            if face is None:
                face = np.load(face_path, allow_pickle=False).astype(np.float32)
                if face.shape != (h, w, 3):
                    raise ValueError(f"face image {face.shape}, expected {(h, w, 3)}")
            out[i] = face
        elif k == "black":
            out[i] = 0
        elif k == "white":
            out[i] = 255
        elif k == "mean":
            out[i] = mean[:3] if mean.size >= 3 else mean[0]
        elif k == "random":  # the same image each time: rows are compared with it alone
            if noise is None:
                noise = rng.integers(0, 256, (h, w, 3))
            out[i] = noise
        else:
            yy, xx = np.indices((h, w))
            out[i] = (((yy + xx) % 2) * 255)[..., None]
    return out


def _prepare(spec: dict, rgb):
    """What a lab job feeds the model (``facelab.bench._matcher.Matcher.preprocess``)."""
    import numpy as np

    inp = spec["input"]
    c = 1 if inp["channels"] == "GRAY" else 3
    if inp["channels"] == "BGR":
        x = rgb[..., ::-1]
    elif inp["channels"] == "GRAY":
        x = (rgb @ np.array([0.299, 0.587, 0.114], np.float32))[..., None]
    else:
        x = rgb
    mean = np.asarray(inp["mean"], np.float32).reshape(-1)[:c]
    std = np.asarray(inp["std"], np.float32).reshape(-1)[:c]
    x = (x - mean) / std
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2) if inp["layout"] == "NCHW" else x)


def run(path: str, spec: dict, batches: list[int], face: str = "", faces: str = "") -> dict:
    """Output shape, dtype and finiteness for each input kind (batch 1) and for each
    batch size (mixed kinds), and the peak resident memory (KiB) after each; with
    ``faces`` (a ``.npy`` of distinct synthetic identities), their templates."""
    import numpy as np
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    s = ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])
    inputs = s.get_inputs()
    if len(inputs) != 1:
        return {"error": f"model has {len(inputs)} inputs, 1 expected"}
    out = []
    alone: dict = {}  # kind -> its output at batch 1
    plan = [(1, (k,)) for k in KINDS] + [(n, KINDS) for n in batches]
    for n, kinds in plan:
        x = _prepare(spec, _images(spec, n, kinds, face))
        try:
            y = s.run(None, {inputs[0].name: x})[0]
        except Exception as e:  # onnxruntime's errors are plain exceptions
            what = kinds[0] if len(kinds) == 1 else "mixed"
            msg = str(e)
            if isinstance(e, MemoryError) or "alloc" in msg.lower():
                return {
                    "error": f"the model exceeded the memory limit at batch {n} ({what} "
                    f"input): onnxruntime could not allocate ({msg[-160:]})"
                }
            return {"error": f"onnxruntime failed at batch {n} ({what} input): {msg}"[:300]}
        if n == 1 and y.ndim == 2 and y.shape[0] == 1:
            alone[kinds[0]] = y[0].astype(np.float64)
        out.append(
            {
                "batch": n,
                "kinds": list(kinds),
                "shape": list(y.shape),
                "dtype": str(y.dtype),
                "finite": bool(np.isfinite(y).all()),
                "peak_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
                "deviation": _deviation(y, kinds, alone) if n > 1 else 0.0,
            }
        )
    result: dict = {"runs": out}
    if faces:  # distinct identities, one batch: their templates (the gate compares them)
        rgb = np.load(faces, allow_pickle=False).astype(np.float32)
        y = s.run(None, {inputs[0].name: _prepare(spec, rgb)})[0]
        if y.ndim == 2 and y.shape[0] == len(rgb) and np.isfinite(y).all():
            result["identities"] = y.astype(np.float64).tolist()
    return result


def _deviation(y, kinds, alone: dict) -> float:
    """The largest difference between a row of a mixed batch and the output of the same
    image run alone, relative to that output's largest magnitude: 0 for a model whose
    output for an image is a function of that image only (up to the kernels' float
    rounding, about 1e-6), large for one that mixes the batch (a batch mean added to each
    template leaks one person's face into another's template)."""
    import numpy as np

    if y.ndim != 2 or not np.isfinite(y).all():
        return 0.0  # the shape and finiteness checks speak for these
    worst = 0.0
    for i in range(y.shape[0]):
        ref = alone.get(kinds[i % len(kinds)])
        if ref is None or ref.shape != y[i].shape:
            continue
        scale = float(np.abs(ref).max()) or 1.0
        worst = max(worst, float(np.abs(y[i].astype(np.float64) - ref).max()) / scale)
    return worst
