"""Baseline profiles: what the training data (and the model's predictions on a holdout) looked like.

A :class:`Baseline` holds one :class:`FeatureProfile` per feature, in the training data's column order (CSV
captures carry no header: column ``j`` of a captured row is ``feature_order[j]``), plus an optional profile of
the predictions. It is plain JSON (``Baseline.to_json`` / ``Baseline.from_json``), versioned by ``format``.

Per numeric feature: count, missing rate, mean, std, min, max, a quantile sketch (the sorted values at evenly
spaced ranks, at most ``SKETCH_SIZE`` of them: the two-sample KS test's baseline side), decile edges (the PSI
bins) with their proportions, and an equal-width histogram for the report's chart. Per categorical feature:
categories and counts (the most frequent ``MAX_CATEGORIES``, the rest pooled as ``OTHER``) and missing rate.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any, Mapping

import numpy as np

BASELINE_FORMAT = "mlinfra.drift.baseline/1"
SKETCH_SIZE = 10_000
PSI_BINS = 10
CHART_BINS = 20
MAX_CATEGORIES = 200
OTHER = "__other__"
PREDICTION = "__prediction__"
#: A column is numeric when at least this share of its present values parse as numbers.
NUMERIC_SHARE = 0.95


@dataclasses.dataclass
class FeatureProfile:
    name: str
    kind: str  # "numeric" | "categorical"
    count: int  # values present
    missing: int
    # numeric
    mean: float | None = None
    std: float | None = None
    min: float | None = None
    max: float | None = None
    sketch: list[float] | None = None
    psi_edges: list[float] | None = None
    psi_props: list[float] | None = None
    chart_edges: list[float] | None = None
    chart_props: list[float] | None = None
    # categorical
    categories: list[str] | None = None
    category_counts: list[int] | None = None

    @property
    def missing_rate(self) -> float:
        total = self.count + self.missing
        return self.missing / total if total else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in dataclasses.asdict(self).items() if v is not None}


@dataclasses.dataclass
class Baseline:
    features: list[FeatureProfile]
    prediction: FeatureProfile | None = None
    source: str = ""
    model: str = ""

    @property
    def feature_order(self) -> list[str]:
        return [f.name for f in self.features]

    def feature(self, name: str) -> FeatureProfile:
        for f in self.features:
            if f.name == name:
                return f
        raise KeyError(name)

    def to_json(self) -> str:
        return json.dumps({
            "format": BASELINE_FORMAT, "source": self.source, "model": self.model,
            "features": [f.to_dict() for f in self.features],
            "prediction": self.prediction.to_dict() if self.prediction else None,
        }, sort_keys=True, allow_nan=False)

    @classmethod
    def from_json(cls, text: str | bytes) -> "Baseline":
        doc = json.loads(text)
        if not isinstance(doc, dict) or doc.get("format") != BASELINE_FORMAT:
            raise ValueError(f"baseline: format must be {BASELINE_FORMAT!r}, got: {str(doc.get('format') if isinstance(doc, dict) else type(doc).__name__)!r}")
        fields = {f.name for f in dataclasses.fields(FeatureProfile)}
        feats = [FeatureProfile(**{k: v for k, v in f.items() if k in fields}) for f in doc.get("features", [])]
        pred = doc.get("prediction")
        return cls(features=feats, prediction=FeatureProfile(**{k: v for k, v in pred.items() if k in fields}) if pred else None,
                   source=doc.get("source", ""), model=doc.get("model", ""))


def _finite(values: list[float]) -> list[float]:
    return [float(v) for v in values]


def to_numeric(values: np.ndarray) -> tuple[np.ndarray, int]:
    """(float64 array with NaN for missing (None, "" or blank) or unparsable values, count of present values that
    did not parse)."""
    if values.dtype.kind in "fiub":
        return values.astype(np.float64, copy=False), 0
    try:
        out = np.array([np.nan if v is None or (isinstance(v, str) and not v.strip()) else v for v in values], dtype=np.float64)
        return out, 0
    except (ValueError, TypeError):
        pass
    out = np.empty(len(values), dtype=np.float64)
    bad = 0
    for i, v in enumerate(values):
        if v is None or (isinstance(v, str) and not v.strip()):  # blank = missing
            out[i] = np.nan
            continue
        try:
            out[i] = float(v)
        except (TypeError, ValueError):
            out[i] = np.nan
            bad += 1
    return out, bad


def infer_kind(values: np.ndarray) -> str:
    if values.dtype.kind in "fiub":
        return "numeric"
    present = [v for v in values if v is not None and v != ""]
    if not present:
        return "numeric"
    _, bad = to_numeric(np.asarray(present, dtype=object))
    return "numeric" if (len(present) - bad) / len(present) >= NUMERIC_SHARE else "categorical"


def quantile_sketch(sorted_values: np.ndarray, size: int = SKETCH_SIZE) -> np.ndarray:
    n = sorted_values.size
    if n <= size:
        return sorted_values
    return sorted_values[np.linspace(0, n - 1, size).round().astype(np.int64)]


def numeric_profile(name: str, values: np.ndarray) -> FeatureProfile:
    x, _ = to_numeric(values)
    ok = np.isfinite(x)
    v = np.sort(x[ok])
    prof = FeatureProfile(name=name, kind="numeric", count=int(v.size), missing=int(x.size - v.size))
    if v.size == 0:
        return prof
    edges = np.unique(np.quantile(v, np.linspace(0, 1, PSI_BINS + 1)[1:-1]))
    props = np.bincount(np.searchsorted(edges, v, side="right"), minlength=edges.size + 1) / v.size
    lo, hi = np.quantile(v, [0.005, 0.995])
    if hi <= lo:
        lo, hi = float(v[0]) - 0.5, float(v[-1]) + 0.5
    chart_edges = np.linspace(lo, hi, CHART_BINS + 1)
    prof.mean, prof.std = float(v.mean()), float(v.std())
    prof.min, prof.max = float(v[0]), float(v[-1])
    prof.sketch = _finite(quantile_sketch(v).tolist())
    prof.psi_edges = _finite(edges.tolist())
    prof.psi_props = _finite(props.tolist())
    prof.chart_edges = _finite(chart_edges.tolist())
    prof.chart_props = _finite(chart_histogram(chart_edges, v).tolist())
    return prof


def chart_histogram(edges: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Proportions per chart bin; values outside the edges land in the first or last bin."""
    if values.size == 0:
        return np.zeros(len(edges) - 1)
    idx = np.clip(np.searchsorted(edges, values, side="right") - 1, 0, len(edges) - 2)
    return np.bincount(idx, minlength=len(edges) - 1) / values.size


def categorical_values(values: np.ndarray) -> tuple[np.ndarray, int]:
    """(present values as strings, missing count)."""
    if values.dtype.kind == "f":
        ok = ~np.isnan(values)
        present = np.array([str(int(v)) if float(v).is_integer() else repr(float(v)) for v in values[ok]], dtype=str)
        return present, int((~ok).sum())
    mask = np.fromiter((v is not None and v != "" for v in values), dtype=bool, count=values.size)
    present = values[mask]
    if present.dtype.kind != "U":
        present = np.array([str(v) for v in present], dtype=str) if present.size else np.array([], dtype=str)
    return present, int((~mask).sum())


def categorical_profile(name: str, values: np.ndarray) -> FeatureProfile:
    present, missing = categorical_values(values)
    cats, counts = np.unique(present, return_counts=True) if present.size else (np.array([], dtype=str), np.array([], np.int64))
    order = np.lexsort((cats, -counts))  # by count, then name: deterministic
    cats, counts = cats[order], counts[order]
    if cats.size > MAX_CATEGORIES:
        other = int(counts[MAX_CATEGORIES - 1:].sum())
        cats, counts = np.append(cats[:MAX_CATEGORIES - 1], OTHER), np.append(counts[:MAX_CATEGORIES - 1], other)
    return FeatureProfile(name=name, kind="categorical", count=int(present.size), missing=missing,
                          categories=[str(c) for c in cats], category_counts=[int(c) for c in counts])


def profile_column(name: str, values: np.ndarray, kind: str | None = None) -> FeatureProfile:
    kind = kind or infer_kind(values)
    if kind not in ("numeric", "categorical"):
        raise ValueError(f"baseline: feature kind must be 'numeric' or 'categorical', got: {kind!r} for {name!r}")
    return numeric_profile(name, values) if kind == "numeric" else categorical_profile(name, values)


def build_baseline(columns: Mapping[str, np.ndarray], *, predictions: np.ndarray | None = None,
                   kinds: Mapping[str, str] | None = None, source: str = "", model: str = "") -> Baseline:
    """Profile every column (in the mapping's order) and, when given, the predictions."""
    if not columns:
        raise ValueError("baseline: the training data has no columns")
    kinds = kinds or {}
    feats = [profile_column(name, np.asarray(values) if not isinstance(values, np.ndarray) else values, kinds.get(name))
             for name, values in columns.items()]
    pred = profile_column(PREDICTION, np.asarray(predictions)) if predictions is not None and len(predictions) else None
    return Baseline(features=feats, prediction=pred, source=source, model=model)
