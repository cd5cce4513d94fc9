"""Write a synthetic dataset in DESIGN.md's format, atomically and deterministically.

Layout::

    DIR/manifest.csv     UTF-8, header, one row per image (MANIFEST_COLUMNS)
    DIR/images/*.png     RGB PNG, size x size
    DIR/synth.json       the generator's arguments and version, for provenance

Identity ``i`` and its captures are drawn from random streams keyed by ``(seed, i)``
only, and PNG encoding is fixed, so the same arguments give byte-identical files
whatever the number of worker processes. The dataset is written into a temporary
sibling directory and renamed into place at the end: a half-written dataset never
sits under DIR.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import multiprocessing
import os
import shutil
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
from facelab.errors import BadInputError
from facelab.scratch import sibling_dir
from facelab.synth._capture import capture_params, gate_scene, passport_scene
from facelab.synth._identity import CAPTURE_YEAR, sample_identity
from facelab.synth._render import render

GENERATOR_VERSION = "facelab-synth/1"

MANIFEST_COLUMNS: tuple[str, ...] = (
    "subject_id",
    "capture_id",
    "kind",
    "path",
    "name",
    "passport_no",
    "nationality",
    "sex",
    "birth_year",
    *(f"lm{i}_{a}" for i in range(5) for a in ("x", "y")),
    "birth_date",
    "capture_year",
    "yaw",
    "pitch",
    "roll",
    "glasses",
    "mask",
)

# Fixed PNG settings: deflate level 0 (stored blocks), no filter. The images carry
# sensor noise, so compression buys little for its cost; measured on 112x112 images
# (README, "Files"): stored 38 KB in 0.04 ms; Huffman-only 32 KB in 0.34 ms; Huffman over
# the "up" filter 21 KB in 0.37 ms; zlib level 6 with Paeth 17 KB in 1.7 ms. Fixed
# settings keep the output byte-stable for a given libpng.
_PNG_PARAMS = [
    cv2.IMWRITE_PNG_COMPRESSION,
    0,
    cv2.IMWRITE_PNG_FILTER,
    cv2.IMWRITE_PNG_FILTER_NONE,
]


@dataclass(frozen=True)
class SynthConfig:
    """Arguments of one dataset; ``identities`` and ``captures`` are per the CLI."""

    identities: int
    captures: int = 2
    seed: int = 0
    difficulty: float = 1.0
    size: int = 112

    def validate(self) -> None:
        if self.identities < 1:
            raise BadInputError(f"--identities must be at least 1, got {self.identities}")
        if self.captures < 0:
            raise BadInputError(f"--captures must be 0 or more, got {self.captures}")
        if not 0.0 <= self.difficulty <= 3.0:
            raise BadInputError(f"--difficulty must be in [0, 3], got {self.difficulty}")
        if not 32 <= self.size <= 1024:
            raise BadInputError(f"--size must be in [32, 1024], got {self.size}")


@dataclass(frozen=True)
class SynthSummary:
    """What was written: counts per group, the time taken and the speed."""

    out: Path
    identities: int
    images: int
    seconds: float
    by_nationality: dict[str, int] = field(default_factory=dict)
    by_sex: dict[str, int] = field(default_factory=dict)
    audit: dict | None = None

    @property
    def images_per_second(self) -> float:
        return self.images / self.seconds if self.seconds > 0 else float("inf")


_LANDMARK_KEYS = [(f"lm{i}_x", f"lm{i}_y") for i in range(5)]


def render_identity(cfg: SynthConfig, index: int) -> list[tuple[dict[str, str], np.ndarray]]:
    """Every image of identity ``index``: its manifest row and RGB pixels (pure)."""
    ident = sample_identity(cfg.seed, index)
    rng = np.random.default_rng(np.random.SeedSequence([cfg.seed, 1, index]))
    out = []
    for k in range(cfg.captures + 1):
        kind = "passport" if k == 0 else "gate"
        params = capture_params(ident, kind, cfg.difficulty, rng)
        scene = passport_scene(ident, rng) if k == 0 else gate_scene(rng, cfg.difficulty)
        img, lms = render(params, ident.texture_seed, scene, cfg.size)
        capture_id = f"{ident.subject_id}-{'P' if k == 0 else f'G{k}'}"
        row = {
            "subject_id": ident.subject_id,
            "capture_id": capture_id,
            "kind": kind,
            "path": f"images/{capture_id}.png",
            "name": ident.name,
            "passport_no": ident.passport_no,
            "nationality": ident.nationality,
            "sex": ident.sex,
            "birth_year": str(ident.birth_year),
            "birth_date": ident.birth_date,
            "capture_year": str(ident.issue_year if k == 0 else CAPTURE_YEAR),
            "yaw": f"{scene.yaw:.2f}",
            "pitch": f"{scene.pitch:.2f}",
            "roll": f"{scene.roll:.2f}",
            "glasses": str(int(scene.glasses)),
            "mask": str(int(scene.mask)),
        }
        for (kx, ky), (x, y) in zip(_LANDMARK_KEYS, lms.tolist(), strict=True):
            row[kx] = f"{x:.2f}"
            row[ky] = f"{y:.2f}"
        out.append((row, img))
    return out


def encode_png(rgb: np.ndarray) -> bytes:
    """PNG bytes of an RGB image, with the fixed settings that keep output byte-stable."""
    ok, buf = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), _PNG_PARAMS)
    if not ok:  # pragma: no cover - OpenCV fails only on impossible shapes
        raise RuntimeError("PNG encoding failed")
    return buf.tobytes()


_NEW_FILE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)


def _write_chunk(args: tuple[SynthConfig, str, int, int]) -> list[dict[str, str]]:
    """Worker: render identities [start, stop) and write their PNGs under ``root``."""
    cfg, root, start, stop = args
    cv2.setNumThreads(1)
    rows = []
    for index in range(start, stop):
        for row, img in render_identity(cfg, index):
            # a new file each time: O_EXCL; os.write skips the buffered file object
            fd = os.open(os.path.join(root, row["path"]), _NEW_FILE, 0o644)
            try:
                data = memoryview(encode_png(img))
                while data:  # a short write (a full disk) writes the rest or raises
                    data = data[os.write(fd, data) :]
            finally:
                os.close(fd)
            rows.append(row)
    return rows


def _start_method() -> str:
    """forkserver where the platform has it and the children read PYTHONSAFEPATH; spawn
    otherwise (it sets the children's ``sys.path`` to this process's own)."""
    methods = multiprocessing.get_all_start_methods()
    env_ignored = sys.flags.ignore_environment and not sys.flags.safe_path
    return "forkserver" if "forkserver" in methods and not env_ignored else "spawn"


@contextlib.contextmanager
def _no_cwd_on_child_path() -> Iterator[None]:
    """Start worker interpreters with PYTHONSAFEPATH=1 (Python 3.11, the ``-P`` option).

    multiprocessing starts its forkserver with ``python -c ...``, which puts the working
    directory first on ``sys.path``, and the server imports its preload modules before
    anything resets the path (CPython 3.11 ``forkserver.main`` ignores ``sys_path``): a
    folder named ``facelab`` or ``lab`` where the user stands would be imported in place
    of facelab's own package. With PYTHONSAFEPATH the working directory is never added.
    """
    old = os.environ.get("PYTHONSAFEPATH")
    os.environ["PYTHONSAFEPATH"] = "1"
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("PYTHONSAFEPATH", None)
        else:
            os.environ["PYTHONSAFEPATH"] = old


def _run_chunks(
    jobs: list[tuple[SynthConfig, str, int, int]],
    n_workers: int,
    progress: Callable[[int], None] | None,
) -> list[list[dict[str, str]]]:
    """Run ``_write_chunk`` over ``jobs`` in ``n_workers`` processes; results in job order.

    This process is one of the workers: it takes chunks from the end of the list while
    ``n_workers - 1`` pool processes take them from the front, so the pool's start-up
    (a forkserver that imports OpenCV) overlaps with rendering instead of preceding it.
    """
    threads = cv2.getNumThreads()
    results: list[list[dict[str, str]] | None] = [None] * len(jobs)

    def done(i: int, rows: list[dict[str, str]]) -> None:
        results[i] = rows
        if progress:
            _, _, a, b = jobs[i]
            progress(b - a)

    try:
        if n_workers == 1:
            for i, job in enumerate(jobs):
                done(i, _write_chunk(job))
            return [r for r in results if r is not None]
        # forkserver, not fork: forking a process whose OpenCV or dlib threads hold a
        # lock deadlocks the child (seen when synth runs after a detector).
        ctx = multiprocessing.get_context(_start_method())
        if ctx.get_start_method() == "forkserver":
            # workers fork from a server that imported the renderer once: fast start
            ctx.set_forkserver_preload(["facelab.synth._dataset"])
        with _no_cwd_on_child_path(), ProcessPoolExecutor(n_workers - 1, mp_context=ctx) as pool:
            try:
                futures = [pool.submit(_write_chunk, job) for job in jobs]
                front = 0  # the pool's chunks before this one are reported
                for i in reversed(range(len(jobs))):
                    if not futures[i].cancel():
                        break  # the pool has reached this chunk: the rest is its
                    done(i, _write_chunk(jobs[i]))
                    # report the pool's finished chunks (it takes them in order)
                    while front < i and futures[front].done():
                        done(front, futures[front].result())
                        front += 1
                for k in range(front, len(jobs)):
                    if results[k] is None:
                        done(k, futures[k].result())
            except BaseException:
                pool.shutdown(wait=True, cancel_futures=True)
                raise
    finally:
        cv2.setNumThreads(threads)  # _write_chunk pins OpenCV to one thread
    return [r for r in results if r is not None]


def _chunks(n: int, size: int) -> Iterator[tuple[int, int]]:
    for start in range(0, n, size):
        yield start, min(n, start + size)


def _check_out(out: Path, force: bool) -> None:
    if out.exists() and not out.is_dir():
        raise BadInputError(f"{out}: exists and is not a directory")
    if out.is_dir() and any(out.iterdir()) and not force:
        raise BadInputError(f"{out}: directory is not empty (use --force to replace it)")
    parent = out.parent if str(out.parent) else Path(".")
    if not parent.is_dir():
        raise BadInputError(f"{out}: parent directory {parent} does not exist")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise BadInputError(f"{out}: parent directory {parent} is not writable")


def write_dataset(
    cfg: SynthConfig,
    out: Path | str,
    *,
    force: bool = False,
    workers: int | None = None,
    progress: Callable[[int], None] | None = None,
    clock: Callable[[], float] = time.perf_counter,
    certify: Callable[[Path], dict] | None = None,
) -> SynthSummary:
    """Generate a dataset into ``out`` (atomically) and return a summary.

    Parameters
    ----------
    cfg : SynthConfig
        What to generate.
    out : path
        Target directory: must not exist or be empty, unless ``force``.
    workers : int, optional
        Worker processes; default: the CPUs this process may use. 1 runs in-process.
    progress : callable, optional
        Called with the number of identities finished since the last call.
    clock : callable
        Injected for the timing in the summary.
    certify : callable, optional
        Called with the written (not yet published) dataset directory; what it returns
        goes into ``synth.json`` under ``"audit"`` (``facelab synth --audit`` passes
        ``facelab.synth._realism.certificate``). The generator itself never needs it.
    """
    cfg.validate()
    out = Path(out)
    _check_out(out, force)
    t0 = clock()
    n_workers = workers or len(os.sched_getaffinity(0))
    try:
        tmp = sibling_dir(out)
    except OSError as e:
        raise BadInputError(f"{out}: cannot create a directory beside it ({e.strerror})") from e
    try:
        (tmp / "images").mkdir()
        chunk = max(1, min(8, cfg.identities // (n_workers * 8) or 1))
        jobs = [(cfg, str(tmp), a, b) for a, b in _chunks(cfg.identities, chunk)]
        rows = [row for part in _run_chunks(jobs, n_workers, progress) for row in part]
        buf = io.StringIO(newline="")
        w = csv.DictWriter(buf, fieldnames=MANIFEST_COLUMNS, lineterminator="\n")
        w.writeheader()
        w.writerows(rows)
        (tmp / "manifest.csv").write_text(buf.getvalue(), encoding="utf-8")
        meta = {
            "generator": GENERATOR_VERSION,
            "identities": cfg.identities,
            "captures": cfg.captures,
            "seed": cfg.seed,
            "difficulty": cfg.difficulty,
            "size": cfg.size,
            "images": len(rows),
        }
        audit_seconds = 0.0  # the summary's speed is the generator's, without the audit
        if certify is not None:
            t_audit = clock()
            meta["audit"] = certify(tmp)
            audit_seconds = clock() - t_audit
        (tmp / "synth.json").write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
        _fsync_tree(tmp)
        _replace_dir(tmp, out)
    except OSError as e:
        shutil.rmtree(tmp, ignore_errors=True)
        raise BadInputError(f"{out}: cannot write dataset ({e.strerror or e})") from e
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    seconds = clock() - t0 - audit_seconds
    passports = [r for r in rows if r["kind"] == "passport"]
    return SynthSummary(
        out=out,
        identities=cfg.identities,
        images=len(rows),
        seconds=seconds,
        by_nationality=dict(sorted(Counter(r["nationality"] for r in passports).items())),
        by_sex=dict(sorted(Counter(r["sex"] for r in passports).items())),
        audit=meta.get("audit"),
    )


def _fsync_tree(root: Path) -> None:
    """Flush the manifest and directories so the rename publishes durable files."""
    for p in (root / "manifest.csv", root / "synth.json"):
        fd = os.open(p, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    if sys.platform != "win32":
        for d in (root / "images", root):
            fd = os.open(d, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)


def _replace_dir(tmp: Path, out: Path) -> None:
    """Move ``tmp`` to ``out``; an existing (forced) ``out`` is moved aside first."""
    if out.exists():
        trash = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent or "."))
        os.rename(out, trash / "old")
        os.rename(tmp, out)
        shutil.rmtree(trash, ignore_errors=True)
    else:
        os.rename(tmp, out)


def dataset_digest(root: Path | str) -> str:
    """``sha256:<hex>`` over every file of a dataset (relative path and content digest).

    Stable across copies and file systems; the audit log and the vault name datasets by it.
    """
    import hashlib

    root = Path(root)
    h = hashlib.sha256()
    for p in sorted(q for q in root.rglob("*") if q.is_file()):
        rel = p.relative_to(root).as_posix()
        h.update(rel.encode() + b"\0" + hashlib.sha256(p.read_bytes()).digest())
    return "sha256:" + h.hexdigest()
