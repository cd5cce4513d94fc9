"""An ONNX face matcher described by its model.json, run with onnxruntime.

model.json (validated by the import gate's schema) says how to feed the model: input
size, layout (NCHW or NHWC), channels (RGB, BGR or GRAY) and normalisation
(x - mean) / std, and the template dimension. An ArcFace-style model is
{"size": [112, 112], "layout": "NCHW", "channels": "RGB", "mean": 127.5, "std": 128.0},
output dim 512. Templates are L2-normalised; NaN or infinite outputs, or an output
that contradicts model.json, are errors, never numbers.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from facelab import labfs
from facelab.bench._align import align
from facelab.errors import BadInputError
from facelab.gates.importing.checks.model_json import validate


@dataclass
class Extraction:
    templates: np.ndarray  # (n, dim) float32, unit norm (NaN rows where failed)
    seconds_per_image: float
    template_bytes: int
    failed: np.ndarray | None = None  # (n,) bool: no template (failures="mark")


class Matcher:
    def __init__(
        self,
        model_dir: Path | str,
        device: str = "cpu",
        warn: Callable[[str], None] | None = None,
        *,
        spec: dict | None = None,
        onnx_path: Path | str | None = None,
    ):
        """``model_dir`` holds model.json and model.onnx; ``spec`` and ``onnx_path``
        give them separately (the export gate runs an artifact with its sidecar)."""
        import onnxruntime as ort

        self.dir = Path(model_dir)
        onnx_file = Path(onnx_path) if onnx_path is not None else self.dir / "model.onnx"
        self.onnx_file = onnx_file
        try:
            self.spec = (
                spec
                if spec is not None
                else json.loads(labfs.read_text(self.dir / "model.json", what="a model spec"))
            )
        except BadInputError:
            raise
        except (OSError, ValueError) as e:
            raise BadInputError(f"{self.dir / 'model.json'}: unreadable ({e})") from e
        problems = validate(self.spec)
        if problems:
            raise BadInputError(f"{self.dir / 'model.json'}: {problems[0]}")
        providers = ["CPUExecutionProvider"]
        if device == "cuda":
            if "CUDAExecutionProvider" in ort.get_available_providers():
                providers.insert(0, "CUDAExecutionProvider")
            elif warn is not None:
                warn("CUDA requested but onnxruntime-gpu or a GPU is missing: using the CPU")
        elif device != "cpu":
            raise BadInputError(f"--device {device!r}: use cpu or cuda")
        try:
            self.session = ort.InferenceSession(str(onnx_file), providers=providers)
        except Exception as e:  # onnxruntime raises its own exception types
            raise BadInputError(f"{onnx_file}: cannot load ({e})") from e
        self.input = self.session.get_inputs()[0].name
        inp = self.spec["input"]
        self.size = (int(inp["size"][0]), int(inp["size"][1]))
        self.dim = int(self.spec["output"]["dim"])
        c = 1 if inp["channels"] == "GRAY" else 3
        self.mean = np.asarray(inp["mean"], np.float32).reshape(-1)[:c]
        self.std = np.asarray(inp["std"], np.float32).reshape(-1)[:c]

    def preprocess(self, images_rgb: Sequence[np.ndarray]) -> np.ndarray:
        inp = self.spec["input"]
        batch = []
        for im in images_rgb:
            if inp["channels"] == "BGR":
                im = im[..., ::-1]
            elif inp["channels"] == "GRAY":
                im = cv2.cvtColor(im, cv2.COLOR_RGB2GRAY)[..., None]
            batch.append(im)
        x = (np.stack(batch).astype(np.float32) - self.mean) / self.std
        return np.ascontiguousarray(x.transpose(0, 3, 1, 2) if inp["layout"] == "NCHW" else x)

    def extract(
        self,
        images_rgb: Sequence[np.ndarray],
        landmarks: Sequence[np.ndarray],
        *,
        batch: int = 64,
        progress: Callable[[int], None] | None = None,
        failures: str = "raise",
    ) -> Extraction:
        """Templates of the images. A NaN, infinite or all-zero output is an error
        (``failures="raise"``) or a failure to extract, marked in ``Extraction.failed``
        with a NaN template (``failures="mark"``, ISO/IEC 19795-1 FTE/FTA).

        Every call of the model has exactly ``batch`` rows (the last batch is padded with
        copies of its last image, whose outputs are dropped): the lab runs a tenant's
        model only at the batch size the import gate's smoke test ran it at
        (``gates.importing.checks.smoke.JOB_BATCH``), never at a size nobody tried."""
        out = np.empty((len(images_rgb), self.dim), np.float32)
        failed = np.zeros(len(images_rgb), bool)
        t0 = time.perf_counter()
        for i in range(0, len(images_rgb), batch):
            aligned = [
                align(im, lm, self.size)
                for im, lm in zip(images_rgb[i : i + batch], landmarks[i : i + batch], strict=True)
            ]
            x = self.preprocess(aligned)
            n = len(x)
            if n < batch:  # the model runs only at the batch size its smoke test ran
                x = np.concatenate([x, np.repeat(x[-1:], batch - n, axis=0)])
            y = self.session.run(None, {self.input: x})[0]
            if y.ndim != 2 or y.shape[0] != batch or y.shape[1] != self.dim:
                raise BadInputError(
                    f"{self.onnx_file}: output shape {y.shape} contradicts model.json "
                    f"(dim {self.dim}) or the batch of {batch}"
                )
            y = y[:n]
            if y.ndim != 2 or y.shape[1] != self.dim:
                raise BadInputError(
                    f"{self.onnx_file}: output shape {y.shape} "
                    f"contradicts model.json (dim {self.dim})"
                )
            bad = ~np.isfinite(y).all(axis=1)
            if bad.any() and failures == "raise":
                raise BadInputError(f"{self.onnx_file}: NaN or infinite template")
            y = np.where(bad[:, None], 0, y)
            norms = np.linalg.norm(y, axis=1, keepdims=True)
            zero = (norms[:, 0] == 0) & ~bad
            if zero.any() and failures == "raise":
                raise BadInputError(f"{self.onnx_file}: an all-zero template")
            bad |= zero
            with np.errstate(invalid="ignore", divide="ignore"):
                out[i : i + len(y)] = np.where(bad[:, None], np.nan, y / norms)
            failed[i : i + len(y)] = bad
            if progress:
                progress(len(y))
        secs = (time.perf_counter() - t0) / max(1, len(images_rgb))
        return Extraction(out, secs, self.dim * 4, failed)
