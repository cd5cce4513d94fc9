"""Checkpoints in the C2SP tlog-checkpoint format, as Ed25519 signed notes (C2SP signed-note).

Format::

    <origin>\\n                       the log's identity, e.g. "facelab.local/lab-3f2a9c"
    <tree size, decimal>\\n
    <root hash, standard base64>\\n
    \\n                               a blank line ends the signed text
    \\u2014 <key name> <base64(key id || signature)>\\n     one line per signature

The signature is Ed25519 over the text above the blank line (every line with its
newline). The key id is the first 4 bytes of SHA-256(key name || 0x0A || 0x01 ||
32-byte public key); 0x01 is the signed-note algorithm byte of Ed25519. The key name
is the origin. Parsing is strict: no extension lines, canonical decimal, a 32-byte root.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from lab.errors import NoteError

_DASH = "\u2014"
_ED25519 = b"\x01"


@dataclass(frozen=True)
class Checkpoint:
    """A log state: its origin, size and root hash."""

    origin: str
    size: int
    root: bytes

    def body(self) -> bytes:
        """The signed text of the note."""
        return f"{self.origin}\n{self.size}\n{base64.b64encode(self.root).decode()}\n".encode()


def key_id(name: str, public_key: Ed25519PublicKey) -> bytes:
    raw = public_key.public_bytes(Encoding.Raw, PublicFormat.Raw)
    return hashlib.sha256(name.encode() + b"\n" + _ED25519 + raw).digest()[:4]


def sign(cp: Checkpoint, key: Ed25519PrivateKey) -> str:
    """The signed note of ``cp``, signed by ``key`` under the key name ``cp.origin``."""
    body = cp.body()
    sig = key_id(cp.origin, key.public_key()) + key.sign(body)
    return body.decode() + "\n" + f"{_DASH} {cp.origin} {base64.b64encode(sig).decode()}\n"


def parse(note: str | bytes) -> tuple[Checkpoint, list[tuple[str, bytes]]]:
    """Split a note into its checkpoint and its (key name, key id || signature) lines."""
    try:
        text = note.decode("utf-8") if isinstance(note, bytes) else note
    except UnicodeDecodeError as e:
        raise NoteError("not a signed note: not UTF-8 text") from e
    if "\n\n" not in text or not text.endswith("\n"):
        raise NoteError("not a signed note: no blank line before the signatures")
    body, sigs = text.split("\n\n", 1)
    lines = body.split("\n")
    if len(lines) != 3:
        raise NoteError(f"checkpoint must have 3 lines (origin, size, root), has {len(lines)}")
    origin, size_s, root_s = lines
    if not origin or origin.strip() != origin:
        raise NoteError("checkpoint origin is empty or padded")
    if not size_s.isdigit() or (size_s != "0" and size_s.startswith("0")):
        raise NoteError(f"checkpoint size {size_s!r} is not a canonical decimal")
    try:
        root = base64.b64decode(root_s, validate=True)
    except binascii.Error as e:
        raise NoteError("checkpoint root is not base64") from e
    if len(root) != 32:
        raise NoteError(f"checkpoint root has {len(root)} bytes, not 32")
    signatures = []
    for line in sigs.rstrip("\n").split("\n"):
        parts = line.split(" ")
        if len(parts) != 3 or parts[0] != _DASH:
            raise NoteError(f"malformed signature line {line!r}")
        try:
            blob = base64.b64decode(parts[2], validate=True)
        except binascii.Error as e:
            raise NoteError("signature is not base64") from e
        if len(blob) < 5:
            raise NoteError("signature too short")
        signatures.append((parts[1], blob))
    if not signatures:
        raise NoteError("note carries no signature")
    return Checkpoint(origin, int(size_s), root), signatures


def verify(
    note: str | bytes, public_key: Ed25519PublicKey, origin: str | None = None
) -> Checkpoint:
    """Return the checkpoint if ``public_key`` signed it (as its origin), else raise NoteError."""
    cp, signatures = parse(note)
    if origin is not None and cp.origin != origin:
        raise NoteError(f"checkpoint is for origin {cp.origin!r}, expected {origin!r}")
    kid = key_id(cp.origin, public_key)
    for name, blob in signatures:
        if name == cp.origin and blob[:4] == kid:
            try:
                public_key.verify(blob[4:], cp.body())
            except InvalidSignature as e:
                raise NoteError("checkpoint signature does not verify") from e
            return cp
    raise NoteError("checkpoint is not signed by the lab key (no matching key id)")
