"""The `facelab` command: a thin shell (after pip's ``cli/main.py``).

It builds the parser from the command modules in :mod:`facelab.commands` (each has a
``register(subparsers)``), makes every path absolute, dispatches, and maps every error to
one line on stderr and an exit code (DESIGN.md): 0 success, 2 usage or bad input,
3 refused by a gate, 4 audit log tampered, 5 a job failed. Never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sqlite3
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

from facelab import __version__
from facelab.errors import FacelabError

# One module per command group, in the order `facelab --help` lists them. A new group
# is a new module in lab/commands/ with a register(subparsers) and one line here.
COMMAND_MODULES = (
    "synth",
    "lab",
    "policy",
    "vault",
    "model",
    "audit",
    "certificate",
    "export",
    "job",
    "bench",
    "demo",
    "accountability",
    "scan",
)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}\n")


ENVIRONMENT = """environment:
  FACELAB_PASSPHRASE  the operator secret (commands that open a lab's keys); asked on a
                      terminal when it is not set
  FACELAB_KEY_FILE    or: a file whose bytes are the secret (at least 16 bytes)
  FACELAB_ACTOR       who acts, recorded in the audit log (default: the OS user)"""

# exit codes per command (DESIGN.md's contract); the others: DEFAULT_EXITS
EXITS = {
    "model import": "0 registered; 3 refused by the import gate; 2 bad input",
    "export": "0 released; 3 refused (every finding listed); 2 bad input",
    "job run": "0 done; 3 refused by the policy; 5 the job failed; 2 bad input",
    "release verify": "0 intact; 4 a file or the signature does not verify; 2 bad input",
    "audit verify": "0 intact; 4 tampered (the first damage named); 2 bad input",
    "audit prove": "0 proof verifies; 4 it does not; 2 bad input",
    "audit consistency": "0 consistent; 4 not (a fork or a rollback); 2 bad input",
    "audit witness": "0 cosigned; 4 rollback or fork; 2 bad input",
    "audit verify-proof": "0 verifies; 4 does not; 2 bad input",
    "audit repair": "0 repaired or nothing to cut; 4 damage it must not cut; 2 bad input",
    "certificate verify": "0 verifies; 4 does not (or unvalidated with "
    "--require-validation); 2 bad input",
    "certificate validate": "0 validated; 4 the performer's signature fails; 2 bad input",
    "scan-model": "0 clean; 1 issues found; 2 usage or unreadable input",
    "scan-export": "0 clean; 1 issues found; 2 usage or unreadable input",
    "evidence verify": "0 the pack verifies; 4 it does not (every problem listed); 2 bad input",
}
DEFAULT_EXITS = (
    "0 done; 2 bad input or usage; 4 the lab's audit log is damaged; 75 the lab is busy "
    "(another process held its audit log's lock past the wait; nothing changed)"
)


def _leaves(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()):
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subs:
        yield " ".join(path), parser
        return
    for name, sub in subs[0].choices.items():
        yield from _leaves(sub, (*path, name))


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="facelab",
        description="A privacy-preserving face-data lab harness.",
        epilog=f"exit codes: 0 success, 2 bad input or usage (one line on stderr), 3 refused "
        f"by a gate, 4 audit log tampered, 5 a job failed, 75 the lab is busy (another process "
        f"held its audit log's lock past audit.lock_wait_seconds; nothing changed)\n{ENVIRONMENT}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--version", action="version", version=f"facelab {__version__}")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)
    for name in COMMAND_MODULES:
        importlib.import_module(f"facelab.commands.{name}").register(sub)
    for name, leaf in _leaves(p):  # every command's --help: its exit codes, the environment
        codes = f"exit codes: {EXITS.get(name, DEFAULT_EXITS)}"
        own = leaf.epilog or ""
        if "exit codes:" not in own:
            own = f"{own}\n{codes}" if own else codes
        if "environment:" not in own:
            own = f"{own}\n{ENVIRONMENT}"
        leaf.epilog = own
        leaf.formatter_class = argparse.RawDescriptionHelpFormatter
    return p


def _absolute_paths(args: argparse.Namespace) -> None:
    """Every path argument made absolute once, here, against the working directory the
    user typed it in; nothing below depends on the working directory."""
    for k, v in vars(args).items():
        if isinstance(v, Path):
            setattr(args, k, Path(os.path.abspath(v)))
        elif isinstance(v, list) and v and all(isinstance(x, Path) for x in v):
            setattr(args, k, [Path(os.path.abspath(x)) for x in v])


def main(argv: Sequence[str] | None = None) -> int:
    from facelab.labdir import capture_secrets

    capture_secrets()  # no child of any kind inherits the operator secret
    # nothing facelab creates is writable by group or others, whatever the caller's umask
    # (with umask 000 the audit log and certificates were world-writable)
    os.umask(os.umask(0o022) | 0o022)
    for stream in (sys.stdout, sys.stderr):
        # a terminal or pipe that cannot show a character (PYTHONIOENCODING=ascii, a C
        # locale) gets an escape for it, never a UnicodeEncodeError traceback
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="backslashreplace")
    args = build_parser().parse_args(argv)
    _absolute_paths(args)
    try:
        return int(args.func(args))
    except FacelabError as e:
        print(f"facelab: error: {e}", file=sys.stderr)
        return e.exit_code
    except sqlite3.DatabaseError as e:
        if type(e) is not sqlite3.DatabaseError:  # OperationalError: locked, disk full
            print(f"facelab: error: the vault database: {e}", file=sys.stderr)
            return 2
        # "database disk image is malformed", "file is not a database": damage, exit 4
        print(f"facelab: error: the vault database is damaged ({e})", file=sys.stderr)
        return 4
    except OSError as e:  # a read-only directory, a full disk, a missing file
        where = e.filename or "facelab"
        print(f"facelab: error: {where}: {e.strerror or e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("facelab: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
