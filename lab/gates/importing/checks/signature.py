"""The tenant's model-signing signature over every file, and two officers' approvals.

Runs in the gate's own process, on the private copy (regular single-link files only),
after the confined checks: signature files are small JSON documents read with a size
and depth bound (``signing.read_json``). ``signatures/`` may hold signature files only,
and every file model.onnx takes external data from must be a signed resource (issue 15
failure 4: weights under ``signatures/`` were swapped after both approvals).
"""

from __future__ import annotations

import contextlib
import json

from facelab.gates.importing._types import CheckResult, GateContext, result
from facelab.gates.importing.signing import (
    APPROVALS,
    SIG_DIR,
    TENANT_SIG,
    approval_document,
    check_approval,
    is_signature_file,
    read_json,
    signed_statement,
    statement_digest,
    unsigned_files,
)
from facelab.labdir import public_key_from_b64

NAME = "signature"
APPROVAL_NAME = "approvals"


def run(ctx: GateContext) -> CheckResult:
    key = ctx.policy.tenant_keys.get(ctx.tenant)
    if key is None:
        return result(NAME, [f"tenant {ctx.tenant!r} has no model-signing key in the policy"])
    if TENANT_SIG not in ctx.package.files:
        return result(NAME, [f"unsigned: no {TENANT_SIG}"])
    stray = [
        f"{r}: {SIG_DIR}/ may hold signature files only (outside the tenant signature)"
        for r in sorted(ctx.package.files)
        if r.split("/", 1)[0] == SIG_DIR and not is_signature_file(r)
    ]
    if stray:
        return result(NAME, stray)
    try:
        from facelab.gates.importing.signing import verify_tenant

        verify_tenant(ctx.root, key, ctx.package.sha256 or None)
    except Exception as e:  # model-signing raises ValueError and friends on any mismatch
        msg = str(e).replace("\n", " ")
        why = [f"tenant signature does not verify: {msg[:300]}"]
        # what the (unverified) statement leaves out, when it can be read at all
        with contextlib.suppress(Exception):
            why += unsigned_files(ctx.root, sorted(ctx.package.files))
        return result(NAME, why)
    try:
        problems = unsigned_files(ctx.root, sorted(ctx.package.files))
        names = {
            r.get("name") for r in signed_statement(ctx.root / TENANT_SIG)["predicate"]["resources"]
        }
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        return result(NAME, [f"tenant signature: malformed statement ({e})"])
    for rel in sorted(ctx.external_files):
        if rel.split("/", 1)[0] == SIG_DIR or rel not in names:
            problems.append(
                f"{rel}: external data of model.onnx not covered by the tenant signature"
            )
    if problems:
        return result(NAME, problems)
    ctx.statement_sha256 = statement_digest(ctx.root / TENANT_SIG)
    ctx.signed_files = frozenset(n for n in names if isinstance(n, str))
    # re-written from the parsed bundle (duplicate keys and NaN were refused by
    # read_json, unknown fields by the bundle's schema in verify_tenant)
    ctx.tenant_sig_bytes = (json.dumps(read_json(ctx.root / TENANT_SIG), indent=2) + "\n").encode()
    return result(NAME, [], f"signed statement sha256:{ctx.statement_sha256}")


def run_approvals(ctx: GateContext) -> CheckResult:
    need = ctx.policy.required_approvals
    if ctx.statement_sha256 is None:
        return result(APPROVAL_NAME, ["no valid tenant signature to approve"])
    officers = {
        name: public_key_from_b64(k, f"policy import.officers.{name}")
        for name, k in ctx.policy.officers.items()
    }
    problems, valid = [], set()
    for rel in sorted(r for r in ctx.package.files if r.startswith(APPROVALS + "/")):
        try:
            doc = read_json(ctx.package.path(rel), 1 << 16)
            officer = check_approval(doc, officers, ctx.statement_sha256)
            if rel != f"{APPROVALS}/{officer}.json":
                raise ValueError(f"approval by {officer} filed under another name")
            valid.add(officer)
            ctx.approval_bytes[officer] = approval_document(
                officer, ctx.statement_sha256, doc["signature"]
            )
        except (ValueError, UnicodeDecodeError) as e:
            problems.append(f"{rel}: {e}")
    ctx.approvers = sorted(valid)
    if len(valid) < need:
        problems.append(f"{len(valid)} valid approval(s) by import officers, {need} required")
    return result(APPROVAL_NAME, problems, "approved by " + (", ".join(ctx.approvers) or "none"))
