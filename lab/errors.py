"""Every domain exception of facelab, flat, in one place.

The CLI maps these to the exit codes of DESIGN.md's command-line contract.
Messages are one line and name the file or argument and the reason.
"""

from __future__ import annotations


class FacelabError(Exception):
    """Base class of every error facelab raises on purpose."""

    exit_code = 1


class BadInputError(FacelabError):
    """Usage or input error: a bad argument, a bad file, an unwritable path (exit 2)."""

    exit_code = 2


__all__ = ["BadInputError", "FacelabError"]
