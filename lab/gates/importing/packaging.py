"""Make a model package from a model directory, and check that a directory is one.

A package is a flat directory of the files the import gate takes (the policy's
``[import] allowed_files``: ``model.onnx``, ``model.json``, ``README.md``,
``MODEL_CARD.md``, ``LICENSE`` in the shipped policy) plus the external-data files that
``model.onnx`` names. A model directory of a source checkout holds more (``models/cnn``
has its ``build.py``): :func:`make_package` copies what the gate takes and names what
it leaves out, so that the shipped models can be signed and imported as they are.
"""

from __future__ import annotations

import os
import shutil
import stat
from collections.abc import Mapping
from pathlib import Path

from facelab.errors import BadInputError
from facelab.scratch import sibling_dir

MODEL = "model.onnx"
DATASET_MARKERS = ("manifest.csv", "synth.json")  # a facelab dataset, not a model


def check_model_dir(path: Path, what: str = "a model package") -> None:
    """Raise BadInputError unless ``path`` is a directory holding ``model.onnx`` and is
    not a dataset (one line naming the directory and the reason)."""
    path = Path(path)
    if not path.is_dir():
        raise BadInputError(f"{path}: not a directory ({what} is a directory)")
    for marker in DATASET_MARKERS:
        if (path / marker).exists():
            raise BadInputError(
                f"{path}: a dataset ({marker}), not {what}; a package holds {MODEL}"
            )
    if not (path / MODEL).is_file():
        raise BadInputError(f"{path}: not {what} (no {MODEL})")


def external_data_files(model: Path) -> list[str]:
    """The files ``model.onnx`` keeps tensors in (ONNX external data), by name."""
    import onnx
    from onnx.external_data_helper import _get_all_tensors, uses_external_data

    try:
        m = onnx.load(str(model), load_external_data=False)
    except Exception as e:  # onnx raises several types on bad bytes
        raise BadInputError(f"{model}: not an ONNX model ({type(e).__name__})") from e
    names = set()
    for t in _get_all_tensors(m):
        if uses_external_data(t):
            loc = {e.key: e.value for e in t.external_data}.get("location", "")
            if not loc or Path(loc).name != loc or loc.startswith("."):
                raise BadInputError(f"{model}: external data {loc!r} is not a file beside it")
            names.add(loc)
    return sorted(names)


def make_package(
    src: Path, out: Path, allowed_files: Mapping[str, str], *, force: bool = False
) -> tuple[list[str], list[str]]:
    """Copy from ``src`` the files the import gate takes into a new directory ``out``.

    Returns (copied, left out), both file names. Written into a temporary sibling and
    renamed into place; an existing ``out`` needs ``force``. Raises BadInputError.
    """
    src, out = Path(src), Path(out)
    check_model_dir(src, "a model directory")
    if out.exists() and not force:
        raise BadInputError(f"{out}: already exists (use --force to replace it)")
    if out.exists() and not out.is_dir():
        raise BadInputError(f"{out}: exists and is not a directory")
    take = set(allowed_files) | set(external_data_files(src / MODEL))
    copied, left = [], []
    for p in sorted(src.iterdir()):
        st = os.lstat(p)
        if p.name in take and stat.S_ISREG(st.st_mode):
            copied.append(p.name)
        else:
            left.append(p.name + ("/" if stat.S_ISDIR(st.st_mode) else ""))
    parent = out.parent
    if not parent.is_dir():
        raise BadInputError(f"{out}: parent directory {parent} does not exist")
    tmp = sibling_dir(out)
    try:
        for name in copied:
            shutil.copyfile(src / name, tmp / name, follow_symlinks=False)
        os.chmod(tmp, 0o755)
        if out.exists():
            shutil.rmtree(out)
        os.rename(tmp, out)
    except OSError as e:
        shutil.rmtree(tmp, ignore_errors=True)
        raise BadInputError(f"{out}: cannot write the package ({e.strerror or e})") from e
    return copied, left
