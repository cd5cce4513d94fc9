"""The audit entry schema: entries hold digests, counts and short names, never tenant data."""

from __future__ import annotations

import base64

import numpy as np
import pytest
from facelab.audit import AuditSchemaError, Event
from hypothesis import given, settings
from hypothesis import strategies as st


def test_a_job_summary_of_a_handful_of_metrics_is_legal() -> None:
    e = Event(
        "job.finish",
        "alice",
        role="tenant",
        tenant="acme",
        object="job-1234",
        details={
            "summary": {"eer": 0.031, "fnmr_at_fmr_1e-3": 0.12, "pairs": 4000, "ok": True},
            "outputs": ["report.json sha256:" + "ab" * 32],
            "limits": {"cpu_seconds": 60, "memory_mb": 512},
        },
    )
    assert e.details["summary"]["pairs"] == 4000


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
