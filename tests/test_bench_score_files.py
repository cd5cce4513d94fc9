"""`facelab bench --scores GEN IMP`: a score file that is not one is one line naming it
and exit 2, never a hang, a traceback or an empty report (independent metrics check of
session 9); a big-endian float64 array is numbers like any other."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from tests.test_cli_audit import one_line_error, run


@pytest.fixture
def impostors(tmp_path: Path) -> Path:
    p = tmp_path / "imp.npy"
    np.save(p, np.random.default_rng(0).normal(0, 0.3, 2000))
    return p


def _bad(tmp_path: Path, how: str) -> Path:
    p = tmp_path / ("bad.npy" if how.startswith("npy") else "bad.txt")
    if how == "fifo":
        os.mkfifo(p)
    elif how == "dev-zero":
        p.symlink_to("/dev/zero")
    elif how == "empty":
        p.write_bytes(b"")
    elif how == "blank-lines":
        p.write_text("\n\n\n")
    elif how == "inf":
        p.write_text("0.5\n1e400\n")
    elif how == "npy-bool":
        np.save(p, np.array([True, False]))
    elif how == "npy-float16":
        np.save(p, np.array([0.5, 0.25], np.float16))
    elif how == "npy-huge-int":
        np.save(p, np.array([2**60], np.int64))
    return p


@pytest.mark.parametrize(
    "how",
    ["fifo", "dev-zero", "empty", "blank-lines", "inf", "npy-bool", "npy-float16", "npy-huge-int"],
)
def test_a_bad_score_file_is_one_line_naming_it(tmp_path, impostors, how) -> None:
    bad = _bad(tmp_path, how)
    p = run("bench", "--scores", str(bad), str(impostors), "--out", str(tmp_path / "o"))
    assert str(bad) in one_line_error(p)
    assert not (tmp_path / "o").exists()  # no report of a file that holds no scores


def test_big_endian_scores_are_the_same_numbers(tmp_path, impostors) -> None:
    g = np.random.default_rng(1).normal(1, 0.3, 300)
    np.save(tmp_path / "le.npy", g)
    np.save(tmp_path / "be.npy", g.astype(">f8"))
    outs = []
    for name in ("le", "be"):
        p = run("bench", "--scores", str(tmp_path / f"{name}.npy"), str(impostors),
                "--out", str(tmp_path / f"o-{name}"))  # fmt: skip
        assert p.returncode == 0, p.stderr
        outs.append((tmp_path / f"o-{name}" / "report.json").read_text())
    import json

    a, b = (json.loads(o) for o in outs)
    assert a["eer"] == b["eer"]


def test_the_api_refuses_a_score_matrix_and_booleans_and_reads_big_endian() -> None:
    from facelab.bench import eer, reduce_scores
    from facelab.errors import BadInputError

    rng = np.random.default_rng(3)
    g, i = rng.normal(1, 0.3, 200), rng.normal(0, 0.3, 3000)
    with pytest.raises(BadInputError, match="1-D"):
        reduce_scores(g.reshape(20, 10), i)
    with pytest.raises(BadInputError, match="booleans"):
        reduce_scores(g > 1, i)
    assert eer(reduce_scores(g.astype(">f8"), i)).value == eer(reduce_scores(g, i)).value
