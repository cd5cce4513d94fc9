"""Destruction certificates: NIST SP 800-88 Rev. 1 Appendix G fields, two signing roles.

File ``LAB/certificates/destroy-<tenant>-<UTC time>.json``::

    {"certificate": {...the fields below...},
     "signatures": [
        {"role": "performer", "name", "date", "public_key": b64, "signature": b64},
        {"role": "validator", "name", "date", "public_key": b64, "signature": b64}]}

The performer (the operator, through the lab's key, at destroy time) signs the
canonical JSON of ``{"certificate": ..., "signer": its own block without the
signature}``. The validator is a person with a key of their own, never the lab's:
``facelab certificate validate`` signs the canonical JSON of ``{"certificate": ...,
"performer_signature": ..., "signer": its own block without the signature}`` after
checking the performer's signature. Every field of the document is under a signature:
a signer's name, title or date edited does not verify (red team 14e, c14).
``verify_document`` needs only public keys (``facelab certificate verify
CERT --key PUB``, offline).

Fields (Appendix G, for logical data in a lab): person performing the sanitization
(name, title, organization, location, contact); media information (media type, source,
classification, the tenant, counts, dataset digests, the data categories derived from
the datasets' actual manifest columns, data backed up and where); sanitization details
(method type "Purge", method "cryptographic erase" plus deletion, method details, tool
and version, verification method and result, post-sanitization classification); every
place the tenant's data could be and what was done there; media destination; person
validating (name, title, organization, date, signature).
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from facelab import labfs
from facelab.audit.events import canonical
from facelab.errors import BadInputError, TamperedError
from facelab.jsonfile import strict_loads

TITLE = "Certificate of Sanitization (NIST SP 800-88 Rev. 1, Appendix G)"
MAX_BYTES = 1 << 20

# manifest column -> data category (DESIGN.md's dataset format, plus synth's extras)
_CATEGORIES = {
    "path": "face images",
    "name": "names",
    "passport_no": "passport numbers",
    "nationality": "nationality",
    "sex": "sex",
    "birth_year": "birth years",
    "birth_date": "birth dates",
    "subject_id": "subject identifiers",
    "capture_id": "capture identifiers",
    "kind": "capture kind (enrolment or live)",
    "capture_year": "capture years",
    "yaw": "head pose",
    "pitch": "head pose",
    "roll": "head pose",
    "glasses": "accessories (glasses, mask)",
    "mask": "accessories (glasses, mask)",
}


def data_categories(columns: list[str]) -> list[str]:
    """The data categories of a dataset with these manifest columns (sorted, unique)."""
    out = set()
    for c in columns:
        if c.startswith("lm") and c[-2:] in ("_x", "_y"):
            out.add("facial landmarks")
        else:
            out.add(_CATEGORIES.get(c, f"other column: {c}"))
    return sorted(out)


def build(
    *,
    certificate_id: str,
    lab_id: str,
    tenant: str,
    performer: str,
    when: str,
    inventory: dict,
    places: list[dict],
    verification: dict,
    tool: str,
    location: str,
) -> dict:
    """The certificate body (unsigned)."""
    return {
        "title": TITLE,
        "certificate_id": certificate_id,
        "performer": {
            "name": performer,
            "title": "lab operator",
            "organization": lab_id,
            "location": location,
            "contact": performer,
            "date": when,
        },
        "media_information": {
            "media_type": "logical: encrypted records, the tenant key, tenant workspaces, "
            "outbox and released files in one lab directory",
            "source": f"tenant {tenant}",
            "tenant": tenant,
            "classification": "confidential: personal data incl. biometric data "
            "(GDPR art. 9), pseudonymised",
            "records": inventory["records"],
            "subjects": inventory["subjects"],
            "datasets": inventory["datasets"],
            "manifest_columns": inventory["columns"],
            "data_categories": data_categories(inventory["columns"]),
            "data_backed_up": "no backup made by the lab; a copy of vault.db made by anyone "
            "does not open after this destruction (the tenant key lived only in the key store)",
        },
        "sanitization_details": {
            "method_type": "Purge",
            "method_used": "cryptographic erase + deletion",
            "method_details": (
                "the tenant key-encryption key existed only wrapped, in the key store apart "
                "from the database; that file was overwritten and unlinked first; then every "
                "record was deleted with SQLite secure_delete on, the database rebuilt "
                "(VACUUM) and its write-ahead log truncated; every other place listed below "
                "was removed without following links or opening special files"
            ),
            "tool_used": tool,
            "verification_method": verification["method"],
            "verification_result": verification["result"],
            "verification_details": verification["details"],
            "post_sanitization_classification": "unclassified (no tenant data remains)",
        },
        "places": places,
        "media_destination": "none: data destroyed in place; the lab directory is reused",
    }


def _b64(b: bytes) -> str:
    return base64.b64encode(b).decode()


def _pub_b64(key: Ed25519PublicKey) -> str:
    from facelab.labdir import public_key_b64

    return public_key_b64(key)


def _signer(block: dict) -> dict:
    """A signature block without its signature: what the signature covers of it."""
    return {k: v for k, v in block.items() if k != "signature"}


def _performer_message(cert: dict, block: dict) -> bytes:
    return canonical({"certificate": cert, "signer": _signer(block)})


def sign_performer(cert: dict, key: Ed25519PrivateKey, name: str, when: str) -> dict:
    """The document with the performer's signature over the certificate and over its
    own block (role, name, date, key): no field of the document is outside a signature
    (red team 14e, c14: the signers' names and dates could be edited)."""
    block = {"role": "performer", "name": name, "date": when}
    block["public_key"] = _pub_b64(key.public_key())
    block["signature"] = _b64(key.sign(_performer_message(cert, block)))
    return {"certificate": cert, "signatures": [block]}


def _validator_message(doc: dict, block: dict | None = None) -> bytes:
    """What the validator signs: the certificate, the performer's signature it vouches
    for, and the validator's own block (name, title, date, key)."""
    perf = doc["signatures"][0]
    if block is None:
        sigs = doc["signatures"]
        block = sigs[1] if len(sigs) > 1 else {}
    return canonical(
        {
            "certificate": doc["certificate"],
            "performer_signature": perf["signature"],
            "signer": _signer(block),
        }
    )


def add_validation(
    doc: dict, key: Ed25519PrivateKey, name: str, when: str, title: str = "validator"
) -> dict:
    """Add the validator's signature; the validator's key must not be the performer's."""
    perf = doc["signatures"][0]
    if perf["public_key"] == _pub_b64(key.public_key()):
        raise BadInputError("the validator's key is the performer's: roles must be distinct")
    sig = {
        "role": "validator",
        "name": name,
        "title": title,
        "date": when,
        "public_key": _pub_b64(key.public_key()),
    }
    sig["signature"] = _b64(key.sign(_validator_message(doc, sig)))
    return {**doc, "signatures": [perf, sig]}


def verify_document(doc: dict, keys: list[Ed25519PublicKey]) -> dict:
    """Check a certificate with public keys only; return a summary.

    The performer's signature must verify under one of ``keys``; a validator's signature,
    when present, too, under a different key. Raises ``TamperedError`` when a signature
    does not verify or the document's shape is wrong.
    """
    trusted = {_pub_b64(k): k for k in keys}
    try:
        cert = doc["certificate"]
        sigs = doc["signatures"]
        perf = sigs[0]
        if perf["role"] != "performer":
            raise KeyError("role")
        out = {"performer": perf["name"], "validator": None, "certificate": cert}
        key = trusted.get(perf["public_key"])
        if key is None:
            raise TamperedError("the performer's key is not one of the keys given")
        if not isinstance(perf, dict) or set(doc) != {"certificate", "signatures"}:
            raise TypeError("fields outside the certificate and its signatures")
        if not 1 <= len(sigs) <= 2:
            raise TypeError("one performer's and at most one validator's signature")
        key.verify(
            base64.b64decode(perf["signature"], validate=True), _performer_message(cert, perf)
        )
        if len(sigs) > 1:
            val = sigs[1]
            if val["role"] != "validator" or val["public_key"] == perf["public_key"]:
                raise TamperedError("the validator must be a second role with its own key")
            vkey = trusted.get(val["public_key"])
            if vkey is None:
                raise TamperedError("the validator's key is not one of the keys given")
            vkey.verify(
                base64.b64decode(val["signature"], validate=True), _validator_message(doc, val)
            )
            out["validator"] = val["name"]
    except InvalidSignature as e:
        raise TamperedError("destruction certificate: a signature does not verify") from e
    except (KeyError, IndexError, TypeError, ValueError) as e:
        raise TamperedError(f"destruction certificate: malformed ({e.__class__.__name__})") from e
    return out


def read(path: Path | str) -> dict:
    path = Path(path)
    try:
        data = labfs.read_bytes(path, MAX_BYTES, what="a certificate")
    except FileNotFoundError as e:
        raise BadInputError(f"{path}: unreadable ({e.strerror})") from e
    try:
        doc = strict_loads(data)
    except (ValueError, UnicodeDecodeError, RecursionError) as e:
        raise BadInputError(f"{path}: not a certificate (not RFC 8259 JSON: {str(e)[:80]})") from e
    if not isinstance(doc, dict):
        raise BadInputError(f"{path}: not a certificate document")
    return doc


def verify_file(path: Path | str, keys: list[Ed25519PublicKey]) -> dict:
    try:
        return verify_document(read(path), keys)
    except TamperedError as e:
        raise TamperedError(f"{path}: {e}") from e


def check_dir(directory: Path) -> None:
    """The lab's certificates directory is a real directory (or absent): a link there
    would send a certificate, and the lab's signature, anywhere.

    Raises ``TamperedError`` for a link or a non-directory in its place."""
    try:
        st = os.lstat(directory)
    except FileNotFoundError:
        return
    import stat

    if stat.S_ISLNK(st.st_mode):
        raise TamperedError(f"{directory}: a link where the certificates directory must be")
    if not stat.S_ISDIR(st.st_mode):
        raise TamperedError(f"{directory}: not a directory, where the certificates must be")


def write(doc: dict, path: Path) -> Path:
    """Write ``doc`` to ``path`` atomically, never through a link: the directory is
    opened with ``O_NOFOLLOW`` and the file created in it (``dir_fd``) with ``O_EXCL``.

    Raises ``TamperedError`` when the directory is a link (:func:`check_dir`)."""
    check_dir(path.parent)
    path.parent.mkdir(mode=0o755, exist_ok=True)
    dfd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    tmp = path.name + ".tmp"
    try:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp, dir_fd=dfd)  # a copy a killed writer left
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644, dir_fd=dfd)
        with os.fdopen(fd, "w") as f:
            f.write(json.dumps(doc, indent=2, sort_keys=True) + "\n")
            f.flush()
            os.fsync(f.fileno())
        os.rename(tmp, path.name, src_dir_fd=dfd, dst_dir_fd=dfd)
        os.fsync(dfd)
    finally:
        os.close(dfd)
    return path


def recorded_digest(path: Path) -> str:
    """``sha256:`` of a certificate file as destroy wrote it (the performer's signature
    only: a validator's counter-signature is added later, offline), as the log's
    ``vault.destroy`` entry records it in ``object``; "" for a file that is not one."""
    import hashlib

    try:
        doc = read(path)
        doc = {**doc, "signatures": doc["signatures"][:1]}
        text = json.dumps(doc, indent=2, sort_keys=True) + "\n"
    except (BadInputError, KeyError, TypeError, RecursionError):
        return ""
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


def unrecorded(directory: Path, entries: list[dict], keys: list[Ed25519PublicKey]) -> list[str]:
    """Certificates in ``directory`` that verify under ``keys`` (the lab's own) but that
    the log does not record: a ``vault.destroy`` outcome naming the file with its digest
    (:func:`recorded_digest`). Such a certificate attests a destruction the log lacks:
    the log was rolled back past it. A destroy whose intent has no outcome yet (a killed
    run the next writer finishes) is not counted. Returns "NAME: why" lines."""
    recorded = {
        str((e.get("details") or {}).get("certificate")): e.get("object")
        for e in entries
        if e.get("action") == "vault.destroy" and e.get("decision") in ("destroyed", "failed")
    }
    finished = {
        (e.get("details") or {}).get("intent")
        for e in entries
        if e.get("action") == "vault.destroy"
    }
    open_intents = {
        e.get("tenant")
        for e in entries
        if e.get("action") == "vault.destroy.intent" and e.get("seq") not in finished
    }
    out = []
    try:
        names = sorted(os.listdir(directory))
    except OSError:
        return out
    for name in names:
        p = Path(directory) / name
        if not name.endswith(".json") or not p.is_file() or p.is_symlink():
            continue
        try:
            cert = verify_document(read(p), keys)["certificate"]
        except (BadInputError, TamperedError):
            continue  # not this lab's certificate: nothing it attests
        if name in recorded:
            if recorded[name] != recorded_digest(p):
                out.append(f"{name}: not the certificate the log recorded for it")
            continue
        tenant = (cert.get("media_information") or {}).get("tenant")
        if tenant in open_intents:
            continue
        out.append(f"{name}: a lab-signed certificate of a destruction the log does not record")
    return out
