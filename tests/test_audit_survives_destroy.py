"""The audit log outlives ``destroy``: nothing a tenant's code chose may be in it
(issue 14, red team 14i case 30 and its class).

A hostile registered trainer names its outbox files with hex of a face's bytes, writes
1- and 2-byte files of a face (their plain SHA-256 is inverted in 65,536 guesses), a
summary key and an exception class made of a face; the tenant exports them (refused);
then the tenant is destroyed. The oracle is the test's own (``tests/exfil_oracle.py``):
a raw scan of every file and every name left in the lab for the faces' 30-byte pieces
(raw, hex, base64) and a brute-force inversion of every 64-hex-digit string. The
positive control: the same scan finds the pieces, and inverts the tiny files' digests,
in the lab before the destroy (in the outbox and the job's manifest).
"""

from __future__ import annotations

import csv
import json

import pytest
from facelab.confine import missing_layers
from facelab.errors import BadInputError
from facelab.gates.exporting.ops import export
from facelab.jobs import run_job
from facelab.labdir import open_lab
from facelab.vault import ops as vault_ops

from tests.exfil_oracle import found, idat, inverted
from tests.export_helpers import build_export_lab

MISSING = missing_layers()
TRAINERS = ("names_and_tiny_files", "error_class_of_record_bytes")


@pytest.fixture(scope="module")
def el(tmp_path_factory: pytest.TempPathFactory):
    if MISSING:
        pytest.skip("needs the whole confinement; missing here: " + "; ".join(MISSING))
    e = build_export_lab(tmp_path_factory.mktemp("exfil"), identities=4, captures=1)
    p = e.lab.paths.policy
    extra = ", ".join(f'{n} = "tests.exfil_jobs:{n}"' for n in TRAINERS)
    text = p.read_text()
    old = 'trainers = { pca_head = "facelab.jobs.trainers:pca_head" }'
    assert old in text
    text = text.replace(
        old, f'trainers = {{ pca_head = "facelab.jobs.trainers:pca_head", {extra} }}'
    )
    p.write_text(text)
    e.lab = open_lab(e.lab.paths.root)
    return e


def _faces(el) -> list[bytes]:
    with open(el.dataset / "manifest.csv", encoding="utf-8") as f:
        return [(el.dataset / r["path"]).read_bytes() for r in csv.DictReader(f)]


def _job(el, trainer: str):
    root, log = el.unlocked()
    with log:
        return run_job(
            el.lab,
            root,
            el.tenant,
            {"kind": "train", "purpose": "train", "model": "cnn@1.0.0", "trainer": trainer},
            "mallory",
            log,
        )


def test_names_tiny_files_and_error_classes_of_a_face_leave_nothing_after_destroy(el) -> None:
    faces = _faces(el)
    lab = str(el.lab.paths.root)
    log = el.lab.paths.audit / "entries.jsonl"
    names = _job(el, "names_and_tiny_files")
    assert names.status == "done", names.error
    assert len(names.outputs) == 48 + 64 + 16  # every name is valid: none was removed
    failed = _job(el, "error_class_of_record_bytes")
    assert failed.status == "failed"
    root, alog = el.unlocked()
    with alog:  # the tenant asks to take the tiny files out: refused (reviewed kinds)
        out = export(el.lab, root, el.tenant, [names.outbox], "mallory", alog)
    assert out.decision == "refused"
    # positive control: before the destroy the oracle finds the faces in the lab (the
    # outbox's names, the job's manifest) and inverts the tiny files' digests there
    assert found(lab, faces)
    tiny = {(names.outbox / f"t{k:02d}").read_bytes() for k in range(64)}
    assert tiny <= set(inverted(lab).values())
    # ... and never in the log, even now
    assert found(str(el.lab.paths.audit), faces) == []
    assert not set(inverted(str(el.lab.paths.audit)).values()) & tiny
    root, alog = el.unlocked()
    with alog:
        cert = vault_ops.destroy(el.lab, root, el.tenant, "officer", alog)
    c = json.loads(cert.read_text())["certificate"]
    assert c["sanitization_details"]["verification_result"] == "passed"
    places = {p["path"] for p in c["places"]}
    assert f"manifests/{el.tenant}" in places
    # the effect: nothing of the faces, in any form, anywhere in the lab
    assert found(lab, faces) == []
    assert inverted(lab) == {}
    text = log.read_text()
    assert idat(faces[1])[:30].hex() not in text  # the exception class's name


@pytest.mark.slow  # minutes-class end to end: `make test-slow`
def test_a_destroy_whose_manifest_is_gone_does_not_say_passed(el) -> None:
    """The log holds only each manifest's digest: a manifest deleted before the destroy
    hides the digests of the job's files, so the destroy cannot rule out a copy left
    elsewhere; it writes a FAILED certificate naming the manifest (fail closed).
    Positive control: the first test's destroy, with its manifests, passed."""
    root, log = el.unlocked()
    with log:
        vault_ops.ingest(el.lab, root, el.tenant, el.dataset, "operator", log)
    r = _job(el, "names_and_tiny_files")
    assert r.status == "done", r.error
    (el.lab.paths.root / "manifests" / el.tenant / f"job-{r.job_id}.json").unlink()
    root, log = el.unlocked()
    with log, pytest.raises(BadInputError, match="manifests missing or edited"):
        vault_ops.destroy(el.lab, root, el.tenant, "officer", log)
    certs = sorted((el.lab.paths.root / "certificates").glob(f"destroy-{el.tenant}-*.json"))
    doc = json.loads(certs[-1].read_text())["certificate"]["sanitization_details"]
    assert doc["verification_result"] == "FAILED"
    assert doc["verification_details"]["manifests_unverified"] == [f"job-{r.job_id}"]
    assert found(str(el.lab.paths.root), _faces(el)) == []  # the data itself is gone
