"""Identifiers: names, passport numbers and birth dates of the tenant's subjects, and
travel-document patterns, anywhere in an artifact's strings or bytes.

Vault matches go through keyed hashes (``keyed.py``): every candidate form in the text is
hashed and looked up, so the gate holds no plaintext list. Pattern rules need no vault:
ICAO 9303 MRZ data lines with valid check digits, and passport or national-ID numbers
next to a context word (Presidio's approach: a pattern plus context; it ships no
recogniser for these). Bytes are read as printable ASCII and UTF-16 runs.
"""

from __future__ import annotations

import re
from collections import defaultdict

import numpy as np
from facelab.gates.exporting import _mrz, keyed
from facelab.gates.exporting._types import Artifact, Finding, ScanContext

NAME = "identifiers"
MIN_RUN = 8
_PRINTABLE = np.zeros(256, bool)
_PRINTABLE[0x20:0x7F] = True
_PRINTABLE[0x09] = True
_PASSPORT_LIKE = re.compile(r"(?<![A-Za-z0-9])([A-Z]{1,2}[0-9]{6,8}|[0-9]{9})(?![A-Za-z0-9])")
_TOKEN = re.compile(r"[0-9A-Fa-f]{16,64}")
_SSN = re.compile(r"(?<![0-9-])(\d{3})-(\d{2})-(\d{4})(?![0-9-])")


def runs(mask: np.ndarray, min_len: int) -> list[tuple[int, int]]:
    """(start, end) of every run of True at least ``min_len`` long (vectorised)."""
    z = np.zeros(1, np.int8)
    edges = np.diff(np.concatenate((z, mask.view(np.int8), z)))
    starts, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
    keep = ends - starts >= min_len
    return list(zip(starts[keep].tolist(), ends[keep].tolist(), strict=True))


def printable_runs(data: bytes, min_len: int = MIN_RUN) -> list[tuple[int, str]]:
    """ASCII and UTF-16LE text runs in binary data, like strings(1)."""
    b = np.frombuffer(data, np.uint8)
    out = [(s, data[s:e].decode("ascii")) for s, e in runs(_PRINTABLE[b], min_len)]
    for align in (0, 1):
        pairs = b[align : align + (len(b) - align) // 2 * 2].reshape(-1, 2)
        mask = _PRINTABLE[pairs[:, 0]] & (pairs[:, 1] == 0)
        for s, e in runs(mask, min_len):
            off = align + 2 * s
            out.append((off, data[off : align + 2 * e].decode("utf-16-le")))
    return out


def texts(art: Artifact) -> list[tuple[str, str]]:
    """Every piece of text of the artifact with its location (computed once)."""
    if "texts" not in art.cache:
        out = list(art.scan_strings())
        if art.kind in ("onnx", "npy", "npz", "png", "jpeg", "bytes", "zip"):
            out += [(f"byte offset {off}", t) for off, t in printable_runs(art.data)]
        art.cache["texts"] = out
    return art.cache["texts"]


def _ssn_valid(a: str, g: str, s: str) -> bool:
    return a not in ("000", "666") and a[0] != "9" and g != "00" and s != "0000"


def detect(art: Artifact, ctx: ScanContext) -> list[Finding]:
    idx = ctx.index
    words = [w.casefold() for w in ctx.policy.identifiers["context_words"]]
    hits: dict[tuple[str, str], list[str]] = defaultdict(list)  # (subject, field) -> locs
    findings: list[Finding] = []
    seen_patterns: set[tuple[str, str]] = set()

    def pattern(sev: str, loc: str, evidence: str) -> None:
        if (evidence, loc) not in seen_patterns:
            seen_patterns.add((evidence, loc))
            findings.append(Finding(NAME, sev, art.name, loc, evidence))

    pseudonyms = ctx.cache.setdefault("pseudonyms", {str(x).lower() for x in idx.subjects})
    parts: dict[str, dict[str, str]] = defaultdict(dict)  # subject -> name part -> location
    for loc, text in texts(art):
        for w in set(keyed.words(text)):
            if len(w) >= 2:
                for subject, _field in idx.lookup("W|" + w):
                    parts[subject].setdefault(w, loc)
        # the pseudonyms jobs see are identifiers too: a table keyed by them, exported
        # beside a list of names, would put names on pseudonymous records
        for m in _TOKEN.finditer(text):
            tok = m.group(0).lower()
            if tok in pseudonyms:
                hits[(tok, "pseudonym")].append(loc)
            if len(tok) in (32, 40, 64):  # an unsalted digest of an identifier
                for subject, field in idx.lookup("H|" + tok):
                    hits[(subject, field)].append(loc)
        for form, _ in keyed.text_name_forms(text):
            for subject, field in idx.lookup(form):
                hits[(subject, field)].append(loc)
        for form in keyed.text_passport_forms(text):
            for subject, field in idx.lookup(form):
                hits[(subject, field)].append(loc)
        for d in keyed.text_dates(text):
            for subject, field in idx.lookup(keyed.date_form(d)):
                hits[(subject, field)].append(loc)
        for off, line in _mrz.find_mrz(text):
            pattern(
                "high",
                f"{loc}, character {off}",
                f"ICAO 9303 MRZ data line ({len(line)} characters, check digits valid)",
            )
            for subject, field in idx.lookup(keyed.passport_form(_mrz.document_number(line))):
                hits[(subject, field)].append(loc)
        for m in _mrz.NAME_LINE.finditer(text):
            for form in keyed.name_forms(f"{m.group(2)} {m.group(1)}".replace("<", " ")):
                for subject, field in idx.lookup(form):
                    hits[(subject, field)].append(loc)
        low = text.casefold()
        if any(w in low for w in words):
            if _PASSPORT_LIKE.search(text):
                pattern("medium", loc, "a passport-number-like token next to a context word")
            for m in _SSN.finditer(text):
                if _ssn_valid(*m.groups()):
                    pattern(
                        "medium",
                        loc,
                        "a national-ID-like number (SSN format) next to a context word",
                    )

    # two or more parts of one subject's name anywhere in the artifact (given and family
    # names in separate columns, lines of a vocabulary)
    for subject, found in parts.items():
        # a two-letter part alone is common; with a long part of the same name it is not
        if len(found) >= 2 and max(map(len, found)) >= 4:
            hits[(subject, "name")].append(" and ".join(sorted(set(found.values()))[:2]))
    strong = {s for (s, f) in hits if f in ("name", "passport_no")}
    for (subject, field), locs in sorted(hits.items()):
        if field == "birth_date":
            continue
        what = {
            "name": "the name",
            "passport_no": "the passport number",
            "pseudonym": "the pseudonym that jobs see",
        }[field]
        findings.append(
            Finding(
                NAME,
                "high",
                art.name,
                locs[0],
                f"{what} of a vault subject (keyed-hash match), {len(locs)} occurrence(s)",
                (subject,),
            )
        )
    dates = defaultdict(list)
    for (subject, field), locs in hits.items():
        if field == "birth_date":
            dates[locs[0]].append(subject)
    for loc, subjects in sorted(dates.items()):
        linked = sorted(set(subjects) & strong)
        if linked:
            findings.append(
                Finding(
                    NAME,
                    "high",
                    art.name,
                    loc,
                    "the birth date of a subject whose name or passport "
                    "number is also in the artifact",
                    tuple(linked),
                )
            )
        else:
            findings.append(
                Finding(
                    NAME,
                    ctx.policy.identifiers["birth_date_alone"],
                    art.name,
                    loc,
                    f"a date that is the birth date of "
                    f"{len(set(subjects))} vault subject(s) (not linked to "
                    "a name)",
                )
            )
    return findings
