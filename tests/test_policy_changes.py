"""Policy changes through the Python API (``facelab.policy``): the policy in force is
the last recorded change's digest, a hand edit goes on the record before a change made
on top of it, and a change that changes nothing or would make the policy invalid leaves
the file and the log as they were. Oracles: hashlib over the file, the entry lines."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from facelab import policy
from facelab.audit import Event
from facelab.errors import BadInputError
from facelab.labdir import audit_writer

from tests.audit_helpers import PASS, make_lab


def _sha(path: Path) -> str:
    return "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()


def _entries(lab) -> list[dict]:
    return [json.loads(x) for x in (lab.paths.audit / "entries.jsonl").read_text().splitlines()]


def _changes(lab) -> list[tuple[str, str, str]]:
    return [
        (e["details"]["old"], e["details"]["new"], e["details"]["how"])
        for e in _entries(lab)
        if e["action"] == "policy.change"
    ]


@pytest.fixture
def lab(tmp_path: Path):
    return make_lab(tmp_path / "lab")


def test_the_policy_in_force_is_the_last_recorded_change(lab) -> None:
    first = _sha(lab.paths.policy)
    assert policy.in_force(lab.paths.audit) == first  # lab.init's policy
    with audit_writer(lab, PASS) as log:
        policy.change(lab, log, "ops", "set", policy.set_value("jobs.isolation", '"weak"'))
        second = _sha(lab.paths.policy)
        # later entries stamped by this writer still carry the digest it opened with
        log.record(Event("test.after", "ops"))
    assert second != first
    assert _entries(lab)[-1]["action"] == "test.after"
    assert policy.in_force(lab.paths.audit) == second


def test_a_hand_edit_under_an_open_writer_is_recorded_before_the_change(lab) -> None:
    p = lab.paths.policy
    original = _sha(p)
    with audit_writer(lab, PASS) as log:
        p.write_text(p.read_text().replace("checkpoint_every = 256", "checkpoint_every = 8"))
        edited = _sha(p)
        policy.change(lab, log, "ops", "set", policy.set_value("jobs.isolation", '"weak"'))
    final = _sha(p)
    assert _changes(lab) == [
        (original, edited, "edited outside facelab"),
        (edited, final, "facelab policy"),
    ]
    assert policy.in_force(lab.paths.audit) == final


def test_a_change_that_changes_nothing_writes_and_records_nothing(lab) -> None:
    p = lab.paths.policy
    text = p.read_text()
    current = next(line for line in text.splitlines() if line.startswith("isolation"))
    value = current.split("=", 1)[1].strip()
    n = len(_entries(lab))
    with audit_writer(lab, PASS) as log, pytest.raises(BadInputError):
        policy.change(lab, log, "ops", "set", policy.set_value("jobs.isolation", value))
    assert p.read_text() == text
    assert len(_entries(lab)) == n and _changes(lab) == []


def test_a_change_that_would_make_the_policy_invalid_is_refused(lab) -> None:
    p = lab.paths.policy
    text = p.read_text()
    n = len(_entries(lab))
    with audit_writer(lab, PASS) as log, pytest.raises(BadInputError):
        policy.change(lab, log, "ops", "set", policy.set_value("vault.min_side", "2"))
    assert p.read_text() == text  # the file untouched
    assert _changes(lab) == [] and len(_entries(lab)) == n
    assert [q.name for q in p.parent.iterdir() if q.name.startswith(".policy.")] == []


def test_reopening_without_an_edit_records_no_change(lab) -> None:
    with audit_writer(lab, PASS) as log:
        assert policy.record_drift(lab, log, "ops") is None
    assert _changes(lab) == []


def test_only_a_policy_change_entry_changes_the_policy_in_force(lab) -> None:
    """Another action whose details mention ``policy.change`` (and carry a ``new``
    digest) is not a change: the entries are filtered by their bytes first, then by
    their action."""
    first = _sha(lab.paths.policy)
    with audit_writer(lab, PASS) as log:
        log.record(
            Event(
                "test.note", "ops", details={"about": "policy.change", "new": "sha256:" + "0" * 64}
            )
        )
    assert b'"policy.change"' in (lab.paths.audit / "entries.jsonl").read_bytes()
    assert policy.in_force(lab.paths.audit) == first
