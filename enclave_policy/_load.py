"""Load and validate a policy file (TOML). Errors name the file and the key."""

from __future__ import annotations

import math
import re
import tomllib
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

from facelab.errors import BadInputError

MAX_RETENTION_DAYS = 36_525  # 100 years: a due date always within date.max
# A ``destroy_by`` outside these years is a typing error, not a retention decision:
# before the first lab could exist, or past the limit of ``retention_days``.
EARLIEST_DESTROY_BY = date(2000, 1, 1)

DEFAULT_POLICY = Path(__file__).with_name("default.toml")
TENANT_RE = re.compile(r"^[a-z][a-z0-9_-]{0,31}$")


@dataclass(frozen=True)
class AuditPolicy:
    checkpoint_every: int
    origin_prefix: str


@dataclass(frozen=True)
class VaultPolicy:
    splits: dict[str, float]
    identifiers_granted: tuple[str, ...]
    tenants: tuple[str, ...]
    max_image_side: int


@dataclass(frozen=True)
class ImportPolicy:
    required_approvals: int
    officers: dict[str, str]
    tenant_keys: dict[str, str]
    allowed_files: dict[str, str]
    allowed_domains: tuple[str, ...]
    allowed_ops: frozenset[str]
    max_package_bytes: int
    max_param_bytes: int
    max_tensor_elements: int
    smoke_timeout_s: int
    smoke_memory_mb: int
    # optional keys (issue 15), with these defaults when a policy leaves them out
    max_files: int = 256
    max_compression_ratio: int = 200
    max_string_bytes: int = 65536
    allow_training_info: bool = False
    # tensor values (issue 15 round 3): integer data that is not a shape or an index,
    # float weights that are not numbers a trained model holds, string tensors
    max_integer_data_bytes: int = 32
    max_index_elements: int = 4096
    max_abs_weight: float = 1e6
    allow_string_tensors: bool = False
    # static resource bounds over every graph (issue 15 round 4: dormant bombs in
    # branches the smoke test never takes) and the templates' discrimination
    max_computed_elements: int = 67108864
    max_scale_factor: int = 64
    max_pad: int = 4096
    max_loop_iterations: int = 10000
    max_gflops: float = 50.0
    max_tensor_mb: int = 2048
    min_template_distance: float = 0.001


SEVERITIES = ("low", "medium", "high")


@dataclass(frozen=True)
class ExportPolicy:
    """[export] and its sub-tables: the export gate's rules and thresholds."""

    refuse_at: str
    allow_unscannable: tuple[str, ...]
    max_artifact_bytes: int
    max_tensor_elements: int
    max_depth: int
    reviewers: dict[str, str]
    identifiers: dict
    faces: dict
    templates: dict
    payloads: dict
    memorisation: dict
    structural: dict
    contract: dict = field(default_factory=dict)  # [export.contract] (issue 20 block)
    behaviour: dict = field(default_factory=dict)  # [export.behaviour]

    def refuses(self, severity: str) -> bool:
        return SEVERITIES.index(severity) >= SEVERITIES.index(self.refuse_at)


@dataclass(frozen=True)
class TenantPolicy:
    """One processor: what it may use the data for and when its data must go."""

    name: str
    processor: str
    purposes: tuple[str, ...]
    retention_days: int
    destroy_by: date | None
    data_categories: tuple[str, ...]
    listed: bool  # has a [tenants.NAME] table (else: [tenant_defaults])

    def due(self, created: date) -> date:
        """The destruction due date of data first ingested on ``created``."""
        d = created + timedelta(days=self.retention_days)
        return min(d, self.destroy_by) if self.destroy_by else d


@dataclass(frozen=True)
class GovernancePolicy:
    """[roles], [purposes], [tenant_defaults], [tenants] and [jobs]."""

    roles: dict[str, tuple[str, ...]]
    allowed_purposes: tuple[str, ...]
    forbidden_purposes: tuple[str, ...]
    forbidden_markers: tuple[str, ...]
    defaults: TenantPolicy
    tenants: dict[str, TenantPolicy]
    isolation: str
    cpu_seconds: int
    memory_mb: int
    wall_seconds: int
    trainers: dict[str, str]
    max_procs: int = 64
    max_outbox_mb: int = 512
    max_outbox_files: int = 1000
    max_output_kb: int = 256
    # trainer name -> parameter name -> "number" | "flag" | "text"; a trainer takes no
    # parameter it does not declare (default deny)
    trainer_params: dict[str, dict[str, str]] = field(default_factory=dict)
    # trainer name -> {"unit": "subject", "epsilon": e, "delta": d}: the differential
    # privacy a trainer's output gives each subject (facelab.jobs.privacy)
    trainer_privacy: dict[str, dict] = field(default_factory=dict)

    def tenant(self, name: str) -> TenantPolicy:
        t = self.tenants.get(name)
        return t if t is not None else replace(self.defaults, name=name, processor=name)


@dataclass(frozen=True)
class Policy:
    """The parts of the policy the code reads today; the raw table keeps the rest."""

    audit: AuditPolicy
    vault: VaultPolicy
    importing: ImportPolicy
    raw: dict
    source: Path
    exporting: ExportPolicy | None = None
    governance: GovernancePolicy | None = None


MAX_POLICY_BYTES = 1 << 20


def _get(table: dict, key: str, typ: type, where: str, path: Path):
    if key not in table:
        raise BadInputError(f"{path}: missing key {where}{key}")
    v = table[key]
    if not isinstance(v, typ) or (isinstance(v, bool) and typ is not bool):
        raise BadInputError(f"{path}: {where}{key} must be {typ.__name__}, got {v!r}")
    return v


def load_policy(path: Path | str = DEFAULT_POLICY, *, follow: bool = True) -> Policy:
    """The policy of ``path`` (at most 1 MiB of UTF-8 TOML, a regular file: a FIFO or a
    link to ``/dev/zero`` is one ``BadInputError``, never a hang or an endless read).
    ``follow=False`` for a lab's own ``policy.toml``: a link there is refused."""
    from facelab import labfs

    path = Path(path)
    try:
        text = labfs.read_text(path, MAX_POLICY_BYTES, follow=follow, what="a policy")
        raw = tomllib.loads(text)
    except OSError as e:
        raise BadInputError(f"{path}: cannot read policy ({e.strerror})") from e
    except (tomllib.TOMLDecodeError, UnicodeDecodeError, RecursionError) as e:
        # RecursionError: 100,000 nested arrays (red team 14d, c22)
        raise BadInputError(f"{path}: not valid TOML ({e.__class__.__name__})") from e
    if _get(raw, "schema", int, "", path) != 1:
        raise BadInputError(f"{path}: schema {raw['schema']} is not supported (expected 1)")
    audit = raw.get("audit")
    if not isinstance(audit, dict):
        raise BadInputError(f"{path}: missing table [audit]")
    every = _get(audit, "checkpoint_every", int, "audit.", path)
    if not 1 <= every <= 1_000_000:
        raise BadInputError(f"{path}: audit.checkpoint_every must be in [1, 1000000]")
    prefix = _get(audit, "origin_prefix", str, "audit.", path)
    for name in ("max_unsigned_tail", "max_unwitnessed"):  # read by facelab.labdir
        v = audit.get(name, 0)
        if not isinstance(v, int) or isinstance(v, bool) or not 0 <= v <= 10**9:
            raise BadInputError(f"{path}: audit.{name} must be an integer from 0 to 10^9")
    wait = audit.get("lock_wait_seconds", 60)
    if not isinstance(wait, int) or isinstance(wait, bool) or not 1 <= wait <= 86400:
        raise BadInputError(f"{path}: audit.lock_wait_seconds must be an integer in [1, 86400]")
    if not isinstance(audit.get("require_witness", False), bool):
        raise BadInputError(f"{path}: audit.require_witness must be true or false")
    gov = _governance(raw, path)
    vault = _vault(raw, path)
    if gov is not None and gov.tenants:  # listed processors are the tenants ingest creates
        vault = replace(vault, tenants=tuple(sorted({*vault.tenants, *gov.tenants})))
    importing, exporting = _import(raw, path), _export(raw, path)
    if gov is not None:  # people with keys must hold the role the keys are for
        for role, keys, where in (
            ("import_officers", importing.officers, "import.officers"),
            ("export_reviewers", exporting.reviewers if exporting else {}, "export.reviewers"),
        ):
            listed = gov.roles[role]
            stray = sorted(set(keys) - set(listed)) if listed else []
            if stray:
                raise BadInputError(
                    f"{path}: {where}.{stray[0]} has a key but is not in roles.{role}"
                )
    return Policy(AuditPolicy(every, prefix), vault, importing, raw, path, exporting, gov)


def _strs(t: dict, key: str, where: str, path: Path) -> tuple[str, ...]:
    v = _get(t, key, list, where, path)
    if not all(isinstance(x, str) and x for x in v):
        raise BadInputError(f"{path}: {where}{key} must be a list of non-empty strings")
    return tuple(v)


def _tenant(
    name: str, t: dict, where: str, path: Path, allowed: tuple[str, ...], listed: bool
) -> TenantPolicy:
    purposes = _strs(t, "purposes", where, path)
    bad = [p for p in purposes if p not in allowed]
    if bad:
        raise BadInputError(
            f"{path}: {where}purposes: {bad[0]!r} is not an allowed purpose ([purposes] allowed)"
        )
    days = _get(t, "retention_days", int, where, path)
    if not 1 <= days <= MAX_RETENTION_DAYS:
        raise BadInputError(
            f"{path}: {where}retention_days must be from 1 to {MAX_RETENTION_DAYS} (100 years)"
        )
    destroy_by = t.get("destroy_by")
    if destroy_by is not None and (
        not isinstance(destroy_by, date) or isinstance(destroy_by, datetime)
    ):
        raise BadInputError(f"{path}: {where}destroy_by must be a date (YYYY-MM-DD)")
    if destroy_by is not None and not (
        EARLIEST_DESTROY_BY <= destroy_by <= date.max - timedelta(days=MAX_RETENTION_DAYS)
    ):
        raise BadInputError(
            f"{path}: {where}destroy_by {destroy_by.isoformat()} is outside "
            f"{EARLIEST_DESTROY_BY.isoformat()} .. "
            f"{(date.max - timedelta(days=MAX_RETENTION_DAYS)).isoformat()}"
        )
    processor = t.get("processor", name)
    if not isinstance(processor, str) or not processor:
        raise BadInputError(f"{path}: {where}processor must be a non-empty string")
    return TenantPolicy(
        name,
        processor,
        purposes,
        days,
        destroy_by,
        _strs(t, "data_categories", where, path),
        listed,
    )


def _governance(raw: dict, path: Path) -> GovernancePolicy | None:
    if "purposes" not in raw and "jobs" not in raw:
        return None  # a lab made before these sections existed
    for table in ("roles", "purposes", "tenant_defaults", "tenants", "jobs"):
        if not isinstance(raw.get(table), dict):
            raise BadInputError(f"{path}: missing table [{table}]")
    roles = {
        k: _strs(raw["roles"], k, "roles.", path) if raw["roles"].get(k) else ()
        for k in ("operators", "import_officers", "export_reviewers")
    }
    for k in roles:
        _get(raw["roles"], k, list, "roles.", path)
    pur = raw["purposes"]
    allowed = _strs(pur, "allowed", "purposes.", path)
    forbidden = _strs(pur, "forbidden", "purposes.", path)
    both = set(allowed) & set(forbidden)
    if both:
        raise BadInputError(f"{path}: purposes: {sorted(both)[0]!r} is both allowed and forbidden")
    markers = tuple(m.casefold() for m in _strs(pur, "forbidden_markers", "purposes.", path))
    defaults = _tenant("*", raw["tenant_defaults"], "tenant_defaults.", path, allowed, False)
    tenants = {}
    for name, t in raw["tenants"].items():
        if not isinstance(t, dict):
            raise BadInputError(f"{path}: tenants.{name} must be a table")
        if not TENANT_RE.match(name):
            raise BadInputError(f"{path}: tenants.{name}: not a safe tenant name")
        merged = {**raw["tenant_defaults"], **t}
        tenants[name] = _tenant(name, merged, f"tenants.{name}.", path, allowed, True)
    jobs = raw["jobs"]
    isolation = _get(jobs, "isolation", str, "jobs.", path)
    if isolation not in ("strict", "weak"):
        raise BadInputError(f'{path}: jobs.isolation must be "strict" or "weak"')
    ints = {}
    for key, lo in (("cpu_seconds", 1), ("memory_mb", 256), ("wall_seconds", 1)):
        ints[key] = _get(jobs, key, int, "jobs.", path)
        if ints[key] < lo:
            raise BadInputError(f"{path}: jobs.{key} must be at least {lo}")
    # whole-job limits (optional keys: a policy written before them keeps working)
    for key, lo, default in (
        ("max_procs", 8, 64),
        ("max_outbox_mb", 1, 512),
        ("max_outbox_files", 1, 1000),
        ("max_output_kb", 1, 256),
    ):
        value = jobs.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int) or value < lo:
            raise BadInputError(f"{path}: jobs.{key} must be an integer of at least {lo}")
        ints[key] = value
    trainers = _get(jobs, "trainers", dict, "jobs.", path)
    for name, target in trainers.items():
        if not isinstance(target, str) or target.count(":") != 1:
            raise BadInputError(f'{path}: jobs.trainers.{name} must be "module:function"')
    tparams = jobs.get("trainer_params", {})
    if not isinstance(tparams, dict):
        raise BadInputError(f"{path}: jobs.trainer_params must be a table")
    for name, decl in tparams.items():
        if name not in trainers:
            raise BadInputError(f"{path}: jobs.trainer_params.{name}: no such trainer")
        if not isinstance(decl, dict) or not all(
            isinstance(v, str) and v in ("number", "flag", "text") for v in decl.values()
        ):
            raise BadInputError(
                f'{path}: jobs.trainer_params.{name}: each parameter is "number", "flag" or "text"'
            )
    allow_text = jobs.get("allow_text_params", False)
    if not isinstance(allow_text, bool):
        raise BadInputError(f"{path}: jobs.allow_text_params must be true or false")
    if not allow_text and any("text" in d.values() for d in tparams.values()):
        raise BadInputError(
            f'{path}: jobs.trainer_params: a "text" parameter needs jobs.allow_text_params '
            "= true (development only: free text is a channel the 1:N word check only filters)"
        )
    ints["trainer_params"] = {k: dict(v) for k, v in tparams.items()}
    ints["trainer_privacy"] = _trainer_privacy(jobs.get("trainer_privacy", {}), trainers, path)
    return GovernancePolicy(
        roles,
        allowed,
        forbidden,
        markers,
        defaults,
        tenants,
        isolation,
        trainers=dict(trainers),
        **ints,
    )


def _trainer_privacy(raw: Any, trainers: dict, path: Path) -> dict[str, dict]:
    """[jobs] trainer_privacy: name = { epsilon = e, delta = d } for registered trainers,
    0 < epsilon <= 64, 0 < delta <= 1e-3 (delta above one in a thousand subjects is no
    guarantee for a vault of thousands)."""
    if not isinstance(raw, dict):
        raise BadInputError(f"{path}: jobs.trainer_privacy must be a table")
    out = {}
    for name, decl in raw.items():
        where = f"{path}: jobs.trainer_privacy.{name}"
        if name not in trainers:
            raise BadInputError(f"{where}: no such trainer")
        if not isinstance(decl, dict) or set(decl) != {"epsilon", "delta"}:
            raise BadInputError(f"{where}: give exactly epsilon and delta")
        eps, delta = decl["epsilon"], decl["delta"]
        for key, v in (("epsilon", eps), ("delta", delta)):
            if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
                raise BadInputError(f"{where}.{key} must be a number")
        if not 0 < eps <= 64:
            raise BadInputError(f"{where}.epsilon must lie in (0, 64]")
        if not 0 < delta <= 1e-3:
            raise BadInputError(f"{where}.delta must lie in (0, 0.001]")
        out[name] = {"unit": "subject", "epsilon": float(eps), "delta": float(delta)}
    return out


# key -> (type, low, high) for the numeric keys of each [export.*] sub-table
_EXPORT_SCHEMA: dict[str, dict[str, tuple[type, float, float]]] = {
    "faces": {
        "min_side": (int, 4, 4096),
        "max_side": (int, 4, 65536),
        "face_likeness": (float, 0, 1),
        "distinctness": (float, 1, 1e6),
        "min_subjects_k": (int, 2, 10**6),
        "aggregate_fit": (float, 0, 1),
        "max_views": (int, 1, 10**9),
    },
    "templates": {
        "fmr": (float, 0, 1),
        "min_cosine": (float, -1, 1),
        "max_records": (int, 1, 10**9),
    },
    "payloads": {
        "base64_min_chars": (int, 8, 10**9),
        "hex_min_chars": (int, 8, 10**9),
        "opaque_min_bytes": (int, 1, 10**9),
        "lsb_min_values": (int, 64, 10**12),
        "lsb_min_entropy": (float, 0, 8),
        "lsb_reference_entropy": (float, 0, 8),
    },
    "memorisation": {
        "max_subjects": (int, 10, 10**7),
        "alpha": (float, 0, 1),
        "max_auc": (float, 0.5, 1),
        "max_tpr_at_fpr": (float, 0, 1),
        "min_held_out": (int, 2, 10**7),
    },
    "structural": {"min_rows": (int, 2, 10**9)},
    "identifiers": {},
}


# ---- [export.contract] and [export.behaviour] (the export contract, issue 20) ----------
_EXPORT_SCHEMA["contract"] = {
    "mantissa_bits": (int, 1, 23),
    "mantissa_bits_half": (int, 1, 10),
    "max_new_int_elements": (int, 0, 10**6),
    "max_new_nodes": (int, 0, 10**4),
    "tenant_capacity_bits": (int, 0, 10**15),
    "tenant_epsilon": (float, 0, 10**6),
    "fnmr_at_fmr": (float, 0, 1),
    "max_fnmr_increase": (float, 0, 1),
    "report_digits": (int, 2, 17),
    "max_list": (int, 1, 10**7),
    "min_cell_count": (int, 1, 10**9),
    "max_table_rows": (int, 1, 10**9),
    "max_text_bytes": (int, 1, 10**9),
    "max_text_non_ascii": (int, 0, 10**9),
    "rebuild_seconds": (int, 1, 86400),
    "rebuild_memory_mb": (int, 64, 10**6),
}
_EXPORT_SCHEMA["behaviour"] = {
    "max_subjects": (int, 2, 10**7),
    "run_seconds": (int, 1, 86400),
    "run_memory_mb": (int, 64, 10**6),
    "max_identification_rate": (float, 0, 1),
    "alpha": (float, 0, 1),
}
EXPORT_KINDS = ("onnx_model", "model_json", "bench_report", "metrics_table", "text", "weights")


def _export_contract(subs: dict, path: Path) -> None:
    """The list keys of [export.contract] and [export.behaviour]: kinds by name, column
    names as strings."""
    c, w = subs["contract"], "export.contract."
    kinds = _get(c, "kinds", list, w, path)
    if not set(kinds) <= set(EXPORT_KINDS):
        raise BadInputError(f"{path}: export.contract.kinds may hold only {EXPORT_KINDS}")
    reviewed = c.setdefault("reviewed_kinds", ["metrics_table", "text", "weights"])
    if not isinstance(reviewed, list) or not set(reviewed) <= set(EXPORT_KINDS):
        raise BadInputError(f"{path}: export.contract.reviewed_kinds may hold only {EXPORT_KINDS}")
    if not isinstance(_get(c, "onnx_requires_import", bool, w, path), bool):
        raise BadInputError(f"{path}: export.contract.onnx_requires_import must be a boolean")
    # default deny where a lab's policy predates the key (issue 20)
    if not isinstance(c.setdefault("models_require_attestation", True), bool):
        raise BadInputError(f"{path}: export.contract.models_require_attestation must be a boolean")
    for key in ("table_columns", "table_group_columns", "table_count_columns"):
        v = _get(c, key, list, w, path)
        if not all(isinstance(x, str) for x in v):
            raise BadInputError(f"{path}: export.contract.{key} must be strings")
    shipped = _get(subs["behaviour"], "shipped_matchers", list, "export.behaviour.", path)
    if not all(isinstance(x, str) and x.isidentifier() for x in shipped):
        raise BadInputError(f"{path}: export.behaviour.shipped_matchers must be model names")


# ---- end of the export contract block --------------------------------------------------


def _export(raw: dict, path: Path) -> ExportPolicy | None:
    t = raw.get("export")
    if t is None:
        return None
    if not isinstance(t, dict):
        raise BadInputError(f"{path}: [export] must be a table")
    w = "export."
    refuse_at = _get(t, "refuse_at", str, w, path)
    if refuse_at not in SEVERITIES:
        raise BadInputError(f"{path}: export.refuse_at must be one of {SEVERITIES}")
    allow = _get(t, "allow_unscannable", list, w, path)
    if not all(isinstance(x, str) for x in allow):
        raise BadInputError(f"{path}: export.allow_unscannable must be a list of suffixes")
    ints = {}
    for key in ("max_artifact_bytes", "max_tensor_elements", "max_depth"):
        ints[key] = _get(t, key, int, w, path)
        if ints[key] < 1:
            raise BadInputError(f"{path}: export.{key} must be at least 1")
    reviewers = _get(t, "reviewers", dict, w, path)
    if not all(isinstance(k, str) and isinstance(x, str) for k, x in reviewers.items()):
        raise BadInputError(f"{path}: export.reviewers must map names to strings")
    subs = {}
    for sub, schema in _EXPORT_SCHEMA.items():
        st = _get(t, sub, dict, w, path)
        for key, (typ, lo, hi) in schema.items():
            if key not in st:
                raise BadInputError(f"{path}: missing key {w}{sub}.{key}")
            v = st[key]
            ok = isinstance(v, int) if typ is int else isinstance(v, int | float)
            if not ok or isinstance(v, bool) or not lo <= v <= hi:
                raise BadInputError(f"{path}: {w}{sub}.{key} must be in [{lo}, {hi}]")
        subs[sub] = dict(st)
    ident = subs["identifiers"]
    fields = _get(ident, "fields", list, f"{w}identifiers.", path)
    if not set(fields) <= {"name", "passport_no", "birth_date"}:
        raise BadInputError(
            f"{path}: export.identifiers.fields may hold only name, passport_no, birth_date"
        )
    if _get(ident, "birth_date_alone", str, f"{w}identifiers.", path) not in SEVERITIES:
        raise BadInputError(
            f"{path}: export.identifiers.birth_date_alone must be one of {SEVERITIES}"
        )
    words = _get(ident, "context_words", list, f"{w}identifiers.", path)
    if not all(isinstance(x, str) for x in words):
        raise BadInputError(f"{path}: export.identifiers.context_words must be strings")
    if subs["faces"]["min_side"] > subs["faces"]["max_side"]:
        raise BadInputError(f"{path}: export.faces.min_side exceeds max_side")
    _export_contract(subs, path)
    return ExportPolicy(refuse_at, tuple(allow), reviewers=dict(reviewers), **ints, **subs)


def _str_map(t: dict, key: str, path: Path) -> dict[str, str]:
    v = _get(t, key, dict, "import.", path)
    if not all(isinstance(k, str) and isinstance(x, str) for k, x in v.items()):
        raise BadInputError(f"{path}: import.{key} must map names to strings")
    return dict(v)


def _import(raw: dict, path: Path) -> ImportPolicy:
    t = raw.get("import")
    if not isinstance(t, dict):
        raise BadInputError(f"{path}: missing table [import]")
    ints = {}
    for key, lo in (
        ("required_approvals", 1),
        ("max_package_bytes", 1),
        ("max_param_bytes", 1),
        ("max_tensor_elements", 1),
        ("smoke_timeout_s", 1),
        ("smoke_memory_mb", 64),
    ):
        v = _get(t, key, int, "import.", path)
        if v < lo:
            raise BadInputError(f"{path}: import.{key} must be at least {lo}")
        ints[key] = v
    for key, lo in (
        ("max_files", 1),
        ("max_compression_ratio", 1),
        ("max_string_bytes", 64),
        ("max_integer_data_bytes", 0),
        ("max_index_elements", 1),
        ("max_computed_elements", 1),
        ("max_scale_factor", 1),
        ("max_pad", 0),
        ("max_loop_iterations", 1),
        ("max_tensor_mb", 1),
    ):
        if key in t:
            v = _get(t, key, int, "import.", path)
            if v < lo:
                raise BadInputError(f"{path}: import.{key} must be at least {lo}")
            ints[key] = v
    for key in ("allow_training_info", "allow_string_tensors"):
        if key in t:
            ints[key] = _get(t, key, bool, "import.", path)
    if "max_abs_weight" in t:
        v = t["max_abs_weight"]
        if isinstance(v, bool) or not isinstance(v, int | float) or not 0 < v < float("inf"):
            raise BadInputError(f"{path}: import.max_abs_weight must be a positive finite number")
        ints["max_abs_weight"] = float(v)
    if "max_gflops" in t:
        v = t["max_gflops"]
        if isinstance(v, bool) or not isinstance(v, int | float) or not 0 < v <= 1e6:
            raise BadInputError(f"{path}: import.max_gflops must be in (0, 1e6]")
        ints["max_gflops"] = float(v)
    if "min_template_distance" in t:
        v = t["min_template_distance"]
        if isinstance(v, bool) or not isinstance(v, int | float) or not 0 <= v <= 2:
            raise BadInputError(f"{path}: import.min_template_distance must be in [0, 2]")
        ints["min_template_distance"] = float(v)
    for key in ("allowed_domains", "allowed_ops"):
        lst = _get(t, key, list, "import.", path)
        if not all(isinstance(x, str) for x in lst):
            raise BadInputError(f"{path}: import.{key} must be a list of strings")
    return ImportPolicy(
        officers=_str_map(t, "officers", path),
        tenant_keys=_str_map(t, "tenant_keys", path),
        allowed_files=_str_map(t, "allowed_files", path),
        allowed_domains=tuple(t["allowed_domains"]),
        allowed_ops=frozenset(t["allowed_ops"]),
        **ints,
    )


def _vault(raw: dict, path: Path) -> VaultPolicy:
    v = raw.get("vault")
    if not isinstance(v, dict):
        raise BadInputError(f"{path}: missing table [vault]")
    splits = _get(v, "splits", dict, "vault.", path)
    if not splits or not all(
        isinstance(k, str)
        and isinstance(x, int | float)
        and not isinstance(x, bool)
        and 0 <= x <= 1
        for k, x in splits.items()
    ):
        raise BadInputError(f"{path}: vault.splits must map names to ratios in [0, 1]")
    if abs(sum(splits.values()) - 1.0) > 1e-9:
        raise BadInputError(f"{path}: vault.splits must sum to 1, not {sum(splits.values())}")
    granted = _get(v, "identifiers_granted", list, "vault.", path)
    tenants = _get(v, "tenants", list, "vault.", path)
    for key, lst in (("identifiers_granted", granted), ("tenants", tenants)):
        if not all(isinstance(t, str) for t in lst):
            raise BadInputError(f"{path}: vault.{key} must be a list of tenant names")
    side = _get(v, "max_image_side", int, "vault.", path)
    if not 16 <= side <= 16384:
        raise BadInputError(f"{path}: vault.max_image_side must be in [16, 16384]")
    return VaultPolicy(
        {k: float(x) for k, x in splits.items()}, tuple(granted), tuple(tenants), side
    )
