"""The import gate: run every check, decide, and register what passes.

Checks, in order (each in its own module under ``checks/``): files (allowed names and
types by magic bytes, no links, special files, nested archives or pickles), signature
(the tenant's model-signing bundle), approvals (officers from the policy), model.json,
onnx (static), smoke test (dynamic, only when everything static passed). The report
lists every check and every problem; the decision is "registered" only if all passed.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from enclave_policy import ImportPolicy
from lab.gates.importing._types import CheckResult, GateContext
from lab.gates.importing.checks import files, model_json, onnx_static, signature, smoke
from lab.gates.importing.package import open_package
from lab.synth import dataset_digest


@dataclass(frozen=True)
class ImportReport:
    package: str
    tenant: str
    checks: tuple[CheckResult, ...]
    digest: str
    model: str  # name@version from model.json, when readable

    @property
    def accepted(self) -> bool:
        return all(c.passed for c in self.checks)

    def failed(self) -> list[CheckResult]:
        return [c for c in self.checks if not c.passed]

    def to_json(self) -> dict:
        return {
            "package": self.package,
            "tenant": self.tenant,
            "model": self.model,
            "digest": self.digest,
            "accepted": self.accepted,
            "checks": [c.to_json() for c in self.checks],
        }

    def table(self) -> str:
        lines = [
            f"import gate: {self.package} (tenant {self.tenant}, {self.model or '?'})",
            f"  {'check':<12} {'result':<7} detail",
        ]
        for c in self.checks:
            detail = c.info if c.passed else c.problems[0]
            lines.append(f"  {c.name:<12} {'pass' if c.passed else 'FAIL':<7} {detail}")
            for extra in c.problems[1:]:
                lines.append(f"  {'':<12} {'':<7} {extra}")
        lines.append(f"  decision: {'REGISTERED' if self.accepted else 'REFUSED'}")
        return "\n".join(lines)


def inspect(
    package: Path | str, tenant: str, policy: ImportPolicy, dynamic: bool = True
) -> tuple[ImportReport, GateContext]:
    """Run the gate on a private copy of ``package``; the caller must clean it up."""
    pkg = open_package(package, policy.max_package_bytes)
    ctx = GateContext(pkg, policy, tenant)
    checks = [files.run(ctx), signature.run(ctx)]
    checks.append(signature.run_approvals(ctx))
    checks.append(model_json.run(ctx))
    checks.append(onnx_static.run(ctx))
    if dynamic:
        if all(c.passed for c in checks):
            checks.append(smoke.run(ctx))
        else:
            checks.append(
                CheckResult(
                    smoke.NAME, False, ("not run: static checks failed, the model is never loaded",)
                )
            )
    model = ""
    if ctx.model_json:
        model = f"{ctx.model_json['name']}@{ctx.model_json['version']}"
    report = ImportReport(str(package), tenant, tuple(checks), dataset_digest(pkg.root), model)
    return report, ctx


def register(report: ImportReport, ctx: GateContext, models_dir: Path) -> Path:
    """Store an accepted package content-addressed and read-only; index it."""
    assert report.accepted
    digest = report.digest.removeprefix("sha256:")
    target = models_dir / digest
    models_dir.mkdir(parents=True, exist_ok=True)
    if not target.exists():
        tmp = Path(tempfile.mkdtemp(prefix=".import-", dir=models_dir))
        shutil.copytree(ctx.root, tmp / "pkg")
        for dirpath, _, names in os.walk(tmp / "pkg"):
            for n in names:
                os.chmod(Path(dirpath) / n, 0o444)
        os.rename(tmp / "pkg", target)
        tmp.rmdir()
        for dirpath, dirs, _ in os.walk(target):
            for d in dirs:
                os.chmod(Path(dirpath) / d, 0o555)
        os.chmod(target, 0o555)
    index = models_dir / "registry.json"
    entries = json.loads(index.read_text()) if index.exists() else []
    if not any(e["digest"] == report.digest and e["tenant"] == report.tenant for e in entries):
        assert ctx.model_json is not None
        entries.append(
            {
                "model": report.model,
                "tenant": report.tenant,
                "digest": report.digest,
                "path": digest,
                "approvers": ctx.approvers,
                "statement_sha256": ctx.statement_sha256,
                "output_dim": ctx.model_json["output"]["dim"],
                "registered": datetime.now(UTC).isoformat(timespec="seconds"),
            }
        )
        tmp_index = index.with_suffix(".tmp")
        tmp_index.write_text(json.dumps(entries, indent=2) + "\n")
        os.replace(tmp_index, index)
    return target


def list_models(models_dir: Path) -> list[dict]:
    index = models_dir / "registry.json"
    return json.loads(index.read_text()) if index.exists() else []
