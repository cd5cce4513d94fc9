"""Intents and state locks (``facelab.audit.intents``): an intent stays open until an
outcome names it, and a state lock is a file under ``audit/locks/`` named by a safe
tenant id, never anywhere else."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from facelab.audit import Event, intents
from facelab.labdir import audit_writer

from tests.audit_helpers import PASS, make_lab


@pytest.fixture
def lab(tmp_path: Path):
    return make_lab(tmp_path / "lab")


def _seqs(lab, prefix: str = "") -> list[int]:
    return [e["seq"] for e in intents.open_intents(lab.paths.audit, prefix)]


def test_an_intent_is_open_until_an_outcome_names_it(lab) -> None:
    with audit_writer(lab, PASS) as log:
        a = intents.begin(log, Event("vault.destroy", "t", tenant="acme"))
        b = intents.begin(log, Event("vault.ingest", "t", tenant="beta", object="sha256:00"))
        c = intents.begin(log, Event("model.import", "t", tenant="acme"))
        # an entry that only mentions an intent in its details, not an outcome
        log.record(Event("test.note", "t", details={"about": "intent", "intent": "x"}))
        assert _seqs(lab) == [a, b, c]
        intents.finish(log, b, Event("vault.ingest", "t", tenant="beta", decision="ok"))
        assert _seqs(lab) == [a, c]  # only b is closed, by its own seq
        intents.finish(log, a, Event("vault.destroy", "t", tenant="acme", decision="destroyed"))
        assert _seqs(lab) == [c]
    # outcomes are never intents themselves
    assert all(e["action"].endswith(".intent") for e in intents.open_intents(lab.paths.audit))


def test_open_intents_select_by_action_prefix(lab) -> None:
    with audit_writer(lab, PASS) as log:
        a = intents.begin(log, Event("vault.destroy", "t", tenant="acme"))
        c = intents.begin(log, Event("model.import", "t", tenant="acme"))
    assert _seqs(lab, "vault.") == [a]
    assert _seqs(lab, "model.") == [c]
    assert _seqs(lab, "export.") == []


@pytest.mark.parametrize("tenant", ["../evil", "a/b", ".hidden", ".."])
def test_a_state_lock_is_never_a_file_outside_the_locks_directory(lab, tenant) -> None:
    audit = lab.paths.audit
    before = {p for p in lab.paths.root.rglob("*")}
    with pytest.raises(ValueError), intents.held(audit, tenant):
        pass
    with pytest.raises(ValueError), intents.try_held(audit, tenant):
        pass
    assert {p for p in lab.paths.root.rglob("*")} == before  # nothing created


def test_the_labs_own_state_lock_and_a_tenants_are_files_in_locks(lab) -> None:
    audit = lab.paths.audit
    with intents.held(audit, ""), intents.held(audit, "acme"):
        names = sorted(os.listdir(audit / intents.LOCKS))
    assert names == sorted([f"{intents.LAB_KEY}.lock", "acme.lock"])


def test_try_held_is_refused_while_this_process_holds_the_lock(lab) -> None:
    audit = lab.paths.audit
    with intents.try_held(audit, "acme") as mine:
        assert mine is True  # free: taken
        with intents.try_held(audit, "acme") as again:
            assert again is False  # held here already
        with intents.try_held(audit, "beta") as other:
            assert other is True  # another tenant's lock is its own
    with intents.held(audit, "acme"), intents.try_held(audit, "acme") as busy:
        assert busy is False
    with intents.try_held(audit, "acme") as free_again:
        assert free_again is True  # released
