"""The Dask scale-out gives the same results as in-process scoring."""

from __future__ import annotations

import numpy as np
import pytest
from facelab.bench import auc, eer, fnmr_at_fmr, score_pairs

distributed = pytest.importorskip("distributed")


@pytest.fixture(scope="module")
def client():
    with (
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
        ) as cluster,
        distributed.Client(cluster) as c,
    ):
        yield c


@pytest.mark.parametrize("pilot", [0.0, 0.05])
def test_two_worker_cluster_equals_in_process(client, pilot: float) -> None:
    from facelab.bench._cluster import score_pairs_on_cluster

    rng = np.random.default_rng(5)
    # small integer templates: every dot product is exact, whatever the BLAS block
    # shapes and thread counts (which change the rounding of real templates)
    e = rng.integers(-3, 4, (300, 16)).astype(np.float32)
    gr = rng.integers(-1, 300, 1000)
    p = (e[np.maximum(gr, 0)] + rng.integers(-2, 3, (1000, 16))).astype(np.float32)
    local = score_pairs(e, p, gr, pilot=pilot)
    remote = score_pairs_on_cluster(client, e, p, gr, pilot=pilot, slice_probes=137)
    assert np.array_equal(local.imp_counts, remote.imp_counts)
    assert np.array_equal(local.gen_counts, remote.gen_counts)
    for a in (1e-2, 1e-3, 1e-4, 0.0123):
        assert fnmr_at_fmr(local, a) == fnmr_at_fmr(remote, a)
    assert eer(local) == eer(remote)
    assert auc(local, exact=True) == auc(remote, exact=True)


def test_an_unreachable_scheduler_is_a_one_line_error(tmp_path) -> None:
    import subprocess
    import sys

    p = subprocess.run(
        [
            sys.executable,
            "-m",
            "facelab.cli",
            "bench",
            "--dataset",
            str(tmp_path),
            "--model",
            "models/eigenface",
            "--scheduler",
            "tcp://127.0.0.1:9",
            "--connect-timeout",
            "1",
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert p.returncode == 2
    assert "cannot connect" in p.stderr
    assert "Traceback" not in p.stderr


def test_extraction_on_the_cluster_equals_in_process(client, tmp_path) -> None:
    """Records partitioned over two workers, each loading the model once."""
    from pathlib import Path

    from facelab.bench._cluster import extract_on_cluster
    from facelab.bench._matcher import Matcher
    from facelab.bench.run import run_benchmark, samples_from_dataset
    from facelab.synth import SynthConfig, write_dataset

    write_dataset(SynthConfig(identities=30, captures=2, seed=9), tmp_path / "ds", workers=1)
    samples = samples_from_dataset(tmp_path / "ds")
    model = Path(__file__).resolve().parents[1] / "models" / "eigenface"
    local = Matcher(model).extract([s.image for s in samples], [s.landmarks for s in samples])
    remote = extract_on_cluster(client, model, part=17)(
        [s.image for s in samples], [s.landmarks for s in samples], failures="mark"
    )
    assert remote.templates.shape == local.templates.shape and not remote.failed.any()
    assert np.allclose(remote.templates, local.templates, atol=1e-6)
    rep = run_benchmark(samples, Matcher(model), extract=extract_on_cluster(client, model))
    assert rep["protocol"]["genuine_pairs"] == 60
