"""Manifests: what the audit log may not hold about a tenant's files, kept where the
tenant's data is (``LAB/manifests/<tenant>/``, a place ``destroy`` empties).

The audit log outlives a tenant's destruction, so its entries about the tenant's files
(``job.finish``, ``export.*``) hold counts, sizes and the SHA-256 of a manifest: the
file names, their plain SHA-256 digests and whatever else the tenant chose (a job's
spec, its summary, the names of refused artifacts) are in the manifest, with 32 random
bytes of salt. Without the manifest the logged digest says nothing: the salt makes it
impossible to invert by guessing the content (a plain SHA-256 of a 2-byte file is
inverted in 65,536 guesses), and the manifest goes when the tenant goes.

A consumer (the export gate's attestation, ``destroy``'s search for leftover copies)
reads a manifest only through :func:`read`, which returns it only when its bytes hash to
the digest the log recorded: a manifest that is missing, replaced or edited attests
nothing (default deny).

Format: canonical JSON (sorted keys, no whitespace), ``{"format": "facelab-manifest/1",
"kind": "job" | "export", "id": ..., "tenant": ..., "salt": <64 hex>, ...}``; a job's
also has ``outputs`` (``{name: sha256}``), ``spec``, ``summary``, ``removed``; an
export's ``artifacts`` (the gate's listing: path, kind, bytes, sha256, source_sha256),
``blocking`` (``detector: artifact`` lines) and ``attested`` (release path: job).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from facelab import labfs
from facelab.errors import BadInputError, FacelabError
from facelab.jsonfile import strict_loads

FORMAT = "facelab-manifest/1"
PLACE = "manifests"  # LAB/manifests/<tenant>/<name>.json
MAX_BYTES = 8 << 20
_NAME = re.compile(r"(job|export)-\d{8}T\d{6}Z-[0-9a-f]{8}")


def directory(lab_root: Path, tenant: str) -> Path:
    return lab_root / PLACE / tenant


def path(lab_root: Path, tenant: str, name: str) -> Path:
    if not _NAME.fullmatch(name):
        raise BadInputError(f"{name!r}: not a manifest name")
    return directory(lab_root, tenant) / f"{name}.json"


def encode(body: dict[str, Any]) -> bytes:
    return json.dumps(
        body, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode("utf-8")


def write(
    lab_root: Path,
    tenant: str,
    name: str,
    kind: str,
    body: dict[str, Any],
    *,
    rng: Callable[[int], bytes] = os.urandom,
) -> str:
    """Write the manifest ``name`` of ``tenant`` durably (temporary file, fsync, rename,
    fsync of the directory; never through a link) and return the SHA-256 (hex) of its
    bytes, which is what the audit entry records. ``rng`` gives the salt."""
    doc = {
        **body,
        "format": FORMAT,
        "kind": kind,
        "id": name,
        "tenant": tenant,
        "salt": rng(32).hex(),
    }
    data = encode(doc)
    d = directory(lab_root, tenant)
    for p in (lab_root / PLACE, d):
        with contextlib.suppress(FileExistsError):
            os.mkdir(p, 0o700)
        if os.path.islink(p) or not os.path.isdir(p):
            raise BadInputError(f"{p}: not a directory (a link?); no manifest is written")
    target = path(lab_root, tenant, name)
    tmp = target.with_suffix(".tmp")
    if os.path.lexists(tmp):
        os.unlink(tmp)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.rename(tmp, target)
    dfd = os.open(d, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)
    return hashlib.sha256(data).hexdigest()


def read(lab_root: Path, tenant: str, name: str, sha256: object) -> dict[str, Any] | None:
    """The manifest ``name`` of ``tenant`` when its bytes hash to ``sha256`` (the digest
    its audit entry recorded) and it names itself and the tenant; None otherwise
    (missing, a link or special file, edited, replaced, malformed): default deny."""
    if not isinstance(sha256, str) or not re.fullmatch(r"[0-9a-f]{64}", sha256):
        return None
    try:
        data = labfs.read_bytes(path(lab_root, tenant, name), MAX_BYTES, what="a manifest")
    except (OSError, FacelabError):
        return None
    if hashlib.sha256(data).hexdigest() != sha256:
        return None
    try:
        doc = strict_loads(data)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return None
    if (
        not isinstance(doc, dict)
        or doc.get("format") != FORMAT
        or doc.get("id") != name
        or doc.get("tenant") != tenant
    ):
        return None
    return doc


def job_name(job_id: str) -> str:
    return f"job-{job_id}"


def digests(doc: dict[str, Any]) -> set[str]:
    """Every plain SHA-256 (hex) of a file the tenant handed in or its jobs wrote that a
    manifest lists: a job's outputs, an export's artifacts as given (``source_sha256``,
    refused ones too)."""
    out: set[str] = set()
    outputs = doc.get("outputs")
    if isinstance(outputs, dict):
        out.update(v for v in outputs.values() if isinstance(v, str))
    for a in doc.get("artifacts", []) if isinstance(doc.get("artifacts"), list) else []:
        if isinstance(a, dict) and isinstance(a.get("source_sha256"), str):
            out.add(a["source_sha256"])
    return {x for x in out if re.fullmatch(r"[0-9a-f]{64}", x)}
