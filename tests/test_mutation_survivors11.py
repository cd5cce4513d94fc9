"""Tests for the survivors of session 11's fresh mutation review (issue 22): each
asserts the effect that a small bug in a control left unchanged before. The mutant each
one kills is named in its docstring."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from facelab.errors import BadInputError
from facelab.gates.exporting.attestation import job_outputs
from facelab.gates.importing.checks._onnx_wire import subgraph_depth
from facelab.gates.importing.checks.files import nested_packages
from facelab.gates.importing.filetype import hidden_text, sniff, text_char
from facelab.jobs.api import JobContext
from facelab.jobs.trainers import pca_head

from tests.test_onnx_wire import _field

PCA = "facelab.jobs.trainers:pca_head"
PRIVATE = {"unit": "subject", "epsilon": 8.0, "delta": 1e-6}


JOB = "20261123T163000Z-0a1b2c3d"


def _log(tmp_path: Path, trainer: str, decision: str) -> Path:
    """A lab's audit directory with one job of ``trainer`` that finished ``decision``,
    its output listed in the job's manifest (whose digest the entry records)."""
    from facelab import manifests

    root = tmp_path / "lab"
    root.mkdir(exist_ok=True)
    sha = manifests.write(
        root, "acme", manifests.job_name(JOB), "job", {"outputs": {"model.onnx": "ab" * 32}}
    )
    start = {"kind": "train", "trainer": trainer, "spec_bytes": 100, "privacy": PRIVATE}
    lines = [
        {"seq": 0, "action": "job.start", "tenant": "acme", "object": JOB, "details": start},
        {
            "seq": 1,
            "action": "job.finish",
            "tenant": "acme",
            "object": JOB,
            "decision": decision,
            "details": {"output_files": 1, "manifest_sha256": sha},
        },
    ]
    (root / "audit").mkdir(exist_ok=True)
    (root / "audit" / "entries.jsonl").write_text("".join(json.dumps(e) + "\n" for e in lines))
    return root / "audit"


@pytest.mark.parametrize("decision", ["failed", "timeout", "refused"])
def test_a_job_that_did_not_finish_done_attests_nothing(tmp_path, decision) -> None:
    """Mutant A3: the ``decision == "done"`` check dropped from ``job_outputs``."""
    found = job_outputs(_log(tmp_path, PCA, decision), "acme", [PCA])
    assert found.models == {} and found.train_jobs == 0
    # positive control: the same log with the job done attests its output
    assert "ab" * 32 in job_outputs(_log(tmp_path, PCA, "done"), "acme", [PCA]).models


def test_a_trainer_the_policy_does_not_register_attests_nothing(tmp_path) -> None:
    """Mutant A4: the registered-trainer check dropped from ``job_outputs``."""
    found = job_outputs(_log(tmp_path, "mine:train", "done"), "acme", [PCA])
    assert found.models == {} and found.train_jobs == 0


@pytest.mark.parametrize("privacy", [None, {}])
def test_pca_head_refuses_to_run_without_a_privacy_budget(tmp_path, privacy) -> None:
    """Mutant T1: pca_head running without the lab's privacy parameters."""
    outbox = tmp_path / "outbox"
    outbox.mkdir()
    ctx = JobContext("j", "acme", {"params": {"dim": 4}}, tmp_path, outbox, tmp_path)
    ctx.privacy = privacy
    with pytest.raises(ValueError, match="privacy budget"):
        pca_head(ctx)
    assert list(outbox.iterdir()) == []


@pytest.mark.parametrize(
    "text",
    ["one tag \U000e0041 here", "one override \u202e here", "one isolate \u2067 here"],
)
def test_a_single_hidden_character_is_named(text) -> None:
    """Mutant I2: only two or more hidden characters named."""
    assert hidden_text(text).startswith("1 ")


def test_an_escape_sequence_is_not_text() -> None:
    """Mutant I3: ESC counted as text (an ANSI sequence in a README)."""
    assert not text_char("\x1b")
    assert sniff(b"abc \x1b[31mred\x1b[0m") == "binary"


@pytest.mark.parametrize(
    "files",
    [["model.onnx", "sub/model.onnx"], ["model.onnx", "sub/model.json"], ["a/b/model.onnx"]],
)
def test_either_model_file_in_a_subdirectory_is_a_nested_package(files) -> None:
    """Mutant F1: only model.json marking a nested package."""
    assert nested_packages(files) == [files[-1].rsplit("/", 1)[0]]
    assert nested_packages(["model.onnx", "signatures/model.json", "README.md"]) == []


def test_subgraphs_reached_through_a_graphs_list_count() -> None:
    """Mutant W1: AttributeProto.graphs (field 11) not followed."""
    graph = _field(1, _field(4, b"Identity"))
    for _ in range(5):
        attr = _field(1, b"bodies") + _field(11, graph)
        graph = _field(1, _field(4, b"Custom") + _field(5, attr))
    assert subgraph_depth(_field(7, graph)) == 5


def test_a_field_overrunning_its_parent_is_malformed_even_when_deep() -> None:
    """Mutant W3: an overrun of one byte accepted when the early stop fires first."""
    inner = _field(1, _field(4, b"Identity"))
    attr = _field(1, b"then_branch") + _field(6, inner)
    node = _field(4, b"If") + _field(5, attr)
    graph = _field(1, node)
    model = bytearray(_field(7, graph))
    model[1] += 1  # the graph field claims one byte more than the model holds
    assert subgraph_depth(bytes(model), stop=0) is None


@pytest.mark.parametrize(
    ("decl", "why"),
    [
        ("{ epsilon = 0, delta = 1e-6 }", "epsilon must lie in (0, 64]"),
        ("{ epsilon = 65, delta = 1e-6 }", "epsilon must lie in (0, 64]"),
        ("{ epsilon = 1, delta = 0.01 }", "delta must lie in (0, 0.001]"),
        ("{ epsilon = 1, delta = 0 }", "delta must lie in (0, 0.001]"),
        ("{ epsilon = 1 }", "give exactly epsilon and delta"),
        ('{ epsilon = "1", delta = 1e-6 }', "epsilon must be a number"),
    ],
)
def test_a_privacy_entry_outside_its_bounds_is_refused(tmp_path, decl, why) -> None:
    """Mutants L1, L2: the policy's privacy bounds loosened."""
    from enclave_policy import load_policy

    default = Path(__file__).resolve().parents[1] / "enclave_policy" / "default.toml"
    text = default.read_text()
    old = "trainer_privacy = { pca_head = { epsilon = 8.0, delta = 1e-6 } }"
    assert old in text
    p = tmp_path / "policy.toml"
    p.write_text(text.replace(old, f"trainer_privacy = {{ pca_head = {decl} }}"))
    with pytest.raises(BadInputError, match=re.escape(why)):
        load_policy(p)
    p.write_text(text)  # positive control: the default loads
    assert load_policy(p).governance.trainer_privacy["pca_head"]["epsilon"] == 8.0
