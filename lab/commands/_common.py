"""What several commands share: the progress bar, reading small files, unlocking a lab."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Self

from facelab.errors import BadInputError, NoteError


def progress_bar(total: int, desc: str) -> tuple[Callable[[int], None] | None, Callable[[], None]]:
    """A tqdm bar on a terminal; nothing when stderr is not one (logs, CI)."""
    if not sys.stderr.isatty():
        return None, lambda: None
    from tqdm import tqdm

    bar = tqdm(total=total, desc=desc, unit="id", file=sys.stderr, leave=False)
    return bar.update, bar.close


def unlocked(lab_path: Path, tenant: str | None = None, reconciled: list | None = None):
    """Check the tenant name (if any) before anything else, open the lab, unlock its
    root key once, and open its audit log for recording. What reconciliation closed is
    appended to ``reconciled`` when given."""
    from facelab.labdir import actor_name, audit_writer, open_lab, read_passphrase, unlock
    from facelab.vault.store import check_tenant

    if tenant is not None:
        check_tenant(tenant)
    from facelab.vault import ops

    lab = open_lab(lab_path)
    root = unlock(lab, read_passphrase())
    log, actor = audit_writer(lab, root), actor_name()
    try:  # finish what a crash interrupted; stop if the vault disagrees with the log
        for r in ops.reconcile(lab, root, log, actor):
            if reconciled is not None:
                reconciled.append(r)
            print(
                f"facelab: reconciled an interrupted {r['action']} of {r['tenant'] or '-'} "
                f"(entry {r['intent']}): {r['outcome']}",
                file=sys.stderr,
            )
    except BaseException:
        log.close()
        raise
    return lab, root, log, actor


def open_lab_dir(path: Path):
    from facelab.labdir import open_lab

    return open_lab(path)


def read_text(path: Path, max_bytes: int = 1 << 20) -> str:
    """A small text file given on the command line (a key, a note): a regular file of
    at most ``max_bytes``, UTF-8; anything else is one line and exit 2, never a hang."""
    from facelab.jsonfile import read_regular

    try:
        return read_regular(path, max_bytes=max_bytes, what="a small text file").decode("utf-8")
    except FileNotFoundError as e:
        raise BadInputError(f"{path}: unreadable (no such file)") from e
    except UnicodeDecodeError as e:
        raise BadInputError(f"{path}: unreadable (not UTF-8)") from e


def read_note(path: Path) -> bytes:
    """A note file's bytes: missing or unreadable is exit 2, malformed later exit 4."""
    from facelab.audit import checkpoint as ckpt

    try:
        return ckpt.read_note_file(path)
    except NoteError as e:
        raise NoteError(f"{path}: {e}") from e
    except OSError as e:
        raise BadInputError(f"{path}: unreadable ({e.strerror or e})") from e


def check_out(path: Path, force: bool, option: str = "--out") -> None:
    """An existing ``--out`` (a file, or a directory that is not empty) is replaced only
    with ``--force``: BadInputError otherwise, before any work."""
    if not path.exists() and not path.is_symlink():
        return
    if path.is_dir() and not path.is_symlink() and not any(path.iterdir()):
        return
    if not force:
        raise BadInputError(f"{path}: {option} already exists (use --force to replace it)")


class Steps:
    """Progress of a long command, step by step: a tqdm bar on a terminal, otherwise one
    plain line per step on stderr (``facelab NAME: [k/n] STEP``), flushed at once, so a
    log or CI shows where a run is. Call it with each step's name as the step begins."""

    def __init__(self, name: str, total: int | None = None, *, bar: bool = True):
        """``bar=False``: the plain lines only (for a command that draws its own bars
        on a terminal); nothing on a terminal."""
        self.name, self.total, self.n = name, total, 0
        self.bar = None
        self.quiet = not bar and sys.stderr.isatty()
        if bar and sys.stderr.isatty():
            from tqdm import tqdm

            self.bar = tqdm(total=total, desc=name, unit="step", file=sys.stderr, leave=False)

    def __call__(self, step: str) -> None:
        self.n += 1
        if self.quiet:
            return
        if self.bar is not None:
            if self.n > 1:
                self.bar.update(1)
            self.bar.set_postfix_str(step[:60])
        else:
            of = f"/{self.total}" if self.total else ""
            print(f"facelab {self.name}: [{self.n}{of}] {step}", file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
