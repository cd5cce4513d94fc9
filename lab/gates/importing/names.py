"""File names that collide when folded: the name rule of the import gate.

``weights.bin`` and ``WEIGHTS.bin``, or ``poids_é.bin`` spelt with one code point (NFC)
and with ``e`` plus a combining accent (NFD), are two files on Linux but one on macOS
(APFS, HFS+), Windows (NTFS) and vfat: whichever is written last replaces the other, so
the file a reader there gets is not the one that was checked (issue 15 round 3). Rule,
for every path of a package (directory or archive, files and the directories above
them): the path is in Unicode NFC form, and no two paths are equal after canonical
caseless matching (Unicode 15, D145: ``NFD(casefold(NFD(x)))``; for NFC names this is
"equal after NFC normalisation and ``str.casefold()``").
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable
from pathlib import PurePosixPath

_RULE_NFC = "rule: every path of a package is in Unicode NFC form, one spelling per name"
_RULE_FOLD = (
    "rule: no two paths of a package may be equal after Unicode NFC normalisation and "
    "casefold(); they are one file on macOS, Windows and vfat"
)


def fold(name: str) -> str:
    """The caseless-matching key of ``name`` (Unicode D145)."""
    nfd = unicodedata.normalize
    return nfd("NFD", nfd("NFD", name).casefold())


def name_problems(files: Iterable[str]) -> list[str]:
    """Problems for the package paths ``files`` (relative POSIX paths of its files):
    each path not in NFC, and each pair of paths (files or the directories above them)
    that fold to the same key. [] when every name is NFC and distinct when folded."""
    paths: set[str] = set()
    for rel in files:
        parts = PurePosixPath(rel).parts
        paths.update("/".join(parts[:i]) for i in range(1, len(parts) + 1))
    problems = []
    for p in sorted(files):
        if not unicodedata.is_normalized("NFC", p):
            nfc = unicodedata.normalize("NFC", p)
            problems.append(f"{p!a}: path is not in Unicode NFC form (NFC: {nfc!a}; {_RULE_NFC})")
    seen: dict[str, str] = {}
    for p in sorted(paths):
        key = fold(p)
        if key in seen:
            a, b = seen[key], p
            same = unicodedata.normalize("NFC", a) == unicodedata.normalize("NFC", b)
            a, b = (ascii(a), ascii(b)) if same else (repr(a), repr(b))  # show code points
            problems.append(
                f"{a} and {b}: two paths that are the same name once folded ({_RULE_FOLD})"
            )
        else:
            seen[key] = p
    return problems
