"""Identities: deterministic, within bounds, group-dependent (property-based)."""

from __future__ import annotations

import numpy as np
import pytest
from facelab.synth import NATIONALITY_CODES, PARAM_NAMES, sample_identity
from facelab.synth._identity import HI, LO, P
from hypothesis import given, settings
from hypothesis import strategies as st

seeds = st.integers(min_value=0, max_value=2**32 - 1)
indices = st.integers(min_value=0, max_value=10**6)


def test_an_identity_has_at_least_24_continuous_parameters() -> None:
    assert len(PARAM_NAMES) >= 24
    assert len(NATIONALITY_CODES) >= 6


@settings(max_examples=200, deadline=None)
@given(seeds, indices)
def test_identity_is_a_pure_function_of_seed_and_index(seed: int, index: int) -> None:
    a, b = sample_identity(seed, index), sample_identity(seed, index)
    assert (a.name, a.passport_no, a.nationality, a.sex, a.birth_year) == (
        b.name,
        b.passport_no,
        b.nationality,
        b.sex,
        b.birth_year,
    )
    assert np.array_equal(a.params, b.params)


@settings(max_examples=300, deadline=None)
@given(seeds, indices)
def test_parameters_stay_within_their_bounds(seed: int, index: int) -> None:
    ident = sample_identity(seed, index)
    assert np.all(ident.params >= LO) and np.all(ident.params <= HI)
    assert np.all(np.isfinite(ident.params))
    assert ident.issue_year >= ident.birth_year + 16
    assert ident.name.replace(" ", "").isalpha() and ident.name[0].isupper()


def _group_means(key: str, param: str, n: int = 3000) -> dict[str, float]:
    acc: dict[str, list[float]] = {}
    for i in range(n):
        ident = sample_identity(11, i)
        acc.setdefault(getattr(ident, key), []).append(ident.params[P[param]])
    return {k: float(np.mean(v)) for k, v in acc.items()}


def test_groups_differ_measurably() -> None:
    skin = _group_means("nationality", "skin_lightness")
    assert max(skin.values()) - min(skin.values()) > 0.3
    jaw = _group_means("sex", "jaw_width")
    assert jaw["M"] - jaw["F"] > 0.1


def test_identities_are_spread_apart() -> None:
    """Different identities differ in many parameters, not in one or two."""
    a = np.array([sample_identity(3, i).params for i in range(400)])
    z = (a - a.mean(0)) / (a.std(0) + 1e-9)
    d = np.linalg.norm(z[:200] - z[200:], axis=1)
    assert np.median(d) > 0.8 * np.sqrt(len(PARAM_NAMES))


def test_the_generator_reads_the_committed_calibration() -> None:
    """SPREAD, LO and HI are the values of lab/synth/identity_calibration.json."""
    import json

    from facelab.synth import _identity

    doc = json.loads(_identity.CALIBRATION_FILE.read_text(encoding="utf-8"))
    assert sorted(doc["params"]) == sorted(PARAM_NAMES)
    for name in PARAM_NAMES:
        j = P[name]
        assert _identity.SPREAD[j] == doc["params"][name]["spread"]
        assert (LO[j], HI[j]) == (doc["params"][name]["lo"], doc["params"][name]["hi"])
    # the calibration was measured, and what it measured stays inside its own limits
    cal = doc["calibration"]
    assert cal["fitted"] is True and cal["threshold"] == 0.6
    assert cal["result"]["haar_passport"] >= cal["limits"]["haar_passport"]
    assert cal["result"]["haar_gate"] >= cal["limits"]["haar_gate"]
    assert cal["result"]["hog_passport"] >= cal["limits"]["hog_passport"]
    assert cal["result"]["fnmr"] <= cal["limits"]["fnmr"]


def test_the_spread_drives_the_identities(tmp_path) -> None:
    """Twice the spread of one parameter in the file doubles how far identities spread
    in it (bounds opened so that nothing is clipped), and a file missing a parameter is
    refused."""
    import json

    from facelab.synth import _identity

    doc = json.loads(_identity.CALIBRATION_FILE.read_text(encoding="utf-8"))
    j = P["nose_length"]
    doc["params"]["nose_length"]["lo"], doc["params"]["nose_length"]["hi"] = -9.0, 9.0
    (tmp_path / "wide.json").write_text(json.dumps(doc))
    doc["params"]["nose_length"]["spread"] *= 2
    (tmp_path / "twice.json").write_text(json.dumps(doc))
    saved = [a.copy() for a in (_identity.SPREAD, _identity.LO, _identity.HI)]
    sd = {}
    try:
        for name in ("wide", "twice"):
            loaded = _identity.load_calibration(tmp_path / f"{name}.json")
            for dst, src in zip(
                (_identity.SPREAD, _identity.LO, _identity.HI), loaded, strict=True
            ):
                dst[:] = src
            sd[name] = np.std([sample_identity(4, i).params[j] for i in range(600)])
    finally:
        for dst, src in zip((_identity.SPREAD, _identity.LO, _identity.HI), saved, strict=True):
            dst[:] = src
    # group shifts (not scaled by the spread) keep the ratio a little under 2
    assert 1.8 < sd["twice"] / sd["wide"] <= 2.0, sd
    del doc["params"]["nose_length"]
    (tmp_path / "bad.json").write_text(json.dumps(doc))
    with pytest.raises(ValueError, match="nose_length"):
        _identity.load_calibration(tmp_path / "bad.json")
