"""A witness (C2SP tlog-witness, run locally): a second party with its own Ed25519 key.

The witness keeps, per log origin, the log's public key (pinned at first contact) and
the last checkpoint it cosigned, in its own directory (``WDIR``, never inside the lab)::

    WDIR/witness.json     {"name", "vkey"}             who the witness is
    WDIR/witness.key      base64 of the raw Ed25519 private key (0600)
    WDIR/logs/<id>.json   {"origin", "log_key", "note"} the last cosigned checkpoint

``cosign`` reads the lab's latest signed checkpoint (its head), checks the log's
signature with the pinned key, asks the lab's hash store for an RFC 9162 consistency
proof from the witness's last cosigned size, verifies it, and only then cosigns
(``cosignature/v1``) and stores the result both in WDIR and in
``LAB/audit/witness/<name>.note`` where ``facelab audit verify`` finds it. A checkpoint
smaller than the last cosigned one (a rollback), another root at the same size (a split
view) or a proof that does not verify is ``TamperedError`` and nothing is cosigned.
The witness key is never the lab key: ``init`` refuses a directory inside a lab.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat
from facelab.audit import _head, rfc9162
from facelab.audit import checkpoint as ckpt
from facelab.errors import BadInputError, NoteError, ProofError, TamperedError


@dataclass(frozen=True)
class Cosigned:
    name: str
    old_size: int
    new_size: int
    note: bytes
    path: Path


def _atomic_write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")  # one writer's own
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.rename(tmp, path)


def check_name(name: object, where: str = "witness name") -> str:
    """``name`` if it is a witness name facelab accepts, else ``BadInputError``: a C2SP
    key name (1-64 printable characters, no space, no '+'). Names may hold '/' (as
    ``example.com/w1`` does): the file that keeps the cosignature is named by
    :func:`note_file_name`, never by the name itself."""
    if (
        not isinstance(name, str)
        or not 1 <= len(name) <= 64
        or "+" in name
        or any(c.isspace() or not c.isprintable() for c in name)
    ):
        raise BadInputError(f"{where} {name!r}: 1-64 printable characters, no space or '+'")
    if any(part in ("", ".", "..") for part in name.split("/")):
        # a name shaped like a path that climbs (x/../y, /abs, a//b): no witness needs
        # one, and the file name would not be its only defence
        raise BadInputError(f"{where} {name!r}: no empty, '.' or '..' part between slashes")
    return name


def note_file_name(name: str) -> str:
    """The file in ``LAB/audit/witness/`` that keeps witness ``name``'s cosignature: the
    name with every character outside A-Z a-z 0-9 . _ - percent-encoded (UTF-8), and a
    leading dot too, so one name is one file inside that folder whatever it holds (red
    team 14h, case 01: ``x/../../escaped`` wrote the cosignature outside the lab).
    Injective: '%' is encoded."""
    out = "".join(
        c
        if c.isascii() and (c.isalnum() or c in "._-")
        else "".join(f"%{b:02X}" for b in c.encode())
        for c in name
    )
    if out.startswith("."):
        out = "%2E" + out[1:]
    return out + ".note"


def init(wdir: Path | str, name: str) -> str:
    """Create a witness in ``wdir`` (new or empty) and return its vkey."""
    wdir = Path(wdir)
    # the path as given and as resolved: a WDIR that is (or goes through) a link into a
    # lab is inside that lab all the same (red team 14h)
    for top in {wdir.absolute(), wdir.resolve()}:
        for d in (top, *top.parents):
            if (d / "lab.json").exists():
                raise BadInputError(f"{wdir}: inside the lab {d}; a witness lives outside any lab")
    if wdir.exists() and any(wdir.iterdir()):
        raise BadInputError(f"{wdir}: already exists and is not empty")
    check_name(name)
    wdir.mkdir(parents=True, exist_ok=True, mode=0o700)
    key = Ed25519PrivateKey.generate()
    raw = key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
    _atomic_write(wdir / "witness.key", base64.b64encode(raw) + b"\n")
    vk = ckpt.vkey(name, key.public_key())
    _atomic_write(wdir / "witness.json", json.dumps({"name": name, "vkey": vk}).encode())
    return vk


def load(wdir: Path | str) -> tuple[str, Ed25519PrivateKey]:
    wdir = Path(wdir)
    try:
        from facelab.jsonfile import read_json

        meta = read_json(wdir / "witness.json", what="a witness's metadata")
        if not isinstance(meta.get("name"), str):
            raise ValueError("no witness name")
        from facelab.jsonfile import read_regular

        key_text = read_regular(wdir / "witness.key", max_bytes=4096, what="a witness key")
        raw = base64.b64decode(key_text.strip(), validate=True)
        return meta["name"], Ed25519PrivateKey.from_private_bytes(raw)
    except FileNotFoundError as e:
        raise BadInputError(f"{wdir}: not a witness (facelab witness init)") from e
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise BadInputError(f"{wdir}: unreadable witness files ({e})") from e


def cosign(
    wdir: Path | str,
    lab,
    *,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    wait: float = 60.0,
) -> Cosigned:
    """Check the lab's latest checkpoint against this witness's last one and cosign it,
    holding the witness's lock (``WDIR/lock``, ``flock(2)``) throughout: two cosigns at
    once would both start from the same state and the slower could write back a smaller
    size or lose the other's temporary file (red team 14h, case 23). Waits at most
    ``wait`` seconds for another cosign, then ``BusyError`` (exit 75), nothing changed."""
    from facelab.audit.log import flock_within

    wdir = Path(wdir)
    if not (wdir / "witness.json").exists():
        load(wdir)  # the usual error for a directory that holds no witness
    lock = wdir / "lock"
    fd = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        flock_within(fd, wait, lock, "the witness's lock")
        return _cosign_locked(wdir, lab, clock)
    finally:
        os.close(fd)  # releases the lock


def _cosign_locked(wdir: Path, lab, clock: Callable[[], datetime]) -> Cosigned:
    from facelab.audit.proofs import prove_consistency
    from facelab.labdir import load_public_key, public_key_b64, public_key_from_b64

    wdir = Path(wdir)
    name, key = load(wdir)
    check_name(name, f"{wdir / 'witness.json'}: name")
    state_path = wdir / "logs" / (hashlib.sha256(lab.origin.encode()).hexdigest()[:24] + ".json")
    state = None
    if state_path.exists():
        from facelab.jsonfile import read_json

        state = read_json(state_path, what="a witness state")
        if not all(isinstance(state.get(k), str) for k in ("log_key", "note")):
            raise BadInputError(f"{state_path}: unreadable witness state (log_key, note)")
    if state is not None:
        log_key = public_key_from_b64(state["log_key"], state_path)
        if public_key_b64(load_public_key(lab)) != state["log_key"]:
            raise TamperedError(
                f"{lab.paths.public_key}: not the log key this witness pinned; not cosigning"
            )
        old = ckpt.verify(state["note"].encode(), log_key, lab.origin)
    else:
        log_key = load_public_key(lab)  # trust on first use, pinned from now on
        old = ckpt.Checkpoint(lab.origin, 0, rfc9162.EMPTY_ROOT)
    hs = _head.read(lab.paths.keys, log_key, lab.origin)
    if hs.head is None:
        raise TamperedError(f"{lab.paths.keys}: no signed checkpoint to cosign")
    note, new = hs.head.note, hs.head.checkpoint
    if new.size < old.size:
        raise TamperedError(
            f"the lab's checkpoint is at size {new.size}, below the size {old.size} this "
            "witness cosigned: the log was rolled back; not cosigning"
        )
    try:
        proof = prove_consistency(lab.paths.audit, old.size, new.size) if new.size else []
        rfc9162.verify_consistency(old.size, new.size, old.root, new.root, proof)
    except (ProofError, BadInputError, OSError) as e:
        raise TamperedError(
            f"the lab's checkpoint at size {new.size} is not consistent with the one this "
            f"witness cosigned at size {old.size} ({e}); not cosigning"
        ) from e
    try:
        cosigned = ckpt.cosign(note, name, key, int(clock().timestamp()))
    except NoteError as e:
        raise TamperedError(f"the lab's checkpoint: {e}") from e
    _atomic_write(
        state_path,
        json.dumps(
            {"origin": lab.origin, "log_key": public_key_b64(log_key), "note": note.decode()}
        ).encode(),
    )
    out = lab.paths.audit / "witness" / note_file_name(name)
    _atomic_write(out, cosigned)
    return Cosigned(name, old.size, new.size, cosigned, out)
