"""Built-in trainer entry points (registered in the policy's [jobs] trainers).

``pca_head``: fine-tune a projection head for the job's model on the tenant's training
records: templates of every record, PCA of the centred templates, and the model with a
``MatMul`` head of the top ``params.dim`` components appended (unsupervised: it learns
the lab's template distribution, not its people). Writes ``model.onnx`` and
``model.json`` to the outbox, for the export gate.
"""

from __future__ import annotations

import json

import numpy as np


def pca_head(ctx) -> dict:
    import onnx
    from onnx import helper, numpy_helper

    from lab.bench._matcher import Matcher

    dim = int(ctx.params.get("dim", 64))
    recs = ctx.records()
    if len(recs) < dim:
        raise ValueError(f"{len(recs)} records are too few for a {dim}-d head")
    m = Matcher(ctx.model_dir)
    t = m.extract([r.image() for r in recs], [r.landmarks for r in recs]).templates
    centred = t - t.mean(axis=0)
    _, sv, vt = np.linalg.svd(centred, full_matrices=False)
    w = vt[:dim].T.astype(np.float32)
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
    explained = float((sv[:dim] ** 2).sum() / (sv**2).sum())
    return {"records": len(recs), "dim": dim, "variance_explained": round(explained, 4)}
