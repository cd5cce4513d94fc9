"""A new lab's secret (issue 17, item 2): asked twice on a terminal, one minimum length
for every source, one clear line; an existing lab still opens with the secret it has."""

from __future__ import annotations

from pathlib import Path

import pytest
from facelab.errors import PassphraseError
from facelab.labdir import MIN_KEY_FILE_BYTES, MIN_PASSPHRASE_CHARS, read_passphrase

from tests.test_cli_audit import ENV, one_line_error, run

GOOD = "x" * MIN_PASSPHRASE_CHARS


def _asker(answers: list[str]):
    asked: list[str] = []

    def ask(prompt: str) -> str:
        asked.append(prompt)
        return answers[len(asked) - 1]

    return ask, asked


def test_a_new_passphrase_is_asked_twice_on_a_terminal() -> None:
    ask, asked = _asker([GOOD, GOOD])
    assert read_passphrase({}, new=True, ask=ask, terminal=True) == GOOD.encode()
    assert len(asked) == 2


def test_two_different_answers_are_refused() -> None:
    ask, asked = _asker([GOOD, GOOD + "!"])
    with pytest.raises(PassphraseError, match="differ"):
        read_passphrase({}, new=True, ask=ask, terminal=True)
    assert len(asked) == 2


def test_a_short_typed_passphrase_is_refused_before_the_second_question() -> None:
    ask, asked = _asker(["abc", "abc"])
    with pytest.raises(PassphraseError, match=f"at least {MIN_PASSPHRASE_CHARS} characters"):
        read_passphrase({}, new=True, ask=ask, terminal=True)
    assert len(asked) == 1


def test_opening_an_existing_lab_asks_once_and_has_no_minimum() -> None:
    ask, asked = _asker(["abc"])
    assert read_passphrase({}, ask=ask, terminal=True) == b"abc"
    assert len(asked) == 1


@pytest.mark.parametrize("n, ok", [(MIN_PASSPHRASE_CHARS - 1, False), (MIN_PASSPHRASE_CHARS, True)])
def test_the_environment_meets_the_same_minimum(n: int, ok: bool) -> None:
    env = {"FACELAB_PASSPHRASE": "p" * n}
    if ok:
        assert read_passphrase(env, new=True) == b"p" * n
    else:
        with pytest.raises(PassphraseError, match="FACELAB_PASSPHRASE"):
            read_passphrase(env, new=True)


@pytest.mark.parametrize("n, ok", [(MIN_KEY_FILE_BYTES - 1, False), (MIN_KEY_FILE_BYTES, True)])
def test_a_key_file_needs_its_minimum(tmp_path: Path, n: int, ok: bool) -> None:
    key = tmp_path / "k"
    key.write_bytes(b"\x01" * n)
    env = {"FACELAB_KEY_FILE": str(key)}
    if ok:
        assert read_passphrase(env, new=True) == b"\x01" * n
    else:
        with pytest.raises(PassphraseError, match=f"at least {MIN_KEY_FILE_BYTES}"):
            read_passphrase(env, new=True)


def test_init_with_a_short_passphrase_creates_nothing(tmp_path: Path) -> None:
    p = run("init", str(tmp_path / "lab"), env={**ENV, "FACELAB_PASSPHRASE": "abc"})
    line = one_line_error(p)
    assert "FACELAB_PASSPHRASE" in line and str(MIN_PASSPHRASE_CHARS) in line
    assert not (tmp_path / "lab").exists()
    assert list(tmp_path.iterdir()) == []  # no temporary sibling left either
    ok = run("init", str(tmp_path / "lab"), env={**ENV, "FACELAB_PASSPHRASE": GOOD})
    assert ok.returncode == 0, ok.stderr  # positive control
    assert (tmp_path / "lab" / "lab.json").is_file()
