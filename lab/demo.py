"""`facelab demo`: the lab story end to end on small synthetic data.

Today's steps: create a lab (keys, policy, vault, audit log); give a tenant a signing
key and two import officers approval keys; generate synthetic datasets for two tenants,
write a contact sheet, ingest both into the vault and delete the plaintext after a
verified ingest; import a signed and approved model, and see a package with a malicious
pickle refused; read one tenant's records back by split; destroy the other tenant with a
signed certificate; run the 1:1 benchmark inside the lab; export its report through the
export gate (released, signed manifest) and see an artifact that hides a training face
refused; verify the audit log. Later components add their steps here (purpose limits,
the job runner).

Files: ``LAB`` is a real lab (``facelab audit verify --lab LAB`` works on it);
``LAB/demo/contact_sheet.png`` shows faces for a person to look at;
``LAB/certificates/`` holds the destruction certificate.
"""

from __future__ import annotations

import json
import secrets
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from lab.audit import Event, VerifyReport, verify_log
from lab.bench.lab_run import bench_in_lab
from lab.gates.exporting import export
from lab.gates.importing.ops import import_model
from lab.labdir import audit_writer, init_and_record, load_public_key
from lab.synth import SynthConfig, SynthSummary, contact_sheet, dataset_digest, write_dataset


@dataclass(frozen=True)
class DemoResult:
    root: Path
    passphrase_generated: bool
    dataset: SynthSummary
    contact_sheet: Path
    ingested: dict[str, int]
    splits: dict[str, int]
    imported: str
    refused: list[str]
    bench_report: Path
    exports: dict[str, str]
    certificate: Path
    audit: VerifyReport
    controls: list[tuple[str, str]]


def run_demo(
    root: Path | str | None = None,
    *,
    passphrase: bytes | None = None,
    actor: str = "demo-operator",
    identities: int = 200,
    captures: int = 3,
    seed: int = 2019,
    progress: Callable[[int], None] | None = None,
) -> DemoResult:
    """Run the demo with the lab at ``root`` (a new temporary directory if None)."""
    from lab.labdir import unlock
    from lab.vault import ops

    base = Path(root) if root is not None else Path(tempfile.mkdtemp(prefix="facelab-demo-"))
    generated = passphrase is None
    pw = passphrase if passphrase is not None else secrets.token_urlsafe(16).encode()
    lab = init_and_record(base, pw, actor)
    work = base / "demo"
    work.mkdir()
    lab = _import_keys(lab, work / "keys")
    root_key = unlock(lab, pw)
    tenants = {"acme": SynthConfig(identities=identities, captures=captures, seed=seed),
               "borealis": SynthConfig(identities=max(1, identities // 2),
                                       captures=captures, seed=seed + 1)}
    ingested: dict[str, int] = {}
    summary = None
    sheet = work / "contact_sheet.png"
    with audit_writer(lab, root_key) as log:
        for tenant, cfg in tenants.items():
            plain = work / f"plaintext-{tenant}"
            s = write_dataset(cfg, plain, progress=progress if tenant == "acme" else None)
            log.record(Event(
                action="dataset.synth", actor=actor, role="operator", tenant=tenant,
                object=dataset_digest(plain),
                details={"identities": cfg.identities, "captures": cfg.captures,
                         "seed": cfg.seed, "difficulty": cfg.difficulty, "images": s.images}))
            if tenant == "acme":
                summary = s
                contact_sheet(plain, sheet)
            res = ops.ingest(lab, root_key, tenant, plain, actor, log, delete_source=True)
            ingested[tenant] = res.images
        good, bad = _packages(work, work / "keys")
        imported = import_model(lab, "acme", good, "acme-engineer", log)
        refused = import_model(lab, "acme", bad, "acme-engineer", log)
        splits: dict[str, int] = {}
        for rec in ops.read(lab, root_key, "acme", actor, log, purpose="demo: count splits"):
            splits[rec.split] = splits.get(rec.split, 0) + 1
        bench_report, bench_page = bench_in_lab(lab, root_key, "acme", imported.model,
                                                "acme-engineer", log, split="test")
        released = export(lab, root_key, "acme", [bench_page.parent], "acme-engineer", log)
        leak = _leaky_artifact(lab, root_key, work / "outbox-leaky", log)
        refused_export = export(lab, root_key, "acme", [leak], "acme-engineer", log)
        cert = ops.destroy(lab, root_key, "borealis", actor, log)
    report = verify_log(lab.paths.audit, lab.origin, load_public_key(lab))
    assert summary is not None
    controls = [
        ("lab created: keys sealed under the operator secret", "ok"),
        ("synthetic identities generated (no real person)", f"{summary.identities} + "
         f"{tenants['borealis'].identities} identities"),
        ("datasets encrypted, per-tenant keys, plaintext deleted",
         ", ".join(f"{t} {n} images" for t, n in ingested.items())),
        ("model signed by the tenant, approved by 2 officers, imported",
         imported.model if imported.accepted else "REFUSED (unexpected)"),
        ("package with a pickle calling os.system refused",
         "refused: " + ", ".join(c.name for c in refused.failed())
         if not refused.accepted else "ACCEPTED (unexpected)"),
        ("1:1 benchmark in the lab (test split), report to the outbox",
         f"EER {bench_report['eer']['value']:.3f}, FNMR@FMR1e-2 "
         f"{bench_report['operating_points'][0]['fnmr']:.3f}"),
        ("export gate: benchmark report released, signed manifest",
         released.decision + (f" ({released.release_dir.name})" if released.release_dir
                              else "")),
        ("export gate: artifact hiding a training face refused",
         f"{refused_export.decision}: " + ", ".join(sorted(
             {f.detector for f in refused_export.report.blocking()}))),
        ("records read back by split, pseudonymous ids only",
         ", ".join(f"{k} {v}" for k, v in sorted(splits.items()))),
        ("tenant borealis crypto-shredded, certificate signed", cert.name),
        ("audit log verified", "intact" if report.intact else "TAMPERED"),
    ]
    return DemoResult(base, generated, summary, sheet, ingested, splits, imported.model,
                      [c.name for c in refused.failed()], bench_page,
                      {"report": released.decision, "leaky": refused_export.decision},
                      cert, report, controls)


def _leaky_artifact(lab, root_key, out: Path, log) -> Path:
    """What an insider might try: "weights" that are a training face, normalised."""
    import numpy as np

    from lab.vault import ops

    rec = next(ops.read(lab, root_key, "acme", "acme-engineer", log, split="train",
                        purpose="training (demo insider)"))
    out.mkdir(parents=True, exist_ok=True)
    w = (rec.image().astype(np.float32) - 127.5) / 128.0
    np.save(out / "adapter_weights.npy", w.transpose(2, 0, 1))
    return out


def _import_keys(lab, keys_dir: Path):
    """A tenant signing key and two import officers, written into the lab's policy."""
    from lab.gates.importing.keys import write_keypair
    from lab.labdir import open_lab

    keys_dir.mkdir()
    _, tpub, _ = write_keypair("tenant", keys_dir / "acme")
    officers = {}
    for name in ("kim", "lee"):
        _, pub, _ = write_keypair("officer", keys_dir / name)
        officers[name] = pub.read_text().strip()
    text = lab.paths.policy.read_text()
    text = text.replace("officers = {}", "officers = { " + ", ".join(
        f'{n} = "{k}"' for n, k in officers.items()) + " }")
    text = text.replace("tenant_keys = {}",
                        f"tenant_keys = {{ acme = {json.dumps(tpub.read_text())} }}")
    lab.paths.policy.write_text(text)
    return open_lab(lab.paths.root)


def _tiny_model(d: Path, dim: int = 32) -> None:
    """A stand-in embedding (pooled colour -> random projection): the malicious package's
    model, and the good one when models/ is not there (an installed, not checked-out,
    facelab). Enough to exercise the gate, useless as a matcher."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    w = numpy_helper.from_array(
        np.random.default_rng(0).standard_normal((3, dim)).astype(np.float32), "W")
    g = helper.make_graph(
        [helper.make_node("GlobalAveragePool", ["X"], ["p"]),
         helper.make_node("Flatten", ["p"], ["f"]), helper.make_node("MatMul", ["f", "W"], ["Y"])],
        "demo", [helper.make_tensor_value_info("X", TensorProto.FLOAT, ["N", 3, 112, 112])],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, ["N", dim])], [w])
    d.mkdir(parents=True)
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)],
                                ir_version=8), d / "model.onnx")
    (d / "model.json").write_text(json.dumps({
        "name": "demo-projection", "version": "0.1", "input": {
            "size": [112, 112], "layout": "NCHW", "channels": "RGB", "mean": 127.5,
            "std": 128.0}, "output": {"dim": dim}, "similarity": "cosine"}))


class _Payload:
    """What an attacker hides in a 'weights' file: unpickling it would run a command."""

    def __reduce__(self):
        import os

        return (os.system, ("echo exfiltrate",))


MODELS = Path(__file__).resolve().parents[1] / "models"


def _packages(work: Path, keys: Path) -> tuple[Path, Path]:
    import pickle
    import shutil

    from lab.gates.importing import approve, sign_package
    from lab.gates.importing.keys import load_officer_key

    good, bad = work / "package-good", work / "package-malicious"
    if (MODELS / "cnn" / "model.onnx").exists():  # a source checkout: the CNN baseline
        good.mkdir()
        for f in ("model.onnx", "model.json", "MODEL_CARD.md"):
            shutil.copyfile(MODELS / "cnn" / f, good / f)
    else:
        _tiny_model(good)
    _tiny_model(bad)
    (bad / "weights.pt").write_bytes(pickle.dumps(_Payload()))
    for pkg in (good, bad):
        sign_package(pkg, keys / "acme.key")
        for officer in ("kim", "lee"):
            approve(pkg, officer, load_officer_key(keys / f"{officer}.key"))
    return good, bad
