"""Parsers that read attacker-controlled bytes fail only with their own clear errors."""

from __future__ import annotations

import contextlib
import json

from hypothesis import given, settings
from hypothesis import strategies as st

from lab.audit import checkpoint as ck
from lab.audit.events import parse_entry
from lab.errors import NoteError
from lab.gates.importing.checks.model_json import validate
from lab.gates.importing.filetype import sniff

blobs = st.binary(max_size=600)


@settings(max_examples=300, deadline=None)
@given(blobs)
def test_sniff_always_names_a_type(data: bytes) -> None:
    assert sniff(data) in {"pickle", "zip", "gzip", "bzip2", "xz", "zstd", "7z", "tar",
                           "npy", "png", "jpeg", "json", "text", "binary"}


@settings(max_examples=300, deadline=None)
@given(st.one_of(blobs, st.text(max_size=400)))
def test_checkpoint_parsing_raises_only_note_errors(note) -> None:
    with contextlib.suppress(NoteError):
        ck.parse(note)


@settings(max_examples=300, deadline=None)
@given(blobs)
def test_audit_entry_parsing_raises_only_value_errors(line: bytes) -> None:
    with contextlib.suppress(ValueError):
        parse_entry(line)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=8), c, max_size=5),
    max_leaves=20)


@settings(max_examples=300, deadline=None)
@given(json_values)
def test_model_json_validation_never_crashes(doc) -> None:
    problems = validate(doc)
    assert isinstance(problems, list)
    if not problems:
        json.dumps(doc)


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.sampled_from(["name", "version", "input", "output", "similarity"]),
                       json_values, max_size=5))
def test_model_json_with_the_right_keys_and_wrong_values(doc) -> None:
    assert isinstance(validate(doc), list)
