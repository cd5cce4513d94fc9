"""The evidence pack: a self-contained folder a regulator checks without the lab and
without network, with the lab's public key only.

Layout (``facelab-evidence/1``)::

    PACK/MANIFEST.json        every other file's SHA-256 and size, the lab, its origin
    PACK/MANIFEST.sig         Ed25519 (lab key) over MANIFEST.json's bytes, base64, one line
    PACK/README.txt           what is here and how to check it
    PACK/index.html           the controls with their outcomes, in plain language
    PACK/controls.json        the same controls as data (verify recomputes each outcome)
    PACK/lab.json             lab id, creation time, the lab's public key
    PACK/register/            the register of processors (register.json, register.md)
    PACK/policy/policy.toml   the policy in force
    PACK/policy/history.json  every policy version the audit log was written under:
                              SHA-256, first and last entry, first and last time
    PACK/policy/versions/     texts of earlier versions the lab kept (LAB/policy-history)
    PACK/audit/               entries.jsonl, index.bin, hashes.bin, checkpoints/, witness/
    PACK/audit/head/          the signed head's two slots (LAB/keys/audit_head.*.note)
    PACK/certificates/        destruction certificates (NIST SP 800-88 Rev. 1 App. G)
    PACK/releases/T/ID/       each release manifest still in the lab (manifest.json) and
                              observed.json: the released files' SHA-256 as read when
                              the pack was written
    PACK/imports/             registry.json (registered models) and decisions.json
                              (every import decision on the record)
    PACK/proofs/SEQ.json      RFC 9162 inclusion proofs of the entries that back each
                              certificate, release and import decision

``verify_pack`` checks, in this order, and stops at nothing: it reports every problem.
(1) the signature over MANIFEST.json under the key given (never a key the pack names);
(2) the pack holds exactly the files listed, regular files only, each with its SHA-256
and size, so one changed byte anywhere is caught even where no inner check looks; (3)
``lab.json`` names the same key; (4) the whole audit log (``facelab.audit.verify_log``:
every entry, checkpoint, the head, witness cosignatures); (5) the policy history
recomputed from the entries, and the policy file is the last version; (6) every
certificate's signatures and its ``vault.destroy`` entry; (7) every release manifest's
signature, the observed digests, and its ``export.*`` entry; (8) import decisions
and the registry against the ``model.import`` entries; (9) every inclusion proof,
against the checkpoint under the key, its entry equal to the log's line; (10) each
control's outcome in controls.json recomputed from the pack.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import html as h
import json
import os
import shutil
import stat
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from facelab.accountability import offline
from facelab.accountability.register import released_files
from facelab.errors import BadInputError, FacelabError
from facelab.jsonfile import strict_loads
from facelab.scratch import sibling_dir
from facelab.vault.certificate import recorded_digest

FORMAT = "facelab-evidence/1"
MANIFEST = "MANIFEST.json"
SIGNATURE = "MANIFEST.sig"


@dataclass
class PackReport:
    """What ``verify_pack`` found: ``problems`` empty means the pack verifies."""

    pack: str
    lab: str = ""
    files: int = 0
    entries: int = 0
    certificates: int = 0
    releases: int = 0
    imports: int = 0
    proofs: int = 0
    controls: list[dict] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_json(self) -> dict:
        return {**self.__dict__, "ok": self.ok}


# ------------------------------------------------------------------ facts from the log


def _entries(audit_dir: Path) -> list[dict]:
    out = []
    for line in offline.read_bytes(audit_dir / "entries.jsonl", 1 << 34).split(b"\n"):
        if line:
            try:
                e = json.loads(line)
            except (ValueError, UnicodeDecodeError):
                e = None
            out.append(e if isinstance(e, dict) else {})
    return out


def policy_history(entries: list[dict]) -> list[dict]:
    """Runs of consecutive entries written under one policy (the ``policy`` field of
    every entry is the SHA-256 of the policy file in force)."""
    runs: list[dict] = []
    for e in entries:
        p = e.get("policy")
        if runs and runs[-1]["sha256"] == p:
            runs[-1].update(last_entry=e.get("seq"), last_time=e.get("time"))
            runs[-1]["entries"] += 1
        else:
            runs.append(
                {
                    "sha256": p,
                    "first_entry": e.get("seq"),
                    "last_entry": e.get("seq"),
                    "first_time": e.get("time"),
                    "last_time": e.get("time"),
                    "entries": 1,
                }
            )
    return runs


def import_decisions(entries: list[dict]) -> list[dict]:
    """Every ``model.import`` decision on the record."""
    out = []
    for e in entries:
        if e.get("action") == "model.import":
            d = e.get("details") or {}
            out.append(
                {
                    "entry": e.get("seq"),
                    "time": e.get("time"),
                    "tenant": e.get("tenant"),
                    "decision": e.get("decision"),
                    "package_digest": e.get("object"),
                    "model": d.get("model"),
                    "approvers": d.get("approvers"),
                    "failed_checks": sorted((d.get("failed") or {}).keys())
                    if isinstance(d.get("failed"), dict)
                    else [],
                }
            )
    return out


def _destroy_entries(entries: list[dict]) -> dict[str, dict]:
    """certificate file name -> its ``vault.destroy`` outcome entry."""
    return {
        str((e.get("details") or {}).get("certificate")): e
        for e in entries
        if e.get("action") == "vault.destroy" and e.get("decision") in ("destroyed", "failed")
    }


def _release_entries(entries: list[dict]) -> dict[str, dict]:
    """``released/T/ID`` -> its ``export.release`` or ``export.override`` entry."""
    return {
        str((e.get("details") or {}).get("release")): e
        for e in entries
        if e.get("action") in ("export.release", "export.override")
        and (e.get("details") or {}).get("release")
    }


def _controls(facts: dict) -> list[dict]:
    """The controls and their outcomes, from facts both the writer and the verifier
    compute (so the verifier recomputes every outcome instead of trusting it)."""
    w = facts["witnesses"]
    return [
        {
            "control": "audit log intact: every entry in the RFC 9162 tree, signed "
            "checkpoints and head (C2SP signed notes)",
            "outcome": f"{facts['audit']}: {facts['entries']} entries, head at size "
            f"{facts['head']}",
            "evidence": "audit/",
        },
        {
            "control": "audit log cosigned by witnesses with keys of their own",
            "outcome": "; ".join(
                f"{x['name']}: "
                + (
                    "not cosigned yet"
                    if x["cosigned_size"] is None
                    else f"cosigned size {x['cosigned_size']}"
                )
                for x in w
            )
            or "no witness registered",
            "evidence": "audit/witness/",
        },
        {
            "control": "policy in force is the last version the log was written under",
            "outcome": f"{facts['policy_versions']} version(s); current {facts['policy']}",
            "evidence": "policy/",
        },
        {
            "control": "destruction certificates signed by the lab (NIST SP 800-88 Rev. 1)",
            "outcome": f"{facts['certificates']} certificate(s): "
            + (", ".join(facts["cert_results"]) or "none"),
            "evidence": "certificates/",
        },
        {
            "control": "released files are the ones the export gate rebuilt and signed",
            "outcome": f"{facts['releases']} release manifest(s) in the lab, "
            f"{facts['release_entries']} release decision(s) on the record",
            "evidence": "releases/",
        },
        {
            "control": "model import decisions on the record (signatures, static checks, "
            "smoke test)",
            "outcome": ", ".join(f"{k} {v}" for k, v in sorted(facts["imports"].items()))
            or "no import",
            "evidence": "imports/",
        },
        {
            "control": "inclusion proofs of the entries behind each certificate, release "
            "and import decision",
            "outcome": f"{facts['proofs']} proof(s) verify",
            "evidence": "proofs/",
        },
        {
            "control": "public register of processors",
            "outcome": f"{facts['processors']} processor(s): "
            + ", ".join(f"{r['tenant']} {r['status']}" for r in facts["register"]),
            "evidence": "register/",
        },
    ]


# ------------------------------------------------------------------ writing


def _copy(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    dst.write_bytes(offline.read_bytes(src, 1 << 34))


def _files(pack: Path) -> dict[str, Path]:
    out: dict[str, Path] = {}
    for dirpath, dirs, names in os.walk(pack, followlinks=False):
        d = Path(dirpath)
        for n in dirs:
            if (d / n).is_symlink():
                raise _Problem(f"{(d / n).relative_to(pack)}: a link in the pack")
        for n in names:
            p = d / n
            if not stat.S_ISREG(os.lstat(p).st_mode):
                raise _Problem(f"{p.relative_to(pack)}: not a regular file")
            out[p.relative_to(pack).as_posix()] = p
    return out


@contextlib.contextmanager
def _log_lock(audit_dir: Path, wait: float):
    """The audit writers' own lock (``flock`` on ``audit/lock``), held while copying;
    waited for at most ``wait`` seconds (the policy's ``audit.lock_wait_seconds``)."""
    from facelab.audit.log import LOCK, flock_within

    fd = os.open(audit_dir / LOCK, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
    try:
        flock_within(fd, wait, audit_dir / LOCK)
        yield
    finally:
        os.close(fd)


class _Problem(Exception):
    pass


def write_pack(
    lab,
    root,
    out: Path | str,
    actor: str,
    log_opener: Callable,
    *,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> Path:
    """Write the evidence pack of ``lab`` to ``out`` (which must not exist, or be empty).

    ``log_opener()`` opens the lab's audit log for recording; the pack's own creation
    (``evidence.pack``) is recorded and signed before the log is copied, so the pack
    shows it. The pack is written into a temporary sibling and renamed into place. A lab
    whose records do not verify still gets its pack (the problems are its outcomes); the
    caller verifies the pack it wrote (``verify_pack``) and says so.
    """
    from facelab.audit import Event
    from facelab.audit.log import checkpoint_files
    from facelab.audit.proofs import prove_inclusion
    from facelab.gates.importing import list_models
    from facelab.gates.importing.ops import models_dir
    from facelab.labdir import audit_limits, load_public_key, load_signing_key, public_key_b64
    from facelab.vault import retention

    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise BadInputError(f"{out}: already exists and is not an empty directory")
    if not out.parent.is_dir():
        raise BadInputError(f"{out}: parent directory {out.parent} does not exist")
    rows = retention.register(lab, root)
    with log_opener() as log:
        log.record(
            Event(
                "evidence.pack",
                actor,
                details={"format": FORMAT, "processors": len(rows)},
            )
        )
    key = load_signing_key(lab, root)
    pub = load_public_key(lab)
    tmp = sibling_dir(out)
    try:
        src = lab.paths.audit
        a = tmp / "audit"
        wait = float(audit_limits(lab)["lock_wait_seconds"])
        with _log_lock(src, wait):  # no writer appends while the log and its head are copied
            for name in ("entries.jsonl", "index.bin", "hashes.bin"):
                _copy(src / name, a / name)
            for p in checkpoint_files(src):
                _copy(p, a / "checkpoints" / p.name)
            for p in sorted((src / "witness").glob("*.note")):
                _copy(p, a / "witness" / p.name)
            for name in ("audit_head.a.note", "audit_head.b.note"):
                if (lab.paths.keys / name).is_file():
                    _copy(lab.paths.keys / name, a / "head" / name)
        entries = _entries(a)
        _copy(lab.paths.meta, tmp / "lab.json")
        _copy(lab.paths.policy, tmp / "policy" / "policy.toml")
        hist = policy_history(entries)
        (tmp / "policy" / "history.json").write_text(json.dumps(hist, indent=2) + "\n")
        kept = lab.paths.root / "policy-history"
        for run in hist:
            p = kept / f"{str(run['sha256']).removeprefix('sha256:')}.toml"
            if p.is_file():
                _copy(p, tmp / "policy" / "versions" / p.name)
        retention.write_register(lab, rows, tmp / "register")
        for p in sorted((lab.paths.root / "certificates").glob("destroy-*.json")):
            _copy(p, tmp / "certificates" / p.name)
        rel_root = lab.paths.root / "released"
        for mf in sorted(rel_root.glob("*/*/manifest.json")):
            rdir = mf.parent
            dst = tmp / "releases" / rdir.relative_to(rel_root)
            _copy(mf, dst / "manifest.json")
            observed = {}
            for rel, p in sorted(offline._files_under(rdir).items()):
                if rel != "manifest.json":
                    observed[rel] = hashlib.sha256(offline.read_bytes(p, 1 << 34)).hexdigest()
            (dst / "observed.json").write_text(json.dumps(observed, indent=2) + "\n")
        (tmp / "imports").mkdir()
        (tmp / "imports" / "registry.json").write_text(
            json.dumps(list_models(models_dir(lab)), indent=2) + "\n"
        )
        (tmp / "imports" / "decisions.json").write_text(
            json.dumps(import_decisions(entries), indent=2) + "\n"
        )
        cps = checkpoint_files(a)
        if not cps:
            raise BadInputError(f"{src}: no checkpoint to prove entries against")
        from facelab.audit import checkpoint as ckpt

        note = ckpt.read_note_file(cps[-1]).decode()

        size = ckpt.verify(note, pub, lab.origin).size
        wanted = sorted(
            {
                e["seq"]
                for e in entries
                if e.get("seq", size) < size
                and (
                    e.get("action") == "model.import"
                    or (
                        e.get("action") == "vault.destroy"
                        and e.get("decision") in ("destroyed", "failed")
                    )
                    or e.get("action") in ("export.release", "export.override")
                )
            }
        )
        for seq in wanted:
            pr = prove_inclusion(a, seq, size)
            doc = {**pr.to_json(), "checkpoint": note}
            (tmp / "proofs").mkdir(exist_ok=True)
            (tmp / "proofs" / f"{seq:012d}.json").write_text(json.dumps(doc, indent=2) + "\n")
        # the controls: computed by the same code the verifier runs on the pack
        rep = PackReport(str(out))
        facts = _facts(tmp, pub, lab.origin, rep, load_policy_limits(tmp))
        controls = _controls(facts)
        (tmp / "controls.json").write_text(json.dumps(controls, indent=2) + "\n")
        try:
            records = _records_html(tmp)
        except (FacelabError, ValueError, KeyError, TypeError, IndexError, AttributeError) as e:
            records = f"<p>The records could not be tabulated ({h.escape(type(e).__name__)}).</p>"
        (tmp / "index.html").write_text(_index_html(lab.lab_id, controls, facts, clock()) + records)
        (tmp / "README.txt").write_text(_readme(lab.lab_id))
        files = {
            rel: {
                "sha256": hashlib.sha256(offline.read_bytes(p, 1 << 34)).hexdigest(),
                "bytes": p.stat().st_size,
            }
            for rel, p in sorted(_files(tmp).items())
        }
        manifest = {
            "format": FORMAT,
            "lab": lab.lab_id,
            "origin": lab.origin,
            "public_key": public_key_b64(pub),
            "created": clock().isoformat(timespec="seconds"),
            "files": files,
        }
        mbytes = (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode()
        (tmp / MANIFEST).write_bytes(mbytes)
        (tmp / SIGNATURE).write_text(base64.b64encode(key.sign(mbytes)).decode() + "\n")
        if out.exists():
            out.rmdir()
        os.rename(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def load_policy_limits(pack: Path) -> dict:
    """``[audit]`` limits of the pack's policy (defaults where absent or unreadable)."""
    import tomllib

    try:
        raw = tomllib.loads(offline.read_bytes(pack / "policy" / "policy.toml").decode())
        a = raw.get("audit", {})
    except (FacelabError, ValueError, UnicodeDecodeError):
        a = {}
    mu = a.get("max_unwitnessed", 1024)
    return {
        "max_unwitnessed": mu if isinstance(mu, int) and not isinstance(mu, bool) else 1024,
        "require_witness": a.get("require_witness") is True,
    }


# ------------------------------------------------------------------ verifying


def verify_pack(pack: Path | str, key: Ed25519PublicKey, *, fail_fast: bool = False) -> PackReport:
    """Check an evidence pack with the lab's public key only; see the module docstring.

    Never raises for a damaged pack: every problem found is in ``PackReport.problems``
    (one line each, naming the file). ``fail_fast`` stops after steps (1)-(2) when they
    found a problem (the signed listing alone already fails the pack). ``BadInputError``
    only when ``pack`` is not a directory.
    """
    pack = Path(pack)
    if not pack.is_dir() or pack.is_symlink():
        raise BadInputError(f"{pack}: not a directory")
    rep = PackReport(str(pack))
    bad = rep.problems.append
    # (1) the signature over the manifest's bytes
    manifest: dict = {}
    try:
        mbytes = offline.read_bytes(pack / MANIFEST)
        sig_text = offline.read_bytes(pack / SIGNATURE, 4096)
        sig = base64.b64decode(sig_text.rstrip(b"\n"), validate=True)
        if base64.b64encode(sig) + b"\n" != sig_text:
            raise ValueError("not one line of canonical base64")
        key.verify(sig, mbytes)
        manifest = strict_loads(mbytes)
        if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
            raise ValueError(f"not a {FORMAT} manifest")
    except (FacelabError, ValueError, InvalidSignature) as e:
        bad(f"{MANIFEST}: the signature does not verify under the key given ({e or 'invalid'})")
    # (2) exactly the files listed, with their digests
    listed = manifest.get("files") if isinstance(manifest.get("files"), dict) else {}
    try:
        present = _files(pack)
    except _Problem as e:
        bad(str(e))
        present = {}
    for rel in sorted(set(present) - set(listed) - {MANIFEST, SIGNATURE}):
        bad(f"{rel}: in the pack but not in {MANIFEST}")
    for rel, want in sorted(listed.items()):
        p = present.get(rel)
        if p is None:
            bad(f"{rel}: listed in {MANIFEST} but missing")
            continue
        try:  # a FIFO or device in the pack: a problem, never a hang (red team 14g, c10)
            data = offline.read_bytes(p, 1 << 34)
        except FacelabError as e:
            bad(f"{rel}: {str(e).removeprefix(f'{p}: ')}")
            continue
        if not isinstance(want, dict) or (
            hashlib.sha256(data).hexdigest() != want.get("sha256") or len(data) != want.get("bytes")
        ):
            bad(f"{rel}: differs from {MANIFEST} (SHA-256 or size)")
    rep.files = len(present)
    if fail_fast and rep.problems:
        return rep
    # (3) the lab's identity
    from facelab.labdir import public_key_b64

    origin = str(manifest.get("origin", ""))
    try:
        meta = offline.read_json(pack / "lab.json")
        assert isinstance(meta, dict)
        rep.lab = str(meta.get("lab_id"))
        if meta.get("public_key") != public_key_b64(key):
            bad("lab.json: names another public key than the one given")
        if manifest and manifest.get("public_key") != public_key_b64(key):
            bad(f"{MANIFEST}: names another public key than the one given")
        if not origin.endswith(rep.lab):
            bad(f"{MANIFEST}: origin {origin!r} is not lab {rep.lab}'s")
    except (FacelabError, AssertionError) as e:
        bad(f"lab.json: {e or 'not a lab description'}")
    try:
        facts = _facts(pack, key, origin, rep, load_policy_limits(pack))
    except Exception as e:  # a pack is outside input: a shape no check foresaw fails it
        bad(f"the pack could not be checked ({type(e).__name__}): it does not verify")
        facts = {}
    # (10) the controls, recomputed
    try:
        claimed = offline.read_json(pack / "controls.json")
    except FacelabError as e:
        bad(str(e))
        claimed = []
    if facts:
        rep.controls = _controls(facts)
        if claimed != rep.controls:
            bad("controls.json: the outcomes differ from what the pack shows")
    return rep


def _facts(pack: Path, key, origin: str, rep: PackReport, limits: dict) -> dict:
    """Steps (4)-(9) of the verification; appends problems to ``rep``; returns the
    facts the controls are computed from (empty when the audit log is unreadable)."""
    from facelab.audit import checkpoint as ckpt
    from facelab.audit import verify_log

    bad = rep.problems.append
    a = pack / "audit"
    try:
        vr = verify_log(
            a,
            origin,
            key,
            head_dir=a / "head",
            max_unwitnessed=limits["max_unwitnessed"],
            require_witness=limits["require_witness"],
        )
        entries = _entries(a)
        lines = offline.read_bytes(a / "entries.jsonl", 1 << 34).split(b"\n")
    except (FacelabError, OSError) as e:
        bad(f"audit/: {e}")
        return {}
    for d in vr.damage:
        bad(
            f"audit/: {d.kind}"
            + (f" at entry {d.entry}" if d.entry is not None else "")
            + f": {d.message}"
        )
    rep.entries = vr.entries
    facts: dict = {
        "audit": "intact" if vr.intact else "TAMPERED",
        "entries": vr.entries,
        "head": vr.head_size,
        "witnesses": [
            {"name": w["name"], "cosigned_size": w["cosigned_size"]} for w in vr.witnesses
        ],
    }
    # (5) policy
    hist = policy_history(entries)
    try:
        if offline.read_json(pack / "policy" / "history.json") != hist:
            bad("policy/history.json: differs from the policies the log was written under")
        cur = (
            "sha256:"
            + hashlib.sha256(offline.read_bytes(pack / "policy" / "policy.toml")).hexdigest()
        )
        if hist and hist[-1]["sha256"] != cur:
            bad("policy/policy.toml: is not the policy the last entries were written under")
        for p in sorted((pack / "policy" / "versions").glob("*.toml")):
            if hashlib.sha256(offline.read_bytes(p)).hexdigest() != p.stem:
                bad(f"policy/versions/{p.name}: its text does not have its name's SHA-256")
    except FacelabError as e:
        bad(str(e))
        cur = "?"
    facts |= {"policy_versions": len(hist), "policy": cur}
    # (6) certificates
    destroys = _destroy_entries(entries)
    results = []
    for p in sorted((pack / "certificates").glob("*.json")):
        try:
            out = offline.verify_certificate(p, key)
            c = out["certificate"]
            results.append(
                f"{c['media_information']['tenant']} "
                f"{c['sanitization_details']['verification_result']}"
            )
            e = destroys.get(p.name)
            if e is None or e.get("tenant") != c["media_information"]["tenant"]:
                bad(f"certificates/{p.name}: no vault.destroy entry of its tenant names it")
        except (FacelabError, KeyError, TypeError, AttributeError, IndexError) as e:
            bad(f"certificates/{p.name}: {e or type(e).__name__}")
    for name, e in sorted(destroys.items()):  # every certificate the log names is here
        p = pack / "certificates" / name
        if "/" in name or not p.is_file():
            bad(
                f"certificates/{name}: named by entry {e.get('seq')} (the destruction of "
                f"{e.get('tenant')}) but not in the pack (deleted from the lab?)"
            )
        elif recorded_digest(p) != e.get("object"):
            bad(f"certificates/{name}: not the certificate entry {e.get('seq')} recorded")
    rep.certificates = len(results)
    facts |= {"certificates": len(results), "cert_results": results}
    # (7) releases
    from facelab.gates.exporting.release import verify_manifest

    rel_entries = _release_entries(entries)
    n = 0
    for mf in sorted((pack / "releases").glob("*/*/manifest.json")):
        rid = mf.parent.relative_to(pack / "releases").as_posix()
        try:
            doc = offline.read_json(mf)
            m = verify_manifest(doc if isinstance(doc, dict) else {}, key)
            want = {str(x.get("path", x.get("name"))): x.get("sha256") for x in m["artifacts"]}
            if offline.read_json(mf.parent / "observed.json") != want:
                bad(f"releases/{rid}: the released files in the lab differ from the manifest")
            e = rel_entries.get(f"released/{rid}")
            if e is None or e.get("tenant") != m["tenant"]:
                bad(f"releases/{rid}: no export decision on the record names it")
            else:
                logged = {f["sha256"] for f in released_files(e.get("details") or {})}
                if not set(want.values()) <= logged:
                    bad(f"releases/{rid}: the record's digests differ from the manifest's")
            n += 1
        except (FacelabError, KeyError, TypeError, AttributeError) as e:
            bad(f"releases/{rid}: {e or type(e).__name__}")
    rep.releases = n
    facts |= {"releases": n, "release_entries": len(rel_entries)}
    # (8) imports
    decisions = import_decisions(entries)
    try:
        if offline.read_json(pack / "imports" / "decisions.json") != decisions:
            bad("imports/decisions.json: differs from the model.import entries")
        registered = {
            (d["tenant"], d["package_digest"]) for d in decisions if d["decision"] == "registered"
        }
        reg = offline.read_json(pack / "imports" / "registry.json")
        for r in reg if isinstance(reg, list) else [None]:
            if not isinstance(r, dict) or (r.get("tenant"), r.get("digest")) not in registered:
                bad("imports/registry.json: a registered model with no registered decision")
    except FacelabError as e:
        bad(str(e))
    counts: dict[str, int] = {}
    for d in decisions:
        counts[str(d["decision"])] = counts.get(str(d["decision"]), 0) + 1
    rep.imports = len(decisions)
    facts["imports"] = counts
    # (9) proofs
    k = 0
    for p in sorted((pack / "proofs").glob("*.json")):
        try:
            doc = offline.read_json(p)
            r = offline.verify_proof(doc, key, f"proofs/{p.name}")
            if r["origin"] != origin:
                bad(f"proofs/{p.name}: for another log ({r['origin']})")
            seq = r["entry"]
            if not 0 <= seq < len(lines) or lines[seq] != str(doc["entry_json"]).encode():
                bad(f"proofs/{p.name}: its entry is not the log's entry {seq}")
            if p.stem != f"{seq:012d}":
                bad(f"proofs/{p.name}: proves entry {seq}")
            ckpt.verify(str(doc["checkpoint"]).encode(), key, origin)
            k += 1
        except (FacelabError, KeyError, TypeError, AttributeError) as e:
            bad(f"proofs/{p.name}: {e or type(e).__name__}")
    rep.proofs = k
    facts["proofs"] = k
    # the register
    try:
        reg = offline.read_json(pack / "register" / "register.json")
        rows = reg["processors"] if isinstance(reg, dict) else []
        certified = {r.split(" ")[0] for r in results}
        for r in rows:
            if r.get("status") == "destroyed" and r.get("tenant") not in certified:
                bad(f"register/register.json: {r.get('tenant')} destroyed, no certificate here")
    except (FacelabError, KeyError, TypeError, AttributeError) as e:
        bad(f"register/register.json: {e or type(e).__name__}")
        rows = []
    facts |= {
        "processors": len(rows),
        "register": [
            {"tenant": str(r.get("tenant")), "status": str(r.get("status"))} for r in rows
        ],
        "register_rows": rows,
    }
    return facts


# ------------------------------------------------------------------ pages


def _readme(lab_id: str) -> str:
    return f"""Evidence pack of facelab lab {lab_id} ({FORMAT})

Check it without the lab and without network, with the lab's public key only
(LAB/keys/lab_signing.pub, obtained from the lab through another channel):

    facelab evidence verify PACK --key lab_signing.pub

MANIFEST.json lists every other file with its SHA-256; MANIFEST.sig is the lab's
Ed25519 signature over MANIFEST.json's bytes. The verifier checks that signature, every
file's digest, the whole audit log (RFC 9162 tree, C2SP signed checkpoints and head,
witness cosignatures), every destruction certificate (NIST SP 800-88 Rev. 1 App. G),
every release manifest, every import decision, every inclusion proof, and recomputes
each control's outcome shown in index.html. One changed byte anywhere fails it.
"""


def _index_html(lab_id: str, controls: list[dict], facts: dict, when: datetime) -> str:
    rows = "".join(
        f"<tr><td>{h.escape(c['control'])}</td><td>{h.escape(c['outcome'])}</td>"
        f"<td><code>{h.escape(c['evidence'])}</code></td></tr>"
        for c in controls
    )
    reg = "".join(
        "<tr>"
        + "".join(
            f"<td>{h.escape(str(v))}</td>"
            for v in (
                r.get("processor"),
                r.get("tenant"),
                ", ".join(r.get("purposes", [])),
                r.get("retention"),
                r.get("status"),
                r.get("since") or "",
                r.get("destruction_due") or "",
                r.get("destroyed") or "",
            )
        )
        + "</tr>"
        for r in facts.get("register_rows", [])
    )
    return (
        "<!doctype html><meta charset=utf-8>"
        f"<title>Evidence pack: {h.escape(lab_id)}</title>"
        "<style>body{font-family:sans-serif;max-width:1100px;margin:2em auto}"
        "td,th{border-bottom:1px solid #ddd;padding:4px 8px;text-align:left}</style>"
        f"<h1>Evidence pack of lab {h.escape(lab_id)}</h1>"
        f"<p>Written {h.escape(when.isoformat(timespec='seconds'))}. Every file here is "
        "listed with its SHA-256 in <code>MANIFEST.json</code>, signed by the lab. Check "
        "it offline with the lab's public key: <code>facelab evidence verify PACK --key "
        "lab_signing.pub</code>; the checker recomputes each outcome below from the "
        "records in this folder.</p>"
        "<h2>Controls</h2><table><tr><th>control</th><th>outcome</th><th>evidence</th></tr>"
        f"{rows}</table><h2>Register of processors</h2><table><tr><th>processor</th>"
        "<th>tenant</th><th>purposes</th><th>retention</th><th>status</th><th>since</th>"
        f"<th>destruction due</th><th>destroyed</th></tr>{reg}</table>"
    )


def _table(head: tuple[str, ...], rows: list[tuple]) -> str:
    th = "".join(f"<th>{h.escape(x)}</th>" for x in head)
    body = "".join(
        "<tr>" + "".join(f"<td>{h.escape(str(v))}</td>" for v in r) + "</tr>" for r in rows
    )
    return f"<table><tr>{th}</tr>{body}</table>" if rows else "<p>None.</p>"


def _records_html(pack: Path) -> str:
    """The records behind the controls, as tables: policy versions, certificates,
    releases with each file's SHA-256, import decisions (read from the pack itself)."""
    hist = offline.read_json(pack / "policy" / "history.json")
    kept = {p.stem for p in (pack / "policy" / "versions").glob("*.toml")}
    pol = [
        (
            r["sha256"],
            f"{r['first_time']} .. {r['last_time']}",
            f"{r['first_entry']} .. {r['last_entry']}",
            "policy/versions/" + str(r["sha256"]).removeprefix("sha256:") + ".toml"
            if str(r["sha256"]).removeprefix("sha256:") in kept
            else "text not kept",
        )
        for r in hist
    ]
    certs = []
    for p in sorted((pack / "certificates").glob("*.json")):
        doc = offline.read_json(p)
        c, sigs = doc["certificate"], doc["signatures"]
        certs.append(
            (
                p.name,
                c["media_information"]["tenant"],
                c["media_information"]["records"],
                c["sanitization_details"]["verification_result"],
                sigs[1]["name"] if len(sigs) > 1 else "not validated yet",
            )
        )
    rels = []
    for mf in sorted((pack / "releases").glob("*/*/manifest.json")):
        m = offline.read_json(mf)["manifest"]
        for a in m["artifacts"]:
            rels.append((m["tenant"], mf.parent.name, m["decision"], a["path"], a["sha256"]))
    imps = [
        (d["time"], d["tenant"], d["model"], d["decision"], ", ".join(d["failed_checks"]))
        for d in offline.read_json(pack / "imports" / "decisions.json")
    ]
    return (
        "<h2>Policy versions</h2>"
        + _table(("sha256", "in force", "audit entries", "text"), pol)
        + "<h2>Destruction certificates</h2>"
        + _table(("file", "tenant", "records", "verification", "validated by"), certs)
        + "<h2>Releases</h2>"
        + _table(("tenant", "release", "decision", "file", "sha256"), rels)
        + "<h2>Import decisions</h2>"
        + _table(("time", "tenant", "model", "decision", "failed checks"), imps)
    )
