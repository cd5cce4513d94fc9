"""numba kernels of the scoring hot path. They trust their callers (validation happens at
the public boundary, as in scikit-learn) and do no checking.

``bin_block`` folds one block of scores into the impostor histogram, skips the genuine
entry of each probe column, accumulates sum and sum of squares (for d') and copies the
exact values that fall inside the collection windows, all in one pass over the block.
"""

from __future__ import annotations

import numpy as np
from numba import njit

NBINS = 1 << 20  # bins over [-1, 1]: width 2**-19, about 1.9e-6


@njit(cache=True, nogil=True)
def bin_block(scores, gen_row, counts, sums, win_lo, win_hi, win_buf, win_fill):
    """scores: (n, b) float32; gen_row: (b,) int64 row of the genuine pair or -1;
    counts: (NBINS,) int64; sums: (2,) float64; win_*: windows and their buffers."""
    n, b = scores.shape
    scale = NBINS / 2.0
    nw = win_lo.shape[0]
    s0 = 0.0
    s1 = 0.0
    for i in range(n):
        for j in range(b):
            if gen_row[j] == i:
                continue
            s = scores[i, j]
            k = int((s + 1.0) * scale)
            if k < 0:
                k = 0
            elif k >= NBINS:
                k = NBINS - 1
            counts[k] += 1
            s0 += s
            s1 += s * s
            for w in range(nw):
                if win_lo[w] <= s < win_hi[w]:
                    f = win_fill[w]
                    if f < win_buf.shape[1]:
                        win_buf[w, f] = s
                    win_fill[w] = f + 1
    sums[0] += s0
    sums[1] += s1


def bin_index(s: np.ndarray | float) -> np.ndarray:
    """The bin of a score, as the kernel computes it (float64 arithmetic on float32)."""
    k = np.floor((np.asarray(s, np.float64) + 1.0) * (NBINS / 2.0)).astype(np.int64)
    return np.clip(k, 0, NBINS - 1)


def bin_edges(k: int) -> tuple[float, float]:
    return -1.0 + k * 2.0 / NBINS, -1.0 + (k + 1) * 2.0 / NBINS
