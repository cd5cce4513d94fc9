"""Which confinement layers a machine lacks (``confine.missing_layers``), as a decision
table over what the machine reports: strict isolation refuses a job exactly when this
list is not empty, so every row names one layer the job would run without."""

from __future__ import annotations

import pytest
from facelab.confine import _run


@pytest.fixture
def machine(monkeypatch):
    """A machine with every layer; each test takes one away."""
    state = {"uid": 0, "bwrap": "/usr/bin/bwrap", "setpriv": "/usr/bin/setpriv"}
    state |= {"seccomp": "", "landlock": 3, "cgroup": "v2"}
    monkeypatch.setattr(_run, "bwrap_path", lambda: state["bwrap"])
    monkeypatch.setattr(_run, "setpriv_path", lambda: state["setpriv"])
    monkeypatch.setattr(_run._seccomp, "available", lambda: state["seccomp"])
    monkeypatch.setattr(_run._landlock, "landlock_abi", lambda: state["landlock"])
    monkeypatch.setattr(_run._cgroup, "kind", lambda: state["cgroup"])
    monkeypatch.setattr(_run.os, "geteuid", lambda: state["uid"])
    return state


def _layers(missing: list[str]) -> list[str]:
    return [m.split(" ", 1)[0].rstrip(":") for m in missing]


@pytest.mark.parametrize("uid", [0, 1000])
def test_a_machine_with_every_layer_lacks_none(machine, uid) -> None:
    machine["uid"] = uid
    assert _run.missing_layers() == []


@pytest.mark.parametrize(
    ("change", "layer"),
    [
        ({"bwrap": None}, "bubblewrap"),
        ({"setpriv": None}, "setpriv"),  # root: the dedicated uid needs setpriv
        ({"seccomp": "no libseccomp"}, "seccomp"),
        ({"landlock": 0}, "Landlock"),
        ({"uid": 1000, "cgroup": ""}, "process"),  # no dedicated uid, no cgroup
    ],
)
def test_each_missing_layer_is_named_alone(machine, change, layer) -> None:
    machine |= change
    assert _layers(_run.missing_layers()) == [layer]


def test_setpriv_is_needed_only_as_root_and_a_cgroup_only_when_not(machine) -> None:
    machine |= {"uid": 1000, "setpriv": None}  # unprivileged: setpriv is not used
    assert _run.missing_layers() == []
    machine |= {"uid": 0, "setpriv": "/usr/bin/setpriv", "cgroup": ""}  # root: the uid
    assert _run.missing_layers() == []
    machine["landlock"] = 1  # the first Landlock ABI is enough
    assert _run.missing_layers() == []
