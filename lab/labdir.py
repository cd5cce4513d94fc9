"""A lab directory: its layout, its identity and the lab's Ed25519 signing key.

Layout::

    LAB/lab.json               format, lab id, creation time, the signing key's public half
    LAB/policy.toml            the policy in force (a copy of enclave_policy/default.toml)
    LAB/keys/lab_signing.pem   Ed25519 private key, PKCS#8, encrypted under the operator
                               passphrase (cryptography's BestAvailableEncryption)
    LAB/keys/lab_signing.pub   the public key, raw 32 bytes in base64, one line
    LAB/audit/                 the audit log (lab.audit)

The operator passphrase comes from FACELAB_PASSPHRASE when set (automation, CI),
otherwise from the terminal; it is never stored.
"""

from __future__ import annotations

import base64
import getpass
import json
import os
import secrets
import shutil
import sys
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import (
    BestAvailableEncryption,
    Encoding,
    PrivateFormat,
    PublicFormat,
    load_pem_private_key,
)

from enclave_policy import DEFAULT_POLICY, Policy, load_policy
from lab.errors import BadInputError, PassphraseError

LAB_FORMAT = "facelab-lab/1"
PASSPHRASE_ENV = "FACELAB_PASSPHRASE"


@dataclass(frozen=True)
class LabPaths:
    root: Path

    @property
    def meta(self) -> Path:
        return self.root / "lab.json"

    @property
    def policy(self) -> Path:
        return self.root / "policy.toml"

    @property
    def signing_key(self) -> Path:
        return self.root / "keys" / "lab_signing.pem"

    @property
    def public_key(self) -> Path:
        return self.root / "keys" / "lab_signing.pub"

    @property
    def audit(self) -> Path:
        return self.root / "audit"


@dataclass(frozen=True)
class Lab:
    """An opened lab: where it is, who it is, and the policy in force."""

    paths: LabPaths
    lab_id: str
    origin: str
    policy: Policy


def read_passphrase(env: Mapping[str, str] = os.environ, prompt: bool = True) -> bytes:
    """The operator passphrase from FACELAB_PASSPHRASE, else the terminal."""
    value = env.get(PASSPHRASE_ENV)
    if value is None and prompt and sys.stdin.isatty():
        value = getpass.getpass("facelab operator passphrase: ")
    if not value:
        raise PassphraseError(f"no passphrase: set {PASSPHRASE_ENV} or run on a terminal")
    return value.encode("utf-8")


def public_key_b64(key: Ed25519PublicKey) -> str:
    return base64.b64encode(key.public_bytes(Encoding.Raw, PublicFormat.Raw)).decode()


def public_key_from_b64(text: str, source: Path | str) -> Ed25519PublicKey:
    try:
        raw = base64.b64decode(text.strip(), validate=True)
        return Ed25519PublicKey.from_public_bytes(raw)
    except ValueError as e:
        raise BadInputError(f"{source}: not a base64 Ed25519 public key") from e


def init_lab(
    root: Path | str,
    passphrase: bytes,
    *,
    policy_source: Path = DEFAULT_POLICY,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> Lab:
    """Create a lab directory atomically (temporary sibling, then rename)."""
    root = Path(root)
    if root.exists() and (not root.is_dir() or any(root.iterdir())):
        raise BadInputError(f"{root}: already exists and is not an empty directory")
    parent = root.parent if str(root.parent) else Path(".")
    if not parent.is_dir():
        raise BadInputError(f"{root}: parent directory {parent} does not exist")
    policy = load_policy(policy_source)
    try:
        tmp = Path(tempfile.mkdtemp(prefix=f".{root.name}.tmp-", dir=parent))
    except OSError as e:
        raise BadInputError(f"{root}: cannot create a directory beside it ({e.strerror})") from e
    try:
        paths = LabPaths(tmp)
        (tmp / "keys").mkdir(mode=0o700)
        paths.audit.mkdir()
        key = Ed25519PrivateKey.generate()
        pem = key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8,
                                BestAvailableEncryption(passphrase))
        fd = os.open(paths.signing_key, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(pem)
        pub = public_key_b64(key.public_key())
        paths.public_key.write_text(pub + "\n")
        lab_id = "lab-" + secrets.token_hex(6)
        meta = {"format": LAB_FORMAT, "lab_id": lab_id,
                "created": clock().isoformat(timespec="seconds"), "public_key": pub}
        paths.meta.write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
        shutil.copyfile(policy.source, paths.policy)
        if root.exists():
            root.rmdir()
        os.rename(tmp, root)
    except OSError as e:
        shutil.rmtree(tmp, ignore_errors=True)
        raise BadInputError(f"{root}: cannot create lab ({e.strerror or e})") from e
    return open_lab(root)


def open_lab(root: Path | str) -> Lab:
    """Open an existing lab (no secrets needed)."""
    paths = LabPaths(Path(root))
    try:
        meta = json.loads(paths.meta.read_text(encoding="utf-8"))
    except FileNotFoundError as e:
        raise BadInputError(f"{root}: not a facelab lab (no lab.json; run facelab init)") from e
    except (OSError, ValueError) as e:
        raise BadInputError(f"{paths.meta}: unreadable ({e})") from e
    if meta.get("format") != LAB_FORMAT:
        raise BadInputError(f"{paths.meta}: unknown lab format {meta.get('format')!r}")
    policy = load_policy(paths.policy)
    return Lab(paths, meta["lab_id"], policy.audit.origin_prefix + meta["lab_id"], policy)


def load_signing_key(lab: Lab, passphrase: bytes) -> Ed25519PrivateKey:
    try:
        key = load_pem_private_key(lab.paths.signing_key.read_bytes(), passphrase)
    except FileNotFoundError as e:
        raise BadInputError(f"{lab.paths.signing_key}: missing") from e
    except (ValueError, TypeError) as e:
        raise PassphraseError(f"{lab.paths.signing_key}: wrong passphrase or damaged key") from e
    if not isinstance(key, Ed25519PrivateKey):
        raise BadInputError(f"{lab.paths.signing_key}: not an Ed25519 key")
    return key


def load_public_key(lab: Lab) -> Ed25519PublicKey:
    try:
        text = lab.paths.public_key.read_text()
    except OSError as e:
        raise BadInputError(f"{lab.paths.public_key}: unreadable ({e.strerror})") from e
    return public_key_from_b64(text, lab.paths.public_key)


def actor_name(env: Mapping[str, str] = os.environ) -> str:
    """Who is acting: FACELAB_ACTOR when set, else the operating-system user."""
    name = env.get("FACELAB_ACTOR")
    if name:
        return name
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return f"uid:{os.getuid()}"


def audit_writer(lab: Lab, passphrase: bytes, *,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC),
                 repair_actor: str | None = None):
    """Open the lab's audit log for recording (needs the lab key, hence the passphrase)."""
    from lab.audit import AuditLog, policy_digest

    return AuditLog(lab.paths.audit, lab.origin, load_signing_key(lab, passphrase),
                    checkpoint_every=lab.policy.audit.checkpoint_every,
                    policy_digest=policy_digest(lab.paths.policy), clock=clock,
                    repair_actor=repair_actor)


def init_and_record(root: Path | str, passphrase: bytes, actor: str) -> Lab:
    """``facelab init``: create the lab and record its genesis entry (lab.init, entry 0)."""
    from lab import __version__
    from lab.audit import Event

    lab = init_lab(root, passphrase)
    with audit_writer(lab, passphrase) as log:
        log.record(Event(
            action="lab.init", actor=actor, role="operator",
            object="ed25519:" + public_key_b64(load_public_key(lab)),
            details={"lab_id": lab.lab_id, "origin": lab.origin,
                     "public_key": public_key_b64(load_public_key(lab)),
                     "facelab": __version__},
        ))
    return lab
