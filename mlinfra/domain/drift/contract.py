"""The drift engine's contract with the CDK side: metric namespace, event names and thresholds (no numpy).

:class:`mlinfra.constructs.drift_monitor.DriftMonitor` and the ``monitoring:`` config section import this
module only, so synthesizing a stack with monitoring needs no numpy (the engine's extra); the Processing job
imports it relatively like every other module of this folder.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping

#: CloudWatch namespace of every drift metric (docs/monitoring.md).
NAMESPACE = "mlinfra/Drift"
#: EventBridge source and detail type of the drift event.
EVENT_SOURCE = "mlinfra.drift"
EVENT_DETAIL_TYPE = "Model Drift Detected"
#: Share of the window's records (new columns, rows with the wrong number of CSV fields) at or above which a
#: schema change counts: one stray key among thousands of records is noise, not a new schema.
SCHEMA_CHANGE_SHARE = 0.01


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


