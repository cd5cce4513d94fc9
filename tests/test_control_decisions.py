"""Fast tests of the control modules' decision functions, each against an oracle the code
does not share: published vectors (RFC 4231 HMAC, RFC 7914 scrypt), a second
implementation (hashlib's scrypt, an HKDF written here from RFC 5869), or the bytes on
disk. They are what `make mutation` leans on: every branch of a decision is driven both
ways (a "must pass" and a "must fail" case).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from facelab.errors import BadInputError, PassphraseError, VaultError
from facelab.gates.exporting._types import Finding
from facelab.gates.exporting.gate import ExportReport
from facelab.gates.importing import signing
from facelab.vault import _primitives as pr
from facelab.vault import keystore


# ---------------------------------------------------------------- primitives
def _hkdf_sha256(ikm: bytes, info: bytes, length: int = 32) -> bytes:
    """RFC 5869 with no salt (a string of HashLen zeros), written out here."""
    prk = hmac.new(b"\0" * 32, ikm, "sha256").digest()
    out, t, i = b"", b"", 1
    while len(out) < length:
        t = hmac.new(prk, t + info + bytes([i]), "sha256").digest()
        out += t
        i += 1
    return out[:length]


def test_mac_is_hmac_sha256_by_rfc_4231() -> None:
    # RFC 4231 section 4.3, test case 2
    assert (
        pr.mac(b"Jefe", b"what do ya want for nothing?").hex()
        == "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
    )


def test_subkeys_are_hkdf_sha256_with_a_facelab_label() -> None:
    key = bytes(range(32))
    for label in ("kek-wrap/v1", "pseudonym/v1", "split/v1"):
        assert pr.subkey(key, label) == _hkdf_sha256(key, b"facelab/" + label.encode())
    assert pr.subkey(key, "a") != pr.subkey(key, "b")


def test_the_root_key_is_scrypt_by_rfc_7914() -> None:
    # RFC 7914 section 12, second vector (N=1024, r=8, p=16), first 32 bytes
    got = pr.derive_root(b"password", b"NaCl", n=1024, r=8, p=16)
    assert got.hex() == ("fdbabe1c9d3472007856e7190d01e9fe7c6ad7cbc8237830e77376634b373162")
    # and the defaults are the documented ones, checked against hashlib's scrypt
    want = hashlib.scrypt(b"pw", salt=b"s" * 16, n=2**15, r=8, p=1, maxmem=64 << 20, dklen=32)
    assert pr.derive_root(b"pw", b"s" * 16) == want


def test_seal_is_aes_256_gcm_nonce_first_and_open_inverts_it() -> None:
    key = bytes(range(32))
    blob = pr.seal(key, b"plaintext", b"aad")
    assert len(blob) == 12 + 9 + 16
    assert AESGCM(key).decrypt(blob[:12], blob[12:], b"aad") == b"plaintext"
    assert pr.open_(key, blob, b"aad") == b"plaintext"
    assert len(pr.random_key()) == 32 and pr.random_key() != pr.random_key()


def test_open_refuses_anything_else_with_one_opaque_error() -> None:
    key = bytes(range(32))
    blob = pr.seal(key, b"plaintext", b"aad")
    empty = pr.seal(key, b"", b"aad")  # the shortest valid blob: nonce and tag
    assert len(empty) == 28 and pr.open_(key, empty, b"aad") == b""
    bad = [
        blob[:-1],
        blob + b"\0",
        bytes([blob[0] ^ 1]) + blob[1:],
        blob[:20] + bytes([blob[20] ^ 0x80]) + blob[21:],
        b"",
        blob[:27],
    ]
    for b in bad:
        with pytest.raises(VaultError, match=r"^cannot open$"):
            pr.open_(key, b, b"aad")
    for k, a in ((bytes(32), b"aad"), (key, b"aad2"), (key, b"")):
        with pytest.raises(VaultError, match=r"^cannot open$"):
            pr.open_(k, blob, a)


# ---------------------------------------------------------------- key store
FAST_N = 2**10


def test_keys_open_only_for_their_tenant_and_lab(tmp_path: Path) -> None:
    root = keystore.create(tmp_path, b"secret", n=FAST_N)
    kek = os.urandom(32)
    w = root.wrap_kek("acme", kek)
    assert root.unwrap_kek("acme", w) == kek
    # the documented AAD, opened with pyca directly under the documented subkey
    wrap_key = _hkdf_sha256(root._key, b"facelab/kek-wrap/v1")
    assert AESGCM(wrap_key).decrypt(w[:12], w[12:], b"facelab/v1|kek|acme") == kek
    with pytest.raises(VaultError):
        root.unwrap_kek("beta", w)
    s = root.seal_signing_key("lab-1", b"k" * 32)
    assert root.open_signing_key("lab-1", s) == b"k" * 32
    with pytest.raises(VaultError):
        root.open_signing_key("lab-2", s)
    (tmp_path / "other").mkdir()
    other = keystore.create(tmp_path / "other", b"secret", n=FAST_N)  # another salt
    with pytest.raises(VaultError):
        other.unwrap_kek("acme", w)


def test_unlock_derives_the_same_root_and_refuses_a_wrong_secret(tmp_path: Path) -> None:
    root = keystore.create(tmp_path, b"secret", n=FAST_N)
    doc = json.loads((tmp_path / "keystore.json").read_text())
    assert (doc["format"], doc["kdf"], doc["n"], doc["r"], doc["p"]) == (
        "facelab-keystore/1",
        "scrypt",
        FAST_N,
        8,
        1,
    )
    salt = base64.b64decode(doc["salt"])
    assert len(salt) == 16
    want = hashlib.scrypt(b"secret", salt=salt, n=FAST_N, r=8, p=1, dklen=32)
    assert root._key == want  # the root is scrypt(secret, salt): nothing else
    assert keystore.unlock(tmp_path, b"secret")._key == want
    with pytest.raises(PassphraseError, match="wrong passphrase"):
        keystore.unlock(tmp_path, b"Secret")


@pytest.mark.parametrize(
    "edit",
    [
        lambda d: {**d, "format": "other/1"},
        lambda d: {**d, "kdf": "pbkdf2"},
        lambda d: {k: v for k, v in d.items() if k != "salt"},
        lambda d: {**d, "n": "many"},
        lambda d: [],
    ],
)
def test_a_damaged_key_store_is_bad_input_not_a_wrong_passphrase(tmp_path: Path, edit) -> None:
    keystore.create(tmp_path, b"secret", n=FAST_N)
    p = tmp_path / "keystore.json"
    p.write_text(json.dumps(edit(json.loads(p.read_text()))))
    with pytest.raises(BadInputError, match="unreadable key store"):
        keystore.unlock(tmp_path, b"secret")


def test_unlock_uses_the_stored_scrypt_parameters(tmp_path: Path) -> None:
    keystore.create(tmp_path, b"secret", n=FAST_N)
    p = tmp_path / "keystore.json"
    doc = json.loads(p.read_text())
    for key, value in (("r", 1), ("p", 2), ("n", FAST_N * 2)):
        p.write_text(json.dumps({**doc, key: value}))
        with pytest.raises(PassphraseError):  # other parameters: another root key
            keystore.unlock(tmp_path, b"secret")
    p.write_text(json.dumps(doc))
    assert keystore.unlock(tmp_path, b"secret")


def test_an_unknown_key_store_format_says_which(tmp_path: Path) -> None:
    keystore.create(tmp_path, b"secret", n=FAST_N)
    p = tmp_path / "keystore.json"
    p.write_text(json.dumps({**json.loads(p.read_text()), "format": "x"}))
    with pytest.raises(
        BadInputError, match=r"keystore\.json: unreadable key store \(unknown format\)"
    ):
        keystore.unlock(tmp_path, b"secret")


def test_a_missing_key_store_says_so(tmp_path: Path) -> None:
    with pytest.raises(BadInputError, match="missing"):
        keystore.unlock(tmp_path, b"secret")


def test_tenant_keys_are_private_files_and_destroy_overwrites_before_unlinking(tmp_path):
    wrapped = os.urandom(60)
    p = keystore.store_tenant_key(tmp_path, "acme", wrapped)
    assert p == tmp_path / "tenants" / "acme.kek"
    assert stat.S_IMODE(p.stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "tenants").stat().st_mode) == 0o700
    assert p.read_bytes() == wrapped and keystore.load_tenant_key(tmp_path, "acme") == wrapped
    assert not p.with_suffix(".tmp").exists()
    fd = os.open(p, os.O_RDONLY)  # the same inode, read after the unlink
    try:
        digest = keystore.destroy_tenant_key(tmp_path, "acme")
        left = os.pread(fd, 4096, 0)
    finally:
        os.close(fd)
    assert digest == hashlib.sha256(wrapped).hexdigest()
    assert not p.exists() and keystore.load_tenant_key(tmp_path, "acme") is None
    assert len(left) == len(wrapped) and left != wrapped  # overwritten in place
    assert keystore.destroy_tenant_key(tmp_path, "acme") is None


def test_a_tenant_key_behind_a_link_is_not_followed(tmp_path: Path) -> None:
    (tmp_path / "tenants").mkdir()
    (tmp_path / "elsewhere").write_bytes(b"x" * 60)
    (tmp_path / "tenants" / "acme.kek").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(BadInputError, match=r"tenants/acme\.kek: a symbolic link"):
        keystore.load_tenant_key(tmp_path, "acme")


def test_storing_a_key_neither_follows_a_planted_link_nor_keeps_stale_bytes(tmp_path):
    d = tmp_path / "tenants"
    d.mkdir()
    (d / "acme.tmp").write_bytes(b"S" * 100)  # a stale, longer temporary file
    keystore.store_tenant_key(tmp_path, "acme", b"k" * 60)
    assert keystore.load_tenant_key(tmp_path, "acme") == b"k" * 60
    outside = tmp_path / "outside"
    outside.write_bytes(b"untouched")
    (d / "beta.tmp").symlink_to(outside)  # a link where the temporary file goes
    with pytest.raises(OSError):
        keystore.store_tenant_key(tmp_path, "beta", b"k" * 60)
    assert outside.read_bytes() == b"untouched"
    assert keystore.load_tenant_key(tmp_path, "beta") is None


# ---------------------------------------------------------------- approvals
def _approval(officer: str, digest: str, key: Ed25519PrivateKey, **over) -> dict:
    body = {"format": signing.APPROVAL_FORMAT, "officer": officer, "statement_sha256": digest}
    canon = json.dumps(body, sort_keys=True, separators=(",", ":")).encode()
    return {**body, "signature": base64.b64encode(key.sign(canon)).decode(), **over}


def test_an_approval_is_valid_only_from_a_listed_officer_for_this_statement() -> None:
    kim, lee = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    officers = {"kim": kim.public_key(), "lee": lee.public_key()}
    digest = "ab" * 32
    assert signing.check_approval(_approval("kim", digest, kim), officers, digest) == "kim"
    cases = {
        "^not a facelab approval$": [
            [],
            _approval("kim", digest, kim, format="facelab-import-approval/v0"),
        ],
        "^approver 'park' is not an import officer in the policy$": [
            _approval("park", digest, kim)
        ],
        "^approval by kim is for another signed manifest$": [_approval("kim", "cd" * 32, kim)],
        "^approval by kim: signature does not verify$": [
            _approval("kim", digest, lee),  # kim's name, lee's key
            _approval("kim", digest, kim, signature="!!"),
            {k: v for k, v in _approval("kim", digest, kim).items() if k != "signature"},
        ],
    }
    for why, docs in cases.items():
        for doc in docs:
            with pytest.raises(ValueError, match=why):
                signing.check_approval(doc, officers, digest)


def test_signature_files_are_the_bundle_and_approvals_only() -> None:
    assert signing.is_signature_file("signatures/tenant.sig")
    assert signing.is_signature_file("signatures/approvals/kim.json")
    for rel in (
        "signatures/weights.bin",
        "signatures/approvals/../x.json",
        "signatures/approvals/kim.json.bak",
        "signatures/approvals/-k.json",
        "signatures/approvals/sub/kim.json",
        "model.onnx",
    ):
        assert not signing.is_signature_file(rel), rel


def test_signature_json_is_bounded_in_size_and_depth(tmp_path: Path) -> None:
    p = tmp_path / "a.json"
    p.write_text('{"a": 1}')
    assert signing.read_json(p, 8) == {"a": 1}
    with pytest.raises(ValueError, match="larger than"):
        signing.read_json(p, 7)
    p.write_text("[" * 65 + "]" * 65)
    with pytest.raises(ValueError, match="deeper"):
        signing.read_json(p)
    p.write_text("[" * 64 + "]" * 64)
    assert signing.read_json(p) is not None
    p.write_bytes(b'"\xff"')
    with pytest.raises(ValueError, match="UTF-8"):
        signing.read_json(p)


# ---------------------------------------------------------------- export decision
@pytest.mark.parametrize(
    ("refuse_at", "severities", "refused"),
    [
        ("medium", [], False),
        ("medium", ["low"], False),
        ("medium", ["low", "medium"], True),
        ("medium", ["high"], True),
        ("high", ["low", "medium"], False),
        ("high", ["high"], True),
        ("low", ["low"], True),
    ],
)
def test_the_export_decision_is_by_the_policys_threshold(refuse_at, severities, refused):
    findings = tuple(Finding("d", s, "a", "l", "e") for s in severities)
    report = ExportReport("acme", (), findings, (), refuse_at)
    assert report.refused is refused
    from enclave_policy._load import SEVERITIES

    want = [f for f in findings if SEVERITIES.index(f.severity) >= SEVERITIES.index(refuse_at)]
    assert report.blocking() == want
    doc = report.to_json()
    assert doc["decision"] == ("refused" if refused else "released")
    assert ("REFUSED" in report.text()) is refused


class _Index:
    """A stand-in subject index with the lookups the redaction makes (keyed forms)."""

    def __init__(self, words: set[str], passports: set[str]):
        self.forms = {"W|" + w for w in words} | {"P|" + p for p in passports}

    def lookup(self, form: str):
        return {("s1", "x")} if form in self.forms else set()


def test_redaction_removes_name_parts_and_passport_numbers_only() -> None:
    from facelab.gates.exporting.gate import redact

    idx = _Index({"okonkwo", "zoe", "li"}, {"C97426460"})
    assert redact("$.Okonkwo.by", idx) == "$.[redacted].by"
    assert redact("OKONKWO<<ZOE line 3", idx) == "[redacted]<<[redacted] line 3"
    assert redact("Zoë at row 2", idx) == "[redacted] at row 2"
    assert redact("no C97426460 here", idx) == "no [redacted] here"
    assert redact("xxC97426460", idx) == "[redacted]"  # a number glued to a prefix
    assert redact("xC97426460", idx) == "[redacted]"  # ten characters: windows too
    assert redact("xxC97426460yy", idx) == "[redacted]"  # glued on both sides
    assert redact("by Li Okonkwo", idx) == "by [redacted] [redacted]"  # two letters
    assert redact("row 12 column 4: epoch", idx) == "row 12 column 4: epoch"
    assert redact("z", idx) == "z"  # one letter is never a name part here
    assert redact("Okonkwo", None) == "Okonkwo"  # no index: nothing to match


def _gate_ctx(tmp_path: Path, officers: dict, approvals: dict[str, dict], digest, need=2):
    from types import SimpleNamespace

    from facelab.gates.importing._types import GateContext
    from facelab.gates.importing.package import Package
    from facelab.labdir import public_key_b64

    root = tmp_path / "pkg"
    files = {}
    for name, doc in approvals.items():
        rel = f"signatures/approvals/{name}.json"
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(json.dumps(doc))
        files[rel] = 1
    files["model.onnx"] = 1
    policy = SimpleNamespace(
        required_approvals=need,
        officers={n: public_key_b64(k.public_key()) for n, k in officers.items()},
    )
    ctx = GateContext(Package(root, files), policy, "acme")
    ctx.statement_sha256 = digest
    return ctx


def test_the_approvals_check_counts_distinct_valid_officers(tmp_path: Path) -> None:
    from facelab.gates.importing.checks.signature import run_approvals

    kim, lee, park = (Ed25519PrivateKey.generate() for _ in range(3))
    officers = {"kim": kim, "lee": lee}
    d = "ab" * 32
    two = {"kim": _approval("kim", d, kim), "lee": _approval("lee", d, lee)}
    ok = run_approvals(_gate_ctx(tmp_path / "a", officers, two, d))
    assert ok.passed and ok.problems == () and ok.info == "approved by kim, lee"
    assert ok.name == "approvals"
    none = run_approvals(_gate_ctx(tmp_path / "n", officers, {}, d))
    assert none.name == "approvals" and none.info == "approved by none"
    assert none.problems == ("0 valid approval(s) by import officers, 2 required",)
    unsigned = run_approvals(_gate_ctx(tmp_path / "u", officers, two, None))
    assert unsigned.name == "approvals"
    assert unsigned.problems == ("no valid tenant signature to approve",)
    # an approval file over 64 KiB is not parsed
    big = {"kim": {**two["kim"], "pad": "x" * (1 << 16)}, "lee": two["lee"]}
    res = run_approvals(_gate_ctx(tmp_path / "big", officers, big, d))
    assert not res.passed and "kim.json: larger than 65536 bytes" in " | ".join(res.problems)
    cases = {
        # the same officer under two file names is one approval
        "b": ({"kim": two["kim"], "kim2": two["kim"]}, d, 2, "1 valid approval(s)"),
        # one approval for an older statement: the tenant re-signed after approval
        "c": ({"kim": two["kim"], "lee": _approval("lee", "cd" * 32, lee)}, d, 2, "another"),
        "d": ({"kim": two["kim"], "park": _approval("park", d, park)}, d, 2, "'park'"),
        "e": (two, None, 2, "no valid tenant signature"),
        "f": (two, d, 3, "2 valid approval(s) by import officers, 3 required"),
    }
    for sub, (docs, digest, need, why) in cases.items():
        res = run_approvals(_gate_ctx(tmp_path / sub, officers, docs, digest, need))
        assert not res.passed and why in " | ".join(res.problems), (sub, res.problems)
    one = run_approvals(_gate_ctx(tmp_path / "g", officers, {"kim": two["kim"]}, d, 1))
    assert one.passed  # the policy's number, not a constant


def test_a_bad_officer_key_in_the_policy_names_the_policy_key(tmp_path: Path) -> None:
    from facelab.gates.importing.checks.signature import run_approvals

    kim = Ed25519PrivateKey.generate()
    ctx = _gate_ctx(tmp_path, {"kim": kim}, {}, "ab" * 32)
    ctx.policy.officers = {"kim": "not base64 at all"}
    with pytest.raises(BadInputError, match=r"^policy import\.officers\.kim: not a base64"):
        run_approvals(ctx)


def test_every_field_of_a_finding_is_redacted_and_duplicates_merge() -> None:
    from facelab.gates.exporting.gate import _dedupe, _redacted

    idx = _Index({"okonkwo"}, set())
    f = Finding("identifiers", "high", "Okonkwo.txt", "$.Okonkwo", "Okonkwo here", ("s1",))
    r = _redacted(f, idx)
    assert (r.artifact, r.location, r.evidence) == (
        "[redacted].txt",
        "$.[redacted]",
        "[redacted] here",
    )
    assert (r.detector, r.severity, r.subjects) == ("identifiers", "high", ("s1",))
    g = Finding("identifiers", "high", "a", "l", "e", ("s2",))
    h = Finding("identifiers", "high", "a", "l", "e", ("s3",))  # another subject: kept
    assert _dedupe([f, g, f, g, h]) == [f, g, h]
