"""What of a job's summary may enter the signed audit log (``facelab.jobs.summary``)."""

from __future__ import annotations

import hashlib
import json
import math

from facelab.jobs.summary import MAX_KEYS, clean_summary
from hypothesis import given
from hypothesis import strategies as st

keys = st.from_regex(r"[a-z][a-z0-9_.\-]{0,47}", fullmatch=True)
numbers = st.one_of(
    st.booleans(),
    st.none(),
    st.integers(min_value=-(2**53) + 1, max_value=2**53 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
)


@given(st.dictionaries(keys, numbers, max_size=MAX_KEYS))
def test_a_few_named_numbers_pass_unchanged(d: dict) -> None:
    assert clean_summary(d) == (d, "")


def _refused(value) -> None:
    out, why = clean_summary(value)
    assert why
    assert set(out) == {"refused_sha256"}
    raw = json.dumps(value, sort_keys=True, default=str).encode()
    assert out["refused_sha256"] == hashlib.sha256(raw).hexdigest()


@given(
    st.dictionaries(keys, numbers, max_size=MAX_KEYS - 1),
    keys,
    st.one_of(
        st.text(max_size=20),
        st.lists(st.integers(0, 255), min_size=1, max_size=50),
        st.dictionaries(keys, numbers, min_size=1, max_size=3),
        st.sampled_from([math.nan, math.inf, -math.inf, 2**53, -(2**60)]),
    ),
)
def test_one_string_array_object_or_non_finite_value_refuses_the_whole_summary(
    base: dict, k: str, bad
) -> None:
    _refused({**base, k: bad})


def test_too_many_keys_bad_keys_and_non_objects_are_refused() -> None:
    _refused({f"k{i}": i for i in range(MAX_KEYS + 1)})
    for k in ("Upper", "1leading", "a" * 49, "spa ce", "", "ünï"):
        _refused({k: 1})
    for v in ([1, 2], "text", 3.0, (1,)):
        _refused(v)


def test_no_summary_is_an_empty_one() -> None:
    assert clean_summary(None) == ({}, "")
    assert clean_summary({}) == ({}, "")


def test_the_refused_content_never_appears_in_what_is_kept() -> None:
    pixels = list(range(200, 256)) * 10
    out, _ = clean_summary({"face": pixels, "eer": 0.1})
    assert "face" not in json.dumps(out) and "eer" not in out
