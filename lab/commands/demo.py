"""`facelab demo`: the lab story end to end."""

from __future__ import annotations

import argparse
from pathlib import Path

from facelab.commands._common import progress_bar


def _cmd_demo(args: argparse.Namespace) -> int:

    from facelab.demo import run_demo
    from facelab.labdir import PASSPHRASE_ENV, captured_secret

    env_pw = captured_secret(PASSPHRASE_ENV)
    print(
        "facelab demo: the whole lab story on synthetic faces, about 10 steps "
        f"(1-2 minutes on 2 cores at {args.identities} identities)",
        flush=True,
    )
    n = [0]

    def say(line: str) -> None:
        n[0] += 1
        print(f"  [{n[0]}] {line}", flush=True)

    update, close = progress_bar(args.identities, "demo synth")
    try:
        r = run_demo(
            args.lab,
            passphrase=env_pw.encode() if env_pw else None,
            identities=args.identities,
            progress=update,
            say=say,
        )
    finally:
        close()
    d = r.dataset
    print(f"facelab demo: lab in {r.root}")
    if r.passphrase_generated:
        print(
            f"  {PASSPHRASE_ENV} was not set: the demo lab is locked with a one-time "
            "passphrase (set it to choose one)"
        )
    print(
        f"  synthetic dataset: {d.identities} identities, {d.images} images, "
        f"{d.seconds:.2f} s ({d.images_per_second:.0f} images/s)"
    )
    print(
        "  identities per nationality: "
        + ", ".join(f"{k} {v}" for k, v in d.by_nationality.items())
    )
    print("  identities per sex: " + ", ".join(f"{k} {v}" for k, v in d.by_sex.items()))
    print(f"  contact sheet: {r.contact_sheet}")
    print(f"  benchmark report: {r.bench_report}")
    print(f"  register of processors: {r.register}")
    print(f"  demo report (controls, plots): {r.html}")
    a = r.audit
    state = "intact" if a.intact else f"TAMPERED ({a.first()})"
    print(f"  audit log: {a.entries} entries, {a.checkpoints} signed checkpoints, {state}")
    w = max(len(name) for name, _ in r.controls)
    print(f"\n  {'control':<{w}}  outcome")
    for name, outcome in r.controls:
        print(f"  {name:<{w}}  {outcome}")
    return 0 if a.intact else 4


def register(sub: argparse._SubParsersAction) -> None:
    """Add this module's commands to the `facelab` parser."""
    d = sub.add_parser("demo", help="the lab story end to end on small synthetic data")
    d.add_argument(
        "--lab",
        type=Path,
        default=None,
        help="the demo lab to create (default: a new temporary directory)",
    )
    d.add_argument(
        "--identities",
        type=_identities,
        default=200,
        metavar="N",
        help=f"synthetic identities of the first tenant (the second gets half; "
        f"{MIN_IDENTITIES}..{MAX_IDENTITIES}, default 200): fewer for a quicker run",
    )
    d.set_defaults(func=_cmd_demo)


# Each subject falls in the test split with the policy's probability (0.15) on its own:
# the benchmark job needs 2 test subjects, which 40 identities miss 1.2% of the time
# (binomial; seen once in 8 runs) and 80 miss 0.003%; above the maximum the demo is a
# benchmark, not a story
MIN_IDENTITIES, MAX_IDENTITIES = 80, 2000


def _identities(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if not MIN_IDENTITIES <= n <= MAX_IDENTITIES:
        raise argparse.ArgumentTypeError(f"{n} is outside {MIN_IDENTITIES}..{MAX_IDENTITIES}")
    return n
