"""The red-team corpus (tests/export_corpus.py): every leaky artifact refused, with the
detectors that should see it among the findings; no clean artifact refused."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from tests.export_corpus import build_corpus
from tests.export_helpers import Scanner, bench_outbox, build_export_lab, subject_splits

# a 150-subject lab and the whole corpus: about 4 minutes on 2 cores; `make test-slow`
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def scan_all(tmp_path_factory: pytest.TempPathFactory):
    work: Path = tmp_path_factory.mktemp("redteam")
    el = build_export_lab(work, identities=150)
    cases = build_corpus(el.dataset, subject_splits(el), work / "corpus", bench_outbox(el))
    scanner = Scanner(el)
    plain = work / "plain"
    plain.mkdir()
    shutil.copyfile(el.cnn / "model.onnx", plain / "model.onnx")
    scanner.scan([plain])
    imported_rebuild = next(iter(scanner.last_rebuilt.values()))
    try:
        out = []
        for c in cases:
            report = scanner.scan(c.paths)
            out.append((c, report, scanner.last_rebuilt))
        yield out, imported_rebuild
    finally:
        scanner.close()


@pytest.fixture(scope="module")
def imported(scan_all):
    return scan_all[1]


@pytest.fixture(scope="module")
def results(scan_all):
    return scan_all[0]


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


# Leaks the rebuild removes, so that the release is clean, with the oracle that says so:
# "imported" = every released ONNX is byte for byte the gate's rebuild of the imported
# CNN alone (the leak sat in an unreachable tensor, a doc string or metadata); "low
# bytes" = the lowest byte of every released float32 is zero (the leak sat there).
DISARMED = {
    "onnx_stack_of_8_faces": "imported",
    "base64_png_face_in_doc_string": "imported",
    "text_in_lowest_bit_plane": "imported",
    "gallery_inside_onnx": "imported",
    "faces_and_name_in_onnx": "imported",
    "face_pixels_in_lowest_bytes": "low bytes",
}
# Clean artifacts that are no kind of the export contract: refused by it, and only by it
# (a generic JSON, a lone image or HTML page, a model not descending from an import,
# int8 weights).
OUTSIDE_CONTRACT = {
    "eigenface_baseline",
    "training_log",
    "score_histograms",
    "plot_png",
    "plot_jpeg",
    "digests_and_signature",
    "int8_quantised_weights",
    "group_fnmr_table",
    "html_report_with_data_uri_plot",
    "threshold_config",
}


def _disarmed(how: str, rebuilt: dict[str, bytes], imported: bytes) -> bool:
    import io

    if how == "imported":
        onnx_files = [b for p, b in rebuilt.items() if p.endswith(".onnx")]
        return bool(onnx_files) and all(b == imported for b in onnx_files)
    arrays = [np.load(io.BytesIO(b)) for p, b in rebuilt.items() if p.endswith(".npy")]
    return bool(arrays) and all(
        a.dtype == np.float32 and not (a.view(np.uint32) & 0xFF).any() for a in arrays
    )


def test_every_leaky_artifact_is_refused_or_leaves_without_its_leak(results, imported) -> None:
    """Refused; or released without the leak, by an oracle on the released bytes: names
    and passport numbers (a byte scan), the imported model's own rebuild, empty low
    bytes. A leak of faces, templates, payloads or a memorising model that the rebuild
    does not remove must be refused."""
    secrets = _secrets(results)
    misses = []
    for case, report, rebuilt in results:
        if not case.leaky or report.refused:
            continue
        carried = [p for p, b in rebuilt.items() if _carries(b, secrets)]
        how = DISARMED.get(case.name)
        if carried or not (
            case.detectors == {"identifiers"} or (how and _disarmed(how, rebuilt, imported))
        ):
            misses.append(f"{case.name}: released (expected {sorted(case.detectors)}; {carried})")
    assert not misses, "\n".join(misses)


def test_no_clean_artifact_is_refused(results) -> None:
    false = [
        f"{c.name}: " + "; ".join(f"{f.detector}: {f.evidence}" for f in r.blocking())
        for c, r, _ in results
        if not c.leaky and r.refused and c.name not in OUTSIDE_CONTRACT
    ]
    assert not false, "\n".join(false)
    for c, r, _ in results:
        if c.name in OUTSIDE_CONTRACT:
            assert r.refused and {f.detector for f in r.blocking()} == {"contract"}, c.name


def test_findings_name_neither_identifiers_nor_pseudonyms(results) -> None:
    secrets = _secrets(results)
    for _, report, _ in results:
        text = report.text() + str(report.to_json())
        assert not [s for s in secrets if s in text]
        for f in report.findings:
            assert all(s.startswith("S") and s[1:].isdigit() for s in f.subjects)
