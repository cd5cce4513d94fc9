"""The `facelab` command groups, one module each (pip's layout).

Each module exposes ``register(subparsers)``, which adds its sub-commands with their
options and sets ``func`` to the handler; a handler takes the parsed arguments and
returns the exit code, raising :mod:`facelab.errors` exceptions for the shell in
:mod:`facelab.cli` to turn into one line and an exit code.
"""
