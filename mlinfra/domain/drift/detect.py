"""Compare captured traffic with a baseline: per-feature statistics, decisions and the JSON report.

Decisions (per feature, thresholds from :class:`Thresholds`, overridable per feature):

- numeric: drifted when ``psi >= psi`` or (``ks_statistic >= ks`` and ``ks_pvalue < alpha``);
- categorical: drifted when (``js_distance >= js`` and the chi-square test of homogeneity, categories with an
  expected count below 5 pooled, gives ``p < alpha``) or the share of categories unseen in the baseline is
  ``>= new_category_share``;
- both: ``missing_rate`` drift when the missing rate moved by ``>= missing_rate_change`` (absolute) and a
  two-proportion test gives ``p < alpha``;
- fewer than ``min_samples`` present values in the window: ``not_enough_data`` (no decision, never "no drift"),
  unless the missing-rate test (on every record) found drift: that decision stands.

Schema changes (columns unknown to the baseline in >= 1% of the records, baseline columns absent from every
record, numeric columns whose values are mostly not numbers, >= 1% of rows with the wrong number of CSV fields)
make the window ``schema_change`` (reported, alarmed, no drift event) unless ``schema_drift=True`` makes them drift.
Everything is a pure function of (baseline, capture data, thresholds): the same inputs give the same report.
"""

from __future__ import annotations

import json
import math
from typing import Any, Mapping

import numpy as np

from . import stats
from .contract import SCHEMA_CHANGE_SHARE, Thresholds, thresholds_by_feature
from .capture import CaptureData
from .profile import PREDICTION, Baseline, FeatureProfile, categorical_values, chart_histogram

REPORT_FORMAT = "mlinfra.drift.report/1"


def _round(x: float | None, digits: int = 6) -> float | None:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return None
    return round(float(x), digits)


def compare_numeric(prof: FeatureProfile, values: np.ndarray, t: Thresholds, unparsable: int = 0) -> dict[str, Any]:
    x = values[np.isfinite(values)] if values.dtype.kind == "f" else values
    n = int(x.size)
    missing = int(values.size - n)
    out: dict[str, Any] = {"kind": "numeric", "count": n, "missing": missing, "unparsable": unparsable,
                           "baseline_missing_rate": _round(prof.missing_rate)}
    out.update(_missing(prof, missing, values.size, t))
    if unparsable and unparsable >= 0.5 * (n + unparsable):
        out.update(status="schema_change", drifted=True, reasons=["retyped: most values are not numbers"])
        return out
    if n < t.min_samples or not prof.sketch:
        return _too_few(out, n, t, bool(prof.sketch))
    x = np.sort(x)
    edges = np.asarray(prof.psi_edges, np.float64)
    counts = np.bincount(np.searchsorted(edges, x, side="right"), minlength=edges.size + 1)
    psi = stats.psi(np.asarray(prof.psi_props), counts)
    d, p = stats.ks_2samp(np.asarray(prof.sketch, np.float64), x, n_baseline=prof.count, current_sorted=True)
    reasons = out.pop("reasons", [])
    if psi >= t.psi:
        reasons.append(f"psi {psi:.3f} >= {t.psi}")
    if d >= t.ks and p < t.alpha:
        reasons.append(f"ks {d:.3f} >= {t.ks} (p {p:.2g} < {t.alpha})")
    chart_edges = np.asarray(prof.chart_edges, np.float64)
    out.update(
        psi=_round(psi), ks_statistic=_round(d), ks_pvalue=_round(p, 12),
        mean=_round(float(x.mean())), baseline_mean=_round(prof.mean), std=_round(float(x.std())), baseline_std=_round(prof.std),
        chart={"edges": [_round(e) for e in chart_edges.tolist()], "baseline": [_round(v) for v in prof.chart_props or []],
               "current": [_round(v) for v in chart_histogram(chart_edges, x).tolist()]},
        drifted=bool(reasons), status="drift" if reasons else "ok", reasons=reasons,
    )
    return out


def compare_categorical(prof: FeatureProfile, values: np.ndarray, t: Thresholds) -> dict[str, Any]:
    present, missing = categorical_values(values)
    n = int(present.size)
    out: dict[str, Any] = {"kind": "categorical", "count": n, "missing": missing, "baseline_missing_rate": _round(prof.missing_rate)}
    out.update(_missing(prof, missing, values.size, t))
    if n < t.min_samples or not prof.categories:
        return _too_few(out, n, t, bool(prof.categories))
    cats, counts = np.unique(present, return_counts=True)
    base_cats = list(prof.categories)
    pos = {c: i for i, c in enumerate(base_cats)}
    other = pos.get("__other__")
    cur = np.zeros(len(base_cats), np.int64)
    new: dict[str, int] = {}
    for c, k in zip(cats.tolist(), counts.tolist()):
        i = pos.get(c)
        if i is not None:
            cur[i] += k
        elif other is not None:
            cur[other] += k
        else:
            new[c] = int(k)
    new_total = sum(new.values())
    base_counts = np.asarray(prof.category_counts, np.int64)
    full_base = np.concatenate([base_counts, np.zeros(len(new), np.int64)])
    full_cur = np.concatenate([cur, np.asarray([new[c] for c in sorted(new)], np.int64)])
    js = stats.js_distance(full_base, full_cur)
    # Pooled so every expected count is >= 5: with many rare categories the raw table's test is not valid.
    chi2, chi2_p, dof = stats.chi2_contingency(*stats.pool_sparse(full_base, full_cur))
    reasons = out.pop("reasons", [])
    # JS alone is biased upwards on many categories and few records (sampling noise): it must be significant.
    if js >= t.js and chi2_p < t.alpha:
        reasons.append(f"js {js:.3f} >= {t.js} (chi-square p {chi2_p:.2g} < {t.alpha})")
    if new_total / n >= t.new_category_share:
        reasons.append(f"new categories {new_total / n:.1%} >= {t.new_category_share:.0%}")
    top_new = sorted(new.items(), key=lambda kv: (-kv[1], kv[0]))[:20]
    labels = base_cats[:30] + [c for c, _ in top_new[:10]]
    bsum, csum = max(1, int(base_counts.sum())), max(1, n)
    out.update(
        js_distance=_round(js), chi2=_round(chi2), chi2_pvalue=_round(chi2_p, 12), chi2_dof=dof,
        new_categories=dict(top_new), new_category_share=_round(new_total / n),
        chart={"categories": labels,
               "baseline": [_round(base_counts[pos[c]] / bsum) if c in pos else 0.0 for c in labels],
               "current": [_round((cur[pos[c]] if c in pos else new.get(c, 0)) / csum) for c in labels]},
        drifted=bool(reasons), status="drift" if reasons else "ok", reasons=reasons,
    )
    return out


def _too_few(out: dict[str, Any], n: int, t: Thresholds, baseline_has_values: bool) -> dict[str, Any]:
    """Too few present values to compare distributions: ``not_enough_data``, unless the missing-rate test
    (run on every record of the window, present or not) already found drift, which stands."""
    note = f"{n} values < min_samples {t.min_samples}" if baseline_has_values else "baseline has no values"
    reasons = out.pop("reasons", [])
    if reasons:
        out.update(status="drift", drifted=True, reasons=[*reasons, note])
    else:
        out.update(status="not_enough_data", drifted=False, reasons=[note])
    return out


def _missing(prof: FeatureProfile, missing: int, total: int, t: Thresholds) -> dict[str, Any]:
    rate = missing / total if total else 0.0
    change = rate - prof.missing_rate
    base_total = prof.count + prof.missing
    p = stats.two_proportion_pvalue(prof.missing, base_total, missing, total)
    out: dict[str, Any] = {"missing_rate": _round(rate), "missing_rate_change": _round(change)}
    if total and abs(change) >= t.missing_rate_change and p < t.alpha:
        out["reasons"] = [f"missing rate {prof.missing_rate:.1%} -> {rate:.1%}"]
    return out


def compare(baseline: Baseline, data: CaptureData, *, thresholds: Mapping[str, Any] | None = None,
            window: Mapping[str, Any] | None = None, quality: Mapping[str, Any] | None = None,
            sources: Mapping[str, Any] | None = None, schema_drift: bool = False) -> dict[str, Any]:
    """The drift report (a JSON-ready dict, format ``mlinfra.drift.report/1``, documented in docs/monitoring.md).

    ``schema_drift``: a schema change alone makes the window ``drift`` (``drift_detected``: the drift event and
    a retrain); by default it makes it ``schema_change`` (reported, metric ``SchemaChanges``, alarmed, no event).
    """
    default, per_feature = thresholds_by_feature(thresholds)
    unknown = sorted(set(per_feature) - set(baseline.feature_order) - {PREDICTION})
    if unknown:
        raise ValueError(f"thresholds.features: {unknown} are not features of the baseline {baseline.feature_order[:20]}")
    features: dict[str, Any] = {}
    for prof in baseline.features:
        t = per_feature.get(prof.name, default)
        values = data.columns.get(prof.name)
        if values is None:
            values = np.zeros(0)
        if prof.kind == "numeric":
            features[prof.name] = compare_numeric(prof, values, t, data.unparsable.get(prof.name, 0))
        else:
            features[prof.name] = compare_categorical(prof, values, t)
        if data.records and features[prof.name]["count"] == 0 and features[prof.name]["status"] != "schema_change":
            features[prof.name].update(status="schema_change", drifted=True, reasons=["missing: absent from every record"])
    prediction = None
    if baseline.prediction is not None:
        t = per_feature.get(PREDICTION, default)
        prediction = (compare_numeric(baseline.prediction, data.predictions, t) if baseline.prediction.kind == "numeric"
                      else compare_categorical(baseline.prediction, data.predictions, t))
    counters = {"lines": 0, "records": 0, "malformed_lines": 0, "malformed_payloads": 0, "malformed_outputs": 0,
                "schema_mismatch_rows": 0, "prediction_mismatch": 0, "empty_payloads": 0, **data.counters}
    rows = max(1, counters["records"] + counters["schema_mismatch_rows"])
    schema = {
        "new_columns": dict(sorted(data.new_columns.items())),
        # columns in at least SCHEMA_CHANGE_SHARE of the records (the others are listed above, not counted)
        "significant_new_columns": sorted(c for c, k in data.new_columns.items() if k / rows >= SCHEMA_CHANGE_SHARE),
        "missing_columns": sorted(n for n, f in features.items() if f["status"] == "schema_change" and "missing" in f["reasons"][0]),
        "retyped_columns": sorted(n for n, f in features.items() if f["status"] == "schema_change" and "retyped" in f["reasons"][0]),
        "schema_mismatch_rows": counters["schema_mismatch_rows"],
    }
    schema_changed = bool(schema["significant_new_columns"] or schema["missing_columns"] or schema["retyped_columns"]
                          or (counters["records"] and counters["schema_mismatch_rows"] / rows >= SCHEMA_CHANGE_SHARE))
    drifted = sorted(n for n, f in features.items() if f["drifted"])
    statistical = [n for n, f in features.items() if f["status"] == "drift"]
    not_enough = sorted(n for n, f in features.items() if f["status"] == "not_enough_data")
    if counters["records"] == 0:
        status = "empty_window"
    elif statistical or (prediction and prediction["drifted"]) or (schema_changed and schema_drift):
        status = "drift"
    elif schema_changed:
        status = "schema_change"
    elif len(not_enough) == len(features):
        status = "not_enough_data"
    else:
        status = "ok"
    judged = len(features) - len(not_enough)
    report = {
        "format": REPORT_FORMAT,
        "status": status,
        "drift_detected": status == "drift",
        "window": dict(window or {}),
        "sources": dict(sources or {}),
        "baseline": {"source": baseline.source, "model": baseline.model, "features": len(baseline.features)},
        "counts": counters,
        "content_types": dict(sorted(data.content_types.items())),
        "schema": schema,
        "summary": {
            "features": len(features), "drifted_features": drifted, "drifted_count": len(drifted),
            "drift_share": _round(len(drifted) / judged) if judged else None,
            "not_enough_data": not_enough, "prediction_drifted": bool(prediction and prediction["drifted"]),
            "schema_changed": schema_changed,
        },
        "features": features,
        "prediction": prediction,
        "quality": dict(quality) if quality else None,
    }
    return report


def report_json(report: Mapping[str, Any]) -> str:
    return json.dumps(report, sort_keys=True, indent=1, allow_nan=False)
