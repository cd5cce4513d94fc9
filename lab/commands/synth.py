"""`facelab synth`: a seeded synthetic face dataset."""

from __future__ import annotations

import argparse
from pathlib import Path

from facelab.commands._common import progress_bar


def _cmd_synth(args: argparse.Namespace) -> int:
    from facelab.synth import SynthConfig, write_dataset

    cfg = SynthConfig(
        identities=args.identities,
        captures=args.captures,
        seed=args.seed,
        difficulty=args.difficulty,
        size=args.size,
    )
    cfg.validate()
    log = None
    if args.lab is not None:  # open the log first: a wrong passphrase fails before the work
        from facelab.labdir import audit_writer, open_lab, read_passphrase

        log = audit_writer(open_lab(args.lab), read_passphrase())
    update, close = progress_bar(cfg.identities, "synth")
    try:
        s = write_dataset(cfg, args.out, force=args.force, workers=args.workers, progress=update)
    finally:
        close()
    if log is not None:
        from facelab.audit import Event
        from facelab.labdir import actor_name
        from facelab.synth import dataset_digest

        with log:
            log.record(
                Event(
                    action="dataset.synth",
                    actor=actor_name(),
                    role="operator",
                    object=dataset_digest(s.out),
                    details={
                        "identities": cfg.identities,
                        "captures": cfg.captures,
                        "seed": cfg.seed,
                        "difficulty": cfg.difficulty,
                        "size": cfg.size,
                        "images": s.images,
                        "path": str(s.out),
                    },
                )
            )
    print(
        f"wrote {s.images} images of {s.identities} identities to {s.out} "
        f"in {s.seconds:.2f} s ({s.images_per_second:.0f} images/s)"
    )
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    """Add this module's commands to the `facelab` parser."""
    s = sub.add_parser("synth", help="write a seeded synthetic face dataset")
    s.add_argument("--out", type=Path, required=True, help="dataset directory to create")
    s.add_argument("--identities", type=int, required=True, help="number of identities")
    s.add_argument("--captures", type=int, default=2, help="gate captures per identity")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument(
        "--difficulty",
        type=float,
        default=1.0,
        help="scale of the within-identity variation (0-3, default 1)",
    )
    s.add_argument("--size", type=int, default=112, help="image width and height in pixels")
    s.add_argument("--workers", type=int, default=None, help="worker processes (default: CPUs)")
    s.add_argument("--force", action="store_true", help="replace a non-empty --out")
    s.add_argument(
        "--lab",
        type=Path,
        default=None,
        help="record the dataset (digest, arguments) in this lab's audit log",
    )
    s.set_defaults(func=_cmd_synth)
