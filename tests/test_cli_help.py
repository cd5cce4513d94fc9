"""Every command's --help names its exit codes and the environment variables; `job run
--help` shows the spec format with examples that are valid JSON (issue 17, item 8)."""

from __future__ import annotations

import json

import pytest
from facelab.cli import build_parser, main

from tests.test_cli_bad_arguments import LEAVES


def _help(argv: list[str], capsys) -> str:
    with pytest.raises(SystemExit) as e:
        main([*argv, "--help"])
    assert e.value.code == 0
    return capsys.readouterr().out


@pytest.mark.parametrize("leaf", [p for p, _ in LEAVES], ids=" ".join)
def test_every_help_names_exit_codes_and_environment(leaf, capsys) -> None:
    text = _help(list(leaf), capsys)
    assert "exit codes: 0" in text
    for var in ("FACELAB_PASSPHRASE", "FACELAB_KEY_FILE", "FACELAB_ACTOR"):
        assert var in text


def test_the_top_level_help_too(capsys) -> None:
    text = _help([], capsys)
    assert "exit codes:" in text and "FACELAB_PASSPHRASE" in text


def test_job_run_help_shows_the_spec_with_valid_examples(capsys) -> None:
    text = _help(["job", "run"], capsys)
    examples = text[text.index("examples:") :].splitlines()[1:]
    docs, buf = [], ""
    for line in examples:  # an example may run over two lines
        if line.strip().startswith("{") or buf:
            buf += line.strip() + " "
            try:
                docs.append(json.loads(buf))
                buf = ""
            except ValueError:
                continue
    assert [d["kind"] for d in docs] == ["bench", "train"]
    assert all({"kind", "purpose", "model"} <= set(d) for d in docs)
    for field in ("kind", "purpose", "model", "split", "trainer", "params"):
        assert f"  {field} " in text


def test_exit_codes_of_the_gates_are_their_own() -> None:
    helps = {" ".join(p): parser.format_help() for p, parser in LEAVES}
    assert "3 refused by the import gate" in helps["model import"]
    assert "5 the job failed" in helps["job run"]
    assert "4 tampered" in helps["audit verify"]
    assert build_parser().format_help().count("exit codes") == 1
