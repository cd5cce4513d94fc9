"""Dynamic smoke test: load with onnxruntime and run synthetic inputs of several kinds
(``_smoke_child``: a synthetic face, black, white, the mean, random, a checkerboard) at
batch 1, then mixed batches of several sizes up to the largest a lab job uses, in the
zero client's confinement (``facelab.confine``: dedicated uid, namespaces, seccomp,
Landlock, limits; no passphrase in its environment), then check each output's shape,
dtype and finiteness against model.json, and that memory does not grow faster than the
batch; and that templates discriminate: the templates of ``IDENTITIES`` distinct
synthetic faces must not be near-identical (:func:`discrimination`, at least
``import.min_template_distance`` apart on average; issue 15 round 4: a constant template
plus 1e-7 of the real one verified anyone as anyone). Runs only after every static
check passed: a model that failed them is never loaded."""

from __future__ import annotations

import functools
import shutil
from pathlib import Path

import numpy as np
from facelab import confine
from facelab.gates.importing._types import CheckResult, GateContext, result
from facelab.scratch import scratch_dir

NAME = "smoke test"
# the largest batch a lab job feeds a model: facelab.bench._matcher.Matcher.extract's
# ``batch`` (a test keeps the two equal); a job's last batch may be any size below it
JOB_BATCH = 64
SMOKE_BATCHES = (2, 7, 16)
# a row of a batch may differ from the same image run alone by float rounding only
# (kernels block differently per batch size: measured below 1e-5 on the shipped models)
BATCH_TOLERANCE = 1e-3


def batches(pol) -> list[int]:
    """The batch sizes of the smoke test, ascending: a few small and odd ones and the
    largest a lab job uses (or the policy's ``smoke_batch``, when set)."""
    big = max(2, int(getattr(pol, "smoke_batch", 0) or JOB_BATCH))
    return sorted({*(b for b in SMOKE_BATCHES if b < big), big})


def _readable(top: Path) -> None:
    top.chmod(0o755)
    for p in top.rglob("*"):
        if not p.is_symlink():
            p.chmod(0o755 if p.is_dir() else 0o644)


# distinct synthetic identities whose templates must differ (the discrimination rule)
IDENTITIES = 6


@functools.lru_cache(maxsize=4)
def synthetic_face(h: int, w: int, identity: int = 0):
    """A synthetic passport face (``facelab.synth``, seed 7, identity ``identity``)
    aligned to (h, w) the way a benchmark job aligns it (``facelab.bench._align``): RGB
    uint8."""
    from facelab.bench._align import align
    from facelab.synth import SynthConfig, render_identity

    cfg = SynthConfig(identities=identity + 1, captures=0, seed=7)
    row, img = render_identity(cfg, identity)[0]
    lms = np.array([[float(row[f"lm{j}_x"]), float(row[f"lm{j}_y"])] for j in range(5)])
    return align(img, lms, (h, w))


def discrimination(templates) -> tuple[float, float]:
    """(mean, min) cosine distance (1 - cosine similarity) over the pairs of rows of
    ``templates`` (ndarray of shape (k, d), one row per distinct identity, k >= 2).

    A face matcher's templates of different people differ: the shipped models give a
    mean near 1.0, a random-projection model 0.05. A template that is a constant plus
    a vanishing function of the face gives 0 (every pair verifies: a false-match rate
    of 100%). A zero row counts as distance 1 from every other row (it matches nothing). Pure."""
    t = np.asarray(templates, np.float64)
    norms = np.linalg.norm(t, axis=1)
    unit = np.divide(t, norms[:, None], out=np.zeros_like(t), where=norms[:, None] > 0)
    sim = unit @ unit.T
    i, j = np.triu_indices(len(t), 1)
    d = 1.0 - sim[i, j]
    return float(d.mean()), float(d.min())


def run(ctx: GateContext) -> CheckResult:
    pol = ctx.policy
    spec = ctx.model_json
    assert spec is not None
    sizes = batches(pol)
    big = sizes[-1]
    scratch = scratch_dir("smoke")
    model = ctx.package.path("model.onnx")
    try:
        # the gate's private copy of the package, copied again for the run's uid to read
        src = scratch / "model"
        shutil.copytree(model.parent, src, symlinks=True)
        inputs = scratch / "inputs"
        inputs.mkdir()
        h, w = spec["input"]["size"]
        np.save(inputs / "face.npy", synthetic_face(h, w))
        faces = np.stack([synthetic_face(h, w, k) for k in range(IDENTITIES)])
        np.save(inputs / "faces.npy", faces)
        _readable(scratch)
        run = confine.run_python(
            "facelab.gates.importing.checks._smoke_child:run",
            {
                "path": str(src / model.name),
                "spec": spec,
                "batches": sizes,
                "face": str(inputs / "face.npy"),
                "faces": str(inputs / "faces.npy"),
            },
            read=[src, inputs],
            write=[scratch / "work"],
            limits=confine.Limits(
                wall_seconds=pol.smoke_timeout_s,
                cpu_seconds=pol.smoke_timeout_s + 2,
                memory_mb=pol.smoke_memory_mb,
                max_procs=32,
                max_write_mb=64,
                max_files=64,
                max_output_kb=64,
            ),
        )
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    if run.status == "refused":
        return result(NAME, [f"the confinement cannot be built here: {run.error}"])
    if run.status == "timeout":
        return result(NAME, [f"the model ran past the {pol.smoke_timeout_s} s time limit"])
    if run.status == "denied":
        return result(NAME, ["the model's run made a forbidden system call"])
    if run.status == "limit":
        why = "; ".join(run.events) or "a limit"
        return result(
            NAME, [f"the model exceeded the CPU or {pol.smoke_memory_mb} MiB memory limit ({why})"]
        )
    if run.status != "ok" or not isinstance(run.result, dict):
        err = run.error or "no result"
        if "MemoryError" in err or "bad_alloc" in err or "allocat" in err.lower():
            return result(
                NAME, [f"the model exceeded the {pol.smoke_memory_mb} MiB memory limit ({err})"]
            )
        return result(NAME, [f"onnxruntime could not run the model: {err[:200]}"])
    out = run.result
    if "error" in out:
        return result(NAME, [str(out["error"])[:200]])
    problems = []
    runs = out.get("runs", [])
    for r in runs:
        want = [r["batch"], spec["output"]["dim"]]
        if r["shape"] != want:
            problems.append(
                f"output shape {tuple(r['shape'])} at batch {r['batch']} contradicts "
                f"model.json (expected {tuple(want)})"
            )
        if r["dtype"] != "float32":
            problems.append(f"output dtype {r['dtype']}, float32 expected")
        if not r["finite"]:
            problems.append(f"output holds NaN or infinity at batch {r['batch']}")
        if float(r.get("deviation", 0.0)) > BATCH_TOLERANCE:
            problems.append(
                f"the output for an image depends on the other images of its batch (at "
                f"batch {r['batch']} a row differs from the same image run alone by "
                f"{float(r['deviation']):.2g} of its magnitude): a template must be a "
                "function of its own image, or one person's face leaks into another's"
            )
    templates = out.get("identities")
    floor = float(getattr(pol, "min_template_distance", 0.001))
    if templates is not None:
        mean_d, min_d = discrimination(templates)
        if not mean_d >= floor:  # NaN included
            problems.append(
                f"templates do not discriminate: {IDENTITIES} different synthetic faces give "
                f"near-identical templates (mean pairwise cosine distance {mean_d:.2g}, min "
                f"{min_d:.2g}; limit {floor:g}, import.min_template_distance): a matcher "
                "whose template barely depends on the input verifies anyone as anyone"
            )
    else:
        problems.append("the smoke test returned no templates of distinct identities")
    ones = [r for r in runs if r["batch"] == 1]
    if ones and runs[-1]["batch"] == big and big > 1:
        base = max(r["peak_kib"] for r in ones)
        grew = runs[-1]["peak_kib"] - base
        # memory for a batch of `big` may be `big` times a batch of one, plus slack
        per_one = max(base // 8, 16 << 10)
        if grew > big * per_one:
            problems.append(
                f"memory grows faster than the batch ({grew >> 10} MiB more at batch {big})"
            )
    shape = tuple(runs[-1]["shape"][1:]) if runs else ()
    kinds = ", ".join(r["kinds"][0] for r in runs if r["batch"] == 1)
    return result(
        NAME,
        sorted(set(problems)),
        f"output (N, {', '.join(map(str, shape))}) float32 for inputs {kinds} at batch 1 "
        f"and mixed at batches {', '.join(map(str, sizes))}",
    )
