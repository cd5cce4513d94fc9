"""`facelab demo`: the lab story end to end on small synthetic data.

Today's steps: create a lab (keys, policy, vault, audit log); give a tenant a signing
key and two import officers approval keys; generate synthetic datasets for two tenants,
write a contact sheet, ingest both into the vault and delete the plaintext after a
verified ingest; import a signed and approved model, and see a package with a malicious
pickle refused; read one tenant's records back by split; destroy the other tenant with a
signed certificate; run the 1:1 benchmark inside the lab; export its report through the
export gate (released, signed manifest) and see an artifact that hides a training face
refused; verify the audit log; write a subject access report for one synthetic person
and an evidence pack, verified with the lab's public key only. Later components add
their steps here.

Files: ``LAB`` is a real lab (``facelab audit verify --lab LAB`` works on it);
``LAB/demo/contact_sheet.png`` shows faces for a person to look at;
``LAB/certificates/`` holds the destruction certificate; ``LAB/demo/evidence/`` the
evidence pack; ``LAB/demo/subject-access/`` one person's subject access report.
"""

from __future__ import annotations

import json
import secrets
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path

from facelab.audit import Event, VerifyReport, verify_log
from facelab.gates.exporting import export
from facelab.gates.importing.ops import import_model
from facelab.labdir import audit_writer, init_and_record, load_public_key
from facelab.synth import SynthConfig, SynthSummary, contact_sheet, dataset_digest, write_dataset


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
    html: Path
    register: Path
    evidence: Path | None = None  # the evidence pack (issue 18)
    subject_report: Path | None = None  # one synthetic person's subject access report


def _rate(v) -> str:
    """A rate of the benchmark, or why there is none (None: not estimable)."""
    return "not estimable" if v is None else f"{v:.3f}"


def run_demo(
    root: Path | str | None = None,
    *,
    passphrase: bytes | None = None,
    actor: str = "demo-operator",
    identities: int = 200,
    captures: int = 3,
    seed: int = 2019,
    progress: Callable[[int], None] | None = None,
    today: date | None = None,
    say: Callable[[str], None] | None = None,
) -> DemoResult:
    """Run the demo with the lab at ``root`` (a new temporary directory if None).

    ``say`` is called with one line per step of the story as the step begins.
    """
    step = say or (lambda _: None)
    from facelab.confine import missing_layers
    from facelab.jobs import JobRefused, run_job
    from facelab.labdir import unlock
    from facelab.vault import ops, retention

    today = today or datetime.now(UTC).date()
    base = Path(root) if root is not None else Path(tempfile.mkdtemp(prefix="facelab-demo-"))
    generated = passphrase is None
    pw = passphrase if passphrase is not None else secrets.token_urlsafe(16).encode()
    step(f"creating the lab in {base} (keys sealed under the operator secret)")
    lab = init_and_record(base, pw, actor)
    work = base / "demo"
    work.mkdir()
    isolation = "weak" if missing_layers() else "strict"
    step("keys of a tenant and two import officers, registered with `facelab policy`")
    lab = _import_keys(lab, work / "keys", today, isolation, pw, actor)
    root_key = unlock(lab, pw)
    tenants = {
        "acme": SynthConfig(identities=identities, captures=captures, seed=seed),
        "borealis": SynthConfig(
            identities=max(1, identities // 2), captures=captures, seed=seed + 1
        ),
    }
    ingested: dict[str, int] = {}
    summary = None
    person = ""
    sheet = work / "contact_sheet.png"
    from facelab.audit import witness

    wdir = Path(tempfile.mkdtemp(prefix="facelab-demo-witness-")) / "witness"
    wkey = witness.init(wdir, "demo-witness")  # a second party's key, outside the lab
    with audit_writer(lab, root_key) as log:
        log.record(
            Event(
                "audit.witness_add",
                actor,
                object="vkey:" + wkey.split("+")[1],
                details={"name": "demo-witness", "vkey": wkey},
            )
        )
        for tenant, cfg in tenants.items():
            plain = work / f"plaintext-{tenant}"
            step(f"synthesising {cfg.identities} identities for {tenant}, then ingesting them")
            s = write_dataset(cfg, plain, progress=progress if tenant == "acme" else None)
            log.record(
                Event(
                    action="dataset.synth",
                    actor=actor,
                    role="operator",
                    tenant=tenant,
                    object=dataset_digest(plain),
                    details={
                        "identities": cfg.identities,
                        "captures": cfg.captures,
                        "seed": cfg.seed,
                        "difficulty": cfg.difficulty,
                        "images": s.images,
                    },
                )
            )
            if tenant == "acme":
                summary = s
                contact_sheet(plain, sheet)
                person = _first_person(plain)  # who will ask what the lab holds about them
            res = ops.ingest(lab, root_key, tenant, plain, actor, log, delete_source=True)
            ingested[tenant] = res.images
        step("signing and approving two model packages; the import gate checks both")
        good, bad = _packages(work, work / "keys")
        imported = import_model(lab, "acme", good, "acme-engineer", log)
        refused = import_model(lab, "acme", bad, "acme-engineer", log)
        splits: dict[str, int] = {}
        for rec in ops.read(lab, root_key, "acme", actor, log, purpose="demo: count splits"):
            splits[rec.split] = splits.get(rec.split, 0) + 1
        step("a 1:1 benchmark job and a training job, confined")
        bench = run_job(
            lab,
            root_key,
            "acme",
            {"kind": "bench", "purpose": "verify_1to1", "model": imported.model, "split": "test"},
            "acme-engineer",
            log,
        )
        train = run_job(
            lab,
            root_key,
            "acme",
            {
                "kind": "train",
                "purpose": "train",
                "model": imported.model,
                "trainer": "pca_head",
                "split": "train",
                "params": {"dim": 32},
            },
            "acme-engineer",
            log,
        )
        step("the export gate on the trained head and the report, then on a leaky artifact")
        released = export(lab, root_key, "acme", [train.outbox, bench.outbox], "acme-engineer", log)
        leak = _leaky_artifact(
            lab, root_key, lab.paths.root / "outbox" / "acme" / "insider-adapter", log
        )
        refused_export = export(lab, root_key, "acme", [leak], "acme-engineer", log)
        step("a 1:N search job, which the purpose policy refuses")
        try:
            run_job(
                lab,
                root_key,
                "acme",
                {
                    "kind": "bench",
                    "purpose": "verify_1to1",
                    "model": imported.model,
                    "params": {"mode": "gallery_search", "top_k": 10},
                },
                "acme-engineer",
                log,
            )
            one_to_n = "ALLOWED (unexpected)"
        except JobRefused as e:
            one_to_n = "refused: " + str(e).removeprefix("job refused: ").split(",")[0]
        step("retention: destroying the tenant past its due date")
        due = retention.run(lab, root_key, actor, log, today=today)
        rows = retention.register(lab, root_key)
    cert = lab.paths.root / "certificates" / due[0]["certificate"] if due else Path()
    md, _ = retention.write_register(lab, rows, work)
    step("the register of processors; a witness cosigns; the whole log is verified")
    cosigned = witness.cosign(wdir, lab)  # consistency from its last view, then cosign
    report = verify_log(lab.paths.audit, lab.origin, load_public_key(lab), head_dir=lab.paths.keys)
    assert summary is not None
    sar, pack = _answerable(lab, root_key, actor, work, person)
    blocking = refused_export.report.blocking()
    controls = [
        ("lab created: keys sealed under the operator secret", "ok"),
        (
            "synthetic identities generated (no real person)",
            f"{summary.identities} + {tenants['borealis'].identities} identities",
        ),
        (
            "datasets encrypted, per-tenant keys, plaintext deleted",
            ", ".join(f"{t} {n} images" for t, n in ingested.items()),
        ),
        (
            "model signed by the tenant, approved by 2 officers, imported",
            imported.model if imported.accepted else "REFUSED (unexpected)",
        ),
        (
            "package with a pickle calling os.system refused",
            "refused: " + ", ".join(c.name for c in refused.failed())
            if not refused.accepted
            else "ACCEPTED (unexpected)",
        ),
        (
            "jobs confined (zero client): uid, namespaces, seccomp, Landlock, limits",
            "; ".join(layer.split(":")[0] for layer in bench.confinement)
            if isolation == "strict"
            else "WEAK: missing " + "; ".join(bench.confinement),
        ),
        (
            "1:1 benchmark job (test split), report to the outbox",
            f"{bench.status}: EER {_rate(bench.summary.get('eer'))}, FNMR@FMR1e-3 "
            f"{_rate(bench.summary.get('fnmr_at_fmr_1e-3'))}",
        ),
        (
            "training job: a PCA head fitted on the train split, private per subject",
            f"{train.status}: {train.summary.get('records', 0)} records, epsilon "
            f"{train.summary.get('privacy', {}).get('epsilon', '?')}",
        ),
        (
            "export gate: trained head and benchmark report released, signed manifest",
            released.decision
            + (f" ({len(released.report.artifacts)} files)" if released.release_dir else ""),
        ),
        (
            "export gate: artifact hiding a training face refused",
            f"{refused_export.decision}: " + ", ".join(sorted({f.detector for f in blocking})),
        ),
        ("1:N search job (gallery, top-k) refused by the purpose policy", one_to_n),
        (
            "records read back by split, pseudonymous ids only",
            ", ".join(f"{k} {v}" for k, v in sorted(splits.items())),
        ),
        (
            "retention: borealis past its due date, crypto-shredded, certificate signed",
            cert.name or "NOT DUE (unexpected)",
        ),
        ("public register of processors written (Markdown, JSON)", md.name),
        ("audit log verified", "intact" if report.intact else "TAMPERED"),
        ("audit log cosigned by a witness (its own key)", f"size {cosigned.new_size}"),
        ("subject access report for one synthetic person (HTML, JSON)", sar[0]),
        ("evidence pack verified offline with the lab's public key only", pack[0]),
    ]
    html = _html_report(work / "report.html", controls, bench.outbox, refused_export, md)
    return DemoResult(
        base,
        generated,
        summary,
        sheet,
        ingested,
        splits,
        imported.model,
        [c.name for c in refused.failed()],
        bench.outbox / "report.html",
        {"released": released.decision, "leaky": refused_export.decision},
        cert,
        report,
        controls,
        html,
        md,
        pack[1],
        sar[1],
    )


def _first_person(plain: Path) -> str:
    """The passport number of the dataset's first person (read before the plaintext is
    deleted): the person who asks, in the demo, what the lab holds about them."""
    import csv

    with open(plain / "manifest.csv", newline="") as f:
        return next(csv.DictReader(f))["passport_no"]


def _answerable(lab, root_key, actor: str, work: Path, passport_no: str):
    """Issue 18's ending: a subject access report for one person, then the evidence
    pack (which carries that request's audit entry), verified with the public key."""
    from facelab.accountability import evidence
    from facelab.accountability.subject_access import Query, subject_access

    with audit_writer(lab, root_key) as log:
        doc, _, page = subject_access(
            lab, root_key, Query(passport_no=passport_no), actor, log, work / "subject-access"
        )
    n = sum(sum(h["records"].values()) for h in doc["holdings"])
    uses = sum(len(h["accesses"]) for h in doc["holdings"])
    sar = (
        f"{n} records at {', '.join(h['tenant'] for h in doc['holdings']) or 'no processor'}, "
        f"{uses} uses on the record, {len(doc['destructions'])} destruction(s) listed",
        page,
    )
    out = evidence.write_pack(
        lab, root_key, work / "evidence", actor, lambda: audit_writer(lab, root_key)
    )
    rep = evidence.verify_pack(out, load_public_key(lab))
    state = "verifies" if rep.ok else f"FAILS: {rep.problems[0]}"
    return sar, (
        f"{state}: {rep.files} files, {rep.certificates} certificate(s), "
        f"{rep.releases} release(s), {rep.proofs} proofs",
        out,
    )


def _html_report(path: Path, controls, bench_dir: Path, refused, register_md: Path) -> Path:
    import base64
    import html as h

    def img(name: str) -> str:
        p = bench_dir / name
        if not p.exists():
            return ""
        return (
            f'<img alt="{name}" style="max-width:48%" src="data:image/png;base64,'
            f'{base64.b64encode(p.read_bytes()).decode()}">'
        )

    rows = "".join(f"<tr><td>{h.escape(c)}</td><td>{h.escape(o)}</td></tr>" for c, o in controls)
    findings = "".join(
        f"<li>{h.escape(f.severity)} {h.escape(f.detector)}: "
        f"{h.escape(f.location)}: {h.escape(f.evidence)}</li>"
        for f in refused.report.blocking()
    )
    page = (
        "<!doctype html><meta charset=utf-8><title>facelab demo</title>"
        "<style>body{font-family:sans-serif;max-width:1100px;margin:2em auto}"
        "td{border-bottom:1px solid #ddd;padding:4px 8px}</style>"
        "<h1>facelab: the lab story on synthetic faces</h1><h2>Controls</h2>"
        f"<table><tr><th>control</th><th>outcome</th></tr>{rows}</table>"
        f"<h2>1:1 benchmark (in a confined job)</h2>{img('det.png')}{img('scores.png')}"
        f"<h2>Export refused: findings</h2><ul>{findings}</ul>"
        f"<h2>Register of processors</h2>{_register_table(register_md.with_suffix('.json'))}"
    )
    path.write_text(page)
    return path


REGISTER_COLUMNS = (
    ("processor", "processor"),
    ("tenant", "tenant"),
    ("purposes", "purposes"),
    ("data_categories", "data categories"),
    ("retention", "retention"),
    ("status", "status"),
    ("since", "since"),
    ("destruction_due", "destruction due"),
    ("destroyed", "destroyed"),
    ("subjects", "subjects"),
)


def _register_table(register_json: Path) -> str:
    """The register of processors (register.json) as an HTML table, one row each."""
    import html as h

    doc = json.loads(register_json.read_text())

    def cell(v) -> str:
        if v is None:
            return ""
        return h.escape(", ".join(map(str, v)) if isinstance(v, list) else str(v))

    head = "".join(f"<th>{h.escape(t)}</th>" for _, t in REGISTER_COLUMNS)
    body = "".join(
        "<tr>" + "".join(f"<td>{cell(p.get(k))}</td>" for k, _ in REGISTER_COLUMNS) + "</tr>"
        for p in doc["processors"]
    )
    purposes = (
        f"<p>Allowed purposes: {cell(doc['allowed_purposes'])}; forbidden: "
        f"{cell(doc['forbidden_purposes'])}.</p>"
    )
    return f'{purposes}<table class="register"><tr>{head}</tr>{body}</table>'


def _leaky_artifact(lab, root_key, out: Path, log) -> Path:
    """What an insider might try: "weights" that are a training face, normalised."""
    import numpy as np
    from facelab.vault import ops

    rec = next(
        ops.read(
            lab,
            root_key,
            "acme",
            "acme-engineer",
            log,
            split="train",
            purpose="training (demo insider)",
        )
    )
    out.mkdir(parents=True, exist_ok=True)
    w = (rec.image().astype(np.float32) - 127.5) / 128.0
    np.save(out / "adapter_weights.npy", w.transpose(2, 0, 1))
    return out


def _import_keys(lab, keys_dir: Path, today: date, isolation: str, passphrase: bytes, actor: str):
    """A tenant signing key, two import officers, the two processors (borealis due for
    destruction today) and the job isolation this machine can give, into the policy."""
    from facelab import policy
    from facelab.gates.importing.keys import write_keypair
    from facelab.labdir import open_lab, unlock

    keys_dir.mkdir()
    _, tpub, _ = write_keypair("tenant", keys_dir / "acme")
    edits = [("add-tenant-key acme", policy.add_tenant_key("acme", policy.tenant_public_pem(tpub)))]
    for name in ("kim", "lee"):
        _, pub, _ = write_keypair("officer", keys_dir / name)
        b64 = policy.ed25519_public_b64(pub, "officer")
        edits.append((f"add-officer {name}", policy.add_officer(name, b64)))
    if isolation != "strict":  # the shipped policy's value
        edits.append(
            (f"set jobs.isolation = {isolation}", policy.set_value("jobs.isolation", isolation))
        )
    edits += [
        (
            "add-tenant acme",
            policy.add_tenant("acme", processor="Acme Biometrics (demo)", retention_days=365),
        ),
        (
            "add-tenant borealis",
            policy.add_tenant(
                "borealis",
                processor="Borealis Vision (demo)",
                purposes=["verify_1to1"],
                retention_days=90,
                destroy_by=today.isoformat(),
                today=today,
            ),
        ),
    ]
    # what `facelab policy ...` does: validated, atomic, recorded as policy.change
    with audit_writer(lab, unlock(lab, passphrase)) as log:
        for what, edit in edits:
            policy.change(lab, log, actor, what, edit)
    return open_lab(lab.paths.root)


def _tiny_model(d: Path, dim: int = 32) -> None:
    """A stand-in embedding (pooled colour -> random projection): the malicious package's
    model, and the good one when models/ is not there (an installed, not checked-out,
    facelab). Enough to exercise the gate, useless as a matcher."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    w = numpy_helper.from_array(
        np.random.default_rng(0).standard_normal((3, dim)).astype(np.float32), "W"
    )
    g = helper.make_graph(
        [
            helper.make_node("GlobalAveragePool", ["X"], ["p"]),
            helper.make_node("Flatten", ["p"], ["f"]),
            helper.make_node("MatMul", ["f", "W"], ["Y"]),
        ],
        "demo",
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, ["N", 3, 112, 112])],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, ["N", dim])],
        [w],
    )
    d.mkdir(parents=True)
    onnx.save(
        helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=8),
        d / "model.onnx",
    )
    (d / "model.json").write_text(
        json.dumps(
            {
                "name": "demo-projection",
                "version": "0.1",
                "input": {
                    "size": [112, 112],
                    "layout": "NCHW",
                    "channels": "RGB",
                    "mean": 127.5,
                    "std": 128.0,
                },
                "output": {"dim": dim},
                "similarity": "cosine",
            }
        )
    )


class _Payload:
    """What an attacker hides in a 'weights' file: unpickling it would run a command."""

    def __reduce__(self):
        import os

        return (os.system, ("echo exfiltrate",))


MODELS = Path(__file__).resolve().parents[1] / "models"


def _packages(work: Path, keys: Path) -> tuple[Path, Path]:
    import pickle
    import shutil

    from facelab.gates.importing import approve, sign_package
    from facelab.gates.importing.keys import load_officer_key

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
