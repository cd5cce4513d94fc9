"""Survivors of session 12's mutation review: the manifest's salt, a manifest never
written through a link, and destroy never entering a linked directory inside a place.
Oracles written here: a brute-force guess of the logged digest over the manifest's
other fields, and files outside the lab read back after destroy."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest
from facelab import manifests
from facelab.errors import BadInputError
from facelab.vault import ops


def test_a_manifest_is_salted_with_32_random_bytes(tmp_path: Path) -> None:
    """The logged digest is of the salted bytes: two manifests of the same body differ,
    and the body alone (everything the tenant could guess) does not give the digest."""
    body = {"outputs": {"a.txt": hashlib.sha256(b"19").hexdigest()}}
    d1 = manifests.write(tmp_path, "acme", "job-20260101T000000Z-0000000a", "job", body)
    d2 = manifests.write(tmp_path, "acme", "job-20260101T000000Z-0000000b", "job", body)
    assert d1 != d2
    doc = manifests.read(tmp_path, "acme", "job-20260101T000000Z-0000000a", d1)
    assert doc is not None and len(bytes.fromhex(doc["salt"])) == 32
    unsalted = {k: v for k, v in doc.items() if k != "salt"}
    assert hashlib.sha256(manifests.encode(unsalted)).hexdigest() != d1


def test_a_manifest_is_never_written_through_a_linked_directory(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    lab = tmp_path / "lab"
    lab.mkdir()
    (lab / manifests.PLACE).symlink_to(outside, target_is_directory=True)
    with pytest.raises(BadInputError, match="not a directory"):
        manifests.write(lab, "acme", "job-20260101T000000Z-0000000a", "job", {})
    assert list(outside.rglob("*")) == []


def test_removing_a_place_never_enters_a_linked_directory_inside_it(tmp_path: Path) -> None:
    """A link to a directory outside the lab, planted in a tenant's place: the link goes,
    what it points to stays (positive control: the place's own files go)."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "precious.txt").write_text("not the lab's\n")
    place = tmp_path / "lab" / "outbox" / "acme"
    place.mkdir(parents=True)
    (place / "own.txt").write_text("the tenant's\n")
    os.symlink(outside, place / "dir-link", target_is_directory=True)
    r = ops._remove_tree(place)
    assert r["action"].startswith("removed"), r
    assert not place.exists()
    assert (outside / "precious.txt").read_text() == "not the lab's\n"


def test_every_part_of_a_joined_error_must_be_a_lab_fact() -> None:
    """Mutation s03: the job.finish ``error`` is lab facts joined with "; ": one part of
    tenant text after a lab fact is refused, not only a wholly foreign one."""
    from facelab.audit import Event
    from facelab.errors import AuditSchemaError

    def finish(error: str) -> Event:
        return Event(
            "job.finish",
            "runner",
            tenant="acme",
            object="20260101T000000Z-0000000a",
            decision="failed",
            details={"error": error},
        )

    finish("exit status 1; wall clock: 30 s").validate()  # control: lab facts only
    with pytest.raises(AuditSchemaError):
        finish("exit status 1; Alice Smith 1985-02-03").validate()
