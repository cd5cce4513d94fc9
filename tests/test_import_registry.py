"""The model registry's last line of defence (``gates.importing.gate._register_locked``):
one name@version is one model per tenant even when two imports race past the gate's
``check_name``. The registration is called directly, under the lock, with the state a
racing import would find: the refusal leaves ``registry.json`` byte for byte as it was;
the same call for the same model (re-signed) registers it once."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest
from facelab.gates.importing.gate import _register_locked, model_identity

DIGEST = "sha256:" + "ab" * 32
SHA = {"weights.npz": "11" * 32, "model.json": "22" * 32}
MODEL_JSON = {"name": "cnn", "version": "1.0.0", "output": {"dim": 128}}
ALLOWED = {"weights.npz": "weights", "model.json": "metadata"}


def _call(models_dir: Path, sha: dict[str, str]):
    report = SimpleNamespace(digest=DIGEST, tenant="acme", model="cnn@1.0.0")
    ctx = SimpleNamespace(
        policy=SimpleNamespace(allowed_files=ALLOWED),
        package=SimpleNamespace(sha256=sha),
        model_json=MODEL_JSON,
        approvers=["officer"],
        statement_sha256="cd" * 32,
    )
    return _register_locked(report, ctx, models_dir)


@pytest.fixture
def models_dir(tmp_path: Path) -> Path:
    d = tmp_path / "models"
    (d / DIGEST.removeprefix("sha256:")).mkdir(parents=True)  # already rebuilt
    first = {
        "model": "cnn@1.0.0",
        "tenant": "acme",
        "digest": "sha256:" + "ef" * 32,  # registered first, by the other import
        "path": "ef" * 32,
        "model_identity": model_identity(SHA, MODEL_JSON, ALLOWED),
    }
    (d / "registry.json").write_text(json.dumps([first], indent=2) + "\n")
    return d


def test_a_racing_import_of_other_weights_under_a_taken_name_is_refused(models_dir) -> None:
    before = (models_dir / "registry.json").read_bytes()
    other = {**SHA, "weights.npz": "99" * 32}
    with pytest.raises(ValueError):
        _call(models_dir, other)
    assert (models_dir / "registry.json").read_bytes() == before


def test_the_same_model_under_its_name_is_registered_for_its_digest(models_dir) -> None:
    target = _call(models_dir, SHA)  # the same identity (say, signed again): registered
    assert target == models_dir / DIGEST.removeprefix("sha256:")
    entries = json.loads((models_dir / "registry.json").read_text())
    assert [(e["model"], e["digest"]) for e in entries] == [
        ("cnn@1.0.0", "sha256:" + "ef" * 32),
        ("cnn@1.0.0", DIGEST),
    ]
    _call(models_dir, SHA)  # and once only
    assert len(json.loads((models_dir / "registry.json").read_text())) == 2


@pytest.mark.parametrize(
    "taken",
    [
        {"model": "other@2.0.0", "tenant": "acme"},  # another name of the same tenant
        {"model": "cnn@1.0.0", "tenant": "beta"},  # the same name, another tenant's
    ],
)
def test_a_name_is_taken_only_for_its_own_tenant(tmp_path, taken) -> None:
    d = tmp_path / "models"
    (d / DIGEST.removeprefix("sha256:")).mkdir(parents=True)
    entry = {**taken, "digest": "sha256:" + "ef" * 32, "path": "ef" * 32}
    entry["model_identity"] = "sha256:" + "00" * 32  # other weights
    (d / "registry.json").write_text(json.dumps([entry]) + "\n")
    _call(d, SHA)
    assert [e["digest"] for e in json.loads((d / "registry.json").read_text())][-1] == DIGEST


def test_a_copy_that_cannot_be_rebuilt_leaves_no_half_copy(tmp_path) -> None:
    d = tmp_path / "models"
    d.mkdir()
    with pytest.raises(Exception):  # noqa: B017 (the context cannot rebuild anything)
        _call(d, SHA)
    assert sorted(p.name for p in d.iterdir()) == []
