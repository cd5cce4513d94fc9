"""Inside the confinement (``python -I -B -m facelab.confine.entry``): the first code that
runs in the sandbox.

Reads its configuration (one JSON line) from stdin, applies Landlock (the second
filesystem layer), writes a hello line on the result channel saying what it applied,
and only then imports and calls the target. The hello line is written before any
target code runs, so the runner can trust it as far as this module is trusted; what
comes after it (the result line) is the target's and is data to the runner. Under
``strict``, a Landlock failure stops the run before the target is imported.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import json
import os
import sys
import traceback
from pathlib import Path


def _say(fd: int, obj: dict) -> None:
    data = (json.dumps(obj, default=str, allow_nan=False) + "\n").encode()
    while data:
        data = data[os.write(fd, data) :]


def _load(module: str):
    """A module by import name, or by file path (``/abs/path/file.py``: a registered
    trainer, a test's probe), which the runner bound read-only."""
    if not module.endswith(".py"):
        return importlib.import_module(module)

    name = "facelab_confined_" + Path(module).stem
    spec = importlib.util.spec_from_file_location(name, module)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


def main() -> int:
    cfg = json.loads(sys.stdin.readline())
    fd = int(cfg["result_fd"])
    try:
        from facelab.confine._landlock import restrict_filesystem

        abi = restrict_filesystem(
            [Path(p) for p in cfg["landlock_read"]], [Path(p) for p in cfg["landlock_write"]]
        )
    except Exception as e:
        if cfg["strict"]:
            _say(fd, {"landlock": 0, "error": f"Landlock: {e}"})
            return 3
        abi = 0
    os.chdir(cfg["workdir"])
    _say(fd, {"landlock": abi})
    try:
        module, func = cfg["target"].rsplit(":", 1)
        value = getattr(_load(module), func)(**cfg["kwargs"])
        try:
            _say(fd, {"result": value})
        except (TypeError, ValueError) as e:
            _say(fd, {"error": f"result is not JSON: {e}"})
            return 1
        return 0
    except BaseException as e:  # the target's failure is data for the runner
        with contextlib.suppress(Exception):
            _say(fd, {"error": f"{type(e).__name__}: {e}"[:2000]})
        traceback.print_exc(limit=4)
        return 1


if __name__ == "__main__":
    rc = main()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(rc)  # as PID 1 of the sandbox: everything the target left behind dies too
