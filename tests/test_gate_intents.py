"""The gates' state changes and their records together (issue 14): registering a model
and releasing an export are each an intent before the commit and an outcome after. A
process killed at either point leaves a lab whose next opening finishes the record from
the state on disk: committed -> its outcome, not committed -> ``aborted`` and no
half-written copy left behind."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from facelab.gates.importing import list_models
from facelab.gates.importing.ops import models_dir
from facelab.labdir import audit_writer, unlock
from facelab.vault import ops

from tests.export_helpers import PASSPHRASE, build_export_lab
from tests.import_helpers import build_model, make_package, model_json, sign_and_approve

REPO = Path(__file__).resolve().parents[1]

_CRASH = r"""
import os, signal, sys
from pathlib import Path
from facelab.labdir import open_lab, unlock, audit_writer
lab = open_lab(sys.argv[1]); root = unlock(lab, sys.argv[5].encode())
what, point, arg = sys.argv[2], sys.argv[3], sys.argv[4]

def hook(p):
    if p == point:
        os.kill(os.getpid(), signal.SIGKILL)

log = audit_writer(lab, root)
if what == "import":
    from facelab.gates.importing.ops import import_model
    import_model(lab, "acme", arg, "tester", log, hook=hook)
else:
    from facelab.gates.exporting import export
    export(lab, root, "acme", [Path(arg)], "tester", log, hook=hook)
print("no crash", flush=True)
"""


@pytest.fixture(scope="module")
def el(tmp_path_factory):
    return build_export_lab(tmp_path_factory.mktemp("intents"), identities=4, captures=1)


def _crash(el, what: str, point: str, arg: Path) -> None:
    argv = [sys.executable, "-c", _CRASH, str(el.lab.paths.root), what, point, str(arg)]
    p = subprocess.run(
        [*argv, PASSPHRASE.decode()],
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
    )
    assert p.returncode == -signal.SIGKILL, p.stdout + p.stderr


def _reopen(el) -> list[dict]:
    root = unlock(el.lab, PASSPHRASE)
    with audit_writer(el.lab, root) as log:
        return ops.reconcile(el.lab, root, log, "tester")


def _entries(el) -> list[dict]:
    text = (el.lab.paths.root / "audit" / "entries.jsonl").read_text()
    return [json.loads(line) for line in text.splitlines()]


def _closed_once(el, action: str, intent_seq: int) -> dict:
    outs = [
        e
        for e in _entries(el)
        if e["action"] == action and e["details"].get("intent") == intent_seq
    ]
    assert len(outs) == 1, outs
    return outs[0]


@pytest.mark.parametrize(("point", "committed"), [("after-intent", 0), ("after-commit", 1)])
def test_an_import_killed_at_each_point_is_on_the_record_after_reopening(
    el, tmp_path, point, committed
) -> None:
    dim = 16 + committed  # a package of its own (another digest) per case
    pkg = make_package(tmp_path / "pkg", build_model(dim), model_json(dim, name=f"m{dim}"))
    sign_and_approve(pkg, el.keys)
    before = len(list_models(models_dir(el.lab)))
    _crash(el, "import", point, pkg)
    intent = [e for e in _entries(el) if e["action"] == "model.import.intent"][-1]
    done = _reopen(el)
    want = "registered" if committed else "aborted"
    assert [(d["action"], d["outcome"]) for d in done] == [("model.import", want)]
    assert _closed_once(el, "model.import", intent["seq"])["decision"] == want
    # the effect, read from disk: listed exactly when committed; no temporary copy left
    assert len(list_models(models_dir(el.lab))) == before + committed
    assert not list(models_dir(el.lab).glob(".import-*"))
    assert _reopen(el) == []  # nothing left open


@pytest.mark.parametrize(("point", "committed"), [("after-intent", 0), ("after-commit", 1)])
def test_a_release_killed_at_each_point_is_on_the_record_after_reopening(
    el, point, committed
) -> None:
    out = el.lab.paths.root / "outbox" / "acme" / f"notes-{point}"
    out.mkdir(parents=True)
    (out / "notes.txt").write_text(f"training went fine ({point}); loss 0.31\n")
    released = el.lab.paths.root / "released" / "acme"
    before = sorted(released.glob("2*")) if released.exists() else []
    _crash(el, "export", point, out)
    intent = [e for e in _entries(el) if e["action"] == "export.release.intent"][-1]
    done = _reopen(el)
    want = "released" if committed else "aborted"
    assert [(d["action"], d["outcome"]) for d in done] == [("export.release", want)]
    outcome = _closed_once(el, "export.release", intent["seq"])
    assert (
        outcome["decision"] == want
        and outcome["details"]["release"] == (intent["details"]["release"])
    )
    after = sorted(released.glob("2*"))
    assert len(after) == len(before) + committed
    if committed:  # the release the intent named, with its manifest
        assert (el.lab.paths.root / intent["details"]["release"] / "manifest.json").is_file()
    assert not list(released.glob(".release-*"))
    assert _reopen(el) == []
