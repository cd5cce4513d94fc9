"""CLI of issue 18's scan-only modes: ``facelab scan-model`` and ``facelab scan-export``."""

from __future__ import annotations


def register(sub) -> None:
    """Add ``scan-model`` and ``scan-export`` to the ``facelab`` parser."""
