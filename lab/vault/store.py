"""The encrypted record store: ingest, read by split, crypto-shredding destruction.

Database ``LAB/vault.db`` (SQLite, WAL, ``synchronous=FULL``, ``secure_delete=ON``)::

    tenants(name, wrapped_kek, created)           wrapped_kek is empty: the wrapped KEK lives
                                                  in the key store (LAB/keys/tenants/), apart
                                                  from this file (keystore.py)
    datasets(tenant, digest, images, subjects, ingested)
    dataset_columns(tenant, digest, columns)      the manifest's column names (JSON list),
                                                  for the certificate's data categories
    records(tenant, record_id, dataset, subject, split, kind, wrapped_dek, image, meta)

Per record: a fresh 256-bit data key (DEK); ``wrapped_dek = seal(KEK, DEK, aad)``,
``image = seal(DEK, png, aad)``, ``meta = seal(DEK, manifest row as JSON, aad)``, with
``aad = "facelab/v1|<tenant>|<record id>|<field>"`` (and ``"facelab/v1|dek|..."`` for the
DEK), so a value copied to another tenant, row or field does not open. ``record_id`` and
``subject`` are HMACs under subkeys of the tenant's KEK: stable within a tenant,
meaningless without it, and unlinkable once the KEK is destroyed. The split of a subject
is a keyed hash compared with the policy's ratios: a deterministic partition by subject.

Nothing decrypted is written to disk: ``records()`` decrypts in memory.
"""

from __future__ import annotations

import hashlib
import json
import re
import sqlite3
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import cv2
import numpy as np
from facelab import labfs
from facelab.errors import BadInputError, TamperedError, VaultError
from facelab.vault import _primitives as pr
from facelab.vault import keystore
from facelab.vault.dataset import Item
from facelab.vault.keystore import RootKey

from enclave_policy import VaultPolicy

TENANT_RE = re.compile(r"^[a-z][a-z0-9_-]{0,31}$")
SCHEMA = """
CREATE TABLE IF NOT EXISTS tenants(
    name TEXT PRIMARY KEY, wrapped_kek BLOB NOT NULL, created TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS datasets(
    tenant TEXT NOT NULL, digest TEXT NOT NULL, images INTEGER NOT NULL,
    subjects INTEGER NOT NULL, ingested TEXT NOT NULL, PRIMARY KEY(tenant, digest));
CREATE TABLE IF NOT EXISTS records(
    tenant TEXT NOT NULL, record_id TEXT NOT NULL, dataset TEXT NOT NULL,
    subject TEXT NOT NULL, split TEXT NOT NULL, kind TEXT NOT NULL,
    wrapped_dek BLOB NOT NULL, image BLOB NOT NULL, meta BLOB NOT NULL,
    PRIMARY KEY(tenant, record_id));
CREATE INDEX IF NOT EXISTS records_by_split ON records(tenant, split);
CREATE TABLE IF NOT EXISTS dataset_columns(
    tenant TEXT NOT NULL, digest TEXT NOT NULL, columns TEXT NOT NULL,
    PRIMARY KEY(tenant, digest));
"""


def create_database(path: Path) -> None:
    """An empty vault database with its schema, in WAL mode (``facelab init``)."""
    db = sqlite3.connect(path, isolation_level=None)
    try:
        db.execute("PRAGMA journal_mode=WAL")
        db.executescript(SCHEMA)
    finally:
        db.close()


def check_tenant(name: str) -> str:
    if not TENANT_RE.match(name or ""):
        raise BadInputError(
            f"tenant {name!r} is not a safe identifier "
            "(lowercase letter, then up to 31 of a-z 0-9 _ -)"
        )
    return name


def _aad(tenant: str, record_id: str, field: str) -> bytes:
    return f"facelab/v1|{tenant}|{record_id}|{field}".encode()


@dataclass(frozen=True)
class Record:
    """One decrypted record, in memory only."""

    record_id: str
    subject: str  # pseudonym
    kind: str
    split: str
    png: bytes
    landmarks: np.ndarray  # (5, 2) float32
    nationality: str
    sex: str
    birth_year: int
    birth_date: str | None  # only when granted (and when the dataset has it)
    name: str | None  # only when the policy grants identifiers to the tenant
    passport_no: str | None

    def image(self) -> np.ndarray:
        """RGB pixels, decoded on demand."""
        return cv2.imdecode(np.frombuffer(self.png, np.uint8), cv2.IMREAD_COLOR_RGB)


@dataclass(frozen=True)
class IngestResult:
    tenant: str
    digest: str
    images: int
    subjects: int
    created_tenant: bool
    already_present: bool


def _split_of(u: float, splits: dict[str, float]) -> str:
    acc = 0.0
    for name, ratio in splits.items():
        acc += ratio
        if u < acc:
            return name
    return next(reversed(splits))


class Vault:
    """The lab's encrypted store. Opened with the root key; every method is one operation.

    ``max_pages`` caps the database (PRAGMA max_page_count): tests use it to make a full
    disk happen on demand.
    """

    def __init__(
        self,
        path: Path | str,
        root: RootKey,
        policy: VaultPolicy,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        max_pages: int | None = None,
        keys_dir: Path | str | None = None,
    ):
        self.path = Path(path)
        self.root = root
        self.policy = policy
        self.clock = clock
        self.keys_dir = Path(keys_dir) if keys_dir is not None else self.path.parent / "keys"
        self._before_commit: Callable[[], None] | None = None  # test seam (crash point)
        self._after_delete: Callable[[], None] | None = None  # test seam: shred, pre-VACUUM
        # SQLite opens these by name and would block reading a FIFO: regular files only
        # (a link, FIFO, device or directory is one line naming it; red team 14g)
        for side in ("-wal", "-shm", "-journal"):
            labfs.require_regular(f"{self.path}{side}", error=TamperedError)
        if not labfs.require_regular(self.path, error=TamperedError):  # never recreated
            raise TamperedError(
                f"{self.path}: the vault database is missing; the lab's records are gone "
                "(damage; it is not recreated)"
            )
        try:
            self.db = sqlite3.connect(
                f"file:{self.path}?mode=rw", uri=True, isolation_level=None, timeout=30
            )
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=FULL")
            self.db.execute("PRAGMA secure_delete=ON")
            if max_pages is not None:
                self.db.execute(f"PRAGMA max_page_count={int(max_pages)}")
            self.db.executescript(SCHEMA)
        except sqlite3.Error as e:
            raise BadInputError(f"{self.path}: cannot open the vault ({e})") from e

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> Vault:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.close()
        if type(exc) is sqlite3.DatabaseError:  # "malformed", "not a database": damage
            raise TamperedError(f"{self.path}: the vault database is damaged ({exc})") from exc

    # ------------------------------------------------------------------ keys

    def _kek(self, tenant: str) -> bytes:
        row = self.db.execute("SELECT 1 FROM tenants WHERE name=?", (tenant,)).fetchone()
        if row is None:
            raise BadInputError(f"tenant {tenant!r} has no data in this vault")
        wrapped = keystore.load_tenant_key(self.keys_dir, tenant)
        if wrapped is None:
            raise VaultError(
                f"tenant {tenant!r}: no key in the key store (destroyed); nothing opens"
            )
        return self.root.unwrap_kek(tenant, wrapped)

    @staticmethod
    def _tenant_keys(kek: bytes) -> tuple[bytes, bytes]:
        return pr.subkey(kek, "pseudonym/v1"), pr.subkey(kek, "split/v1")

    # ------------------------------------------------------------------ ingest

    def ingest(self, tenant: str, items: list[Item], digest: str) -> IngestResult:
        """Encrypt a validated dataset in one transaction: all of it or none of it."""
        check_tenant(tenant)
        subjects = len({it.row["subject_id"] for it in items})
        if self.db.execute(
            "SELECT 1 FROM datasets WHERE tenant=? AND digest=?", (tenant, digest)
        ).fetchone():
            return IngestResult(tenant, digest, len(items), subjects, False, True)
        row = self.db.execute("SELECT 1 FROM tenants WHERE name=?", (tenant,)).fetchone()
        created = row is None
        if created:
            if self.policy.tenants and tenant not in self.policy.tenants:
                raise BadInputError(f"tenant {tenant!r} is not listed in the policy")
            kek = pr.random_key()
            keystore.store_tenant_key(self.keys_dir, tenant, self.root.wrap_kek(tenant, kek))
        else:
            kek = self._kek(tenant)
        k_pseudo, k_split = self._tenant_keys(kek)
        rows = []
        for it in items:
            r = it.row
            # the natural person key is the passport: one pseudonym across datasets
            person = (
                f"{r['nationality']}|{r['passport_no']}"
                if r["passport_no"]
                else f"{digest}|{r['subject_id']}"
            ).encode()
            subject = pr.mac(k_pseudo, b"subject|" + person).hex()[:32]
            u = int.from_bytes(pr.mac(k_split, subject.encode())[:8], "big") / 2**64
            rid = pr.mac(k_pseudo, f"record|{digest}|{r['capture_id']}".encode()).hex()[:32]
            dek = pr.random_key()
            meta = json.dumps(r, sort_keys=True).encode()
            rows.append(
                (
                    tenant,
                    rid,
                    digest,
                    subject,
                    _split_of(u, self.policy.splits),
                    r["kind"],
                    pr.seal(kek, dek, _aad(tenant, rid, "dek")),
                    pr.seal(dek, it.png, _aad(tenant, rid, "image")),
                    pr.seal(dek, meta, _aad(tenant, rid, "meta")),
                )
            )
        now = self.clock().isoformat(timespec="seconds")
        try:
            self.db.execute("BEGIN IMMEDIATE")
            try:
                if created:
                    self.db.execute("INSERT INTO tenants VALUES (?,?,?)", (tenant, b"", now))
                self.db.executemany(
                    "INSERT OR REPLACE INTO records VALUES (?,?,?,?,?,?,?,?,?)", rows
                )
                self.db.execute(
                    "INSERT INTO datasets VALUES (?,?,?,?,?)",
                    (tenant, digest, len(items), subjects, now),
                )
                columns = sorted({c for it in items for c in it.row})
                self.db.execute(
                    "INSERT OR REPLACE INTO dataset_columns VALUES (?,?,?)",
                    (tenant, digest, json.dumps(columns)),
                )
                if self._before_commit is not None:
                    self._before_commit()
                self.db.execute("COMMIT")
            except BaseException:
                self.db.execute("ROLLBACK")
                raise
        except sqlite3.Error as e:
            if created:
                keystore.destroy_tenant_key(self.keys_dir, tenant)
            raise BadInputError(f"{self.path}: ingest failed, nothing stored ({e})") from e
        return IngestResult(tenant, digest, len(items), subjects, created, False)

    # ------------------------------------------------------------------ read

    def tenants(self) -> list[dict]:
        out = []
        for name, created in self.db.execute("SELECT name, created FROM tenants ORDER BY name"):
            n, s = self.db.execute(
                "SELECT COUNT(*), COUNT(DISTINCT subject) FROM records WHERE tenant=?", (name,)
            ).fetchone()
            ds = [
                d
                for (d,) in self.db.execute(
                    "SELECT digest FROM datasets WHERE tenant=? ORDER BY ingested", (name,)
                )
            ]
            out.append(
                {"tenant": name, "created": created, "records": n, "subjects": s, "datasets": ds}
            )
        return out

    def orphan_tenants(self) -> list[str]:
        """Tenant names that records, datasets or key rows carry but the ``tenants``
        table does not list (rows added or retagged with sqlite3)."""
        rows = self.db.execute(
            "SELECT tenant FROM records UNION SELECT tenant FROM datasets "
            "UNION SELECT tenant FROM dataset_columns EXCEPT SELECT name FROM tenants"
        )
        return sorted(str(t) for (t,) in rows)

    def dataset_record_counts(self, tenant: str) -> dict[str, int]:
        """Dataset digest -> records of ``tenant`` in the vault under it (every dataset
        the ``datasets`` table lists, 0 when its records are gone)."""
        counts = dict(
            self.db.execute(
                "SELECT dataset, COUNT(*) FROM records WHERE tenant=? GROUP BY dataset", (tenant,)
            )
        )
        return {
            d: int(counts.pop(d, 0))
            for (d,) in self.db.execute("SELECT digest FROM datasets WHERE tenant=?", (tenant,))
        } | {d: int(n) for d, n in counts.items()}

    def records(
        self,
        tenant: str,
        split: str | None = None,
        on_error: Callable[[str, str], None] | None = None,
        *,
        reveal: bool = False,
    ) -> Iterator[Record]:
        """Decrypt ``tenant``'s records (of one ``split``) in memory, in a stable order.

        A record that does not open raises ``VaultError`` naming it; ``on_error`` (e.g.
        an audit hook) receives (record id, field) first. Other records still open.
        ``reveal`` gives identifiers whatever the policy grants the tenant: for the
        export gate, which must look for them, never for tenants' jobs.
        """
        check_tenant(tenant)
        kek = self._kek(tenant)
        granted = reveal or tenant in self.policy.identifiers_granted
        q = (
            "SELECT record_id, subject, split, kind, wrapped_dek, image, meta FROM records "
            "WHERE tenant=?" + (" AND split=?" if split else "") + " ORDER BY record_id"
        )
        for row in self.db.execute(q, (tenant, split) if split else (tenant,)):
            yield self._open(tenant, kek, row, granted, on_error)

    def open_record(
        self, tenant: str, record_id: str, on_error: Callable[[str, str], None] | None = None
    ) -> Record:
        kek = self._kek(check_tenant(tenant))
        row = self.db.execute(
            "SELECT record_id, subject, split, kind, wrapped_dek, image, "
            "meta FROM records WHERE tenant=? AND record_id=?",
            (tenant, record_id),
        ).fetchone()
        if row is None:
            raise BadInputError(f"tenant {tenant!r} has no record {record_id}")
        return self._open(tenant, kek, row, tenant in self.policy.identifiers_granted, on_error)

    def _open(self, tenant, kek, row, granted, on_error) -> Record:
        rid, subject, split, kind, wdek, image, meta = row
        field = "dek"
        try:
            dek = pr.open_(kek, wdek, _aad(tenant, rid, "dek"))
            field = "image"
            png = pr.open_(dek, image, _aad(tenant, rid, "image"))
            field = "meta"
            m = json.loads(pr.open_(dek, meta, _aad(tenant, rid, "meta")))
        except VaultError as e:
            if on_error is not None:
                on_error(rid, field)
            raise VaultError(f"record {rid}: cannot open") from e
        lms = np.array([[float(m[f"lm{i}_x"]), float(m[f"lm{i}_y"])] for i in range(5)], np.float32)
        return Record(
            rid,
            subject,
            kind,
            split,
            png,
            lms,
            m["nationality"],
            m["sex"],
            int(m["birth_year"]),
            m.get("birth_date") if granted else None,
            m["name"] if granted else None,
            m["passport_no"] if granted else None,
        )

    def dataset_image_digests(self, tenant: str, digest: str) -> list[str]:
        """SHA-256 of every image of one dataset, decrypted (verifies an ingest)."""
        kek = self._kek(check_tenant(tenant))
        out = []
        for rid, wdek, image in self.db.execute(
            "SELECT record_id, wrapped_dek, image FROM records WHERE tenant=? AND dataset=?",
            (tenant, digest),
        ):
            dek = pr.open_(kek, wdek, _aad(tenant, rid, "dek"))
            out.append(hashlib.sha256(pr.open_(dek, image, _aad(tenant, rid, "image"))).hexdigest())
        return sorted(out)

    def counts(self, tenant: str) -> dict[str, int]:
        return dict(
            self.db.execute(
                "SELECT split, COUNT(*) FROM records WHERE tenant=? GROUP BY split", (tenant,)
            ).fetchall()
        )

    # ------------------------------------------------------------------ destroy

    def has_tenant(self, tenant: str) -> bool:
        q = "SELECT 1 FROM tenants WHERE name=?"
        return self.db.execute(q, (tenant,)).fetchone() is not None

    def has_dataset(self, tenant: str, digest: str) -> bool:
        q = "SELECT 1 FROM datasets WHERE tenant=? AND digest=?"
        return self.db.execute(q, (tenant, digest)).fetchone() is not None

    def inventory(self, tenant: str) -> dict:
        """What the vault holds of ``tenant``: counts, dataset digests, manifest columns."""
        n, s = self.db.execute(
            "SELECT COUNT(*), COUNT(DISTINCT subject) FROM records WHERE tenant=?", (tenant,)
        ).fetchone()
        datasets = [
            d
            for (d,) in self.db.execute(
                "SELECT digest FROM datasets WHERE tenant=? ORDER BY ingested", (tenant,)
            )
        ]
        columns: set[str] = set()
        for (c,) in self.db.execute(
            "SELECT columns FROM dataset_columns WHERE tenant=?", (tenant,)
        ):
            columns.update(json.loads(c))
        samples = [
            bytes(b[:48])
            for (b,) in self.db.execute(
                "SELECT image FROM records WHERE tenant=? ORDER BY record_id LIMIT 16", (tenant,)
            )
        ]
        return {
            "records": n,
            "subjects": s,
            "datasets": datasets,
            "columns": sorted(columns),
            "ciphertext_samples": samples,
        }

    def identifiers(self, tenant: str) -> dict[str, set[str]]:
        """The personal identifiers ``tenant``'s records hold, decrypted in memory
        (wrapped data key and metadata only, not the images): ``{"passport_no": ...,
        "name": ...}``. For destroy's verification scan; never written anywhere. A record
        that does not open is skipped (it holds nothing readable)."""
        check_tenant(tenant)
        kek = self._kek(tenant)
        out: dict[str, set[str]] = {"passport_no": set(), "name": set()}
        q = "SELECT record_id, wrapped_dek, meta FROM records WHERE tenant=?"
        for rid, wdek, meta in self.db.execute(q, (tenant,)):
            try:
                dek = pr.open_(kek, wdek, _aad(tenant, rid, "dek"))
                m = json.loads(pr.open_(dek, meta, _aad(tenant, rid, "meta")))
            except (VaultError, ValueError):
                continue
            for field, vals in out.items():
                if isinstance(m.get(field), str) and m[field]:
                    vals.add(m[field])
        return out

    def image_samples(self, tenant: str, length: int = 32) -> set[bytes]:
        """Two runs of ``length`` bytes from inside each of ``tenant``'s images (at a
        third and two thirds of the PNG, past its header: compressed pixels, unique to
        the image), decrypted in memory. Scan needles for a plain copy of an image left
        anywhere in the lab (red team 14h, case 02); never written anywhere. A record
        that does not open is skipped."""
        check_tenant(tenant)
        kek = self._kek(tenant)
        out: set[bytes] = set()
        q = "SELECT record_id, wrapped_dek, image FROM records WHERE tenant=?"
        for rid, wdek, image in self.db.execute(q, (tenant,)):
            try:
                dek = pr.open_(kek, wdek, _aad(tenant, rid, "dek"))
                png = pr.open_(dek, image, _aad(tenant, rid, "image"))
            except VaultError:
                continue
            if len(png) < 6 * length:
                continue  # too small to sample past its header
            for at in (len(png) // 3, 2 * len(png) // 3):
                out.add(png[at : at + length])
        return out

    def _checkpoint(self, attempts: int = 50) -> None:
        """``wal_checkpoint(TRUNCATE)`` until it completes: a reader's snapshot (another
        process's transaction) makes it return busy and leave old pages in the database
        and the WAL, which destroy's scan would then find; retried for up to ~5 s."""
        import time

        for _ in range(attempts):
            busy, _log, _done = self.db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
            if not busy:
                return
            time.sleep(0.1)

    def shred(self, tenant: str) -> dict:
        """Delete ``tenant``'s records, datasets and tenant row, then compact.

        Old pages are zeroed (secure_delete), the file rebuilt (VACUUM) and the WAL
        emptied before and after. Returns the rows deleted. Idempotent: a tenant already
        gone deletes nothing (a destroy finished after a crash). The key store is the
        caller's (``keystore.destroy_tenant_key``).
        """
        check_tenant(tenant)
        try:
            self.db.execute("BEGIN IMMEDIATE")
            try:
                n = self.db.execute("DELETE FROM records WHERE tenant=?", (tenant,)).rowcount
                self.db.execute("DELETE FROM datasets WHERE tenant=?", (tenant,))
                self.db.execute("DELETE FROM dataset_columns WHERE tenant=?", (tenant,))
                t = self.db.execute("DELETE FROM tenants WHERE name=?", (tenant,)).rowcount
                self.db.execute("COMMIT")
            except BaseException:
                self.db.execute("ROLLBACK")
                raise
            if self._after_delete is not None:
                self._after_delete()
            self._checkpoint()
            self.db.execute("VACUUM")
            self._checkpoint()
        except sqlite3.Error as e:
            raise BadInputError(f"{self.path}: destroy failed ({e})") from e
        left = self.db.execute("SELECT COUNT(*) FROM records WHERE tenant=?", (tenant,)).fetchone()[
            0
        ]
        return {"records_deleted": n, "tenant_rows_deleted": t, "records_left": left}
