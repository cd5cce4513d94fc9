"""What the export gate knows of the tenant's subjects, built in one pass over the vault.

* identifiers as keyed hashes (``keyed.py``), each mapped to subject pseudonyms;
* for every record and every crop region (``_imaging.REGIONS``): its 16x16 and 32x32
  high-passed representations, and a 64x64 grey thumbnail for the final comparison;
  per region, the top principal components that say how face-like a view is;
* counts of records and subjects per split (structural checks);
* on demand, templates of the subjects under a given matcher (reference model or the
  artifact's own), from a second pass that decodes the needed records only.

Nothing here is written to disk; the index lives for one scan.
"""

from __future__ import annotations

import contextlib
import os
from collections import defaultdict, deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import date

import cv2
import numpy as np
from facelab.gates.exporting import _imaging as im
from facelab.gates.exporting import keyed
from facelab.vault.store import Record

THUMB = 64
PCA_COMPONENTS = 24


@dataclass
class Region:
    name: str
    small: np.ndarray  # (n, 256) float32
    fine: np.ndarray  # (n, 1024) float32
    pcs: np.ndarray  # (PCA_COMPONENTS, 256)
    mean: np.ndarray  # (256,) unit mean direction


@dataclass
class SubjectTemplates:
    """Templates of one matcher: per record (the records it was computed on)."""

    records: np.ndarray  # indices into the index's records
    templates: np.ndarray  # (m, d) unit rows
    impostor_threshold: float  # cosine at the policy's FMR among different subjects


@dataclass
class SubjectIndex:
    key: bytes
    identifiers: dict[bytes, set[tuple[str, str]]]  # hash -> {(subject, field)}
    subjects: np.ndarray  # (n,) pseudonym per record
    kinds: np.ndarray  # (n,)
    splits: np.ndarray  # (n,)
    thumbs: np.ndarray  # (n, 64, 64) uint8
    regions: dict[str, Region]
    reader: Callable[[], Iterator[Record]] | None = None
    native_side: int = 112
    templates: dict[str, SubjectTemplates] = field(default_factory=dict)

    def counts(self) -> dict[str, int]:
        out = {"records": len(self.subjects), "subjects": len(set(self.subjects))}
        for s in set(self.splits):
            m = self.splits == s
            out[f"{s} records"] = int(m.sum())
            out[f"{s} subjects"] = len(set(self.subjects[m]))
        return out

    def lookup(self, form: str) -> set[tuple[str, str]]:
        return self.identifiers.get(keyed.h(self.key, form), set())


def _digests(value: str) -> Iterator[str]:
    """Unsalted MD5, SHA-1 and SHA-256 (hex) of a plain identifier as written, upper and
    lower case: an identifier "hashed" that way is still the identifier."""
    import hashlib

    for v in {value, value.upper(), value.lower(), value.strip()}:
        for algo in ("md5", "sha1", "sha256"):
            yield "H|" + hashlib.new(algo, v.encode("utf-8")).hexdigest()


def _identifier_forms(r: Record) -> Iterator[tuple[str, str]]:
    if r.name:
        for f in keyed.name_forms(r.name):
            yield f, "name"
        for d in _digests(r.name):
            yield d, "name"
        for w in set(keyed.words(r.name)):  # each part alone: names split across cells
            if len(w) >= 2:
                yield "W|" + w, "name part"
    if r.passport_no:
        yield keyed.passport_form(r.passport_no), "passport_no"
        for d in _digests(r.passport_no):
            yield d, "passport_no"
    if r.birth_date:
        with contextlib.suppress(ValueError):
            yield keyed.date_form(date.fromisoformat(r.birth_date)), "birth_date"


def _grey(r: Record) -> np.ndarray:
    img = cv2.imdecode(np.frombuffer(r.png, np.uint8), cv2.IMREAD_GRAYSCALE)
    return img


def build(
    records: Iterable[Record],
    *,
    fields: tuple[str, ...] = ("name", "passport_no", "birth_date"),
    reader: Callable[[], Iterator[Record]] | None = None,
    key: bytes | None = None,
    workers: int | None = None,
) -> SubjectIndex:
    """Index ``records`` (decrypted, with identifiers revealed to the gate)."""
    key = key if key is not None else os.urandom(32)
    ident: dict[bytes, set[tuple[str, str]]] = defaultdict(set)
    subjects, kinds, splits, thumbs = [], [], [], []
    per_region: dict[str, tuple[list, list]] = {r: ([], []) for r in im.REGIONS}
    workers = workers or min(4, os.cpu_count() or 1)

    sides: list[int] = []

    def process(batch: list[Record]) -> tuple[np.ndarray, dict]:
        greys = [_grey(r) for r in batch]
        if not sides:
            sides.append(max(greys[0].shape))
        shapes = {g.shape for g in greys}
        out_thumbs = np.empty((len(batch), THUMB, THUMB), np.uint8)
        reps = {}
        for shape in shapes:
            idx = [i for i, g in enumerate(greys) if g.shape == shape]
            stack = np.stack([greys[i] for i in idx]).astype(np.float32)
            out_thumbs[idx] = np.clip(im.resize(stack, THUMB, THUMB) + 0.5, 0, 255).astype(np.uint8)
            for region in im.REGIONS:
                c = im.crop(stack, region)
                s, f = im.small(c), im.fine(c)
                prev = reps.setdefault(
                    region,
                    (
                        np.empty((len(batch), s.shape[1]), np.float32),
                        np.empty((len(batch), f.shape[1]), np.float32),
                    ),
                )
                prev[0][idx], prev[1][idx] = s, f
        return out_thumbs, reps

    def batches() -> Iterator[list[Record]]:
        b: list[Record] = []
        for r in records:
            for form, fld in _identifier_forms(r):
                if fld in fields or (fld == "name part" and "name" in fields):
                    ident[keyed.h(key, form)].add((r.subject, fld))
            subjects.append(r.subject)
            kinds.append(r.kind)
            splits.append(r.split)
            b.append(r)
            if len(b) == 256:
                yield b
                b = []
        if b:
            yield b

    def collect(fut) -> None:
        t, reps = fut.result()
        thumbs.append(t)
        for region, (s, f) in reps.items():
            per_region[region][0].append(s)
            per_region[region][1].append(f)

    with ThreadPoolExecutor(workers) as pool:  # OpenCV and BLAS release the GIL
        pending: deque = deque()
        for b in batches():
            pending.append(pool.submit(process, b))
            if len(pending) > 2 * workers:  # bounded: records are not all held at once
                collect(pending.popleft())
        while pending:
            collect(pending.popleft())
    regions = {}
    for name, (s, f) in per_region.items():
        small = np.concatenate(s) if s else np.zeros((0, im.SMALL**2), np.float32)
        fine = np.concatenate(f) if f else np.zeros((0, im.FINE**2), np.float32)
        regions[name] = Region(name, small, fine, *_components(small))
    return SubjectIndex(
        key,
        dict(ident),
        np.asarray(subjects),
        np.asarray(kinds),
        np.asarray(splits),
        np.concatenate(thumbs) if thumbs else np.zeros((0, THUMB, THUMB), np.uint8),
        regions,
        reader,
        sides[0] if sides else 112,
    )


def _components(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    if len(x) == 0:
        return np.zeros((0, im.SMALL**2), np.float32), np.zeros(im.SMALL**2, np.float32)
    sample = x[np.linspace(0, len(x) - 1, min(len(x), 4000)).astype(int)]
    mean = sample.mean(axis=0)
    mean = mean / (np.linalg.norm(mean) or 1.0)
    _, _, vt = np.linalg.svd(sample, full_matrices=False)
    return vt[:PCA_COMPONENTS].astype(np.float32), mean.astype(np.float32)


def pick_records(
    index: SubjectIndex, max_records: int, subjects: set[str] | None = None
) -> np.ndarray:
    """Record numbers: passport photos first, then gate captures spread evenly."""
    ok = (
        np.ones(len(index.subjects), bool)
        if subjects is None
        else np.isin(index.subjects, list(subjects))
    )
    first = np.flatnonzero(ok & (index.kinds == "passport"))[:max_records]
    rest = np.flatnonzero(ok & (index.kinds != "passport"))
    room = max_records - len(first)
    if len(rest) > room:
        rest = rest[np.linspace(0, len(rest) - 1, room).astype(int)] if room > 0 else rest[:0]
    return np.sort(np.concatenate([first, rest]))


def subject_templates(
    index: SubjectIndex,
    name: str,
    extract,
    fmr: float,
    max_records: int = 20000,
    subjects: set[str] | None = None,
) -> SubjectTemplates:
    """Templates of the vault's records under ``extract(images, landmarks) -> (m, d)``.

    Computed once per matcher name (and subject set) and kept in the index. The
    impostor threshold is the cosine that a fraction ``fmr`` of different-subject pairs
    exceed.
    """
    cache = name if subjects is None else f"{name}|{len(subjects)}|{hash(frozenset(subjects))}"
    if cache in index.templates:
        return index.templates[cache]
    assert index.reader is not None, "the index was built without a vault reader"
    wanted = set(pick_records(index, max_records, subjects).tolist())
    images, lms, rows = [], [], []
    for i, r in enumerate(index.reader()):
        if i in wanted:
            images.append(r.image())
            lms.append(r.landmarks)
            rows.append(i)
    t = extract(images, lms) if images else np.zeros((0, 1), np.float32)
    # a row is compared with every record: the per-pair rate is divided among them, so
    # that a random row passes with probability ~fmr, not fmr * records
    thr = impostor_threshold(t, index.subjects[rows], fmr / max(1, len(rows)))
    st = SubjectTemplates(np.asarray(rows, np.int64), t.astype(np.float32), thr)
    index.templates[cache] = st
    return st


def impostor_threshold(
    t: np.ndarray, subjects: np.ndarray, fmr: float, max_rows: int = 4000
) -> float:
    """The cosine exceeded by a fraction ``fmr`` of different-subject pairs (the largest
    impostor score seen when ``fmr`` is below the sample's resolution)."""
    if len(t) < 2:
        return 1.0
    sel = np.linspace(0, len(t) - 1, min(len(t), max_rows)).astype(int)
    a, s = t[sel], subjects[sel]
    scores = a @ a.T
    mask = s[:, None] != s[None, :]
    imp = scores[np.triu(mask, 1)]
    if len(imp) == 0:
        return 1.0
    q = 1.0 - max(fmr, 1.0 / len(imp))
    return float(np.quantile(imp, q))
