"""The export contract, default deny: what a tenant may export, and the release rebuilt
from what the gate parsed (content disarm and reconstruction).

Every file given is assigned one of the kinds the policy's ``[export.contract]`` lists,
by its name alone (no bytes read outside the confinement); a file that fits no listed
kind is refused with the reason. Then one confined run (``facelab.confine``) parses every
file as its kind and writes the release into a fresh directory:

==============  ==================================================================
kind            may contain, and is rebuilt as
==============  ==================================================================
onnx_model      ``*.onnx``: nodes with allow-listed operators reachable from the
                outputs, and their initializers; changed weights re-quantised with
                dither (``_quantise.py``); at most ``max_new_nodes`` nodes new or
                changed (their float attributes rounded to ``mantissa_bits``); new
                or changed integer tensors only as shapes, axes, pads or bounds; no
                metadata, doc strings, functions, training_info, sparse or unknown
                fields; new names renamed
model_json      ``model.json``: the import schema's keys only, re-serialised; numbers
                not the imported model.json's rounded to ``mantissa_bits``
bench_report    ``report.json`` under the benchmark's schema (numbers rounded);
                ``report.html``, ``det.png``, ``scores.png`` drawn again by
                facelab's report code from it (the tenant's are discarded)
metrics_table   ``*.csv``, ``*.tsv``, ``*.parquet``: declared columns, numbers,
                group labels with a count of at least ``min_cell_count``
text            ``*.txt``, ``*.md``, ``*.log``: UTF-8 under ``max_text_bytes``,
                NFKC, no control or format characters
weights         ``*.npy``, ``*.npz``, ``*.safetensors``, ``*.h5``, ``*.keras``,
                ``*.gguf``, ``*.pt`` (a pickle-opcode reader that permits only tensor
                reconstruction): tensors re-quantised like ONNX weights
==============  ==================================================================

The manifest signs the rebuilt bytes; the detectors (the last layer) scan them.

Every rebuilt file's facts hold ``capacity_bits``: an upper bound on what the values the
tenant chose (everything not byte-identical to the imported model: changed weights with
their exponents, new nodes, attributes, model.json numbers, text and table bytes) can
carry. ``ops.export`` charges their sum to the tenant's budget across all its releases
(``export.contract.tenant_capacity_bits``, recorded in each release's audit entry) and
refuses an export that goes over it. The bound is an upper bound, not a detector: a
payload that fits in what is left of the budget leaves. That is why a model (ONNX and its
model.json) leaves only as a training job of the tenant wrote it
(``models_require_attestation``, ``attestation.py``): then only the job's spec is charged.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from facelab import confine
from facelab.scratch import scratch_dir as _scratch

REPORT_FILES = {"report.html", "det.png", "scores.png", "groups.png"}  # facelab.bench.report
SUFFIX_KIND = {
    ".onnx": "onnx_model",
    ".csv": "metrics_table",
    ".tsv": "metrics_table",
    ".parquet": "metrics_table",
    ".txt": "text",
    ".md": "text",
    ".log": "text",
    ".npy": "weights",
    ".npz": "weights",
    ".safetensors": "weights",
    ".h5": "weights",
    ".hdf5": "weights",
    ".keras": "weights",
    ".gguf": "weights",
    ".pt": "weights",
    ".pth": "weights",
}


@dataclass
class Item:
    """One file given: where it is, where it goes in the release, its kind."""

    src: Path
    rel: str  # path in the release (as given)
    kind: str | None
    reason: str = ""  # why it is refused (contract or rebuild)
    out: Path | None = None  # the rebuilt file (or directory, for a report)
    facts: dict = field(default_factory=dict)
    discarded: bool = False  # a report file replaced by the gate's own drawing
    canon: str = ""  # the path the gate gives it in the release (see ``canonical_names``)
    # the training job that wrote it, by the audit log (set by the gate, never by the
    # confined reader: ``ops.check``); None when it is not attested
    attested: dict | None = None

    @property
    def release_rel(self) -> str:
        """Path in the release: the gate's own name for it (file names chosen by the
        tenant are a channel out), with the suffix of the rebuilt format when the
        rebuild changed it (a PyTorch zip or GGUF as safetensors, a table as CSV)."""
        rel = self.canon or self.rel
        if self.out is not None and self.kind in ("weights", "metrics_table"):
            return str(PurePosixPath(rel).with_suffix(self.out.suffix))
        return rel


_BASE = {"onnx_model": "model", "text": "text", "metrics_table": "table", "weights": "weights"}


def canonical_names(items: list[Item]) -> None:
    """Name every item as the gate names it: directories ``part-1``, ``part-2``, ...
    (in the order of their given names; none when all files share one), files by kind
    (``model.onnx``, ``text.txt``, ``table-2.csv``); the fixed names of facelab's own
    formats (model.json, report.json and a report's plots) are kept. Only the names'
    order and count are left of what the tenant chose."""
    parents = sorted({str(PurePosixPath(it.rel).parent) for it in items})
    flat = len(parents) == 1
    dir_of = {p: "" if flat else f"part-{i}/" for i, p in enumerate(parents, 1)}
    used: dict[str, set[str]] = {}
    for it in sorted(items, key=lambda x: x.rel):
        d = dir_of[str(PurePosixPath(it.rel).parent)]
        name = PurePosixPath(it.rel).name
        if not (name in ("model.json", "report.json") or name in REPORT_FILES):
            suffix = PurePosixPath(name).suffix.lower()
            base = _BASE.get(it.kind or "", "file")
            name, n = f"{base}{suffix}", 1
            while name in used.setdefault(d, set()):
                n += 1
                name = f"{base}-{n}{suffix}"
        used.setdefault(d, set()).add(name)
        it.canon = d + name


def classify(items: list[tuple[Path, str]], kinds: tuple[str, ...]) -> list[Item]:
    """Assign each (file, release path) a kind of the contract by its name; a report's
    html and plots are discarded when its report.json is given beside them."""
    out = []
    report_dirs = {
        str(PurePosixPath(rel).parent)
        for _, rel in items
        if PurePosixPath(rel).name == "report.json"
    }
    for src, rel in items:
        name = PurePosixPath(rel).name
        suffix = PurePosixPath(name).suffix.lower()
        if src.is_symlink() or not src.is_file():
            out.append(Item(src, rel, None, "not a regular file"))
            continue
        if name == "model.json":
            kind = "model_json"
        elif name == "report.json":
            kind = "bench_report"
        elif name in REPORT_FILES and str(PurePosixPath(rel).parent) in report_dirs:
            out.append(Item(src, rel, "bench_report", discarded=True))
            continue
        else:
            kind = SUFFIX_KIND.get(suffix)
        if kind is None:
            why = (
                "images leave only as plots that facelab's report code draws again "
                "(beside their report.json)"
                if suffix in (".png", ".jpg", ".jpeg", ".gif", ".bmp", ".webp", ".html")
                else f"{suffix or 'a file without a suffix'} is no kind of the export contract"
            )
            out.append(Item(src, rel, None, why))
        elif kind not in kinds:
            out.append(Item(src, rel, kind, f"kind {kind} is not in export.contract.kinds"))
        else:
            out.append(Item(src, rel, kind))
    canonical_names(out)
    return out


def _readable(top: Path) -> None:
    top.chmod(0o755)
    for p in top.rglob("*"):
        if not p.is_symlink():
            p.chmod(0o755 if p.is_dir() else 0o644)


def child_policy(policy, importing) -> dict:
    c = dict(policy.contract)
    c["allowed_ops"] = sorted(importing.allowed_ops)
    c["allowed_domains"] = list(importing.allowed_domains)
    c["max_tensor_elements"] = policy.max_tensor_elements
    return c


def rebuild(
    items: list[Item],
    policy,
    importing,
    scratch: Path,
    baselines: dict[str, Path],
    seed: int,
) -> str | None:
    """Rebuild every accepted item in one confined run; fills ``out``, ``facts`` and
    ``reason``. ``baselines`` (name -> ONNX, all in one directory under ``scratch``) are
    the models the tenant imported. Returns a reason when the confinement itself failed
    (then every item is refused)."""
    todo = [it for it in items if it.kind and not it.reason and not it.discarded]
    if not todo:
        return None
    src_dir = scratch / "in"
    out_dir = scratch / "out"
    src_dir.mkdir()
    files = []
    for i, it in enumerate(todo):
        d = src_dir / str(i)
        d.mkdir()
        shutil.copyfile(it.src, d / PurePosixPath(it.rel).name, follow_symlinks=False)
        out_name = PurePosixPath(it.rel).name
        if it.kind == "bench_report":
            out_name = "report"
        files.append(
            {
                "name": it.rel,
                "kind": it.kind,
                "src": str(d / PurePosixPath(it.rel).name),
                "out": str(out_dir / str(i) / out_name),
            }
        )
    read = [src_dir]
    if baselines:
        read.append(next(iter(baselines.values())).parent)
    _readable(scratch)
    out_dir.mkdir()
    run = confine.run_python(
        "facelab.gates.exporting._rebuild_child:run",
        {
            "files": files,
            "policy": child_policy(policy, importing),
            "baselines": {k: str(v) for k, v in baselines.items()},
            "seed": seed,
        },
        read=read,
        write=[out_dir],
        limits=confine.Limits(
            wall_seconds=float(policy.contract["rebuild_seconds"]),
            cpu_seconds=int(policy.contract["rebuild_seconds"]) + 2,
            memory_mb=int(policy.contract["rebuild_memory_mb"]),
            max_procs=32,
            max_write_mb=max(64, 3 * sum(it.src.stat().st_size for it in todo) >> 20),
            max_files=64 + 8 * len(todo),
            max_output_kb=64,
        ),
    )
    if run.status != "ok" or not isinstance(run.result, dict):
        why = f"the confined reader did not finish ({run.status}: {(run.error or '')[:160]})"
        for it in todo:
            it.reason = why
        return why
    _, unsafe = confine.walk_regular(out_dir)
    if unsafe:
        why = f"the confined reader left {unsafe[0].path!r}, not a regular file"
        for it in todo:
            it.reason = why
        return why
    results = run.result.get("files", [])
    for i, (it, r) in enumerate(zip(todo, results, strict=False)):
        if r.get("status") != "ok":
            it.reason = str(r.get("reason", "not rebuilt"))
            continue
        it.facts = r.get("facts", {}) if isinstance(r.get("facts"), dict) else {}
        d = out_dir / str(i)
        if it.kind == "bench_report":
            it.out = d / "report"
        else:
            produced = [
                p for p in d.iterdir() if not p.name.endswith(".scan.npz") and not p.is_symlink()
            ]
            if len(produced) != 1:
                it.reason = "the rebuild wrote no single file"
                continue
            it.out = produced[0]
    for it in todo[len(results) :]:
        it.reason = "no result from the confined reader"
    return None


def scratch_dir() -> Path:
    return _scratch("export")
