"""Behavioural tests of exported models: run them (in the confinement) on the vault's
photos and test what their outputs do, whatever their weights look like.

* **Identification.** A gallery taken from the artifact alone: each output coordinate
  (a per-identity head puts subject ``j`` on coordinate ``j``, whatever rotation hides
  its rows), its negation, and the rows of every tensor of the export in the output's
  space (a gallery shipped beside the model, or inside it). The gallery is fitted on
  passport photos (each subject's best entry) and tested on gate captures: a capture is
  named with probability ``1 / |subjects sharing its best entry|``. Any fine partition
  of a good embedding is consistent per person, so the rate is compared with the same
  gallery turned by random rotations: for training and for held-out subjects, the
  excess must stay under ``max_identification_rate``. An embedding model, which
  identifies only after someone enrols a gallery of the vault, passes; a model that
  brings its gallery with it does not.
* **Accuracy cost of the rebuild**: FNMR at ``fnmr_at_fmr`` on the verification
  subjects, the tenant's model against the rebuilt one (ISO/IEC 19795-1 terms).
* The outputs also give the memorisation and template detectors the model's own space.

A model the gate cannot run (an operator outside the allow-list, a crash, a time-out, an
input it cannot feed) is refused.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from facelab import confine
from facelab.bench._align import align

NAME = "behaviour"


@dataclass
class ModelRun:
    name: str  # release path of the model
    spec: dict
    outputs: list[np.ndarray] = field(default_factory=list)  # (n, d) per rank-2 output
    original: list[np.ndarray] = field(default_factory=list)  # the tenant's model, same rows
    error: str = ""


def spec_from_shape(shape: list[int]) -> dict | None:
    """Preprocessing from the graph's input when there is no model.json: NCHW or NHWC
    with 1 or 3 channels, pixels scaled as the shipped models scale them."""
    if len(shape) != 4:
        return None
    if shape[1] in (1, 3) and shape[2] > 8 and shape[3] > 8:
        layout, c, h, w = "NCHW", shape[1], shape[2], shape[3]
    elif shape[3] in (1, 3) and shape[1] > 8 and shape[2] > 8:
        layout, c, h, w = "NHWC", shape[3], shape[1], shape[2]
    else:
        return None
    return {
        "input": {
            "size": [h, w],
            "layout": layout,
            "channels": "RGB" if c == 3 else "GRAY",
            "mean": 127.5,
            "std": 128.0,
        },
        "output": {"dim": 0},
    }


def preprocess(images: list[np.ndarray], landmarks: list[np.ndarray], spec: dict) -> np.ndarray:
    """Aligned, normalised input batch (n, C, H, W) or (n, H, W, C), float32 (the
    benchmark's own preprocessing, facelab.bench._matcher)."""
    import cv2

    inp = spec["input"]
    h, w = int(inp["size"][0]), int(inp["size"][1])
    c = 1 if inp["channels"] == "GRAY" else 3
    mean = np.asarray(inp["mean"], np.float32).reshape(-1)[:c]
    std = np.asarray(inp["std"], np.float32).reshape(-1)[:c]
    batch = []
    for im, lm in zip(images, landmarks, strict=True):
        a = align(im, lm, (h, w))
        if inp["channels"] == "BGR":
            a = a[..., ::-1]
        elif inp["channels"] == "GRAY":
            a = cv2.cvtColor(a, cv2.COLOR_RGB2GRAY)[..., None]
        batch.append(a)
    x = (np.stack(batch).astype(np.float32) - mean) / std
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2) if inp["layout"] == "NCHW" else x)


def pick_subjects(index, max_subjects: int) -> np.ndarray:
    """Record numbers of up to ``max_subjects`` training and as many held-out subjects
    (spread evenly over the sorted pseudonyms), every record of each."""
    train = sorted(set(index.subjects[index.splits == "train"]))
    held = sorted(set(index.subjects[index.splits != "train"]))

    def sample(xs):
        if len(xs) <= max_subjects:
            return xs
        return [xs[int(i)] for i in np.linspace(0, len(xs) - 1, max_subjects)]

    chosen = set(sample(train)) | set(sample(held))
    return np.flatnonzero(np.isin(index.subjects, sorted(chosen)))


def run_models(
    models: list[tuple[str, Path, Path | None, dict]],
    index,
    behaviour: dict,
    scratch: Path,
) -> tuple[np.ndarray, list[ModelRun]]:
    """Run each (name, rebuilt onnx, original onnx or None, spec) on the chosen records in
    one confined run. Returns the record numbers and a ModelRun per model."""
    rows = pick_subjects(index, int(behaviour["max_subjects"]))
    wanted = set(rows.tolist())
    images, lms = [], []
    for i, r in enumerate(index.reader()):
        if i in wanted:
            images.append(r.image())
            lms.append(r.landmarks)
    work = scratch / "behaviour"
    models_dir = scratch / "behaviour-models"
    work.mkdir(mode=0o700)
    models_dir.mkdir()
    jobs, runs = [], []
    for k, (name, rebuilt, original, spec) in enumerate(models):
        run = ModelRun(name, spec)
        runs.append(run)
        try:
            x = preprocess(images, lms, spec)
        except Exception as e:  # a spec the gate cannot follow
            run.error = f"cannot prepare its input ({type(e).__name__}: {e})"
            continue
        np.save(work / f"x{k}.npy", x)  # vault faces: only in the run's own 0700 directory
        (models_dir / f"m{k}.onnx").write_bytes(rebuilt.read_bytes())
        jobs.append(
            {
                "model": str(models_dir / f"m{k}.onnx"),
                "x": str(work / f"x{k}.npy"),
                "out": str(work / f"y{k}"),
                "k": k,
                "which": "rebuilt",
            }
        )
        if original is not None:
            (models_dir / f"o{k}.onnx").write_bytes(original.read_bytes())
            jobs.append(
                {
                    "model": str(models_dir / f"o{k}.onnx"),
                    "x": str(work / f"x{k}.npy"),
                    "out": str(work / f"o{k}"),
                    "k": k,
                    "which": "original",
                }
            )
    if not jobs:
        return rows, runs
    models_dir.chmod(0o755)
    for p in models_dir.iterdir():
        p.chmod(0o644)
    scratch.chmod(0o755)
    res = confine.run_python(
        "facelab.gates.exporting._rebuild_child:run_models",
        {"jobs": [{k: j[k] for k in ("model", "x", "out")} for j in jobs]},
        read=[models_dir],
        write=[work],
        limits=confine.Limits(
            wall_seconds=float(behaviour["run_seconds"]),
            cpu_seconds=int(behaviour["run_seconds"]) * 2 + 2,
            memory_mb=int(behaviour["run_memory_mb"]),
            max_procs=32,
            max_write_mb=4096,
            max_files=256,
            max_output_kb=64,
        ),
    )
    if res.status != "ok" or not isinstance(res.result, dict):
        why = f"the confined run did not finish ({res.status}: {(res.error or '')[:160]})"
        for r in runs:
            r.error = r.error or why
        return rows, runs
    for j, out in zip(jobs, res.result.get("jobs", []), strict=False):
        run = runs[j["k"]]
        if out.get("status") != "ok":
            run.error = run.error or f"{j['which']} model: {out.get('error', 'failed')}"
            continue
        ys = []
        for kk in range(len(out.get("shapes", []))):
            p = Path(f"{j['out']}.{kk}.npy")
            if p.is_file() and not p.is_symlink():
                y = np.load(p, allow_pickle=False)
                if y.ndim == 2 and y.shape[0] == len(rows) and y.dtype == np.float32:
                    ys.append(y)
        if j["which"] == "rebuilt":
            run.outputs = ys
            if not ys:
                run.error = "no output of shape (images, dimension)"
        else:
            run.original = ys
    return rows, runs


# ---------------------------------------------------------------- identification


def binom_sf(k: int, n: int, p: float) -> float:
    """P(X >= k), X ~ Binomial(n, p) (exact sum in log space)."""
    if k <= 0:
        return 1.0
    if p <= 0:
        return 0.0
    if p >= 1:
        return 1.0
    total = 0.0
    for i in range(k, n + 1):
        total += math.exp(
            math.lgamma(n + 1)
            - math.lgamma(i + 1)
            - math.lgamma(n - i + 1)
            + i * math.log(p)
            + (n - i) * math.log1p(-p)
        )
    return min(1.0, total)


def identification_rate(
    best: np.ndarray, subjects: np.ndarray, passport: np.ndarray
) -> tuple[float, int, int, float]:
    """Rate at which a gallery names gate captures: ``best`` is each record's best
    gallery entry; a subject's entry is the one its passport photo chose. Returns (rate,
    captures named uniquely, captures, chance) where chance = 1 / subjects."""
    entry = {}
    for s, b in zip(subjects[passport], best[passport], strict=True):
        entry.setdefault(str(s), int(b))
    holders: dict[int, list[str]] = {}
    for s, b in entry.items():
        holders.setdefault(b, []).append(s)
    gate = ~passport & np.isin(subjects, list(entry))
    score, unique = 0.0, 0
    for s, b in zip(subjects[gate], best[gate], strict=True):
        h = holders.get(int(b), [])
        if str(s) in h:
            score += 1.0 / len(h)
            unique += len(h) == 1
    n = int(gate.sum())
    return (score / n if n else 0.0), unique, n, 1.0 / max(1, len(entry))


def galleries(y: np.ndarray, tensors: list[tuple[str, np.ndarray]], max_rows: int = 4096):
    """(description, gallery (m, d), cosine?) for each gallery in ``y``'s space: the
    output coordinates and their negation (raw scores), and the rows (or columns, or
    flat d-long pieces) of every tensor of the export (cosine)."""
    d = y.shape[1]
    if d >= 2:
        yield "output coordinates (argmax)", np.eye(d, dtype=np.float32), False
        yield "output coordinates (argmin)", -np.eye(d, dtype=np.float32), False
    for loc, a in tensors:
        if a.dtype.kind not in "iuf" or a.ndim < 1:
            continue
        views = []
        if a.ndim >= 2 and a.shape[-1] == d:
            views.append(("rows", a.reshape(-1, d)))
        if a.ndim == 2 and a.shape[0] == d and a.shape[1] != d:
            views.append(("columns", a.T))
        if a.ndim == 1 and a.size % d == 0 and a.size > d:
            views.append(("flat rows", a.reshape(-1, d)))
        for how, g in views:
            g = np.nan_to_num(np.asarray(g[:max_rows], np.float32))
            if len(g) >= 2:
                yield f"{loc} ({how} as a gallery)", g, True


def _best(y: np.ndarray, g: np.ndarray, cosine: bool) -> np.ndarray:
    if cosine:
        y = y / np.maximum(np.linalg.norm(y, axis=1, keepdims=True), 1e-12)
        g = g / np.maximum(np.linalg.norm(g, axis=1, keepdims=True), 1e-12)
    return (y @ g.T).argmax(axis=1)


def identification(
    run: ModelRun,
    rows: np.ndarray,
    index,
    tensors: list[tuple[str, np.ndarray]],
    pol: dict,
    rotations: int = 32,
    seed: int = 0,
) -> tuple[list[str], list[str]]:
    """(refusal reasons, notes) of the identification test on one model's outputs.

    Any fine partition of a good embedding space is consistent per person, so the rate
    of a gallery is compared with the same gallery turned by random orthogonal rotations
    (same entries, same geometry, no alignment with the data): a gallery whose entries
    sit on the subjects (per-identity prototypes, a shipped gallery) names them far more
    often than its rotations do. Refused when the excess over the rotations' mean is
    above ``max_identification_rate`` and ``z`` (excess over their standard deviation)
    above 4."""
    subjects = index.subjects[rows]
    passport = index.kinds[rows] == "passport"
    train = index.splits[rows] == "train"
    rng = np.random.default_rng(seed)
    reasons, notes = [], []
    worst = (-1.0, "")
    groups = [(g, m) for g, m in (("training", train), ("held-out", ~train)) if m.any()]
    for k, y in enumerate(run.outputs):
        d = y.shape[1]
        qs = [np.linalg.qr(rng.normal(size=(d, d)))[0].astype(np.float32) for _ in range(rotations)]
        for desc, g, cosine in galleries(y, tensors):
            for group, mask in groups:
                rate, uniq, n, chance = identification_rate(
                    _best(y[mask], g, cosine), subjects[mask], passport[mask]
                )
                if n == 0:
                    continue
                rot = np.array(
                    [
                        identification_rate(
                            _best(y[mask], g @ q, cosine), subjects[mask], passport[mask]
                        )[0]
                        for q in qs
                    ]
                )
                excess = rate - float(rot.mean())
                z = excess / max(float(rot.std()), 1e-3)
                if excess > worst[0]:
                    worst = (
                        excess,
                        f"{desc} of output {k}, {group} subjects: {rate:.3f} "
                        f"against {rot.mean():.3f} when rotated",
                    )
                if excess > pol["max_identification_rate"] and z > 4:
                    reasons.append(
                        f"output {k}: {desc} names {group} subjects' gate captures at rate "
                        f"{rate:.3f} ({uniq} of {n} uniquely; chance {chance:.4f}), against "
                        f"{rot.mean():.3f} +- {rot.std():.3f} for the same gallery turned by "
                        f"{rotations} random rotations: its entries sit on the subjects "
                        f"(a gallery carried by the artifact)"
                    )
    notes.append(
        f"identification test ({run.name}): largest excess over rotated galleries "
        f"{max(worst[0], 0):.3f} ({worst[1] or 'none'})"
    )
    return reasons, notes


def fnmr_at(
    templates: np.ndarray, subjects: np.ndarray, passport: np.ndarray, fmr: float
) -> tuple[float, float] | None:
    """(FNMR, FMR used) at the threshold where the impostor rate is ``fmr`` (passport
    enrolments against gate probes, all cross-subject pairs as impostors; ISO/IEC
    19795-1). With fewer than ``1 / fmr`` impostor pairs the FMR is the smallest the
    pairs resolve (``1 / impostor pairs``). None without genuine or impostor pairs."""
    t = templates / np.maximum(np.linalg.norm(templates, axis=1, keepdims=True), 1e-12)
    e, p = t[passport], t[~passport]
    se, sp = subjects[passport], subjects[~passport]
    if len(e) == 0 or len(p) == 0:
        return None
    s = e @ p.T
    same = se[:, None] == sp[None, :]
    imp, gen = s[~same], s[same]
    if len(imp) == 0 or len(gen) == 0:
        return None
    fmr = max(fmr, 1.0 / len(imp))
    thr = np.quantile(imp, 1 - fmr, method="higher")
    return float((gen < thr).mean()), fmr


def accuracy_cost(run: ModelRun, rows: np.ndarray, index, pol: dict) -> tuple[str | None, str]:
    """(refusal reason or None, note) comparing the tenant's model with the rebuilt one
    on the verification subjects (all held-out ones when the vault has too few)."""
    if not run.original or not run.outputs:
        return None, ""
    ver = index.splits[rows] == "verification"
    if len(set(index.subjects[rows][ver])) < 4:
        ver = index.splits[rows] != "train"
    subjects = index.subjects[rows][ver]
    passport = (index.kinds[rows] == "passport")[ver]
    a = fnmr_at(run.original[0][ver], subjects, passport, float(pol["fnmr_at_fmr"]))
    b = fnmr_at(run.outputs[0][ver], subjects, passport, float(pol["fnmr_at_fmr"]))
    if a is None or b is None:
        return None, f"accuracy cost ({run.name}): not estimable (no genuine or impostor pairs)"
    (fa, fmr), (fb, _) = a, b
    note = (
        f"accuracy cost of the rebuild ({run.name}): FNMR {fa:.4f} before, {fb:.4f} after, "
        f"at FMR {fmr:.2g} on {len(set(subjects))} held-out subjects"
    )
    if fb - fa > pol["max_fnmr_increase"]:
        return (
            f"the re-quantised model loses accuracy: FNMR {fa:.4f} -> {fb:.4f} at FMR "
            f"{fmr:.2g} (at most +{pol['max_fnmr_increase']:g}); its weights' low bits "
            "carried what it computes",
            note,
        )
    return None, note
