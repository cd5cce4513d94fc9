"""What the register of processors says beyond the policy: per processor, the models it
imported, the artifacts released to it (with their SHA-256) and its destruction status,
as the regulator's report asked of the documented lab.

Everything comes from the audit log (``model.import``, ``export.release`` /
``export.override``, ``vault.destroy``), which outlives a destruction: the released
files and the tenant's models directory may be gone, their record stays. A
certificate's validation comes from the certificate file when it is still there.
"""

from __future__ import annotations

from pathlib import Path


def released_files(details: dict) -> list[dict]:
    """The released files of an export entry, by SHA-256: ``released_sha256`` (the log
    holds no names of a tenant's files; they are in the release's own manifest), or the
    digests of the ``path sha256:...`` lines of entries written before it."""
    got = details.get("released_sha256")
    if isinstance(got, list):
        return [{"sha256": str(x)} for x in got]
    out = []
    listing = details.get("artifacts")
    for a in listing if isinstance(listing, list) else []:
        path, _, digest = str(a).rpartition(" sha256:")
        if path and digest:
            out.append({"sha256": digest})
    return out


def accountability(entries: list[dict], certificates: Path) -> dict[str, dict]:
    """tenant -> ``models_imported``, ``imports_refused``, ``artifacts_released``,
    ``exports_refused`` and ``destruction`` (status, time, certificate, validated)."""
    out: dict[str, dict] = {}

    def row(t: str) -> dict:
        return out.setdefault(
            t,
            {
                "models_imported": [],
                "imports_refused": 0,
                "artifacts_released": [],
                "exports_refused": 0,
                "destruction": {"status": "not destroyed"},
            },
        )

    for e in entries:
        a, t, d = e.get("action"), str(e.get("tenant") or ""), e.get("details") or {}
        if not t:
            continue
        if a == "model.import":
            if e.get("decision") == "registered":
                row(t)["models_imported"].append(
                    {"model": d.get("model"), "digest": e.get("object"), "time": e.get("time")}
                )
            elif e.get("decision") == "refused":
                row(t)["imports_refused"] += 1
        elif a in ("export.release", "export.override"):
            row(t)["artifacts_released"].append(
                {
                    "release": d.get("release"),
                    "time": e.get("time"),
                    "decision": e.get("decision"),
                    "files": released_files(d),
                }
            )
        elif a == "export.refuse":
            row(t)["exports_refused"] += 1
        elif a == "vault.destroy" and e.get("decision") in ("destroyed", "failed"):
            name = str(d.get("certificate", ""))
            validated = None
            try:  # bounded and strict: a hostile file is "not validated", never a traceback
                from facelab.errors import FacelabError
                from facelab.vault import certificate

                sigs = certificate.read(certificates / name).get("signatures")
                validated = next(
                    (
                        s["name"]
                        for s in sigs
                        if isinstance(s, dict) and s.get("role") == "validator"
                    ),
                    None,
                )
            except (FacelabError, OSError, ValueError, KeyError, TypeError):
                validated = None
            row(t)["destruction"] = {
                "status": e.get("decision"),
                "time": e.get("time"),
                "certificate": name,
                "certificate_sha256": e.get("object"),
                "validated_by": validated,
            }
    return out


def markdown_cells(r: dict) -> tuple[str, str, str]:
    """Models, released artifacts and destruction of one register row, as table cells."""
    models = ", ".join(f"{m['model']} ({str(m['digest'])[:19]})" for m in r["models_imported"])
    rel = "; ".join(
        ", ".join(f"sha256:{f['sha256'][:12]}" for f in x["files"]) for x in r["artifacts_released"]
    )
    d = r["destruction"]
    dest = d["status"]
    if d.get("certificate"):
        dest += f" ({d['certificate']}, " + (
            f"validated by {d['validated_by']})" if d.get("validated_by") else "not validated yet)"
        )
    return models or "-", rel or "-", dest
