"""Offline verification with public material only: no passphrase, no lab directory.

Each function takes the lab's Ed25519 public key (``LAB/keys/lab_signing.pub``, given to
the checker out of band) and the document; none reads anything of a lab. What each
checks, and the definition it follows:

* :func:`verify_release_dir`: a release's ``manifest.json`` (``facelab-release/1``,
  Ed25519 over the canonical JSON of ``manifest``) and that every listed file is there
  with the listed SHA-256, and no file is there that the manifest does not list.
* :func:`verify_checkpoint`: a C2SP signed note (checkpoint) under the lab key.
* :func:`verify_certificate`: a destruction certificate (NIST SP 800-88 Rev. 1 App. G),
  performer signature under the lab key (and a validator's under a key given).
* :func:`verify_proof`: the JSON of ``facelab audit prove`` (RFC 9162 2.1.3.2).

Every failure is a ``TamperedError`` (exit 4) naming the file and the reason; a file
that cannot be read at all is a ``BadInputError`` (exit 2).
"""

from __future__ import annotations

import hashlib
import os
import stat
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from facelab import labfs
from facelab.errors import BadInputError, NoteError, ProofError, TamperedError
from facelab.jsonfile import strict_loads

MAX_DOC_BYTES = 16 << 20


@dataclass(frozen=True)
class ReleaseCheck:
    """A verified release: its manifest and the files it lists (path -> SHA-256)."""

    tenant: str
    released: str
    decision: str
    files: dict[str, str]
    manifest: dict


def read_bytes(path: Path, limit: int = MAX_DOC_BYTES) -> bytes:
    """A regular file's bytes, never through a link, at most ``limit`` bytes
    (:func:`facelab.labfs.read_bytes`; ``BadInputError`` otherwise)."""
    return labfs.read_bytes(path, limit, what="a file of this document")


def read_json(path: Path) -> object:
    try:
        return strict_loads(read_bytes(path))
    except (ValueError, UnicodeDecodeError) as e:
        raise TamperedError(f"{path}: not JSON") from e


def _files_under(root: Path) -> dict[str, Path]:
    """Every entry under ``root`` by relative POSIX path; a link or a special file is
    tampering (a release holds regular files only)."""
    out: dict[str, Path] = {}
    for dirpath, dirs, names in os.walk(root, followlinks=False):
        d = Path(dirpath)
        for n in dirs:
            if (d / n).is_symlink():
                raise TamperedError(f"{d / n}: a link inside {root}")
        for n in names:
            p = d / n
            st = os.lstat(p)
            if not stat.S_ISREG(st.st_mode):
                raise TamperedError(f"{p}: not a regular file")
            out[p.relative_to(root).as_posix()] = p
    return out


def verify_release_dir(release_dir: Path | str, key: Ed25519PublicKey) -> ReleaseCheck:
    """Check a release directory with the lab's public key only.

    The manifest's signature must verify under ``key`` (the ``public_key`` the manifest
    carries is ignored: it is the signer's claim), every listed file must have its SHA-256
    and size, and every file present must be listed.

    Raises
    ------
    TamperedError
        A signature, digest, size or listing that does not match (exit 4).
    """
    from facelab.gates.exporting.release import verify_manifest

    d = Path(release_dir)
    doc = read_json(d / "manifest.json")
    try:
        m = verify_manifest(doc if isinstance(doc, dict) else {}, key)
    except BadInputError as e:
        raise TamperedError(f"{d / 'manifest.json'}: {e}") from e
    listed: dict[str, str] = {}
    for a in m.get("artifacts", []):
        rel = str(a.get("path", a.get("name", "")))
        p = d / rel
        if rel in ("", "manifest.json") or ".." in Path(rel).parts or Path(rel).is_absolute():
            raise TamperedError(f"{d}: manifest lists an impossible path {rel!r}")
        data = read_bytes(p, 1 << 34) if p.is_file() and not p.is_symlink() else None
        if data is None:
            raise TamperedError(f"{p}: listed in the signed manifest but missing")
        if hashlib.sha256(data).hexdigest() != a.get("sha256") or len(data) != a.get("bytes"):
            raise TamperedError(f"{p}: differs from the signed manifest (SHA-256 or size)")
        listed[rel] = a["sha256"]
    extra = sorted(set(_files_under(d)) - set(listed) - {"manifest.json"})
    if extra:
        raise TamperedError(f"{d / extra[0]}: not listed in the signed manifest")
    return ReleaseCheck(m["tenant"], m["released"], m["decision"], listed, m)


def verify_checkpoint(note: bytes, key: Ed25519PublicKey, origin: str | None = None):
    """A C2SP checkpoint signed by the lab key; returns the ``Checkpoint``."""
    from facelab.audit import checkpoint as ckpt

    try:
        return ckpt.verify(note, key, origin)
    except NoteError as e:
        raise TamperedError(f"checkpoint: {e}") from e


def verify_certificate(
    path: Path | str, key: Ed25519PublicKey, others: list[Ed25519PublicKey] = ()
) -> dict:
    """A destruction certificate; the performer must be the lab key itself.

    A validator's counter-signature is checked under ``others`` when its key is among
    them; otherwise under the key it names, which proves the signature is whole but
    not who holds that key (``validator_key`` in the result says which key it was).
    """
    from facelab.labdir import public_key_b64, public_key_from_b64
    from facelab.vault import certificate

    doc = certificate.read(path)
    keys = [key, *others]
    sigs = doc.get("signatures")
    vkey = None
    if isinstance(sigs, list) and len(sigs) > 1 and isinstance(sigs[1], dict):
        vkey = str(sigs[1].get("public_key", ""))
        if vkey not in {public_key_b64(k) for k in keys}:
            try:
                keys.append(public_key_from_b64(vkey, f"{path}: validator key"))
            except BadInputError as e:
                raise TamperedError(str(e)) from e
    out = certificate.verify_file(path, keys)
    if not isinstance(sigs, list) or sigs[0].get("public_key") != public_key_b64(key):
        raise TamperedError(f"{path}: the performer's signature is not the lab key's")
    return {**out, "validator_key": vkey}


def verify_proof(doc: object, key: Ed25519PublicKey, where: str = "proof") -> dict:
    """An inclusion proof document (``facelab audit prove``) under the lab key."""
    from facelab.audit.proofs import verify_inclusion_document

    try:
        return verify_inclusion_document(doc, key)
    except (ProofError, NoteError) as e:
        raise TamperedError(f"{where}: {e}") from e
