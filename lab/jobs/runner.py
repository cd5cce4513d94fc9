"""The job runner, standing in for the documented lab's zero client.

A tenant submits a job spec (a 1:1 benchmark of a registered model, or training through
a registered trainer). The policy decides first (``enclave_policy.rules.check_job``): a
forbidden purpose, a 1:N request or a parameter the kind does not take is refused and
recorded. An allowed job runs through ``facelab.confine`` (the one confinement module:
dedicated unprivileged uid, every namespace, seccomp, Landlock, whole-job limits) with
its model and trainer read-only and only its workspace and outbox writable. The runner
decrypts the tenant's records of one split and streams them over a pipe: the job never
holds a key. Afterwards the runner reads the outbox without following links or opening
special files (anything but a regular file is removed and recorded), removes the
workspace, and records the outcome from its own observations: the layers it built, the
limits and forbidden system calls the kernel enforced, the outputs' digests, and the
job's summary only if it is a few named numbers (``facelab.jobs.summary``). Results leave
only through the export gate.

What the log says about the outbox (issue 14: the log outlives ``destroy``, so it holds
nothing the tenant's code chose): the number of files, their total size, what was removed
by kind, and the SHA-256 of the job's manifest (``facelab.manifests``,
``LAB/manifests/<tenant>/job-<id>.json``: the files' names and digests, the spec, the
summary, with 32 random bytes of salt), which ``destroy`` removes with the tenant's
other places. Names, digests of tenant-chosen bytes, the job's error text and its
summary's values are never in an entry.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import json
import os
import re
import secrets
import shutil
import stat
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from facelab import confine, manifests
from facelab.audit import AuditLog, Event, intents
from facelab.audit._files_schema import exception_class, lab_fact
from facelab.audit.events import escape_text
from facelab.confine.safefs import UnsafeEntry, disown, walk_regular
from facelab.errors import BadInputError, JobRefused
from facelab.jobs.api import end_stream, write_record
from facelab.jobs.summary import clean_summary
from facelab.labdir import Lab
from facelab.vault.keystore import RootKey
from facelab.vault.ops import open_vault
from facelab.vault.store import check_tenant

from enclave_policy.rules import check_job

MAX_OUTBOX_FILES = 1000
MAX_OUTBOX_DEPTH = 4
_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,63}(/[A-Za-z0-9_][A-Za-z0-9._-]{0,63})*")


@dataclass(frozen=True)
class JobResult:
    job_id: str
    status: str  # done | failed | timeout
    outbox: Path
    summary: dict
    error: str
    confinement: tuple[str, ...]
    outputs: dict[str, str]  # file -> sha256
    events: tuple[str, ...] = ()  # what the kernel and the runner enforced


def _inside(a: Path, b: Path) -> bool:
    return a == b or b in a.parents


def _digest(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


_CLASS = re.compile(r"[A-Za-z_][A-Za-z0-9_.]{0,63}")


def _error_class(message: str) -> str:
    """The exception class of a job's error message ("ValueError: ..." -> "ValueError")
    when it is one of Python's or facelab's ("other" for a class the job's code defined:
    its name is the code's choice); never any of the message's own text."""
    head = message.split(":", 1)[0].strip()
    if not message:
        return ""
    return exception_class(head) if _CLASS.fullmatch(head) else "error"


def _error_record(message: str) -> dict | None:
    """The job's own error in the log: its class (see ``_error_class``) and length. Its
    text is in the outbox (``job-error.txt``) and its digest in the manifest: a digest
    of a short text the job chose would be inverted by guessing."""
    if not message:
        return None
    return {"class": _error_class(message), "chars": len(message)}


_SYSCALL_NO = re.compile(r"syscall \d+")


def _logged_fact(text: str) -> str:
    """A fact of the runner or the kernel as the log may hold it: a system call the
    resolver does not know is not named by its number (a number the job chose), and a
    sentence the schema does not list is replaced (``facelab.audit._files_schema``)."""
    return lab_fact(escape_text(_SYSCALL_NO.sub("syscall ?", text), 200))


def _removal_kind(reason: str) -> str:
    """What kind of entry the runner removed from the outbox (an enumeration: the entry's
    name and its reason's details stay out of the log)."""
    for start, k in (
        ("name outside", "name"),
        ("directory name", "directory-name"),
        ("symbolic link", "link"),
        ("hard link", "hard-link"),
        ("more than", "count"),
        ("FIFO", "special-file"),
        ("socket", "special-file"),
        ("character device", "special-file"),
        ("block device", "special-file"),
        ("special file", "special-file"),
    ):
        if reason.startswith(start):
            return k
    return "size" if reason.endswith("over the cap") else "unreadable"


def _collect_outbox(
    outbox: Path, limits: confine.Limits, job_error: str
) -> tuple[dict[str, tuple[str, int]], list, str]:
    """Read back the outbox without trusting it: give it back to the lab's owner
    (no extended attributes, no chosen timestamps), keep regular files only, remove
    the rest; the job's own error text goes in ``job-error.txt``. An outbox that cannot
    be read safely (names past PATH_MAX, a tree too deep) is removed whole: default
    deny. Returns (outputs: name -> (sha256, bytes), refused entries, problem or "")."""
    try:
        disown(outbox)
        if job_error:
            (outbox / "job-error.txt").write_text(job_error, encoding="utf-8", errors="replace")
        files, unsafe = walk_regular(
            outbox, max_files=MAX_OUTBOX_FILES, max_file_bytes=limits.max_write_mb << 20
        )
        # names are a channel too (and a terminal's escape sequences): plain short names
        # only, a few levels deep; anything else is removed like a link
        named = []
        for f in files:
            if _NAME.fullmatch(f.path) and f.path.count("/") < MAX_OUTBOX_DEPTH:
                named.append(f)
            else:
                unsafe.append(UnsafeEntry(_text(f.path, 120), "name outside [A-Za-z0-9._-]{1,64}"))
                _remove(outbox, f.path)
        for u in unsafe:
            if not u.reason.startswith("name outside"):
                _remove(outbox, u.path)
        for _, dirs, _, dfd in os.fwalk(outbox, follow_symlinks=False):
            for d in list(dirs):
                if not _NAME.fullmatch(d):
                    shutil.rmtree(d, dir_fd=dfd)
                    dirs.remove(d)
                    unsafe.append(UnsafeEntry(_text(d, 120), "directory name refused"))
        return {f.path: (f.sha256, f.size) for f in named}, unsafe, ""
    except (OSError, ValueError, UnicodeError) as e:
        shutil.rmtree(outbox, ignore_errors=True)
        outbox.mkdir(mode=0o700, exist_ok=True)
        return {}, [], f"outbox removed whole: not readable safely ({type(e).__name__})"


def _remove(root: Path, rel: str) -> None:
    """Remove ``root/rel`` (a link, a special file, or a directory) without following
    anything: relative to directory descriptors, so long paths work too."""
    parts = rel.split("/")
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    try:
        for name in parts[:-1]:
            nfd = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd)
            os.close(fd)
            fd = nfd
        st = os.stat(parts[-1], dir_fd=fd, follow_symlinks=False)
        if stat.S_ISDIR(st.st_mode):
            shutil.rmtree(parts[-1], dir_fd=fd)
        else:
            os.unlink(parts[-1], dir_fd=fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _text(s: str, n: int) -> str:
    return escape_text(s, n)


def _joined(facts: list[str], limit: int = 300) -> str:
    """Whole facts joined with "; " up to ``limit`` characters (never a cut one)."""
    out: list[str] = []
    for f in facts:
        if len("; ".join([*out, f])) > limit:
            break
        out.append(f)
    return "; ".join(out)


def _summary_code(problem: str) -> str:
    """Why a summary was refused, as a code (its reason may quote a key the job chose)."""
    if not problem:
        return ""
    for start, code in (
        ("summary is a", "not-an-object"),
        ("summary has", "too-many-keys"),
        ("a summary key", "bad-key"),
    ):
        if problem.startswith(start):
            return code
    return "bad-value"


def _removed_record(unsafe: list) -> dict[str, int]:
    """What the runner removed from the outbox, counted by kind."""
    out: dict[str, int] = {}
    for u in unsafe:
        k = _removal_kind(u.reason)
        out[k] = out.get(k, 0) + 1
    return out


def _limits(gov) -> confine.Limits:
    return confine.Limits(
        wall_seconds=gov.wall_seconds,
        cpu_seconds=gov.cpu_seconds,
        memory_mb=gov.memory_mb,
        max_procs=gov.max_procs,
        max_file_mb=gov.max_outbox_mb,
        max_write_mb=gov.max_outbox_mb,
        max_files=gov.max_outbox_files,
        max_output_kb=gov.max_output_kb,
    )


def run_job(
    lab: Lab,
    root: RootKey,
    tenant: str,
    spec: dict,
    actor: str,
    log: AuditLog,
    *,
    clock=lambda: datetime.now(UTC),
    progress: Callable[[str], None] | None = None,
) -> JobResult:
    """Run a tenant's job; ``progress`` is called with each step's name as it begins."""
    from facelab.bench.lab_run import registered_model

    step = progress or (lambda _: None)
    step("policy check (purpose, 1:N markers, parameters)")
    check_tenant(tenant)
    gov = lab.policy.governance
    if gov is None:
        raise BadInputError(
            f"{lab.paths.policy}: no [purposes]/[jobs] sections; jobs "
            "cannot run (copy them from enclave_policy/default.toml)"
        )
    if not isinstance(spec, dict):
        raise BadInputError("job spec: must be a JSON object")
    canonical = json.dumps(spec, sort_keys=True).encode()
    spec_digest = hashlib.sha256(canonical).hexdigest()
    decision = check_job(gov, tenant, spec)
    if not decision.allowed:
        log.record(
            Event(
                "job.refuse",
                actor,
                role="tenant",
                tenant=tenant,
                decision="refused",
                # a code, not the reason's text: that may quote the tenant's spec
                details={"reason": decision.code or "other", "spec_bytes": len(canonical)},
            )
        )
        raise JobRefused(f"job refused: {decision.reason}")
    kind = spec["kind"]
    split = spec.get("split", "train" if kind == "train" else "test")
    if split not in lab.policy.vault.splits:
        raise BadInputError(
            f"job spec: split {split!r} is not one of {sorted(lab.policy.vault.splits)}"
        )
    trainer, origin, extra, privacy = None, None, [], None
    if kind == "train":  # check_job refused trainers the policy does not register
        name = spec["trainer"]
        trainer = gov.trainers[name]
        privacy = gov.trainer_privacy.get(name)
        try:
            found = importlib.util.find_spec(trainer.split(":")[0])
        except (ImportError, ValueError):
            found = None
        if found is None or not found.origin:
            raise BadInputError(f"[jobs] trainers.{name}: module {trainer} not found")
        origin = found.origin
        # only the trainer's own code: its file, or the top-level package it lives in
        # (never the rest of the directory it was found in)
        top = trainer.split(":")[0].split(".")[0]
        top_spec = importlib.util.find_spec(top) if top != trainer.split(":")[0] else found
        if top_spec is not None and top_spec.submodule_search_locations:
            extra = [Path(p) for p in top_spec.submodule_search_locations]
        else:
            extra = [Path(origin)]
    job_id = clock().strftime("%Y%m%dT%H%M%SZ") + "-" + secrets.token_hex(4)
    workspace = lab.paths.root / "jobs" / tenant / job_id
    outbox = lab.paths.root / "outbox" / tenant / job_id
    root_dir = lab.paths.root.resolve()
    for p in [*confine.bound_paths(), *(Path(x).resolve() for x in extra)]:
        if _inside(root_dir, p):
            raise BadInputError(
                f"{root_dir}: the lab lies inside {p}, which jobs read; move the lab out of it"
            )
        if _inside(p, root_dir):
            raise BadInputError(f"{p}: a job may not read inside the lab")
    entry, model_dir = registered_model(lab, tenant, str(spec.get("model", "")))
    with open_vault(lab, root) as v:  # no data, no job (a destroyed tenant, say)
        if next(iter(v.records(tenant, split)), None) is None:
            raise BadInputError(f"tenant {tenant!r} has no records in split {split!r}")
    strict = gov.isolation == "strict"
    missing = confine.missing_layers()
    if strict and missing:
        log.record(
            Event(
                "job.refuse",
                actor,
                role="tenant",
                tenant=tenant,
                decision="refused",
                details={"reason": "isolation-missing", "missing": len(missing)},
            )
        )
        raise JobRefused(
            'job refused: the policy\'s jobs.isolation is "strict" and this machine lacks: '
            + "; ".join(missing)
        )
    workspace.mkdir(parents=True, mode=0o700)
    outbox.mkdir(parents=True, mode=0o700)
    limits = _limits(gov)
    log.record(
        Event(
            "job.start",
            actor,
            role="tenant",
            tenant=tenant,
            object=job_id,
            details={
                # the size of all the tenant chose in the job (the export gate charges it
                # for an attested output: facelab.gates.exporting.attestation); the spec
                # itself and its digest are in the job's manifest
                "spec_bytes": len(canonical),
                "kind": kind,
                "split": split,
                "model": entry["model"],
                "model_digest": entry["digest"],
                "trainer": trainer,
                # the trainer's differential privacy (per subject), as the policy set it:
                # the export gate attests only outputs of jobs that ran under one
                "privacy": privacy,
                "isolation": gov.isolation,
                "limits": {
                    "cpu_seconds": limits.cpu_seconds,
                    "memory_mb": limits.memory_mb,
                    "wall_seconds": limits.wall_seconds,
                    "max_procs": limits.max_procs,
                    "max_outbox_mb": limits.max_write_mb,
                },
            },
        )
    )
    rfd, wfd = os.pipe()
    kwargs = {
        "job_id": job_id,
        "tenant": tenant,
        "spec": spec,
        "workspace": str(workspace.resolve()),
        "outbox": str(outbox.resolve()),
        "model_dir": str(model_dir.resolve()),
        "fd": rfd,
        "trainer": trainer,
        "trainer_origin": origin,
        "privacy": privacy,
    }
    log.record(
        Event(
            "vault.read",
            actor,
            tenant=tenant,
            details={"split": split, "purpose": f"job {job_id} ({kind})"},
        )
    )

    feed_error: list[str] = []

    def feed() -> None:
        try:
            with os.fdopen(wfd, "wb", buffering=1 << 20) as out, open_vault(lab, root) as v:
                for r in v.records(tenant, split):
                    write_record(out, r)
                end_stream(out)
        except (BrokenPipeError, ConnectionError):
            pass  # the job stopped reading (it ended, failed or was killed)
        except Exception as e:  # the vault failed: the job sees a cut stream
            feed_error.append(f"record stream: {type(e).__name__}")

    feeder = threading.Thread(target=feed, daemon=True)

    def started(_proc) -> None:
        os.close(rfd)
        feeder.start()

    try:
        step(f"confined {kind} job {job_id} (records streamed from the vault)")
        run = confine.run_python(
            "facelab.jobs.child:run",
            kwargs,
            read=[model_dir, *extra],
            write=[workspace, outbox],
            limits=limits,
            strict=strict,
            workdir=workspace,
            pass_fds=(rfd,),
            on_start=started,
        )
    finally:
        if not feeder.is_alive() and not feeder.ident:
            with contextlib.suppress(OSError):
                os.close(rfd)
            with contextlib.suppress(OSError):
                os.close(wfd)
    feeder.join(timeout=10)
    status = {"ok": "done", "timeout": "timeout"}.get(run.status, "failed")
    # what the runner and the kernel saw is recorded as it is; what the job said (its
    # exception) is data: its class name and digest in the log, its text in the outbox
    facts = [*feed_error, *run.events]
    job_error = run.error if run.status == "failed" else ""
    # the outputs are judged and recorded under the tenant's state lock: a tenant destroyed
    # while its job ran keeps no output (the destruction certificate listed the outbox
    # as emptied; what the job wrote after it is the tenant's data all the same)
    with intents.held(lab.paths.audit, tenant, log.lock_wait):
        with open_vault(lab, root) as v:
            destroyed = not v.has_tenant(tenant)
        if destroyed:
            with contextlib.suppress(OSError):
                shutil.rmtree(outbox)  # removes links, never follows them
            status = "failed"
            facts.append("the tenant was destroyed while the job ran: its outputs are removed")
            found, unsafe, outbox_problem = {}, [], ""
        else:
            found, unsafe, outbox_problem = _collect_outbox(outbox, limits, job_error)
        if outbox_problem:
            facts.append(outbox_problem)
        step("checking the summary and the outputs")
        summary, summary_problem = clean_summary(run.result if run.status == "ok" else None)
        # what the tenant chose (names, their digests, the spec, the summary's values,
        # the error's digest) goes in the job's manifest, in a place destroy empties; the
        # entry holds its salted digest, counts and sizes (facelab.manifests)
        manifest_sha: str | None = None
        try:
            # none for a tenant destroyed while the job ran: nothing of it is kept
            manifest_sha = (
                None
                if destroyed
                else manifests.write(
                    lab.paths.root,
                    tenant,
                    manifests.job_name(job_id),
                    "job",
                    {
                        "job": job_id,
                        "outputs": {n: d for n, (d, _) in sorted(found.items())},
                        "output_bytes": {n: b for n, (_, b) in sorted(found.items())},
                        "spec": spec,
                        "spec_sha256": spec_digest,
                        "summary": summary,
                        "summary_sha256": _digest(summary) if summary else None,
                        "summary_refused": summary_problem,
                        "error_sha256": hashlib.sha256(
                            job_error.encode("utf-8", "surrogateescape")
                        ).hexdigest()
                        if job_error
                        else None,
                        "removed": [f"{u.path}: {u.reason}" for u in unsafe][:1000],
                    },
                )
            )
        except (OSError, BadInputError, TypeError, ValueError) as e:
            # outputs nobody can account for after the fact are not kept: default deny
            with contextlib.suppress(OSError):
                shutil.rmtree(outbox)
            found, manifest_sha, status = {}, None, "failed"
            facts.append(f"outbox removed whole: its manifest was not written ({type(e).__name__})")
        outputs = {n: d for n, (d, _) in found.items()}
        error = "; ".join(facts) or _error_class(job_error)
        logged_error = _joined([_logged_fact(f) for f in facts])
        with contextlib.suppress(OSError):
            shutil.rmtree(workspace)  # scratch: never kept, never followed
        log.record(
            Event(
                "job.finish",
                actor,
                role="tenant",
                tenant=tenant,
                object=job_id,
                decision=status,
                details={
                    "error": logged_error or _error_class(job_error),
                    "job_error": _error_record(job_error),
                    "kernel_events": [_logged_fact(e) for e in run.events][:20],
                    "confinement": [_logged_fact(x) for x in run.layers][:20],
                    "summary_keys": len(summary),
                    "summary_refused": _summary_code(summary_problem),
                    "output_files": len(found),
                    "output_bytes": sum(b for _, b in found.values()),
                    "removed_from_outbox": _removed_record(unsafe),
                    **({"manifest_sha256": manifest_sha} if manifest_sha else {}),
                    "outbox": str(outbox.relative_to(lab.paths.root)),
                    "workspace": "removed",
                },
            )
        )
    return JobResult(
        job_id, status, outbox, summary, error, tuple(run.layers), outputs, tuple(run.events)
    )
