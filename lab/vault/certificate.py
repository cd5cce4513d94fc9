"""Destruction certificates: NIST SP 800-88 Rev. 1 Appendix G fields, signed by the lab.

File ``LAB/certificates/destroy-<tenant>-<UTC time>.json``::

    {"certificate": {...fields below...}, "signature": b64(Ed25519 over the canonical JSON
     of "certificate"), "public_key": b64(lab public key)}

Fields, as far as they apply to logical data in a lab (the Appendix G form is written for
physical media): person performing the sanitization; media information (what was
sanitised: the tenant's records and key in the lab's vault, counts, dataset digests,
data categories); sanitization details (method type "Purge", technique "cryptographic
erase" plus deletion, the tool and its version, verification method and result); the
media's destination; the person validating (the lab, by its signature) and the date.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from lab.audit.events import canonical
from lab.errors import BadInputError


def build(
    *,
    lab_id: str,
    tenant: str,
    actor: str,
    when: str,
    vault_path: str,
    destroyed: dict,
    verification: dict,
    tool: str,
) -> dict:
    return {
        "title": "Certificate of Sanitization (NIST SP 800-88 Rev. 1, Appendix G)",
        "person_performing_sanitization": {
            "name": actor,
            "title": "lab operator",
            "organization": lab_id,
        },
        "media_information": {
            "media_type": "logical: encrypted records and the tenant key-encryption key",
            "location": vault_path,
            "tenant": tenant,
            "records": destroyed["records"],
            "subjects": destroyed["subjects"],
            "datasets": destroyed["datasets"],
            "data_categories": [
                "face images (synthetic)",
                "names",
                "passport numbers",
                "nationality",
                "sex",
                "birth year",
                "landmarks",
            ],
            "data_backed_up": "no (the lab keeps no backups of tenant data)",
        },
        "sanitization_details": {
            "method_type": "Purge",
            "method_used": "cryptographic erase + deletion",
            "method_details": (
                "the tenant KEK existed only wrapped under the lab root key; its wrapped "
                "copy and every record were deleted in one transaction with SQLite "
                "secure_delete on, the database was rebuilt (VACUUM) and its write-ahead "
                "log truncated before and after; without the KEK no data key opens"
            ),
            "wrapped_kek_sha256": destroyed["wrapped_kek_sha256"],
            "tool_used": tool,
            "verification_method": verification["method"],
            "verification_result": verification["result"],
            "verification_details": verification["details"],
        },
        "media_destination": "none: data destroyed in place; the vault file is reused",
        "validation": {"validated_by": f"{lab_id} (Ed25519 lab key)", "date": when},
    }


def sign(cert: dict, key: Ed25519PrivateKey) -> dict:
    from lab.labdir import public_key_b64

    return {
        "certificate": cert,
        "signature": base64.b64encode(key.sign(canonical(cert))).decode(),
        "public_key": public_key_b64(key.public_key()),
    }


def verify(doc: dict, key: Ed25519PublicKey) -> dict:
    """Return the certificate if ``key`` signed it; else BadInputError."""
    try:
        key.verify(base64.b64decode(doc["signature"]), canonical(doc["certificate"]))
    except (KeyError, TypeError, ValueError, InvalidSignature) as e:
        raise BadInputError("destruction certificate: signature does not verify") from e
    return doc["certificate"]


def write(doc: dict, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n")
    return path
