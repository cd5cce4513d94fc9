"""Parsers that read attacker-controlled bytes fail only with their own clear errors."""

from __future__ import annotations

import contextlib
import json
import os
import pickle

import pytest
from facelab.audit import checkpoint as ck
from facelab.audit.events import parse_entry
from facelab.errors import NoteError
from facelab.gates.importing import _tar
from facelab.gates.importing.checks.model_json import validate
from facelab.gates.importing.filetype import scan, sniff
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.import_helpers import tar_header

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
        "lz4",
        "rar",
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
    from facelab.errors import BadInputError
    from facelab.vault.dataset import read_dataset

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


@settings(max_examples=12, deadline=None)
@given(st.binary(max_size=300), json_values)
@pytest.mark.slow  # minutes-class end to end: `make test-slow`
def test_import_gate_reports_on_any_package(tmp_path_factory, onnx_bytes, spec) -> None:
    from facelab.gates.importing import inspect

    from enclave_policy import load_policy

    d = tmp_path_factory.mktemp("pkg")
    (d / "model.onnx").write_bytes(onnx_bytes)
    (d / "model.json").write_text(json.dumps(spec))
    report, ctx = inspect(d, "acme", load_policy().importing, dynamic=False)
    ctx.package.cleanup()
    assert not report.accepted and report.failed()


# ---------------------------------------------------------------- import gate: payloads, tar


class _Call:
    def __reduce__(self):
        return (os.system, ("true",))


picklable = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False)
    | st.text(max_size=20)
    | st.binary(max_size=40),
    lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=6), c, max_size=4),
    max_leaves=12,
)


@settings(max_examples=200, deadline=None)
@given(picklable, st.integers(0, 5), st.binary(max_size=64), st.binary(max_size=64))
def test_a_pickle_that_calls_is_found_anywhere(value, protocol, before, after) -> None:
    """Oracle: pickle.dumps itself. Whatever data rides along, at whatever offset, and
    whatever junk follows, a pickle that calls os.system is found."""
    data = before + pickle.dumps([value, _Call()], protocol=protocol) + after
    found = [p for p in scan(data) if p.kind == "pickle"]
    assert found, (protocol, data[:80])


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=2000))
def test_scan_never_raises_and_always_ends(data) -> None:
    for p in scan(data, first_only=False):
        assert 0 <= p.offset < len(data) and p.kind


def test_no_false_payloads_in_random_weights() -> None:
    """Random float32 weights and uniform random bytes (48 MiB each, fixed seeds)
    hold no pickle or archive by chance."""
    import numpy as np

    rng = np.random.default_rng(15)
    assert scan(rng.standard_normal(12 << 20, dtype=np.float32).tobytes()) == []
    assert scan(rng.integers(0, 256, 48 << 20, dtype=np.uint8).tobytes()) == []


def test_plain_text_is_not_a_pickle() -> None:
    """Text that looks like opcodes (modelaudit#624's "c\\nthis is plain text", a line
    ending in a STOP '.', a CSS class selector: aisbom#92) is not a pickle."""
    for text in (
        b"c\nthis is plain text\nnot a pickle stream",
        b"cats\nfoo\nbar baz.\n",
        b".header { color: red }\n",
        b"config\nvalue\n(S'x'\n",
        b"N.",
    ):
        assert [p for p in scan(text) if p.kind == "pickle"] == [] or text == b"N."


def _extract(tmp_path, data: bytes, **kw):
    src = tmp_path / "a.tar"
    src.write_bytes(data)
    dest = tmp_path / "out"
    dest.mkdir(exist_ok=True)
    limits = {"max_members": 8, "max_member": 1 << 20, "max_total": 1 << 20, "max_ratio": 100}
    return _tar.extract(src, dest, **{**limits, **kw})


END = b"\0" * 1024
ONE = b"x" + b"\0" * 511  # one data byte and its zero block padding (canonical)


def _bad_checksum() -> bytes:
    h = bytearray(tar_header("a", b"00000000001\0"))
    h[0] = ord("b")  # the name changes, the checksum does not
    return bytes(h) + ONE + END


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (tar_header("a", b"\xff" * 12) + END, "base-256"),
        (tar_header("a", b"\x80" + b"\0" * 10 + b"\x10") + END, "base-256"),
        (tar_header("a", b"12345678901x") + END, "not octal"),
        (_bad_checksum(), "checksum"),
        (tar_header("a", b"00000000001\0", typ=b"S") + ONE + END, "type"),
        (tar_header("a", b"00000000001\0", typ=b"g") + ONE + END, "global"),
        (tar_header("a", b"00000000001\0", magic=b"junk\0\0\0\0") + ONE + END, "magic"),
        (tar_header("a", b"00000000004\0") + b"x" * 100, "truncated"),
        (tar_header("a", b"00004000001\0") + END, r"bytes \(limit"),
        ((tar_header("a", b"00000000001\0") + ONE) * 2 + END, "twice"),
    ],
)
def test_malformed_tar_headers_are_refused_before_any_loop(tmp_path, data, reason) -> None:
    with pytest.raises(_tar.TarRefused, match=reason):
        _extract(tmp_path, data)


def test_tar_bounds_on_members_and_total(tmp_path) -> None:
    many = b"".join(tar_header(f"f{i}", b"00000000001\0") + ONE for i in range(9))
    with pytest.raises(_tar.TarRefused, match="more than 8 members"):
        _extract(tmp_path, many + END)
    two = b"".join(tar_header(f"g{i}", b"00003000000\0") + b"x" * (3 << 18) for i in range(2))
    with pytest.raises(_tar.TarRefused, match="more than"):
        _extract(tmp_path, two + END)


def test_a_pax_path_and_a_gnu_long_name_are_honoured(tmp_path) -> None:
    """Positive control, oracle ``tarfile``'s writer: a 150-character name in both of
    the formats it writes is extracted under that name."""
    import io
    import tarfile

    long = "d/" + "n" * 150
    for fmt in (tarfile.PAX_FORMAT, tarfile.GNU_FORMAT):
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w", format=fmt) as tf:
            info = tarfile.TarInfo(long)
            info.size = 3
            tf.addfile(info, io.BytesIO(b"abc"))
        d = tmp_path / str(fmt)
        d.mkdir()
        files, problems = _extract(d, buf.getvalue())
        assert files == {long: 3} and problems == []
        assert (d / "out" / long).read_bytes() == b"abc"


@settings(max_examples=150, deadline=None)
@given(st.binary(min_size=0, max_size=3000))
def test_tar_reader_raises_only_its_own_refusal(tmp_path_factory, data) -> None:
    d = tmp_path_factory.mktemp("tz")
    with contextlib.suppress(_tar.TarRefused):
        _extract(d, data)


@pytest.mark.parametrize(
    "stream",
    [
        # STACK_GLOBAL fed by BINUNICODE names fetched back from the memo, no PROTO
        b"X\x05\x00\x00\x00posix\x94X\x06\x00\x00\x00system\x94h\x00h\x01\x93"
        b"X\x02\x00\x00\x00id\x85R.",
        # the same with SHORT_BINSTRING names
        b"U\x05posix\x94U\x06system\x94h\x00h\x01\x93U\x02id\x85R.",
        # PROTO 4, names from the memo
        b"\x80\x04\x8c\x05posix\x94\x8c\x06system\x94h\x00h\x01\x93\x8c\x02id\x85R.",
    ],
)
@pytest.mark.parametrize("before", [b"", b"junk\x01\x02", b"# notes\n"])
def test_hand_built_pickles_with_memoized_names(stream, before) -> None:
    """Hand-written streams (no pickle.dumps writes them): names pushed by other string
    opcodes or fetched back from the memo, at offset 0 and after junk, in a small file."""
    found = [p for p in scan(before + stream) if p.kind == "pickle"]
    assert found and "posix.system" in found[0].detail


def test_no_false_payloads_in_small_random_files() -> None:
    """Small files get more pickle starts (every string push of a name); 16 random
    1 MiB blobs and 16 of float32 weights hold none."""
    import numpy as np

    rng = np.random.default_rng(16)
    for _ in range(16):
        assert scan(rng.integers(0, 256, 1 << 20, dtype=np.uint8).tobytes()) == []
        assert scan(rng.standard_normal(1 << 18, dtype=np.float32).tobytes()) == []
