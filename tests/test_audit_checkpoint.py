"""Checkpoints: the C2SP tlog-checkpoint body inside an Ed25519 signed note."""

from __future__ import annotations

import base64
import hashlib

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from facelab.audit import checkpoint as ck
from facelab.errors import NoteError
from hypothesis import given, settings
from hypothesis import strategies as st

KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
ORIGIN = "facelab.local/lab-test"
ROOT = hashlib.sha256(b"root").digest()


def test_format_is_origin_size_root_blank_signature() -> None:
    note = ck.sign(ck.Checkpoint(ORIGIN, 42, ROOT), KEY)
    body, sig = note.split("\n\n")
    assert body.split("\n") == [ORIGIN, "42", base64.b64encode(ROOT).decode()]
    assert sig.startswith("\u2014 " + ORIGIN + " ") and note.endswith("\n")
    blob = base64.b64decode(sig.split(" ")[2])
    raw = KEY.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    assert blob[:4] == hashlib.sha256(ORIGIN.encode() + b"\n\x01" + raw).digest()[:4]
    assert len(blob) == 4 + 64
    KEY.public_key().verify(blob[4:], (body + "\n").encode())


def test_round_trip() -> None:
    cp = ck.Checkpoint(ORIGIN, 7, ROOT)
    assert ck.verify(ck.sign(cp, KEY), KEY.public_key(), ORIGIN) == cp


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 2**63), st.binary(min_size=32, max_size=32))
def test_any_size_and_root_round_trip(size: int, root: bytes) -> None:
    cp = ck.Checkpoint(ORIGIN, size, root)
    assert ck.verify(ck.sign(cp, KEY), KEY.public_key()) == cp


@pytest.mark.parametrize(
    "mutate",
    [
        lambda n: n.replace("\n42\n", "\n43\n"),
        lambda n: n.replace(ORIGIN, ORIGIN + "x", 1),
        lambda n: n[:-10] + ("A" if n[-10] != "A" else "B") + n[-9:],
        lambda n: n.replace("\n\n", "\n"),
        lambda n: n.replace("\u2014", "-"),
        lambda n: n.rstrip("\n"),
        lambda n: n.split("\n\n")[0] + "\n\n",
        lambda n: n.replace("\n42\n", "\n042\n"),
        lambda n: n.replace("\n42\n", "\n42\nextension\n"),
    ],
)
def test_every_mutation_is_refused(mutate) -> None:
    note = ck.sign(ck.Checkpoint(ORIGIN, 42, ROOT), KEY)
    with pytest.raises(NoteError):
        ck.verify(mutate(note), KEY.public_key(), ORIGIN)


def test_another_key_or_origin_is_refused() -> None:
    note = ck.sign(ck.Checkpoint(ORIGIN, 1, ROOT), KEY)
    with pytest.raises(NoteError, match="not signed by the lab key"):
        ck.verify(note, Ed25519PrivateKey.generate().public_key())
    with pytest.raises(NoteError, match="origin"):
        ck.verify(note, KEY.public_key(), "facelab.local/other")


# ---------------------------------------------------------------- signed-note spec (issue 14)


def _note(size: int = 42) -> bytes:
    return ck.sign(ck.Checkpoint(ORIGIN, size, ROOT), KEY).encode()


def test_every_single_byte_mutation_of_a_note_is_refused_with_a_note_error() -> None:
    """Mutation table over every byte: flip a low bit, flip the high bit, replace it by
    a digit, a newline, a space, delete it, and duplicate it. Nothing else may verify,
    and nothing may raise anything but NoteError (a traceback at the CLI)."""
    note = _note()
    assert ck.verify(note, KEY.public_key(), ORIGIN).size == 42  # positive control
    probes = 0
    for i in range(len(note)):
        variants = {
            note[:i] + bytes([note[i] ^ 0x01]) + note[i + 1 :],
            note[:i] + bytes([note[i] ^ 0x80]) + note[i + 1 :],
            note[:i] + b"7" + note[i + 1 :],
            note[:i] + b"\n" + note[i + 1 :],
            note[:i] + b" " + note[i + 1 :],
            note[:i] + note[i + 1 :],
            note[:i] + note[i : i + 1] * 2 + note[i + 1 :],
        }
        variants.discard(note)
        for v in variants:
            probes += 1
            with pytest.raises(NoteError):
                ck.verify(v, KEY.public_key(), ORIGIN)
    assert probes > 6 * len(note)


@pytest.mark.parametrize(
    ("size_line", "why"),
    [
        ("\u00b2".encode(), "superscript two"),
        ("\u0664\u0662".encode(), "Arabic-Indic digits"),
        (b"9" * 5000, "5,000 digits"),
        (b"18446744073709551616", "2^64"),
        (b"+42", "a sign"),
        (b" 42", "padding"),
        (b"4_2", "an underscore"),
    ],
)
def test_a_size_that_is_not_bounded_ascii_decimal_is_refused_even_if_signed(
    size_line: bytes, why: str
) -> None:
    """Signed over the exact bytes by the right key, but not a valid checkpoint size."""
    text = ORIGIN.encode() + b"\n" + size_line + b"\n" + base64.b64encode(ROOT) + b"\n"
    sig = ck.key_id(ORIGIN, KEY.public_key()) + KEY.sign(text)
    note = text + b"\n\xe2\x80\x94 " + ORIGIN.encode() + b" " + base64.b64encode(sig) + b"\n"
    with pytest.raises(NoteError, match="size"):
        ck.verify(note, KEY.public_key(), ORIGIN)


def test_a_root_whose_last_base64_character_has_other_unused_bits_is_refused() -> None:
    b64 = base64.b64encode(ROOT)  # 32 bytes: 44 chars, one '=' and 2 unused bits
    last = b64[-2:-1]
    alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    other = bytes([alphabet[alphabet.index(last) ^ 1]])  # same 4 high bits, another low bit
    bad = b64[:-2] + other + b"="
    assert base64.b64decode(bad) == ROOT  # the lenient decoder cannot tell them apart
    text = ORIGIN.encode() + b"\n42\n" + bad + b"\n"
    sig = ck.key_id(ORIGIN, KEY.public_key()) + KEY.sign(text)
    note = text + b"\n\xe2\x80\x94 " + ORIGIN.encode() + b" " + base64.b64encode(sig) + b"\n"
    with pytest.raises(NoteError, match="canonical"):
        ck.verify(note, KEY.public_key(), ORIGIN)


def test_the_signature_is_checked_over_the_notes_own_bytes() -> None:
    """A note whose text re-renders to the signed text but differs in bytes fails:
    here a CRLF line end (the signature covers the LF form)."""
    note = _note()
    crlf = note.replace(b"\n42\n", b"\r\n42\n", 1)
    with pytest.raises(NoteError):
        ck.verify(crlf, KEY.public_key(), ORIGIN)


def test_unknown_signature_lines_are_ignored_and_bounded() -> None:
    note = _note()
    other = Ed25519PrivateKey.from_private_bytes(bytes(range(1, 33)))
    extra = ck.cosign(note, "witness.example", other, 1700000000)
    assert ck.verify(extra, KEY.public_key(), ORIGIN).size == 42
    many = note + b"".join(
        b"\xe2\x80\x94 w" + str(i).encode() + b" " + base64.b64encode(b"\0" * 68) + b"\n"
        for i in range(101)
    )
    with pytest.raises(NoteError, match="100"):
        ck.verify(many, KEY.public_key(), ORIGIN)
    with pytest.raises(NoteError, match="limit"):
        ck.verify(note + b"x" * 70_000, KEY.public_key(), ORIGIN)


def test_cosignature_v1_round_trip_and_what_it_binds() -> None:
    witness = Ed25519PrivateKey.from_private_bytes(bytes(range(2, 34)))
    cosigned = ck.cosign(_note(), "w1.example", witness, 1_700_000_000)
    assert ck.verify_cosignature(cosigned, "w1.example", witness.public_key()) == 1_700_000_000
    # independent oracle: the message per C2SP tlog-cosignature, checked with the raw key
    text = cosigned.split(b"\n\n")[0] + b"\n"
    line = next(x for x in cosigned.decode().splitlines() if x.startswith("\u2014 w1.example "))
    blob = base64.b64decode(line.split(" ")[2])
    raw = witness.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    assert blob[:4] == hashlib.sha256(b"w1.example\n\x04" + raw).digest()[:4]
    assert int.from_bytes(blob[4:12], "big") == 1_700_000_000
    witness.public_key().verify(blob[12:], b"cosignature/v1\ntime 1700000000\n" + text)
    # the lab key is not a witness key, and another checkpoint does not carry the cosignature
    with pytest.raises(NoteError):
        ck.verify_cosignature(cosigned, "w1.example", KEY.public_key())
    with pytest.raises(NoteError):
        ck.verify_cosignature(_note(43), "w1.example", witness.public_key())
    assert ck.parse_vkey(ck.vkey("w1.example", witness.public_key()))[0] == "w1.example"
    with pytest.raises(NoteError):
        ck.parse_vkey("w1.example+00000000+" + base64.b64encode(b"\x04" + raw).decode())


# ---------------------------------------------------------------- signatures and witnesses
# (issue 22: each refusal of verify, cosign, verify_cosignature and parse_vkey must be
# observable; the oracle is the raw key and the C2SP byte layout, rebuilt here)

WITNESS = Ed25519PrivateKey.from_private_bytes(bytes(range(2, 34)))
W = "w1.example"


def _raw(key) -> bytes:
    return key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


def _sig_line(name: str, blob: bytes) -> bytes:
    return "\u2014 ".encode() + name.encode() + b" " + base64.b64encode(blob) + b"\n"


def _cosig_blob(note: bytes, ts: int) -> bytes:
    """A cosignature/v1 blob built from the spec, not by ``ck.cosign``."""
    text = note.split(b"\n\n")[0] + b"\n"
    kid = hashlib.sha256(W.encode() + b"\n\x04" + _raw(WITNESS)).digest()[:4]
    msg = b"cosignature/v1\ntime " + str(ts).encode() + b"\n" + text
    return kid + ts.to_bytes(8, "big") + WITNESS.sign(msg)


def test_a_lab_signature_with_extra_or_missing_bytes_is_refused_for_its_length() -> None:
    note = _note()
    text = note.split(b"\n\n")[0] + b"\n"
    good = ck.key_id(ORIGIN, KEY.public_key()) + KEY.sign(text)
    assert ck.verify(text + b"\n" + _sig_line(ORIGIN, good), KEY.public_key()).size == 42
    for blob in (good + b"\0", good[:-1]):
        with pytest.raises(NoteError) as e:
            ck.verify(text + b"\n" + _sig_line(ORIGIN, blob), KEY.public_key())
        assert str(e.value) == "Ed25519 signature is not 64 bytes"


def test_a_cosignature_verifies_only_over_its_own_checkpoint_time_and_bytes() -> None:
    note = _note()
    blob = _cosig_blob(note, 1_700_000_000)
    assert (
        ck.verify_cosignature(note + _sig_line(W, blob), W, WITNESS.public_key()) == 1_700_000_000
    )
    forged = [
        blob[:-1] + bytes([blob[-1] ^ 1]),  # one bit of the signature
        blob[:4] + (1_700_000_001).to_bytes(8, "big") + blob[12:],  # another time
    ]
    for b in forged:
        with pytest.raises(NoteError):
            ck.verify_cosignature(note + _sig_line(W, b), W, WITNESS.public_key())
    # the same line pasted onto another checkpoint (same origin and key, size 43)
    with pytest.raises(NoteError):
        ck.verify_cosignature(_note(43) + _sig_line(W, blob), W, WITNESS.public_key())


def test_a_cosignature_is_matched_by_its_name_and_key_id_together() -> None:
    note = _note()
    blob = _cosig_blob(note, 5)
    # filed under another name, the witness's cosignature is not the witness's
    with pytest.raises(NoteError):
        ck.verify_cosignature(note + _sig_line("other.example", blob), W, WITNESS.public_key())
    # a line of the same name under another key id is skipped, not taken for it
    junk = b"\xff\xff\xff\xff" + b"\0" * 20
    both = note + _sig_line(W, junk) + _sig_line(W, blob)
    assert ck.verify_cosignature(both, W, WITNESS.public_key()) == 5


def test_a_cosignature_with_extra_bytes_is_refused_for_its_length() -> None:
    note = _note()
    blob = _cosig_blob(note, 5)
    for b in (blob + b"\0", blob[:-1]):
        with pytest.raises(NoteError) as e:
            ck.verify_cosignature(note + _sig_line(W, b), W, WITNESS.public_key())
        assert str(e.value) == "cosignature is not 76 bytes"


@pytest.mark.parametrize("name", ["", "w 1", "w+1", "w\t1"])
def test_cosign_refuses_a_witness_name_the_note_could_not_carry(name) -> None:
    with pytest.raises(NoteError):
        ck.cosign(_note(), name, WITNESS, 5)


def test_cosign_takes_exactly_the_uint64_timestamps() -> None:
    for ts in (0, 2**63, 2**64 - 1):
        cosigned = ck.cosign(_note(), W, WITNESS, ts)
        line = cosigned.split(b"\n\n")[1].splitlines()[-1]
        assert base64.b64decode(line.split(b" ")[2])[4:12] == ts.to_bytes(8, "big")
        assert ck.verify_cosignature(cosigned, W, WITNESS.public_key()) == ts
    for ts in (-1, 2**64, 2**65):
        with pytest.raises(NoteError):
            ck.cosign(_note(), W, WITNESS, ts)


def _vkey(name: str, alg: int, raw: bytes, kid_name: str | None = None) -> str:
    """A vkey built from C2SP's definition (the key id over name, alg and key)."""
    kid = hashlib.sha256((kid_name or name).encode() + b"\n" + bytes([alg]) + raw).digest()[:4]
    return f"{name}+{kid.hex()}+{base64.b64encode(bytes([alg]) + raw).decode()}"


def test_parse_vkey_takes_the_two_ed25519_kinds() -> None:
    raw = _raw(WITNESS)
    for alg in (0x01, 0x04):
        name, got_alg, pub = ck.parse_vkey(_vkey(W, alg, raw))
        assert (name, got_alg) == (W, alg) and _raw_pub(pub) == raw


def _raw_pub(pub) -> bytes:
    return pub.public_bytes(Encoding.Raw, PublicFormat.Raw)


@pytest.mark.parametrize(
    "text",
    [
        _vkey("w 1", 0x04, bytes(range(2, 34))),  # a space in the name (key id right)
        _vkey("", 0x04, bytes(range(2, 34))),  # no name
        "w1.example+" + base64.b64encode(b"\x04" + bytes(32)).decode(),  # two parts
        _vkey(W, 0x04, bytes(range(2, 34))).replace("+", "+0", 1),  # a 9-digit key id
        _vkey(W, 0x02, bytes(range(2, 34))),  # another algorithm (key id right)
        _vkey(W, 0x04, bytes(range(2, 35))),  # a 33-byte key
        _vkey(W, 0x04, bytes(range(2, 33))),  # a 31-byte key
        _vkey(W, 0x04, bytes(range(2, 34)), kid_name="w2.example"),  # key id of another
        _vkey(W, 0x04, bytes(range(2, 34)))[:-1],  # base64 cut short
    ],
)
def test_parse_vkey_refuses_each_malformed_key_with_a_note_error(text) -> None:
    with pytest.raises(NoteError):
        ck.parse_vkey(text)


def test_parse_returns_the_checkpoint_and_every_signature_line() -> None:
    note = ck.cosign(_note(), W, WITNESS, 5)
    cp, sigs = ck.parse(note)
    assert cp == ck.Checkpoint(ORIGIN, 42, ROOT)
    assert [name for name, _ in sigs] == [ORIGIN, W]
    assert sigs[1][1] == _cosig_blob(_note(), 5)
