"""Pure, batched image maths for the face detector: resampling as matrix products, the
two normalised representations, and the crop regions the index holds.

``small(stack)``  16x16 area-resampled, zero mean, unit norm: shortlists and
                  face-likeness (invariant to any positive affine change of intensity).
``fine(stack)``   32x32 minus a Gaussian blur (sigma 2 px), zero mean, unit norm: the
                  high-passed detail that tells one synthetic face from another, used to
                  explain an image as a mean of a few vault images.
A stack is an array of shape (n, h, w) of float32 grey levels.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

SMALL = 16
FINE = 32
#: crop regions as fractions (top, bottom, left, right) of the image: the whole face,
#: its halves and its centre. A view that holds part of a face is matched against the
#: same part of every vault image.
REGIONS: dict[str, tuple[float, float, float, float]] = {
    "full": (0.0, 1.0, 0.0, 1.0),
    "top": (0.0, 0.5, 0.0, 1.0),
    "bottom": (0.5, 1.0, 0.0, 1.0),
    "left": (0.0, 1.0, 0.0, 0.5),
    "right": (0.0, 1.0, 0.5, 1.0),
    "centre": (0.25, 0.75, 0.25, 0.75),
}


@lru_cache(maxsize=512)
def resample_matrix(n_in: int, n_out: int) -> np.ndarray:
    """(n_out, n_in) weights: area averaging when shrinking, linear when growing."""
    m = np.zeros((n_out, n_in), np.float32)
    if n_in >= n_out:
        scale = n_in / n_out
        for i in range(n_out):
            lo, hi = i * scale, (i + 1) * scale
            for j in range(int(lo), min(n_in, int(np.ceil(hi)))):
                m[i, j] = min(hi, j + 1) - max(lo, j)
            m[i] /= m[i].sum()
    else:
        for i in range(n_out):
            x = min(max((i + 0.5) * n_in / n_out - 0.5, 0.0), n_in - 1.0)
            j = int(x)
            f = x - j
            m[i, j] += 1 - f
            if j + 1 < n_in:
                m[i, j + 1] += f
            else:
                m[i, j] += f
    return m


def resize(stack: np.ndarray, h: int, w: int) -> np.ndarray:
    """Resize a (n, H, W) stack to (n, h, w) with two matrix products."""
    rh = resample_matrix(stack.shape[1], h)
    rw = resample_matrix(stack.shape[2], w)
    return np.matmul(np.matmul(rh, stack.astype(np.float32, copy=False)), rw.T)


def unit(x: np.ndarray) -> np.ndarray:
    """Rows zero-mean, unit-norm (constant rows stay zero)."""
    x = x.reshape(len(x), -1).astype(np.float32, copy=True)
    x -= x.mean(axis=1, keepdims=True)
    n = np.linalg.norm(x, axis=1, keepdims=True)
    return np.divide(x, n, out=np.zeros_like(x), where=n > 1e-12)


@lru_cache(maxsize=4)
def _blur_matrix(n: int, sigma: float) -> np.ndarray:
    i = np.arange(n)
    k = np.exp(-0.5 * ((i[:, None] - i[None, :]) / sigma) ** 2).astype(np.float32)
    return k / k.sum(axis=1, keepdims=True)


def small(stack: np.ndarray) -> np.ndarray:
    return unit(resize(stack, SMALL, SMALL))


def fine(stack: np.ndarray) -> np.ndarray:
    x = resize(stack, FINE, FINE)
    b = _blur_matrix(FINE, 2.0)
    return unit(x - np.matmul(np.matmul(b, x), b.T))


def crop(stack: np.ndarray, region: str) -> np.ndarray:
    t, b, left, r = REGIONS[region]
    h, w = stack.shape[1:3]
    return stack[:, round(t * h) : round(b * h), round(left * w) : round(r * w)]


def dihedral(img: np.ndarray, k: int) -> np.ndarray:
    """The k-th of the 8 flips and transposes of the last two axes (k = 0 is identity)."""
    x = np.swapaxes(img, -1, -2) if k & 4 else img
    if k & 1:
        x = x[..., ::-1]
    if k & 2:
        x = x[..., ::-1, :]
    return x


def grey(a: np.ndarray, layout: str) -> np.ndarray:
    """(..., H, W) grey stack from an array in ``layout``: HW, HWC (C=3/4) or CHW."""
    a = a.astype(np.float32, copy=False)
    if layout == "HW":
        return a
    if layout == "HWC":
        return a[..., 0] * 0.299 + a[..., 1] * 0.587 + a[..., 2] * 0.114
    return a[..., 0, :, :] * 0.299 + a[..., 1, :, :] * 0.587 + a[..., 2, :, :] * 0.114
