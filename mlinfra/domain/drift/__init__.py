"""mlinfra's drift engine: pure, vectorized (numpy only; no CDK, no boto3 at import).

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

from .capture import CaptureData, CaptureParser, parse_ground_truth
from .detect import REPORT_FORMAT, Thresholds, compare, report_json, thresholds_by_feature
from .html import render_html
from .profile import BASELINE_FORMAT, PREDICTION, Baseline, FeatureProfile, build_baseline
from .quality import quality_metrics

__all__ = [
    "BASELINE_FORMAT", "PREDICTION", "REPORT_FORMAT", "Baseline", "CaptureData", "CaptureParser", "FeatureProfile",
    "Thresholds", "build_baseline", "compare", "parse_ground_truth", "quality_metrics", "render_html", "report_json",
    "thresholds_by_feature",
]
