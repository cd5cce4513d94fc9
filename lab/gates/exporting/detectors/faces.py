"""Face pixels: views of tensors that are vault images, parts of them, or means of
fewer than k subjects.

For every view (``_views.py``) and each of its 8 flips and transposes, the share of its
energy in each crop region's principal components says whether, and which part of, a
face it looks like; most weights fall out here. A face-like view is then

1. shortlisted against that region of every vault record (16x16 correlation, one matrix
   product for a whole stack, so the cost grows as views + records, not their product);
2. compared at its own resolution with the 64 shortlisted records, each blurred as the
   view may be (sigma 0, 1, 2). It is a record's image when it is ``distinctness``
   times closer (1 - correlation) to that record than to any record of another subject:
   the test is relative, since synthetic faces of different people correlate highly;
3. otherwise explained greedily, in the high-passed 32x32 space, by up to k - 1 vault
   images: a fit of ``aggregate_fit`` or better makes it a mean of fewer than k subjects
   (the statistical-disclosure minimum-count rule).
Affine intensity changes (scaling, normalisation, inversion) fall out of the
zero-mean, unit-norm representations; quantisation and downscaling are what the
relative test tolerates.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np
from facelab.gates.exporting import _imaging as im
from facelab.gates.exporting._types import Artifact, Finding, ScanContext
from facelab.gates.exporting._views import count, views
from facelab.gates.exporting.artifact import Unscannable

NAME = "faces"
SHORTLIST = 64
CHUNK = 2048
MAX_CONFIRMED = 500
_TRANSFORMS = (
    "",
    "mirrored",
    "upside down",
    "rotated 180",
    "transposed",
    "transposed, mirrored",
    "transposed, flipped",
    "anti-transposed",
)


def sorted_rasters(stack: np.ndarray) -> np.ndarray:
    """(n,) bool: views of an (n, h, w) stack whose pixels, in the order they are stored,
    never decrease or never increase (a sorted list such as a DET curve's 1,444 rates
    read as 38x38). Sorting keeps the histogram of a picture and loses where each value
    sits, so such a view holds no face whatever it correlates with: a smooth ramp can
    sit 3x closer to one record's lighting than to any other subject's (1 false refusal
    in 24 demo runs before this rule). A face stored as the running sum of its pixels
    is monotone too, but is not an image of the face either; the payload and
    representation detectors read such encodings."""
    flat = stack.reshape(len(stack), -1)
    if flat.shape[1] < 2:
        return np.ones(len(stack), bool)
    d = np.diff(flat, axis=1)
    return (d >= 0).all(axis=1) | (d <= 0).all(axis=1)


def _likeness(sm: np.ndarray, index) -> np.ndarray:
    """Best face-likeness of each view of a (n, 256) batch over regions and transforms:
    the share of its energy in the region's principal components."""
    n = len(sm)
    grid = sm.reshape(n, im.SMALL, im.SMALL)
    energy = np.zeros(n, np.float32)
    for region in index.regions.values():
        if len(region.pcs) == 0:
            continue
        for k in range(8):
            v = np.ascontiguousarray(im.dihedral(grid, k)).reshape(n, -1)
            energy = np.maximum(energy, ((v @ region.pcs.T) ** 2).sum(axis=1))
    return energy


def _orientations(
    sm: np.ndarray, index, keep: int = 2
) -> list[list[tuple[float, int, int, float, np.ndarray]]]:
    """For each view (rows of ``sm``), the ``keep`` best (correlation, region number,
    transform, sign, shortlist) over every region, transform and sign, by the best
    16x16 correlation with any vault record."""
    n = len(sm)
    grid = sm.reshape(n, im.SMALL, im.SMALL)
    variants = np.stack(
        [np.ascontiguousarray(im.dihedral(grid, k)).reshape(n, -1) for k in range(8)], axis=1
    )  # (n, 8, 256)
    out: list[list] = [[] for _ in range(n)]
    for r, region in enumerate(index.regions.values()):
        if len(region.small) == 0:
            continue
        c = variants.reshape(n * 8, -1) @ region.small.T  # (n * 8, records)
        for sign in (1.0, -1.0):
            cs = c if sign > 0 else -c
            best = cs.max(axis=1).reshape(n, 8)
            for i in range(n):
                k = int(np.argmax(best[i]))
                row = cs[i * 8 + k]
                top = np.argpartition(-row, min(SHORTLIST, len(row) - 1))[:SHORTLIST]
                out[i].append((float(best[i, k]), r, k, sign, top))
    return [sorted(o, key=lambda t: -t[0])[:keep] for o in out]


def _relative(
    view: np.ndarray, thumbs: np.ndarray, subjects: np.ndarray
) -> tuple[float, int, float]:
    """(distinctness, best shortlisted position, its correlation) at the view's size."""
    h, w = view.shape
    scale = min(1.0, 64.0 / max(h, w))
    th, tw = max(8, round(h * scale)), max(8, round(w * scale))
    v = cv2.resize(view, (tw, th), interpolation=cv2.INTER_AREA) if scale < 1 else view
    recs = [
        cv2.resize(
            t, (tw, th), interpolation=cv2.INTER_AREA if t.shape[0] > th else cv2.INTER_LINEAR
        )
        for t in thumbs
    ]
    best = (0.0, 0, 0.0)
    for sigma in (0.0, 1.0, 2.0):

        def blur(x, s=sigma):
            return cv2.GaussianBlur(x, (0, 0), s) if s else x

        q = im.unit(blur(v)[None])[0]
        r = im.unit(np.stack([blur(x) for x in recs]))
        c = r @ q
        i = int(np.argmax(c))
        others = c[subjects != subjects[i]]
        if len(others) == 0:
            continue
        d = (1.0 - float(others.max())) / max(1.0 - float(c[i]), 1e-6)
        if d > best[0]:
            best = (d, i, float(c[i]))
    return best


ALIGN = 48  # side of the thumbnails searched for a shifted, cropped or rotated view
_SCALES = (1.0, 0.9, 0.8, 0.7, 0.6)
_ANGLES = (-6.0, 6.0)
#: alignment searches per artifact (~50 ms each): face-like views that match nothing
#: plainly (eigenfaces, means over many people) are few in a real model; the first of
#: a stack of shifted faces is enough to refuse it
ALIGN_BUDGET = 50


def _aligned(view: np.ndarray, thumbs: np.ndarray, subjects: np.ndarray) -> tuple[float, int]:
    """(distinctness, best shortlisted position) when the view may be a shifted, scaled,
    cropped or slightly rotated part of a record: normalised cross-correlation searched
    over positions (``cv2.matchTemplate``), scales and small angles, at 48 px."""
    pad = ALIGN // 8
    tile = ALIGN + 2 * pad
    cols = 8
    rows_ = -(-len(thumbs) // cols)
    mosaic = np.zeros((rows_ * tile, cols * tile), np.float32)  # one search for all
    for k, t in enumerate(thumbs):
        a, b = divmod(k, cols)
        mosaic[a * tile : (a + 1) * tile, b * tile : (b + 1) * tile] = cv2.copyMakeBorder(
            cv2.resize(t, (ALIGN, ALIGN), interpolation=cv2.INTER_AREA),
            pad,
            pad,
            pad,
            pad,
            cv2.BORDER_REPLICATE,
        )
    h, w = view.shape
    probes = []
    for f in _SCALES:
        k = f * ALIGN / max(h, w)
        ph, pw = max(6, round(h * k)), max(6, round(w * k))
        probes.append(cv2.resize(view, (pw, ph), interpolation=cv2.INTER_AREA))
    base = probes[0]
    for ang in _ANGLES:
        rot = cv2.warpAffine(
            base,
            cv2.getRotationMatrix2D((base.shape[1] / 2, base.shape[0] / 2), ang, 1.0),
            (base.shape[1], base.shape[0]),
            borderMode=cv2.BORDER_REPLICATE,
        )
        c = max(2, round(0.1 * min(rot.shape)))
        probes.append(rot[c:-c, c:-c])  # the corners a rotation invents are cut
    best = np.full(len(thumbs), -1.0, np.float32)
    for p in probes:
        ph, pw = p.shape
        if p.std() < 1e-6 or ph > tile or pw > tile:
            continue
        res = cv2.matchTemplate(mosaic, np.ascontiguousarray(p, np.float32), cv2.TM_CCOEFF_NORMED)
        for k in range(len(thumbs)):  # positions wholly inside record k's tile
            a, b = divmod(k, cols)
            win = res[a * tile : a * tile + tile - ph + 1, b * tile : b * tile + tile - pw + 1]
            best[k] = max(best[k], float(win.max()))
    i = int(np.argmax(best))
    others = best[subjects != subjects[i]]
    if len(others) == 0:
        return 0.0, i
    return (1.0 - float(others.max())) / max(1.0 - float(best[i]), 1e-6), i


def _explain(
    f: np.ndarray, atoms: np.ndarray, steps: int, subjects: np.ndarray, target: float
) -> tuple[float, list[str]]:
    """Greedy non-negative fit of f by up to ``steps`` rows of ``atoms``: the fit (R^2)
    at the first step that reaches ``target`` (or the last), and the distinct subjects
    whose images carry a share of the weight."""
    chosen: list[int] = []
    res = f.copy()
    r2, coef = 0.0, np.zeros(0)
    for _ in range(steps):
        j = int(np.argmax(atoms @ res))
        if j in chosen:
            break
        chosen.append(j)
        a = atoms[chosen].T
        coef, *_ = np.linalg.lstsq(a, f, rcond=None)
        while (coef < 0).any() and len(chosen) > 1:
            chosen.pop(int(np.argmin(coef)))
            a = atoms[chosen].T
            coef, *_ = np.linalg.lstsq(a, f, rcond=None)
        res = f - a @ coef
        r2 = 1.0 - float(res @ res) / max(float(f @ f), 1e-12)
        if r2 >= target:
            break
    keep = [j for j, c in zip(chosen, coef, strict=True) if c >= 0.05 * coef.max()]
    return r2, sorted({str(subjects[j]) for j in keep})


@dataclass
class _Matches:
    """What one tensor's views matched."""

    subjects: dict[str, float] = field(default_factory=dict)  # subject -> distinctness
    how: set[str] = field(default_factory=set)  # regions and transforms seen
    most: tuple[int, str] = (0, "")  # (images matched, view) of the view that matched most
    means: dict[tuple[str, ...], tuple[str, int, float, str]] = field(default_factory=dict)
    budget: list[int] = field(default_factory=lambda: [ALIGN_BUDGET])  # shared per artifact


def _scan_view(desc: str, stack: np.ndarray, index, pol: dict, m: _Matches) -> None:
    regions = list(index.regions.values())
    k = pol["min_subjects_k"]
    n_faces = 0
    for c0 in range(0, len(stack), CHUNK):
        chunk = np.nan_to_num(
            np.ascontiguousarray(stack[c0 : c0 + CHUNK], np.float32),
            nan=0.0,
            posinf=0.0,
            neginf=0.0,
        )
        sm = im.small(chunk)
        likely = np.flatnonzero(
            (_likeness(sm, index) >= pol["face_likeness"]) & ~sorted_rasters(chunk)
        )
        for b0 in range(0, len(likely), 32):
            batch = likely[b0 : b0 + 32]
            for i, options in zip(batch, _orientations(sm[batch], index), strict=True):
                # faces are nearly symmetric: a view and its mirror image shortlist
                # alike, so both are compared
                tries = [(r, tt, sign, top) for _, r, t, sign, top in options for tt in (t, t ^ 1)]
                hit = None
                for r, t, sign, top in tries:
                    view = sign * np.ascontiguousarray(im.dihedral(chunk[i], t))
                    thumbs = im.crop(index.thumbs[top].astype(np.float32), regions[r].name)
                    d, pos, _ = _relative(view, list(thumbs), index.subjects[top])
                    if hit is None or d > hit[0]:
                        hit = (d, top[pos], regions[r], t)
                d, rec, region, t = hit
                if d >= pol["distinctness"]:
                    subj = str(index.subjects[rec])
                    m.subjects[subj] = max(m.subjects.get(subj, 0.0), d)
                    m.how.add(f"{region.name} {_TRANSFORMS[t]}".strip())
                    n_faces += 1
                    if n_faces >= MAX_CONFIRMED:
                        break
                    continue
                if m.budget[0] > 0:  # a shifted, cropped or rotated record?
                    m.budget[0] -= 1
                    found = None
                    for _r, t, sign, top in tries[:2]:
                        view = sign * np.ascontiguousarray(im.dihedral(chunk[i], t))
                        d2, pos = _aligned(
                            view, index.thumbs[top].astype(np.float32), index.subjects[top]
                        )
                        if d2 >= pol["distinctness"] and (found is None or d2 > found[0]):
                            found = (d2, str(index.subjects[top[pos]]), t)
                    if found is not None:
                        d2, subj, t = found
                        m.subjects[subj] = max(m.subjects.get(subj, 0.0), d2)
                        m.how.add(f"shifted, scaled or rotated {_TRANSFORMS[t]}".strip())
                        n_faces += 1
                        continue
                best = (0.0, [], "")
                for r, t, sign, _ in tries:
                    view = sign * np.ascontiguousarray(im.dihedral(chunk[i], t))
                    r2, subs = _explain(
                        im.fine(view[None])[0],
                        regions[r].fine,
                        k - 1,
                        index.subjects,
                        pol["aggregate_fit"],
                    )
                    if r2 > best[0]:
                        best = (r2, subs, regions[r].name)
                r2, subs, rname = best
                if r2 >= pol["aggregate_fit"] and len(subs) < k:
                    m.means.setdefault(tuple(subs), (desc, c0 + int(i), r2, rname))
            if n_faces >= MAX_CONFIRMED:
                break
        if n_faces >= MAX_CONFIRMED:
            break
    if n_faces > m.most[0]:
        m.most = (n_faces, desc)


def detect(art: Artifact, ctx: ScanContext) -> list[Finding]:
    pol = ctx.policy.faces
    index = ctx.index
    if len(index.subjects) == 0:
        return []
    lo, hi = pol["min_side"], pol["max_side"]
    native = tuple(sorted({index.native_side, index.native_side // 2}))
    tensors = art.scan_tensors()
    total = sum(count(a, lo, hi, native) for _, a in tensors)
    if total > pol["max_views"]:
        raise Unscannable(
            f"{art.name}: {total} candidate image views exceed export.faces.max_views"
        )
    findings = []
    budget = [ALIGN_BUDGET]
    for loc, a in tensors:
        m = _Matches(budget=budget)
        for desc, stack in views(a, lo, hi, native):
            _scan_view(desc, stack, index, pol, m)
        if m.subjects:
            n, desc = m.most
            best = max(m.subjects.values())
            findings.append(
                Finding(
                    NAME,
                    "high",
                    art.name,
                    f"{loc}, viewed as {desc}",
                    f"{n}{'+' if n >= MAX_CONFIRMED else ''} image(s) that are vault images of "
                    f"{len(m.subjects)} subject(s) ({'; '.join(sorted(m.how))}); distinctness "
                    f"{best:.1f} (threshold {pol['distinctness']})",
                    tuple(sorted(m.subjects)),
                    round(best, 2),
                )
            )
        for subs, (desc, pos, r2, region) in list(m.means.items())[:20]:
            findings.append(
                Finding(
                    NAME,
                    "high",
                    art.name,
                    f"{loc}, viewed as {desc}, image {pos}",
                    f"a {'part of a ' if region != 'full' else ''}mean over {len(subs)} "
                    f"subject(s), fewer than k = {pol['min_subjects_k']} (fit R^2 {r2:.4f})",
                    subs,
                    round(r2, 4),
                )
            )
    return findings
