"""Dynamic smoke test: load with onnxruntime and run one synthetic batch in a child
process under CPU-time, address-space and wall-clock limits, then check the output's
shape, dtype and finiteness against model.json. Runs only after every static check
passed: a model that failed them is never loaded."""

from __future__ import annotations

import json
import resource
import signal
import subprocess
import sys

from lab.gates.importing._types import CheckResult, GateContext, result

NAME = "smoke test"

_CHILD = r"""
import json, sys
import numpy as np
import onnxruntime as ort
path, spec = sys.argv[1], json.loads(sys.argv[2])
h, w = spec["input"]["size"]
c = 1 if spec["input"]["channels"] == "GRAY" else 3
shape = (2, c, h, w) if spec["input"]["layout"] == "NCHW" else (2, h, w, c)
x = np.random.default_rng(0).uniform(-1, 1, shape).astype(np.float32)
opts = ort.SessionOptions()
opts.intra_op_num_threads = 1
opts.inter_op_num_threads = 1
s = ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])
inputs = s.get_inputs()
if len(inputs) != 1:
    print(json.dumps({"error": f"model has {len(inputs)} inputs, 1 expected"})); sys.exit(0)
out = s.run(None, {inputs[0].name: x})[0]
print(json.dumps({"shape": list(out.shape), "dtype": str(out.dtype),
                  "finite": bool(np.isfinite(out).all())}))
"""


def _limits(memory_mb: int, cpu_s: int):
    def apply() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (memory_mb << 20, memory_mb << 20))
        resource.setrlimit(resource.RLIMIT_CPU, (cpu_s, cpu_s + 1))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))

    return apply


def run(ctx: GateContext) -> CheckResult:
    pol = ctx.policy
    spec = ctx.model_json
    assert spec is not None
    try:
        p = subprocess.run(
            [sys.executable, "-c", _CHILD, str(ctx.package.path("model.onnx")), json.dumps(spec)],
            capture_output=True,
            text=True,
            timeout=pol.smoke_timeout_s,
            preexec_fn=_limits(pol.smoke_memory_mb, pol.smoke_timeout_s + 2),
            check=False,
            cwd=ctx.root,
        )
    except subprocess.TimeoutExpired:
        return result(NAME, [f"the model ran past the {pol.smoke_timeout_s} s time limit"])
    if p.returncode != 0:
        tail = (p.stderr.strip().splitlines() or ["no output"])[-1][:200]
        if p.returncode == -signal.SIGXCPU:
            return result(
                NAME, [f"the model ran past the {pol.smoke_timeout_s} s time limit (CPU time)"]
            )
        if p.returncode == -signal.SIGKILL or "MemoryError" in p.stderr or "bad_alloc" in p.stderr:
            return result(
                NAME,
                [f"the model exceeded the CPU or {pol.smoke_memory_mb} MiB memory limit ({tail})"],
            )
        return result(NAME, [f"onnxruntime could not run the model: {tail}"])
    try:
        out = json.loads(p.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        return result(NAME, ["the smoke test printed no result"])
    if "error" in out:
        return result(NAME, [out["error"]])
    want = [2, spec["output"]["dim"]]
    problems = []
    if out["shape"] != want:
        problems.append(
            f"output shape {tuple(out['shape'])} contradicts model.json (expected {tuple(want)})"
        )
    if out["dtype"] != "float32":
        problems.append(f"output dtype {out['dtype']}, float32 expected")
    if not out["finite"]:
        problems.append("output holds NaN or infinity")
    return result(NAME, problems, f"output {tuple(out['shape'])} {out['dtype']}")
