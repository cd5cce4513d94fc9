"""Subject access report: what the lab holds about one person, who received it, every
access on the record, and when it goes (GDPR art. 15: categories, recipients,
purposes, storage period; the documented lab's citizens' group had to ask in writing).

``find_person`` decrypts the vault's records of every tenant and keeps those whose
passport number (exact, case and spaces ignored) or name (Unicode NFKC, case folded,
the same words in any order) matches. ``build_report`` joins them with the policy, the
retention schedule, the register and the audit log:

* **holdings**, per processor: the records (passport photo, gate captures), the data
  categories of the datasets they came from (``certificate.data_categories``), since
  when (the ingest), the purposes the policy grants, the split the person is in, the
  destruction due date;
* **accesses**, from the audit log: the ingest of a dataset holding the person, every
  vault read and job of the person's split (or of all splits), every export decision
  of that processor (the export gate reads all of the processor's records), earlier
  subject access requests about the same person (matched by keyed digest);
* **destructions**: every ``vault.destroy`` on the record with its certificate. After a
  destruction the lab cannot tell whether the destroyed data included the person (the
  records no longer open); the report says so instead of guessing.

The person's identifiers appear only in the report; the audit entry
(``subject.access``) holds an HMAC-SHA-256 of the query under a key derived from the
lab's root key (an unsalted digest of a passport number is the number, as the export
gate's identifier detector knows), never the query.
"""

from __future__ import annotations

import hashlib
import hmac
import html as h
import json
import os
import unicodedata
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from facelab import labfs
from facelab.errors import BadInputError
from facelab.scratch import sibling_dir

FORMAT = "facelab-subject-access/1"
PURPOSES = {
    "verify_1to1": "1:1 verification: checking whether two photos show the same person",
    "train": "training face recognition models",
    "identify_1toN": "1:N identification: searching a person among many (forbidden)",
    "track": "tracking people (forbidden)",
}


def _norm_passport(v: str) -> str:
    return "".join(unicodedata.normalize("NFKC", v).split()).upper()


def _norm_name(v: str) -> tuple[str, ...]:
    return tuple(sorted(unicodedata.normalize("NFKC", v).casefold().split()))


@dataclass(frozen=True)
class Query:
    """Who is asked about: exactly one of ``passport_no`` and ``name``."""

    passport_no: str | None = None
    name: str | None = None

    def __post_init__(self) -> None:
        if (self.passport_no is None) == (self.name is None):
            raise BadInputError("subject: give exactly one of --passport-no and --name")
        v = self.passport_no if self.passport_no is not None else self.name
        if not str(v).strip() or len(str(v)) > 200:
            raise BadInputError("subject: the identifier is empty or over 200 characters")

    @property
    def kind(self) -> str:
        return "passport_no" if self.passport_no is not None else "name"

    def canonical(self) -> str:
        if self.passport_no is not None:
            return "passport_no:" + _norm_passport(self.passport_no)
        return "name:" + " ".join(_norm_name(str(self.name)))

    def matches(self, name: str | None, passport_no: str | None) -> bool:
        if self.passport_no is not None:
            return passport_no is not None and _norm_passport(passport_no) == _norm_passport(
                self.passport_no
            )
        return name is not None and _norm_name(name) == _norm_name(str(self.name))


def query_digest(subkey: bytes, q: Query) -> str:
    """The keyed digest the audit log holds instead of the query."""
    return "hmac-sha256:" + hmac.new(subkey, q.canonical().encode(), hashlib.sha256).hexdigest()


@dataclass
class Holding:
    """One processor's records of the person."""

    tenant: str
    subject: str  # the pseudonym jobs see (internal: matched against nothing outside)
    split: str
    records: dict[str, int]
    datasets: list[str]
    since: str
    columns: list[str]
    person: dict = field(default_factory=dict)


def find_person(lab, root, q: Query) -> list[Holding]:
    """Every tenant's records of the person, decrypted in memory and dropped after."""
    from facelab.vault.ops import open_vault

    out: list[Holding] = []
    with open_vault(lab, root) as v:
        for t in v.tenants():
            tenant = t["tenant"]
            found: dict[str, Holding] = {}
            for r in v.records(tenant, reveal=True):
                if not q.matches(r.name, r.passport_no):
                    continue
                hd = found.setdefault(
                    r.subject, Holding(tenant, r.subject, r.split, {}, [], "", [])
                )
                hd.records[r.kind] = hd.records.get(r.kind, 0) + 1
                hd.person = {
                    "name": r.name,
                    "passport_no": r.passport_no,
                    "nationality": r.nationality,
                    "sex": r.sex,
                    "birth_year": r.birth_year,
                }
                (ds,) = v.db.execute(
                    "SELECT dataset FROM records WHERE tenant=? AND record_id=?",
                    (tenant, r.record_id),
                ).fetchone()
                if ds not in hd.datasets:
                    hd.datasets.append(ds)
            for hd in found.values():
                cols: set[str] = set()
                since = []
                for ds in hd.datasets:
                    row = v.db.execute(
                        "SELECT columns FROM dataset_columns WHERE tenant=? AND digest=?",
                        (tenant, ds),
                    ).fetchone()
                    cols |= set(json.loads(row[0])) if row else set()
                    (when,) = v.db.execute(
                        "SELECT ingested FROM datasets WHERE tenant=? AND digest=?",
                        (tenant, ds),
                    ).fetchone()
                    since.append(when)
                hd.columns, hd.since = sorted(cols), min(since)
                out.append(hd)
    return out


def _accesses(entries: list[dict], hd: Holding, qdigest: str) -> list[dict]:
    out = []
    for e in entries:
        a, d = e.get("action", ""), e.get("details") or {}
        if a == "subject.access" and e.get("object") == qdigest:
            what = "an earlier subject access request about you (this kind of report)"
        elif e.get("tenant") != hd.tenant:
            continue
        elif a == "vault.ingest" and e.get("object") in hd.datasets and e.get("decision") == "ok":
            what = "your records were stored in the vault, encrypted"
        elif a == "vault.read" and d.get("split") in (hd.split, "all", None):
            split = d.get("split")
            what = (
                "all records" if split in ("all", None) else f"records of the {split} split"
            ) + f" were decrypted for: {d.get('purpose') or 'an unstated purpose'}"
        elif a == "job.start" and d.get("split") in (hd.split, None):
            what = (
                f"job {e.get('object')} ({d.get('kind')}, model {d.get('model')}) started on "
                f"the {d.get('split') or 'whole'} split, which holds your records"
            )
        elif a in ("export.release", "export.refuse", "export.override"):
            what = (
                "the export gate scanned every record of this processor, yours included, "
                f"for traces of people in what it wanted to take out: {e.get('decision')}"
            )
        else:
            continue
        out.append(
            {
                "entry": e.get("seq"),
                "time": e.get("time"),
                "actor": e.get("actor"),
                "role": e.get("role"),
                "action": a,
                "what": what,
            }
        )
    return out


def build_report(lab, root, q: Query, entries: list[dict], subkey: bytes, now: datetime) -> dict:
    """The report as data (see the module docstring); ``entries`` is the audit log."""
    from facelab.vault import certificate, retention

    holdings = find_person(lab, root, q)
    names = {(hd.person.get("passport_no"), hd.person.get("nationality")) for hd in holdings}
    if q.name is not None and len(names) > 1:
        raise BadInputError(
            f"subject: {len(names)} different people have this name; ask with --passport-no "
            "(a report never shows one person another's data)"
        )
    gov = lab.policy.governance
    due = {s["tenant"]: s["due"] for s in retention.schedule(lab, root)}
    qd = query_digest(subkey, q)
    rows = []
    for hd in holdings:
        tp = gov.tenant(hd.tenant) if gov is not None else None
        rows.append(
            {
                "processor": tp.processor if tp else hd.tenant,
                "tenant": hd.tenant,
                "purposes": [
                    {"purpose": p, "meaning": PURPOSES.get(p, p)}
                    for p in (tp.purposes if tp else ())
                ],
                "records": hd.records,
                "data_categories": certificate.data_categories(hd.columns),
                "since": hd.since,
                "split": hd.split,
                "destruction_due": due.get(hd.tenant),
                "accesses": _accesses(entries, hd, qd),
            }
        )
    destructions = []
    for e in entries:
        if e.get("action") == "vault.destroy" and e.get("decision") in ("destroyed", "failed"):
            d = e.get("details") or {}
            destructions.append(
                {
                    "entry": e.get("seq"),
                    "time": e.get("time"),
                    "tenant": e.get("tenant"),
                    "processor": gov.tenant(str(e.get("tenant"))).processor
                    if gov is not None
                    else e.get("tenant"),
                    "result": e.get("decision"),
                    "certificate": d.get("certificate"),
                    "certificate_sha256": e.get("object"),
                    "records": d.get("records"),
                }
            )
    person = holdings[0].person if holdings else {}
    return {
        "format": FORMAT,
        "lab": lab.lab_id,
        "generated": now.isoformat(timespec="seconds"),
        "asked_by": q.kind,
        "person": person,
        "found": bool(holdings),
        "holdings": rows,
        "destructions": destructions,
        "notes": [
            "This report lists the kinds of data held, not the data itself.",
            "After a destruction the lab cannot tell whether the destroyed data included "
            "you: the records no longer open. Each destruction is listed with its signed "
            "certificate.",
            "The lab's audit log records that this report was made, with a keyed digest "
            "of the question, never your name or passport number.",
        ],
    }


def render_html(doc: dict) -> str:
    """The report in plain language, self-contained."""
    p = doc["person"]
    who = (
        f"{h.escape(str(p.get('name')))}, passport {h.escape(str(p.get('passport_no')))}"
        if p
        else "the person asked about"
    )
    parts = [
        "<!doctype html><meta charset=utf-8><title>What facelab holds about you</title>"
        "<style>body{font-family:sans-serif;max-width:900px;margin:2em auto;line-height:1.4}"
        "td,th{border-bottom:1px solid #ddd;padding:4px 8px;text-align:left}</style>",
        f"<h1>What this lab holds about {who}</h1>",
        f"<p>Lab {h.escape(doc['lab'])}, report made {h.escape(doc['generated'])}.</p>",
    ]
    if not doc["holdings"]:
        parts.append("<p>The lab holds <b>no records</b> of you today.</p>")
    for r in doc["holdings"]:
        n = r["records"]
        photos = ", ".join(f"{v} {k} photo{'s' if v != 1 else ''}" for k, v in sorted(n.items()))
        parts += [
            f"<h2>{h.escape(r['processor'])} (tenant {h.escape(r['tenant'])})</h2>",
            f"<p>This company received {h.escape(photos)} of you on "
            f"{h.escape(r['since'][:10])}, with these kinds of data: "
            f"{h.escape(', '.join(r['data_categories']))}.</p>",
            "<p>It may use them only for: "
            + "; ".join(h.escape(x["meaning"]) for x in r["purposes"])
            + ".</p>",
            f"<p>Your records are due to be destroyed on <b>"
            f"{h.escape(str(r['destruction_due']))}</b> at the latest.</p>",
            "<h3>Every use of your records on the lab's record</h3><table><tr><th>when</th>"
            "<th>who</th><th>what</th></tr>",
            *(
                f"<tr><td>{h.escape(str(a['time']))}</td><td>{h.escape(str(a['actor']))} "
                f"({h.escape(str(a['role']))})</td><td>{h.escape(a['what'])}</td></tr>"
                for a in r["accesses"]
            ),
            "</table>",
        ]
    if doc["destructions"]:
        parts.append("<h2>Destructions</h2><ul>")
        for d in doc["destructions"]:
            parts.append(
                f"<li>{h.escape(str(d['time'])[:10])}: all data of "
                f"{h.escape(str(d['processor']))} destroyed"
                + ("" if d["result"] == "destroyed" else " (its verification FAILED)")
                + ", "
                f"certificate <code>{h.escape(str(d['certificate']))}</code></li>"
            )
        parts.append("</ul>")
    parts.append("<h2>Notes</h2><ul>")
    parts += [f"<li>{h.escape(n)}</li>" for n in doc["notes"]]
    parts.append("</ul>")
    return "".join(parts)


def write_report(doc: dict, out: Path) -> tuple[Path, Path]:
    """``out/report.json`` and ``out/report.html``, written into a temporary sibling and
    renamed into place (``out`` must not exist, or be empty)."""
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise BadInputError(f"{out}: already exists and is not an empty directory")
    if not out.parent.is_dir():
        raise BadInputError(f"{out}: parent directory {out.parent} does not exist")
    tmp = sibling_dir(out)
    (tmp / "report.json").write_text(json.dumps(doc, indent=2, ensure_ascii=False) + "\n")
    (tmp / "report.html").write_text(render_html(doc))
    if out.exists():
        out.rmdir()
    os.rename(tmp, out)
    return out / "report.json", out / "report.html"


def subject_access(
    lab, root, q: Query, actor: str, log, out: Path | None, *, now: datetime | None = None
) -> tuple[dict, Path, Path]:
    """Build, write and record a subject access report.

    ``out`` defaults to ``./subject-access-<first 12 hex of the keyed digest>``. The audit
    entry ``subject.access`` holds the keyed digest of the query (object), whether the
    question was by passport or by name, how many processors hold the person and the
    SHA-256 of report.json; never an identifier.
    """
    from facelab.audit import Event
    from facelab.audit.show import filter_entries

    now = now or datetime.now(UTC)
    subkey = root.subkey("subject-access/v1")
    entries = filter_entries(lab.paths.audit)
    doc = build_report(lab, root, q, entries, subkey, now)
    qd = query_digest(subkey, q)
    out = out if out is not None else Path.cwd() / f"subject-access-{qd.split(':')[1][:12]}"
    js, page = write_report(doc, out)
    log.record(
        Event(
            "subject.access",
            actor,
            role="operator",
            object=qd,
            details={
                "asked_by": q.kind,
                "processors": len(doc["holdings"]),
                "report_sha256": hashlib.sha256(labfs.read_bytes(js)).hexdigest(),
            },
        )
    )
    return doc, js, page
