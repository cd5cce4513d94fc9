"""A trainer for tests/test_export_attested.py, registered in that test's lab policy:
it writes a model to its outbox and then fails, so that its job finishes "failed" with
outputs recorded."""

from __future__ import annotations

import shutil


def write_then_fail(ctx) -> dict:
    """Copy the job's model (ONNX and model.json) to the outbox, then raise."""
    for name in ("model.onnx", "model.json"):
        shutil.copyfile(ctx.model_dir / name, ctx.outbox / name)
    raise RuntimeError("the trainer failed after writing its outputs")
