"""Key pairs for the import gate: tenants sign with ECDSA P-256 (what model-signing's
local-key mode supports), officers approve with Ed25519 (like the lab's own key)."""

from __future__ import annotations

import os
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from facelab.errors import BadInputError


def _write_private(path: Path, pem: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(pem)


def write_keypair(kind: str, prefix: Path | str) -> tuple[Path, Path, str]:
    """Write PREFIX.key and PREFIX.pub; return them and the line for the policy."""
    from facelab.labdir import public_key_b64

    prefix = Path(prefix)
    priv, pub = prefix.with_suffix(".key"), prefix.with_suffix(".pub")
    if priv.exists() or pub.exists():
        raise BadInputError(f"{priv}: already exists")
    enc = serialization.Encoding.PEM
    if kind == "tenant":
        k = ec.generate_private_key(ec.SECP256R1())
        pub_pem = (
            k.public_key()
            .public_bytes(enc, serialization.PublicFormat.SubjectPublicKeyInfo)
            .decode()
        )
        line = f'<tenant> = """\n{pub_pem}"""  # under [import.tenant_keys]'
        pub_text = pub_pem
    else:
        k = Ed25519PrivateKey.generate()
        pub_text = public_key_b64(k.public_key()) + "\n"
        table = "[export.reviewers]" if kind == "reviewer" else "[import.officers]"
        line = f'<{kind}> = "{pub_text.strip()}"  # under {table}'
    _write_private(
        priv, k.private_bytes(enc, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    pub.write_text(pub_text)
    return priv, pub, line


def load_officer_key(path: Path | str, role: str = "an officer") -> Ed25519PrivateKey:
    try:
        k = serialization.load_pem_private_key(Path(path).read_bytes(), None)
    except (OSError, ValueError, TypeError) as e:
        raise BadInputError(f"{path}: not a readable unencrypted PEM private key") from e
    if not isinstance(k, Ed25519PrivateKey):
        raise BadInputError(f"{path}: {role} key must be Ed25519")
    return k
