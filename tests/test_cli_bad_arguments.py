"""Every command, given bad arguments, answers with one line and an exit code, never a
traceback (issue 17, item 7).

The walk is generated from the parser itself, so a command added later is walked too:
for each leaf command, its required arguments are filled with a missing path, an empty
directory, a file of garbage bytes, a directory that is a dataset, or the wrong kind of
key, alongside a real lab. Any exception escaping ``facelab.cli.main`` fails the test
(that is what a user would see as a traceback).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest
from facelab.cli import build_parser, main

from tests.test_cli_audit import PROGRESS_LINE

PASSPHRASE = "bad-arguments-walk"
SLOW_WHEN_VALID = {("demo",)}  # a run that succeeds takes minutes: never given a valid lab


def _leaves(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()):
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subs:
        yield path, parser
        return
    for name, sub in subs[0].choices.items():
        yield from _leaves(sub, (*path, name))


LEAVES = list(_leaves(build_parser()))


def _fill(parser: argparse.ArgumentParser, path: str, text: str, lab: str | None) -> list[str]:
    """argv with every required argument given: paths -> ``path``, ``--lab`` -> ``lab``
    when given, strings -> ``text``, numbers -> -1, choices -> the first."""
    argv: list[str] = []
    for a in parser._actions:
        if isinstance(a, argparse._HelpAction | argparse._VersionAction):
            continue
        if a.option_strings and not a.required:
            continue
        if a.choices:
            value = [str(next(iter(a.choices)))]
        elif a.type is int or a.type is float:
            value = ["-1"]
        elif a.type is Path:
            value = [lab if (a.dest == "lab" and lab) else path]
        else:
            value = [text]
        if isinstance(a.nargs, int):
            value = value * a.nargs
        argv += ([a.option_strings[0]] if a.option_strings else []) + value
    return argv


@pytest.fixture(scope="module")
def places(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    from facelab.gates.importing.keys import write_keypair
    from facelab.labdir import init_and_record
    from facelab.synth import SynthConfig, write_dataset

    d = tmp_path_factory.mktemp("walk")
    (d / "empty").mkdir()
    (d / "garbage").write_bytes(bytes(range(256)) * 4)
    (d / "text").write_text("not what you think\n")
    write_dataset(SynthConfig(identities=2, captures=1, seed=1), d / "dataset", workers=1)
    write_keypair("officer", d / "officer")  # the wrong kind of key for a tenant
    init_and_record(d / "lab", PASSPHRASE.encode(), "walker")
    return {
        "missing": str(d / "missing" / "x"),
        "empty": str(d / "empty"),
        "garbage": str(d / "garbage"),
        "text": str(d / "text"),
        "dataset": str(d / "dataset"),
        "officer-key": str(d / "officer.key"),
        "lab": str(d / "lab"),
    }


def _walk(argv: list[str], capsys, monkeypatch) -> tuple[int, str, str]:
    monkeypatch.setenv("FACELAB_PASSPHRASE", PASSPHRASE)
    monkeypatch.setenv("FACELAB_ACTOR", "walker")
    try:
        code = main(argv)
    except SystemExit as e:  # argparse: usage errors and --help
        code = e.code if isinstance(e.code, int) else 2
    out, err = capsys.readouterr()
    return code, out, err


def _assert_clean(argv: list[str], code: int, out: str, err: str) -> None:
    assert "Traceback" not in out + err, argv
    if code == 1 and argv[0] in ("scan-model", "scan-export"):
        assert out.strip(), argv  # modelscan's convention: 1 = issues found, the report out
        return
    if code != 0:
        lines = [x for x in err.strip().splitlines() if not PROGRESS_LINE.match(x)]
        assert len(lines) == 1, (argv, err)
        assert "error" in lines[0] or "refused" in lines[0] or "TAMPERED" in lines[0], (
            argv,
            lines,
        )
        assert code in (2, 3, 4, 5), (argv, code)


@pytest.mark.parametrize("leaf", [p for p, _ in LEAVES], ids=" ".join)
def test_missing_arguments_are_one_line(leaf, capsys, monkeypatch) -> None:
    code, out, err = _walk([*leaf, "--no-such-option"], capsys, monkeypatch)
    assert code == 2
    _assert_clean(list(leaf), code, out, err)


@pytest.mark.parametrize(
    "kind",
    [
        "missing",
        "garbage",
        "dataset",
        "officer-key",
        # the same refusals again for other bytes: `make test-slow`
        pytest.param("empty", marks=pytest.mark.slow),
        pytest.param("text", marks=pytest.mark.slow),
    ],
)
@pytest.mark.parametrize("with_lab", [False, True], ids=["no-lab", "lab"])
def test_every_command_with_bad_paths(kind, with_lab, places, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    walked = 0
    for leaf, parser in LEAVES:
        if leaf in SLOW_WHEN_VALID and kind in ("empty",):
            continue
        for text in ("acme", "Not A Name!"):
            argv = [*leaf, *_fill(parser, places[kind], text, places["lab"] if with_lab else None)]
            if leaf in SLOW_WHEN_VALID:  # no required argument: give it the bad path
                argv += ["--lab", places["lab"] if with_lab else places[kind]]
            code, out, err = _walk(argv, capsys, monkeypatch)
            _assert_clean(argv, code, out, err)
            walked += 1
    assert walked == 2 * len(
        [x for x in LEAVES if not (x[0] in SLOW_WHEN_VALID and kind == "empty")]
    )


def test_the_walk_reaches_every_command() -> None:
    names = {" ".join(p) for p, _ in LEAVES}
    assert {"policy set", "model package", "destroy", "job run", "export", "demo"} <= names
    assert len(names) >= 35
