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


class BusyError(FacelabError):
    """Another process has held a lab lock past the wait allowed; nothing was changed
    (exit 75, EX_TEMPFAIL of BSD sysexits: try again later)."""

    exit_code = 75


class PassphraseError(FacelabError):
    """No operator passphrase available, or it does not open the lab's keys (exit 2)."""

    exit_code = 2


class ProofError(FacelabError):
    """A Merkle inclusion or consistency proof does not verify (exit 4)."""

    exit_code = 4


class MalformedProofError(ProofError):
    """A proof that breaks a precondition: sizes, index, length or hash width."""


class RootMismatchError(ProofError):
    """A proof computes a root other than the expected one; carries both."""

    def __init__(self, computed: bytes, expected: bytes, what: str = "root"):
        self.computed = computed
        self.expected = expected
        super().__init__(f"{what} mismatch: computed {computed.hex()}, expected {expected.hex()}")


class TamperedError(FacelabError):
    """The audit log or its checkpoints are damaged or were edited (exit 4)."""

    exit_code = 4


class NoteError(FacelabError):
    """A signed note (checkpoint) is malformed or its signature does not verify (exit 4)."""

    exit_code = 4


class AuditSchemaError(FacelabError, ValueError):
    """An audit event that breaks the entry schema: wrong types, or data too large to be
    anything but tenant data (exit 2; nothing is written)."""

    exit_code = 2


class VaultError(FacelabError):
    """A sealed value cannot be opened (wrong key, tampered, copied elsewhere); opaque.

    The reason goes to the audit log, not to whoever asked (exit 2 at the CLI).
    """

    exit_code = 2


__all__ = [
    "AuditSchemaError",
    "BadInputError",
    "FacelabError",
    "MalformedProofError",
    "NoteError",
    "PassphraseError",
    "ProofError",
    "RootMismatchError",
    "TamperedError",
    "VaultError",
]


class JobFailed(FacelabError):
    """A job ran in the zero client and failed, timed out or was stopped (exit 5)."""

    exit_code = 5


class JobRefused(FacelabError):
    """The policy refuses a job: a forbidden purpose, 1:N search, an unregistered
    trainer, or isolation the kernel cannot give (exit 3)."""

    exit_code = 3


class IsolationError(JobRefused):
    """The kernel cannot confine a job as the policy requires."""
