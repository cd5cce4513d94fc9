"""`facelab certificate verify|validate|keygen`: destruction certificates, offline."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from facelab.commands._common import read_text
from facelab.errors import BadInputError


def _cmd_certificate_verify(args: argparse.Namespace) -> int:
    from facelab.labdir import public_key_from_b64
    from facelab.vault import certificate

    keys = [public_key_from_b64(read_text(k), k) for k in args.key]
    out = certificate.verify_file(args.certificate, keys)
    cert = out["certificate"]
    print(
        f"{args.certificate}: performer {out['performer']} signature verifies; validator "
        f"{out['validator'] or 'NONE YET (pending validation)'}; tenant "
        f"{cert['media_information']['tenant']}, result "
        f"{cert['sanitization_details']['verification_result']}"
    )
    if args.require_validation and out["validator"] is None:
        print(f"facelab: error: {args.certificate}: not validated yet", file=sys.stderr)
        return 4
    return 0


def _cmd_certificate_validate(args: argparse.Namespace) -> int:
    import base64
    from datetime import UTC, datetime

    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from facelab.labdir import public_key_from_b64
    from facelab.vault import certificate

    try:
        raw = base64.b64decode(read_text(args.key_file, 4096).strip(), validate=True)
        key = Ed25519PrivateKey.from_private_bytes(raw)
    except (OSError, ValueError) as e:
        raise BadInputError(
            f"{args.key_file}: not a base64 Ed25519 private key "
            "(make one with `facelab certificate keygen --out NAME`)"
        ) from e
    doc = certificate.read(args.certificate)
    performer = public_key_from_b64(read_text(args.performer_key), args.performer_key)
    certificate.verify_document(doc, [performer])
    when = datetime.now(UTC).isoformat(timespec="seconds")
    for opt, v in (("--name", args.name), ("--title", args.title)):
        # printed by every later `certificate verify`: one printable line, no more
        if not v.isprintable() or not 0 < len(v) <= 80:
            raise BadInputError(f"{opt}: one printable line of at most 80 characters")
    doc = certificate.add_validation(doc, key, args.name, when, args.title)
    certificate.write(doc, Path(args.certificate))
    print(f"{args.certificate}: validated by {args.name} ({when})")
    return 0


def _cmd_certificate_keygen(args: argparse.Namespace) -> int:
    """A validator's Ed25519 key pair in the files `validate` and `verify` take."""
    import base64

    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat
    from facelab.gates.importing.keys import _write_private
    from facelab.labdir import public_key_b64

    priv = Path(f"{args.out}.key")
    pub = Path(f"{args.out}.pub")
    for p in (priv, pub):
        if p.exists() or p.is_symlink():
            raise BadInputError(f"{p}: exists; refusing to overwrite a key")
    if not priv.parent.is_dir():
        raise BadInputError(f"{priv.parent}: no such directory")
    key = Ed25519PrivateKey.generate()
    raw = key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
    _write_private(priv, base64.b64encode(raw) + b"\n")  # 0600, never over a file
    pub.write_text(public_key_b64(key.public_key()) + "\n")
    print(f"private key: {priv} (keep it secret)\npublic key:  {pub}")
    print("counter-sign a destruction certificate, then verify it with both public keys:")
    print(
        f"  facelab certificate validate CERT --key-file {priv} "
        "--performer-key LAB/keys/lab_signing.pub --name NAME"
    )
    print(
        f"  facelab certificate verify CERT --key LAB/keys/lab_signing.pub --key {pub} "
        "--require-validation"
    )
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    """Add this module's commands to the `facelab` parser."""
    ce = sub.add_parser("certificate", help="destruction certificates")
    cesub = ce.add_subparsers(dest="certificate_command", required=True)
    cev = cesub.add_parser("verify", help="verify a certificate offline with public keys")
    cev.add_argument("certificate", type=Path)
    cev.add_argument(
        "--key", type=Path, action="append", required=True, help="a public key file (repeatable)"
    )
    cev.add_argument("--require-validation", action="store_true", help="exit 4 if unvalidated")
    cev.set_defaults(func=_cmd_certificate_verify)
    cva = cesub.add_parser("validate", help="validator: check and counter-sign a certificate")
    cva.add_argument("certificate", type=Path)
    cva.add_argument("--key-file", type=Path, required=True, help="validator's private key")
    cva.add_argument("--performer-key", type=Path, required=True, help="the lab's public key")
    cva.add_argument("--name", required=True)
    cva.add_argument("--title", default="data protection officer")
    cva.set_defaults(func=_cmd_certificate_validate)
    ckg = cesub.add_parser("keygen", help="validator: make a key pair (OUT.key, OUT.pub)")
    ckg.add_argument("--out", type=Path, required=True, help="path prefix of the key files")
    ckg.set_defaults(func=_cmd_certificate_keygen)
