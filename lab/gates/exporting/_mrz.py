"""ICAO Doc 9303 machine-readable zones: check digits and line recognition (pure).

Check digit (Doc 9303 part 3, 4.9): characters valued 0-9 for digits, A=10 ... Z=35,
'<' = 0; weights 7, 3, 1 repeating; the digit is the weighted sum mod 10.
Lines: TD3 (passports) 2 x 44, TD2 2 x 36, TD1 (ID cards) 3 x 30. A data line counts
when every check digit of its type is valid, its dates are dates and its sex field is
M, F, X or '<' (a random 44-character string passes with odds below 1 in 10^4).
"""

from __future__ import annotations

import re

_VALUES = {
    **{str(i): i for i in range(10)},
    **{chr(ord("A") + i): 10 + i for i in range(26)},
    "<": 0,
}
CANDIDATE = re.compile(r"[A-Z0-9<]{30,}")
NAME_LINE = re.compile(r"[PIACV][A-Z<][A-Z<]{3}([A-Z]+(?:<[A-Z]+)*)<<([A-Z]+(?:<[A-Z]+)*)")

# length -> (check fields (start, end, check position), birth, expiry, sex position)
_LAYOUT = {
    44: ([(0, 9, 9), (13, 19, 19), (21, 27, 27)], (13, 19), (21, 27), 20),  # TD3 line 2
    36: ([(0, 9, 9), (13, 19, 19), (21, 27, 27)], (13, 19), (21, 27), 20),  # TD2 line 2
    30: ([(0, 6, 6), (8, 14, 14)], (0, 6), (8, 14), 7),  # TD1 line 2
}


def check_digit(field: str) -> int:
    return sum(_VALUES[c] * (7, 3, 1)[i % 3] for i, c in enumerate(field)) % 10


def _yymmdd(s: str) -> bool:
    return s.isdigit() and 1 <= int(s[2:4]) <= 12 and 1 <= int(s[4:6]) <= 31


def is_data_line(line: str) -> bool:
    """A TD3/TD2/TD1 data line: every check digit valid, real dates, a sex field."""
    layout = _LAYOUT.get(len(line))
    if layout is None or "<" not in line:
        return False
    checks, (b0, b1), (e0, e1), sex = layout
    if line[sex] not in "MFX<" or not _yymmdd(line[b0:b1]) or not _yymmdd(line[e0:e1]):
        return False
    return all(line[p].isdigit() and check_digit(line[a:b]) == int(line[p]) for a, b, p in checks)


def find_mrz(text: str) -> list[tuple[int, str]]:
    """(offset, line) of every MRZ data line in ``text`` (the zone is upper case)."""
    out = []
    for m in CANDIDATE.finditer(text):
        s = m.group()
        for n in (44, 36, 30):
            hit = next((i for i in range(len(s) - n + 1) if is_data_line(s[i : i + n])), None)
            if hit is not None:
                out.append((m.start() + hit, s[hit : hit + n]))
                break
    return out


def birth_date(line: str) -> str:
    """YYMMDD of a data line."""
    b0, b1 = _LAYOUT[len(line)][1]
    return line[b0:b1]


def document_number(line: str) -> str:
    return line[:9].replace("<", "") if len(line) in (44, 36) else ""
