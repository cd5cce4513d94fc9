"""The import gate: run every check, decide, and register what passes.

Where each check runs (issue 15: every byte a checker reads, parsers that fail closed):

1. **intake**, in this process, parsing nothing: a directory is copied file by file
   (``package.copy_dir``: no links followed, hard links refused), an archive is copied
   whole, into a private work directory.
2. **confined checks** (``_static_child`` in ``facelab.confine``, one run, with time and
   memory limits): the tar is unpacked by ``_tar.py``; files (types by magic bytes,
   pickles and archives at any offset), model.json, ONNX (the whole ModelProto, then
   ``onnx.checker`` with the private copy as base directory). A crash, hang,
   RecursionError or blow-up in there is a refusal naming it.
3. **read-back**: what the run wrote is read with ``walk_regular`` (no links, one link
   per file) and compared with what it reported; the copy is handed back to this uid.
4. **signature and approvals**, in this process, on the private copy.
5. **smoke test** (``checks/smoke.py``, confined), only when everything before passed.
6. **registry** (``check_name``, in ``ops``): one name@version per tenant; then
   :func:`register` stores a copy *rebuilt* from the signed files and the re-written
   signature and approvals (:func:`rebuild`), never a copy of the delivered tree.

The report lists every check and every problem; the decision is "registered" only if
all passed. The work directory is removed on every path (``Package.cleanup``; on an
exception, here).
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import signal
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from facelab import confine
from facelab.audit.events import escape_text
from facelab.confine.safefs import disown
from facelab.errors import BadInputError
from facelab.gates.importing import _tar
from facelab.gates.importing._types import CheckResult, GateContext, policy_to_json
from facelab.gates.importing.checks import files, model_json, onnx_static, signature, smoke
from facelab.gates.importing.package import Package, adopt, copy_archive, copy_dir
from facelab.scratch import scratch_dir

from enclave_policy import ImportPolicy

STATIC_TARGET = "facelab.gates.importing._static_child:run"
STATIC_TIMEOUT_S = 120.0
STATIC_MEMORY_MB = 4096


@dataclass(frozen=True)
class ImportReport:
    package: str
    tenant: str
    checks: tuple[CheckResult, ...]
    digest: str
    model: str  # name@version from model.json, when readable

    @property
    def accepted(self) -> bool:
        return all(c.passed for c in self.checks)

    def failed(self) -> list[CheckResult]:
        return [c for c in self.checks if not c.passed]

    def to_json(self) -> dict:
        return {
            "package": self.package,
            "tenant": self.tenant,
            "model": self.model,
            "digest": self.digest,
            "accepted": self.accepted,
            "checks": [c.to_json() for c in self.checks],
        }

    def table(self) -> str:
        """The report for a terminal. Every string from the package (names, details,
        reasons) passes ``escape_text``: a control character (ESC, BEL, CR, a bidi
        override) prints as ``\\x1b`` and the like, never as itself."""
        e = escape_text
        lines = [
            f"import gate: {e(self.package, 500)} (tenant {e(self.tenant)}, "
            f"{e(self.model) or '?'})",
            f"  {'check':<12} {'result':<7} detail",
        ]
        for c in self.checks:
            detail = c.info if c.passed else c.problems[0]
            lines.append(f"  {c.name:<12} {'pass' if c.passed else 'FAIL':<7} {e(detail, 600)}")
            for extra in c.problems[1:]:
                lines.append(f"  {'':<12} {'':<7} {e(extra, 600)}")
        lines.append(f"  decision: {'REGISTERED' if self.accepted else 'REFUSED'}")
        return "\n".join(lines)


def inspect(
    package: Path | str,
    tenant: str,
    policy: ImportPolicy,
    dynamic: bool = True,
    progress: Callable[[str], None] | None = None,
) -> tuple[ImportReport, GateContext]:
    """Run the gate on a private copy of ``package``; the caller must clean it up
    (``ctx.package.cleanup()``). On an exception nothing is left behind.

    Raises
    ------
    BadInputError
        ``package`` does not exist, or is neither a directory nor an archive.
    """
    src = Path(package)
    if not src.exists():
        raise BadInputError(f"{src}: no such package")
    work = scratch_dir("import")
    try:
        return _inspect(src, work, tenant, policy, dynamic, progress or (lambda _: None))
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise


def _confined_failure(run: confine.ConfinedRun) -> str:
    if run.status == "refused":
        return f"the confinement cannot be built here: {run.error}"
    if run.status == "timeout":
        return f"ran past the {STATIC_TIMEOUT_S:g} s time limit"
    if run.status == "denied":
        return "made a forbidden system call"
    if run.status == "limit":
        return f"hit a limit ({'; '.join(run.events) or 'memory or CPU'})"
    rc = run.returncode
    if rc is not None and rc < 0:
        try:
            name = signal.Signals(-rc).name
        except ValueError:
            name = "unknown"
        return f"was killed by signal {-rc} ({name})"
    return f"crashed ({(run.error or 'no result')[:200]})"


def _inspect(
    src: Path,
    work: Path,
    tenant: str,
    policy: ImportPolicy,
    dynamic: bool,
    step: Callable[[str], None],
) -> tuple[ImportReport, GateContext]:
    step("copying the package; unpacking and parsing it in the confinement")
    work.chmod(0o755)
    inp, out = work / "in", work / "out"
    inp.mkdir(mode=0o755)
    kwargs: dict = {"out": str(out), "policy": policy_to_json(policy)}
    if src.is_dir():
        pkg = copy_dir(
            src, inp / "pkg", max_bytes=policy.max_package_bytes, max_files=policy.max_files
        )
        kwargs |= {"source": str(inp / "pkg"), "kind": "dir", "files": pkg.files}
    else:
        if not _tar.is_tar_or_gzip(src):
            raise BadInputError(f"{src}: not a directory or a tar archive")
        archive_sha = copy_archive(src, inp / "package.tar", max_bytes=policy.max_package_bytes)
        pkg = Package(work / "out" / "tree")
        kwargs |= {"source": str(inp / "package.tar"), "kind": "tar"}
    pkg.work = work
    run = confine.run_python(
        STATIC_TARGET,
        kwargs,
        read=[inp],
        write=[out],
        limits=confine.Limits(
            wall_seconds=STATIC_TIMEOUT_S,
            cpu_seconds=int(STATIC_TIMEOUT_S) + 2,
            memory_mb=STATIC_MEMORY_MB,
            max_procs=16,
            max_file_mb=(policy.max_package_bytes >> 20) + 1,
            max_write_mb=(policy.max_package_bytes >> 20) + 64,
            max_files=policy.max_files + 256,
            max_output_kb=256,
            max_result_kb=2048,
        ),
    )
    res = run.result if run.status == "ok" and isinstance(run.result, dict) else None
    ctx = GateContext(pkg, policy, tenant)
    fatal = ""
    if res is None:
        fatal = f"unpacking and parsing the package in the confinement {_confined_failure(run)}"
    elif "fatal" in res:
        fatal = f"{src.name}: archive refused: {str(res['fatal'])[:300]}"
    elif kwargs["kind"] == "tar":
        fatal = _adopt_tar(ctx, out, res, policy)
    if not fatal:
        fatal = _take_facts(ctx, res)
    if fatal:
        checks = [CheckResult(files.NAME, False, (fatal, *pkg.problems))]
        for name in (signature.NAME, signature.APPROVAL_NAME, model_json.NAME, onnx_static.NAME):
            checks.append(CheckResult(name, False, ("not checked: the package was refused whole",)))
    else:
        by_name = {c["check"]: c for c in res["checks"]}
        confined = {
            name: CheckResult(
                name,
                bool(by_name.get(name, {}).get("passed")),
                tuple(str(p)[:500] for p in by_name.get(name, {}).get("problems", ["no result"])),
                str(by_name.get(name, {}).get("info", ""))[:200],
            )
            for name in (files.NAME, model_json.NAME, onnx_static.NAME)
        }
        f = confined[files.NAME]
        if pkg.problems:  # what intake or read-back refused, in this process
            f = CheckResult(f.name, False, (*pkg.problems, *f.problems), f.info)
        checks = [f, signature.run(ctx), signature.run_approvals(ctx)]
        checks += [_model_json_here(ctx, confined[model_json.NAME]), confined[onnx_static.NAME]]
    if dynamic:
        if all(c.passed for c in checks):
            step("smoke test: the model runs in the confinement")
            checks.append(smoke.run(ctx))
        else:
            checks.append(
                CheckResult(
                    smoke.NAME, False, ("not run: static checks failed, the model is never loaded",)
                )
            )
    model = ""
    if ctx.model_json:
        model = f"{ctx.model_json['name']}@{ctx.model_json['version']}"
    digest = pkg.digest() if pkg.sha256 or src.is_dir() else f"sha256:{archive_sha}"
    report = ImportReport(str(src), tenant, tuple(checks), digest, model)
    return report, ctx


def _adopt_tar(ctx: GateContext, out: Path, res: dict, policy: ImportPolicy) -> str:
    """Take over the tree the confined unpacker wrote: this uid owns it from now on,
    and only regular single-link files under ``out/tree`` are read back."""
    disown(out, os.getuid(), os.getgid())
    tree = out / "tree"
    root = Path(str(res.get("root", "")))
    if root != tree and root.parent != tree:
        return "the unpacker reported a package root outside its tree"
    reported = res.get("files")
    if not isinstance(reported, dict):
        return "the unpacker reported no file list"
    pkg = adopt(root, reported, policy.max_files, policy.max_package_bytes)
    ctx.package.root, ctx.package.files = pkg.root, pkg.files
    ctx.package.sha256 = pkg.sha256
    ctx.package.problems += pkg.problems
    return ""


def _take_facts(ctx: GateContext, res: dict) -> str:
    kinds, ext = res.get("kinds"), res.get("external_files")
    if not isinstance(kinds, dict) or not isinstance(ext, list):
        return "the confined checks returned a malformed result"
    ctx.kinds = {str(k): str(v) for k, v in kinds.items() if k in ctx.package.files}
    ctx.external_files = {str(r) for r in ext}
    if not ctx.external_files <= set(ctx.package.files):
        return "the confined checks adopted external data that is not in the package"
    return ""


def _model_json_here(ctx: GateContext, confined: CheckResult) -> CheckResult:
    """The confined check decided; this process reads the (bounded, shallow) document
    again for itself rather than trust a document handed back by the run."""
    if not confined.passed:
        return confined
    try:
        doc = model_json.read(ctx.package.path("model.json"))
    except (OSError, ValueError) as e:
        return CheckResult(model_json.NAME, False, (f"model.json: {e}",))
    problems = model_json.unknown_fields(doc) + model_json.validate(doc)
    if problems:
        return CheckResult(model_json.NAME, False, tuple(problems))
    ctx.model_json = doc
    return confined


def register(report: ImportReport, ctx: GateContext, models_dir: Path) -> Path:
    """Store an accepted package content-addressed and read-only; index it."""
    assert report.accepted
    models_dir.mkdir(parents=True, exist_ok=True)
    # imports of several tenants at once: one registry writer at a time (flock(2))
    fd = os.open(models_dir / ".registry.lock", os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        return _register_locked(report, ctx, models_dir)
    finally:
        os.close(fd)


def _register_locked(report: ImportReport, ctx: GateContext, models_dir: Path) -> Path:
    from facelab.vault.ops import content_digest

    digest = report.digest.removeprefix("sha256:")
    target = models_dir / digest
    if not target.exists():
        # named by tenant ('.' is in no tenant id), so that a reconciler of one tenant's
        # interrupted import removes only that tenant's half-copies
        tmp = Path(tempfile.mkdtemp(prefix=f".import-{report.tenant}.", dir=models_dir))
        try:
            rebuild(ctx, tmp / "pkg")
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        os.rename(tmp / "pkg", target)
        tmp.rmdir()
        for dirpath, dirs, _ in os.walk(target):
            for d in dirs:
                os.chmod(Path(dirpath) / d, 0o555)
        os.chmod(target, 0o555)
    index = models_dir / "registry.json"
    entries = list_models(models_dir)
    clash = name_clash(entries, report, ctx, models_dir)
    if clash:
        raise ValueError(clash)
    if not any(e["digest"] == report.digest and e["tenant"] == report.tenant for e in entries):
        assert ctx.model_json is not None
        entries.append(
            {
                "model": report.model,
                "tenant": report.tenant,
                "digest": report.digest,
                "path": digest,
                "model_identity": model_identity(
                    ctx.package.sha256, ctx.model_json, ctx.policy.allowed_files
                ),
                "approvers": ctx.approvers,
                # what the directory holds (the rebuilt copy): jobs check it before use
                "stored_digest": content_digest(target),
                "statement_sha256": ctx.statement_sha256,
                "output_dim": ctx.model_json["output"]["dim"],
                "registered": datetime.now(UTC).isoformat(timespec="seconds"),
            }
        )
        tmp_index = index.with_suffix(".tmp")
        tmp_index.write_text(json.dumps(entries, indent=2) + "\n")
        os.replace(tmp_index, index)
    return target


REGISTRY_CHECK = "registry"


def model_identity(sha256: dict[str, str], model_json_doc: dict, allowed: dict[str, str]) -> str:
    """``sha256:<hex>`` of what a job loads: every file outside ``signatures/`` that is
    not documentation (the policy's "text" roles: README, model card, licence), by its
    SHA-256, and model.json's parsed content (canonical JSON, so line endings do not
    count). The same weights with another README are the same model."""
    import hashlib

    from facelab.audit.events import canonical

    h = hashlib.sha256()
    for rel in sorted(sha256):
        if rel.split("/", 1)[0] == "signatures" or allowed.get(rel) == "text":
            continue
        if rel == "model.json":
            h.update(b"model.json\0" + hashlib.sha256(canonical(model_json_doc)).digest())
        else:
            h.update(rel.encode() + b"\0" + bytes.fromhex(sha256[rel]))
    return "sha256:" + h.hexdigest()


def _stored_identity(path: Path, allowed: dict[str, str]) -> str:
    """:func:`model_identity` of a registered copy (entries written before it was kept)."""
    from facelab.confine import walk_regular

    files, _ = walk_regular(path, max_files=1 << 16, max_file_bytes=1 << 40)
    try:
        doc = model_json.read(path / "model.json")
    except (OSError, ValueError):
        return ""
    return model_identity({f.path: f.sha256 for f in files}, doc, allowed)


def name_clash(
    entries: list[dict], report: ImportReport, ctx: GateContext, models_dir: Path
) -> str:
    """Why ``report``'s package may not be registered under its name@version for its
    tenant ("" when it may): jobs, exports and audit entries name a model by
    name@version, so one name@version is one model per tenant (:func:`model_identity`:
    the package signed again, or with another README, is the same model); changed
    weights or settings need a new version."""
    allowed = ctx.policy.allowed_files
    mine = model_identity(ctx.package.sha256, ctx.model_json or {}, allowed)
    for e in entries:
        if e.get("tenant") != report.tenant or e.get("model") != report.model:
            continue
        theirs = e.get("model_identity") or _stored_identity(models_dir / e["path"], allowed)
        if theirs != mine:
            return (
                f"{report.model} is already registered for tenant {report.tenant} with other "
                f"weights or settings ({e.get('digest')}); a changed model needs a new version"
            )
    return ""


def check_name(report: ImportReport, ctx: GateContext, models_dir: Path) -> ImportReport:
    """``report`` with a "registry" check appended (:func:`name_clash`)."""
    from dataclasses import replace

    if not report.model or not report.accepted:
        return report  # a refused package is refused already; it takes no name
    why = name_clash(list_models(models_dir), report, ctx, models_dir)
    c = CheckResult(REGISTRY_CHECK, not why, (why,) if why else (), "name@version is free")
    return replace(report, checks=(*report.checks, c))


def rebuild(ctx: GateContext, dest: Path) -> None:
    """Write the registered copy of an accepted package into the new directory ``dest``:
    rebuilt, never copied (issue 15 round 2: nothing unsigned reaches the registry).

    * the files the verified tenant statement lists (``ctx.signed_files``), copied from
      the private copy by their names in that list, each checked against the digest the
      signature verified; directories exist only as parents of those files (an empty
      directory, or any name the statement does not list, is never stored);
    * ``signatures/tenant.sig``: the parsed bundle written again as JSON;
    * ``signatures/approvals/<officer>.json``: the four known fields of each *valid*
      approval, written again.

    Raises
    ------
    ValueError
        A file differs from the digest the signature covered (changed since the check).
    """
    import hashlib

    from facelab.gates.importing.signing import APPROVALS, SIG_DIR, TENANT_SIG

    names = sorted(ctx.signed_files)
    if not names or set(names) != {r for r in ctx.package.files if r.split("/", 1)[0] != SIG_DIR}:
        raise ValueError("the signed file list and the checked package differ")
    dest.mkdir(mode=0o755)

    def write(rel: str, data_from: Path | bytes, want: str | None = None) -> None:
        out = dest / rel
        out.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
        h = hashlib.sha256()
        fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
        try:
            if isinstance(data_from, bytes):
                os.write(fd, data_from)
            else:
                src = os.open(data_from, os.O_RDONLY | os.O_NOFOLLOW)
                try:
                    while block := os.read(src, 1 << 20):
                        h.update(block)
                        view = memoryview(block)
                        while view:
                            view = view[os.write(fd, view) :]
                finally:
                    os.close(src)
        finally:
            os.close(fd)
        if want is not None and h.hexdigest() != want:
            raise ValueError(f"{rel}: changed after it was checked")
        os.chmod(out, 0o444)

    for rel in names:
        write(rel, ctx.package.path(rel), ctx.package.sha256.get(rel, "missing"))
    write(TENANT_SIG, ctx.tenant_sig_bytes)
    for officer in sorted(ctx.approvers):
        write(f"{APPROVALS}/{officer}.json", ctx.approval_bytes[officer])


_REGISTRY_FIELDS = ("model", "tenant", "digest", "path")


def list_models(models_dir: Path) -> list[dict]:
    """The entries of ``models_dir/registry.json`` ([] when there is none).

    Raises ``BadInputError`` naming the file when it is not a JSON list of objects with
    string ``model``, ``tenant``, ``digest`` and ``path`` (red team 14e, held: a
    registry of ``[1, 2]`` was a TypeError traceback in ``model list``)."""
    from facelab.errors import BadInputError
    from facelab.jsonfile import read_json

    index = models_dir / "registry.json"
    try:
        entries = read_json(index, what="a model registry", expect=list)
    except FileNotFoundError:
        return []
    for i, e in enumerate(entries):
        if not isinstance(e, dict) or not all(isinstance(e.get(k), str) for k in _REGISTRY_FIELDS):
            raise BadInputError(f"{index}: entry {i} is not a registered model")
    return entries
