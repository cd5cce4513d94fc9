"""The report card of a benchmark run: report.json, det.png, scores.png, groups.png and
report.html; and ``write_comparison`` for several runs on one DET.

Modelled on NIST FRTE 1:1 report cards: the DET on normal-deviate (probit) axes,
Phi^-1(FMR) against Phi^-1(FNMR), at every point the exact counts resolve, with the EER
point and labelled operating points; score densities; the cross-group FMR heatmap
(NISTIR 8280); provenance. report.json is strict JSON (RFC 8259: no NaN or Infinity,
None where a number is not estimable); report.html is one self-contained file (plots as
data URIs) and shows every field of report.json: the main tables, then every section
as nested tables, then the JSON itself.
"""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path
from statistics import NormalDist

import numpy as np
from facelab.bench._metrics import jsonable

_PROBIT = np.vectorize(NormalDist().inv_cdf, otypes=[float])
TICKS = [1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 0.05, 0.2, 0.5, 0.8, 0.95]


def probit(p) -> np.ndarray:
    """Phi^-1(p) for 0 < p < 1 (NaN elsewhere): the normal deviate of a DET axis."""
    p = np.asarray(p, np.float64)
    out = np.full(p.shape, np.nan)
    ok = (p > 0) & (p < 1)
    if ok.any():
        out[ok] = _PROBIT(p[ok])
    return out


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _label(r: dict) -> str:
    m = r["model"]
    return f"{m.get('name', '?')}@{m.get('version', '?')}"


def det_plot(reports: list[dict], path: Path, title: str = "DET") -> Path:
    """One DET with every report's curve, EER point and estimable operating points."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 5.2), dpi=110)
    for i, r in enumerate(reports):
        c = f"C{i}"
        x, y = probit(r["det"]["fmr"]), probit(r["det"]["fnmr"])
        ok = np.isfinite(x) & np.isfinite(y)
        ax.step(x[ok], y[ok], where="post", lw=1.4, color=c, label=_label(r))
        e = r["eer"]["value"]
        if e is not None and 0 < e < 1:
            pe = float(probit(e))
            ax.plot(pe, pe, "D", ms=5, color=c, mec="k")
            ax.annotate(f"EER {e:.4f}", (pe, pe), textcoords="offset points", xytext=(6, -10),
                        fontsize=7, color=c)  # fmt: skip
        for p in r["operating_points"]:
            if not p["estimable"] or not 0 < p["fnmr"] < 1 or not p["fmr"]:
                continue
            px, py = float(probit(p["fmr"])), float(probit(p["fnmr"]))
            ax.plot(px, py, "o", ms=4, color=c, mec="k")
            ax.annotate(f"FMR {p['fmr_target']:.0e}: {p['fnmr']:.3f}", (px, py),
                        textcoords="offset points", xytext=(5, 4), fontsize=7, color=c)  # fmt: skip
    t = probit(TICKS)
    lab = [f"{v:g}" for v in TICKS]
    ax.set_xticks(t, lab, fontsize=7)
    ax.set_yticks(t, lab, fontsize=7)
    ax.plot([t[0], t[-1]], [t[0], t[-1]], ls=":", color="0.6", lw=0.8)
    ax.set_xlim(t[0], t[-1])
    ax.set_ylim(probit(1e-4), t[-1])
    ax.set_xlabel("FMR (normal deviate scale)")
    ax.set_ylabel("FNMR (normal deviate scale)")
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8, loc="upper right")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def _scores_plot(report: dict, path: Path) -> Path:
    plt = _plt()
    h = report["histogram"]
    fig, ax = plt.subplots(figsize=(5.5, 3.4), dpi=110)

    def arr(xs) -> np.ndarray:  # strict JSON holds None where a value overflowed
        return np.array([np.nan if v is None else v for v in xs], float)

    edges = arr(h["edges"])
    if len(edges) and np.isfinite(edges).all() and np.all(np.diff(edges) > 0):
        ax.stairs(np.nan_to_num(arr(h["impostor"])), edges, label="impostor", lw=1.2)
        ax.stairs(np.nan_to_num(arr(h["genuine"])), edges, label="genuine", lw=1.2)
    elif len(edges):  # scores near the float range's end: no finite bins to draw
        ax.text(0.5, 0.5, "no finite histogram (scores near the float range's end)",
                ha="center", va="center", transform=ax.transAxes, fontsize=8)  # fmt: skip
    for p in report["operating_points"]:
        t = p.get("threshold")
        if p["estimable"] and p["fmr_target"] in (1e-2, 1e-3) and t is not None and np.isfinite(t):
            ax.axvline(p["threshold"], color="k", ls="--", lw=0.8)
            ax.annotate(f"FMR {p['fmr_target']:.0e}", (p["threshold"], ax.get_ylim()[1] * 0.9),
                        fontsize=7, rotation=90, ha="right")  # fmt: skip
    ax.set_xlabel("score (" + report["protocol"].get("score", "similarity").split(" of ")[0] + ")")
    ax.set_ylabel("density")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def _groups_plot(report: dict, path: Path) -> Path | None:
    """Heatmaps of log10 FMR per (enrolment group, probe group), one per grouping."""
    mats = {k: v for k, v in report.get("cross_group_fmr", {}).items() if "fmr" in v}
    if not mats:
        return None
    plt = _plt()
    fig, axes = plt.subplots(1, len(mats), figsize=(4.2 * len(mats), 4), dpi=110)
    axes = np.atleast_1d(axes)
    for ax, (key, m) in zip(axes, mats.items(), strict=True):
        f = np.array([[np.nan if v is None else v for v in row] for row in m["fmr"]], float)
        with np.errstate(divide="ignore"):
            lg = np.log10(np.where(f > 0, f, np.nan))
        im = ax.imshow(lg, cmap="viridis", aspect="auto")
        ax.set_xticks(range(len(m["probe_groups"])), m["probe_groups"], rotation=90, fontsize=6)
        ax.set_yticks(range(len(m["enrolment_groups"])), m["enrolment_groups"], fontsize=6)
        ax.set_xlabel("probe group")
        ax.set_ylabel("enrolment group")
        ax.set_title(f"log10 FMR by {key}", fontsize=9)
        if f.shape[0] <= 12:
            for (i, j), v in np.ndenumerate(f):
                txt = "n/a" if np.isnan(v) else ("0" if v == 0 else f"{v:.0e}")
                c = "w" if np.isfinite(lg[i, j]) else "k"  # no colour for 0: dark text
                ax.text(j, i, txt, ha="center", va="center", fontsize=5, color=c)
        fig.colorbar(im, ax=ax, fraction=0.046)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def _img(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode()


def _v(v, spec: str = ".5f", none: str = "not estimable") -> str:
    if v is None:
        return f"<i>{none}</i>"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        return format(v, spec)
    return html.escape(str(v))


def _ci(c) -> str:
    return "<i>n/a</i>" if c is None else f"[{c[0]:.4g}, {c[1]:.4g}]"


def _ratio(r: dict) -> str:
    if r["value"] is not None:
        return f"{r['value']:.2f}"
    if r.get("lower_bound") is not None:
        return f"&ge; {r['lower_bound']:.2f} ({html.escape(r['reason'])})"
    return f"<i>n/a</i> ({html.escape(r['reason'])})"


def _tree(obj, depth: int = 0) -> str:
    """Any JSON value as nested HTML tables (long number lists in a collapsed block)."""
    if isinstance(obj, dict):
        rows = "".join(
            f"<tr><th>{html.escape(str(k))}</th><td>{_tree(v, depth + 1)}</td></tr>"
            for k, v in obj.items()
        )
        return f"<table class=t>{rows}</table>"
    if isinstance(obj, list):
        if len(obj) > 12 and all(not isinstance(v, dict | list) for v in obj):
            body = html.escape(", ".join("null" if v is None else str(v) for v in obj))
            return f"<details><summary>{len(obj)} values</summary><code>{body}</code></details>"
        return "[" + ", ".join(_tree(v, depth + 1) for v in obj) + "]"
    if obj is None:
        return "<i>null (not estimable or not applicable)</i>"
    return html.escape(str(obj))


_STYLE = """body{font-family:sans-serif;max-width:70em;margin:2em auto;line-height:1.35}
table{border-collapse:collapse;margin:.4em 0}td,th{border:1px solid #ccc;padding:2px 7px;
vertical-align:top;text-align:left}table.t th{background:#f4f4f4;font-weight:normal}
i{color:#a33}code{font-size:80%}"""


def _html(report: dict, images: dict[str, Path]) -> str:
    e = html.escape
    p, m = report["protocol"], report["model"]
    ops = "".join(
        f"<tr><td>{x['fmr_target']:.0e}</td>"
        + (
            f"<td>{_v(x['fnmr'])}</td><td>{_ci(x.get('fnmr_ci95'))}</td>"
            f"<td>{_ci(x.get('fnmr_ci95_bootstrap'))}</td><td>{_v(x['fmr'], '.2e')}</td>"
            f"<td>{_ci(x.get('fmr_ci95_bootstrap'))}</td><td>{_v(x['threshold'], '.6g')}</td>"
            f"<td>{_ci(x.get('threshold_ci95_bootstrap'))}</td>"
            f"<td>{_v(x.get('generalized_fnmr'))}</td>"
            if x["estimable"]
            else f"<td colspan=9><i>not estimable</i>: {e(x['reason'])}</td>"
        )
        + "</tr>"
        for x in report["operating_points"]
    )
    eer = report["eer"]
    groups = ""
    for key in ("nationality", "sex", "age_band"):
        if key not in report["groups_at_fmr"]:
            continue
        g = report["groups_at_fmr"][key]
        if "groups" not in g or not g["groups"]:
            groups += f"<h3>{e(key)}</h3><p><i>{e(g.get('reason', 'no groups'))}</i></p>"
            continue
        body = "".join(
            f"<tr><td>{e(name)}{' <i>(too small)</i>' if v['too_small'] else ''}</td>"
            f"<td>{v['genuine_pairs']}</td><td>{v['impostor_pairs']}</td>"
            f"<td>{_v(v['fmr'], '.2e') if v['fmr_estimable'] else '<i>not estimable</i>'}</td>"
            f"<td>{_ci(v['fmr_ci95_bootstrap'])}</td>"
            f"<td>{_v(v['fnmr'], '.4f') if v['fnmr_estimable'] else '<i>not estimable</i>'}</td>"
            f"<td>{_ci(v['fnmr_ci95_bootstrap'])}</td></tr>"
            for name, v in g["groups"].items()
        )
        fa = report["fairness"].get(key, {})
        rf, rn = g["fmr_max_min"], g["fnmr_max_min"]
        groups += (
            f"<h3>{e(key)}</h3><table><tr><th>group</th><th>genuine</th><th>impostor</th>"
            f"<th>FMR</th><th>95% CI (subjects)</th><th>FNMR</th><th>95% CI (subjects)</th>"
            f"</tr>{body}</table><p>max/min over estimable groups: FMR "
            f"{_ratio(rf)}; FNMR {_ratio(rn)}. FDR "
            f"{_v(fa.get('fdr'), '.4f', 'n/a')} {_ci(fa.get('fdr_ci95_bootstrap'))}, GARBE "
            f"{_v(fa.get('garbe'), '.4f', 'n/a')} {_ci(fa.get('garbe_ci95_bootstrap'))} "
            f"{e(fa.get('reason', ''))}</p>"
        )
    prov = report.get("provenance", {})
    shown = {"protocol", "operating_points", "eer", "groups_at_fmr", "fairness"}
    rest = {k: v for k, v in report.items() if k not in shown}
    warn = "".join(f"<p><b>warning</b>: {e(w)}</p>" for w in report.get("warnings", []))
    imgs = " ".join(f'<img src="{_img(v)}" alt="{e(k)}">' for k, v in images.items())
    return f"""<!doctype html><html><head><meta charset="utf-8">
<title>facelab 1:1 report card: {e(_label(report))}</title><style>{_STYLE}</style>
</head><body>
<h1>1:1 verification report card: {e(_label(report))}</h1>{warn}
<p>{p["enrolments"] or "-"} enrolments, {p["probes"] or "-"} probes,
{p["genuine_pairs"]:,} genuine and
{p["impostor_pairs"]:,} impostor comparisons (all cross-subject pairs). Score:
{e(p.get("score", ""))}. FTE {_v(report["failures"]["fte"], ".4f", "n/a")}, FTA
{_v(report["failures"]["fta"], ".4f", "n/a")}.</p>
<p>Provenance: {_tree(prov) if prov else "<i>none recorded</i>"}</p>
<h2>FNMR at fixed FMR</h2>
<table><tr><th>FMR target</th><th>FNMR</th><th>95% CI (Wilson)</th><th>95% CI (subjects)</th>
<th>FMR reached</th><th>95% CI (subjects)</th><th>threshold</th><th>95% CI (subjects)</th>
<th>generalized FNMR</th></tr>{ops}</table>
<p>EER (FVC2000) {_v(eer["value"], ".4f")} {_ci(eer["ci95_bootstrap"])} between
t1 = {_v(eer["t1"], ".6g", "n/a")} and t2 = {_v(eer["t2"], ".6g", "n/a")}; ROCCH-EER
{_v(report["rocch_eer"], ".4f")}; AUC {_v(report["auc"], ".5f")} (error bound
{_v(report["auc_error_bound"], ".1e")}); d' {_v(report["d_prime"], ".3f", "undefined")}.
{m.get("template_bytes", "?")} bytes per template,
{_v(m.get("extraction_ms_per_image"), ".2f")} ms per image,
{_v(report["speed"]["comparisons_per_second"], ",.0f", "n/a")} comparisons/s.</p>
{imgs}
<h2>Demographic differentials at the FMR {report["groups_at_fmr"]["fmr"]:.0e} threshold
({_v(report["groups_at_fmr"]["threshold"], ".6g")})</h2>{groups or "<p><i>no groups</i></p>"}
<h2>Every other field of report.json</h2>{_tree(rest)}
<details><summary>report.json</summary><pre>{e(json.dumps(report, indent=1))}</pre></details>
</body></html>
"""


def write_report(report: dict, out: Path) -> Path:
    """Write every report file into ``out`` and return the path of report.html."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    report = jsonable(report)
    (out / "report.json").write_text(json.dumps(report, indent=2, allow_nan=False) + "\n")
    images = {
        "DET": det_plot([report], out / "det.png", f"DET: {_label(report)}"),
        "scores": _scores_plot(report, out / "scores.png"),
    }
    g = _groups_plot(report, out / "groups.png")
    if g is not None:
        images["cross-group FMR"] = g
    path = out / "report.html"
    path.write_text(_html(report, images), encoding="utf-8")
    return path


def write_comparison(reports: list[dict], out: Path) -> Path:
    """Several runs on one DET, with a table of their headline numbers: compare.html."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    det = det_plot(reports, out / "det-compare.png", "DET: " + ", ".join(map(_label, reports)))
    targets = sorted({p["fmr_target"] for r in reports for p in r["operating_points"]})
    head = "".join(f"<th>FNMR @ FMR {a:.0e}</th>" for a in targets)
    rows = ""
    for r in reports:
        by = {p["fmr_target"]: p for p in r["operating_points"]}
        cells = "".join(
            f"<td>{_v(by[a]['fnmr']) if a in by else '<i>n/a</i>'}</td>" for a in targets
        )
        rows += (
            f"<tr><td>{html.escape(_label(r))}</td><td>{_v(r['eer']['value'], '.4f')}</td>"
            f"<td>{_v(r.get('rocch_eer'), '.4f')}</td><td>{_v(r.get('auc'), '.5f')}</td>"
            f"{cells}<td>{r['protocol']['genuine_pairs']:,} / "
            f"{r['protocol']['impostor_pairs']:,}</td>"
            f"<td>{_tree(r.get('provenance', {}))}</td></tr>"
        )
    page = f"""<!doctype html><html><head><meta charset="utf-8">
<title>facelab 1:1 comparison</title><style>{_STYLE}</style></head><body>
<h1>1:1 verification: {len(reports)} runs</h1>
<img src="{_img(det)}" alt="DET">
<table><tr><th>model</th><th>EER</th><th>ROCCH-EER</th><th>AUC</th>{head}
<th>genuine / impostor</th><th>provenance</th></tr>{rows}</table>
</body></html>
"""
    path = out / "compare.html"
    path.write_text(page, encoding="utf-8")
    return path
