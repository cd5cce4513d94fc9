"""The import gate, round 3: three classes of bytes or names outside what is checked,
each closed by a rule (not by the instances red team 15 found), each rule tested on
several instances made by hand next to a control made by the ordinary tools.

* **canonical tar** (``_tar.py``): a pickle in a member's block padding or in the
  ``linkname`` of a regular file was admitted. Rule: every header field the gate does
  not use is empty (linkname of files and directories, devmajor/devminor, GNU times and
  sparse fields, ustar bytes 500-511, v7 bytes after the device numbers), string fields
  NUL after their terminator, numeric fields plain octal, user and group names plain,
  pax records the gate reads past a number or a name, the name fields the gate reads
  past (of a pax or long-name header; of a member named by one) the tools' rendering of
  the member's name, block padding and the end blocks zero. Instances: each field
  written by hand with a correct checksum. Controls: Python's ``tarfile`` (pax, GNU,
  ustar, gzip) and GNU ``tar`` (``czf``, ``--format=posix``, ``v7``) of a package.
* **external data coverage** (``checks/external_data.py``): an unread tail after the
  last tensor was admitted. Rule: the tensors that read a file cover it whole without
  overlap, only all-zero gaps under 4 KiB allowed. Instances: a tail, a gap in the
  middle (non-zero; zero but 4 KiB), overlapping ranges. Controls: ``onnx.save_model``
  with ``save_as_external_data=True, all_tensors_to_one_file=True``; a 64-byte zero gap.
* **folded names** (``names.py``): ``weights.bin`` and ``WEIGHTS.bin``, or one name in
  NFC and NFD, both used, were admitted. Rule: every path NFC, no two paths equal after
  NFC and ``casefold()``, directory and archive alike. Control: distinct names.

Each refusal is checked at the gate (the failed check names the file and the rule, an
audit entry says refused, nothing is registered), one per class from the command line
(exit 3).
"""

from __future__ import annotations

import base64
import io
import json
import pickle
import shutil
import subprocess
import tarfile
import unicodedata
from pathlib import Path

import numpy as np
import onnx
import pytest
from facelab.gates.importing import _tar, list_models
from facelab.gates.importing.names import name_problems
from facelab.gates.importing.ops import import_model, models_dir
from facelab.labdir import audit_writer, open_lab
from onnx import TensorProto, numpy_helper

from tests.audit_helpers import PASS, entries_path, make_lab
from tests.import_helpers import (
    build_model,
    configure,
    dir_to_tar_bytes,
    make_keys,
    make_package,
    model_json,
    sign_and_approve,
)


class _Evil:
    def __reduce__(self):
        return (print, ("pwned",))


EVIL = pickle.dumps(_Evil(), protocol=2)  # 40-odd bytes, fits a linkname or a padding


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    return make_keys(tmp_path_factory.mktemp("keys"))


@pytest.fixture
def lab(tmp_path: Path, keys):
    lab = make_lab(tmp_path / "lab")
    configure(lab.paths.root, keys, smoke_timeout_s=20)
    return open_lab(lab.paths.root)


def gate(lab, package: Path):
    with audit_writer(lab, PASS) as log:
        return import_model(lab, "acme", package, "tester", log)


def refused(lab, package: Path) -> dict[str, str]:
    """Gate ``package``; assert it is refused, audited as refused and not registered;
    return {check: its problems joined}."""
    report = gate(lab, package)
    assert not report.accepted, report.table()
    last = json.loads(entries_path(lab).read_text().splitlines()[-1])
    assert last["action"] == "model.import" and last["decision"] == "refused"
    assert list_models(models_dir(lab)) == []
    return {c.name: " | ".join(c.problems) for c in report.failed()}


# ---------------------------------------------------------------- 1: canonical tar
def _tarfile_bytes(fmt=tarfile.PAX_FORMAT, members=(("p/a.bin", b"abc"),)) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as tf:
        for name, data in members:
            if data is None:
                info = tarfile.TarInfo(name)
                info.type = tarfile.DIRTYPE
                tf.addfile(info)
                continue
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.uname, info.gname = "tenant", "staff"
            tf.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _headers(data: bytes) -> list[int]:
    """Offsets of the member headers of an uncompressed archive (x/L headers included)."""
    out, pos = [], 0
    while data[pos : pos + 512].strip(b"\0"):
        out.append(pos)
        size = int(data[pos + 124 : pos + 136].split(b"\0")[0] or b"0", 8)
        pos += 512 + -(-size // 512) * 512
    return out


def _patch(data: bytes, header: int, at: int, new: bytes, checksum: bool = True) -> bytes:
    """``data`` with ``new`` written at byte ``at`` of the header at ``header``, the
    header's checksum recomputed (a well-formed header with a non-canonical field)."""
    b = bytearray(data)
    b[header + at : header + at + len(new)] = new
    if checksum:
        h = b[header : header + 512]
        h[148:156] = b" " * 8
        b[header + 148 : header + 156] = f"{sum(h):06o}\0 ".encode()
    return bytes(b)


def _extract(tmp_path: Path, data: bytes):
    src = tmp_path / "a.tar"
    src.write_bytes(data)
    dest = tmp_path / "out"
    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir()
    return _tar.extract(
        src, dest, max_members=16, max_member=1 << 20, max_total=1 << 20, max_ratio=100
    )


USTAR = _tarfile_bytes(tarfile.USTAR_FORMAT, (("p", None), ("p/a.bin", b"abc")))
GNU = _tarfile_bytes(tarfile.GNU_FORMAT, (("p/" + "n" * 120, b"abc"),))
PAX = _tarfile_bytes(tarfile.PAX_FORMAT, (("p/a.bin", b"abc"),))
PAX_LONG = _tarfile_bytes(tarfile.PAX_FORMAT, (("p/" + "é" * 80, b"abc"),))


def _v7() -> bytes:
    b = bytearray(_tarfile_bytes(tarfile.USTAR_FORMAT))
    b[257:512] = b"\0" * 255  # no magic, no names, no device numbers: a v7 header
    return _patch(bytes(b), 0, 0, b"")


def _pax_record(key: str, value: str) -> bytes:
    body = f" {key}={value}\n"
    n = len(body)
    n += len(str(n + len(str(n))))
    return f"{n}{body}".encode()


def _with_pax(records: bytes) -> bytes:
    """A pax 'x' header holding ``records``, then a plain ustar member p/a.bin."""
    data = _tarfile_bytes(tarfile.USTAR_FORMAT)
    h = bytearray(512)
    h[0:14] = b"././@PaxHeader"
    h[100:108], h[108:116], h[116:124] = b"0000644\0", b"0000000\0", b"0000000\0"
    h[124:136] = f"{len(records):011o}\0".encode()
    h[136:148] = b"00000000000\0"
    h[156:157] = b"x"
    h[257:265] = b"ustar\x0000"
    h[329:345] = b"0000000\x000000000\0"
    pad = -len(records) % 512
    return _patch(bytes(h), 0, 0, b"") + records + b"\0" * pad + data


_FILE_HDR = _headers(USTAR)[1]  # p/a.bin in USTAR (after the directory p/)
_PAD = _FILE_HDR + 512 + 3  # the first padding byte after its 3 bytes of data

CANONICAL_BREACHES = [
    # (archive, what the refusal says)
    (_patch(USTAR, _PAD, 0, EVIL, checksum=False), "block padding"),
    (_patch(USTAR, _FILE_HDR, 157, EVIL), "link name"),
    (_patch(USTAR, 0, 157, b"x"), "link name"),  # on the directory
    (_patch(USTAR, _FILE_HDR, 329, b"0000001\0"), "devmajor"),
    (_patch(USTAR, _FILE_HDR, 337, b"7\0\0\0\0\0\0\0"), "devminor"),
    (_patch(USTAR, _FILE_HDR, 500, b"\x80\x02"), "500-511"),
    (_patch(USTAR, _FILE_HDR, 509, b"."), "500-511"),
    (_patch(USTAR, _FILE_HDR, 60, EVIL[:30]), "after the name's NUL"),
    (_patch(USTAR, _FILE_HDR, 400, b"x"), "prefix"),
    (_patch(USTAR, _FILE_HDR, 280, b"x"), "user name"),
    (_patch(USTAR, _FILE_HDR, 265, b"(S'x'\ntR."), "user name"),
    (_patch(USTAR, _FILE_HDR, 297, b"\x80\x02."), "group name"),
    (_patch(USTAR, _FILE_HDR, 100, b"644\0ABCD"), "mode field"),
    (_patch(USTAR, _FILE_HDR, 136, b"0\0" + b"Q" * 10), "mtime field"),
    (_patch(GNU, _headers(GNU)[1], 345, b"00000000001\0"), "GNU fields"),
    (_patch(GNU, _headers(GNU)[1], 490, b"\x01"), "GNU fields"),
    (_patch(_v7(), 0, 270, b"x"), "user name"),
    (_patch(_v7(), 0, 400, b"x"), "v7 header"),
    (_patch(_patch(GNU, 512, 122, b"\0" + EVIL, False), 0, 124, b"%011o\0" % 200), "long name"),
    (_patch(_with_pax(_pax_record("mtime", "1")), 512 + 100, 0, EVIL, False), "block padding"),
    (_with_pax(_pax_record("comment", base64.b64encode(EVIL).decode())), "comment"),
    (_with_pax(_pax_record("SCHILY.xattr.user.x", "abc")), "SCHILY.xattr"),
    (_with_pax(_pax_record("mtime", "1.5e3")), "mtime value"),
    (_with_pax(_pax_record("uname", "a b")), "uname value"),
    (_with_pax(_pax_record("linkpath", "target")), "link target"),
    (_with_pax(_pax_record("mtime", "1") + _pax_record("mtime", "2")), "appears twice"),
    # the name field of a pax header, and a member's own name when pax names it
    (_patch(_with_pax(_pax_record("mtime", "1")), 0, 0, base64.b64encode(EVIL)[:99]), "marker"),
    (
        _patch(PAX_LONG, _headers(PAX_LONG)[1], 0, b"p/\x80\x02(S'x'".ljust(100, b"\0")),
        "own name field",
    ),
]


@pytest.mark.parametrize(("data", "why"), CANONICAL_BREACHES)
def test_bytes_in_unused_tar_fields_or_padding_are_refused(tmp_path, data, why) -> None:
    with pytest.raises(_tar.TarRefused, match=why) as e:
        _extract(tmp_path, data)
    assert "canonical" in str(e.value) or why == "appears twice"


def test_a_directory_member_with_data_is_refused(tmp_path) -> None:
    d = bytearray(_tarfile_bytes(tarfile.USTAR_FORMAT, (("p", None), ("p/a.bin", b"abc"))))
    d = _patch(bytes(d), 0, 124, b"00000000003\0")
    d = d[:512] + b"abc" + b"\0" * 509 + d[512:]
    with pytest.raises(_tar.TarRefused, match="directory member carries 3 bytes"):
        _extract(tmp_path, d)


def test_tarfile_archives_in_every_format_are_admitted(tmp_path) -> None:
    """Controls: what Python's ``tarfile`` writes (pax with float mtimes, GNU long
    names, ustar with a prefix, gzip) passes the canonical rule unchanged."""
    pkg = make_package(tmp_path / "p", extra={"sub/w.bin": b"\1" * 3000, "é.bin": b"x"})
    want = {f"p/{q.relative_to(pkg).as_posix()}" for q in pkg.rglob("*") if q.is_file()}
    for fmt in (tarfile.PAX_FORMAT, tarfile.GNU_FORMAT):
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w", format=fmt) as tf:
            tf.add(pkg, arcname="p")
        files, problems = _extract(tmp_path, buf.getvalue())
        assert set(files) == want and problems == []
    assert _extract(tmp_path, USTAR)[0] == {"p/a.bin": 3}
    assert _extract(tmp_path, GNU)[0] == {"p/" + "n" * 120: 3}
    assert _extract(tmp_path, PAX_LONG)[0] == {"p/" + "é" * 80: 3}
    assert _extract(tmp_path, _v7())[0] == {"p/a.bin": 3}
    assert _extract(tmp_path, _with_pax(_pax_record("mtime", "1700000000.25")))[0]
    gz = tmp_path / "p.tar.gz"
    with tarfile.open(gz, "w:gz") as tf:
        tf.add(pkg, arcname="p")
    assert set(_extract(tmp_path, gz.read_bytes())[0]) == want


@pytest.mark.skipif(shutil.which("tar") is None, reason="GNU tar not installed")
@pytest.mark.parametrize(
    "how", [["czf"], ["cf"], ["--format=posix", "-cf"], ["--format=v7", "-cf"]]
)
def test_gnu_tar_archives_are_admitted(tmp_path, how) -> None:
    make_package(tmp_path / "p", extra={"sub/w.bin": b"\1" * 3000, "é.bin": b"x"})
    out = tmp_path / "p.tar"
    subprocess.run(["tar", *how, str(out), "p"], cwd=tmp_path, check=True)
    files, problems = _extract(tmp_path, out.read_bytes())
    assert len(files) == 5 and problems == []


def test_a_pickle_in_tar_padding_or_linkname_is_refused_by_the_gate(lab, keys, tmp_path) -> None:
    pkg = sign_and_approve(make_package(tmp_path / "p"), keys)
    good = dir_to_tar_bytes(pkg, "p")
    hdr = next(h for h in _headers(good) if good[h : h + 11] == b"p/README.md")
    size = int(good[hdr + 124 : hdr + 135], 8)
    bad = tmp_path / "bad.tar"
    bad.write_bytes(_patch(good, hdr + 512 + size, 0, EVIL, checksum=False))
    f = refused(lab, bad)
    assert "p/README.md" in f["files"] and "block padding" in f["files"]
    assert "canonical" in f["files"]
    bad.unlink()
    bad.write_bytes(_patch(good, hdr, 157, EVIL[:100]))
    f = refused(lab, bad)
    assert "link name" in f["files"] and "canonical" in f["files"]
    ok = tmp_path / "ok.tar"  # control: the same archive, untouched
    ok.write_bytes(good)
    assert gate(lab, ok).accepted


def test_a_non_canonical_tar_exits_3_from_the_command_line(tmp_path: Path) -> None:
    from tests.test_cli_audit import run

    assert run("init", str(tmp_path / "lab")).returncode == 0
    tar = tmp_path / "pad.tar"
    tar.write_bytes(_patch(USTAR, _PAD, 0, EVIL, checksum=False))
    p = run("model", "import", "--lab", str(tmp_path / "lab"), "--tenant", "acme", str(tar))
    assert p.returncode == 3 and "Traceback" not in p.stderr
    assert "block padding" in p.stdout
    last = json.loads((tmp_path / "lab/audit/entries.jsonl").read_text().splitlines()[-1])
    assert last["decision"] == "refused" and "block padding" in json.dumps(last["details"])


# ---------------------------------------------------------- 2: external data coverage
def _ext_tensor(name: str, loc: str, offset: int, n: int) -> TensorProto:
    """A float32 initializer of ``n`` elements read from ``loc`` at byte ``offset``."""
    t = TensorProto(name=name, data_type=TensorProto.FLOAT, dims=[n])
    t.data_location = TensorProto.EXTERNAL
    for k, v in (("location", loc), ("offset", str(offset)), ("length", str(4 * n))):
        e = t.external_data.add()
        e.key, e.value = k, v
    return t


def _ext_package(tmp_path: Path, keys, data: bytes, ranges: list[tuple[int, int]], spec=None):
    model = build_model()
    for i, (off, n) in enumerate(ranges):
        model.graph.initializer.append(_ext_tensor(f"E{i}", "w.bin", off, n))
    pkg = make_package(tmp_path / "p", model, spec, extra={"w.bin": data})
    return sign_and_approve(pkg, keys)


W = np.arange(64, dtype=np.float32).tobytes()  # 256 bytes


@pytest.mark.parametrize(
    ("data", "ranges", "why"),
    [
        # a tail after the last tensor: base64 of a pickle
        (W + base64.b64encode(EVIL), [(0, 64)], "bytes of 'w.bin' are read by no tensor"),
        # a non-zero gap between two tensors
        (W + b"\1" * 100 + W, [(0, 64), (356, 64)], "100 bytes of 'w.bin' are read by no"),
        # a zero gap of 4 KiB (more than alignment)
        (W + b"\0" * 4096 + W, [(0, 64), (4352, 64)], "4,096 bytes of 'w.bin'"),
        # bytes before the first tensor
        (base64.b64encode(EVIL) + W, [(len(base64.b64encode(EVIL)), 64)], "read by no tensor"),
        # overlapping ranges
        (W + W[:128], [(0, 64), (128, 64)], "overlapping external data"),
        # the same range twice
        (W, [(0, 64), (0, 64)], "overlapping external data"),
    ],
)
def test_external_data_no_tensor_reads_is_refused(lab, keys, tmp_path, data, ranges, why) -> None:
    f = refused(lab, _ext_package(tmp_path, keys, data, ranges))
    assert why in f["onnx"], f
    assert "rule: the tensors that reference an external file" in f["onnx"]


def test_onnx_external_data_and_alignment_padding_are_admitted(lab, keys, tmp_path) -> None:
    """Controls: onnx's own writer (every initializer, back to back in one file) and a
    64-byte zero gap (alignment) between two tensors."""
    model = build_model()
    extra = numpy_helper.from_array(np.ones((5, 7), np.float32), "E")
    model.graph.initializer.append(extra)
    out = tmp_path / "p"
    out.mkdir()
    onnx.save_model(
        model,
        str(out / "model.onnx"),
        save_as_external_data=True,
        all_tensors_to_one_file=True,
        location="weights.bin",
        size_threshold=0,
    )
    assert (out / "weights.bin").stat().st_size == 4 * (3 * 16 + 35)
    pkg = make_package(
        tmp_path / "q", onnx.load_model(str(out / "model.onnx"), load_external_data=False)
    )
    shutil.copy(out / "weights.bin", pkg / "weights.bin")
    report = gate(lab, sign_and_approve(pkg, keys))
    assert report.accepted, report.table()
    aligned = _ext_package(
        tmp_path / "a", keys, W + b"\0" * 64 + W, [(0, 64), (320, 64)], model_json(name="aligned")
    )
    report = gate(lab, aligned)
    assert report.accepted, report.table()


def test_external_tail_exits_3_from_the_command_line(lab, keys, tmp_path) -> None:
    from tests.test_cli_audit import ENV, run

    pkg = _ext_package(tmp_path, keys, W + base64.b64encode(EVIL), [(0, 64)])
    env = {**ENV, "FACELAB_PASSPHRASE": PASS.decode()}
    p = run("model", "import", "--lab", str(lab.paths.root), "--tenant", "acme", str(pkg), env=env)
    assert p.returncode == 3, p.stdout + p.stderr
    assert "read by no tensor" in p.stdout


# --------------------------------------------------------------------- 3: folded names
NFC = unicodedata.normalize("NFC", "poids_é.bin")
NFD = unicodedata.normalize("NFD", "poids_é.bin")


@pytest.mark.parametrize(
    ("names", "why"),
    [
        (("weights.bin", "WEIGHTS.bin"), "same name once folded"),
        ((NFC, NFD), "same name once folded"),
        ((NFD,), "not in Unicode NFC form"),
        (("Straße.bin", "STRASSE.bin"), "same name once folded"),
        (("w/a.bin", "W/b.bin"), "'W' and 'w'"),  # directories fold together too
    ],
)
@pytest.mark.parametrize("as_tar", [False, True])
def test_names_that_fold_together_are_refused(lab, keys, tmp_path, names, why, as_tar) -> None:
    model = build_model()
    extra = {}
    for i, name in enumerate(names):
        model.graph.initializer.append(_ext_tensor(f"E{i}", name, 0, 64))
        extra[name] = W
    pkg = sign_and_approve(make_package(tmp_path / "p", model, extra=extra), keys)
    if as_tar:
        tar = tmp_path / "p.tar"
        tar.write_bytes(dir_to_tar_bytes(pkg, "p"))
        pkg = tar
    f = refused(lab, pkg)
    assert why in f["files"], f
    assert "rule: " in f["files"]


def test_distinct_names_are_admitted(lab, keys, tmp_path) -> None:
    model = build_model()
    names = ("weights.bin", "weights2.bin", NFC, "Poids/x.bin")
    for i, name in enumerate(names):
        model.graph.initializer.append(_ext_tensor(f"E{i}", name, 0, 64))
    pkg = make_package(tmp_path / "p", model, extra=dict.fromkeys(names, W))
    report = gate(lab, sign_and_approve(pkg, keys))
    assert report.accepted, report.table()
    assert name_problems(["a.bin", "b.bin", "A/c.bin", "B/c.bin", NFC]) == []


def test_name_problems_name_both_spellings() -> None:
    got = name_problems([NFC, NFD])
    assert any("poids_e\\u0301.bin" in p and "NFC" in p for p in got)
    assert any("poids_\\xe9.bin" in p and "poids_e\\u0301.bin" in p for p in got)
