"""Two decisions of the job runner that need no confined child: the limits a job runs
under are the policy's ``[jobs]`` numbers (read here from the TOML itself), and what the
signed log keeps of a job's own error text is its exception class and a digest, never
the text (the job's words are data)."""

from __future__ import annotations

import hashlib
import tomllib
from pathlib import Path

import pytest
from facelab.jobs import runner

from enclave_policy import DEFAULT_POLICY, load_policy


def test_a_job_runs_under_the_policys_limits() -> None:
    jobs = tomllib.loads(DEFAULT_POLICY.read_text())["jobs"]
    lim = runner._limits(load_policy(DEFAULT_POLICY).governance)
    assert (lim.wall_seconds, lim.cpu_seconds, lim.memory_mb, lim.max_procs) == (
        jobs["wall_seconds"],
        jobs["cpu_seconds"],
        jobs["memory_mb"],
        jobs["max_procs"],
    )
    assert lim.max_file_mb == lim.max_write_mb == jobs["max_outbox_mb"]
    assert (lim.max_files, lim.max_output_kb) == (jobs["max_outbox_files"], jobs["max_output_kb"])


@pytest.mark.parametrize(
    ("message", "klass"),
    [
        ("ValueError: bad value", "ValueError"),
        # a class outside Python's and facelab's: its name is code's choice (session 12,
        # red team 14i case 30: names carried face bytes), so only "other" is kept
        ("numpy.linalg.LinAlgError: SVD did not converge", "other"),
        ("FaceBytes89504e47Error: x", "other"),
        ("KeyError", "KeyError"),
        ("Alice Smith was here: 1985-02-03", "error"),  # not a class name: no text kept
        ("x" * 65 + ": too long for a class name", "error"),
        ("", ""),
    ],
)
def test_only_the_exception_class_of_a_jobs_error_is_kept(message, klass) -> None:
    assert runner._error_class(message) == klass


def test_the_error_record_holds_a_class_and_a_length_never_the_text_or_its_digest() -> None:
    """Not even the text's digest (session 12): a short text the job chose is inverted by
    guessing; the digest is in the tenant's salted manifest, which destroy removes."""
    assert runner._error_record("") is None
    msg = "RuntimeError: subject Alice Smith"
    rec = runner._error_record(msg)
    assert rec == {"class": "RuntimeError", "chars": len(msg)}
    assert "Alice" not in repr(rec)
    assert hashlib.sha256(msg.encode()).hexdigest() not in repr(rec)


@pytest.mark.parametrize(
    ("a", "b", "inside"),
    [
        ("/lab/x", "/lab", True),
        ("/lab", "/lab", True),
        ("/lab2", "/lab", False),  # a prefix of the name is not a parent
        ("/lab", "/lab/x", False),
    ],
)
def test_a_path_is_inside_itself_and_its_parents_only(a, b, inside) -> None:
    assert runner._inside(Path(a), Path(b)) is inside
