"""Issue 14 (red team 14g, case 03): a write that fails (a full disk) is reported as what
it is, an I/O error, never as tampering; the writer signs nothing after it, and the next
writer recovers the log."""

from __future__ import annotations

import errno
from pathlib import Path

import pytest
from facelab.audit import Event
from facelab.audit.log import AuditLog
from facelab.audit.verify import verify_log
from facelab.errors import TamperedError
from facelab.labdir import audit_writer, load_public_key

from tests.audit_helpers import PASS, lines, make_lab


def _disk_full_at_the_next_hash_write(monkeypatch) -> list[int]:
    calls = [0]
    real = AuditLog._write_hashes

    def write(self, n, leaf, frontier):
        calls[0] += 1
        if calls[0] == 1:
            raise OSError(errno.ENOSPC, "No space left on device", "hashes.bin")
        return real(self, n, leaf, frontier)

    monkeypatch.setattr(AuditLog, "_write_hashes", write)
    return calls


def test_a_full_disk_during_an_append_is_an_io_error_and_the_next_writer_recovers(
    tmp_path: Path, monkeypatch
) -> None:
    lab = make_lab(tmp_path / "lab", entries=3)
    before = lines(lab)
    calls = _disk_full_at_the_next_hash_write(monkeypatch)
    log = audit_writer(lab, PASS)
    with pytest.raises(OSError) as first:
        log.record(Event("test.full", "tester"))
    assert first.value.errno == errno.ENOSPC and not isinstance(first.value, TamperedError)
    # the same writer refuses more, as the same I/O error, and closes without signing
    with pytest.raises(OSError) as again:
        log.record(Event("test.after", "tester"))
    assert again.value.errno == errno.ENOSPC and not isinstance(again.value, TamperedError)
    head = (lab.paths.keys / "audit_head.a.note").read_bytes()
    log.close()  # no TamperedError from the mismatch the failed write left
    assert calls[0] == 1
    assert (lab.paths.keys / "audit_head.a.note").read_bytes() == head
    monkeypatch.undo()
    # the next writer recovers: every earlier entry kept, the log verifies intact
    with audit_writer(lab, PASS) as log:
        log.record(Event("test.next", "tester"))
    after = lines(lab)
    assert after[: len(before)] == before and b"test.next" in after[-1]
    report = verify_log(lab.paths.audit, lab.origin, load_public_key(lab), head_dir=lab.paths.keys)
    assert report.intact, report.damage


def test_without_the_failure_the_same_appends_sign_as_usual(tmp_path: Path) -> None:
    lab = make_lab(tmp_path / "lab", entries=3)
    with audit_writer(lab, PASS) as log:
        log.record(Event("test.full", "tester"))
        log.record(Event("test.after", "tester"))
    assert [b"test.full" in x or b"test.after" in x for x in lines(lab)[-2:]] == [True, True]
