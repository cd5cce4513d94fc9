"""Inside the confinement: load a tenant's model with onnxruntime and run synthetic
batches (``facelab.gates.importing.checks.smoke`` calls this through ``facelab.confine``)."""

from __future__ import annotations

import resource


def run(path: str, spec: dict, batches: list[int]) -> dict:
    """Output shape, dtype and finiteness for each batch size, and the peak resident
    memory (KiB) after each."""
    import numpy as np
    import onnxruntime as ort

    h, w = spec["input"]["size"]
    c = 1 if spec["input"]["channels"] == "GRAY" else 3
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    s = ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])
    inputs = s.get_inputs()
    if len(inputs) != 1:
        return {"error": f"model has {len(inputs)} inputs, 1 expected"}
    out = []
    for n in batches:
        shape = (n, c, h, w) if spec["input"]["layout"] == "NCHW" else (n, h, w, c)
        x = np.random.default_rng(0).uniform(-1, 1, shape).astype(np.float32)
        y = s.run(None, {inputs[0].name: x})[0]
        out.append(
            {
                "batch": n,
                "shape": list(y.shape),
                "dtype": str(y.dtype),
                "finite": bool(np.isfinite(y).all()),
                "peak_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
            }
        )
    return {"runs": out}
