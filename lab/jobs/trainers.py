"""Built-in trainer entry points (registered in the policy's [jobs] trainers).

``pca_head``: fine-tune a projection head for the job's model on the tenant's training
records: templates of every record, the top ``params.dim`` eigenvectors of their
subjects' second-moment matrix made differentially private per subject
(``facelab.jobs.privacy``: rows scaled to unit norm, each subject weighing one, Gaussian
noise calibrated to the lab's ``[jobs] trainer_privacy`` epsilon and delta), and the
model with a ``MatMul`` head onto their span appended (unsupervised: it learns the lab's
template distribution, not its people). Writes ``model.onnx`` and ``model.json`` to the
outbox, for the export gate.

Why the noise (issue 20): the tenant chooses the model the trainer runs. Without it, a
model that outputs one subject's face scrambled, beside a few decoy directions of high
variance, makes the top subspace hold that face, and the head leaves attested (a fresh
red team decoded a face at correlation 0.81 from such a head).

Measured with ``python bench/trainer_privacy.py`` (200 synthetic identities: 146
training subjects, 54 test subjects; the CNN; a 32-d head; means of 10 noise draws):
- the attack, simulated over the training subjects: the decoded face correlates 0.69
  with its subject without noise, 0.11 at epsilon 8 (the best other subject 0.27; the
  target first in 0 of 20 targets);
- the cost, FNMR at FMR 1e-3 on the test subjects: no noise 0.049, epsilon 16 0.048,
  epsilon 8 0.052, epsilon 4 0.068, epsilon 1 0.085; a random 32-d projection 0.102.
  The noise is fixed while the subjects' signal grows with their number, so the cost
  falls as the vault grows.

The head's columns are a random orthonormal basis of that span, not the eigenvectors
themselves: cosine scores of the head's outputs are the same under any rotation of the
basis, but with a few hundred subjects a principal axis can point at the most extreme
subject. Measured on the synthetic vault before the noise was added (60 and 200
identities, 73% of subjects in the training split, 200 random splits each): an axis of
the top 32 matched one training subject better than any impostor pair of the vault in 29
and 18 splits, a column of the rotated basis in 0 and 0.

The noise and the rotation come from an unseeded ``np.random.default_rng()`` on purpose:
the tenant neither writes this code nor chooses or sees the seed (the operating system's
entropy picks it inside the confined job). A seed in ``params`` would be the tenant's
to choose, and would void the privacy guarantee.
"""

from __future__ import annotations

import json

import numpy as np
from facelab.jobs.privacy import private_second_moment


def head_basis(
    templates: np.ndarray,
    subjects: np.ndarray,
    dim: int,
    epsilon: float,
    delta: float,
    rng: np.random.Generator,
) -> tuple[np.ndarray, float]:
    """A random orthonormal basis of a differentially private top-``dim`` subspace.

    ``templates`` is (n, d), ``subjects`` (n,) the subject of each row. The subspace is
    spanned by the top ``dim`` eigenvectors of
    :func:`facelab.jobs.privacy.private_second_moment` ((epsilon, delta)-DP per
    subject; uncentred: a private mean would spend budget for nothing a cosine head
    needs). Returns ``w`` of shape (d, dim), float32, with orthonormal columns, and the
    fraction of the noisy matrix's positive eigenvalue mass the subspace holds
    (post-processing of the private matrix, so as private). The rotation is
    Haar-distributed (QR of a Gaussian matrix with the signs of R's diagonal, Mezzadri
    2007), so that no column is an eigenvector. Raises ValueError when ``dim`` is not in
    1..d or the number of subjects is below ``dim``, or on a bad epsilon or delta.
    """
    d = templates.shape[1]
    n_subjects = len(np.unique(subjects))
    if not 1 <= dim <= min(n_subjects, d):
        raise ValueError(f"a {dim}-d head needs 1 <= dim <= {min(n_subjects, d)}")
    moment, _ = private_second_moment(templates, subjects, epsilon, delta, rng)
    values, vectors = np.linalg.eigh(moment)
    top = vectors[:, ::-1][:, :dim]
    q, r = np.linalg.qr(rng.standard_normal((dim, dim)))
    q *= np.sign(np.diag(r))
    w = (top @ q).astype(np.float32)
    mass = np.clip(values[::-1], 0.0, None)
    total = float(mass.sum())
    return w, (float(mass[:dim].sum()) / total if total > 0 else 0.0)


def pca_head(ctx) -> dict:
    import onnx
    from facelab.bench._matcher import Matcher
    from onnx import helper, numpy_helper

    dim = int(ctx.params.get("dim", 64))
    privacy = ctx.privacy
    if not privacy:
        raise ValueError(
            "pca_head runs only under a privacy budget: the lab's policy sets none "
            "([jobs] trainer_privacy.pca_head = { epsilon = ..., delta = ... })"
        )
    epsilon, delta = float(privacy["epsilon"]), float(privacy["delta"])
    recs = ctx.records()
    n_subjects = len({r.subject for r in recs})
    if n_subjects < dim:
        raise ValueError(f"{n_subjects} subjects are too few for a {dim}-d head")
    m = Matcher(ctx.model_dir)
    t = m.extract([r.image() for r in recs], [r.landmarks for r in recs]).templates
    subjects = np.array([r.subject for r in recs])
    # only what the tenant knows or the lab chose goes back: every job's summary reaches
    # the tenant unexported, so a value computed from the data (the variance the head
    # keeps, say) would compose across jobs outside the privacy budget
    w, _ = head_basis(t, subjects, dim, epsilon, delta, np.random.default_rng())
    model = onnx.load(ctx.model_dir / "model.onnx")
    out = model.graph.output[0].name
    model.graph.initializer.append(numpy_helper.from_array(w, "head.weight"))
    model.graph.node.append(
        helper.make_node("MatMul", [out, "head.weight"], ["head_out"], name="head")
    )
    del model.graph.output[:]
    model.graph.output.append(
        helper.make_tensor_value_info("head_out", onnx.TensorProto.FLOAT, ["N", dim])
    )
    onnx.save(model, ctx.outbox / "model.onnx")
    spec = json.loads((ctx.model_dir / "model.json").read_text())
    spec["name"] = f"{spec['name']}-pca{dim}"
    spec["output"]["dim"] = dim
    (ctx.outbox / "model.json").write_text(json.dumps(spec, indent=2) + "\n")
    return {
        "records": len(recs),
        "dim": dim,
        "privacy": {"unit": "subject", "epsilon": epsilon, "delta": delta},
    }
