"""The job runner, standing in for the documented lab's zero client.

A tenant submits a job spec (a 1:1 benchmark of a registered model, or training through
a registered trainer). The policy decides first (``enclave_policy.rules.check_job``): a
forbidden purpose or a 1:N request is refused and recorded. An allowed job runs in a
child process (``child.py``) that confines itself before any job code runs: no network,
Landlock rules (read the Python installation, facelab, the trainer's module and the one
registered model; write only ``LAB/jobs/T/<id>/`` and ``LAB/outbox/T/<id>/``), CPU,
memory and wall-clock limits, an environment without the passphrase. The runner
decrypts the tenant's records of one split and streams them over a pipe: the job never
holds a key and no decrypted file is written. Results leave only through the export
gate. Start, refusal and outcome (with any denied access) are audit entries.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import secrets
import site
import subprocess
import sys
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import enclave_policy
import lab as lab_package
from enclave_policy.rules import check_job
from lab.audit import AuditLog, Event
from lab.errors import BadInputError, JobRefused
from lab.jobs import sandbox
from lab.jobs.api import end_stream, write_record
from lab.labdir import Lab
from lab.vault.keystore import RootKey
from lab.vault.ops import open_vault
from lab.vault.store import check_tenant


@dataclass(frozen=True)
class JobResult:
    job_id: str
    status: str  # done | failed | timeout
    outbox: Path
    summary: dict
    error: str
    confinement: tuple[str, ...]
    outputs: dict[str, str]  # file -> sha256


def _system_read_paths() -> list[Path]:
    paths = {
        Path(sys.prefix),
        Path(sys.base_prefix),
        Path(sys.exec_prefix),
        Path(lab_package.__file__).parent,
        Path(enclave_policy.__file__).parent,
        Path("/usr"),
        Path("/lib"),
        Path("/lib64"),
        Path("/bin"),
        Path("/etc"),
        Path("/proc/cpuinfo"),
        Path("/proc/meminfo"),
        Path("/sys/devices/system/cpu"),
        Path("/sys/fs/cgroup"),
        Path("/dev/urandom"),
    }
    paths |= {Path(p) for p in [*site.getsitepackages(), site.getusersitepackages()]}
    return sorted(p.resolve() for p in paths if p.exists())


def _inside(a: Path, b: Path) -> bool:
    return a == b or b in a.parents


def plan_paths(
    lab: Lab, model_dir: Path, extra_read: list[Path], workspace: Path, outbox: Path
) -> tuple[list[Path], list[Path]]:
    """Read and write paths; refuse a layout where a readable path would expose the lab
    (its keys, vault or other tenants)."""
    root = lab.paths.root.resolve()
    read = _system_read_paths() + [p.resolve() for p in extra_read]
    for p in read:
        if _inside(root, p):
            raise BadInputError(
                f"{root}: the lab lies inside {p}, which jobs may read; "
                "move the lab out of the Python installation and system "
                "directories"
            )
        if _inside(p, root):
            raise BadInputError(f"{p}: a job may not read inside the lab")
    return [*read, model_dir.resolve()], [workspace.resolve(), outbox.resolve(), Path("/dev/null")]


def run_job(
    lab: Lab,
    root: RootKey,
    tenant: str,
    spec: dict,
    actor: str,
    log: AuditLog,
    *,
    clock=lambda: datetime.now(UTC),
) -> JobResult:
    from lab.bench.lab_run import registered_model

    check_tenant(tenant)
    gov = lab.policy.governance
    if gov is None:
        raise BadInputError(
            f"{lab.paths.policy}: no [purposes]/[jobs] sections; jobs "
            "cannot run (copy them from enclave_policy/default.toml)"
        )
    if not isinstance(spec, dict):
        raise BadInputError("job spec: must be a JSON object")
    spec_digest = hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()
    decision = check_job(gov, tenant, spec)
    if not decision.allowed:
        log.record(
            Event(
                "job.refuse",
                actor,
                role="tenant",
                tenant=tenant,
                object=f"sha256:{spec_digest}",
                decision="refused",
                details={"reason": decision.reason, "spec": spec},
            )
        )
        raise JobRefused(f"job refused: {decision.reason}")
    kind = spec["kind"]
    split = spec.get("split", "train" if kind == "train" else "test")
    if split not in lab.policy.vault.splits:
        raise BadInputError(
            f"job spec: split {split!r} is not one of {sorted(lab.policy.vault.splits)}"
        )
    entry, model_dir = registered_model(lab, tenant, str(spec.get("model", "")))
    trainer, origin, extra = None, None, []
    if kind == "train":  # check_job refused trainers the policy does not register
        name = spec["trainer"]
        trainer = gov.trainers[name]
        found = importlib.util.find_spec(trainer.split(":")[0])
        if found is None or not found.origin:
            raise BadInputError(f"[jobs] trainers.{name}: module {trainer} not found")
        origin = found.origin
        extra = [Path(origin).parent]
    job_id = clock().strftime("%Y%m%dT%H%M%SZ") + "-" + secrets.token_hex(4)
    workspace = lab.paths.root / "jobs" / tenant / job_id
    outbox = lab.paths.root / "outbox" / tenant / job_id
    workspace.mkdir(parents=True, mode=0o700)
    outbox.mkdir(parents=True)
    read, write = plan_paths(lab, model_dir, extra, workspace, outbox)
    strict = gov.isolation == "strict"
    if strict and sandbox.landlock_abi() < 1:
        raise JobRefused(
            'job refused: this kernel has no Landlock, and the policy\'s jobs.isolation is "strict"'
        )
    log.record(
        Event(
            "job.start",
            actor,
            role="tenant",
            tenant=tenant,
            object=job_id,
            details={
                "spec_sha256": spec_digest,
                "kind": kind,
                "split": split,
                "model": entry["model"],
                "trainer": trainer,
                "isolation": gov.isolation,
                "limits": {
                    "cpu_seconds": gov.cpu_seconds,
                    "memory_mb": gov.memory_mb,
                    "wall_seconds": gov.wall_seconds,
                },
            },
        )
    )
    rfd, wfd = os.pipe()
    cfg = {
        "job_id": job_id,
        "tenant": tenant,
        "spec": spec,
        "workspace": str(workspace),
        "outbox": str(outbox),
        "model_dir": str(model_dir),
        "fd": rfd,
        "read": [str(p) for p in read],
        "write": [str(p) for p in write],
        "strict": strict,
        "trainer": trainer,
        "trainer_origin": origin,
    }
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(workspace),
        "TMPDIR": str(workspace),
        "MPLCONFIGDIR": str(workspace),
        "OMP_NUM_THREADS": str(os.cpu_count() or 1),
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "lab.jobs.child"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        pass_fds=(rfd,),
        env=env,
        cwd=workspace,
        preexec_fn=lambda: sandbox.set_limits(gov.cpu_seconds, gov.memory_mb),
    )
    os.close(rfd)

    log.record(
        Event(
            "vault.read",
            actor,
            tenant=tenant,
            details={"split": split, "purpose": f"job {job_id} ({kind})"},
        )
    )

    def feed() -> None:
        try:
            with os.fdopen(wfd, "wb", buffering=1 << 20) as out, open_vault(lab, root) as v:
                for r in v.records(tenant, split):
                    write_record(out, r)
                end_stream(out)
        except (BrokenPipeError, OSError):
            pass  # the job stopped reading (it ended, failed or was killed)

    feeder = threading.Thread(target=feed, daemon=True)
    feeder.start()
    try:
        out, err = proc.communicate(json.dumps(cfg).encode() + b"\n", timeout=gov.wall_seconds)
        status = "done" if proc.returncode == 0 else "failed"
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        status = "timeout"
    feeder.join(timeout=10)
    result = {}
    for line in out.decode("utf-8", "replace").splitlines():
        if line.startswith("FACELAB-RESULT "):
            try:
                result = json.loads(line[len("FACELAB-RESULT ") :])
            except ValueError:
                result = {}
    error = (
        result.get("error", "")
        if status == "failed"
        else f"killed after {gov.wall_seconds} s"
        if status == "timeout"
        else ""
    )
    if status == "failed" and not error:
        error = f"exit {proc.returncode}: " + err.decode("utf-8", "replace")[-300:]
    outputs = {
        str(p.relative_to(outbox)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(outbox.rglob("*"))
        if p.is_file()
    }
    denied = [
        s
        for s in (error, err.decode("utf-8", "replace")[-2000:])
        if "Permission denied" in s or "Network is unreachable" in s
    ]
    log.record(
        Event(
            "job.finish",
            actor,
            role="tenant",
            tenant=tenant,
            object=job_id,
            decision=status,
            details={
                "error": error,
                "denied": bool(denied),
                "confinement": result.get("confinement", []),
                "summary": result.get("summary", {}),
                "outputs": outputs,
                "outbox": str(outbox.relative_to(lab.paths.root)),
            },
        )
    )
    return JobResult(
        job_id,
        status,
        outbox,
        result.get("summary", {}),
        error,
        tuple(result.get("confinement", [])),
        outputs,
    )
