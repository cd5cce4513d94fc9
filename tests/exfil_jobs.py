"""Hostile trainers that try to carry a face out through the audit log, which outlives
``destroy`` (red team 14i, case 30, and its class): names made of record bytes, tiny
files whose plain digests a guesser inverts, a summary key, an exception class name."""

from __future__ import annotations

# self-contained: a trainer is bound into its confinement alone (its own file); the same
# definitions as tests/exfil_oracle.py, which the test's oracle uses


def idat(png: bytes) -> bytes:
    return png[png.find(b"IDAT") + 4 :]


def pieces(png: bytes, size: int = 30) -> list[bytes]:
    d = idat(png)
    return [d[i : i + size] for i in range(0, len(d) - size, size)]


def names_and_tiny_files(ctx) -> dict:
    """Case 30: 12 names of hex of 30-byte pieces of each of 4 faces; and 64 files of 2
    bytes and 16 of 1 byte of a face (their SHA-256 is inverted in 65,536 guesses)."""
    recs = ctx.records()
    for j, rec in enumerate(recs[:4]):
        for p in pieces(rec.png)[:12]:
            (ctx.outbox / f"{j:x}{p.hex()}").write_text("x")
    data = idat(recs[0].png)
    for k in range(64):
        (ctx.outbox / f"t{k:02d}").write_bytes(data[2 * k : 2 * k + 2])
    for k in range(16):
        (ctx.outbox / f"u{k:02d}").write_bytes(data[200 + k : 201 + k])
    # a summary key is a name the job chose too
    return {"k" + data[300:323].hex(): 1.0}


def error_class_of_record_bytes(ctx) -> dict:
    """An exception whose class name and text are hex of a face."""
    data = idat(ctx.records()[1].png)
    cls = type("x" + data[:30].hex(), (Exception,), {})
    raise cls(data[30:60].hex())
