"""The declared schema of audit entries about a tenant's files (``job.*``, ``export.*``,
``release.*``): every detail key named, every value typed and sized.

Why a declared schema and not only the size limits of :mod:`facelab.audit.events`: the
log outlives the tenant's destruction, and any string the tenant (its code, its files,
their names) can choose that lands in an entry is a channel out of ``destroy``. So these
entries hold only counts, sizes, numbers, digests that cannot be inverted without
material destroy removes (the salted manifest's SHA-256), the digests of what the export
gate released (published by design), lab-made ids (job ids, release ids), values from
short enumerations, and sentences the lab made from its own observations (which start
with one of :data:`LAB_FACT_PREFIXES`). A key that is not declared here, or a value of
the wrong shape, raises ``AuditSchemaError`` when the ``Event`` is built, so a new field
cannot quietly carry tenant text: it has to be declared, with its type, here.
"""

from __future__ import annotations

import builtins
import math
import re
from collections.abc import Callable, Mapping
from typing import Any

from facelab import errors

Check = Callable[[Any], bool]

# the families of actions this schema covers
FAMILIES = ("job.", "export.", "release.")

JOB_ID = re.compile(r"\d{8}T\d{6}Z-[0-9a-f]{8}")
MANIFEST = re.compile(r"(job|export)-\d{8}T\d{6}Z-[0-9a-f]{8}")
_HEX64 = re.compile(r"[0-9a-f]{64}")
_TENANT = r"[a-z][a-z0-9_-]{0,31}"
_RELEASE = re.compile(rf"released/{_TENANT}/\d{{8}}T\d{{6}}Z-[0-9a-f]{{12}}")
_OUTBOX = re.compile(rf"outbox/{_TENANT}/\d{{8}}T\d{{6}}Z-[0-9a-f]{{8}}")
_SPLIT = re.compile(r"[A-Za-z0-9_.-]{1,32}")
_TRAINER = re.compile(r"[A-Za-z_][A-Za-z0-9_.]{0,95}:[A-Za-z_][A-Za-z0-9_]{0,63}")
# a registered model (name@version as the import gate registered it) and its digest
_MODEL = re.compile(r"[!-~]{1,129}")
_MODEL_DIGEST = re.compile(r"(sha256:)?[0-9a-f]{64}")
_REVIEWER = re.compile(r"[!-~]{1,64}")  # a name the policy lists (the lab's)

# exception classes an entry may name: Python's own and facelab's (a class a tenant's
# code defines is a name it chose: "other")
EXCEPTION_CLASSES = frozenset(
    n
    for n, v in [*vars(builtins).items(), *vars(errors).items()]
    if isinstance(v, type) and issubclass(v, BaseException)
)

# the export gate's detectors and the gate's own refusals (blocking counts by detector)
DETECTORS = frozenset(
    {
        "attestation",
        "behaviour",
        "capacity",
        "contract",
        "faces",
        "identifiers",
        "memorisation",
        "payloads",
        "privacy",
        "provenance",
        "representations",
        "structural",
        "templates",
        "unscannable",
        "other",
    }
)

# why a job was refused (enclave_policy.rules.check_job's codes, and the runner's)
JOB_REFUSALS = frozenset(
    {
        "no-kind-or-purpose",
        "purpose-forbidden",
        "purpose-not-allowed",
        "purpose-not-granted",
        "kind-purpose-mismatch",
        "one-to-n",
        "unknown-key",
        "trainer-not-registered",
        "bad-params",
        "isolation-missing",
        "other",
    }
)
SUMMARY_REFUSALS = frozenset({"", "not-an-object", "too-many-keys", "bad-key", "bad-value"})
# why the runner removed an outbox entry (facelab.jobs.runner._removal_kind)
REMOVALS = frozenset(
    {"name", "directory-name", "link", "special-file", "hard-link", "size", "count", "unreadable"}
)

# sentences the lab makes from its own observations (confinement layers, what the kernel
# enforced, the runner's facts): they start with one of these
LAB_FACT_PREFIXES = (
    "identity: ",
    "namespaces: ",
    "seccomp: ",
    "limits: ",
    "cgroup ",
    "landlock: ",
    "Landlock: ",
    "missing: ",
    "bubblewrap ",
    "setpriv ",
    "process limit: ",
    "output over the cap",
    "result over the cap",
    "wall clock: ",
    "writes over the cap",
    "files over the cap",
    "memory over the cgroup limit",
    "processes left behind were killed",
    "forbidden system call: ",
    "exit status ",
    "CPU time over ",
    "record stream: ",
    "outbox removed whole: ",
    "the tenant was destroyed while the job ran",
    "an event the audit schema does not list",
)
MAX_FACT = 300


def _printable(s: str) -> bool:
    return s.isprintable()


def is_lab_fact(v: Any) -> bool:
    return (
        isinstance(v, str)
        and len(v) <= MAX_FACT
        and _printable(v)
        and (v == "" or v.startswith(LAB_FACT_PREFIXES))
    )


def _int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and 0 <= v < 2**63


def _num(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


def _bool(v: Any) -> bool:
    return isinstance(v, bool)


def _rx(rx: re.Pattern) -> Check:
    return lambda v: isinstance(v, str) and rx.fullmatch(v) is not None


def _enum(values: frozenset[str]) -> Check:
    return lambda v: isinstance(v, str) and v in values


def _opt(c: Check) -> Check:
    return lambda v: v is None or c(v)


def _list(c: Check, n: int) -> Check:
    return lambda v: isinstance(v, list | tuple) and len(v) <= n and all(c(x) for x in v)


def _map(key: Check, val: Check, n: int) -> Check:
    return lambda v: (
        isinstance(v, Mapping) and len(v) <= n and all(key(k) and val(x) for k, x in v.items())
    )


def _record(**fields: Check) -> Check:
    return lambda v: (
        isinstance(v, Mapping) and all(k in fields and fields[k](x) for k, x in v.items())
    )


def _reviewer_text(v: Any) -> bool:
    # a reviewer's signed statement: the lab's officer wrote it, not the tenant
    return isinstance(v, str) and len(v) <= 1000 and _printable(v)


hex64 = _rx(_HEX64)
_counts = _map(_enum(frozenset({"high", "medium", "low"})), _int, 3)

JOB = {
    "intent": _int,
    # job.refuse
    "reason": _enum(JOB_REFUSALS),
    "missing": _int,
    "spec_bytes": _int,
    # job.start
    "kind": _enum(frozenset({"bench", "train"})),
    "split": _rx(_SPLIT),
    "model": _rx(_MODEL),
    "model_digest": _rx(_MODEL_DIGEST),
    "trainer": _opt(_rx(_TRAINER)),
    "privacy": _opt(
        _record(epsilon=_num, delta=_num, unit=_enum(frozenset({"subject", "record"})))
    ),
    "isolation": _enum(frozenset({"strict", "weak"})),
    "limits": _map(
        _enum(
            frozenset({"cpu_seconds", "memory_mb", "wall_seconds", "max_procs", "max_outbox_mb"})
        ),
        _num,
        5,
    ),
    # job.finish
    # lab facts joined with "; ", or the class of the job's own exception
    "error": lambda v: (
        isinstance(v, str)
        and len(v) <= MAX_FACT
        and (
            v in EXCEPTION_CLASSES | {"", "error", "other"} or all(map(is_lab_fact, v.split("; ")))
        )
    ),
    "job_error": _opt(
        _record(**{"class": _enum(EXCEPTION_CLASSES | {"error", "other", ""}), "chars": _int})
    ),
    "kernel_events": _list(is_lab_fact, 20),
    "confinement": _list(is_lab_fact, 20),
    "summary_keys": _int,
    "summary_refused": _enum(SUMMARY_REFUSALS),
    "output_files": _int,
    "output_bytes": _int,
    "removed_from_outbox": _map(_enum(REMOVALS), _int, len(REMOVALS)),
    "manifest_sha256": hex64,
    "outbox": _rx(_OUTBOX),
    "workspace": _enum(frozenset({"removed"})),
}

EXPORT = {
    "intent": _int,
    "reconciled": _bool,
    "release": _rx(_RELEASE),
    "error": _enum(EXCEPTION_CLASSES | {"other"}),
    "manifest": _rx(MANIFEST),
    "manifest_sha256": hex64,
    "artifacts": _int,
    "released_sha256": _list(hex64, 256),
    "findings": _counts,
    "blocking": _map(_enum(DETECTORS), _int, len(DETECTORS)),
    "subjects matched": _int,
    "policy_sha256": hex64,
    "capacity_bits": _num,
    "tenant_capacity_bits_before": _num,
    "privacy_epsilon": _num,
    "tenant_epsilon_before": _num,
    "attested": _list(_rx(JOB_ID), 256),
    "override": _record(reviewer=_rx(_REVIEWER), reason=_reviewer_text),
}

_OBJECT = {
    "job.": lambda v: v == "" or JOB_ID.fullmatch(v) is not None,
    "export.": lambda v: v == "" or re.fullmatch(r"sha256:[0-9a-f]{64}", v) is not None,
    "release.": lambda v: v == "" or re.fullmatch(r"sha256:[0-9a-f]{64}", v) is not None,
}
SCHEMAS: dict[str, dict[str, Check]] = {"job.": JOB, "export.": EXPORT, "release.": EXPORT}


def family(action: str) -> str | None:
    return next((f for f in FAMILIES if action.startswith(f)), None)


def problem(action: str, obj: str, details: Mapping[str, Any]) -> str:
    """Why an entry of ``action`` with ``object`` ``obj`` and ``details`` breaks the
    declared schema of its family, or "" (also for actions of no family)."""
    fam = family(action)
    if fam is None:
        return ""
    if not _OBJECT[fam](obj):
        return f"{action}: object must be a lab-made id or digest"
    schema = SCHEMAS[fam]
    for k, v in details.items():
        check = schema.get(k)
        if check is None:
            return f"{action}: detail {str(k)[:40]!r} is not declared for {fam}* entries"
        if not check(v):
            return f"{action}: detail {k!r} is not of its declared type and size"
    return ""


def exception_class(name: str) -> str:
    """``name`` if it is one of Python's or facelab's exception classes, else "other"."""
    return name if name in EXCEPTION_CLASSES else "other"


def lab_fact(text: str) -> str:
    """``text`` when it is a sentence the schema lists (see ``LAB_FACT_PREFIXES``), else a
    fixed stand-in: a fact the runner cannot vouch for never reaches the log."""
    return text if is_lab_fact(text) else "an event the audit schema does not list"
