"""The `facelab` command: parses, calls the `lab` API, prints, maps errors to exit codes.

Exit codes (DESIGN.md): 0 success, 2 usage or bad input, 3 refused by a gate,
4 audit log tampered. Every error is one line on stderr, never a traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NoReturn

from lab import __version__
from lab.errors import FacelabError


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}\n")


def _progress_bar(total: int, desc: str) -> tuple[Callable[[int], None] | None, Callable[[], None]]:
    """A tqdm bar on a terminal; nothing when stderr is not one (logs, CI)."""
    if not sys.stderr.isatty():
        return None, lambda: None
    from tqdm import tqdm

    bar = tqdm(total=total, desc=desc, unit="id", file=sys.stderr, leave=False)
    return bar.update, bar.close


def _cmd_synth(args: argparse.Namespace) -> int:
    from lab.synth import SynthConfig, write_dataset

    cfg = SynthConfig(identities=args.identities, captures=args.captures, seed=args.seed,
                      difficulty=args.difficulty, size=args.size)
    cfg.validate()
    update, close = _progress_bar(cfg.identities, "synth")
    try:
        s = write_dataset(cfg, args.out, force=args.force, workers=args.workers, progress=update)
    finally:
        close()
    print(f"wrote {s.images} images of {s.identities} identities to {s.out} "
          f"in {s.seconds:.2f} s ({s.images_per_second:.0f} images/s)")
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from lab.demo import run_demo

    update, close = _progress_bar(200, "demo synth")
    try:
        r = run_demo(args.lab, progress=update)
    finally:
        close()
    d = r.dataset
    print(f"facelab demo in {r.root}")
    print(f"  synthetic dataset: {d.identities} identities, {d.images} images, "
          f"{d.seconds:.2f} s ({d.images_per_second:.0f} images/s)")
    print("  identities per nationality: "
          + ", ".join(f"{k} {v}" for k, v in d.by_nationality.items()))
    print("  identities per sex: " + ", ".join(f"{k} {v}" for k, v in d.by_sex.items()))
    print(f"  contact sheet: {r.contact_sheet}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="facelab", description="A privacy-preserving face-data lab harness.")
    p.add_argument("--version", action="version", version=f"facelab {__version__}")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

    s = sub.add_parser("synth", help="write a seeded synthetic face dataset")
    s.add_argument("--out", type=Path, required=True, help="dataset directory to create")
    s.add_argument("--identities", type=int, required=True, help="number of identities")
    s.add_argument("--captures", type=int, default=2, help="gate captures per identity")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--difficulty", type=float, default=1.0,
                   help="scale of the within-identity variation (0-3, default 1)")
    s.add_argument("--size", type=int, default=112, help="image width and height in pixels")
    s.add_argument("--workers", type=int, default=None, help="worker processes (default: CPUs)")
    s.add_argument("--force", action="store_true", help="replace a non-empty --out")
    s.set_defaults(func=_cmd_synth)

    d = sub.add_parser("demo", help="the lab story end to end on small synthetic data")
    d.add_argument("--lab", type=Path, default=None,
                   help="directory for the demo's files (default: a new temporary one)")
    d.set_defaults(func=_cmd_demo)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except FacelabError as e:
        print(f"facelab: error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("facelab: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
