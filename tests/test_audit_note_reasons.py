"""Every refusal of the signed-note and checkpoint parsers (C2SP signed-note and
tlog-checkpoint) with its exact reason, and the inputs at each bound that must still
pass: a table of must-fail and must-pass notes built here, so that a parser that refuses
for the wrong reason, or at the wrong bound, fails a test (mutation-checked)."""

from __future__ import annotations

import base64

import pytest
from facelab.audit.checkpoint import (
    MAX_NOTE_BYTES,
    MAX_SIGNATURES,
    canonical_b64,
    open_note,
    parse_body,
    read_note_file,
)
from facelab.errors import NoteError

DASH = "\u2014 "
SIG = base64.b64encode(b"\x01\x02\x03\x04" + b"s" * 64).decode()  # key hash + signature
ROOT = base64.b64encode(bytes(range(32))).decode()


def _note(body: str = f"o\n5\n{ROOT}\n", sigs: tuple[str, ...] = (f"{DASH}k {SIG}",)) -> str:
    return body + "\n" + "".join(s + "\n" for s in sigs)


@pytest.mark.parametrize(
    ("note", "reason"),
    [
        (b"\xff\n\n" + f"{DASH}k {SIG}\n".encode(), "not a signed note: not well-formed UTF-8"),
        (_note("o\x01\n5\n"), "not a signed note: a control character other than newline"),
        (_note("o\x7f\n5\n"), "not a signed note: a control character other than newline"),
        (_note().replace("\n\n", "\n"), "not a signed note: no blank line before the signatures"),
        (_note(sigs=()), "not a signed note: no signature lines, or no final newline"),
        (_note()[:-1], "not a signed note: no signature lines, or no final newline"),
        (_note(sigs=(f"- k {SIG}",)), "malformed signature line (must start with '\u2014 ')"),
        (_note(sigs=(f"{DASH}k",)), "malformed signature line (key name, space, base64)"),
        (_note(sigs=(f"{DASH}k+1 {SIG}",)), "malformed signature line (key name, space, base64)"),
        (_note(sigs=(f"{DASH} {SIG}",)), "malformed signature line (key name, space, base64)"),
        (_note(sigs=(f"{DASH}k ",)), "malformed signature line (key name, space, base64)"),
        (_note(sigs=(f"{DASH}k {SIG} x",)), "signature is not standard base64"),
        (_note(sigs=(f"{DASH}k AQIDBA==",)), "signature too short"),
        (
            _note(sigs=tuple(f"{DASH}k{i} {SIG}" for i in range(MAX_SIGNATURES + 1))),
            f"note carries over {MAX_SIGNATURES} signatures",
        ),
    ],
)
def test_a_malformed_note_is_refused_for_its_reason(note, reason) -> None:
    with pytest.raises(NoteError) as e:
        open_note(note)
    assert str(e.value) == reason


def test_notes_at_each_bound_open() -> None:
    # the signature block is after the *last* blank line (a text may hold blank lines)
    n = open_note(_note("a\n\nb\n"))
    assert n.text == b"a\n\nb\n" and n.signatures == (("k", base64.b64decode(SIG)),)
    assert open_note(_note("\n")).text == b"\n"  # the blank line at the very start
    five = base64.b64encode(b"\x01\x02\x03\x04\x05").decode()  # the shortest signature
    assert open_note(_note(sigs=(f"{DASH}k {five}",))).signatures[0][1] == b"\x01\x02\x03\x04\x05"
    many = _note(sigs=tuple(f"{DASH}k{i} {SIG}" for i in range(MAX_SIGNATURES)))
    assert len(open_note(many).signatures) == MAX_SIGNATURES
    pad = MAX_NOTE_BYTES - len(_note("o\n").encode())
    exact = _note("o" + "x" * pad + "\n")
    assert len(exact.encode()) == MAX_NOTE_BYTES and open_note(exact)
    with pytest.raises(NoteError) as e:
        open_note(_note("o" + "x" * (pad + 1) + "\n"))
    assert str(e.value) == f"note is {MAX_NOTE_BYTES + 1} bytes, over the 65536-byte limit"
    # a str note is encoded as UTF-8 (surrogates passed through, then refused as UTF-8)
    with pytest.raises(NoteError, match="not well-formed UTF-8"):
        open_note(_note("o\ud800\n"))


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (f"o\n5\n{ROOT}", "checkpoint must have 3 lines (origin, size, root), has 2"),
        (f"o\n5\n{ROOT}\nextra\n", "checkpoint must have 3 lines (origin, size, root), has 4"),
        ("", "checkpoint must have 3 lines (origin, size, root), has 0"),
        (f"\n5\n{ROOT}\n", "checkpoint origin is empty or padded"),
        (f" o\n5\n{ROOT}\n", "checkpoint origin is empty or padded"),
        (f"o\n05\n{ROOT}\n", "checkpoint size is not ASCII decimal digits without a leading zero"),
        (f"o\n{2**64}\n{ROOT}\n", "checkpoint size is over 2^64 - 1"),
        ("o\n5\nAAAA\n", "checkpoint root has 3 bytes, not 32"),
        ("o\n5\nAAB=\n", "checkpoint root is not canonical base64 (padding or unused bits)"),
        ("o\n5\n!!!!\n", "checkpoint root is not standard base64"),
    ],
)
def test_a_malformed_checkpoint_is_refused_for_its_reason(body, reason) -> None:
    with pytest.raises(NoteError) as e:
        parse_body(body.encode())
    assert str(e.value) == reason


def test_checkpoints_at_each_bound_parse() -> None:
    cp = parse_body(f"o\n{2**64 - 1}\n{ROOT}\n".encode())
    assert (cp.origin, cp.size, cp.root) == ("o", 2**64 - 1, bytes(range(32)))
    assert parse_body(f"o\n0\n{ROOT}\n".encode()).size == 0


@pytest.mark.parametrize("value", ["AAAAA", "AAA", "A", "AA=A", "AAAA===", "AAAA===="])
def test_base64_of_a_length_that_cannot_be_padded_is_refused(value) -> None:
    """Not standard base64, and so named: a length the decoder refuses, or more than two
    '=' (which Python's decoder takes, then only the canonical check would refuse)."""
    with pytest.raises(NoteError) as e:
        canonical_b64(value, "x")
    assert str(e.value) == "x is not standard base64"


# ---------------------------------------------------------------- note files


def test_a_note_file_is_read_whole_up_to_the_bound_and_refused_beyond(tmp_path) -> None:
    p = tmp_path / "n.note"
    p.write_bytes(b"x" * MAX_NOTE_BYTES)
    assert read_note_file(p) == b"x" * MAX_NOTE_BYTES
    p.write_bytes(b"x" * (MAX_NOTE_BYTES + 1))
    with pytest.raises(NoteError):
        read_note_file(p)


def test_a_note_path_that_is_not_a_regular_file_is_refused(tmp_path) -> None:
    import os

    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    (tmp_path / "dir").mkdir()
    for p in (fifo, tmp_path / "dir"):
        with pytest.raises(NoteError):
            read_note_file(p)
    (tmp_path / "real").write_bytes(b"note")
    (tmp_path / "link").symlink_to(tmp_path / "real")
    with pytest.raises(NoteError, match="symbolic link"):  # a link is not followed
        read_note_file(tmp_path / "link")
