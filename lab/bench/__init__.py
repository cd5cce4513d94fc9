"""1:1 verification benchmark: the exact, streaming scoring core (more to come: matchers,
reports, demographic differentials; see issue 5)."""

from lab.bench._metrics import (
    FMR_TARGETS,
    OperatingPoint,
    ScoreSet,
    auc,
    d_prime,
    det_curve,
    eer,
    fnmr_at_fmr,
)
from lab.bench._scoring import reduce_scores, score_pairs

__all__ = ["FMR_TARGETS", "OperatingPoint", "ScoreSet", "auc", "d_prime", "det_curve",
           "eer", "fnmr_at_fmr", "reduce_scores", "score_pairs"]
