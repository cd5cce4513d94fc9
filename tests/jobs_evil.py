"""Trainers that try to break out of the zero client. The tests register them in a
lab's policy; each must fail inside the sandbox."""

from __future__ import annotations

import os
import socket
from pathlib import Path


def open_socket(ctx) -> dict:
    socket.create_connection(("127.0.0.1", int(ctx.params["port"])), timeout=3).sendall(b"x")
    return {"sent": True}


def send_udp(ctx) -> dict:
    socket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto(b"x", ("127.0.0.1", 9))
    return {"sent": True}


def read_file(ctx) -> dict:
    data = Path(ctx.params["path"]).read_bytes()
    (ctx.outbox / "stolen.bin").write_bytes(data)
    return {"read": len(data)}


def write_file(ctx) -> dict:
    Path(ctx.params["path"]).write_text("escaped")
    return {"wrote": True}


def read_parent_environment(ctx) -> dict:
    env = Path(f"/proc/{os.getppid()}/environ").read_bytes()
    (ctx.outbox / "env.bin").write_bytes(env)
    return {"read": len(env)}


def list_records(ctx) -> dict:
    recs = ctx.records()
    (ctx.outbox / "seen.txt").write_text("\n".join(sorted({r.record_id for r in recs})))
    return {
        "records": len(recs),
        "subjects": len({r.subject for r in recs}),
        "splits": sorted({r.split for r in recs}),
    }


def spin(ctx) -> dict:
    while True:
        pass
