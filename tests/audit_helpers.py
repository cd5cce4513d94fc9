"""Helpers for the audit tests: a lab in tmp_path, tampering tools, a writer child."""

from __future__ import annotations

import json
from pathlib import Path

from facelab.audit import Event
from facelab.labdir import Lab, audit_writer, init_and_record, load_public_key

PASS = b"correct horse battery staple"


def make_lab(root: Path, entries: int = 0, checkpoint_every: int | None = None) -> Lab:
    if checkpoint_every is not None:  # the lab is born with it (a later edit is recorded)
        from enclave_policy import DEFAULT_POLICY

        src = Path(root).parent / f"{Path(root).name}-policy.toml"
        src.write_text(
            DEFAULT_POLICY.read_text().replace(
                "checkpoint_every = 256", f"checkpoint_every = {checkpoint_every}"
            )
        )
        lab = init_and_record(root, PASS, "tester", policy_source=src)
    else:
        lab = init_and_record(root, PASS, "tester")
    if entries:
        with audit_writer(lab, PASS) as log:
            for i in range(entries):
                log.record(Event("test.event", "tester", tenant=f"t{i % 3}", details={"i": i}))
    return lab


def entries_path(lab: Lab) -> Path:
    return lab.paths.audit / "entries.jsonl"


def lines(lab: Lab) -> list[bytes]:
    return entries_path(lab).read_bytes().split(b"\n")[:-1]


def write_lines(lab: Lab, ls: list[bytes]) -> None:
    entries_path(lab).write_bytes(b"".join(x + b"\n" for x in ls))


def seqs(lab: Lab) -> list[int]:
    return [json.loads(x)["seq"] for x in lines(lab)]


def verify(lab: Lab, **kw):
    from facelab.audit import verify_log

    return verify_log(lab.paths.audit, lab.origin, load_public_key(lab), **kw)
