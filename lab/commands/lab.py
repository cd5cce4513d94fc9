"""`facelab init`: create a lab directory."""

from __future__ import annotations

import argparse
from pathlib import Path


def _cmd_init(args: argparse.Namespace) -> int:
    from facelab.audit import pins
    from facelab.labdir import (
        actor_name,
        init_and_record,
        load_public_key,
        public_key_b64,
        read_passphrase,
    )

    lab = init_and_record(args.lab, read_passphrase(new=True), actor_name())
    print(f"initialised lab {lab.lab_id} in {lab.paths.root} (audit origin {lab.origin})")
    pin = pins.check_or_pin(lab.origin, public_key_b64(load_public_key(lab)))
    if pin.state == "pinned-now":
        print(f"pinned the lab's public key in {pin.path} (audit verify checks against it)")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    """Add this module's commands to the `facelab` parser."""
    i = sub.add_parser("init", help="create a lab directory: keys, audit log, policy copy")
    i.add_argument("lab", type=Path)
    i.set_defaults(func=_cmd_init)
