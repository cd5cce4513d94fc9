"""The export gate: read every artifact, run every detector, decide by the policy.

Detectors (one module each under ``detectors/``, run in this order): identifiers, faces,
templates, payloads, structural, memorisation; before them the import-to-export diff
(``provenance.py``) marks what is unchanged since import. Payloads that a detector
decodes (``ctx.derived``) are scanned again by all detectors, down to the policy's
depth. A detector that fails is a finding, never a pass: the gate fails closed. The
decision is "refused" when any finding is at or above the policy's ``refuse_at``.

Findings never name a subject: before the report is made, every word of a finding's
artifact name, location and evidence that is part of a vault subject's name, and every
token that is one of their passport numbers, is replaced by ``[redacted]`` (a JSON path
or a CSV cell can hold a name; the report goes to the tenant and the audit log).
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from facelab import labfs
from facelab.errors import FacelabError
from facelab.gates.exporting import keyed, provenance
from facelab.gates.exporting._types import Finding, ScanContext
from facelab.gates.exporting.artifact import Unscannable, load
from facelab.gates.exporting.detectors import (
    faces,
    identifiers,
    memorisation,
    payloads,
    representations,
    structural,
    templates,
)

DETECTORS = (
    provenance,
    identifiers,
    faces,
    templates,
    payloads,
    representations,
    structural,
    memorisation,
)


@dataclass(frozen=True)
class ExportReport:
    tenant: str
    artifacts: tuple[dict, ...]  # name, kind, bytes, sha256 of every file given
    findings: tuple[Finding, ...]
    notes: tuple[str, ...]
    refuse_at: str
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def refused(self) -> bool:
        from enclave_policy._load import SEVERITIES

        return any(
            SEVERITIES.index(f.severity) >= SEVERITIES.index(self.refuse_at) for f in self.findings
        )

    def blocking(self) -> list[Finding]:
        from enclave_policy._load import SEVERITIES

        return [
            f
            for f in self.findings
            if SEVERITIES.index(f.severity) >= SEVERITIES.index(self.refuse_at)
        ]

    def to_json(self) -> dict:
        return {
            "tenant": self.tenant,
            "decision": "refused" if self.refused else "released",
            "refuse_at": self.refuse_at,
            "artifacts": [{k: v for k, v in a.items() if k != "file"} for a in self.artifacts],
            "findings": [f.to_json() for f in self.findings],
            "notes": list(self.notes),
            "seconds": self.seconds,
        }

    def text(self) -> str:
        lines = [f"export gate: {len(self.artifacts)} artifact(s) of tenant {self.tenant}"]
        for a in self.artifacts:
            what = (
                f"{a['bytes']} bytes  sha256:{a['sha256'][:16]}"
                if a.get("sha256")
                else ("replaced by the gate's own" if a["kind"] == "replaced" else "not rebuilt")
            )
            lines.append(f"  {a.get('path', a['name'])}  {a['kind']}  {what}")
        order = {"high": 0, "medium": 1, "low": 2}
        for f in sorted(self.findings, key=lambda f: (order[f.severity], f.artifact)):
            who = (
                f" [subjects: {', '.join(f.subjects[:5])}"
                + (f" +{len(f.subjects) - 5}" if len(f.subjects) > 5 else "")
                + "]"
                if f.subjects
                else ""
            )
            lines.append(
                f"  {f.severity.upper():<6} {f.detector:<12} {f.artifact}: "
                f"{f.location}: {f.evidence}{who}"
            )
        for n in self.notes:
            lines.append(f"  note: {n}")
        n_block = len(self.blocking())
        lines.append(
            f"  decision: {'REFUSED' if self.refused else 'RELEASED'}"
            + (f" ({n_block} finding(s) at or above {self.refuse_at})" if self.refused else "")
        )
        return "\n".join(lines)


def expand(paths: Sequence[Path | str]) -> list[Path]:
    """Files given, and the files under directories given (sorted; links kept, so that
    the loader refuses them)."""
    files: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir() and not p.is_symlink():
            files.extend(sorted(q for q in p.rglob("*") if q.is_file() or q.is_symlink()))
        else:
            files.append(p)
    return files


def scan(
    paths: Sequence[Path],
    ctx: ScanContext,
    *,
    names: dict[Path, str] | None = None,
    pre_findings: Sequence[Finding] = (),
) -> ExportReport:
    """Run the detectors over ``paths`` (the rebuilt files: the last layer; files, or
    directories walked in sorted order) with ``ctx``; ``names`` gives each file's name in
    the report (its path in the release), ``pre_findings`` the earlier layers' findings."""
    files = expand(paths)
    names = names or {}
    findings: list[Finding] = list(pre_findings)
    seconds: dict[str, float] = {}
    listed, queue = [], []
    for f in files:
        try:
            data_len = f.stat().st_size if f.exists() else 0
        except OSError:
            data_len = 0
        shown = names.get(f, f.name)
        try:
            art = load(f, ctx.policy)
            art.name = shown
        except Unscannable as e:
            findings.append(Finding("unscannable", "high", shown, "whole file", str(e)))
            listed.append(
                {"name": shown, "kind": "unscannable", "bytes": data_len, "sha256": file_sha256(f)}
            )
            continue
        listed.append(
            {
                "name": shown,
                "kind": art.kind,
                "bytes": len(art.data),
                "sha256": hashlib.sha256(art.data).hexdigest(),
            }
        )
        queue.append(art)
    while queue:
        art = queue.pop(0)
        for det in DETECTORS:
            t0 = time.perf_counter()
            try:
                findings.extend(det.detect(art, ctx))
            except Unscannable as e:
                findings.append(
                    Finding(det.NAME, "high", art.name, "whole artifact", f"cannot be scanned: {e}")
                )
            except Exception as e:  # fail closed: a detector error refuses, never passes
                findings.append(
                    Finding(
                        det.NAME,
                        "high",
                        art.name,
                        "whole artifact",
                        f"detector failed ({type(e).__name__}: {e})",
                    )
                )
            seconds[det.NAME] = seconds.get(det.NAME, 0.0) + time.perf_counter() - t0
        queue.extend(ctx.derived)
        ctx.derived.clear()
    findings = [_redacted(f, ctx.index) for f in findings]
    return ExportReport(
        ctx.tenant,
        tuple(listed),
        tuple(_dedupe(findings)),
        tuple(ctx.notes),
        ctx.policy.refuse_at,
        {k: round(v, 3) for k, v in seconds.items()},
    )


def file_sha256(p: Path) -> str:
    """SHA-256 of an artifact's file, "" when it cannot be read (a finding elsewhere)."""
    try:
        return labfs.sha256(p)
    except (OSError, FacelabError):
        return ""


_WORD = re.compile(r"[^\W\d_]+")
_TOKEN = re.compile(r"[A-Za-z0-9]*[0-9][A-Za-z0-9]*")
REDACTED = "[redacted]"


def redact(text: str, index) -> str:
    """``text`` with every word that is part of a subject's name in ``index`` (a
    ``vault_index.SubjectIndex``; matched as the index stores it: folded, keyed hash) and
    every token that is a subject's passport number replaced by ``[redacted]``."""
    if index is None or not text:
        return text

    def word(m: re.Match) -> str:
        w = keyed.fold(m.group())
        return REDACTED if len(w) >= 2 and index.lookup("W|" + w) else m.group()

    def token(m: re.Match) -> str:
        tok = m.group()
        forms = [tok] + [tok[i : i + 9] for i in range(len(tok) - 8)] if len(tok) > 9 else [tok]
        hit = any(index.lookup(keyed.passport_form(x)) for x in forms)
        return REDACTED if hit else tok

    return _TOKEN.sub(token, _WORD.sub(word, text))


def _redacted(f: Finding, index) -> Finding:
    return dataclasses.replace(
        f,
        artifact=redact(f.artifact, index),
        location=redact(f.location, index),
        evidence=redact(f.evidence, index),
    )


def _dedupe(findings: list[Finding]) -> list[Finding]:
    seen, out = set(), []
    for f in findings:
        key = (f.detector, f.artifact, f.location, f.evidence, f.subjects)
        if key not in seen:
            seen.add(key)
            out.append(f)
    return out
