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
)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="facelab", description="A privacy-preserving face-data lab harness.")
    p.add_argument("--version", action="version", version=f"facelab {__version__}")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)
    for name in COMMAND_MODULES:
        importlib.import_module(f"facelab.commands.{name}").register(sub)
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
    args = build_parser().parse_args(argv)
    _absolute_paths(args)
    try:
        return int(args.func(args))
    except FacelabError as e:
        print(f"facelab: error: {e}", file=sys.stderr)
        return e.exit_code
    except OSError as e:  # a read-only directory, a full disk, a missing file
        where = e.filename or "facelab"
        print(f"facelab: error: {where}: {e.strerror or e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("facelab: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
