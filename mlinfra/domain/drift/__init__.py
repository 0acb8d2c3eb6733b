"""mlinfra's drift engine: pure, vectorized (numpy only; no CDK, no boto3 at import).

- :mod:`.contract`: metric namespace, event names and thresholds (no numpy: what the CDK side imports).
- :mod:`.profile`: the baseline (per-feature profiles of the training data and of the predictions).
- :mod:`.capture`: SageMaker data-capture JSON Lines -> columns, counting malformed input.
- :mod:`.stats`: PSI, two-sample KS, chi-square, Jensen-Shannon (checked against scipy in the tests).
- :mod:`.detect`: per-feature decisions with thresholds and the JSON report.
- :mod:`.quality`: model-quality metrics from ground truth joined on inference id.
- :mod:`.html`: the human-readable report (inline SVG charts).
- :mod:`.job`: the entry point of the SageMaker Processing job (boto3 imported only when it runs).

This folder is also the code the Processing job runs (uploaded as one asset by
:class:`mlinfra.constructs.drift_monitor.DriftMonitor`), so its modules import one another relatively and
nothing else from mlinfra.
"""

from importlib import import_module
from typing import Any

from .contract import EVENT_DETAIL_TYPE, EVENT_SOURCE, NAMESPACE, Thresholds, thresholds_by_feature

# The numpy-backed modules load on first use (PEP 562), so ``mlinfra.domain.drift.contract`` (all the CDK side
# imports) works without numpy.
_LAZY = {
    "CaptureData": ".capture", "CaptureParser": ".capture", "parse_ground_truth": ".capture",
    "REPORT_FORMAT": ".detect", "compare": ".detect", "report_json": ".detect",
    "render_html": ".html",
    "BASELINE_FORMAT": ".profile", "PREDICTION": ".profile", "Baseline": ".profile", "FeatureProfile": ".profile",
    "build_baseline": ".profile",
    "quality_metrics": ".quality",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(module, __name__), name)


__all__ = [
    "BASELINE_FORMAT", "EVENT_DETAIL_TYPE", "EVENT_SOURCE", "NAMESPACE", "PREDICTION", "REPORT_FORMAT", "Baseline",
    "CaptureData", "CaptureParser", "FeatureProfile", "Thresholds", "build_baseline", "compare", "parse_ground_truth",
    "quality_metrics", "render_html", "report_json", "thresholds_by_feature",
]
