"""Package signatures: the tenant's model-signing bundle and the officers' approvals.

The tenant signs with the OpenSSF ``model-signing`` library (1.1, offline, local ECDSA
P-256 key): ``signatures/tenant.sig`` is a Sigstore bundle whose DSSE envelope carries an
in-toto statement with one SHA-256 digest per file of the package (``signatures/`` itself
is excluded, and the exclusion is part of what is signed).

Import officers stand in for the documented lab's in-person visit. Each counter-signs
the same statement with Ed25519::

    signatures/approvals/<officer>.json
    {"format": "facelab-import-approval/v1", "officer": "<name>",
     "statement_sha256": "<hex SHA-256 of the DSSE payload>",
     "signature": "<b64 Ed25519 over the canonical JSON of the three fields above>"}

So an approval binds exactly the file digests the tenant signed: a file changed after
signing breaks the tenant signature, and a new signature breaks every approval.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
import tempfile
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from facelab.audit.events import canonical
from facelab.errors import BadInputError
from facelab.jsonfile import strict_loads

SIG_DIR = "signatures"
TENANT_SIG = f"{SIG_DIR}/tenant.sig"
APPROVALS = f"{SIG_DIR}/approvals"
APPROVAL_FORMAT = "facelab-import-approval/v1"
_APPROVAL_FILE = re.compile(r"signatures/approvals/[A-Za-z0-9][A-Za-z0-9_-]{0,63}\.json")
MAX_SIGNATURE_BYTES = 1 << 20  # a model-signing bundle is a few KiB; an approval < 1 KiB


def is_signature_file(rel: str) -> bool:
    """``signatures/`` may hold the tenant's bundle and officers' approvals, nothing
    else: the tenant signature does not cover it (issue 15 failure 4)."""
    return rel == TENANT_SIG or bool(_APPROVAL_FILE.fullmatch(rel))


def read_json(path: Path, max_bytes: int = MAX_SIGNATURE_BYTES):
    """A small JSON document of tenant bytes, parsed only when it is at most
    ``max_bytes`` and nests at most 64 deep.

    Raises
    ------
    ValueError
        Too large, too deep, not UTF-8 or not JSON.
    """
    from facelab.gates.importing.filetype import json_depth_ok

    with open(path, "rb") as f:
        data = f.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise ValueError(f"{path.name}: larger than {max_bytes} bytes")
    if not json_depth_ok(data, 64):
        raise ValueError(f"{path.name}: JSON nested deeper than 64")
    try:
        return strict_loads(data.decode("utf-8"))
    except (UnicodeDecodeError, RecursionError) as e:
        raise ValueError(f"{path.name}: not UTF-8 JSON") from e
    except ValueError as e:
        raise ValueError(f"{path.name}: {e}") from e


def _hashing_config():
    import model_signing

    return model_signing.hashing.Config().set_ignored_paths(paths=[SIG_DIR], ignore_git_paths=False)


def sign_package(package: Path | str, private_key_pem: Path | str) -> Path:
    """Tenant: sign every file of ``package`` with an ECDSA P-256 key (model-signing)."""
    import model_signing
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from facelab.gates.importing.packaging import check_model_dir

    package = Path(package)
    check_model_dir(package)
    try:
        key = serialization.load_pem_private_key(Path(private_key_pem).read_bytes(), None)
    except (OSError, ValueError, TypeError) as e:
        raise BadInputError(
            f"{private_key_pem}: cannot sign with this key (not a readable unencrypted PEM "
            "private key)"
        ) from e
    if not (isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.name == "secp256r1"):
        raise BadInputError(
            f"{private_key_pem}: the wrong kind of key: a tenant signs with ECDSA P-256 "
            "(`facelab model keygen --kind tenant`); this one is "
            f"{type(key).__name__.removeprefix('_').replace('PrivateKey', '')}"
        )
    out = package / TENANT_SIG
    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        (
            model_signing.signing.Config()
            .set_hashing_config(_hashing_config())
            .use_elliptic_key_signer(private_key=Path(private_key_pem))
            .sign(package, out)
        )
    except (ValueError, OSError) as e:
        raise BadInputError(f"{private_key_pem}: cannot sign with this key ({e})") from e
    return out


def statement_digest(sig_path: Path) -> str:
    """SHA-256 of the signed in-toto statement (the manifest of file digests)."""
    try:
        bundle = read_json(sig_path)
        payload = base64.b64decode(bundle["dsseEnvelope"]["payload"])
    except (OSError, ValueError, KeyError, TypeError, binascii.Error) as e:
        raise BadInputError(f"{sig_path}: not a model-signing bundle ({e})") from e
    return hashlib.sha256(payload).hexdigest()


def signed_statement(sig_path: Path) -> dict:
    """The in-toto statement inside the tenant's bundle (not verified by itself)."""
    bundle = read_json(sig_path)
    payload = base64.b64decode(bundle["dsseEnvelope"]["payload"])
    if len(payload) > MAX_SIGNATURE_BYTES or not _depth_ok(payload):
        raise ValueError("the signed statement is too large or too deep")
    return strict_loads(payload.decode("utf-8"))


def _depth_ok(data: bytes) -> bool:
    from facelab.gates.importing.filetype import json_depth_ok

    return json_depth_ok(data, 64)


def unsigned_files(package: Path, files: list[str]) -> list[str]:
    """Package files the verified statement does not cover. model-signing verifies
    every file except the paths the *signer* chose to ignore, so a statement that
    ignores model.onnx would verify with model.onnx swapped: only signatures/ may be
    left out, and every other file must be a signed resource."""
    st = signed_statement(package / TENANT_SIG)
    pred = st.get("predicate", {})
    problems = []
    ser = pred.get("serialization", {})
    ignored = ser.get("ignore_paths", [])
    if not isinstance(ignored, list) or SIG_DIR not in ignored:
        problems.append(f"the signature ignores {ignored!r}; it must leave out {SIG_DIR!r}")
    else:
        # a path the package does not hold covers nothing (model-signing's own defaults
        # leave out .git, .github, .gitignore and .gitattributes); one it holds is a file
        # nobody signed
        held = [
            str(p)
            for p in ignored
            if p != SIG_DIR and any(f == p or f.startswith(f"{str(p).rstrip('/')}/") for f in files)
        ]
        if held:
            problems.append(
                f"the signature leaves out {held!r}, which the package holds; only "
                f"{SIG_DIR!r} may be left out"
            )
    if ser.get("allow_symlinks", False):
        problems.append("the signature allows symbolic links")
    listed = [r.get("name") for r in pred.get("resources", [])]
    twice = sorted({str(n) for n in listed if listed.count(n) > 1})
    if twice:
        # verifiers that keep the first entry and those that keep the last disagree
        problems.append(f"the signed statement lists {', '.join(twice[:5])} more than once")
    names = set(listed)
    for f in files:
        if not f.startswith(SIG_DIR + "/") and f not in names:
            problems.append(f"{f}: not covered by the tenant's signature")
    return problems


def verify_tenant(
    package: Path, public_key_pem: str, digests: dict[str, str] | None = None
) -> None:
    """Raise ValueError unless the tenant's bundle verifies and every file matches it.

    With ``digests`` ({relative path: SHA-256 hex} of every file, taken by the gate
    while it copied or read back the package), the files are not hashed again:
    model-signing checks the bundle's signature and returns the signed manifest
    (method ``files``, ``sha256``: one plain SHA-256 per file), and the manifest must
    name exactly the package's files outside ``signatures/`` with these digests.
    Without it, model-signing hashes the files itself.
    """
    from model_signing._signing import sign_ec_key, sign_sigstore_pb

    read_json(package / TENANT_SIG)  # bounded and shallow before anyone parses it
    with tempfile.NamedTemporaryFile("w", suffix=".pem") as f:
        f.write(public_key_pem)
        f.flush()
        if digests is None:
            import model_signing

            (
                model_signing.verifying.Config()
                .set_hashing_config(_hashing_config())
                .use_elliptic_key_verifier(public_key=Path(f.name))
                .verify(package, package / TENANT_SIG)
            )
            return
        verifier = sign_ec_key.Verifier(Path(f.name))
        expected = verifier.verify(sign_sigstore_pb.Signature.read(package / TENANT_SIG))
    ser = expected.serialization_type
    if ser.get("method") != "files" or ser.get("hash_type") != "sha256":
        raise ValueError(
            f"Signature uses {ser.get('method')}/{ser.get('hash_type')}, not files/sha256"
        )
    descriptors = list(expected.resource_descriptors())
    want = {rd.identifier: rd.digest for rd in descriptors}
    if len(want) != len(descriptors):
        raise ValueError("Signature lists a file more than once")
    have = {r: d for r, d in digests.items() if r.split("/", 1)[0] != SIG_DIR}
    odd = sorted(set(want) ^ set(have))
    if odd:
        raise ValueError(
            f"Signature mismatch: files {', '.join(odd[:5])} signed or present, not both"
        )
    for rel, d in sorted(want.items()):
        if d.algorithm != "sha256" or d.digest_hex != have[rel]:
            raise ValueError(f"Signature mismatch: {rel} differs from what was signed")


def _body(officer: str, digest: str) -> dict:
    return {"format": APPROVAL_FORMAT, "officer": officer, "statement_sha256": digest}


def approve(package: Path | str, officer: str, key: Ed25519PrivateKey) -> Path:
    """Officer: counter-sign the tenant's signed statement."""
    from facelab.gates.importing.packaging import check_model_dir

    package = Path(package)
    check_model_dir(package)
    sig = package / TENANT_SIG
    if not sig.exists():
        raise BadInputError(f"{package}: not signed by the tenant yet (no {TENANT_SIG})")
    if not officer.replace("-", "").replace("_", "").isalnum():
        raise BadInputError(f"officer name {officer!r} must be alphanumeric")
    body = _body(officer, statement_digest(sig))
    doc = {**body, "signature": base64.b64encode(key.sign(canonical(body))).decode()}
    out = package / APPROVALS / f"{officer}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=2) + "\n")
    return out


APPROVAL_FIELDS = ("format", "officer", "statement_sha256", "signature")


def approval_document(officer: str, digest: str, signature_b64: str) -> bytes:
    """The bytes of an approval as the gate stores it: the four known fields, written
    again from their parsed values (never the tenant-delivered bytes)."""
    doc = {**_body(officer, digest), "signature": signature_b64}
    return (json.dumps(doc, indent=2) + "\n").encode()


def check_approval(doc: dict, officers: dict[str, Ed25519PublicKey], digest: str) -> str:
    """Return the officer's name if the approval is valid, else raise ValueError.
    Only the four fields of :data:`APPROVAL_FIELDS` may be present (an approval file
    is outside the tenant signature: an extra field would be unsigned bytes)."""
    if not isinstance(doc, dict) or doc.get("format") != APPROVAL_FORMAT:
        raise ValueError("not a facelab approval")
    extra = sorted(set(doc) - set(APPROVAL_FIELDS))
    if extra:
        raise ValueError(
            f"unknown field(s) {', '.join(repr(k[:40]) for k in extra[:5])} in an approval "
            "(only format, officer, statement_sha256, signature)"
        )
    officer = doc.get("officer")
    if officer not in officers:
        raise ValueError(f"approver {officer!r} is not an import officer in the policy")
    if doc.get("statement_sha256") != digest:
        raise ValueError(f"approval by {officer} is for another signed manifest")
    try:
        sig = base64.b64decode(doc["signature"], validate=True)
        if base64.b64encode(sig).decode() != doc["signature"]:
            raise ValueError("non-canonical base64")
        officers[officer].verify(sig, canonical(_body(officer, digest)))
    except (KeyError, TypeError, ValueError, InvalidSignature) as e:
        raise ValueError(f"approval by {officer}: signature does not verify") from e
    return officer
