"""Attested outputs (issue 20): under the default policy a model (ONNX and model.json)
leaves the lab only as a training job of the tenant wrote it, by the SHA-256 of its bytes
in the outputs of a ``job.finish`` (decision ``done``) of a registered trainer in the
audit log; it is charged what the tenant chose (the job's spec, and which of its training
jobs), not its values' bound. Anything else is refused: a hand-made file with a covert
channel the capacity budget lets through (the red team's signs flipped), the job's output
with one byte changed, another tenant's output, a failed job's output. A reviewer's
override still releases a non-attested model, charged in full.

The oracles are the audit log's lines, the released directory and the job's spec,
read in the test; the expected charge is computed here from the spec's JSON."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest
from facelab.gates.exporting import export
from facelab.gates.exporting.attestation import job_outputs
from facelab.gates.exporting.ops import Override
from facelab.gates.exporting.release import sign_override
from facelab.gates.importing.keys import load_officer_key
from facelab.gates.importing.ops import import_model
from facelab.jobs.runner import run_job
from facelab.labdir import audit_writer, open_lab, unlock
from facelab.vault import ops as vault_ops
from onnx import numpy_helper

from tests.export_helpers import PASSPHRASE, build_export_lab

REPO = Path(__file__).resolve().parents[1]
SPEC = {
    "kind": "train",
    "purpose": "train",
    "model": "cnn@1.0.0",
    "trainer": "pca_head",
    "split": "train",
    "params": {"dim": 16},
}
TRAINERS = '{ pca_head = "facelab.jobs.trainers:pca_head" }'
FAILING = (
    '{ pca_head = "facelab.jobs.trainers:pca_head", '
    'write_then_fail = "tests.attest_trainers:write_then_fail" }'
)


@dataclasses.dataclass
class World:
    el: object
    train: Path  # acme's training job's outbox (done)
    beta_train: Path  # beta's training job's outbox (done)
    failed: Path  # acme's failed job's outbox (it wrote a model, then failed)


def _policy(el, old: str, new: str):
    p = el.lab.paths.policy
    text = p.read_text()
    assert old in text
    p.write_text(text.replace(old, new))
    return dataclasses.replace(el, lab=open_lab(el.lab.paths.root))


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> World:
    work = tmp_path_factory.mktemp("attested")
    el = build_export_lab(work, identities=40, captures=2)  # the default: attestation on
    # a second tenant with the same model, and a trainer that fails after writing
    pub = json.dumps(el.keys.tenant_pub)
    el = _policy(
        el, f"tenant_keys = {{ acme = {pub} }}", f"tenant_keys = {{ acme = {pub}, beta = {pub} }}"
    )
    el = _policy(el, f"trainers = {TRAINERS}", f"trainers = {FAILING}")
    root = unlock(el.lab, PASSPHRASE)
    with audit_writer(el.lab, root) as log:
        vault_ops.ingest(el.lab, root, "beta", el.dataset, "operator", log)
        assert import_model(el.lab, "beta", work / "cnn-package", "operator", log).accepted
        train = run_job(el.lab, root, "acme", SPEC, "eng", log)
        beta = run_job(el.lab, root, "beta", SPEC, "eng", log)
        failing = {**SPEC, "trainer": "write_then_fail", "params": {}}
        failed = run_job(el.lab, root, "acme", failing, "eng", log)
    assert (train.status, beta.status, failed.status) == ("done", "done", "failed")
    assert (failed.outbox / "model.onnx").is_file()
    return World(el, train.outbox, beta.outbox, failed.outbox)


def _export(el, paths, tenant: str = "acme", override: Override | None = None):
    root = unlock(el.lab, PASSPHRASE)
    with audit_writer(el.lab, root) as log:
        return export(el.lab, root, tenant, paths, "eng", log, override=override)


def _entries(el) -> list[dict]:
    lines = (el.lab.paths.root / "audit" / "entries.jsonl").read_text().splitlines()
    return [json.loads(x) for x in lines]


def _manifest(el, e: dict) -> dict:
    """The manifest an entry records (export or job), checked against its digest: the
    names the log may not hold."""
    name = e["details"].get("manifest") or f"job-{e['object']}"
    raw = (el.lab.paths.root / "manifests" / e["tenant"] / f"{name}.json").read_bytes()
    assert hashlib.sha256(raw).hexdigest() == e["details"]["manifest_sha256"]
    return json.loads(raw)


def _releases(el) -> list[Path]:
    d = el.lab.paths.root / "released" / "acme"
    return sorted(d.iterdir()) if d.exists() else []


def _copy(src: Path, dst: Path) -> Path:
    dst.mkdir(parents=True)
    for name in ("model.onnx", "model.json"):
        shutil.copyfile(src / name, dst / name)
    return dst


def _refused_for_attestation(el, out, names: set[str]) -> None:
    assert out.decision == "refused" and out.release_dir is None
    hits = {f.artifact.split("/")[-1] for f in out.report.blocking() if f.detector == "attestation"}
    assert hits == names, out.report.text()
    last = _entries(el)[-1]
    assert last["action"] == "export.refuse" and not set(_manifest(el, last)["attested"]) & names


def test_a_training_jobs_output_is_released_attested_and_charged_its_spec(world) -> None:
    el = world.el
    out = _export(el, [world.train])
    assert out.decision == "released", out.report.text()
    last = _entries(el)[-1]
    assert last["action"] == "export.release"
    # the audit entry names the job that wrote both files, the export's manifest which
    assert last["details"]["attested"] == [world.train.name]
    assert _manifest(el, last)["attested"] == {
        "model.onnx": world.train.name,
        "model.json": world.train.name,
    }
    assert "model.onnx" not in json.dumps(last)  # the tenant's names stay off the log
    # charged the spec's bytes and the choice among acme's one done training job (log2 1)
    spec_bits = 8 * len(json.dumps(SPEC, sort_keys=True).encode())
    assert last["details"]["capacity_bits"] == pytest.approx(spec_bits + math.log2(1), abs=0.1)
    # still the gate's rebuild: the head's new weights are re-quantised (13 low bits empty)
    m = onnx.load(out.release_dir / "model.onnx")
    imported = {t.name for t in onnx.load(REPO / "models" / "cnn" / "model.onnx").graph.initializer}
    [head] = [numpy_helper.to_array(t) for t in m.graph.initializer if t.name not in imported]
    assert (head.view(np.uint32) & 0x1FFF).max() == 0
    src = hashlib.sha256((world.train / "model.onnx").read_bytes()).hexdigest()
    man = json.loads((out.release_dir / "manifest.json").read_text())["manifest"]
    onx = next(a for a in man["artifacts"] if a["path"] == "model.onnx")
    assert onx["source_sha256"] == src and onx["sha256"] != src


def test_the_jobs_output_with_one_byte_changed_is_refused(world, tmp_path: Path) -> None:
    el = world.el
    d = _copy(world.train, el.lab.paths.root / "outbox" / "acme" / "edited")
    data = bytearray((d / "model.onnx").read_bytes())
    w = numpy_helper.to_array(onnx.load(d / "model.onnx").graph.initializer[-1])
    at = bytes(data).find(w.tobytes())
    assert at > 0
    data[at] ^= 1  # the lowest bit of one weight of the head: still a valid model
    (d / "model.onnx").write_bytes(bytes(data))
    before = _releases(el)
    _refused_for_attestation(el, _export(el, [d]), {"model.onnx"})
    assert _releases(el) == before


def test_another_tenants_training_output_is_refused(world, tmp_path: Path) -> None:
    el = world.el
    # positive control: the files are a done training job's outputs, of tenant beta
    digest = hashlib.sha256((world.beta_train / "model.onnx").read_bytes()).hexdigest()
    assert (
        digest in job_outputs(el.lab.paths.audit, "beta", ["facelab.jobs.trainers:pca_head"]).models
    )
    d = _copy(world.beta_train, tmp_path / "from-beta")  # a path outside the lab
    before = _releases(el)
    # (its model.json is byte for byte the one acme's own job wrote: that one is acme's too)
    _refused_for_attestation(el, _export(el, [d]), {"model.onnx"})
    assert _releases(el) == before


def test_a_failed_jobs_output_is_refused(world) -> None:
    el = world.el
    finish = [
        e for e in _entries(el) if e["action"] == "job.finish" and e["object"] == world.failed.name
    ]
    assert finish[0]["decision"] == "failed"
    assert "model.onnx" in _manifest(el, finish[0])["outputs"]
    before = _releases(el)
    _refused_for_attestation(el, _export(el, [world.failed]), {"model.onnx", "model.json"})
    assert _releases(el) == before


def _signs_flipped(d: Path) -> Path:
    """The imported CNN with the signs of some of its 1,024 smallest weights flipped: a
    payload of 1,024 bits, far under the capacity budget (the red team's sign flips)."""
    m = onnx.load(REPO / "models" / "cnn" / "model.onnx")
    t = max(m.graph.initializer, key=lambda t: int(np.prod(t.dims)))
    a = numpy_helper.to_array(t).copy()
    flat = a.reshape(-1)
    smallest = np.argsort(np.abs(flat))[:1024]  # the model still works
    bits = np.random.default_rng(20).integers(0, 2, 1024).astype(bool)
    flat[smallest[bits]] *= -1
    t.CopyFrom(numpy_helper.from_array(a, t.name))
    d.mkdir(parents=True)
    onnx.save(m, d / "model.onnx")
    shutil.copyfile(REPO / "models" / "cnn" / "model.json", d / "model.json")
    return d


def test_a_hand_made_covert_model_is_refused_and_an_override_is_charged_in_full(
    world, tmp_path: Path
) -> None:
    el = world.el
    d = _signs_flipped(tmp_path / "hand-made")
    before = _releases(el)
    _refused_for_attestation(el, _export(el, [d]), {"model.onnx", "model.json"})
    assert _releases(el) == before
    # without attestation the channel leaves: the budget does not stop 1,024 bits
    loose = _policy(el, "models_require_attestation = true", "models_require_attestation = false")
    try:
        out = _export(loose, [d])
        assert out.decision == "released", out.report.text()
        full = _entries(el)[-1]["details"]["capacity_bits"]
        assert 1024 < full < 2**21
    finally:
        el = _policy(
            loose, "models_require_attestation = false", "models_require_attestation = true"
        )
    # a reviewer's signed override releases the gate's rebuild, charged in full, unattested
    digests = [
        hashlib.sha256((d / n).read_bytes()).hexdigest() for n in ("model.json", "model.onnx")
    ]
    reason = "synthetic test model, checked by hand"
    key = load_officer_key(el.reviewer_key)
    ov = Override("rev", reason, sign_override(key, "acme", digests, reason))
    out = _export(el, [d], override=ov)
    assert out.decision == "overridden" and out.release_dir is not None
    last = _entries(el)[-1]
    assert last["action"] == "export.override" and last["details"]["attested"] == []
    assert last["details"]["capacity_bits"] == pytest.approx(full, abs=0.1)


JOB = "20261123T163000Z-0a1b2c3d"


def _job_lab(tmp_path: Path, privacy, digest: str) -> Path:
    """A lab's audit directory with one finished training job whose manifest lists
    ``digest`` as its model.onnx; returns the audit directory."""
    from facelab import manifests

    root = tmp_path / "lab"
    root.mkdir(exist_ok=True)
    sha = manifests.write(
        root, "acme", manifests.job_name(JOB), "job", {"outputs": {"model.onnx": digest}}
    )
    start = {
        "kind": "train",
        "trainer": "facelab.jobs.trainers:pca_head",
        "spec_bytes": 120,
        "privacy": privacy,
    }
    lines = [
        {"seq": 0, "action": "job.start", "tenant": "acme", "object": JOB, "details": start},
        {
            "seq": 1,
            "action": "job.finish",
            "tenant": "acme",
            "object": JOB,
            "decision": "done",
            "details": {"output_files": 1, "manifest_sha256": sha},
        },
    ]
    (root / "audit").mkdir(exist_ok=True)
    (root / "audit" / "entries.jsonl").write_text("".join(json.dumps(e) + "\n" for e in lines))
    return root / "audit"


PRIVATE = {"unit": "subject", "epsilon": 8.0, "delta": 1e-6}


def test_a_manifest_that_is_missing_or_does_not_match_its_entry_attests_nothing(tmp_path):
    """The log holds only the manifest's (salted) digest: the manifest is what names the
    outputs, and one edited (a digest added) or removed attests nothing. Positive
    control: the intact manifest attests its output."""
    digest = "ab" * 32
    audit = _job_lab(tmp_path, PRIVATE, digest)
    trainers = ["facelab.jobs.trainers:pca_head"]
    assert digest in job_outputs(audit, "acme", trainers).models
    m = audit.parent / "manifests" / "acme" / f"job-{JOB}.json"
    doc = json.loads(m.read_bytes())
    doc["outputs"]["covert.onnx"] = "cd" * 32  # a hand-made model slipped in
    m.write_bytes(json.dumps(doc, sort_keys=True, separators=(",", ":")).encode())
    found = job_outputs(audit, "acme", trainers)
    assert found.models == {} and found.train_jobs == 0
    m.unlink()
    assert job_outputs(audit, "acme", trainers).models == {}


@pytest.mark.parametrize(
    ("privacy", "attested"),
    [
        ({"unit": "subject", "epsilon": 8.0, "delta": 1e-6}, True),
        (None, False),  # a job of a trainer the policy gave no privacy
        ({"unit": "subject", "epsilon": 0, "delta": 1e-6}, False),
        ({"unit": "subject", "epsilon": 8.0, "delta": 0}, False),
        ({"unit": "subject", "epsilon": "8", "delta": 1e-6}, False),
        ({"unit": "subject", "epsilon": float("inf"), "delta": 1e-6}, False),
    ],
)
def test_only_a_job_that_ran_under_differential_privacy_attests_its_outputs(
    tmp_path: Path, privacy, attested
) -> None:
    # the tenant chose the model the trainer ran: without a per-subject bound, a model
    # can steer the trainer into writing a subject's face into the head (issue 20)
    digest = "ab" * 32
    found = job_outputs(
        _job_lab(tmp_path, privacy, digest), "acme", ["facelab.jobs.trainers:pca_head"]
    )
    assert (digest in found.models) is attested
    if attested:
        assert (found.models[digest].epsilon, found.models[digest].delta) == (8.0, 1e-6)


def test_the_privacy_budget_bounds_how_many_training_jobs_leave(world) -> None:
    from facelab.gates.exporting.ops import tenant_epsilon

    el = world.el
    spent, _ = tenant_epsilon(el.lab.paths.audit, "acme")
    eps = el.lab.policy.governance.trainer_privacy["pca_head"]["epsilon"]
    room = spent + eps + eps / 2  # one more job fits, two do not
    old = "tenant_epsilon = 32.0"
    tight = _policy(el, old, f"tenant_epsilon = {room!r}")
    try:
        root = unlock(tight.lab, PASSPHRASE)
        with audit_writer(tight.lab, root) as log:
            first = run_job(tight.lab, root, "acme", SPEC, "eng", log)
            second = run_job(tight.lab, root, "acme", SPEC, "eng", log)
        assert (first.status, second.status) == ("done", "done")
        out = _export(tight, [first.outbox])
        assert out.decision == "released", out.report.text()
        d = _entries(el)[-1]["details"]
        assert d["privacy_epsilon"] == eps and d["tenant_epsilon_before"] == pytest.approx(spent)
        before = _releases(el)
        out = _export(tight, [second.outbox])
        assert out.decision == "refused" and out.release_dir is None
        # the budget's refusal (the template detector may add its own on a noisy head)
        assert "privacy" in {f.detector for f in out.report.blocking()}, out.report.text()
        assert _releases(el) == before
        # the same job's output again tells nothing new: charged 0, released
        out = _export(tight, [first.outbox])
        assert out.decision == "released", out.report.text()
        assert _entries(el)[-1]["details"]["privacy_epsilon"] == 0
    finally:
        _policy(el, f"tenant_epsilon = {room!r}", old)
