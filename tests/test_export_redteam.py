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
        yield [(c, scanner.scan(c.paths)) for c in cases]
    finally:
        scanner.close()


def test_the_corpus_is_large_enough_and_covers_every_detector(results) -> None:
    leaky = [c for c, _ in results if c.leaky]
    clean = [c for c, _ in results if not c.leaky]
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


def test_every_leaky_artifact_is_refused_by_the_right_detectors(results) -> None:
    misses = []
    for case, report in results:
        if not case.leaky:
            continue
        fired = {f.detector for f in report.findings}
        if not report.refused or not case.detectors <= fired:
            misses.append(
                f"{case.name}: refused={report.refused}, fired {sorted(fired)}, "
                f"expected {sorted(case.detectors)}"
            )
    assert not misses, "\n".join(misses)


def test_no_clean_artifact_is_refused(results) -> None:
    false = [
        f"{c.name}: " + "; ".join(f"{f.detector}: {f.evidence}" for f in r.blocking())
        for c, r in results
        if not c.leaky and r.refused
    ]
    assert not false, "\n".join(false)


def test_findings_name_pseudonyms_never_identifiers(results) -> None:
    import csv

    case = next(c for c, _ in results)
    with open(case.paths[0].parents[3] / "dataset" / "manifest.csv", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    secrets = {r["name"] for r in rows} | {r["passport_no"] for r in rows}
    for _, report in results:
        text = report.text() + str(report.to_json())
        assert not [s for s in secrets if s in text]
