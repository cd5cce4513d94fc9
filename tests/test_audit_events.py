"""The audit entry schema: entries hold digests, counts and short names, never tenant data."""

from __future__ import annotations

import base64

import numpy as np
import pytest
from facelab.audit import AuditSchemaError, Event
from hypothesis import given, settings
from hypothesis import strategies as st

JOB_ID = "20261123T163000Z-0a1b2c3d"


def test_a_job_finish_of_counts_sizes_and_a_manifest_digest_is_legal() -> None:
    e = Event(
        "job.finish",
        "alice",
        role="tenant",
        tenant="acme",
        object=JOB_ID,
        decision="done",
        details={
            "output_files": 3,
            "output_bytes": 4096,
            "manifest_sha256": "ab" * 32,
            "summary_keys": 4,
            "summary_refused": "",
            "removed_from_outbox": {"name": 2, "link": 1},
            "kernel_events": ["forbidden system call: 1 process(es) killed by seccomp"],
            "error": "ValueError",
            "job_error": {"class": "ValueError", "chars": 40},
            "outbox": f"outbox/acme/{JOB_ID}",
        },
    )
    assert e.details["output_files"] == 3


def test_a_legal_export_entry_holds_counts_and_released_digests() -> None:
    e = Event(
        "export.refuse",
        "alice",
        role="tenant",
        tenant="acme",
        object="sha256:" + "cd" * 32,
        decision="refused",
        details={
            "manifest": "export-20261123T163000Z-0a1b2c3d",
            "manifest_sha256": "ef" * 32,
            "artifacts": 2,
            "released_sha256": [],
            "blocking": {"faces": 1, "contract": 1},
            "findings": {"high": 2, "medium": 0, "low": 0},
            "attested": [JOB_ID],
            "capacity_bits": 12.5,
        },
    )
    assert e.details["artifacts"] == 2


NEEDLE = bytes(range(30)).hex()  # 30 bytes of a face, hex: what case 30 put in file names


@pytest.mark.parametrize(
    ("action", "obj", "details"),
    [
        # the shapes that leaked before: outbox names, removed names, refused paths, plain
        # digests of what the tenant handed in, the job's error text
        ("job.finish", JOB_ID, {"outputs": ["ab" * 32 + "  " + NEEDLE]}),
        ("job.finish", JOB_ID, {"removed_from_outbox": [NEEDLE + ": name outside"]}),
        ("job.finish", JOB_ID, {"removed_from_outbox": {NEEDLE: 1}}),
        ("job.finish", JOB_ID, {"error": "ValueError: " + NEEDLE}),
        ("job.finish", JOB_ID, {"error": NEEDLE[:60]}),
        ("job.finish", JOB_ID, {"job_error": {"class": "x" + NEEDLE[:60], "chars": 3}}),
        ("job.finish", JOB_ID, {"summary_sha256": "ab" * 32}),
        ("job.finish", JOB_ID, {"kernel_events": [NEEDLE]}),
        ("job.finish", JOB_ID, {"output_files": -1}),
        ("job.finish", JOB_ID, {"manifest_sha256": "AB" * 32}),
        ("job.finish", JOB_ID, {"manifest_sha256": "ab" * 31}),
        ("job.finish", NEEDLE, {}),
        ("job.refuse", "", {"reason": f"takes no parameter {NEEDLE[:40]!r}"}),
        ("job.start", JOB_ID, {"spec_sha256": "ab" * 32}),
        ("export.refuse", "sha256:" + "ab" * 32, {"artifacts": [f"{NEEDLE} sha256:"]}),
        ("export.refuse", "sha256:" + "ab" * 32, {"source_sha256": ["ab" * 32]}),
        ("export.refuse", "sha256:" + "ab" * 32, {"blocking": [f"faces: {NEEDLE}"]}),
        ("export.refuse", "sha256:" + "ab" * 32, {"blocking": {NEEDLE[:60]: 1}}),
        ("export.release", "sha256:" + "ab" * 32, {"attested": {NEEDLE[:60]: JOB_ID}}),
        ("export.release.intent", "sha256:" + "ab" * 32, {"note": "x"}),
        ("export.refuse", NEEDLE, {}),
        ("release.publish", "", {"name": "model.onnx"}),
    ],
)
def test_entries_about_a_tenants_files_refuse_undeclared_or_mistyped_details(
    action, obj, details
) -> None:
    with pytest.raises(AuditSchemaError):
        Event(action, "alice", tenant="acme", object=obj, details=details)


def test_other_actions_keep_the_general_schema() -> None:
    e = Event("vault.read", "alice", tenant="acme", details={"purpose": "any short text"})
    assert e.details["purpose"] == "any short text"


@pytest.mark.parametrize(
    "details",
    [
        # face pixels a job summary tried to smuggle into the log, in three shapes
        {"summary": {"face": np.zeros((112, 112), np.uint8).tolist()}},
        {"summary": {"face": np.zeros(112 * 112, np.uint8).tolist()}},
        {"summary": {"png": base64.b64encode(b"\x89PNG" + bytes(2000)).decode()}},
        # many short strings that add up (a name list)
        {"names": [f"Person Number {i:05d}" for i in range(2000)]},
        {"a": {"b": {"c": {"d": {"e": 1}}}}},
        {"blob": b"bytes are not JSON"},
        {"f": float("inf")},
        {"ctrl": "line\nbreak"},
        {"k" * 65: 1},
        {str(i): "x" * 500 for i in range(60)},
    ],
)
def test_tenant_data_shaped_details_are_refused_at_construction(details) -> None:
    with pytest.raises(AuditSchemaError):
        Event("job.finish", "alice", tenant="acme", details=details)


@pytest.mark.parametrize(
    "fields",
    [
        {"tenant": "Acme Corp"},
        {"tenant": "../etc"},
        {"actor": "a" * 129},
        {"object": "o" * 201},
        {"decision": "d" * 41},
        {"action": "x." + "y" * 70},
        {"actor": "tab\tbed"},
    ],
)
def test_fixed_fields_are_bounded_and_typed(fields) -> None:
    with pytest.raises(AuditSchemaError):
        Event(**{"action": "x.y", "actor": "alice", **fields})


@settings(max_examples=80, deadline=None)
@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=600),
        lambda c: st.lists(c, max_size=300) | st.dictionaries(st.text(max_size=70), c, max_size=70),
        max_leaves=400,
    )
)
def test_any_value_is_accepted_or_refused_with_a_schema_error(value) -> None:
    try:
        e = Event("x.y", "alice", details={"v": value})
    except AuditSchemaError:
        return
    assert isinstance(e.details, dict)
