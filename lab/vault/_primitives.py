"""The only module that does symmetric cryptography (cryptography's hazmat layer):
the vault's recipes are built on these few functions.

    derive_root(secret, salt)     scrypt (n=2^15, r=8, p=1) -> 32-byte root key
    subkey(key, label)            HKDF-SHA256, a purpose label per subkey
    seal(key, plaintext, aad)     AES-256-GCM, fresh random 96-bit nonce; nonce || ct || tag
    open_(key, blob, aad)         the inverse; any failure -> VaultError (opaque)
    mac(key, data)                HMAC-SHA256 (pseudonyms, split assignment, lookups)
"""

from __future__ import annotations

import hmac
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt
from facelab.errors import VaultError

NONCE = 12
KEY = 32
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**15, 8, 1


def derive_root(
    secret: bytes, salt: bytes, n: int = SCRYPT_N, r: int = SCRYPT_R, p: int = SCRYPT_P
) -> bytes:
    return Scrypt(salt=salt, length=KEY, n=n, r=r, p=p).derive(secret)


def subkey(key: bytes, label: str) -> bytes:
    return HKDF(
        algorithm=hashes.SHA256(), length=KEY, salt=None, info=b"facelab/" + label.encode()
    ).derive(key)


def random_key() -> bytes:
    return os.urandom(KEY)


def seal(key: bytes, plaintext: bytes, aad: bytes) -> bytes:
    nonce = os.urandom(NONCE)
    return nonce + AESGCM(key).encrypt(nonce, plaintext, aad)


def open_(key: bytes, blob: bytes, aad: bytes) -> bytes:
    if len(blob) < NONCE + 16:
        raise VaultError("cannot open")
    try:
        return AESGCM(key).decrypt(blob[:NONCE], blob[NONCE:], aad)
    except InvalidTag as e:
        raise VaultError("cannot open") from e


def mac(key: bytes, data: bytes) -> bytes:
    return hmac.new(key, data, "sha256").digest()
