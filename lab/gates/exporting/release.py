"""Release manifests and reviewer overrides, signed with Ed25519.

Manifest (``LAB/released/<tenant>/<release id>/manifest.json``)::

    {"manifest": {"format": "facelab-release/1", "lab": lab id, "tenant", "released",
                  "actor", "policy_sha256", "decision": "released" | "overridden",
                  "artifacts": [{"name", "kind", "bytes", "sha256"}],
                  "findings": [...], "notes": [...],
                  "reviewer": {"name", "reason", "signature"} | null},
     "signature": base64 Ed25519 over the canonical JSON of "manifest" (lab key),
     "public_key": base64 of the lab's public key}

An override is the reviewer's signature over the canonical JSON of
``{"format": "facelab-override/1", "tenant", "artifacts": [sha256...], "reason"}``: it
binds the reviewer to exactly these bytes and this reason, and is checked against the
policy's ``[export.reviewers]`` before anything is released.
"""

from __future__ import annotations

import base64
import json

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from facelab.audit.events import canonical
from facelab.errors import BadInputError

FORMAT = "facelab-release/1"


def override_statement(tenant: str, digests: list[str], reason: str) -> bytes:
    return canonical(
        {
            "format": "facelab-override/1",
            "tenant": tenant,
            "artifacts": sorted(digests),
            "reason": reason,
        }
    )


def sign_override(key: Ed25519PrivateKey, tenant: str, digests: list[str], reason: str) -> str:
    return base64.b64encode(key.sign(override_statement(tenant, digests, reason))).decode()


def check_override(
    reviewers: dict[str, str],
    name: str,
    signature: str,
    tenant: str,
    digests: list[str],
    reason: str,
) -> None:
    """BadInputError unless ``name`` is a policy reviewer whose key signed this."""
    from facelab.labdir import public_key_from_b64

    if not reason.strip():
        raise BadInputError("override: a reason is required")
    if name not in reviewers:
        raise BadInputError(f"override: {name!r} is not a reviewer in [export.reviewers]")
    pub = public_key_from_b64(reviewers[name], f"export.reviewers.{name}")
    try:
        pub.verify(base64.b64decode(signature), override_statement(tenant, digests, reason))
    except (InvalidSignature, ValueError) as e:
        raise BadInputError(
            f"override: the signature of {name!r} does not verify "
            "(wrong key, or other artifacts or reason)"
        ) from e


def sign_manifest(manifest: dict, key: Ed25519PrivateKey) -> dict:
    from facelab.labdir import public_key_b64

    return {
        "manifest": manifest,
        "signature": base64.b64encode(key.sign(canonical(manifest))).decode(),
        "public_key": public_key_b64(key.public_key()),
    }


def verify_manifest(doc: dict, pub) -> dict:
    try:
        pub.verify(base64.b64decode(doc["signature"]), canonical(doc["manifest"]))
    except (KeyError, TypeError, ValueError, InvalidSignature) as e:
        raise BadInputError("release manifest: signature does not verify") from e
    if doc["manifest"].get("format") != FORMAT:
        raise BadInputError("release manifest: unknown format")
    return doc["manifest"]


def dumps(doc: dict) -> str:
    return json.dumps(doc, indent=2, sort_keys=True) + "\n"
