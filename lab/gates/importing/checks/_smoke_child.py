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
whose items cycle through the kinds. The peak resident memory is read after each run.
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
    face = None
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
        elif k == "random":
            out[i] = rng.integers(0, 256, (h, w, 3))
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


def run(path: str, spec: dict, batches: list[int], face: str = "") -> dict:
    """Output shape, dtype and finiteness for each input kind (batch 1) and for each
    batch size (mixed kinds), and the peak resident memory (KiB) after each."""
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
        out.append(
            {
                "batch": n,
                "kinds": list(kinds),
                "shape": list(y.shape),
                "dtype": str(y.dtype),
                "finite": bool(np.isfinite(y).all()),
                "peak_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
            }
        )
    return {"runs": out}
