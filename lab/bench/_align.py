"""Five-point alignment: the standard similarity transform onto the ArcFace template.

The template is the 112x112 five-point layout used by ArcFace-style models (eye
centres, nose tip, mouth corners); it is scaled to the model's input size. The
transform is the least-squares similarity (rotation, uniform scale, translation) from
the image's five landmarks to the template (``cv2.estimateAffinePartial2D``).
"""

from __future__ import annotations

import cv2
import numpy as np

ARCFACE_112 = np.array(
    [
        [38.2946, 51.6963],
        [73.5318, 51.5014],
        [56.0252, 71.7366],
        [41.5493, 92.3655],
        [70.7299, 92.2041],
    ],
    np.float32,
)


def align(image: np.ndarray, landmarks: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Warp ``image`` so its landmarks land on the template scaled to ``size`` (H, W)."""
    h, w = size
    dst = ARCFACE_112 * np.array([w / 112.0, h / 112.0], np.float32)
    m, _ = cv2.estimateAffinePartial2D(np.asarray(landmarks, np.float32), dst, method=cv2.LMEDS)
    if m is None:  # degenerate landmarks: fall back on a plain resize
        return cv2.resize(image, (w, h), interpolation=cv2.INTER_AREA)
    return cv2.warpAffine(image, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
