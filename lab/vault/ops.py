"""Vault operations as the lab runs them: each one audited, intent before outcome.

``ingest`` validates a dataset and records ``vault.ingest.intent``, encrypts it in one
transaction, then records ``vault.ingest`` (the outcome); ``delete_source`` then
removes the plaintext only after reading every image back from the vault and matching
its digest. ``read`` hands records to lab code and records the access. ``destroy``
records its intent, crypto-erases the tenant key (the commit), then empties every place
of ``tenant_places``, scans every file of the lab for what it destroyed (without
following links or opening special files), writes a certificate signed by the
performer, and records the outcome. ``reconcile`` (every command that unlocks the lab
runs it) finishes what a crash interrupted: an ingest that committed gets its outcome,
a destroy past its point of no return is finished; and it stops (``TamperedError``) when the vault
and the log disagree (a missing database, a tenant or dataset the log does not know, or
one the log recorded that is gone).

Crash points are driven by the ``hook`` argument (called with a point name), never by
timing: ``after-intent``, ``before-commit``, ``after-commit`` (ingest); ``after-intent``,
``after-point-of-no-return``, ``after-key-overwrite``, ``after-key``,
``after-records-deleted``, ``after-shred``, ``after-place-N``, ``after-places``,
``after-certificate`` (destroy). Past the point of no return (see
``past_point_of_no_return``) a destroy is always finished, never aborted.
"""

from __future__ import annotations

import errno
import hashlib
import importlib
import json
import os
import re
import stat
import tempfile
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

from facelab import __version__, labfs
from facelab.audit import AuditLog, Event, intents
from facelab.errors import BadInputError, FacelabError, TamperedError, VaultError
from facelab.labdir import Lab, load_signing_key
from facelab.synth import dataset_digest
from facelab.vault import certificate, keystore
from facelab.vault.dataset import read_dataset
from facelab.vault.keystore import RootKey
from facelab.vault.store import IngestResult, Record, Vault, check_tenant

Hook = Callable[[str], None] | None

# Where a tenant's data can be, relative to the lab (issue 14): the job runner's
# workspaces, the outbox (refused artifacts stay there), what the export gate released,
# and caches. A component that adds a place adds it here; destroy empties each one and
# the certificate names it.
TENANT_TREES: tuple[tuple[str, str], ...] = (
    ("job workspaces", "jobs/{tenant}"),
    ("outbox, including artifacts the export gate refused", "outbox/{tenant}"),
    ("released artifacts", "released/{tenant}"),
    ("caches", "cache/{tenant}"),
    # what the audit log may not hold: the names and digests of the tenant's files, in
    # salted manifests whose digests the entries record (facelab.manifests)
    ("job and export manifests (names and digests of the tenant's files)", "manifests/{tenant}"),
)
MAX_MODEL_BYTES = 16 << 30  # a registry directory larger than this is not hashed
DESTROYING = "destroying"  # LAB/keys/destroying/<tenant>.json: scan needles, no secrets


def _hook(hook: Hook, point: str) -> None:
    if hook is not None:
        hook(point)


def open_vault(lab: Lab, root: RootKey, **kw) -> Vault:
    return Vault(lab.paths.vault, root, lab.policy.vault, keys_dir=lab.paths.keys, **kw)


def declared_tenants(lab: Lab) -> list[str]:
    """Tenants the policy names: its ``[tenants]`` tables and ``vault.tenants``."""
    raw = lab.policy.raw.get("tenants", {}) if isinstance(lab.policy.raw, dict) else {}
    names = set(raw) if isinstance(raw, dict) else set()
    return sorted(names | set(lab.policy.vault.tenants))


def _vault_tenants(lab: Lab, root: RootKey) -> list[str]:
    with open_vault(lab, root) as v:
        return sorted(t["tenant"] for t in v.tenants())


def check_known_tenant(lab: Lab, root: RootKey, tenant: str, **vault_kw) -> None:
    """BadInputError unless ``tenant`` is in the vault or declared in the policy."""
    with open_vault(lab, root, **vault_kw) as v:
        _check_known(lab, v, tenant)


def _check_known(lab: Lab, v, tenant: str) -> None:
    """``check_known_tenant`` on an open vault (under the tenant's state lock, so that a
    destroy finishing meanwhile cannot be undone by an ingest that checked before it)."""
    if v.has_tenant(tenant):
        return
    present = [r["tenant"] for r in v.tenants()]
    if tenant in declared_tenants(lab):
        return
    known = ", ".join(sorted(set(present) | set(declared_tenants(lab)))) or "none yet"
    raise BadInputError(
        f"tenant {tenant!r} is new (known: {known}); check the spelling, or create it "
        "with --new-tenant (or declare it: facelab policy add-tenant)"
    )


def ingest(
    lab: Lab,
    root: RootKey,
    tenant: str,
    dataset: Path | str,
    actor: str,
    log: AuditLog,
    *,
    delete_source: bool = False,
    hook: Hook = None,
    new_tenant: bool = True,
    **vault_kw,
) -> IngestResult:
    """Encrypt a dataset into the vault, intent and outcome on the record.

    ``new_tenant=False`` (the CLI without ``--new-tenant``): a tenant that is neither in
    the vault nor declared in the policy (``[tenants.NAME]`` or ``vault.tenants``) is a
    BadInputError before anything is read, so that a typo (``acmee``) does not create a
    processor.
    """
    check_tenant(tenant)
    if not new_tenant:
        check_known_tenant(lab, root, tenant, **vault_kw)
    dataset = Path(dataset)
    items = read_dataset(dataset, lab.policy.vault.max_image_side)
    digest = dataset_digest(dataset)
    subjects = len({it.row["subject_id"] for it in items})
    # not the folder's path: an operator's name for it may hold a subject's (red team 14j,
    # case 04: the passport number stayed in the log for good); the digest names it
    details = {"images": len(items), "subjects": subjects}
    state_lock = intents.held(lab.paths.audit, tenant, log.lock_wait)
    with state_lock, open_vault(lab, root, **vault_kw) as v:
        if not new_tenant:  # again under the lock: the first check was a fast refusal
            _check_known(lab, v, tenant)
        if v.has_dataset(tenant, digest):
            res = v.ingest(tenant, items, digest)  # already present: changes nothing
            log.record(
                Event(
                    "vault.ingest",
                    actor,
                    tenant=tenant,
                    object=digest,
                    decision="unchanged",
                    details={**details, "created_tenant": False},
                )
            )
        else:
            seq = intents.begin(
                log, Event("vault.ingest", actor, tenant=tenant, object=digest, details=details)
            )
            _hook(hook, "after-intent")
            if hook is not None:
                v._before_commit = lambda: hook("before-commit")
            try:
                res = v.ingest(tenant, items, digest)
            except BaseException as e:
                failed = Event(
                    "vault.ingest",
                    actor,
                    tenant=tenant,
                    object=digest,
                    decision="failed",
                    details={**details, "error": type(e).__name__},
                )
                intents.finish(log, seq, failed)
                raise
            _hook(hook, "after-commit")
            intents.finish(
                log,
                seq,
                Event(
                    "vault.ingest",
                    actor,
                    tenant=tenant,
                    object=digest,
                    decision="ok",
                    details={**details, "created_tenant": res.created_tenant},
                ),
            )
        if delete_source:
            stored = v.dataset_image_digests(tenant, digest)
            source = sorted(hashlib.sha256(it.png).hexdigest() for it in items)
            if stored != source:
                raise BadInputError(
                    f"{dataset}: the vault's copy does not match the source; the plaintext is kept"
                )
            _delete_source(dataset, [it.row["path"] for it in items])
            log.record(
                Event(
                    "vault.source_deleted",
                    actor,
                    tenant=tenant,
                    object=digest,
                    details={"images": len(items)},
                )
            )
    return res


def _delete_source(root: Path, rel_paths: list[str]) -> None:
    for rel in rel_paths:
        (root / rel).unlink(missing_ok=True)
    for name in ("manifest.csv", "synth.json"):
        (root / name).unlink(missing_ok=True)
    for d in sorted({(root / r).parent for r in rel_paths}, key=lambda p: -len(p.parts)):
        if d != root and d.is_dir() and not any(d.iterdir()):
            d.rmdir()
    if root.is_dir() and not any(root.iterdir()):
        root.rmdir()


def read(
    lab: Lab,
    root: RootKey,
    tenant: str,
    actor: str,
    log: AuditLog,
    split: str | None = None,
    purpose: str = "",
) -> Iterator[Record]:
    """Records of ``tenant`` for lab code, decrypted in memory; the access is recorded."""
    log.record(
        Event(
            "vault.read",
            actor,
            tenant=tenant,
            details={"split": split or "all", "purpose": purpose},
        )
    )

    def failed(rid: str, field: str) -> None:
        log.record(
            Event(
                "vault.open_failed",
                actor,
                tenant=tenant,
                decision="error",
                object=f"record:{rid}",
                details={"field": field},
            )
        )

    with open_vault(lab, root) as v:
        yield from v.records(tenant, split, on_error=failed)


# ---------------------------------------------------------------- files, safely


def _walk(
    root_dir: Path | str,
    unreadable: list[str] | None = None,
    *,
    skip_dirs: set[str] | None = None,
    dev: int | None = None,
):
    """``(dirpath, dirs, others)`` for every directory under ``root_dir``, top down, with
    an explicit stack (``os.walk`` recurses: a tree 2,000 deep was a RecursionError and a
    traceback in destroy; red team 2, r02). ``dirs`` are real directories; ``others``
    everything else, links to directories included (never followed). Directories that
    cannot be listed are appended to ``unreadable``. Directories in ``skip_dirs`` (mount
    points) and, with ``dev``, on another device are listed in ``dirs`` but not
    entered."""
    stack = [os.fspath(root_dir)]
    while stack:
        top = stack.pop()
        dirs, others = [], []
        try:
            with os.scandir(top) as it:
                for e in it:
                    try:
                        is_dir = e.is_dir(follow_symlinks=False)
                    except OSError:
                        is_dir = False
                    (dirs if is_dir else others).append(e.name)
        except OSError:
            if unreadable is not None:
                unreadable.append(_shown(top))
            continue
        enter = [d for d in dirs if not _crossing(os.path.join(top, d), skip_dirs, dev)]
        yield top, dirs, others
        stack.extend(os.path.join(top, d) for d in reversed(enter))


def _crossing(path: str, skip_dirs: set[str] | None, dev: int | None) -> bool:
    """Whether directory ``path`` is a mount point (in ``skip_dirs``) or on another
    device than ``dev``; a crossing found by device is added to ``skip_dirs``."""
    if skip_dirs is not None and path in skip_dirs:
        return True
    if dev is None:
        return False
    try:
        other = os.lstat(path).st_dev != dev
    except OSError:
        return False
    if other and skip_dirs is not None:
        skip_dirs.add(path)
    return other


def _regular_files(
    root_dir: Path, skip: set[Path] | None = None, unreadable: list[str] | None = None
) -> Iterator[tuple[Path, int]]:
    """(path, size) of every regular file under ``root_dir``: no link followed, no
    special file (FIFO, socket, device) opened; those are counted by ``scan_lab``."""
    for dirpath, _dirs, files in _walk(root_dir, unreadable):
        for name in files:
            p = Path(dirpath) / name
            if skip and p in skip:
                continue
            try:
                st = os.lstat(p)
            except OSError:
                continue
            yield p, st.st_mode if not stat.S_ISREG(st.st_mode) else -st.st_size - 1


def _read_chunks(
    p: Path, chunk: int = 1 << 20, *, sparse: bool = False, limit: int | None = None
) -> Iterator[bytes]:
    """The bytes of regular file ``p`` in chunks (nothing for anything else; links not
    followed). ``limit``: at most that many bytes. ``sparse``: holes are not read; each
    is given as at most 64 zero bytes, as far as any 64-byte needle can reach into it (a
    4 TiB sparse file kept destroy scanning for hours; red team 2, r01). For scans only:
    the chunks are then not the file's bytes."""
    fd = os.open(p, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            return
        size = st.st_size if limit is None else min(st.st_size, limit)
        pos = 0
        while pos < size:
            start, end = pos, size
            if sparse:
                try:
                    start = os.lseek(fd, pos, os.SEEK_DATA)
                    end = min(size, os.lseek(fd, start, os.SEEK_HOLE))
                except OSError as e:
                    if e.errno != errno.ENXIO:  # no SEEK_DATA here: read it all
                        sparse = False
                        continue
                    start = size  # only a hole is left
                if start > pos:
                    yield bytes(min(64, start - pos))
                start = min(start, size)
            while start < end:
                b = os.pread(fd, min(chunk, end - start), start)
                if not b:
                    return
                yield b
                start += len(b)
            pos = max(end, start)
    finally:
        os.close(fd)


# needles at least this long are found by their 8-byte pieces (``_long_matcher``): any
# occurrence of 15 or more bytes holds one whole 8-byte-aligned word of the buffer
_LONG = 16


def _long_matcher(needles: list[bytes]) -> Callable[[bytes], bool]:
    """Whether a buffer holds any of ``needles`` (each at least ``_LONG`` bytes): every
    8-byte piece of every needle, at every offset, is a key; the buffer's aligned 8-byte
    words are looked up all at once (numpy), and only a word that is a key is checked
    byte for byte around it. Binary needles (runs of images and ciphertext, thousands)
    made the trie's expression branch 256 ways at each byte: 0.8 s per MiB; this is
    about a pass of numpy over the buffer."""
    import numpy as np

    by_key: dict[int, list[bytes]] = {}
    for n in needles:
        for i in range(len(n) - 7):
            by_key.setdefault(int.from_bytes(n[i : i + 8], "little"), []).append(n)
    keys = np.array(sorted(by_key), dtype=np.uint64)

    def hit(b: bytes) -> bool:
        words = np.frombuffer(b, dtype="<u8", count=len(b) // 8)
        if not len(words) or not len(keys):
            return False
        # keys are sorted once: a binary search per word, no sort of the keys per buffer
        pos = np.minimum(np.searchsorted(keys, words), len(keys) - 1)
        at = np.flatnonzero(keys[pos] == words)
        for w in at.tolist():
            start = 8 * w
            for n in by_key[int(words[w])]:
                lo = max(0, start - len(n))
                if n in b[lo : start + 8 + len(n)]:
                    return True
        return False

    return hit


def _matcher(needles: list[bytes]) -> Callable[[bytes], bool]:
    """Whether a buffer holds any of ``needles``, in one pass each way: needles of
    ``_LONG`` bytes or more by their 8-byte pieces (``_long_matcher``), the rest by a
    regular expression built from their trie. Testing each needle with ``in`` costs one
    pass per needle: with the subjects' identifiers (thousands) that was 1.8 s per MiB,
    the trie about 10 ms."""
    long = [n for n in needles if len(n) >= _LONG]
    short = _short_matcher([n for n in needles if n and len(n) < _LONG])
    if not long:
        return short
    big = _long_matcher(long)
    return lambda b: big(b) or short(b)


def _short_matcher(needles: list[bytes]) -> Callable[[bytes], bool]:
    """The trie's regular expression (see ``_matcher``)."""

    trie: dict = {}
    for n in needles:
        if n:
            d = trie
            for c in n:
                d = d.setdefault(c, {})
            d[-1] = {}
    if not trie:
        return lambda _b: False

    def build(d: dict) -> bytes:
        alts = [re.escape(bytes([k])) + build(v) for k, v in sorted(d.items()) if k >= 0]
        if not alts:
            return b""
        r = alts[0] if len(alts) == 1 else b"(?:" + b"|".join(alts) + b")"
        return b"(?:" + r + b")?" if -1 in d else r

    rx = re.compile(build(trie), re.DOTALL)
    return lambda b: rx.search(b) is not None


# files up to this size are also hashed whole against the digests the log recorded
MAX_HASHED = 256 << 20


def _file_sha256(p: Path) -> str:
    """SHA-256 of regular file ``p`` read plainly (holes as zeros), "" when unreadable."""
    from facelab import labfs

    try:
        return labfs.sha256(p, MAX_HASHED, what="a lab file")
    except (OSError, FacelabError):
        return ""


def recorded_digests(lab: Lab, tenant: str) -> tuple[set[str], list[str]]:
    """SHA-256 (hex) of every file ``tenant``'s jobs wrote or its exports were given
    (refused ones too), and the manifests that could not be read.

    A copy of one of those files left anywhere in the lab is the tenant's data, whether
    or not its bytes hold an identifier (red team 14h, case 40: a refused artifact moved
    out of the outbox before destroy). The log holds only the salted digest of each
    job's and export's manifest (``facelab.manifests``), so the digests come from the
    manifests, each checked against its entry; they must be read before destroy removes
    them. A manifest that is missing or does not match its entry, for a job or export
    that had files, is named in the second list: destroy cannot say that no copy of
    those files is left, so it does not certify "passed" (fail closed). A digest another
    tenant's jobs or exports also have (the same error text, say) is left out: that
    tenant's copy is its own. Entries written before the manifests (``outputs`` lines,
    ``source_sha256`` lists) are read as they are."""
    from facelab import manifests
    from facelab.audit.read import entries

    per: dict[str, set[str]] = {}
    unverified: list[str] = []
    # a tenant destroyed before (and back since) had its manifests removed then: what its
    # entries from before that destruction name was looked for by that destroy
    gone: dict[str, int] = {}
    for e in entries(lab.paths.audit, b'"vault.destroy"'):
        if e.get("action") == "vault.destroy" and e.get("decision") in ("destroyed", "failed"):
            gone[str(e.get("tenant"))] = int(e.get("seq", 0))

    def current(e: dict) -> bool:
        return int(e.get("seq", 0)) > gone.get(str(e.get("tenant")), -1)

    def manifest(t: str, name: str, sha: object, files: object) -> None:
        try:
            doc = manifests.read(lab.paths.root, t, name, sha)
        except FacelabError:
            doc = None
        if doc is not None:
            per.setdefault(t, set()).update(manifests.digests(doc))
        elif t == tenant and (not isinstance(files, int) or files > 0) and name not in unverified:
            unverified.append(name)

    for e in entries(lab.paths.audit, b'"job.finish"'):
        d, t = e.get("details"), str(e.get("tenant"))
        if not isinstance(d, dict) or not current(e):
            continue
        if isinstance(d.get("outputs"), list):  # before the manifests
            got = per.setdefault(t, set())
            got.update(str(x).partition("  ")[0] for x in d["outputs"] if isinstance(x, str))
        if "manifest_sha256" in d or d.get("output_files", 0) != 0:
            manifest(
                t,
                manifests.job_name(str(e.get("object"))),
                d.get("manifest_sha256"),
                d.get("output_files"),
            )
    for e in entries(lab.paths.audit, b'"export.'):
        d, t = e.get("details"), str(e.get("tenant"))
        if not isinstance(d, dict) or not current(e):
            continue
        if isinstance(d.get("source_sha256"), list):  # before the manifests
            got = per.setdefault(t, set())
            got.update(x for x in d["source_sha256"] if isinstance(x, str))
        if "manifest" in d:
            manifest(t, str(d["manifest"]), d.get("manifest_sha256"), d.get("artifacts"))
    mine = per.pop(tenant, set())
    for theirs in per.values():
        mine -= theirs
    return {x for x in mine if re.fullmatch(r"[0-9a-f]{64}", x)}, unverified


def scan_lab(
    root_dir: Path,
    needles: list[bytes],
    skip: set[Path] | None = None,
    stats: dict | None = None,
    digests: set[str] | frozenset[str] = frozenset(),
) -> list[str]:
    """Every regular file under ``root_dir`` (WAL and journals included) holding a needle,
    or (up to ``MAX_HASHED`` bytes) whose SHA-256 is one of ``digests``.

    Reads each file in 1 MiB chunks with an overlap of the longest needle, never whole;
    links are not followed and special files are not opened (``stats`` counts files
    scanned, bytes, and what was skipped).
    """
    found = []
    needles = [n for n in needles if n]
    overlap = max((len(n) for n in needles), default=1) - 1
    st = stats if stats is not None else {}
    st.setdefault("files", 0)
    st.setdefault("bytes", 0)
    st.setdefault("skipped_links_or_special", 0)
    hit = _matcher(needles)
    unreadable = st.setdefault("unreadable_directories", [])
    for p, code in _regular_files(root_dir, skip, unreadable):
        if code >= 0:  # not a regular file: a link, FIFO, socket or device
            st["skipped_links_or_special"] += 1
            continue
        st["files"] += 1
        carry = b""
        try:
            for b in _read_chunks(p, sparse=True):
                st["bytes"] += len(b)
                window = carry + b
                if hit(window):
                    found.append(_shown(p))
                    break
                carry = window[-overlap:] if overlap else b""
            else:
                if digests and -code - 1 <= MAX_HASHED and _file_sha256(p) in digests:
                    found.append(_shown(p))
        except OSError:
            continue
    found += _scan_metadata(root_dir, needles, skip, st)
    return found


def _shown(p: Path | str) -> str:
    """A path as text for a certificate: bytes that are not UTF-8 escaped, never an
    encoding error (a file name can hold any byte but '/' and NUL)."""
    return os.fsencode(p).decode("utf-8", "backslashreplace")


def _scan_metadata(
    root_dir: Path, needles: list[bytes], skip: set[Path] | None, st: dict
) -> list[str]:
    """Names and extended attributes of every entry under ``root_dir`` holding a needle:
    key material need not sit in a file's contents (a user xattr on any file, or the
    name of an empty file whose path spells the key, '/' bytes making directories).
    Names are compared with '/' (and NUL, which no name holds) removed from both, raw and
    as hex; xattr values raw and as hex. Links are not followed."""
    forms = []
    for n in needles:
        if len(n) >= 16:
            forms += [n.replace(b"/", b"").replace(b"\0", b""), n.hex().encode()]
    in_name, in_value = _matcher(forms), _matcher([*needles, *forms])
    found = []
    st.setdefault("names_and_xattrs", 0)
    for dirpath, dirs, files in _walk(root_dir):
        for name in dirs + files:
            p = Path(dirpath) / name
            if skip and p in skip:
                continue
            st["names_and_xattrs"] += 1
            rel = os.fsencode(os.path.relpath(p, root_dir)).replace(b"/", b"")
            if in_name(rel):
                found.append(f"{_shown(p)} (its path)")
                continue
            try:
                attrs = os.listxattr(p, follow_symlinks=False)
            except OSError:
                continue
            for a in attrs:
                try:
                    v = os.getxattr(p, a, follow_symlinks=False)
                except OSError:
                    continue
                if in_value(v):
                    found.append(f"{_shown(p)} (extended attribute {_shown(a)})")
                    break
    return found


SAMPLE = 64  # bytes of a needle taken from a removed file
MIN_WHOLE = 24  # a file shorter than SAMPLE is its own needle from this length on


def _windows(data: bytes) -> list[bytes]:
    """Candidate needles from a file's bytes, most distinct bytes first, each with at
    least 12 distinct bytes (a run of zeros or a repeated pattern would match unrelated
    files): 15 windows of 64 bytes spread over a file of 256 bytes or more; the first,
    middle and last 64 bytes of a shorter one; the whole file when it is shorter than
    64 bytes and at least ``MIN_WHOLE`` long (red team 14g, 23: a 128-byte file of a
    name and a passport number had no needle at all)."""
    n = len(data)
    if n < MIN_WHOLE:
        return []
    if n <= SAMPLE:
        return [data] if len(set(data)) >= 10 else []
    if n < 256:
        wins = [data[:SAMPLE], data[(n - SAMPLE) // 2 : (n + SAMPLE) // 2], data[-SAMPLE:]]
    else:
        step = n // 16
        wins = [data[k * step : k * step + SAMPLE] for k in range(1, 16)]
    wins = [w for w in wins if len(set(w)) >= 12]
    return sorted(wins, key=lambda w: len(set(w)), reverse=True)


def _sample(data: bytes) -> bytes | None:
    """The most distinct of :func:`_windows`, or None."""
    wins = _windows(data)
    return wins[0] if wins else None


def _found_in(root_dir: Path, needles: set[bytes]) -> set[bytes]:
    """Which of ``needles`` occur in the regular files under ``root_dir`` (links not
    followed, special files not opened, files read in chunks)."""
    found: set[bytes] = set()
    if not needles or not root_dir.is_dir() or root_dir.is_symlink():
        return found
    overlap = max(len(n) for n in needles) - 1
    for p, code in _regular_files(root_dir):
        if code >= 0:
            continue
        carry = b""
        try:
            for b in _read_chunks(p, sparse=True):
                window = carry + b
                found.update(n for n in needles - found if n in window)
                carry = window[-overlap:]
        except OSError:
            continue
    return found


def linked_ancestor(root: Path, path: Path) -> Path | None:
    """The first directory between ``root`` (excluded) and ``path`` (excluded) that is a
    symbolic link or not a directory, or None. A place whose parent is a link would be
    reached through it: destroy neither follows it nor removes what is behind it."""
    try:
        rel = path.relative_to(root)
    except ValueError:
        return path
    cur = root
    for part in rel.parts[:-1]:
        cur = cur / part
        try:
            st = os.lstat(cur)
        except FileNotFoundError:
            return None  # nothing below: nothing to follow
        if not stat.S_ISDIR(st.st_mode):
            return cur
    return None


def mount_points_under(path: Path) -> list[str]:
    """Mount points at or below ``path`` (``/proc/self/mountinfo``, field 5, octal
    escapes decoded; bind mounts of the same file system included, which ``st_dev``
    does not show). Empty when the table cannot be read."""
    try:
        real = os.path.realpath(path)
        with open("/proc/self/mountinfo", "rb") as f:
            table = f.read(1 << 22)
    except OSError:
        return []
    out = []
    for line in table.splitlines():
        fields = line.split(b" ")
        if len(fields) < 5:
            continue
        mp = re.sub(rb"\\([0-7]{3})", lambda m: bytes([int(m.group(1), 8)]), fields[4])
        mp_s = os.fsdecode(mp)
        if mp_s == real or mp_s.startswith(real.rstrip("/") + "/"):
            out.append(mp_s)
    return sorted(set(out))


def mounted_ancestor(root: Path, path: Path) -> str | None:
    """The first mount point strictly between ``root`` and ``path`` (a bind mount on
    ``LAB/outbox`` puts every tenant's outbox outside the lab: red team 14j, case 26),
    or None. Destroy does not remove a place reached through one."""
    real_root = os.path.realpath(root).rstrip("/")
    real = os.path.realpath(path)
    above = [
        m
        for m in mount_points_under(Path(real_root))
        if m != real_root and m != real and real.startswith(m.rstrip("/") + "/")
    ]
    return min(above, key=len) if above else None


def _remove_tree(path: Path) -> dict:
    """Remove ``path`` (a directory tree, a file or a link) without following links,
    opening special files or crossing into another mount: say what was there. A mount
    point inside (a bind mount of a directory outside the lab, red team 14i case 24) is
    found before anything is removed, neither entered nor removed, and listed under
    ``mounts``: the place is then NOT fully removed (the certificate says FAILED) and
    nothing behind the mount is touched. A regular file with another hard link
    (``st_nlink`` > 1) is unlinked like any other but listed under ``hard_linked``:
    another name keeps its bytes (red team 14h, case 41: a tenant file linked from
    outside the lab), and which name is the tenant's cannot be told (case 28: a link
    *to* the lab's sealed key, planted in the outbox, must not be written through), so
    destroy never overwrites through it and the verification says FAILED instead."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return {"action": "nothing there", "files": 0, "bytes": 0}
    mounts = mount_points_under(path)
    if mounts and os.path.realpath(path) in mounts:
        return {
            "action": "NOT removed (a mount point: not crossed)",
            "files": 0,
            "bytes": 0,
            "mounts": [_shown(Path(m)) for m in mounts[:16]],
        }
    if not stat.S_ISDIR(st.st_mode):
        path.unlink()
        kind = "a link, removed (not followed)" if stat.S_ISLNK(st.st_mode) else "removed"
        out = {"action": kind, "files": 1, "bytes": st.st_size}
        if stat.S_ISREG(st.st_mode) and st.st_nlink > 1:
            out["hard_linked"] = [_shown(path)]
        return out
    skip = set(mounts)
    files = total = 0
    linked: list[str] = []
    tops: list[str] = []
    kept: list[str] = []
    try:
        # walked at its real path (no link above it: ``linked_ancestor``), as mountinfo
        for top, dirs, others in _walk(os.path.realpath(path), skip_dirs=skip, dev=st.st_dev):
            tops.append(top)
            kept.extend(os.path.join(top, d) for d in dirs if os.path.join(top, d) in skip)
            for name in others:  # files, links and special files: unlinked, never opened
                p = os.path.join(top, name)
                st_p = os.lstat(p)
                files += 1
                total += st_p.st_size if stat.S_ISREG(st_p.st_mode) else 0
                if stat.S_ISREG(st_p.st_mode) and st_p.st_nlink > 1 and len(linked) < 64:
                    linked.append(_shown(p))
                os.unlink(p)
        for top in reversed(tops):  # deepest first; a directory above a mount stays
            if not any(k == top or k.startswith(top.rstrip("/") + "/") for k in kept):
                os.rmdir(top)
    except OSError as e:
        return {
            "action": f"NOT fully removed ({e.strerror or e})",
            "files": files,
            "bytes": total,
        }
    if kept:
        return {
            "action": "NOT fully removed (a mount point inside: not crossed)",
            "files": files,
            "bytes": total,
            "mounts": [_shown(Path(k)) for k in kept[:16]],
        }
    out = {"action": "removed (every file unlinked)", "files": files, "bytes": total}
    return {**out, "hard_linked": linked} if linked else out


def registered_model_dirs(lab: Lab) -> list[Path]:
    """The directories of the model registry (``LAB/models``) that hold exactly what was
    registered: each listed in ``registry.json`` and whose content digest (the package
    digest of ``Package.digest``, over regular files only) is the one recorded. A
    directory with a file added, changed, linked or special is not one of them."""
    from facelab.jsonfile import read_json

    models = lab.paths.root / "models"
    try:
        entries = read_json(
            models / "registry.json", what="model registry", expect=list, follow=False
        )
    except (FileNotFoundError, BadInputError):
        return []
    out = []
    for e in entries:
        if not isinstance(e, dict) or not isinstance(e.get("path"), str):
            continue
        d = models / e["path"]
        if model_dir_intact(d, e):
            out.append(d)
    return out


def content_digest(d: Path) -> str | None:
    """``sha256:`` over the regular files under ``d`` (relative paths and SHA-256s, as
    ``Package.digest``), or None when ``d`` holds a link or a special file, or more than
    ``MAX_MODEL_BYTES``."""
    import hashlib
    from pathlib import PurePosixPath

    if not d.is_dir() or d.is_symlink():
        return None
    digests, total = {}, 0
    for p, code in _regular_files(d):
        total += -code - 1 if code < 0 else 0
        if code >= 0 or total > MAX_MODEL_BYTES:  # special, or no model is that big
            return None
        h = hashlib.sha256()
        for b in _read_chunks(p):
            h.update(b)
        digests[p.relative_to(d).as_posix()] = h.digest()
    h = hashlib.sha256()
    for rel in sorted(digests, key=lambda r: PurePosixPath(r).parts):
        h.update(rel.encode() + b"\0" + digests[rel])
    return "sha256:" + h.hexdigest()


def model_dir_intact(d: Path, entry: dict) -> bool:
    """Whether registry directory ``d`` holds exactly what ``entry`` registered: its
    :func:`content_digest` is the entry's ``stored_digest`` (the copy the import gate
    rebuilt) or, for entries from before the rebuild, its ``digest``."""
    rel_name = str(entry.get("path", ""))
    if not rel_name or "/" in rel_name:
        return False
    got = content_digest(d)
    return got is not None and got in (entry.get("stored_digest"), entry.get("digest"))


def _tree_samples(
    path: Path, limit: int = 64, shared: list[Path] = (), others: list[Path] = ()
) -> list[bytes]:
    """One needle per regular file under ``path`` (at most ``limit`` files).

    A window that also occurs in a file of ``shared`` (the registered model directories,
    verified against their digests) is not chosen: a model a tenant's job derived from
    an imported model carries the imported model's bytes, which the registry keeps by
    right, so such a window would report the registry as a copy of the tenant's data
    (newcomer report, H1). A file whose every window is shared gets no needle (its bytes
    are the registry's). A file added to the registry is not shared: it is scanned.
    A small file's needle (under 256 bytes) that also occurs in ``others`` (the other
    tenants' places) is not chosen either: short files such as a job's status look alike
    across tenants, and the other tenant's own copy is not this tenant's data.
    """
    per_file: list[tuple[list[bytes], bool]] = []  # (windows, the file is small)
    if not path.is_dir() or path.is_symlink():
        return []
    for p, code in _regular_files(path):
        if code >= 0 or len(per_file) >= limit:
            continue
        try:
            data = b"".join(_read_chunks(p, 1 << 16, limit=1 << 20))
        except OSError:
            continue
        wins = _windows(data)
        if wins:
            per_file.append((wins, len(data) < 256))
    common: set[bytes] = set()
    for d in shared:
        common |= _found_in(d, {w for wins, _ in per_file for w in wins} - common)
    small = {w for wins, is_small in per_file if is_small for w in wins} - common
    for d in others:
        common |= _found_in(d, small - common)
    out = []
    for wins, _ in per_file:
        own = [w for w in wins if w not in common]
        if own:
            out.append(own[0])
    return out


# ---------------------------------------------------------------- destroy


def tenant_places(lab: Lab, tenant: str) -> list[tuple[str, Path]]:
    """Every place of ``tenant``'s data in the lab (see ``TENANT_TREES``), beside the
    vault's records and the key store's tenant key."""
    return [(name, lab.paths.root / rel.format(tenant=tenant)) for name, rel in TENANT_TREES]


def destroy_plan(lab: Lab, root: RootKey, tenant: str) -> list[dict]:
    """What :func:`destroy` would empty for ``tenant``, touching nothing: the tenant key,
    the vault's records and every place of ``TENANT_TREES`` (the same list destroy
    walks), each with what is there now. Raises BadInputError like destroy does."""
    check_tenant(tenant)
    key = keystore.tenant_key_path(lab.paths.keys, tenant)
    with open_vault(lab, root) as v:
        present = v.has_tenant(tenant)
        inv = v.inventory(tenant)
    places = [
        {
            "place": "tenant key (key store)",
            "path": str(key),
            "now": "present" if key.exists() else "absent",
            "action": "overwrite and unlink (cryptographic erase)",
        },
        {
            "place": "vault records",
            "path": str(lab.paths.vault),
            "now": f"{inv['records']} records of {inv['subjects']} subjects, "
            f"{len(inv['datasets'])} datasets",
            "action": "delete with secure_delete, rebuild the database, truncate the WAL",
        },
    ]
    for name, path in tenant_places(lab, tenant):
        if os.path.lexists(path):
            files = sum(1 for q in path.rglob("*") if not q.is_dir()) if path.is_dir() else 1
            now = f"{files} files"
        else:
            now = "absent"
        places.append({"place": name, "path": str(path), "now": now, "action": "remove"})
    if not present and not key.exists() and all(p["now"] == "absent" for p in places[2:]):
        raise BadInputError(
            f"tenant {tenant!r} has no data in this vault (tenants: "
            f"{', '.join(_vault_tenants(lab, root)) or 'none'})"
        )
    places.append(
        {
            "place": "the whole lab",
            "path": str(lab.paths.root),
            "now": "",
            "action": "scanned afterwards for any copy (certificate says passed or FAILED)",
        }
    )
    return places


def _needles_path(lab: Lab, tenant: str) -> Path:
    return lab.paths.keys / DESTROYING / f"{tenant}.json"


def _write_side(side: Path, doc: dict) -> None:
    """The destroy's side file, durably (temporary file, fsync, rename, fsync dir). Any
    thing but a regular file at its path (a FIFO, a link) is refused, never opened or
    silently replaced (red team 14g, 09); the first write comes before the intent, so
    nothing has changed then."""
    side.parent.mkdir(mode=0o700, exist_ok=True)
    labfs.require_regular(side)
    tmp = side.with_suffix(".tmp")
    if os.path.lexists(tmp):
        os.unlink(tmp)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        os.write(fd, json.dumps(doc).encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    os.rename(tmp, side)
    keystore._fsync_dir(side.parent)


def _read_side(lab: Lab, tenant: str) -> dict:
    try:
        doc = json.loads(labfs.read_text(_needles_path(lab, tenant), what="scan needles"))
        return doc if isinstance(doc, dict) else {}
    except (OSError, ValueError, BadInputError):
        return {}


def past_point_of_no_return(lab: Lab, tenant: str) -> bool:
    """Whether an interrupted destroy of ``tenant`` passed its point of no return.

    The point of no return is written to the side file (``committed``, durably) just
    before the first destructive step, the overwrite of the tenant key; a key file that
    is gone says the same for destroys that wrote no mark. Past it, every crash point
    (key intact, overwritten but present, unlinked, records deleted, VACUUM not run,
    places half removed, certificate written) is finished by ``_finish_destroy``, never
    aborted (red team 14g, 01: a kill between the overwrite and the unlink was recorded
    as aborted, and the overwritten file then read as tampering forever)."""
    if _read_side(lab, tenant).get("committed") is True:
        return True
    return keystore.load_tenant_key(lab.paths.keys, tenant) is None


# identifiers that are distinctive enough to be needles of their own (see README)
MIN_DOCUMENT_NO = 6
MIN_NAME = 12


def identifier_needles(lab: Lab, root: RootKey, tenant: str) -> list[bytes]:
    """The personal identifiers of ``tenant``'s data subjects, as scan needles: document
    (passport) numbers of at least ``MIN_DOCUMENT_NO`` characters and full names of at
    least ``MIN_NAME`` with a space, as stored and as JSON escapes them. A value that
    another tenant's records also hold is left out: the other tenant's copy (a report
    about that person) is not this tenant's data. Read from the vault before the key is
    erased; kept in memory only (never in the side file, the log or the certificate).
    Birth dates, nationalities and subject ids are not needles: they collide. Also two
    32-byte runs of each image's compressed pixels (``Vault.image_samples``), so that a
    plain copy of a face left anywhere in the lab is found."""
    with open_vault(lab, root) as v:
        if not v.has_tenant(tenant) or keystore.load_tenant_key(lab.paths.keys, tenant) is None:
            return []
        try:
            mine = v.identifiers(tenant)
        except VaultError:
            return []
        theirs: dict[str, set[str]] = {"passport_no": set(), "name": set()}
        for t in v.tenants():
            if t["tenant"] == tenant:
                continue
            try:
                ids = v.identifiers(t["tenant"])
            except (VaultError, BadInputError):
                continue
            for k in theirs:
                theirs[k] |= ids.get(k, set())
        try:  # and runs of each image's compressed pixels: a plain copy of a face
            samples = v.image_samples(tenant)
        except VaultError:
            samples = set()
    docs, names = mine["passport_no"] - theirs["passport_no"], mine["name"] - theirs["name"]
    values = [x for x in docs if len(x.strip()) >= MIN_DOCUMENT_NO]
    values += [x for x in names if len(x) >= MIN_NAME and " " in x.strip()]
    out: set[bytes] = set(samples)
    for x in values:
        out.add(x.encode())
        out.add(json.dumps(x)[1:-1].encode())
    return sorted(out)


def _other_tenants_places(lab: Lab, tenant: str) -> list[Path]:
    """The places of ``TENANT_TREES`` that belong to other tenants (real directories)."""
    out = []
    for _, rel in TENANT_TREES:
        parent = (lab.paths.root / rel.format(tenant=tenant)).parent
        if not parent.is_dir() or parent.is_symlink():
            continue
        for q in parent.iterdir():
            if q.name != tenant and q.is_dir() and not q.is_symlink():
                out.append(q)
    return out


DESTROY_LOCK = "_destroy"  # lab-wide: one destroy's shred and scan at a time


def destroy(
    lab: Lab,
    root: RootKey,
    tenant: str,
    actor: str,
    log: AuditLog,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    *,
    hook: Hook = None,
) -> Path:
    """Destroy every copy of ``tenant``'s data and return the certificate's path.

    Raises ``BadInputError`` for a tenant with nothing in the lab, and (after writing a
    certificate that says FAILED, and the outcome) when the verification finds a copy.
    The tenant's state lock is held throughout (``intents.held``), and the lab-wide
    destroy lock: two destroys of different tenants never run at once, so one's scan
    never reads the database and WAL while the other rewrites them (red team 14g: a
    false FAILED naming vault.db and vault.db-wal). A destroy of ``tenant`` interrupted
    earlier (its intent still open) is finished first if it passed its point of no
    return (that certificate is returned), else closed as aborted and started afresh.
    """
    check_tenant(tenant)
    with (
        intents.held(lab.paths.audit, tenant, log.lock_wait),
        intents.held(lab.paths.audit, DESTROY_LOCK, log.lock_wait),
    ):
        for e in intents.open_intents(lab.paths.audit, "vault.destroy"):
            if e.get("tenant") == tenant:
                path = _reconcile_destroy(lab, root, log, actor, e, clock)
                if path is not None:
                    return path
        return _destroy(lab, root, tenant, actor, log, clock, hook)


def _destroy(
    lab: Lab,
    root: RootKey,
    tenant: str,
    actor: str,
    log: AuditLog,
    clock: Callable[[], datetime],
    hook: Hook,
) -> Path:
    wrapped = keystore.load_tenant_key(lab.paths.keys, tenant)
    if wrapped is not None:
        _check_key_is_the_tenants(lab, root, tenant, wrapped)
    with open_vault(lab, root) as v:
        present = v.has_tenant(tenant)
        inv = v.inventory(tenant)
    trees = [
        p
        for _, p in tenant_places(lab, tenant)
        if os.path.lexists(p) and linked_ancestor(lab.paths.root, p) is None
    ]
    if not present and wrapped is None and not trees:
        raise BadInputError(
            f"tenant {tenant!r} has no data in this vault (tenants: "
            f"{', '.join(_vault_tenants(lab, root)) or 'none'})"
        )
    certificate.check_dir(lab.paths.root / "certificates")  # before anything is erased
    # what the scan looks for afterwards: ciphertext and file samples (no secret), kept
    # apart from the log so that a destroy finished after a crash can scan too; the
    # subjects' identifiers stay in memory
    needles = [*inv.pop("ciphertext_samples")]
    registered = registered_model_dirs(lab) if trees else []
    others = _other_tenants_places(lab, tenant) if trees else []
    for p in trees:
        needles += _tree_samples(p, shared=registered, others=others)
    ids = identifier_needles(lab, root, tenant)
    # the digests of the tenant's files, from its manifests, before they are removed
    digests, unverified = recorded_digests(lab, tenant)
    side = _needles_path(lab, tenant)
    doc = {
        "needles": [n.hex() for n in needles],
        "inventory": inv,
        "committed": False,
        "digests": sorted(digests),
        "manifests_unverified": unverified,
    }
    _write_side(side, doc)
    seq = intents.begin(
        log,
        Event(
            "vault.destroy",
            actor,
            tenant=tenant,
            details={
                "records": inv["records"],
                "subjects": inv["subjects"],
                "datasets": inv["datasets"][:64],
                "places": 2 + len(TENANT_TREES),
            },
        ),
    )
    _hook(hook, "after-intent")
    # the point of no return, durable before the first destructive step
    key_sha = hashlib.sha256(wrapped).hexdigest() if wrapped else None
    _write_side(side, {**doc, "committed": True, "wrapped_key_sha256": key_sha})
    _hook(hook, "after-point-of-no-return")
    extra = [wrapped] if wrapped else []
    return _finish_destroy(lab, root, tenant, actor, log, seq, extra, clock, hook, identifiers=ids)


def _finish_destroy(
    lab: Lab,
    root: RootKey,
    tenant: str,
    actor: str,
    log: AuditLog,
    seq: int,
    extra_needles: list[bytes],
    clock: Callable[[], datetime],
    hook: Hook = None,
    reconciled: bool = False,
    identifiers: list[bytes] | None = None,
) -> Path:
    """Every step after the point of no return, each idempotent, so that a destroy
    killed anywhere after it is finished by running this again (``reconciled``)."""
    side = _needles_path(lab, tenant)
    cert_id = hashlib.sha256(f"{lab.lab_id}|{tenant}|{seq}".encode()).hexdigest()[:24]
    if reconciled:
        done = _certificate_of(lab, tenant, cert_id)
        if done is not None:  # killed after its certificate: that one is the record
            path, ok = done
            side.unlink(missing_ok=True)  # before the outcome: see below
            _record_destroy(lab, log, actor, tenant, seq, path, reconciled, adopted=True)
            if not ok:
                raise BadInputError(f"{lab.paths.root}: destroy could not be verified; see {path}")
            return path
    saved = _read_side(lab, tenant)
    try:
        needles = [bytes.fromhex(h) for h in saved["needles"]]
        inv = saved["inventory"]
    except (KeyError, TypeError, ValueError):
        needles, inv = [], {"records": 0, "subjects": 0, "datasets": [], "columns": []}
    needles += extra_needles
    digests = saved.get("digests")
    unverified = saved.get("manifests_unverified")
    if not isinstance(digests, list) or not isinstance(unverified, list):
        # no side file (or one from before the manifests): what the manifests left say
        found, unverified = recorded_digests(lab, tenant)
        digests = sorted(found)
    digests = {str(x) for x in digests if re.fullmatch(r"[0-9a-f]{64}", str(x))}
    unverified = [str(x) for x in unverified][:64]
    if identifiers is None:  # finishing after a crash: readable only if the key still is
        identifiers = []
        wrapped = keystore.load_tenant_key(lab.paths.keys, tenant)
        if wrapped is not None and _key_opens(root, tenant, wrapped):
            needles.append(wrapped)
            identifiers = identifier_needles(lab, root, tenant)
    needles += identifiers
    places: list[dict] = []
    erased_now = keystore.destroy_tenant_key(
        lab.paths.keys, tenant, after_overwrite=lambda: _hook(hook, "after-key-overwrite")
    )
    _hook(hook, "after-key")
    key_sha = saved.get("wrapped_key_sha256") or (erased_now if not reconciled else None)
    places.append(
        {
            "place": "tenant key (key store)",
            "path": str(
                keystore.tenant_key_path(lab.paths.keys, tenant).relative_to(lab.paths.root)
            ),
            "action": "overwritten and unlinked (cryptographic erase)"
            if erased_now and not reconciled
            else "overwritten and unlinked (finished after an interruption)"
            if erased_now
            else "already gone (erased before an interruption)",
            "wrapped_key_sha256": key_sha,
        }
    )
    with open_vault(lab, root) as v:
        if hook is not None:
            v._after_delete = lambda: hook("after-records-deleted")
        shredded = v.shred(tenant)
    _hook(hook, "after-shred")
    places.append(
        {
            "place": "vault records",
            "path": lab.paths.vault.name,
            "action": "deleted with secure_delete, database rebuilt (VACUUM), WAL truncated",
            "records_deleted": shredded["records_deleted"],
            "records_left": shredded["records_left"],
        }
    )
    linked: list[str] = []
    for name, path in tenant_places(lab, tenant):
        via = linked_ancestor(lab.paths.root, path)
        mount = mounted_ancestor(lab.paths.root, path) if via is None else None
        if via is not None:  # never through a link: what is behind it is not touched
            linked.append(str(path))
            r = {"action": f"NOT removed: {_shown(via)} is a link (not followed)"}
        elif mount is not None:  # nor through a mount point above the place
            linked.append(str(path))
            r = {"action": f"NOT removed: {_shown(Path(mount))} is a mount point (not crossed)"}
        else:
            r = _remove_tree(path)
        places.append({"place": name, "path": str(path.relative_to(lab.paths.root)), **r})
        _hook(hook, f"after-place-{len(places) - 2}")
    # copies a gate killed mid-way left in $TMPDIR (an export's copy of the artifacts:
    # red team 14j, case 01); the ones whose owner still runs are another command's
    from facelab import scratch

    swept = scratch.sweep()
    places.append(
        {
            "place": "scratch copies of interrupted gates ($TMPDIR)",
            "path": tempfile.gettempdir(),
            "action": f"removed {len(swept)} whose owning process is gone",
        }
    )
    _hook(hook, "after-places")
    stats: dict = {}
    copies = scan_lab(lab.paths.root, needles, skip={side}, stats=stats, digests=digests)
    left_trees = [str(p) for _, p in tenant_places(lab, tenant) if os.path.lexists(p)]
    left_trees += [p for p in linked if p not in left_trees]
    # a removed file that had another hard link: that name keeps its bytes
    copies = [
        *copies,
        *(
            f"{h} (another hard link keeps its bytes)"
            for x in places
            for h in x.get("hard_linked", [])
        ),
    ]
    # a directory the scan could not list is a place it could not check
    ok = (
        not copies
        and shredded["records_left"] == 0
        and not left_trees
        and not stats.get("unreadable_directories")
        # a job or export whose manifest is missing or edited: its files' digests are
        # unknown, so a copy of them could be left unseen (never "passed" for that)
        and not unverified
    )
    places.append(
        {
            "place": "audit log",
            "path": "audit/",
            "action": "kept: entries hold digests, counts and pseudonymous ids only; "
            "entries about the tenant's files hold counts, sizes and the digests of salted "
            "manifests removed above, never names or plain digests of the tenant's bytes "
            "(schema enforced when each entry is built); scanned like every file",
        }
    )
    when = clock().astimezone(UTC)
    stamp = when.isoformat(timespec="seconds")
    cert = certificate.build(
        certificate_id=cert_id,
        lab_id=lab.lab_id,
        tenant=tenant,
        performer=actor,
        when=stamp,
        inventory=inv,
        places=places,
        tool=f"facelab {__version__}",
        location=str(lab.paths.root),
        verification={
            "method": "full: every regular file under the lab directory (database, WAL, "
            "journals, key store, audit log, every tenant's workspace and outbox) read in "
            f"chunks and scanned for {len(needles)} needles (the wrapped key when still "
            "known, ciphertext samples of the records, samples of every removed file, "
            "the whole of a small one, and the data subjects' document numbers and full "
            "names read from the records before the key was erased, kept in memory "
            "only); links not followed, special files not opened; record count; places "
            "re-listed",
            "result": "passed" if ok else "FAILED",
            "details": {
                "files_with_copies": copies,
                "places_left": left_trees,
                "records_left": shredded["records_left"],
                "files_scanned": stats.get("files", 0),
                "bytes_scanned": stats.get("bytes", 0),
                "links_or_special_files_skipped": stats.get("skipped_links_or_special", 0),
                "directories_not_listed": stats.get("unreadable_directories", [])[:64],
                "finished_after_interruption": reconciled,
                "identifier_needles": len(identifiers),
                "file_digests": len(digests),
                # manifests missing or not matching their entries (their files' digests
                # could not be looked for): the result is FAILED while any is listed
                "manifests_unverified": unverified,
            },
        },
    )
    doc = certificate.sign_performer(cert, load_signing_key(lab, root), actor, stamp)
    path = certificate.write(
        doc,
        lab.paths.root
        / "certificates"
        / f"destroy-{tenant}-{when.strftime('%Y%m%dT%H%M%SZ')}.json",
    )
    _hook(hook, "after-certificate")
    # the side file (plain digests of the tenant's files, some of tiny ones: invertible)
    # goes before the outcome is recorded: a destroy killed between the two is finished
    # from its certificate, which needs no side file; the other order left the side file
    # for good once the outcome was on the record (red team 14j, cases 08-10)
    side.unlink(missing_ok=True)
    keystore._fsync_dir(side.parent)
    _hook(hook, "after-side-file")
    _record_destroy(lab, log, actor, tenant, seq, path, reconciled)
    if not ok:
        raise BadInputError(
            f"{lab.paths.root}: destroy could not be verified: copies in {copies}, "
            f"places left {left_trees}"
            + (f", manifests missing or edited {unverified}" if unverified else "")
            + f"; see {path}"
        )
    return path


def _certificate_of(lab: Lab, tenant: str, cert_id: str) -> tuple[Path, bool] | None:
    """The certificate already written for destruction ``cert_id`` (a run killed after
    writing it, before its outcome) and whether it says passed; None when there is none
    that verifies under the lab key. Half-written copies (``*.tmp``) are removed."""
    from facelab.labdir import load_public_key

    d = lab.paths.root / "certificates"
    if not d.is_dir():
        return None
    for tmp in d.glob(f"destroy-{tenant}-*.json.tmp"):
        tmp.unlink(missing_ok=True)
    for path in sorted(d.glob(f"destroy-{tenant}-*.json")):
        try:
            got = certificate.verify_file(path, [load_public_key(lab)])
            cert = got["certificate"]
            if cert.get("certificate_id") != cert_id:
                continue
            result = cert["sanitization_details"]["verification_result"]
        except (BadInputError, TamperedError, KeyError, TypeError):
            continue
        return path, result == "passed"
    return None


def _record_destroy(
    lab: Lab,
    log: AuditLog,
    actor: str,
    tenant: str,
    seq: int,
    path: Path,
    reconciled: bool,
    adopted: bool = False,
) -> None:
    """The outcome of destroy intent ``seq``, naming its certificate ``path``."""
    doc = certificate.read(path)
    cert = doc["certificate"]
    ok = cert["sanitization_details"]["verification_result"] == "passed"
    inv = cert.get("media_information", {})
    details = {
        "records": inv.get("records", 0),
        "subjects": inv.get("subjects", 0),
        "certificate": path.name,
        "places": len(cert.get("places", [])),
        "reconciled": reconciled,
    }
    if adopted:
        details["certificate_adopted"] = True
    intents.finish(
        log,
        seq,
        Event(
            "vault.destroy",
            actor,
            tenant=tenant,
            object="sha256:"
            + hashlib.sha256(labfs.read_bytes(path, what="a certificate")).hexdigest(),
            decision="destroyed" if ok else "failed",
            details=details,
        ),
    )


# ---------------------------------------------------------------- reconciliation


# intents of the gates' state changes and who finishes them (imported when needed: the
# gates depend on the vault, not the other way round)
_GATE_RECONCILERS = {
    "model.import": "facelab.gates.importing.ops:reconcile_intent",
    "export.release": "facelab.gates.exporting.ops:reconcile_intent",
    "export.override": "facelab.gates.exporting.ops:reconcile_intent",
}


def reconcile(
    lab: Lab,
    root: RootKey,
    log: AuditLog,
    actor: str,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> list[dict]:
    """Finish what a crash interrupted, then check the vault against the log.

    Returns one row per intent it closed. Raises ``TamperedError`` when the vault and
    the log disagree (see the module docstring).
    """
    done = []
    for e in intents.open_intents(lab.paths.audit):
        with intents.try_held(lab.paths.audit, e["tenant"]) as mine:
            if not mine:
                continue  # a live change in another process: it records its own outcome
            still_open = {x["seq"] for x in intents.open_intents(lab.paths.audit)}
            if e["seq"] not in still_open:
                continue  # finished by its owner while this process waited
            outcome = _reconcile_one(lab, root, log, actor, e, clock)
        row = {
            "intent": e["seq"],
            "action": e["action"][: -len(intents.INTENT)],
            "tenant": e["tenant"],
            "outcome": outcome,
        }
        if isinstance(outcome, tuple):  # a destroy finished: its certificate
            row["outcome"], row["certificate"] = outcome
        done.append(row)
    check_vault_against_log(lab, root)
    return done


def _reconcile_one(
    lab: Lab,
    root: RootKey,
    log: AuditLog,
    actor: str,
    e: dict,
    clock: Callable[[], datetime],
) -> str | tuple[str, str]:
    """Finish one open intent (its tenant's state lock held); return the outcome (and,
    for a destroy it finished, its certificate's path)."""
    action = e["action"][: -len(intents.INTENT)]
    tenant = e["tenant"]
    outcome = "interrupted"
    if action == "vault.ingest":
        with open_vault(lab, root) as v:
            committed = v.has_dataset(tenant, e["object"])
            known = any(t["tenant"] == tenant for t in v.tenants())
        outcome = "ok" if committed else "aborted"
        if not committed and not known:
            # the first ingest of a new tenant died after storing its key: a key that
            # protects nothing is erased, not left for the next ingest to find
            keystore.destroy_tenant_key(lab.paths.keys, tenant)
        intents.finish(
            log,
            e["seq"],
            Event(
                "vault.ingest",
                actor,
                tenant=tenant,
                object=e["object"],
                decision=outcome,
                details={**e["details"], "reconciled": True},
            ),
        )
    elif action == "vault.destroy":
        with intents.held(lab.paths.audit, DESTROY_LOCK, log.lock_wait):
            done = _reconcile_destroy(lab, root, log, actor, e, clock)
        if done is not None:
            return "destroyed", str(done)
        outcome = "aborted"
    elif action in _GATE_RECONCILERS:  # the gates finish their own state changes
        module, name = _GATE_RECONCILERS[action].split(":")
        outcome = getattr(importlib.import_module(module), name)(lab, log, actor, e)
    else:  # another component's intent: on the record as interrupted
        intents.finish(
            log,
            e["seq"],
            Event(
                action,
                actor,
                role="system",
                tenant=tenant,
                object=e["object"],
                decision="interrupted",
                details={"reconciled": True},
            ),
        )
    return outcome


def _reconcile_destroy(
    lab: Lab,
    root: RootKey,
    log: AuditLog,
    actor: str,
    e: dict,
    clock: Callable[[], datetime],
) -> Path | None:
    """Close the open destroy intent ``e`` (its tenant's state lock and the destroy lock
    held): finish it past its point of no return and return its certificate, else
    record it aborted and return None (nothing destructive happened)."""
    tenant = e["tenant"]
    if past_point_of_no_return(lab, tenant):
        return _finish_destroy(lab, root, tenant, actor, log, e["seq"], [], clock, reconciled=True)
    intents.finish(
        log,
        e["seq"],
        Event(
            "vault.destroy",
            actor,
            tenant=tenant,
            decision="aborted",
            details={"reconciled": True},
        ),
    )
    _needles_path(lab, tenant).unlink(missing_ok=True)
    return None


def recorded_state(audit_dir: Path) -> dict[str, dict[str, int | None]]:
    """Tenant -> {dataset digest: records} the log says the vault holds (ingests
    committed, minus destroyed tenants), from the outcome entries in log order. The
    count is the ingest's ``details.images`` (one record per image; None when an entry
    does not say)."""
    from facelab.audit.read import entries

    state: dict[str, dict[str, int | None]] = {}
    for e in entries(audit_dir, b'"action":"vault.'):
        a, d = e.get("action"), e.get("decision")
        if a == "vault.ingest" and d in ("ok", "unchanged"):
            det = e.get("details") if isinstance(e.get("details"), dict) else {}
            n = det.get("images")
            n = n if isinstance(n, int) and not isinstance(n, bool) else None
            state.setdefault(e["tenant"], {}).setdefault(e["object"], n)
        elif a == "vault.destroy" and d in ("destroyed", "failed"):
            state.pop(e["tenant"], None)
    return state


def check_vault_against_log(lab: Lab, root: RootKey, skip: frozenset[str] = frozenset()) -> None:
    """``TamperedError`` unless the vault holds exactly what the log recorded.

    A tenant whose state lock another process holds is mid-change (an intent recorded,
    its outcome not yet) and is compared next time; every other tenant is compared with
    its lock held, so a change cannot start between reading the log and the vault.
    ``skip``: tenants not compared (a read-only caller's tenants with an open intent,
    which only a writer's reconciliation may finish).
    """
    import contextlib

    def tenants_now() -> set[str]:
        with open_vault(lab, root) as v:
            return set(recorded_state(lab.paths.audit)) | {t["tenant"] for t in v.tenants()}

    with contextlib.ExitStack() as stack:
        quiet = set()
        for t in sorted(tenants_now()):
            try:
                if t not in skip and stack.enter_context(intents.try_held(lab.paths.audit, t)):
                    quiet.add(t)
            except ValueError:  # not a tenant id: compared (and reported) all the same
                quiet.add(t)
        want = recorded_state(lab.paths.audit)
        with open_vault(lab, root) as v:
            have = {t["tenant"]: v.dataset_record_counts(t["tenant"]) for t in v.tenants()}
            orphans = v.orphan_tenants()
        if orphans:  # rows of no tenant: added or retagged by hand (red team 14f, 16)
            raise TamperedError(
                f"{lab.paths.vault}: the vault disagrees with the audit log: rows under "
                f"{len(orphans)} tenant name(s) the vault does not list (added by hand?)"
            )
        _compare_vault_and_log(lab, want, have, quiet)
        for t in sorted(set(have) & quiet):
            wrapped = keystore.load_tenant_key(lab.paths.keys, t)
            if wrapped is not None:
                _check_key_is_the_tenants(lab, root, t, wrapped)


def _key_opens(root: RootKey, tenant: str, wrapped: bytes) -> bool:
    from facelab.errors import VaultError

    try:
        root.unwrap_kek(tenant, wrapped)
    except VaultError:
        return False
    return True


def _check_key_is_the_tenants(lab: Lab, root: RootKey, tenant: str, wrapped: bytes) -> None:
    """``TamperedError`` unless the key store's file for ``tenant`` opens as that
    tenant's key (the wrap binds the tenant's name): files swapped between tenants would
    make destroy erase another tenant's key and leave this one's (red team 2, a10)."""
    from facelab.errors import VaultError

    try:
        root.unwrap_kek(tenant, wrapped)
    except VaultError as e:
        raise TamperedError(
            f"{keystore.tenant_key_path(lab.paths.keys, tenant)}: does not open as tenant "
            f"{tenant!r}'s key (swapped with another tenant's, or replaced); nothing changed"
        ) from e


def _compare_vault_and_log(
    lab: Lab,
    want: dict[str, dict[str, int | None]],
    have: dict[str, dict[str, int]],
    quiet: set[str],
) -> None:
    """Datasets, and records per dataset, of each quiet tenant: the vault against the
    log (red team 14d, c08: rows deleted with sqlite3 under a dataset that remained)."""
    problems = []
    for t in sorted((set(want) | set(have)) & quiet):
        w, h = want.get(t, {}), have.get(t, {})
        if set(w) - set(h):
            problems.append(
                f"tenant {t}: {len(set(w) - set(h))} ingested dataset(s) missing from the vault"
            )
        if set(h) - set(w):
            problems.append(
                f"tenant {t}: {len(set(h) - set(w))} dataset(s) in the vault with no ingest "
                "on the record"
            )
        for d in sorted(set(w) & set(h)):
            if w[d] is not None and w[d] != h[d]:
                problems.append(
                    f"tenant {t}: dataset {d[:19]}… holds {h[d]} records, the log recorded "
                    f"{w[d]} ingested"
                )
        if t in have and keystore.load_tenant_key(lab.paths.keys, t) is None:
            problems.append(f"tenant {t}: records in the vault but no key in the key store")
    if problems:
        raise TamperedError(
            f"{lab.paths.vault}: the vault disagrees with the audit log: {'; '.join(problems)}"
        )
