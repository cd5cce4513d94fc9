"""Shared fixtures: small synthetic datasets built in tmp_path."""

from __future__ import annotations

import importlib.abc
import importlib.util
import sys
from pathlib import Path

import pytest


class _FacelabIsLab(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """``facelab.X`` is the module ``lab.X`` itself (one object under both names)."""

    def find_spec(self, name, path, target=None):
        if name == "facelab" or name.startswith("facelab."):
            return importlib.util.spec_from_loader(name, self)
        return None

    def create_module(self, spec):
        return importlib.import_module("lab" + spec.name[len("facelab") :])

    def exec_module(self, module) -> None:
        pass


def _facelab_from_the_mutants_copy() -> None:
    """Under ``make mutation`` the tests run in mutmut's copy (``mutants/``) of the tree,
    which it puts first on ``sys.path``: the import name ``facelab`` must then be that
    copy's ``lab`` package (the mutated code, under the module names mutmut records),
    not the editable install's. Elsewhere this does nothing."""
    tree = Path(__file__).resolve().parents[1]
    if tree.name != "mutants" or not (tree / "lab" / "__init__.py").is_file():
        return
    if "facelab" not in sys.modules:
        sys.meta_path.insert(0, _FacelabIsLab())


_facelab_from_the_mutants_copy()


def _known_labs_of_this_run() -> None:
    """Key pins (``facelab.audit.pins``) of the labs the tests make go to a file of this
    test process, never to the user's ~/.config (each xdist worker has its own)."""
    import os
    import tempfile

    if "FACELAB_KNOWN_LABS" not in os.environ:
        d = tempfile.mkdtemp(prefix="facelab-pins-")
        os.environ["FACELAB_KNOWN_LABS"] = os.path.join(d, "known_labs.json")


_known_labs_of_this_run()

from facelab.synth import SynthConfig, write_dataset  # noqa: E402


@pytest.fixture(scope="session")
def small_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("ds") / "data"
    write_dataset(SynthConfig(identities=12, captures=2, seed=5), out, workers=1)
    return out
