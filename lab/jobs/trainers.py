"""Built-in trainer entry points (registered in the policy's [jobs] trainers).

``pca_head``: fine-tune a projection head for the job's model on the tenant's training
records: templates of every record, PCA of the centred templates, and the model with a
``MatMul`` head onto the span of the top ``params.dim`` components appended
(unsupervised: it learns the lab's template distribution, not its people). Writes
``model.onnx`` and ``model.json`` to the outbox, for the export gate.

The head's columns are a random orthonormal basis of that span, not the principal axes
themselves: cosine scores of the head's outputs are the same under any rotation of the
basis, but with a few hundred subjects a principal axis can point at the most extreme
subject. Measured on the synthetic vault (60 and 200 identities, 73% of subjects in the
training split, 200 random splits each): an axis of the top 32 matched one training
subject better than any impostor pair of the vault in 29 and 18 splits, a column of the
rotated basis in 0 and 0; the export gate's template detector refuses such a head.

The rotation comes from an unseeded ``np.random.default_rng()`` on purpose, and it is not
a channel out: the export gate releases the head as an attested output
(``facelab.gates.exporting.attestation``), charging only what the tenant chose (the job's
spec, and which of its training jobs it exports, log2 of their number), and the tenant
neither writes this code nor chooses or sees the seed: the operating system's entropy
picks it inside the confined job. A seed in ``params`` would be the tenant's to choose,
and so would be charged (a seed searched for a rotation whose values spell a payload is
a channel of about as many bits as the search tried).
"""

from __future__ import annotations

import json

import numpy as np


def head_basis(
    templates: np.ndarray, dim: int, rng: np.random.Generator
) -> tuple[np.ndarray, float]:
    """A random orthonormal basis of the span of the top ``dim`` principal components.

    ``templates`` is (n, d); returns ``w`` of shape (d, dim), float32, with orthonormal
    columns spanning the top-``dim`` principal subspace of the centred templates, and
    the fraction of variance that subspace explains. The rotation is Haar-distributed
    (QR of a Gaussian matrix with the signs of R's diagonal, Mezzadri 2007), so that no
    column is a principal axis. Raises ValueError when ``dim`` is not in 1..min(n, d).
    """
    n, d = templates.shape
    if not 1 <= dim <= min(n, d):
        raise ValueError(f"a {dim}-d head needs 1 <= dim <= {min(n, d)}")
    centred = templates - templates.mean(axis=0)
    _, sv, vt = np.linalg.svd(centred, full_matrices=False)
    q, r = np.linalg.qr(rng.standard_normal((dim, dim)))
    q *= np.sign(np.diag(r))
    w = (vt[:dim].T @ q).astype(np.float32)
    total = float((sv**2).sum())
    return w, (float((sv[:dim] ** 2).sum()) / total if total > 0 else 0.0)


def pca_head(ctx) -> dict:
    import onnx
    from facelab.bench._matcher import Matcher
    from onnx import helper, numpy_helper

    dim = int(ctx.params.get("dim", 64))
    recs = ctx.records()
    if len(recs) < dim:
        raise ValueError(f"{len(recs)} records are too few for a {dim}-d head")
    m = Matcher(ctx.model_dir)
    t = m.extract([r.image() for r in recs], [r.landmarks for r in recs]).templates
    w, explained = head_basis(t, dim, np.random.default_rng())
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
    return {"records": len(recs), "dim": dim, "variance_explained": round(explained, 4)}
