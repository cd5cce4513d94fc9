"""Shared fixtures: small synthetic datasets built in tmp_path."""

from __future__ import annotations

from pathlib import Path

import pytest
from facelab.synth import SynthConfig, write_dataset


@pytest.fixture(scope="session")
def small_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("ds") / "data"
    write_dataset(SynthConfig(identities=12, captures=2, seed=5), out, workers=1)
    return out
