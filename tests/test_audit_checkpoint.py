"""Checkpoints: the C2SP tlog-checkpoint body inside an Ed25519 signed note."""

from __future__ import annotations

import base64
import hashlib

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from hypothesis import given, settings
from hypothesis import strategies as st

from lab.audit import checkpoint as ck
from lab.errors import NoteError

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
