"""Compare captured traffic with a baseline: per-feature statistics, decisions and the JSON report.

Decisions (per feature, thresholds from :class:`Thresholds`, overridable per feature):

- numeric: drifted when ``psi >= psi`` or (``ks_statistic >= ks`` and ``ks_pvalue < alpha``);
- categorical: drifted when ``js_distance >= js`` or the share of categories unseen in the baseline is
  ``>= new_category_share``; the chi-square test of homogeneity is reported alongside;
- both: ``missing_rate`` drift when the missing rate moved by ``>= missing_rate_change`` (absolute) and a
  two-proportion test gives ``p < alpha``;
- fewer than ``min_samples`` present values in the window: ``not_enough_data`` (no decision, never "no drift").

Schema changes (columns unknown to the baseline, baseline columns absent from every record, numeric columns
whose values are mostly not numbers, rows with the wrong number of CSV fields) are reported and count as drift.
Everything is a pure function of (baseline, capture data, thresholds): the same inputs give the same report.
"""

from __future__ import annotations

import dataclasses
import json
import math
from typing import Any, Mapping

import numpy as np

from . import stats
from .capture import CaptureData
from .profile import PREDICTION, Baseline, FeatureProfile, categorical_values, chart_histogram

REPORT_FORMAT = "mlinfra.drift.report/1"


@dataclasses.dataclass(frozen=True)
class Thresholds:
    """Decision thresholds of one feature (defaults suit a few thousand records or more per window)."""

    #: Population stability index at or above which a numeric feature drifted (0.1 small, 0.2 significant).
    psi: float = 0.2
    #: KS statistic (max ECDF distance) at or above which a numeric feature drifted, if also significant.
    ks: float = 0.1
    #: Jensen-Shannon distance (natural log) at or above which a categorical feature drifted.
    js: float = 0.1
    #: Share of current values in categories the baseline never saw, at or above which it drifted.
    new_category_share: float = 0.05
    #: Absolute change of the missing rate that counts as drift (if significant).
    missing_rate_change: float = 0.05
    #: Significance level of the KS and missing-rate tests.
    alpha: float = 0.01
    #: Fewer present values than this in the window: "not_enough_data".
    min_samples: int = 500

    def __post_init__(self) -> None:
        errors = []
        for name in ("psi", "ks", "js", "new_category_share", "missing_rate_change", "alpha"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not 0 < value <= (10 if name == "psi" else 1):
                errors.append(f"{name} must be in (0, {10 if name == 'psi' else 1}], got: {value!r}")
        if not isinstance(self.min_samples, int) or self.min_samples < 1:
            errors.append(f"min_samples must be an integer >= 1, got: {self.min_samples!r}")
        if errors:
            raise ValueError("thresholds: " + "; ".join(errors))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], base: "Thresholds | None" = None) -> "Thresholds":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"thresholds: unknown keys {unknown}, allowed: {sorted(known)}")
        return dataclasses.replace(base or cls(), **data)


def thresholds_by_feature(spec: Mapping[str, Any] | None) -> tuple[Thresholds, dict[str, Thresholds]]:
    """``{"default": {...}, "features": {"age": {"psi": 0.3}}}`` -> (default, per feature)."""
    spec = dict(spec or {})
    unknown = sorted(set(spec) - {"default", "features"})
    if unknown:
        raise ValueError(f"thresholds: unknown keys {unknown}, allowed: ['default', 'features']")
    default = Thresholds.from_dict(spec.get("default") or {})
    return default, {name: Thresholds.from_dict(v or {}, default) for name, v in (spec.get("features") or {}).items()}


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
        out.update(status="not_enough_data", drifted=False, reasons=[f"{n} values < min_samples {t.min_samples}"]
                   if prof.sketch else ["baseline has no values"])
        return out
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
        out.update(status="not_enough_data", drifted=False, reasons=[f"{n} values < min_samples {t.min_samples}"]
                   if prof.categories else ["baseline has no values"])
        return out
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
    chi2, chi2_p, dof = stats.chi2_contingency(full_base, full_cur)
    reasons = out.pop("reasons", [])
    if js >= t.js:
        reasons.append(f"js {js:.3f} >= {t.js}")
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
            sources: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The drift report (a JSON-ready dict, format ``mlinfra.drift.report/1``, documented in docs/monitoring.md)."""
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
    schema = {
        "new_columns": dict(sorted(data.new_columns.items())),
        "missing_columns": sorted(n for n, f in features.items() if f["status"] == "schema_change" and "missing" in f["reasons"][0]),
        "retyped_columns": sorted(n for n, f in features.items() if f["status"] == "schema_change" and "retyped" in f["reasons"][0]),
        "schema_mismatch_rows": counters["schema_mismatch_rows"],
    }
    schema_changed = bool(schema["new_columns"] or schema["missing_columns"] or schema["retyped_columns"]
                          or (counters["records"] and counters["schema_mismatch_rows"] / max(1, counters["records"] + counters["schema_mismatch_rows"]) >= 0.01))
    drifted = sorted(n for n, f in features.items() if f["drifted"])
    not_enough = sorted(n for n, f in features.items() if f["status"] == "not_enough_data")
    if counters["records"] == 0:
        status = "empty_window"
    elif drifted or schema_changed or (prediction and prediction["drifted"]):
        status = "drift"
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
