"""Identifiers as keyed hashes: the export gate matches names, passport numbers and
birth dates without holding a plaintext list.

Every form is normalised first (Unicode NFKD, accents dropped, case folded, letters and
digits only), then hashed with HMAC-SHA-256 under a random key that lives only for one
scan. Forms::

    name        "N|" + given + " " + family, the reversed order, and both without space
    passport    "P|" + upper-case letters and digits
    birth date  "D|" + YYYYMMDD
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import re
import unicodedata
from collections.abc import Iterator
from datetime import date

_WORD = re.compile(r"[^\W\d_]+")
_ALNUM = re.compile(r"[A-Za-z0-9]+")


def fold(text: str) -> str:
    """NFKD, accents dropped, case folded."""
    t = unicodedata.normalize("NFKD", text)
    return "".join(c for c in t if not unicodedata.combining(c)).casefold()


def words(text: str) -> list[str]:
    return _WORD.findall(fold(text))


def h(key: bytes, form: str) -> bytes:
    return hmac.new(key, form.encode(), hashlib.sha256).digest()[:16]


def name_forms(name: str) -> set[str]:
    w = words(name)
    if len(w) < 2:
        return {f"N|{''.join(w)}"} if w and len(w[0]) >= 8 else set()
    out = set()
    for seq in (w, w[::-1], w[-1:] + w[:-1]):
        out.add("N|" + " ".join(seq))
        out.add("N|" + "".join(seq))
    return out


def passport_form(value: str) -> str:
    return "P|" + "".join(_ALNUM.findall(value)).upper()


def date_form(d: date) -> str:
    return f"D|{d.year:04d}{d.month:02d}{d.day:02d}"


def text_name_forms(text: str, max_words: int = 4) -> Iterator[tuple[str, str]]:
    """Candidate name forms in free text: runs of 2..max_words words, and long single
    words (a name written without spaces). Yields (form, the matched words' span)."""
    w = words(text)
    for i in range(len(w)):
        if len(w[i]) >= 8:
            yield "N|" + w[i], w[i]
        for n in range(2, max_words + 1):
            if i + n <= len(w):
                seq = w[i : i + n]
                yield "N|" + " ".join(seq), " ".join(seq)
                yield "N|" + "".join(seq), " ".join(seq)


_GROUPED = re.compile(
    r"(?<![A-Za-z0-9])[A-Za-z0-9]{1,6}(?:[ .-][A-Za-z0-9]{1,6}){1,3}"
    r"(?![A-Za-z0-9])"
)


def text_passport_forms(text: str) -> Iterator[str]:
    # numbers written in groups: "C97 426 460", "C97-426-460"
    for m in _GROUPED.finditer(text):
        joined = "".join(_ALNUM.findall(m.group()))
        if 6 <= len(joined) <= 12 and any(c.isdigit() for c in joined):
            yield "P|" + joined.upper()
    for tok in _ALNUM.findall(text):
        if 5 <= len(tok) <= 20 and any(c.isdigit() for c in tok):
            yield "P|" + tok.upper()
            # a number glued to a prefix or suffix: every 9-character window
            if len(tok) > 9:
                for i in range(len(tok) - 8):
                    yield "P|" + tok[i : i + 9].upper()


_DATES = [
    (re.compile(r"(?<!\d)(19\d\d|20[0-2]\d)[-/.](\d{1,2})[-/.](\d{1,2})(?!\d)"), "ymd"),
    (re.compile(r"(?<!\d)(\d{1,2})[-/.](\d{1,2})[-/.](19\d\d|20[0-2]\d)(?!\d)"), "dmy"),
    (re.compile(r"(?<!\d)(19\d\d|20[0-2]\d)(\d\d)(\d\d)(?!\d)"), "ymd"),
]


_MONTHS = {
    m: i + 1
    for i, m in enumerate(
        ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
    )
}
_NAMED = re.compile(
    r"(?i)(?<![\w])(\d{1,2})[ -]?([a-z]{3})[a-z]*\.?[ ,-]*((?:19|20)\d\d)"
    r"|(?<![\w])([a-z]{3})[a-z]*\.? (\d{1,2}),? ((?:19|20)\d\d)"
)


def text_dates(text: str) -> Iterator[date]:
    """Every calendar date written in ``text`` (ISO, D.M.Y, D/M/Y, M/D/Y, YYYYMMDD, and
    with English month names: 14 Mar 1987, 14-MAR-1987, March 14, 1987)."""
    for m in _NAMED.finditer(text):
        d, mon, y = (
            (m.group(1), m.group(2), m.group(3))
            if m.group(1)
            else (m.group(5), m.group(4), m.group(6))
        )
        month = _MONTHS.get(mon.casefold())
        if month:
            with contextlib.suppress(ValueError):
                yield date(int(y), month, int(d))
    for rx, order in _DATES:
        for m in rx.finditer(text):
            a, b, c = (int(x) for x in m.groups())
            tries = [(a, b, c)] if order == "ymd" else [(c, b, a), (c, a, b)]
            for y, mo, d in tries:
                with contextlib.suppress(ValueError):
                    yield date(y, mo, d)
