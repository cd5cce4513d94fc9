"""Lab keys pinned on this machine: trust on first use, then the pin (as SSH's known_hosts).

Plain ``audit verify`` has no passphrase and no key from outside: it can only check the
log against the key the log itself presents. Someone with write access to the lab's
files who re-signs the whole log under a key of their own would pass it. A pin closes
that for every machine that has seen the lab before: ``facelab init`` pins the new lab's
public key under its origin, the first ``audit verify`` on another machine pins what it
finds, and from then on ``audit verify`` checks the log against the pinned key (a
mismatch is ``signing-key-replaced``, exit 4).

The file is ``$FACELAB_KNOWN_LABS``, else ``$XDG_CONFIG_HOME/facelab/known_labs.json``,
else ``~/.config/facelab/known_labs.json``: a JSON object ``{origin: {"public_key":
base64, "pinned": ISO 8601 UTC}}``, and for each lab directory seen, under its resolved
absolute path, ``{"origin": ..., "pinned": ...}``: a whole lab replaced at the same path
under a new identity (new origin, new key) is ``lab-replaced``, exit 4. It lives outside
every lab directory.

Each origin's entry also keeps ``"head"``: the largest signed head (a checkpoint note,
signed by the lab key) that a command on this machine wrote or verified. Every writer
and ``audit verify`` check the log against it (``verify_log(pinned_head=...)``): a log
cut or rolled back below what this machine has seen, or rewritten under it, is damage
even when someone with the lab's files also rolled back the head kept in ``LAB/keys``
(red team 14d, c01). Like a witness, but on this machine and without a second key.

A pin file that exists but is unreadable or malformed stops ``audit verify`` and every
writer with one line and exit 2 (``BadInputError``): corrupting the anchor must not
turn the checks it anchors off (red team 14d, c26). It is never rewritten when
malformed; repair or remove it (a removed file is trust on first use again, on the
record of the operator who removed it), or verify with ``--no-pin``. Only a pin file
that cannot be created (a read-only home) is a warning.
"""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from facelab.errors import BadInputError, BusyError, NoteError
from facelab.jsonfile import read_json

ENV = "FACELAB_KNOWN_LABS"
#: Seconds a command waits for another process's hold on the pin file's lock (each
#: holder reads and rewrites one small file: milliseconds); then exit 75.
LOCK_WAIT_S = 10.0
MAX_BYTES = 4 << 20


def pins_path() -> Path:
    if os.environ.get(ENV):
        return Path(os.environ[ENV])
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "facelab" / "known_labs.json"


@dataclass(frozen=True)
class Pin:
    """What this machine knows of a lab's key.

    ``state``: ``"matches"`` (the pinned key is the key given), ``"pinned-now"`` (no pin
    existed; the key given is pinned from now on), ``"differs"`` (a pin for this origin
    names another key: ``public_key`` is the pinned one), or ``"unavailable"`` (the pin
    file could not be read or written: ``problem`` says why).
    """

    state: str
    public_key: str
    pinned: str = ""
    path: str = ""
    problem: str = ""


def _read(path: Path) -> dict:
    """The pin file's object ({} when there is none). Raises ``BadInputError`` naming the
    file for one that is unreadable, malformed or not of the expected shape."""
    try:
        doc = read_json(path, what="pin file", max_bytes=MAX_BYTES)
    except FileNotFoundError:
        return {}
    except BadInputError as e:
        raise BadInputError(
            f"{e} (this machine's pins of lab keys and heads: repair or "
            "remove it, or pass --no-pin to `audit verify`)"
        ) from e
    if not all(isinstance(v, dict) for v in doc.values()):
        raise BadInputError(
            f"{path}: not a pin file (an entry is not a JSON object; "
            "repair or remove it, or pass --no-pin to `audit verify`)"
        )
    return doc


def check_readable() -> None:
    """Raise ``BadInputError`` when the pin file exists but cannot be used (before a
    command changes anything: ``facelab init``)."""
    _read(pins_path())


def _locked(mutate):
    """Run ``mutate(pins, path) -> (result, changed)`` under the pin file's lock and
    write the file back atomically when ``changed``; an OSError or a malformed file
    gives ``Pin("unavailable", ...)`` through ``mutate``'s caller; a malformed or
    unreadable file raises ``BadInputError``."""
    path = pins_path()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path.with_name(path.name + ".lock"), os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as e:
        return None, str(path), e.strerror or str(e)
    try:
        # bounded: a facelab process stopped while it held the pin file's lock hung
        # every command on the machine (red team 14j, H04); BusyError, exit 75
        from facelab.audit.log import flock_within

        flock_within(fd, LOCK_WAIT_S, path.with_name(path.name + ".lock"), "the pin file's lock")
        pins = _read(path)  # BadInputError: fail closed, never ignored
        result, changed = mutate(pins)
        if changed:
            tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
            try:
                with open(tmp, "w") as f:
                    f.write(json.dumps(pins, indent=1, sort_keys=True) + "\n")
                    f.flush()
                    os.fsync(f.fileno())
                os.replace(tmp, path)
            except OSError as e:
                with contextlib.suppress(OSError):
                    tmp.unlink()
                return None, str(path), e.strerror or str(e)
        return result, str(path), ""
    finally:
        os.close(fd)


def check_or_pin(origin: str, public_key_b64: str, *, pin: bool = True) -> Pin:
    """Compare ``public_key_b64`` with this machine's pin for ``origin``; pin it when
    there is none (and ``pin``)."""

    def mutate(pins: dict) -> tuple[Pin, bool]:
        known = pins.get(origin)
        if isinstance(known, dict) and isinstance(known.get("public_key"), str):
            state = "matches" if known["public_key"] == public_key_b64 else "differs"
            return Pin(state, known["public_key"], str(known.get("pinned", ""))), False
        if not pin:
            return Pin("unavailable", public_key_b64, problem="not pinned"), False
        when = datetime.now(UTC).isoformat(timespec="seconds")
        entry = pins.setdefault(origin, {})
        entry.update({"public_key": public_key_b64, "pinned": when})
        return Pin("pinned-now", public_key_b64, when), True

    got, path, problem = _locked(mutate)
    if got is None:
        return Pin("unavailable", public_key_b64, path=path, problem=problem)
    return Pin(got.state, got.public_key, got.pinned, path, got.problem)


@dataclass(frozen=True)
class PlacePin:
    """Which lab this machine last knew at a directory (the lab's audit origin).

    ``state`` as in :class:`Pin`: ``"matches"``, ``"pinned-now"``, ``"differs"``
    (``origin`` is the pinned one: the directory now holds another lab, e.g. a whole lab
    replaced under a new identity) or ``"unavailable"``.
    """

    state: str
    origin: str
    pinned: str = ""
    path: str = ""
    problem: str = ""


def place_key(root: Path) -> str:
    """The pin file's key for a lab directory: its absolute path, resolved (a key that
    starts with "/", which no origin does)."""
    return str(Path(root).resolve())


def place_keys(root: Path) -> list[str]:
    """Every key a lab directory is pinned under: its resolved path and, when the path
    given goes through a link, that path too (red team 14h, case 05: a lab directory
    replaced by a link to another lab this machine knows resolved to that lab's own
    pin, which matched)."""
    keys = [place_key(root)]
    given = os.path.abspath(root)
    return keys if given in keys else [given, *keys]


def check_or_pin_place(
    root: Path, origin: str, *, pin: bool = True, repin: bool = False
) -> PlacePin:
    """Compare the lab ``origin`` found at directory ``root`` with this machine's pin for
    that directory; pin it when there is none (and ``pin``), or always when ``repin``
    (``facelab init`` made a new lab there)."""
    keys = place_keys(root)

    def mutate(pins: dict) -> tuple[PlacePin, bool]:
        known = [k for k in (pins.get(x) for x in keys) if isinstance(k, dict)]
        known = [k for k in known if isinstance(k.get("origin"), str)]
        if not repin:
            for k in known:  # any name of the directory pinned to another lab: replaced
                if k["origin"] != origin:
                    return PlacePin("differs", k["origin"], str(k.get("pinned", ""))), False
        missing = [x for x in keys if not isinstance(pins.get(x), dict)]
        if not repin and known and not (pin and missing):
            return PlacePin("matches", origin, str(known[0].get("pinned", ""))), False
        if not known and not pin and not repin:
            return PlacePin("unavailable", origin, problem="not pinned"), False
        when = datetime.now(UTC).isoformat(timespec="seconds")
        for x in keys if repin else missing:
            pins[x] = {"origin": origin, "pinned": when}
        state = "matches" if known and not repin else "pinned-now"
        return PlacePin(
            state, origin, when if state == "pinned-now" else str(known[0].get("pinned", ""))
        ), True

    got, path, problem = _locked(mutate)
    if got is None:
        return PlacePin("unavailable", origin, path=path, problem=problem)
    return PlacePin(got.state, got.origin, got.pinned, path, got.problem)


def pinned_head(origin: str) -> tuple[bytes | None, str]:
    """The largest signed head this machine has seen for ``origin`` (a checkpoint note's
    bytes, None when none) and the pin file's path. The note is checked by the caller
    (``verify_log``) against the lab key. Raises ``BadInputError`` for a pin file that
    exists but is unreadable or malformed."""
    path = pins_path()
    known = _read(path).get(origin)
    note = known.get("head") if isinstance(known, dict) else None
    if note is None:
        return None, str(path)
    if not isinstance(note, str):
        raise BadInputError(f"{path}: the head pinned for {origin} is not a checkpoint note")
    return note.encode("utf-8"), str(path)


def advance_head(origin: str, note: bytes, size: int) -> str:
    """Keep ``note`` (a signed head at ``size``, already verified by the caller) as the
    head pinned for ``origin`` when it is larger than the one pinned. Returns "" or, when
    the pin file cannot be written, why (the caller warns; nothing else depends on it).
    Raises ``BadInputError`` for a malformed pin file."""
    from facelab.audit import checkpoint as ckpt

    def mutate(pins: dict) -> tuple[Pin, bool]:
        entry = pins.setdefault(origin, {})
        old = entry.get("head")
        if isinstance(old, str):
            try:
                if ckpt.parse(old.encode())[0].size >= size:
                    return Pin("matches", ""), False
            except (ValueError, NoteError):  # a pinned note we cannot read is replaced
                pass
        entry["head"] = note.decode("utf-8")
        return Pin("pinned-now", ""), True

    try:
        got, _path, problem = _locked(mutate)
    except BusyError as e:  # the command's work is done and signed: warn, not fail
        return str(e)
    return "" if got is not None else problem


#: How many writer sessions each origin keeps (the newest; a crash tail is adopted only
#: from one of them).
MAX_SESSIONS = 64


def register_session(origin: str, session: str) -> str:
    """Remember writer session ``session`` (32 hex digits) of ``origin`` on this machine,
    before the writer appends anything. Returns "" or, when the pin file cannot be
    written, why (the writer goes on; a tail it leaves after a crash then waits for
    ``audit repair``). Raises ``BadInputError`` for a malformed pin file."""

    def mutate(pins: dict) -> tuple[Pin, bool]:
        entry = pins.setdefault(origin, {})
        old = entry.get("sessions")
        kept = [x for x in old if isinstance(x, str)] if isinstance(old, list) else []
        entry["sessions"] = [*kept, session][-MAX_SESSIONS:]
        return Pin("pinned-now", ""), True

    try:
        got, _path, problem = _locked(mutate)
    except BusyError as e:  # the writer goes on; a crash tail of it waits for repair
        return str(e)
    return "" if got is not None else problem


def writer_sessions(origin: str) -> list[str]:
    """The writer sessions of ``origin`` registered on this machine (newest last).
    Raises ``BadInputError`` for a malformed pin file."""
    path = pins_path()
    known = _read(path).get(origin)
    got = known.get("sessions", []) if isinstance(known, dict) else []
    if not isinstance(got, list) or not all(isinstance(x, str) and len(x) == 32 for x in got):
        raise BadInputError(f"{path}: the writer sessions pinned for {origin} are malformed")
    return got


def pinned_witnesses(origin: str) -> dict[str, int]:
    """Witness name -> the largest size this machine saw it cosign for ``origin``.
    Raises ``BadInputError`` for a pin file that is unreadable or malformed."""
    known = _read(pins_path()).get(origin)
    w = known.get("witnesses") if isinstance(known, dict) else None
    if w is None:
        return {}
    if not isinstance(w, dict) or not all(
        isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in w.values()
    ):
        raise BadInputError(f"{pins_path()}: the witnesses pinned for {origin} are malformed")
    return dict(w)


def advance_witnesses(origin: str, sizes: dict[str, int]) -> str:
    """Keep, per witness, the larger of the pinned size and ``sizes`` (verified by the
    caller). Returns "" or why the pin file could not be written."""

    def mutate(pins: dict) -> tuple[Pin, bool]:
        entry = pins.setdefault(origin, {})
        w = entry.setdefault("witnesses", {})
        changed = False
        for name, size in sizes.items():
            if not isinstance(w.get(name), int) or w[name] < size:
                w[name] = size
                changed = True
        return Pin("matches", ""), changed

    got, _path, problem = _locked(mutate)
    return "" if got is not None else problem
