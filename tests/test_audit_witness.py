"""The witness's cosign decision (``facelab.audit.witness.cosign``), through its Python
API: it cosigns honest growth (and the same checkpoint again), and refuses a fork, a
changed log key and a damaged state, leaving its state and the lab's witness note as
they were. The oracle is the bytes of those two files."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from facelab.audit import Event, witness
from facelab.errors import BadInputError, TamperedError
from facelab.labdir import audit_writer, open_lab, public_key_b64

from tests.audit_helpers import PASS, make_lab


def _grow(lab, n: int, tag: str) -> None:
    with audit_writer(lab, PASS) as log:
        for i in range(n):
            log.record(Event("test.grow", "tester", details={"tag": tag, "i": i}))


def _files(wdir: Path, lab) -> dict[str, bytes]:
    """The witness's state and the lab's copy of its note, byte for byte."""
    out = {str(p.relative_to(wdir)): p.read_bytes() for p in (wdir / "logs").glob("*.json")}
    for p in (lab.paths.audit / "witness").glob("*.note"):
        out[p.name] = p.read_bytes()
    return out


@pytest.fixture
def witnessed(tmp_path: Path):
    lab = make_lab(tmp_path / "lab", entries=3)
    wdir = tmp_path / "witness"
    witness.init(wdir, "w1.example")
    first = witness.cosign(wdir, lab)
    assert first.new_size > 0
    return lab, wdir


def test_the_same_checkpoint_is_cosigned_again(witnessed) -> None:
    lab, wdir = witnessed
    again = witness.cosign(wdir, lab)  # no growth: not a rollback
    assert again.old_size == again.new_size
    _grow(lab, 2, "honest")
    grown = witness.cosign(wdir, lab)
    assert grown.new_size > grown.old_size == again.new_size


def test_a_fork_of_the_log_is_refused_and_nothing_is_cosigned(
    witnessed, tmp_path, monkeypatch
) -> None:
    """The lab copied (same keys, same origin) and both copies grown apart, the copy on
    another machine (its own key pins): the witness that cosigned one refuses the
    other, whatever its size."""
    lab, wdir = witnessed
    fork_root = tmp_path / "fork"
    shutil.copytree(lab.paths.root, fork_root)
    _grow(lab, 2, "main")
    with monkeypatch.context() as m:
        m.setenv("FACELAB_KNOWN_LABS", str(tmp_path / "other-machine-pins.json"))
        _grow(open_lab(fork_root), 3, "fork")
    fork = open_lab(fork_root)
    assert fork.origin == lab.origin
    witness.cosign(wdir, lab)  # the witness follows the main line
    before = _files(wdir, fork)
    with pytest.raises(TamperedError):
        witness.cosign(wdir, fork)
    assert _files(wdir, fork) == before


def test_a_replaced_log_key_is_refused(witnessed) -> None:
    lab, wdir = witnessed
    before = _files(wdir, lab)
    other = Ed25519PrivateKey.generate().public_key()
    lab.paths.public_key.write_text(public_key_b64(other) + "\n")
    with pytest.raises(TamperedError):
        witness.cosign(wdir, lab)
    assert _files(wdir, lab) == before


@pytest.mark.parametrize("field", ["log_key", "note"])
def test_a_damaged_witness_state_is_refused(witnessed, field) -> None:
    lab, wdir = witnessed
    (state,) = (wdir / "logs").glob("*.json")
    doc = json.loads(state.read_text())
    doc[field] = 7
    state.write_text(json.dumps(doc))
    before = _files(wdir, lab)
    with pytest.raises(BadInputError):
        witness.cosign(wdir, lab)
    assert _files(wdir, lab) == before


def test_a_lab_without_a_signed_head_is_refused_and_nothing_is_cosigned(witnessed) -> None:
    lab, wdir = witnessed
    before = _files(wdir, lab)
    for slot in lab.paths.keys.glob("audit_head.*"):
        slot.unlink()
    with pytest.raises(TamperedError):
        witness.cosign(wdir, lab)
    assert _files(wdir, lab) == before


@pytest.mark.parametrize(
    "name",
    [
        "sp ace",
        "plus+",
        "",
        "x" * 65,
        "tab\tname",
        "bell\x07",
        "x/../../escaped",
        "../up",
        "/abs",
        "a//b",
    ],
)
def test_a_witness_name_outside_the_c2sp_rules_is_refused_at_init_and_cosign(
    tmp_path: Path, name: str
) -> None:
    with pytest.raises(BadInputError, match="witness name"):
        witness.init(tmp_path / "w", name)
    assert not (tmp_path / "w").exists()
    lab = make_lab(tmp_path / "lab", entries=2)
    wdir = tmp_path / "w2"
    witness.init(wdir, "w1.example")
    meta = json.loads((wdir / "witness.json").read_text())
    (wdir / "witness.json").write_text(json.dumps({**meta, "name": name}))
    with pytest.raises(BadInputError, match="name"):
        witness.cosign(wdir, lab)


@pytest.mark.parametrize(
    "name", [".hidden", "example.com/w1", "50%", "wit.example/w1", "a/.b", "..x"]
)
def test_any_accepted_witness_name_cosigns_into_one_file_inside_the_lab(
    tmp_path: Path, name: str
) -> None:
    """Red team 14h, case 01: the name ``x/../../escaped`` wrote the cosignature outside
    the lab. Such a name is refused now, and the file is named by ``note_file_name``
    (percent-encoded) besides, so every accepted name lands inside LAB/audit/witness/,
    one file a name, and verify finds it there."""
    lab = make_lab(tmp_path / "lab", entries=2)
    witness.init(tmp_path / "w", name)
    c = witness.cosign(tmp_path / "w", lab)
    assert c.path.parent == lab.paths.audit / "witness" and c.path.is_file()
    assert c.path.name == witness.note_file_name(name)
    notes = sorted(p for p in tmp_path.rglob("*.note") if "witness" in p.parts)
    assert notes == [c.path]
    assert len({witness.note_file_name(n) for n in ["a/b", "a%2Fb", "a_b", ".a", "%2Ea"]}) == 5


def test_a_witness_name_of_the_accepted_kind_cosigns(tmp_path: Path) -> None:
    lab = make_lab(tmp_path / "lab", entries=2)
    witness.init(tmp_path / "w", "Witness_2.example-org")
    c = witness.cosign(tmp_path / "w", lab)
    assert c.path == lab.paths.audit / "witness" / "Witness_2.example-org.note"
    assert c.path.is_file()


def test_a_cosign_waits_for_another_on_the_same_witness_then_gives_up_changing_nothing(
    witnessed,
) -> None:
    """Red team 14h, case 23: two cosigns of one witness at once raced on its state file.
    A cosign holds the witness's lock throughout; another waits, then exits 75 (busy)
    with nothing written, and succeeds once the first is done."""
    import fcntl
    import os

    from facelab.errors import BusyError

    lab, wdir = witnessed
    _grow(lab, 3, "more")
    before = _files(wdir, lab)
    fd = os.open(wdir / "lock", os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # another cosign is running
        with pytest.raises(BusyError):
            witness.cosign(wdir, lab, wait=0.3)
        assert _files(wdir, lab) == before
    finally:
        os.close(fd)
    c = witness.cosign(wdir, lab)
    assert c.new_size > c.old_size and _files(wdir, lab) != before


@pytest.mark.parametrize("how", ["inside", "link to inside", "through a linked parent"])
def test_a_witness_is_never_created_inside_a_lab_even_through_a_link(tmp_path: Path, how) -> None:
    """A witness's key must live outside every lab (the operator who holds the lab must
    not hold the witness too); a WDIR that is a link into the lab, or whose parent is,
    is inside it all the same (red team 14h)."""
    lab = make_lab(tmp_path / "lab", entries=1)
    if how == "inside":
        wdir = lab.paths.root / "w"
    elif how == "link to inside":
        (lab.paths.root / "w").mkdir()
        wdir = tmp_path / "w-link"
        wdir.symlink_to(lab.paths.root / "w")
    else:
        (tmp_path / "parent").symlink_to(lab.paths.root)
        wdir = tmp_path / "parent" / "w"
    with pytest.raises(BadInputError, match="inside the lab"):
        witness.init(wdir, "w1.example")
    assert not list(lab.paths.root.rglob("witness.key"))
    witness.init(tmp_path / "outside", "w1.example")  # the control
    assert (tmp_path / "outside" / "witness.key").is_file()
