"""Report files of a benchmark run: report.json, det.png, scores.png and report.html.

The plots use matplotlib's Agg backend (no display). report.html is one self-contained
file: the tables and both plots (embedded as data URIs), so it can be archived or
mailed as it is.
"""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path

import numpy as np


def _plots(report: dict, out: Path) -> tuple[Path, Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    det = report["det"]
    fmr, fnmr = np.asarray(det["fmr"]), np.asarray(det["fnmr"])
    ok = (fmr > 0) & (fnmr > 0)
    fig, ax = plt.subplots(figsize=(5, 4.2), dpi=110)
    ax.loglog(fmr[ok], fnmr[ok], lw=1.6)
    for p in report["operating_points"]:
        if p["estimable"] and p["fnmr"] > 0:
            ax.plot(p["fmr_target"], p["fnmr"], "o", ms=4, color="C3")
    ax.set_xlabel("FMR")
    ax.set_ylabel("FNMR")
    ax.set_title(f"DET: {report['model']['name']}@{report['model']['version']}")
    ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    det_png = out / "det.png"
    fig.savefig(det_png)
    plt.close(fig)

    h = report["histogram"]
    centres = np.asarray(h["centres"])
    fig, ax = plt.subplots(figsize=(5, 3.4), dpi=110)
    ax.plot(centres, np.asarray(h["impostor"]), label="impostor", lw=1.2)
    ax.plot(centres, np.asarray(h["genuine"]), label="genuine", lw=1.2)
    thr = report["groups_at_fmr"]["threshold"]
    ax.axvline(thr, color="k", ls="--", lw=0.8, label="FMR 1e-3 threshold")
    ax.set_xlabel("score")
    ax.set_ylabel("density")
    ax.legend(fontsize=8)
    fig.tight_layout()
    hist_png = out / "scores.png"
    fig.savefig(hist_png)
    plt.close(fig)
    return det_png, hist_png


def _img(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode()


def write_report(report: dict, out: Path) -> Path:
    """Write every report file into ``out`` and return the path of report.html."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    det_png, hist_png = _plots(report, out)
    e = html.escape

    def ci(p: dict) -> str:
        if not p["estimable"]:
            return "not estimable"
        return f"[{p['fnmr_ci95'][0]:.4f}, {p['fnmr_ci95'][1]:.4f}]"

    def num(v, fmt: str) -> str:
        return "" if v is None else format(v, fmt)

    rows = "".join(
        f"<tr><td>{p['fmr_target']:.0e}</td><td>{p['fnmr']:.5f}</td><td>{ci(p)}</td>"
        f"<td>{p['threshold']:.6f}</td></tr>"
        for p in report["operating_points"]
    )
    groups = ""
    for key in ("nationality", "sex", "age_band"):
        g = report["groups_at_fmr"][key]
        body = "".join(
            f"<tr><td>{e(name)}</td><td>{v['genuine_pairs']}</td><td>{v['impostor_pairs']}</td>"
            f"<td>{num(v['fmr'], '.5f')}</td><td>{num(v['fnmr'], '.4f')}</td></tr>"
            for name, v in g["groups"].items()
        )
        fr = "n/a" if g["fmr_max_min"] is None else f"{g['fmr_max_min']:.2f}"
        nr = "n/a" if g["fnmr_max_min"] is None else f"{g['fnmr_max_min']:.2f}"
        groups += (
            f"<h3>{e(key)}</h3><table><tr><th>group</th><th>genuine</th>"
            f"<th>impostor</th><th>FMR</th><th>FNMR</th></tr>{body}</table>"
            f"<p>max/min: FMR {fr}, FNMR {nr}</p>"
        )
    p, m, sp = report["protocol"], report["model"], report["speed"]
    doc = f"""<!doctype html><html><head><meta charset="utf-8">
<title>facelab 1:1 benchmark: {e(m["name"])}@{e(m["version"])}</title>
<style>body{{font-family:sans-serif;max-width:60em;margin:2em auto}}
table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:2px 8px}}</style>
</head><body>
<h1>1:1 verification: {e(m["name"])}@{e(m["version"])}</h1>
<p>{p["enrolments"]} passport enrolments, {p["probes"]} gate probes, {p["genuine_pairs"]:,}
genuine and {p["impostor_pairs"]:,} impostor pairs (all cross-subject pairs).</p>
<h2>FNMR at fixed FMR</h2>
<table><tr><th>FMR</th><th>FNMR</th><th>95% CI (Wilson)</th><th>threshold</th></tr>{rows}
</table>
<p>EER {report["eer"]["value"]:.4f} at threshold {report["eer"]["threshold"]:.6f};
AUC {report["auc"]:.4f}; d' {report["d_prime"]:.3f}.
{m["template_bytes"]} bytes per template, {m["extraction_ms_per_image"]:.2f} ms per image,
{(sp["comparisons_per_second"] or 0):,.0f} comparisons/s.</p>
<img src="{_img(det_png)}" alt="DET curve"> <img src="{_img(hist_png)}" alt="scores">
<h2>Demographic differentials at the FMR 1e-3 threshold</h2>{groups}
</body></html>
"""
    path = out / "report.html"
    path.write_text(doc, encoding="utf-8")
    return path
