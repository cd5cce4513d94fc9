"""A lab directory: its layout, its identity and the lab's Ed25519 signing key.

Layout::

    LAB/lab.json               format, lab id, creation time, the signing key's public half
    LAB/policy.toml            the policy in force (a copy of enclave_policy/default.toml)
    LAB/keys/keystore.json     scrypt parameters and a check value (facelab.vault.keystore)
    LAB/keys/lab_signing.sealed  the Ed25519 lab key, sealed under a root subkey
    LAB/keys/lab_signing.pub   the public key, raw 32 bytes in base64, one line
    LAB/audit/                 the audit log (facelab.audit)
    LAB/policy-history/        the text of every policy version the log was written under
    LAB/vault.db               the encrypted records (facelab.vault)

The operator secret comes from FACELAB_PASSPHRASE when set (automation, CI), or the
bytes of the file named by FACELAB_KEY_FILE, otherwise from the terminal; it is never
stored.
"""

from __future__ import annotations

import base64
import contextlib
import getpass
import json
import os
import re
import secrets
import shutil
import sys
from collections.abc import Callable, Mapping, MutableMapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
)
from facelab.errors import BadInputError, PassphraseError, TamperedError, VaultError
from facelab.scratch import sibling_dir
from facelab.vault import keystore

from enclave_policy import DEFAULT_POLICY, Policy, load_policy

LAB_FORMAT = "facelab-lab/1"
PASSPHRASE_ENV = "FACELAB_PASSPHRASE"
KEY_FILE_ENV = "FACELAB_KEY_FILE"
MIN_PASSPHRASE_CHARS = 12  # a new lab's passphrase, from the environment or the terminal
MIN_KEY_FILE_BYTES = 16  # a key file (FACELAB_KEY_FILE), whenever it is read


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
    def keys(self) -> Path:
        return self.root / "keys"

    @property
    def signing_key(self) -> Path:
        return self.root / "keys" / "lab_signing.sealed"

    @property
    def vault(self) -> Path:
        return self.root / "vault.db"

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


_CAPTURED: dict[str, str] = {}


def capture_secrets(environ: MutableMapping[str, str] = os.environ) -> None:
    """Move FACELAB_PASSPHRASE and FACELAB_KEY_FILE out of the process environment
    (the CLI calls this first), so that no child process of any kind inherits them;
    :func:`read_passphrase` still finds them."""
    for name in (PASSPHRASE_ENV, KEY_FILE_ENV):
        if name in environ:
            _CAPTURED[name] = environ.pop(name)
    with contextlib.suppress(Exception):
        os.unsetenv(PASSPHRASE_ENV)


def captured_secret(name: str) -> str | None:
    """A secret variable as the process started with it: from what
    :func:`capture_secrets` took out of the environment, else the environment."""
    return _CAPTURED.get(name, os.environ.get(name))


def read_passphrase(
    env: Mapping[str, str] | None = None,
    prompt: bool = True,
    *,
    new: bool = False,
    ask: Callable[[str], str] | None = None,
    terminal: bool | None = None,
) -> bytes:
    """The operator secret: FACELAB_PASSPHRASE, else FACELAB_KEY_FILE's bytes, else a prompt
    (from the environment, or from what :func:`capture_secrets` took out of it).

    ``new=True`` (``facelab init``): the secret will lock a new lab, so a terminal asks
    twice and both answers must match, and every source must meet the minimum length
    (:data:`MIN_PASSPHRASE_CHARS` characters, a key file :data:`MIN_KEY_FILE_BYTES`
    bytes; NIST SP 800-63B section 5.1.1.2 asks for at least 8). An existing lab opens
    with whatever secret created it. ``ask`` and ``terminal`` are the prompt and the
    "stdin is a terminal" test (injected by tests; default getpass and isatty).

    Raises PassphraseError (exit 2) with one line naming the source and the reason.
    """
    if env is None:
        env = {**os.environ, **_CAPTURED}
    if env.get(KEY_FILE_ENV) and not env.get(PASSPHRASE_ENV):
        path = Path(env[KEY_FILE_ENV])
        try:
            from facelab.jsonfile import read_regular

            data = read_regular(path, max_bytes=1 << 20, what="a key file")
        except (OSError, BadInputError) as e:
            why = getattr(e, "strerror", None) or str(e).removeprefix(f"{path}: ")
            raise PassphraseError(f"{path}: cannot read key file ({why})") from e
        if len(data) < MIN_KEY_FILE_BYTES:
            raise PassphraseError(
                f"{path}: key file holds {len(data)} bytes; it needs at least "
                f"{MIN_KEY_FILE_BYTES} ({KEY_FILE_ENV})"
            )
        return data
    value = env.get(PASSPHRASE_ENV)
    source = PASSPHRASE_ENV
    if terminal is None:
        terminal = sys.stdin.isatty()
    ask = ask or getpass.getpass
    if value is None and prompt and terminal:
        source = "the passphrase typed"
        if new:
            value = ask(f"new lab passphrase (at least {MIN_PASSPHRASE_CHARS} characters): ")
            _check_new_passphrase(value, source)
            if ask("the same passphrase again: ") != value:
                raise PassphraseError("the two passphrases typed differ; nothing was created")
        else:
            value = ask("facelab operator passphrase: ")
    if not value:
        raise PassphraseError(
            f"no passphrase: set {PASSPHRASE_ENV} (or {KEY_FILE_ENV}) or run on a terminal"
        )
    if new:
        _check_new_passphrase(value, source)
    return value.encode("utf-8")


def _check_new_passphrase(value: str, source: str) -> None:
    if len(value) < MIN_PASSPHRASE_CHARS:
        raise PassphraseError(
            f"{source}: a new lab's passphrase needs at least {MIN_PASSPHRASE_CHARS} "
            f"characters (got {len(value)}); one forgotten or mistyped character "
            "locks the lab for good"
        )


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
    """Create a lab directory atomically (temporary sibling, then rename).

    ``passphrase`` must be at least :data:`MIN_PASSPHRASE_CHARS` bytes (PassphraseError).
    """
    root = Path(root)
    if len(passphrase) < MIN_PASSPHRASE_CHARS:
        raise PassphraseError(
            f"a new lab's secret needs at least {MIN_PASSPHRASE_CHARS} characters "
            f"(got {len(passphrase)} bytes)"
        )
    if root.exists() and (not root.is_dir() or any(root.iterdir())):
        raise BadInputError(f"{root}: already exists and is not an empty directory")
    parent = root.parent if str(root.parent) else Path(".")
    if not parent.is_dir():
        raise BadInputError(f"{root}: parent directory {parent} does not exist")
    policy = load_policy(policy_source)
    try:
        tmp = sibling_dir(root)
    except OSError as e:
        raise BadInputError(f"{root}: cannot create a directory beside it ({e.strerror})") from e
    try:
        paths = LabPaths(tmp)
        (tmp / "keys").mkdir(mode=0o700)
        paths.audit.mkdir()
        lab_id = "lab-" + secrets.token_hex(6)
        root_key = keystore.create(paths.keys, passphrase)
        key = Ed25519PrivateKey.generate()
        raw = key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
        fd = os.open(paths.signing_key, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(root_key.seal_signing_key(lab_id, raw))
        pub = public_key_b64(key.public_key())
        paths.public_key.write_text(pub + "\n")
        meta = {
            "format": LAB_FORMAT,
            "lab_id": lab_id,
            "created": clock().isoformat(timespec="seconds"),
            "public_key": pub,
        }
        paths.meta.write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
        shutil.copyfile(policy.source, paths.policy)
        from facelab.vault.store import create_database

        create_database(paths.vault)
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
    from facelab.jsonfile import read_json

    try:
        meta = read_json(paths.meta, what="lab metadata", follow=False)
    except FileNotFoundError as e:
        raise BadInputError(f"{root}: not a facelab lab (no lab.json; run facelab init)") from e
    if meta.get("format") != LAB_FORMAT:
        raise BadInputError(f"{paths.meta}: unknown lab format {str(meta.get('format'))[:40]!r}")
    lab_id = meta.get("lab_id")
    if not isinstance(lab_id, str) or not re.fullmatch(r"[A-Za-z0-9._-]{1,64}", lab_id):
        raise BadInputError(f"{paths.meta}: no valid lab_id")
    policy = load_policy(paths.policy, follow=False)
    return Lab(paths, meta["lab_id"], policy.audit.origin_prefix + meta["lab_id"], policy)


def unlock(lab: Lab, passphrase: bytes) -> keystore.RootKey:
    """The lab's root key (a wrong passphrase is a clear PassphraseError)."""
    return keystore.unlock(lab.paths.keys, passphrase)


def load_signing_key(lab: Lab, passphrase: bytes | keystore.RootKey) -> Ed25519PrivateKey:
    root = passphrase if isinstance(passphrase, keystore.RootKey) else unlock(lab, passphrase)
    try:
        blob = _small_lab_file(lab.paths.signing_key)
    except FileNotFoundError as e:
        raise BadInputError(f"{lab.paths.signing_key}: missing") from e
    try:
        raw = root.open_signing_key(lab.lab_id, blob)
    except VaultError as e:
        raise BadInputError(
            f"{lab.paths.signing_key}: does not open (damaged or from another lab)"
        ) from e
    return Ed25519PrivateKey.from_private_bytes(raw)


def _small_lab_file(path: Path) -> bytes:
    """A key file of the lab: regular, at most 64 KiB (a FIFO put there is exit 2, not
    a hang of every command)."""
    from facelab.jsonfile import read_regular

    return read_regular(path, max_bytes=64 << 10, what="a key file", follow=False)


def load_public_key(lab: Lab) -> Ed25519PublicKey:
    try:
        text = _small_lab_file(lab.paths.public_key).decode("ascii", "replace")
    except OSError as e:
        raise BadInputError(f"{lab.paths.public_key}: unreadable ({e.strerror})") from e
    return public_key_from_b64(text, lab.paths.public_key)


def actor_name(env: Mapping[str, str] = os.environ) -> str:
    """Who is acting: FACELAB_ACTOR when set, else the operating-system user.

    Raises ``BadInputError`` for a FACELAB_ACTOR that is not one printable line of at
    most 128 characters of valid Unicode (bytes that are not UTF-8 arrive as lone
    surrogates; control and format characters, bidi overrides included, would make the
    record read differently from what it holds; red team 14f, case 05)."""
    import unicodedata

    name = env.get("FACELAB_ACTOR")
    if name:
        try:
            name.encode("utf-8")
        except UnicodeEncodeError as e:
            raise BadInputError("FACELAB_ACTOR: not valid UTF-8") from e
        if len(name) > 128 or any(unicodedata.category(c).startswith("C") for c in name):
            raise BadInputError(
                "FACELAB_ACTOR: must be one printable line of at most 128 characters"
            )
        return name
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return f"uid:{os.getuid()}"


def audit_writer(
    lab: Lab,
    passphrase: bytes | keystore.RootKey,
    *,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    repair_actor: str | None = None,
):
    """Open the lab's audit log for recording (needs the lab key, hence the passphrase).

    A policy file whose digest is not the one in force at the log's last entry (edited
    by hand) is recorded first, as ``policy.change`` (:func:`facelab.policy.record_drift`).
    """
    from facelab.audit import AuditLog, policy_digest
    from facelab.errors import TamperedError

    key = load_signing_key(lab, passphrase)
    keep_policy_version(lab)
    if lab.paths.public_key.exists() and public_key_b64(load_public_key(lab)) != public_key_b64(
        key.public_key()
    ):
        raise TamperedError(
            f"{lab.paths.public_key}: is not the public half of the lab's signing key "
            "(replaced?); refusing to sign"
        )
    limits = audit_limits(lab)
    from facelab.audit import pins

    pinned, _ = pins.pinned_head(lab.origin)  # BadInputError: a malformed pin file
    seen_witnesses = pins.pinned_witnesses(lab.origin)

    def on_head(note: bytes, size: int) -> None:
        if why := pins.advance_head(lab.origin, note, size):
            import sys

            print(f"facelab: warning: the signed head was not pinned ({why})", file=sys.stderr)

    log = AuditLog(
        lab.paths.audit,
        lab.origin,
        key,
        checkpoint_every=lab.policy.audit.checkpoint_every,
        policy_digest=policy_digest(lab.paths.policy),
        clock=clock,
        repair_actor=repair_actor,
        head_dir=lab.paths.keys,
        max_unsigned_tail=limits["max_unsigned_tail"],
        lock_wait=float(limits["lock_wait_seconds"]),
        pinned_head=pinned,
        on_head=on_head,
        pinned_witnesses=seen_witnesses,
        register_session=lambda s: pins.register_session(lab.origin, s),
        known_sessions=lambda: pins.writer_sessions(lab.origin),
    )
    try:  # a policy edited by hand since the last entry goes on the record first
        from facelab.policy import record_drift

        record_drift(lab, log, repair_actor or actor_name())
    except BaseException:
        log.close()
        raise
    return log


def keep_policy_version(lab: Lab) -> Path:
    """Keep the text of the policy in force as ``LAB/policy-history/<sha256>.toml`` (once
    per version), so that every policy digest the audit log holds can be shown with its
    text (the evidence pack's policy history; issue 18)."""
    from facelab import labfs

    data = labfs.read_bytes(lab.paths.policy, what="a policy")
    import hashlib

    path = lab.paths.root / "policy-history" / f"{hashlib.sha256(data).hexdigest()}.toml"
    if not path.exists():
        path.parent.mkdir(exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_bytes(data)
        os.replace(tmp, path)
    return path


def audit_limits(lab: Lab) -> dict[str, int]:
    """``[audit] max_unsigned_tail`` (default 256), ``max_unwitnessed`` (default 1024) and
    ``require_witness`` (default false), ``lock_wait_seconds`` (default 60) from the
    policy: the unsigned entries a writer cuts on its own after a crash, the entries a
    registered witness may not yet have cosigned before ``audit verify`` fails, whether a
    log with no registered witness fails ``audit verify``, and how long a command waits
    for another process's hold on the log's lock before it stops (exit 75)."""
    raw = lab.policy.raw.get("audit", {}) if isinstance(lab.policy.raw, dict) else {}
    return _audit_limits(raw, lab.paths.policy)


def _audit_limits(raw: object, where: Path) -> dict[str, int]:
    raw = raw if isinstance(raw, dict) else {}
    out = {}
    for name, default in (("max_unsigned_tail", 256), ("max_unwitnessed", 1024)):
        v = raw.get(name, default)
        if not isinstance(v, int) or isinstance(v, bool) or not 0 <= v <= 10**9:
            raise BadInputError(f"{where}: audit.{name} must be an integer >= 0")
        out[name] = v
    wait = raw.get("lock_wait_seconds", 60)
    if not isinstance(wait, int) or isinstance(wait, bool) or not 1 <= wait <= 86400:
        raise BadInputError(f"{where}: audit.lock_wait_seconds must be an integer in [1, 86400]")
    out["lock_wait_seconds"] = wait
    req = raw.get("require_witness", False)
    if not isinstance(req, bool):
        raise BadInputError(f"{where}: audit.require_witness must be true or false")
    out["require_witness"] = int(req)
    return out


def policy_history_problems(lab: Lab) -> list[str]:
    """What is wrong with ``LAB/policy-history``: each ``<sha256>.toml`` there must be a
    regular file (no link, FIFO, device or directory), within the policy size limit,
    whose SHA-256 is its name. One line per problem; [] when sound or absent."""
    import hashlib

    from facelab import labfs

    d = lab.paths.root / "policy-history"
    try:
        names = sorted(os.listdir(d))
    except FileNotFoundError:
        return []
    except OSError as e:
        return [f"{d}: unreadable ({e.strerror or e})"]
    out = []
    for name in names:
        if not name.endswith(".toml"):
            continue  # a temporary file of keep_policy_version's, say
        path = d / name
        try:
            data = labfs.read_bytes(path, 1 << 20, what="a policy text", error=TamperedError)
        except TamperedError as e:
            out.append(str(e))
            continue
        if hashlib.sha256(data).hexdigest() != name.removesuffix(".toml"):
            out.append(f"{path}: its text does not hash to its name")
    return out


def recorded_audit_limits(lab: Lab) -> dict[str, int]:
    """The stricter of the policy file's ``[audit]`` limits and those of the policy the
    log's last entry was written under (its text kept in ``LAB/policy-history`` under its
    SHA-256, checked here): a hand edit that relaxes ``max_unwitnessed`` or
    ``require_witness`` does not relax ``audit verify`` before a writer records it."""
    import hashlib
    import tomllib

    from facelab import labfs

    current = audit_limits(lab)
    try:
        with labfs.open_file(lab.paths.audit / "entries.jsonl") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - (1 << 16)))
            lines = f.read().split(b"\n")
        from facelab.audit.read import entry_of

        last = entry_of(next(x for x in reversed(lines[:-1] or lines) if x.strip())) or {}
        sha = str(last.get("policy", "")).removeprefix("sha256:")
        if not re.fullmatch(r"[0-9a-f]{64}", sha):
            return current
    except (OSError, ValueError, StopIteration, RecursionError, BadInputError):
        return current  # the log's own damage is verify's to report
    now = hashlib.sha256(labfs.read_bytes(lab.paths.policy, what="a policy")).hexdigest()
    if sha == now:
        return current  # no hand edit since the last entry
    # the policy was edited by hand since the last entry: the limits recorded are the
    # ones whose text every writer keeps; a text missing, unreadable, of another kind
    # or not hashing to its name is damage (a relaxed hand edit must not pass with it)
    kept = lab.paths.root / "policy-history" / f"{sha}.toml"
    try:
        data = labfs.read_bytes(kept, what="a policy text", error=TamperedError)
    except FileNotFoundError:
        raise TamperedError(
            f"{kept}: missing: the log was last written under this policy text, and "
            "policy.toml has been edited by hand since; its limits cannot be checked"
        ) from None
    if hashlib.sha256(data).hexdigest() != sha:
        raise TamperedError(f"{kept}: its text does not hash to its name")
    try:
        recorded = _audit_limits(tomllib.loads(data.decode()).get("audit", {}), lab.paths.policy)
    except (ValueError, RecursionError, BadInputError) as e:
        raise TamperedError(f"{kept}: not a policy the log was written under ({e})") from e
    return {
        "max_unsigned_tail": min(current["max_unsigned_tail"], recorded["max_unsigned_tail"]),
        "max_unwitnessed": min(current["max_unwitnessed"], recorded["max_unwitnessed"]),
        "require_witness": max(current["require_witness"], recorded["require_witness"]),
    }


def init_and_record(
    root: Path | str, passphrase: bytes, actor: str, *, policy_source: Path = DEFAULT_POLICY
) -> Lab:
    """``facelab init``: create the lab and record its genesis entry (lab.init, entry 0).
    ``policy_source``: the policy the lab starts with (default: the shipped one).

    This machine's pin file (``audit.pins``) then records that this directory holds the
    new lab, so a lab later replaced there under another identity is ``lab-replaced``.
    """
    from facelab import __version__
    from facelab.audit import Event, pins

    pins.check_readable()  # before anything is created: a malformed pin file is exit 2
    lab = init_lab(root, passphrase, policy_source=policy_source)
    with audit_writer(lab, passphrase) as log:
        log.record(
            Event(
                action="lab.init",
                actor=actor,
                role="operator",
                object="ed25519:" + public_key_b64(load_public_key(lab)),
                details={
                    "lab_id": lab.lab_id,
                    "origin": lab.origin,
                    "public_key": public_key_b64(load_public_key(lab)),
                    "facelab": __version__,
                },
            )
        )
    pins.check_or_pin_place(lab.paths.root, lab.origin, repin=True)
    return lab
