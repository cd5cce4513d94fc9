"""Checkpoints (C2SP tlog-checkpoint) inside signed notes (C2SP signed-note), and
witness cosignatures (C2SP tlog-cosignature, ``cosignature/v1``).

Format::

    <origin>\\n                       the log's identity, e.g. "facelab.local/lab-3f2a9c"
    <tree size, ASCII decimal>\\n
    <root hash, standard base64>\\n
    \\n                               a blank line ends the signed text
    \\u2014 <key name> <base64(key id || signature)>\\n     one line per signature

Parsing follows the signed-note spec (and Go's ``golang.org/x/mod/sumdb/note.Open``):
the note is well-formed UTF-8 with no control character but newline, the signature
block follows the *last* blank line, each signature line is ``"\\u2014 " name " "
base64`` with a key name that has no space or ``+``, at most 100 signatures. Every
signature is checked over the note's **own bytes** (the text up to and including the
newline before the blank line), never over a re-rendered text. The checkpoint body is
strict: exactly three lines (no extension lines), a size of 1 to 20 ASCII digits with
no leading zero and below 2^64, a root that is canonical standard base64 of exactly 32
bytes (``b64encode(b64decode(s)) == s``, so no other unused bits or padding).

Signature kinds (the algorithm byte is part of the key id, the first 4 bytes of
SHA-256(key name || 0x0A || alg || 32-byte public key)):

* ``0x01`` Ed25519: the log's signature; the key name is the origin; blob = key id ||
  64-byte signature over the text.
* ``0x04`` cosignature/v1 (a witness): blob = key id || 8-byte big-endian timestamp
  (seconds) || 64-byte Ed25519 signature over
  ``"cosignature/v1\\ntime <timestamp>\\n" || text``.

A verifier key is written as a C2SP *vkey*: ``<name>+<key id hex>+<base64(alg ||
public key)>``.

Every malformed note raises ``NoteError`` (exit 4 at the CLI), never anything else.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from facelab.errors import NoteError

_DASH = "\u2014"
_SIG_PREFIX = _DASH.encode() + b" "
ED25519 = 0x01
COSIGNATURE_V1 = 0x04
MAX_NOTE_BYTES = 64 * 1024  # a checkpoint note is under 1 KiB; this bounds the parser
MAX_SIGNATURES = 100  # as Go's note.Open
MAX_SIZE = 2**64 - 1  # sizes are uint64 in the tlog specs
_SIZE_RE = re.compile(rb"(?:0|[1-9][0-9]{0,19})")
_B64_RE = re.compile(rb"[A-Za-z0-9+/]*={0,2}")


@dataclass(frozen=True)
class Checkpoint:
    """A log state: its origin, size and root hash."""

    origin: str
    size: int
    root: bytes

    def body(self) -> bytes:
        """The signed text of the note."""
        return f"{self.origin}\n{self.size}\n{base64.b64encode(self.root).decode()}\n".encode()


@dataclass(frozen=True)
class Note:
    """A parsed signed note: its exact text bytes and its (key name, blob) lines."""

    text: bytes
    signatures: tuple[tuple[str, bytes], ...]


def _raw(public_key: Ed25519PublicKey) -> bytes:
    return public_key.public_bytes(Encoding.Raw, PublicFormat.Raw)


def key_id(name: str, public_key: Ed25519PublicKey, alg: int = ED25519) -> bytes:
    """The 4-byte key id of ``public_key`` under ``name`` for algorithm ``alg``."""
    return hashlib.sha256(name.encode() + b"\n" + bytes([alg]) + _raw(public_key)).digest()[:4]


def canonical_b64(value: bytes | str, what: str) -> bytes:
    """Decode standard base64 that is in canonical form (the only encoding of its bytes)."""
    s = value.encode("ascii", "replace") if isinstance(value, str) else value
    if not _B64_RE.fullmatch(s):
        raise NoteError(f"{what} is not standard base64")
    try:
        raw = base64.b64decode(s, validate=True)
    except (binascii.Error, ValueError) as e:
        raise NoteError(f"{what} is not standard base64") from e
    if base64.b64encode(raw) != s:
        raise NoteError(f"{what} is not canonical base64 (padding or unused bits)")
    return raw


def read_note_file(path) -> bytes:
    """A note file's bytes, bounded and without following a link
    (:func:`facelab.labfs.read_bytes`): a link, FIFO, device or directory, or a file
    over the limit, is ``NoteError``; a missing file ``FileNotFoundError``."""
    from facelab import labfs

    return labfs.read_bytes(path, MAX_NOTE_BYTES, what="a note", error=NoteError)


def _valid_name(name: str) -> bool:
    return bool(name) and "+" not in name and not any(c.isspace() for c in name)


def open_note(data: bytes | str) -> Note:
    """Split a signed note into its exact text and signature lines (no verification)."""
    msg = data.encode("utf-8", "surrogatepass") if isinstance(data, str) else bytes(data)
    if len(msg) > MAX_NOTE_BYTES:
        raise NoteError(f"note is {len(msg)} bytes, over the {MAX_NOTE_BYTES}-byte limit")
    try:
        text_str = msg.decode("utf-8")
    except UnicodeDecodeError as e:
        raise NoteError("not a signed note: not well-formed UTF-8") from e
    if any(ord(c) < 0x20 and c != "\n" for c in text_str) or "\x7f" in text_str:
        raise NoteError("not a signed note: a control character other than newline")
    split = msg.rfind(b"\n\n")
    if split < 0:
        raise NoteError("not a signed note: no blank line before the signatures")
    text, sigs = msg[: split + 1], msg[split + 2 :]
    if not sigs or not sigs.endswith(b"\n"):
        raise NoteError("not a signed note: no signature lines, or no final newline")
    out = []
    for line in sigs[:-1].split(b"\n"):
        if not line.startswith(_SIG_PREFIX):
            raise NoteError("malformed signature line (must start with '\u2014 ')")
        rest = line[len(_SIG_PREFIX) :].decode("utf-8")
        name, sep, b64 = rest.partition(" ")
        if not sep or not _valid_name(name) or not b64:
            raise NoteError("malformed signature line (key name, space, base64)")
        blob = canonical_b64(b64, "signature")
        if len(blob) < 5:
            raise NoteError("signature too short")
        out.append((name, blob))
        if len(out) > MAX_SIGNATURES:
            raise NoteError(f"note carries over {MAX_SIGNATURES} signatures")
    return Note(text, tuple(out))


def parse_body(text: bytes) -> Checkpoint:
    """The checkpoint in a note's text (strict: origin, size, root; nothing else)."""
    lines = text.split(b"\n")
    if lines[-1] != b"" or len(lines) != 4:
        raise NoteError(
            f"checkpoint must have 3 lines (origin, size, root), has {max(len(lines) - 1, 0)}"
        )
    origin_b, size_b, root_b = lines[:3]
    origin = origin_b.decode("utf-8")
    if not origin or origin.strip() != origin:
        raise NoteError("checkpoint origin is empty or padded")
    if not _SIZE_RE.fullmatch(size_b):
        raise NoteError("checkpoint size is not ASCII decimal digits without a leading zero")
    size = int(size_b.decode("ascii"))
    if size > MAX_SIZE:
        raise NoteError("checkpoint size is over 2^64 - 1")
    root = canonical_b64(root_b, "checkpoint root")
    if len(root) != 32:
        raise NoteError(f"checkpoint root has {len(root)} bytes, not 32")
    return Checkpoint(origin, size, root)


def parse(note: str | bytes) -> tuple[Checkpoint, list[tuple[str, bytes]]]:
    """Split a note into its checkpoint and its (key name, key id || signature) lines."""
    n = open_note(note)
    return parse_body(n.text), list(n.signatures)


def sign(cp: Checkpoint, key: Ed25519PrivateKey) -> str:
    """The signed note of ``cp``, signed by ``key`` under the key name ``cp.origin``."""
    body = cp.body()
    parse_body(body)  # never sign what we would not accept
    sig = key_id(cp.origin, key.public_key()) + key.sign(body)
    return body.decode() + "\n" + f"{_DASH} {cp.origin} {base64.b64encode(sig).decode()}\n"


def verify(
    note: str | bytes, public_key: Ed25519PublicKey, origin: str | None = None
) -> Checkpoint:
    """Return the checkpoint if ``public_key`` signed the note's bytes (as its origin).

    Raises ``NoteError`` for a malformed note, another origin, or no valid signature.
    """
    n = open_note(note)
    cp = parse_body(n.text)
    if origin is not None and cp.origin != origin:
        raise NoteError(f"checkpoint is for origin {cp.origin!r}, expected {origin!r}")
    kid = key_id(cp.origin, public_key)
    for name, blob in n.signatures:
        if name == cp.origin and blob[:4] == kid:
            if len(blob) != 68:
                raise NoteError("Ed25519 signature is not 64 bytes")
            try:
                public_key.verify(blob[4:], n.text)
            except InvalidSignature as e:
                raise NoteError("checkpoint signature does not verify") from e
            return cp
    raise NoteError("checkpoint is not signed by the lab key (no matching key id)")


# ------------------------------------------------------------------ witnesses


def _cosigned_message(text: bytes, timestamp: int) -> bytes:
    return b"cosignature/v1\ntime " + str(timestamp).encode() + b"\n" + text


def cosign(note: str | bytes, name: str, key: Ed25519PrivateKey, timestamp: int) -> bytes:
    """``note`` with a cosignature/v1 line of witness ``name`` added (the note is
    parsed first; call only after checking the log's signature and consistency)."""
    if not _valid_name(name):
        raise NoteError(f"witness name {name!r} has a space or '+'")
    if not 0 <= timestamp < 2**64:
        raise NoteError("cosignature timestamp out of range")
    n = open_note(note)
    parse_body(n.text)
    blob = (
        key_id(name, key.public_key(), COSIGNATURE_V1)
        + timestamp.to_bytes(8, "big")
        + key.sign(_cosigned_message(n.text, timestamp))
    )
    lines = [
        f"{_DASH} {nm} {base64.b64encode(b).decode()}\n" for nm, b in n.signatures if nm != name
    ]
    lines.append(f"{_DASH} {name} {base64.b64encode(blob).decode()}\n")
    return n.text + b"\n" + "".join(lines).encode()


def verify_cosignature(note: str | bytes, name: str, public_key: Ed25519PublicKey) -> int:
    """The timestamp of witness ``name``'s valid cosignature on ``note``; else NoteError."""
    n = open_note(note)
    parse_body(n.text)
    kid = key_id(name, public_key, COSIGNATURE_V1)
    for nm, blob in n.signatures:
        if nm == name and blob[:4] == kid:
            if len(blob) != 4 + 8 + 64:
                raise NoteError("cosignature is not 76 bytes")
            ts = int.from_bytes(blob[4:12], "big")
            try:
                public_key.verify(blob[12:], _cosigned_message(n.text, ts))
            except InvalidSignature as e:
                raise NoteError(f"cosignature of {name} does not verify") from e
            return ts
    raise NoteError(f"checkpoint carries no cosignature of witness {name}")


def vkey(name: str, public_key: Ed25519PublicKey, alg: int = COSIGNATURE_V1) -> str:
    """The C2SP verifier-key string ``name+hexid+base64(alg || key)``."""
    kid = key_id(name, public_key, alg).hex()
    return f"{name}+{kid}+{base64.b64encode(bytes([alg]) + _raw(public_key)).decode()}"


def parse_vkey(text: str) -> tuple[str, int, Ed25519PublicKey]:
    """(name, algorithm byte, public key) of a vkey string; NoteError if malformed."""
    parts = text.strip().split("+", 2)
    if len(parts) != 3 or not _valid_name(parts[0]) or not re.fullmatch(r"[0-9a-f]{8}", parts[1]):
        raise NoteError("not a verifier key (name+keyid+base64)")
    raw = canonical_b64(parts[2], "verifier key")
    if len(raw) != 33 or raw[0] not in (ED25519, COSIGNATURE_V1):
        raise NoteError("verifier key is not an Ed25519 or cosignature/v1 key")
    pub = Ed25519PublicKey.from_public_bytes(raw[1:])
    if key_id(parts[0], pub, raw[0]).hex() != parts[1]:
        raise NoteError("verifier key id does not match its key")
    return parts[0], raw[0], pub
