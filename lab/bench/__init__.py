"""1:1 verification benchmark: the exact, streaming scoring core and its metrics.

The protocol, matchers and reports are in ``lab.bench.run``, ``lab.bench.report`` and
``lab.bench.lab_run``; the Dask scale-out in ``lab.bench._cluster``."""

from lab.bench._metrics import (
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
from lab.bench._scoring import reduce_scores, score_pairs

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
