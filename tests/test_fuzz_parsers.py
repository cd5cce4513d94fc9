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
    assert sniff(data) in {
        "pickle",
        "zip",
        "gzip",
        "bzip2",
        "xz",
        "zstd",
        "7z",
        "tar",
        "npy",
        "png",
        "jpeg",
        "json",
        "text",
        "binary",
    }


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
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(json_values)
def test_model_json_validation_never_crashes(doc) -> None:
    problems = validate(doc)
    assert isinstance(problems, list)
    if not problems:
        json.dumps(doc)


@settings(max_examples=200, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(["name", "version", "input", "output", "similarity"]),
        json_values,
        max_size=5,
    )
)
def test_model_json_with_the_right_keys_and_wrong_values(doc) -> None:
    assert isinstance(validate(doc), list)


@settings(max_examples=60, deadline=None)
@given(st.binary(max_size=400), st.binary(max_size=300))
def test_dataset_reader_raises_only_bad_input(
    tmp_path_factory, manifest: bytes, image: bytes
) -> None:
    from lab.errors import BadInputError
    from lab.vault.dataset import read_dataset

    d = tmp_path_factory.mktemp("fz")
    (d / "images").mkdir()
    header = (
        b"subject_id,capture_id,kind,path,name,passport_no,nationality,sex,birth_year,"
        + b",".join(f"lm{i}_{a}".encode() for i in range(5) for a in "xy")
        + b"\n"
    )
    (d / "manifest.csv").write_bytes(header + manifest)
    (d / "images" / "a.png").write_bytes(image)
    with contextlib.suppress(BadInputError):
        read_dataset(d)


@settings(max_examples=25, deadline=None)
@given(st.binary(max_size=300), json_values)
def test_import_gate_reports_on_any_package(tmp_path_factory, onnx_bytes, spec) -> None:
    from enclave_policy import load_policy
    from lab.gates.importing import inspect

    d = tmp_path_factory.mktemp("pkg")
    (d / "model.onnx").write_bytes(onnx_bytes)
    (d / "model.json").write_text(json.dumps(spec))
    report, ctx = inspect(d, "acme", load_policy().importing, dynamic=False)
    ctx.package.cleanup()
    assert not report.accepted and report.failed()
