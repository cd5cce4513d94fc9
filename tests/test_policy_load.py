"""Decisions the loaded policy makes (``enclave_policy``): the export gate refuses a
finding at or above ``refuse_at``; a tenant's data is due at the sooner of its retention
and its ``destroy_by``; an unlisted tenant gets ``[tenant_defaults]`` under its own name."""

from __future__ import annotations

from dataclasses import replace
from datetime import date, timedelta

import pytest

from enclave_policy import load_policy
from enclave_policy._load import SEVERITIES


@pytest.mark.parametrize("refuse_at", SEVERITIES)
def test_a_finding_at_or_above_refuse_at_is_refused(refuse_at) -> None:
    export = replace(load_policy().exporting, refuse_at=refuse_at)
    at = SEVERITIES.index(refuse_at)
    for i, severity in enumerate(SEVERITIES):
        assert export.refuses(severity) is (i >= at), (severity, refuse_at)


def test_due_is_the_sooner_of_retention_and_destroy_by() -> None:
    gov = load_policy().governance
    tp = replace(gov.defaults, retention_days=30, destroy_by=None)
    created = date(2026, 1, 1)
    assert tp.due(created) == created + timedelta(days=30)
    assert replace(tp, destroy_by=date(2026, 1, 10)).due(created) == date(2026, 1, 10)
    assert replace(tp, destroy_by=date(2026, 6, 1)).due(created) == created + timedelta(days=30)


def test_an_unlisted_tenant_gets_the_defaults_under_its_own_name() -> None:
    gov = load_policy().governance
    assert "nobody-listed" not in gov.tenants
    tp = gov.tenant("nobody-listed")
    assert (tp.name, tp.processor) == ("nobody-listed", "nobody-listed")
    assert tp.purposes == gov.defaults.purposes and not tp.listed
    for name, listed in gov.tenants.items():  # a listed tenant gets its own table
        assert gov.tenant(name) == listed
