"""Scale-out: the scoring blocks on a Dask distributed cluster, histograms merged.

Each task scores one slice of probe columns against every enrolment with the same
kernel as in-process scoring and returns its histogram, its genuine scores and the exact
scores of the wanted bins; the client sums the histograms and gathers the rest, then
asks for a second, equally distributed pass over any deciding bin still missing. The
result is the same ``ScoreSet`` as ``score_pairs`` computes in-process (tested with a
two-worker LocalCluster).

At the documented lab's scale (1e8 templates: 2e7 passports x 8e7 gate captures at
d=512, 1.6e15 comparisons) a cluster streams the probe slices from shared storage,
each worker keeps the enrolment templates (40 GB at d=512 float32, or shards of them:
the histograms of enrolment shards add up just the same), and the client holds only
2^16 counters and the deciding bins' values. See README, "Scale-out".
"""

from __future__ import annotations

import numpy as np
from facelab.bench._kernels import Binner
from facelab.bench._metrics import FMR_TARGETS, ScoreSet, needed_bins
from facelab.bench._scoring import _collect_pass, _pass, assemble, prepare, workers


def _score_slice(enrol, probes, gen_row, binning, wanted, capacity, block_elems):
    binner = Binner(binning, wanted, capacity, workers=workers())  # as in score_pairs
    genuine: list[np.ndarray] = []
    _pass(enrol, probes, gen_row, block_elems, binner, genuine)
    vals, ok = binner.collected()
    gen = np.concatenate(genuine) if genuine else np.empty(0, np.float32)
    return binner.counts(), gen, vals, ok, binner.moments()


class ClusterSource:
    """Reads impostor bins with a collection pass spread over the workers."""

    def __init__(self, client, e_fut, probes, gen_row, slices, binning, block_elems, counts):
        self.client, self.e_fut, self.probes, self.gen_row = client, e_fut, probes, gen_row
        self.slices, self.binning, self.block_elems, self.counts = (
            slices,
            binning,
            block_elems,
            counts,
        )

    def collect(self, bins, kinds=None):
        expected = int(self.counts[list(bins)].sum())
        futs = [
            self.client.submit(
                _collect_pass,
                self.e_fut,
                self.probes[a:b],
                self.gen_row[a:b],
                self.block_elems,
                self.binning,
                list(bins),
                expected,
                pure=False,
            )
            for a, b in self.slices
        ]
        return None, np.concatenate(self.client.gather(futs))


def score_pairs_on_cluster(
    client,
    enrol: np.ndarray,
    probes: np.ndarray,
    gen_row: np.ndarray,
    *,
    targets=FMR_TARGETS,
    thresholds=(),
    slice_probes: int = 4096,
    block_elems: int = 8 << 20,
    pilot: float = 0.02,
    seed: int = 0,
) -> ScoreSet:
    """``score_pairs`` with the slices of probe columns scored by Dask workers."""
    enrol, probes, gen_row, binning, wanted, cap = prepare(
        enrol, probes, gen_row, targets, pilot, seed
    )
    [e_fut] = client.scatter([enrol], broadcast=True)
    slices = [(j, min(j + slice_probes, len(probes))) for j in range(0, len(probes), slice_probes)]
    share = cap * 2 // max(len(slices), 1) + 4096  # each slice's share of the windows
    futs = [
        client.submit(
            _score_slice,
            e_fut,
            probes[a:b],
            gen_row[a:b],
            binning,
            wanted,
            share,
            block_elems,
            pure=False,
        )
        for a, b in slices
    ]
    parts = client.gather(futs)
    counts = np.sum([p[0] for p in parts], axis=0)
    sums = (sum(p[4][0] for p in parts), sum(p[4][1] for p in parts))
    source = ClusterSource(client, e_fut, probes, gen_row, slices, binning, block_elems, counts)
    ss = assemble(
        binning,
        np.concatenate([p[1] for p in parts]),
        counts,
        sums,
        source,
        collected=np.concatenate([p[2] for p in parts]),  # overflowed bins: not adopted
        wanted=wanted,
    )
    ss.ensure(needed_bins(ss, targets, thresholds))
    return ss


# -- extraction on the cluster ---------------------------------------------------------
_MATCHERS: dict = {}  # per worker process: one loaded model per (dir, device)


def _extract_part(model_dir: str, device: str, images, landmarks, failures: str):
    from facelab.bench._matcher import Matcher

    m = _MATCHERS.get((model_dir, device))
    if m is None:
        m = _MATCHERS[(model_dir, device)] = Matcher(model_dir, device)
    ext = m.extract(images, landmarks, failures=failures)
    return ext.templates, ext.failed, ext.seconds_per_image * len(images), ext.template_bytes


def extract_on_cluster(client, model_dir, device: str = "cpu", part: int = 256):
    """An ``extract(images, landmarks, progress=, failures=)`` that runs the ONNX model
    on the Dask workers, ``part`` images a task (each worker loads the model once from
    ``model_dir``, which must be readable there: shared storage). Templates come back in
    order; ``seconds_per_image`` is the workers' time per image."""
    from facelab.bench._matcher import Extraction

    def extract(images, landmarks, *, progress=None, failures="raise", batch=64):
        n = len(images)
        cuts = [(a, min(a + part, n)) for a in range(0, n, part)]
        futs = [
            client.submit(
                _extract_part,
                str(model_dir),
                device,
                list(images[a:b]),
                list(landmarks[a:b]),
                failures,
                pure=False,
            )
            for a, b in cuts
        ]
        out = client.gather(futs)
        if progress:
            progress(n)
        if not out:
            return Extraction(np.empty((0, 0), np.float32), 0.0, 0, np.zeros(0, bool))
        return Extraction(
            np.concatenate([o[0] for o in out]),
            sum(o[2] for o in out) / max(n, 1),
            out[0][3],
            np.concatenate([o[1] for o in out]),
        )

    return extract
