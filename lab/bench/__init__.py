"""1:1 verification benchmark: the exact, streaming scoring core and its metrics.

The protocol, matchers and reports are in ``facelab.bench.run``, ``facelab.bench.report`` and
``facelab.bench.lab_run``; the Dask scale-out in ``facelab.bench._cluster``."""

from facelab.bench._metrics import (
    AUC,
    EER,
    FMR_TARGETS,
    OperatingPoint,
    Rates,
    ScoreSet,
    auc,
    d_prime,
    det_curve,
    eer,
    fnmr_at_fmr,
    jsonable,
    rates_at,
    rocch_eer,
)
from facelab.bench._scoring import reduce_scores, score_pairs

__all__ = [
    "AUC",
    "EER",
    "FMR_TARGETS",
    "OperatingPoint",
    "Rates",
    "ScoreSet",
    "auc",
    "d_prime",
    "det_curve",
    "eer",
    "fnmr_at_fmr",
    "jsonable",
    "rates_at",
    "reduce_scores",
    "rocch_eer",
    "score_pairs",
]
