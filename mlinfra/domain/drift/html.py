"""A self-contained HTML drift report: a summary table and, per feature, baseline vs current as an inline SVG
bar chart (no JavaScript, no external assets, no plotting library)."""

from __future__ import annotations

import html
from typing import Any, Mapping

_CSS = """body{font-family:system-ui,sans-serif;margin:2em;color:#222}table{border-collapse:collapse}
td,th{border:1px solid #ccc;padding:3px 8px;text-align:left}.drift{color:#b00;font-weight:bold}
.ok{color:#070}.nodata{color:#888}.feat{display:inline-block;margin:8px;vertical-align:top}
.legend span{display:inline-block;width:10px;height:10px;margin:0 4px}"""
_BASE, _CUR = "#4c78a8", "#f58518"


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.4g}"
    return html.escape(str(v))


def svg_chart(chart: Mapping[str, Any], width: int = 360, height: int = 140) -> str:
    """Paired bars (baseline blue, current orange) per bin or category."""
    base = [b or 0.0 for b in chart.get("baseline", [])]
    cur = [c or 0.0 for c in chart.get("current", [])]
    n = max(len(base), len(cur))
    if n == 0:
        return ""
    labels = chart.get("categories")
    if labels is None:
        edges = chart.get("edges", [])
        labels = [f"{edges[i]:.3g}" if i < len(edges) and edges[i] is not None else "" for i in range(n)]
    top = max(base + cur + [1e-12])
    plot_h = height - 30
    slot = (width - 10) / n
    bar = max(1.0, slot / 2 - 1)
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img">']
    for i in range(n):
        x = 5 + i * slot
        for j, (vals, color) in enumerate(((base, _BASE), (cur, _CUR))):
            v = vals[i] if i < len(vals) else 0.0
            h = plot_h * v / top
            parts.append(f'<rect x="{x + j * bar:.1f}" y="{plot_h - h + 5:.1f}" width="{bar:.1f}" height="{h:.1f}" '
                         f'fill="{color}"><title>{html.escape(str(labels[i]))}: {v:.4f}</title></rect>')
    step = max(1, n // 6)
    for i in range(0, n, step):
        parts.append(f'<text x="{5 + i * slot:.1f}" y="{height - 8}" font-size="9">{html.escape(str(labels[i])[:10])}</text>')
    parts.append("</svg>")
    return "".join(parts)


def render_html(report: Mapping[str, Any], title: str = "Drift report") -> str:
    s = report.get("summary", {})
    status = report.get("status", "")
    rows = []
    feats = dict(report.get("features", {}))
    if report.get("prediction"):
        feats = {"(prediction)": report["prediction"], **feats}
    for name, f in feats.items():
        cls = "drift" if f.get("drifted") else ("nodata" if f.get("status") == "not_enough_data" else "ok")
        stat = (f"psi {_fmt(f.get('psi'))}, ks {_fmt(f.get('ks_statistic'))}" if f.get("kind") == "numeric"
                else f"js {_fmt(f.get('js_distance'))}, chi2 p {_fmt(f.get('chi2_pvalue'))}")
        rows.append(f"<tr><td>{html.escape(name)}</td><td>{f.get('kind')}</td><td class='{cls}'>{f.get('status')}</td>"
                    f"<td>{stat}</td><td>{_fmt(f.get('baseline_missing_rate'))} &rarr; {_fmt(f.get('missing_rate'))}</td>"
                    f"<td>{html.escape('; '.join(f.get('reasons', [])))}</td></tr>")
    order = sorted(feats, key=lambda k: (not feats[k].get("drifted"), k))
    charts = "".join(
        f"<div class='feat'><div class='{'drift' if feats[k].get('drifted') else 'ok'}'>{html.escape(k)}</div>"
        f"{svg_chart(feats[k]['chart'])}</div>" for k in order if feats[k].get("chart"))
    counts = report.get("counts", {})
    schema = report.get("schema", {})
    quality = report.get("quality") or {}
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>{html.escape(title)}</title><style>{_CSS}</style></head>
<body><h1>{html.escape(title)}</h1>
<p>Status: <span class="{'drift' if status == 'drift' else 'ok'}">{html.escape(status)}</span>;
{s.get('drifted_count', 0)} of {s.get('features', 0)} features drifted; prediction drifted: {s.get('prediction_drifted')};
window {html.escape(str(report.get('window', {})))}</p>
<p>Records {counts.get('records', 0)}, lines {counts.get('lines', 0)}, malformed lines {counts.get('malformed_lines', 0)},
malformed payloads {counts.get('malformed_payloads', 0)}, rows with the wrong column count {counts.get('schema_mismatch_rows', 0)}.
Schema: new columns {html.escape(str(schema.get('new_columns', {})))}, missing {html.escape(str(schema.get('missing_columns', [])))},
retyped {html.escape(str(schema.get('retyped_columns', [])))}.</p>
{'<p>Quality: ' + html.escape(str(quality)) + '</p>' if quality else ''}
<p class="legend"><span style="background:{_BASE}"></span>baseline <span style="background:{_CUR}"></span>current</p>
<table><tr><th>feature</th><th>kind</th><th>status</th><th>statistics</th><th>missing rate</th><th>reasons</th></tr>
{''.join(rows)}</table><h2>Distributions (drifted first)</h2>{charts}</body></html>
"""
