"""The lab's key store: a root key from the operator secret, and the keys it protects.

Files (``LAB/keys/``)::

    keystore.json        {"format": "facelab-keystore/1", "kdf": "scrypt", "n", "r", "p",
                          "salt": b64, "check": b64(seal(K_check, "facelab root key check"))}
    lab_signing.sealed   seal(K_sign, Ed25519 private key (raw 32 bytes),
                          aad = "facelab/v1|lab-signing-key|<lab id>")
    lab_signing.pub      the public key (base64), for verifiers without the secret

The root key is scrypt(secret, salt) and is never stored. Subkeys are HKDF with a purpose
label: K_check = "check/v1", K_sign = "lab-signing-key/v1", K_wrap = "kek-wrap/v1",
K_pseudonym = "pseudonym/v1", K_split = "split/v1". A tenant's key-encryption key (KEK)
is random and stored only wrapped: seal(K_wrap, KEK, aad = "facelab/v1|kek|<tenant>"),
so a wrapped KEK copied to another tenant does not open.

Tenant keys live here, apart from the data store (issue 14)::

    tenants/<tenant>.kek   the wrapped KEK, the only copy; vault.db holds none

``destroy_tenant_key`` overwrites and unlinks it: from then on no copy of vault.db,
including a backup taken before the destruction, opens that tenant's records (the
passphrase-derived wrapping key survives, but there is nothing left for it to
unwrap).

The secret is the operator passphrase (FACELAB_PASSPHRASE or the terminal) or, for
automation, the bytes of a key file named by FACELAB_KEY_FILE.
"""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from facelab.errors import BadInputError, PassphraseError, VaultError
from facelab.vault import _primitives as pr

FORMAT = "facelab-keystore/1"
_CHECK = b"facelab root key check"


@dataclass(frozen=True)
class RootKey:
    """The unlocked root key; everything else derives from it."""

    _key: bytes

    def subkey(self, label: str) -> bytes:
        return pr.subkey(self._key, label)

    def wrap_kek(self, tenant: str, kek: bytes) -> bytes:
        return pr.seal(self.subkey("kek-wrap/v1"), kek, b"facelab/v1|kek|" + tenant.encode())

    def unwrap_kek(self, tenant: str, wrapped: bytes) -> bytes:
        return pr.open_(self.subkey("kek-wrap/v1"), wrapped, b"facelab/v1|kek|" + tenant.encode())

    def seal_signing_key(self, lab_id: str, raw: bytes) -> bytes:
        return pr.seal(
            self.subkey("lab-signing-key/v1"), raw, b"facelab/v1|lab-signing-key|" + lab_id.encode()
        )

    def open_signing_key(self, lab_id: str, blob: bytes) -> bytes:
        return pr.open_(
            self.subkey("lab-signing-key/v1"),
            blob,
            b"facelab/v1|lab-signing-key|" + lab_id.encode(),
        )


def create(keys_dir: Path, secret: bytes, *, n: int = pr.SCRYPT_N) -> RootKey:
    """Write a new keystore.json under ``keys_dir`` and return the root key."""
    salt = os.urandom(16)
    root = RootKey(pr.derive_root(secret, salt, n=n))
    doc = {
        "format": FORMAT,
        "kdf": "scrypt",
        "n": n,
        "r": pr.SCRYPT_R,
        "p": pr.SCRYPT_P,
        "salt": base64.b64encode(salt).decode(),
        "check": base64.b64encode(
            pr.seal(root.subkey("check/v1"), _CHECK, b"facelab/check/v1")
        ).decode(),
    }
    (keys_dir / "keystore.json").write_text(json.dumps(doc, indent=2) + "\n")
    return root


def unlock(keys_dir: Path, secret: bytes) -> RootKey:
    """Derive the root key and prove it right; a wrong secret is a clear error."""
    path = keys_dir / "keystore.json"
    from facelab.jsonfile import read_json

    try:
        try:
            doc = read_json(path, what="a key store", follow=False)
        except BadInputError as e:  # the reason, without the path read_json puts first
            raise ValueError(str(e).removeprefix(f"{path}: ")) from e
        if doc.get("format") != FORMAT or doc.get("kdf") != "scrypt":
            raise ValueError("unknown format")
        salt = base64.b64decode(doc["salt"])
        check = base64.b64decode(doc["check"])
        n, r, p = int(doc["n"]), int(doc["r"]), int(doc["p"])
        # scrypt's own bounds (RFC 7914: N a power of two above 1), and no more work than
        # a lab ever asks for: a header cannot make unlocking crash or run for hours
        if not (2 <= n <= 1 << 22 and n & (n - 1) == 0 and 1 <= r <= 32 and 1 <= p <= 16):
            raise ValueError(f"scrypt parameters out of range (n={n}, r={r}, p={p})")
    except FileNotFoundError as e:
        raise BadInputError(f"{path}: missing (not a facelab lab?)") from e
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise BadInputError(f"{path}: unreadable key store ({e})") from e
    root = RootKey(pr.derive_root(secret, salt, n=n, r=r, p=p))
    try:
        pr.open_(root.subkey("check/v1"), check, b"facelab/check/v1")
    except VaultError as e:
        raise PassphraseError(f"{path}: wrong passphrase (or key file)") from e
    return root


TENANTS = "tenants"


def tenant_key_path(keys_dir: Path, tenant: str) -> Path:
    return keys_dir / TENANTS / f"{tenant}.kek"


def _fsync_dir(d: Path) -> None:
    fd = os.open(d, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def store_tenant_key(keys_dir: Path, tenant: str, wrapped: bytes) -> Path:
    """Write a tenant's wrapped KEK durably (temporary file, fsync, rename, fsync dir)."""
    d = keys_dir / TENANTS
    d.mkdir(mode=0o700, exist_ok=True)
    target = tenant_key_path(keys_dir, tenant)
    tmp = target.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    try:
        os.write(fd, wrapped)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.rename(tmp, target)
    _fsync_dir(d)
    return target


def load_tenant_key(keys_dir: Path, tenant: str) -> bytes | None:
    """The wrapped KEK of ``tenant``, or None when the key store holds none.

    Through :func:`facelab.labfs.read_bytes`: a link, FIFO, device or directory in its
    place is a ``BadInputError`` naming the file, never a hang."""
    from facelab import labfs

    try:
        return labfs.read_bytes(tenant_key_path(keys_dir, tenant), 4096, what="a tenant key")
    except FileNotFoundError:
        return None


def destroy_tenant_key(
    keys_dir: Path, tenant: str, after_overwrite: Callable[[], None] | None = None
) -> str | None:
    """Overwrite and unlink the tenant's wrapped KEK; return the SHA-256 of what the file
    held, None if absent. Idempotent: a file already overwritten (a destroy killed
    between the overwrite and the unlink) is overwritten again and unlinked.
    ``after_overwrite`` is a test seam (crash point) between the two.

    The overwrite is best effort on flash storage (SP 800-88 Rev. 1 2.5: cryptographic
    erase relies on the key being unrecoverable; the KEK itself was never stored in
    clear, and its wrapping copy is the one deleted here).
    """
    import hashlib

    path = tenant_key_path(keys_dir, tenant)
    wrapped = load_tenant_key(keys_dir, tenant)
    if wrapped is None:
        return None
    fd = os.open(path, os.O_WRONLY | os.O_NOFOLLOW)
    try:
        os.pwrite(fd, os.urandom(len(wrapped)), 0)
        os.fsync(fd)
    finally:
        os.close(fd)
    if after_overwrite is not None:
        after_overwrite()
    path.unlink()
    _fsync_dir(path.parent)
    return hashlib.sha256(wrapped).hexdigest()
