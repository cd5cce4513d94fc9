"""The zero client: purpose limits, the sandbox under attack, tenant isolation,
retention and the register."""

from __future__ import annotations

import json
import os
import shutil
from datetime import date, timedelta
from pathlib import Path

import pytest
from facelab.confine import missing_layers
from facelab.errors import BadInputError, JobRefused
from facelab.jobs import run_job
from facelab.labdir import open_lab

from enclave_policy import load_policy
from enclave_policy.rules import check_job
from tests.export_helpers import PASSPHRASE, build_export_lab
from tests.test_cli_audit import one_line_error
from tests.test_cli_audit import run as _run

EVIL = ["read_paths", "list_records", "spin"]
_MISSING = missing_layers()


def _policy(lab_root: Path, extra: str = "", wall: int = 60) -> None:
    p = lab_root / "policy.toml"
    text = p.read_text()
    trainers = ", ".join(f'{n} = "tests.hostile_jobs:{n}"' for n in EVIL)
    text = text.replace(
        'trainers = { pca_head = "facelab.jobs.trainers:pca_head" }',
        f'trainers = {{ pca_head = "facelab.jobs.trainers:pca_head", {trainers} }}',
    )
    text = text.replace("wall_seconds = 900", f"wall_seconds = {wall}")
    text = text.replace("cpu_seconds = 600", "cpu_seconds = 10")
    p.write_text(text + extra)


@pytest.fixture(scope="module")
def el(tmp_path_factory: pytest.TempPathFactory):
    if _MISSING:
        pytest.skip("the machine cannot confine jobs here: " + "; ".join(_MISSING))
    e = build_export_lab(tmp_path_factory.mktemp("jobs"), identities=30, captures=2)
    _policy(e.lab.paths.root, wall=30)
    # a second tenant with data and an outbox file of its own
    from facelab.synth import SynthConfig, write_dataset
    from facelab.vault import ops

    ds = e.lab.paths.root.parent / "beta-data"
    write_dataset(SynthConfig(identities=5, captures=1, seed=99), ds, workers=1)
    e.lab = open_lab(e.lab.paths.root)
    root, log = e.unlocked()
    with log:
        ops.ingest(e.lab, root, "beta", ds, "operator", log)
    secret = e.lab.paths.root / "outbox" / "beta" / "private.txt"
    secret.parent.mkdir(parents=True)
    secret.write_text("beta's result")
    return e


def _job(el, trainer: str, **params) -> object:
    root, log = el.unlocked()
    with log:
        return run_job(
            el.lab,
            root,
            "acme",
            {
                "kind": "train",
                "purpose": "train",
                "model": "cnn@1.0.0",
                "trainer": trainer,
                "params": params,
            },
            "mallory",
            log,
        )


def _last(el, action: str) -> dict:
    lines = (el.lab.paths.root / "audit" / "entries.jsonl").read_text().splitlines()
    return next(e for e in map(json.loads, reversed(lines)) if e["action"] == action)


# ---------------------------------------------------------------- purpose limitation


@pytest.mark.parametrize(
    ("spec", "why"),
    [
        ({"kind": "bench", "purpose": "identify_1toN", "model": "m"}, "forbidden"),
        ({"kind": "bench", "purpose": "track", "model": "m"}, "forbidden"),
        ({"kind": "bench", "purpose": "verify_1to1", "model": "m", "params": {"top_k": 5}}, "1:N"),
        (
            {
                "kind": "bench",
                "purpose": "verify_1to1",
                "model": "m",
                "params": {"mode": "Gallery-Search"},
            },
            "1:N",
        ),
        (
            {"kind": "train", "purpose": "train", "model": "m", "trainer": "rank_one_identifier"},
            "1:N",
        ),
        ({"kind": "bench", "purpose": "verify_1to1", "model": "m", "watchlist": []}, "1:N"),
        ({"kind": "train", "purpose": "verify_1to1", "model": "m"}, "does not serve"),
        ({"kind": "bench", "purpose": "marketing", "model": "m"}, "not an allowed purpose"),
    ],
)
def test_purpose_rules_refuse_one_to_many_and_unlisted_purposes(spec: dict, why: str) -> None:
    d = check_job(load_policy().governance, "acme", spec)
    assert not d.allowed and why in d.reason


def test_a_verification_job_is_allowed() -> None:
    spec = {"kind": "bench", "purpose": "verify_1to1", "model": "cnn@1.0.0", "split": "test"}
    assert check_job(load_policy().governance, "acme", spec).allowed


def test_a_one_to_many_job_is_refused_with_its_reason_and_logged(el) -> None:
    root, log = el.unlocked()
    with log, pytest.raises(JobRefused, match="1:N"):
        run_job(
            el.lab,
            root,
            "acme",
            {
                "kind": "bench",
                "purpose": "verify_1to1",
                "model": "cnn@1.0.0",
                "params": {"search": "gallery", "top_k": 10},
            },
            "mallory",
            log,
        )
    e = _last(el, "job.refuse")
    # the log holds the refusal's code, not its text (which quotes the tenant's spec)
    assert e["decision"] == "refused" and e["details"]["reason"] == "one-to-n"
    assert "gallery" not in json.dumps(e)
    assert e["actor"] == "mallory" and e["tenant"] == "acme"


# ---------------------------------------------------------------- tenant isolation
# (the sandbox under attack: tests/test_zero_client.py)


def test_a_tenant_cannot_use_another_tenants_model(el) -> None:
    root, log = el.unlocked()
    with log, pytest.raises(BadInputError, match="not registered for tenant 'beta'"):
        run_job(
            el.lab,
            root,
            "beta",
            {"kind": "bench", "purpose": "verify_1to1", "model": "cnn@1.0.0"},
            "beta-engineer",
            log,
        )


def test_an_unregistered_trainer_is_refused(el) -> None:
    root, log = el.unlocked()
    with log, pytest.raises(JobRefused, match="not registered"):
        run_job(
            el.lab,
            root,
            "acme",
            {"kind": "train", "purpose": "train", "model": "cnn@1.0.0", "trainer": "os:system"},
            "mallory",
            log,
        )


def test_the_benchmark_and_training_jobs_run_confined_and_write_their_outbox(el) -> None:
    root, log = el.unlocked()
    with log:
        b = run_job(
            el.lab,
            root,
            "acme",
            # the train split: a 30-subject lab's test split may hold one person
            {"kind": "bench", "purpose": "verify_1to1", "model": "cnn@1.0.0", "split": "train"},
            "alice",
            log,
        )
    assert b.status == "done", b.error
    assert {"report.json", "det.png", "report.html"} <= set(b.outputs)
    layers = " | ".join(b.confinement)
    for layer in ("dedicated uid", "pid (run is pid 1)", "seccomp", "landlock: abi", "rlimits"):
        assert layer in layers
    t = _job(el, "pca_head", dim=8)
    assert t.status == "done" and set(t.outputs) == {"model.onnx", "model.json"}


# ---------------------------------------------------------------- CLI, retention, register

ENV = {**os.environ, "FACELAB_PASSPHRASE": PASSPHRASE.decode(), "FACELAB_ACTOR": "ops"}


def test_job_cli_exit_codes(el, tmp_path: Path) -> None:
    lab = str(el.lab.paths.root)
    bad = tmp_path / "search.json"
    bad.write_text(json.dumps({"kind": "bench", "purpose": "identify_1toN", "model": "cnn@1.0.0"}))
    assert "forbidden" in one_line_error(
        _run("job", "run", "--lab", lab, "--tenant", "acme", str(bad), env=ENV), 3
    )
    evil = tmp_path / "evil.json"
    evil.write_text(
        json.dumps(
            {
                "kind": "train",
                "purpose": "train",
                "model": "cnn@1.0.0",
                "trainer": "spin",
                "params": {},
            }
        )
    )
    p = _run("job", "run", "--lab", lab, "--tenant", "acme", str(evil), env=ENV)
    # whichever limit binds first on a loaded machine: 10 s of CPU or 30 s of wall clock
    assert p.returncode == 5 and ("CPU time over 10 s" in p.stderr or "wall clock" in p.stderr)
    # a misspelt tenant is named as such (newcomer report M5), not sent to `model import`
    typo = one_line_error(_run("job", "run", "--lab", lab, "--tenant", "acmee", str(evil), env=ENV))
    assert "acmee" in typo and "check the spelling" in typo and "model import" not in typo
    (tmp_path / "junk.json").write_text("{")
    assert "not a job spec" in one_line_error(
        _run("job", "run", "--lab", lab, "--tenant", "acme", str(tmp_path / "junk.json"), env=ENV)
    )


def test_retention_destroys_tenants_past_due_and_the_register_shows_it(tmp_path: Path) -> None:
    e = build_export_lab(tmp_path / "w", identities=4, captures=1)
    text = (e.lab.paths.root / "policy.toml").read_text()
    text += (
        '\n[tenants.acme]\nprocessor = "Acme Biometrics Ltd"\npurposes = ["verify_1to1"]'
        "\nretention_days = 30\n"
    )
    (e.lab.paths.root / "policy.toml").write_text(text)
    lab = str(e.lab.paths.root)
    reg = json.loads(_run("register", "--lab", lab, "--json", env=ENV).stdout)
    row = reg["processors"][0]
    assert row["processor"] == "Acme Biometrics Ltd" and row["status"] == "active"
    # beside what is declared, the register states what the vault holds (newcomer M4)
    assert "face images" in row["data_categories_held"]
    assert "passport numbers" in row["data_categories_held"]
    md_active = _run("register", "--lab", lab, env=ENV).stdout
    assert "; held: " in md_active and "passport numbers" in md_active
    due = date.fromisoformat(row["destruction_due"])
    assert due == date.fromisoformat(row["since"]) + timedelta(days=30)
    early = _run(
        "retention", "run", "--lab", lab, "--today", (due - timedelta(days=1)).isoformat(), env=ENV
    )
    assert early.returncode == 0 and "no tenant is due" in early.stdout
    assert "not a date" in one_line_error(
        _run("retention", "run", "--lab", lab, "--today", "soon", env=ENV)
    )
    late = _run("retention", "run", "--lab", lab, "--today", due.isoformat(), env=ENV)
    assert late.returncode == 0 and "destroyed acme" in late.stdout
    md = _run("register", "--lab", lab, env=ENV).stdout
    assert "| Acme Biometrics Ltd | acme | verify_1to1 |" in md and "destroyed" in md
    assert "no data" in one_line_error(
        _run("bench", "--lab", lab, "--tenant", "acme", "--model", "cnn@1.0.0", env=ENV)
    )


@pytest.mark.parametrize(
    ("edit", "key"),
    [
        (('allowed = ["verify_1to1", "train"]', 'allowed = ["verify_1to1", "track"]'), "purposes"),
        (("retention_days = 365", "retention_days = 0"), "tenant_defaults.retention_days"),
        (('isolation = "strict"', 'isolation = "none"'), "jobs.isolation"),
        (
            ('pca_head = "facelab.jobs.trainers:pca_head"', 'pca_head = "nocolon"'),
            "jobs.trainers.pca_head",
        ),
        (
            ("[tenants]\n", '[tenants]\nacme = { purposes = ["identify_1toN"] }\n'),
            "tenants.acme.purposes",
        ),
        (("import_officers = []", 'import_officers = ["lee"]\n# x'), "import.officers.kim"),
    ],
)
def test_policy_errors_name_the_key(tmp_path: Path, edit: tuple[str, str], key: str) -> None:
    from enclave_policy import DEFAULT_POLICY

    text = DEFAULT_POLICY.read_text().replace("officers = {}", 'officers = { kim = "k" }')
    assert edit[0] in text
    p = tmp_path / "policy.toml"
    p.write_text(text.replace(edit[0], edit[1], 1))
    with pytest.raises(BadInputError, match=key.replace(".", r"\.")):
        load_policy(p)


def test_jobs_refuse_to_run_when_the_lab_is_readable_to_them(el, tmp_path: Path) -> None:
    """A lab placed inside what a job reads (here: the package of a registered trainer,
    which is bound whole) would be visible to jobs: the runner refuses before starting."""
    from facelab.labdir import init_and_record

    mod_dir = tmp_path / "trainers"
    (mod_dir / "nosypkg").mkdir(parents=True)
    (mod_dir / "nosypkg" / "__init__.py").write_text("def run(ctx):\n    return {}\n")
    lab = init_and_record(mod_dir / "nosypkg" / "lab", PASSPHRASE, "op")
    text = el.lab.paths.policy.read_text()
    text = text.replace(
        'trainers = { pca_head = "facelab.jobs.trainers:pca_head"',
        'trainers = { nosy = "nosypkg:run", pca_head = "facelab.jobs.trainers:pca_head"',
    )
    lab.paths.policy.write_text(text)
    import sys as _sys

    _sys.path.insert(0, str(mod_dir))
    try:
        lab = open_lab(lab.paths.root)
        from facelab.labdir import audit_writer, unlock

        root = unlock(lab, PASSPHRASE)
        with audit_writer(lab, root) as log, pytest.raises(BadInputError, match="lies inside"):
            run_job(
                lab,
                root,
                "acme",
                {"kind": "train", "purpose": "train", "model": "x@1", "trainer": "nosy"},
                "op",
                log,
            )
    finally:
        _sys.path.remove(str(mod_dir))
        _sys.modules.pop("nosypkg", None)
    shutil.rmtree(tmp_path, ignore_errors=True)


def _no_job_started(el, attempt) -> None:
    """``attempt`` refuses before anything runs: no ``job.start`` entry, no new outbox
    or workspace directory (the oracle: the log's lines and the directory listings)."""
    log_path = el.lab.paths.root / "audit" / "entries.jsonl"
    starts = log_path.read_text().count('"job.start"')
    dirs = {
        d: sorted(p.name for p in (el.lab.paths.root / d / "acme").glob("*"))
        for d in ("outbox", "jobs")
    }
    with pytest.raises(BadInputError):
        attempt()
    assert log_path.read_text().count('"job.start"') == starts
    assert dirs == {
        d: sorted(p.name for p in (el.lab.paths.root / d / "acme").glob("*"))
        for d in ("outbox", "jobs")
    }


def _with_policy(el, old: str, new: str):
    text = el.lab.paths.policy.read_text()
    assert old in text
    el.lab.paths.policy.write_text(text.replace(old, new))
    return text


def test_a_split_with_no_records_of_the_tenant_runs_no_job(el) -> None:
    """A split the policy names (added after the ingest) holds none of the tenant's
    records: no job, rather than a job over nothing."""
    splits = "splits = { train = 0.70, verification = 0.15, test = 0.15 }"
    text = _with_policy(el, splits, splits.replace("test = 0.15", "test = 0.15, spare = 0.0"))
    try:
        lab = open_lab(el.lab.paths.root)
        root, log = el.unlocked()

        def attempt() -> None:
            with log:
                run_job(
                    lab,
                    root,
                    "acme",
                    {
                        "kind": "bench",
                        "purpose": "verify_1to1",
                        "model": "cnn@1.0.0",
                        "split": "spare",
                    },
                    "alice",
                    log,
                )

        _no_job_started(el, attempt)
    finally:
        el.lab.paths.policy.write_text(text)


def test_a_trainer_inside_the_lab_runs_no_job(el) -> None:
    """A registered trainer whose package lies inside the lab directory: the job would
    read inside the lab (every file bound with the package), so none starts."""
    pkgs = el.lab.paths.root / "pkgs"
    (pkgs / "insidepkg").mkdir(parents=True)
    (pkgs / "insidepkg" / "__init__.py").write_text("def run(ctx):\n    return {}\n")
    old = 'trainers = { pca_head = "facelab.jobs.trainers:pca_head"'
    text = _with_policy(
        el,
        old,
        'trainers = { inside = "insidepkg:run", pca_head = "facelab.jobs.trainers:pca_head"',
    )
    import sys as _sys

    _sys.path.insert(0, str(pkgs))
    try:
        lab = open_lab(el.lab.paths.root)
        root, log = el.unlocked()

        def attempt() -> None:
            with log:
                run_job(
                    lab,
                    root,
                    "acme",
                    {
                        "kind": "train",
                        "purpose": "train",
                        "model": "cnn@1.0.0",
                        "trainer": "inside",
                    },
                    "alice",
                    log,
                )

        _no_job_started(el, attempt)
    finally:
        _sys.path.remove(str(pkgs))
        _sys.modules.pop("insidepkg", None)
        el.lab.paths.policy.write_text(text)
        shutil.rmtree(pkgs)


# ---------------------------------------------------------------- 1:N by any spelling

DISGUISED = [
    "galleries",
    "Gallery-Search",
    "1：N",  # a fullwidth colon
    "gаllery",  # a Cyrillic a
    "gal\u00adlery",  # a soft hyphen
    "gal\u200blery",  # a zero-width space
    "ｇａｌｌｅｒｙ",  # fullwidth letters
    "closed_set",
    "closedSet",
    "enrol_all",
    "topK",
    "top-k",
    "rank1",
    "Ranked",
    "identification",
    "IDENTIFIES",
    "one-to-many",
    "1 : N",
    "watch list",
    "nearest-neighbour",
    "kNN",
    "best_match",
    "dé-dup",
    "sеarch",  # a Cyrillic ie
]


@pytest.mark.parametrize("word", DISGUISED)
def test_one_to_many_markers_are_found_whatever_the_spelling(word: str) -> None:
    spec = {
        "kind": "train",
        "purpose": "train",
        "model": "m",
        "trainer": "pca_head",
        "params": {"mode": word},
    }
    d = check_job(load_policy().governance, "acme", spec)
    assert not d.allowed and "1:N" in d.reason, word
    spec["params"] = {word: 5}  # as a key too
    assert not check_job(load_policy().governance, "acme", spec).allowed


@pytest.mark.parametrize("word", ["research", "frankfurt", "backtrack", "pca_head", "dim"])
def test_ordinary_words_that_contain_a_marker_are_not_refused(word: str) -> None:
    spec = {
        "kind": "train",
        "purpose": "train",
        "model": f"{word}@1.0",
        "trainer": "pca_head",
        "params": {"dim": 8},
    }
    assert check_job(load_policy().governance, "acme", spec).allowed


@pytest.mark.parametrize(
    "extra", [{"params": {"dim": 3}}, {"threshold": 0.5}, {"protocol": "custom"}, {"k": 5}]
)
def test_a_benchmark_takes_no_parameters_at_all(extra: dict) -> None:
    spec = {"kind": "bench", "purpose": "verify_1to1", "model": "m", **extra}
    d = check_job(load_policy().governance, "acme", spec)
    assert not d.allowed and "takes no" in d.reason


def test_a_tenant_granted_only_training_gets_no_benchmark(tmp_path: Path) -> None:
    from enclave_policy import DEFAULT_POLICY

    text = DEFAULT_POLICY.read_text().replace(
        "[tenants]\n", '[tenants]\nacme = { purposes = ["train"] }\n'
    )
    (tmp_path / "policy.toml").write_text(text)
    gov = load_policy(tmp_path / "policy.toml").governance
    spec = {"kind": "bench", "purpose": "verify_1to1", "model": "m"}
    d = check_job(gov, "acme", spec)
    assert not d.allowed and "not granted" in d.reason


def test_every_path_may_be_relative_to_any_working_directory(el, tmp_path: Path) -> None:
    """A relative --lab, spec, dataset and output, from the lab's parent directory and
    from a sibling directory: the CLI resolves paths once, at its boundary."""
    import subprocess
    import sys

    # the installed command: `python -m` would put the working directory, which holds a
    # folder named `lab`, first on sys.path (issue 17)
    facelab = str(Path(sys.executable).parent / "facelab")
    parent = el.lab.paths.root.parent
    spec = parent / "rel-spec.json"
    spec.write_text(
        json.dumps(
            {"kind": "train", "purpose": "train", "model": "cnn@1.0.0", "trainer": "list_records"}
        )
    )
    sibling = parent / "elsewhere"
    sibling.mkdir(exist_ok=True)
    env = {**ENV, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}  # tests.hostile_jobs
    for cwd, lab, spec_arg in (
        (parent, "lab", "rel-spec.json"),
        (sibling, "../lab", "../rel-spec.json"),
    ):
        p = subprocess.run(
            [facelab, "job", "run", "--lab", lab, "--tenant", "acme", spec_arg],
            capture_output=True, text=True, env=env, cwd=cwd, timeout=120, check=False,
        )  # fmt: skip
        assert p.returncode == 0, p.stderr
        for args in (("vault", "list", "--lab", lab), ("audit", "verify", "--lab", lab)):
            q = subprocess.run(
                [facelab, *args],
                capture_output=True, text=True, env=env, cwd=cwd, timeout=120, check=False,
            )  # fmt: skip
            assert q.returncode == 0, (args, q.stderr)


def test_a_model_the_gate_never_registered_does_not_run(tmp_path: Path) -> None:
    """Red team 2, a12: `models/registry.json` and the model files are not signed; a row
    added by hand let another tenant run a model, and a flipped byte in a registered
    model.onnx still ran. A job runs a model only when the signed log records its
    registration for that tenant and its directory still holds exactly that."""
    from facelab.errors import TamperedError

    e = build_export_lab(tmp_path / "w", identities=4, captures=1)
    models = e.lab.paths.root / "models"
    index = models / "registry.json"
    rows = json.loads(index.read_text())
    acme = next(r for r in rows if r["tenant"] == "acme")
    spec = {
        "kind": "train",
        "purpose": "train",
        "model": acme["model"],
        "trainer": "pca_head",
        "params": {"dim": 4},
    }

    def run_as(tenant: str):
        root, log = e.unlocked()
        with log:
            return run_job(e.lab, root, tenant, spec, "operator", log)

    index.write_text(json.dumps([*rows, {**acme, "tenant": "beta"}]))  # a row by hand
    with pytest.raises(TamperedError, match="never registered by the import gate"):
        run_as("beta")
    index.write_text(json.dumps(rows))
    onnx_path = models / acme["path"] / "model.onnx"
    data = bytearray(onnx_path.read_bytes())
    os.chmod(onnx_path, 0o644)
    data[len(data) // 2] ^= 1
    onnx_path.write_bytes(bytes(data))
    with pytest.raises(TamperedError, match="not what the import gate registered"):
        run_as("acme")


# ---------------------------------------------------------------- last: destroys acme


def test_a_job_whose_tenant_is_destroyed_while_it_runs_keeps_no_output(el, monkeypatch) -> None:
    """Issue 14 (the class of red team 14g's case 24): the runner judges the outputs
    under the tenant's state lock; files the job wrote after a destroy finished are
    removed, and the job is recorded as failed. The last test here: acme is gone after."""
    import facelab.jobs.runner as runner
    from facelab.vault import ops

    real = runner.confine.run_python
    seen = {}

    def run_then_destroy_in_the_middle(*a, **k):
        res = real(*a, **k)
        outbox = Path(k["write"][1])
        seen["files"] = sorted(p.name for p in outbox.iterdir())
        aside = el.lab.paths.root.parent / "aside"  # outside the lab: destroy's scan
        # finds a copy of the outputs anywhere inside it (certificate FAILED)
        shutil.move(outbox, aside)  # the job has not written them yet ...
        root, log = el.unlocked()
        with log:
            ops.destroy(el.lab, root, "acme", "officer", log)  # ... when the destroy ends
        outbox.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(aside, outbox)  # and then it writes them
        return res

    monkeypatch.setattr(runner.confine, "run_python", run_then_destroy_in_the_middle)
    t = _job(el, "pca_head", dim=8)
    assert seen["files"]  # the job did write outputs
    assert t.status == "failed" and "destroyed while the job ran" in t.error
    left = [p for p in (el.lab.paths.root / "outbox" / "acme").rglob("*") if p.is_file()]
    assert left == []
    finish = [
        json.loads(x)
        for x in (el.lab.paths.audit / "entries.jsonl").read_text().splitlines()
        if '"job.finish"' in x
    ][-1]
    assert finish["decision"] == "failed" and finish["details"]["output_files"] == 0
    # no manifest either: nothing of the destroyed tenant is written after its destruction
    assert "manifest_sha256" not in finish["details"]
    assert not (el.lab.paths.root / "manifests" / "acme").exists()
