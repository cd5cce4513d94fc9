"""The red-team corpus (tests/export_corpus.py): every leaky artifact refused, with the
detectors that should see it among the findings; no clean artifact refused."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.export_corpus import build_corpus
from tests.export_helpers import Scanner, bench_outbox, build_export_lab, subject_splits


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory):
    work: Path = tmp_path_factory.mktemp("redteam")
    el = build_export_lab(work, identities=150)
    cases = build_corpus(el.dataset, subject_splits(el), work / "corpus", bench_outbox(el))
    scanner = Scanner(el)
    try:
        out = []
        for c in cases:
            report = scanner.scan(c.paths)
            out.append((c, report, scanner.last_rebuilt))
        yield out
    finally:
        scanner.close()


def test_the_corpus_is_large_enough_and_covers_every_detector(results) -> None:
    leaky = [c for c, _, _ in results if c.leaky]
    clean = [c for c, _, _ in results if not c.leaky]
    assert len(leaky) >= 30 and len(clean) >= 30
    covered = set().union(*(c.detectors for c in leaky))
    assert covered >= {
        "identifiers",
        "faces",
        "templates",
        "payloads",
        "memorisation",
        "structural",
    }


def _secrets(results) -> set[str]:
    import csv

    case = next(c for c, _, _ in results)
    with open(case.paths[0].parents[3] / "dataset" / "manifest.csv", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    return {r["name"] for r in rows} | {r["passport_no"] for r in rows}


def _carries(data: bytes, secrets: set[str]) -> bool:
    low = data.lower()
    for s in secrets:
        for form in {s, s.replace(" ", ""), " ".join(reversed(s.split()))}:
            if form.lower().encode() in low or form.encode("utf-16-le") in data:
                return True
    return False


def test_every_leaky_artifact_is_refused_or_leaves_without_its_leak(results) -> None:
    """Refused; or, where the leak sat in a place the rebuild does not write (metadata,
    doc strings, names), released without it: an independent byte scan of the rebuilt
    files finds none of the dataset's names or passport numbers. A leak of faces,
    templates, payloads or a memorising model must be refused."""
    secrets = _secrets(results)
    misses = []
    for case, report, rebuilt in results:
        if not case.leaky or report.refused:
            continue
        carried = [p for p, b in rebuilt.items() if _carries(b, secrets)]
        if case.detectors != {"identifiers"} or carried:
            misses.append(f"{case.name}: released (expected {sorted(case.detectors)}; {carried})")
    assert not misses, "\n".join(misses)


def test_no_clean_artifact_is_refused(results) -> None:
    false = [
        f"{c.name}: " + "; ".join(f"{f.detector}: {f.evidence}" for f in r.blocking())
        for c, r, _ in results
        if not c.leaky and r.refused
    ]
    assert not false, "\n".join(false)


def test_findings_name_neither_identifiers_nor_pseudonyms(results) -> None:
    secrets = _secrets(results)
    for _, report, _ in results:
        text = report.text() + str(report.to_json())
        assert not [s for s in secrets if s in text]
        for f in report.findings:
            assert all(s.startswith("S") and s[1:].isdigit() for s in f.subjects)
